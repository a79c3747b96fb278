"""All-to-First Attention (Puppet-Master): the mechanism against a float64 reference of its equations,
and the node through ComfyUI's real executor (controls, clone isolation, no stacking, errors)."""
from __future__ import annotations

import math
import types

import pytest
import torch

from motionkit_testing.svd import IMAGE, Always, conditioning, sample, load_tiny, make_attention, transformer_blocks
from motionkit_testing.workflows import saved_latent, svd_prompt

NODE_ID = "MotionKitAllToFirstAttention"


def node_class():
    import nodes
    return nodes.NODE_CLASS_MAPPINGS[NODE_ID]


def pack_module():
    import sys
    return sys.modules[node_class().__module__]


def reference_all_to_first(x, attn, chunks, frames, strength):
    """Float64, straight from the equations: Q_t = X_t Wq, K_0 = X_0 Wk, V_0 = X_0 Wv,
    A2F_t = softmax(Q_t K_0^T / sqrt(d)) V_0 per head; out = Wo((1-s) SelfAttn(X_t) + s A2F_t) + bo."""
    wq, wk, wv = (m.weight.double() for m in (attn.to_q, attn.to_k, attn.to_v))
    wo, bo = attn.to_out[0].weight.double(), attn.to_out[0].bias.double()
    h, d = attn.heads, attn.dim_head
    X = x.double().reshape(chunks, frames, x.shape[1], x.shape[2])                  # b t n c

    def split(y):
        return y.reshape(*y.shape[:-1], h, d)

    def attend(q, k, v):                                                             # q: b t n h d, k/v: b t m h d
        w = torch.softmax(torch.einsum("btnhd,btmhd->bthnm", q, k) / math.sqrt(d), dim=-1)
        return torch.einsum("bthnm,btmhd->btnhd", w, v)

    Q, K, V = split(X @ wq.T), split(X @ wk.T), split(X @ wv.T)
    K0 = K[:, :1].expand_as(K)
    V0 = V[:, :1].expand_as(V)
    a2f = attend(Q, K0, V0)
    own = attend(Q, K, V)
    mixed = (1 - strength) * own + strength * a2f
    out = mixed.reshape(chunks * frames, x.shape[1], h * d) @ wo.T + bo
    return out


@pytest.mark.parametrize("frames,tokens,chunks,strength", [
    (2, 16, 1, 1.0),
    (3, 12, 2, 1.0),
    (5, 9, 2, 0.4),
    (14, 20, 2, 1.0),
    (4, 4, 2, 1.0),     # h*w == frame count
    (4, 4, 2, 0.7),
    (25, 8, 1, 0.25),
])
def test_patch_matches_float64_reference(comfy, frames, tokens, chunks, strength):
    dim, heads = 32, 2
    attn = make_attention(dim, heads, seed=frames * 100 + tokens)
    forward = pack_module().AllToFirstForward(attn, types.MethodType(type(attn).forward, attn), strength, Always())
    x = torch.randn(chunks * frames, tokens, dim, generator=torch.Generator().manual_seed(1))
    opts = {"cond_or_uncond": [1, 0][:chunks]}
    with torch.no_grad():
        got = forward(x, transformer_options=opts)
    ref = reference_all_to_first(x, attn, chunks, frames, strength)
    rel = (got.double() - ref).norm() / ref.norm()
    assert rel < 1e-5, f"relative error {rel:.2e}"
    # and it is not the ordinary self-attention (frames > 1 make them differ)
    own = reference_all_to_first(x, attn, chunks, frames, 0.0)
    assert (own - ref).norm() / ref.norm() > 1e-3


def test_each_cond_half_reads_its_own_first_frame(comfy):
    """Changing frame 0 of the uncond half must not change the cond half's output, and vice versa."""
    attn = make_attention(32, 2, seed=3)
    fwd = pack_module().AllToFirstForward(attn, types.MethodType(type(attn).forward, attn), 1.0, Always())
    frames = 4
    x = torch.randn(2 * frames, 9, 32, generator=torch.Generator().manual_seed(2))
    y = x.clone()
    y[0] += 1.0  # frame 0 of the first chunk
    opts = {"cond_or_uncond": [1, 0]}
    with torch.no_grad():
        a, b = fwd(x, transformer_options=opts), fwd(y, transformer_options=opts)
    assert torch.equal(a[frames:], b[frames:])
    assert (a[1:frames] - b[1:frames]).abs().max() > 1e-3  # later frames of chunk 0 follow its frame 0


# --- the node on a real (tiny) SVD model ----------------------------------------------------------

