"""Motion-augmented temporal attention (Motion-I2V stage 2) on SVD: the patch against a float64 reference
of the equations, which layers it touches, its controls in real sampling, and its errors."""
from __future__ import annotations

import sys
import types

import pytest
import torch

from motionkit_testing.references import attention64, linear64, naive_avg_splat
from motionkit_testing.svd import Always, conditioning, sample, load_tiny, make_attention, transformer_blocks

NODE_ID = "MotionKitMotionAugmentedAttention"


def node(name=NODE_ID):
    import nodes
    return nodes.NODE_CLASS_MAPPINGS[name]


def node_module():
    return sys.modules[node().__module__]


def field_of(flow):
    from motionkit_testing.pack import pack_module
    return pack_module("motion_field").make_motion_field(flow)


def reference(x, attn, b, h, w, flow, strength):
    """Float64: w_t = splat_avg(h_0, flow_t); S = [h0, w1, h1, ...]; out_t = Attn(h_t Wq, S Wk, S Wv)."""
    t, c = x.shape[1], x.shape[2]
    xs = x.double().reshape(b, h, w, t, c)
    seqs = []
    for bi in range(b):
        frame0 = xs[bi, :, :, 0].permute(2, 0, 1).numpy()                       # C h w
        warped = [torch.from_numpy(naive_avg_splat(frame0, flow[ti].double().numpy())) for ti in range(1, t)]
        cols = [xs[bi, :, :, 0]]
        for ti in range(1, t):
            cols += [warped[ti - 1].permute(1, 2, 0), xs[bi, :, :, ti]]
        seqs.append(torch.stack(cols, 2).reshape(h * w, 2 * t - 1, c))
    seq = torch.cat(seqs)
    aug = attention64(linear64(attn.to_q, x), linear64(attn.to_k, seq), linear64(attn.to_v, seq), attn.heads)
    own = attention64(linear64(attn.to_q, x), linear64(attn.to_k, x), linear64(attn.to_v, x), attn.heads)
    return linear64(attn.to_out[0], (1 - strength) * own + strength * aug)


@pytest.mark.parametrize("b,h,w,t,strength", [(1, 3, 4, 4, 1.0), (2, 2, 3, 5, 1.0), (2, 3, 3, 3, 0.6), (2, 2, 2, 4, 1.0)])
def test_patch_matches_float64_reference(comfy, b, h, w, t, strength):
    c = 32
    attn = make_attention(c, 2, seed=b * 10 + t)
    g = torch.Generator().manual_seed(t)
    flow = 1.7 * torch.randn(t, 2, h, w, generator=g)
    flow[0] = 0
    mod = node_module()
    fwd = mod.MotionAugmentedForward(attn, types.MethodType(type(attn).forward, attn), mod.FlowPyramid(flow),
                                     strength, Always())
    x = torch.randn(b * h * w, t, c, generator=g)
    with torch.no_grad():
        got = fwd(x, transformer_options={"activations_shape": [b * t, c, h, w], "cond_or_uncond": [1, 0][:b]})
    ref = reference(x, attn, b, h, w, flow, strength)
    rel = (got.double() - ref).norm() / ref.norm()
    assert rel < 1e-5, f"relative error {rel:.2e}"


def zero_field(frames, h=64, w=64):
    return field_of(torch.zeros(frames, 2, h, w))


def shift_field(frames, h=64, w=64, dx=16.0):
    flow = torch.zeros(frames, 2, h, w)
    flow[:, 0] = dx * torch.arange(frames).view(-1, 1, 1) / (frames - 1)
    return field_of(flow)


def test_only_temporal_self_attention_is_patched(comfy, tiny_ckpt):
    model, _, _ = load_tiny(tiny_ckpt)
    (patched,) = node()().patch(model, shift_field(4), 1.0, 0.0, 1.0)
    unet = model.get_model_object("diffusion_model")
    keys = set(patched.object_patches)
    assert len(keys) == 7 and all(".time_stack." in k and k.endswith(".attn1.forward") for k in keys)
    assert {id(patched.object_patches[k].attn) for k in keys} == {id(m.attn1) for m in transformer_blocks(unet, "time_stack")}
    assert model.object_patches == {}


def test_sampling_controls_and_field_resized_once_per_resolution(comfy, tiny_ckpt, monkeypatch):
    model, pos, neg, latent = conditioning(tiny_ckpt, 4, 64)
    base = sample(model, pos, neg, latent, steps=2)
    calls = []
    mod = node_module()
    original = mod.resize_flow
    monkeypatch.setattr(mod, "resize_flow", lambda f, h, w: calls.append((h, w)) or original(f, h, w))
    (patched,) = node()().patch(model, shift_field(4), 1.0, 0.0, 1.0)
    moved = sample(patched, pos, neg, latent, steps=2)
    assert (moved - base).abs().max() > 1e-3
    assert sorted(set(calls)) == sorted(calls) == [(4, 4), (8, 8)]   # 2 steps x 14 temporal calls, 2 resizes
    (zero,) = node()().patch(model, shift_field(4), 0.0, 0.0, 1.0)
    assert torch.equal(sample(zero, pos, neg, latent, steps=2), base)
    (outside,) = node()().patch(model, shift_field(4), 1.0, 0.5, 0.6)
    assert torch.equal(sample(outside, pos, neg, latent, steps=2), base)
    assert torch.equal(sample(model, pos, neg, latent, steps=2), base)   # the input MODEL is unaffected


def test_mismatched_field_is_a_clear_error(comfy, tiny_ckpt):
    model, pos, neg, latent = conditioning(tiny_ckpt, 4, 64)
    (patched,) = node()().patch(model, shift_field(6), 1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match=r"input 'motion_field'.*6 frames but the video has 4"):
        sample(patched, pos, neg, latent, steps=1)
    (wide,) = node()().patch(model, shift_field(4, 64, 160), 1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="aspect ratios differ"):
        sample(wide, pos, neg, latent, steps=1)
    with pytest.raises(ValueError, match=r"input 'motion_field': not a usable MOTION_FIELD"):
        node()().patch(model, {"flow": torch.zeros(4, 3, 8, 8)}, 1.0, 0.0, 1.0)
    import comfy.model_patcher
    holder = torch.nn.Module()
    holder.diffusion_model = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="found no temporal attention"):
        node()().patch(comfy.model_patcher.ModelPatcher(holder, torch.device("cpu"), torch.device("cpu")),
                       shift_field(4), 1.0, 0.0, 1.0)


def test_visualize_motion_field(comfy):
    image = torch.zeros(1, 16, 16, 3)
    image[0, 4:8, 2:6] = 1.0
    colors, warped = node("MotionKitVisualizeMotionField")().visualize(shift_field(3, 16, 16, dx=4.0), image, 0.0)
    assert colors.shape == warped.shape == (3, 16, 16, 3)
    assert torch.equal(colors[0], torch.ones(16, 16, 3))                  # frame 0: no motion is white
    assert torch.equal(warped[2, 4:8, 6:10], image[0, 4:8, 2:6])          # moved 4 px right by the last frame
    assert torch.equal(warped[0], image[0])