def test_node_patches_exactly_the_spatial_self_attention(comfy, tiny_ckpt):
    model, _, _ = load_tiny(tiny_ckpt)
    (patched,) = node_class()().patch(model, 1.0, 0.0, 1.0)
    unet = model.get_model_object("diffusion_model")
    spatial = {f"diffusion_model.{n}.attn1.forward" for n, _ in unet.named_modules()
               if n.split(".")[-2:-1] == ["transformer_blocks"]}
    assert len(spatial) == 7  # input 1, 3; middle; output 0..3
    assert set(patched.object_patches) == spatial
    assert not any("time_stack" in k for k in patched.object_patches)
    assert model.object_patches == {}  # the input MODEL is untouched


def test_temporal_attention_is_never_patched_even_when_hw_equals_frames(comfy, tiny_ckpt, monkeypatch):
    """16 frames at a 4x4 latent: spatial attn1 sees (B*16, 16, C) and temporal attn1 sees (B*16, 16, C).
    Only the spatial modules may run the patch, once per spatial call."""
    frames = 16
    model, pos, neg, latent = conditioning(tiny_ckpt, frames, 32)
    assert latent["samples"].shape[-2:] == (4, 4)
    (patched,) = node_class()().patch(model, 1.0, 0.0, 1.0)
    unet = model.get_model_object("diffusion_model")
    spatial = {id(m.attn1) for m in transformer_blocks(unet, "transformer_blocks")}
    temporal = {id(m.attn1) for m in transformer_blocks(unet, "time_stack")}
    assert len(spatial) == len(temporal) == 7
    seen, shapes, spatial_calls = [], set(), [0]
    cls = type(next(iter(patched.object_patches.values())))
    original_call = cls.__call__

    def counting(self, x, *a, **kw):
        seen.append(id(self.attn))
        shapes.add(tuple(x.shape[:2]))
        return original_call(self, x, *a, **kw)
    monkeypatch.setattr(cls, "__call__", counting)
    hooks = [m.register_forward_hook(lambda *_: spatial_calls.__setitem__(0, spatial_calls[0] + 1))
             for m in transformer_blocks(unet, "transformer_blocks")]
    try:
        sample(patched, pos, neg, latent, steps=2)
    finally:
        for h in hooks:
            h.remove()
    assert (2 * frames, 16) in shapes          # the ambiguous shape did occur
    assert set(seen) <= spatial and not (set(seen) & temporal)
    assert len(seen) == spatial_calls[0] == 2 * 7   # 2 steps x 7 spatial blocks, cond+uncond batched


def test_steps_outside_the_window_are_bit_equal_per_step(comfy, tiny_ckpt):
    """A window covering only the last of 3 steps: the denoised prediction of steps 0 and 1 is bit-equal
    to the unpatched model's, step 2 differs."""
    model, pos, neg, latent = conditioning(tiny_ckpt, 4, 64)
    import comfy.samplers
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "karras", 3)
    ms = model.get_model_object("model_sampling")
    start = 0.9
    assert ms.percent_to_sigma(start) < float(sigmas[1]) and ms.percent_to_sigma(start) >= float(sigmas[2])
    (patched,) = node_class()().patch(model, 1.0, start, 1.0)

    def run(m):
        x0 = []
        sample(m, pos, neg, latent, steps=3, callback=lambda step, den, x, total: x0.append(den.clone()))
        return x0
    base, pat = run(model), run(patched)
    assert torch.equal(base[0], pat[0]) and torch.equal(base[1], pat[1])
    assert (base[2] - pat[2]).abs().max() > 1e-4


def test_full_svd_and_svd_xt_shapes_still_detect_as_svd(comfy):
    """The real SVD / SVD-XT UNet (one architecture), built on the meta device, is detected by ComfyUI as
    its own SVD_img2vid with the pack (and the test models' registrations) loaded."""
    import comfy.model_detection
    import comfy.supported_models
    from motionkit_testing.tiny_models import FULL_SVD, TINY, meta_unet_state_dict
    sd = meta_unet_state_dict(FULL_SVD)
    assert sum(v.numel() for v in sd.values()) > 1.5e9
    cfg = comfy.model_detection.model_config_from_unet(sd, "model.diffusion_model.")
    assert type(cfg) is comfy.supported_models.SVD_img2vid
    detected = comfy.model_detection.detect_unet_config(sd, "model.diffusion_model.")
    assert {k: detected[k] for k in FULL_SVD.unet_config()} == FULL_SVD.unet_config()
    tiny_cfg = comfy.model_detection.model_config_from_unet(meta_unet_state_dict(TINY), "model.diffusion_model.")
    assert type(tiny_cfg).__name__ == "MotionKitTest_SVD_tiny"


# --- whole workflows through ComfyUI's executor ---------------------------------------------------

@pytest.fixture(scope="module")
def baseline(comfy, tiny_ckpt, base_dir):
    return saved_latent(base_dir, comfy.run(svd_prompt(tiny_ckpt, IMAGE, prefix="base")))


def run_a2f(comfy, tiny_ckpt, base_dir, **a2f):
    return saved_latent(base_dir, comfy.run(svd_prompt(tiny_ckpt, IMAGE, a2f=a2f, prefix="a2f")))


def test_node_changes_the_video(comfy, tiny_ckpt, base_dir, baseline):
    out = run_a2f(comfy, tiny_ckpt, base_dir, strength=1.0)
    assert out.shape == baseline.shape == (4, 4, 8, 8)
    assert (out - baseline).abs().max() > 1e-3


def test_strength_zero_is_bit_equal(comfy, tiny_ckpt, base_dir, baseline):
    assert torch.equal(run_a2f(comfy, tiny_ckpt, base_dir, strength=0.0), baseline)


def test_window_outside_all_steps_is_bit_equal(comfy, tiny_ckpt, base_dir, baseline):
    # 2 karras steps sample at sigma 700 and 0.002; [0.5, 0.6] of the schedule is about sigma 0.33..1.2
    assert torch.equal(run_a2f(comfy, tiny_ckpt, base_dir, start_percent=0.5, end_percent=0.6), baseline)


def test_input_model_and_other_branch_unaffected(comfy, tiny_ckpt, base_dir, baseline):
    patched = run_a2f(comfy, tiny_ckpt, base_dir, strength=1.0)
    prompt = svd_prompt(tiny_ckpt, IMAGE, a2f={"strength": 1.0}, prefix="branch_a")
    prompt["ks2"] = {**prompt["ks"], "inputs": {**prompt["ks"]["inputs"], "model": ["guid", 0]}}
    prompt["save2"] = {"class_type": "SaveLatent", "inputs": {"samples": ["ks2", 0], "filename_prefix": "latents/branch_b"}}
    hist = comfy.run(prompt)
    assert torch.equal(saved_latent(base_dir, hist, "save2"), baseline)
    # run after the patched graph, the unpatched graph re-executes on the same cached MODEL
    assert torch.equal(saved_latent(base_dir, comfy.run(svd_prompt(tiny_ckpt, IMAGE, prefix="base_again"))), baseline)
    assert not torch.equal(patched, baseline)


def test_rerunning_does_not_stack_patches(comfy, tiny_ckpt, base_dir):
    first = run_a2f(comfy, tiny_ckpt, base_dir, strength=1.0)
    half = run_a2f(comfy, tiny_ckpt, base_dir, strength=0.5)   # forces the node to execute again
    again = run_a2f(comfy, tiny_ckpt, base_dir, strength=1.0)  # same graph as `first`, re-executed
    assert torch.equal(first, again)
    assert not torch.equal(first, half)


# --- bad input -------------------------------------------------------------------------------------

def error_of(model, strength=1.0, start=0.0, end=1.0) -> str:
    with pytest.raises(ValueError) as info:
        node_class()().patch(model, strength, start, end)
    assert type(info.value).__name__ == "MotionKitInputError"
    return str(info.value)


def test_not_a_model_is_a_clear_error(comfy):
    msg = error_of("a string")
    assert "All-to-First" in msg and "'model'" in msg and "Fix:" in msg


def test_model_without_unet_is_a_clear_error(comfy):
    import comfy.model_patcher
    no_unet = comfy.model_patcher.ModelPatcher(torch.nn.Linear(2, 2), torch.device("cpu"), torch.device("cpu"))
    assert "no diffusion UNet" in error_of(no_unet)
    holder = torch.nn.Module()
    holder.diffusion_model = torch.nn.Sequential(torch.nn.Linear(4, 4))  # a network, but no UNet attention
    not_unet = comfy.model_patcher.ModelPatcher(holder, torch.device("cpu"), torch.device("cpu"))
    msg = error_of(not_unet)
    assert "no spatial self-attention" in msg and "'model'" in msg


def test_bad_window_is_a_clear_error(comfy, tiny_ckpt):
    model, _, _ = load_tiny(tiny_ckpt)
    assert "'start_percent'" in error_of(model, start=0.8, end=0.2)
    assert "'strength'" in error_of(model, strength=1.5)


def test_wrong_link_type_is_rejected_by_validation(comfy, tiny_ckpt):
    prompt = svd_prompt(tiny_ckpt, IMAGE, a2f={})
    prompt["a2f"]["inputs"]["model"] = ["ckpt", 2]  # a VAE into the model input
    ok, error, _, node_errors = comfy.validate(prompt)
    assert not ok
    details = node_errors["a2f"]["errors"][0]
    assert details["extra_info"]["input_name"] == "model"
    assert node_errors["a2f"]["class_type"] == NODE_ID
