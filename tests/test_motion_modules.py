"""Load Motion Module on the tiny SD1.5 model: official key layouts (v1, v2, v3, Motion-I2V, Follow-Your-Click),
float64 references of the module and of motion-augmented attention, placement in the UNet, injection only
while sampling (also after failed and interrupted runs), v1's ResNet and output norms over the whole video
(float64 reference of official AnimateDiff v1's 5-D GroupNorms; v2/v3 stay per frame), equivalence with
frame-by-frame SD1.5 for a zero module, All-to-First and Motion-Augmented Attention on the loader's models,
coexistence with AnimateDiff-Evolved, and clear errors."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch

from motionkit_testing import sd15
from motionkit_testing.pack import pack_module
from motionkit_testing.tiny_sd15 import (WIDTH, follow_your_click_checkpoint, motion_module_shapes,
                                         motion_module_state_dict)
from motionkit_testing.workflows import saved_latent

REPO = Path(__file__).resolve().parents[1]
# Key -> shape of Motion-I2V's motion_block.bin, from the official model classes on the meta device
# (G-U-N/Motion-I2V at bc787e1, diffusers 0.11.1; no weights involved).
MANIFEST = REPO / "tests" / "data" / "motion_i2v_stage2_motion_block_manifest.json.gz"


pytestmark = pytest.mark.usefixtures("one_thread")


def nodes_module():
    return sd15.pack_node_module("MotionKitLoadMotionModule")


def unet_of(model):
    return model.model.diffusion_model


# --- layouts -----------------------------------------------------------------------------------------

def test_harness_builds_the_official_v2_layout():
    """The test files are built from AnimateDiff's configuration; at SD1.5 width the v2 builder reproduces the
    key/shape manifest of Motion-I2V's motion_block.bin (instantiated from the official code)."""
    with gzip.open(MANIFEST, "rt") as f:
        manifest = {k: tuple(v) for k, v in json.load(f).items()}
    assert motion_module_shapes("v2", 320) == manifest
    v1 = motion_module_shapes("v1", 320)
    assert not any(k.startswith("mid_block.") for k in v1) and len(v1) == 588 - 28
    assert {v[1] for k, v in v1.items() if k.endswith("pe")} == {24}


@pytest.mark.parametrize("kind,layout,max_len,sites", [
    ("v1", "v1", 24, 20), ("v2", "v2", 32, 21), ("v3", "v3", 32, 20), ("motion_i2v", "v2", 32, 21),
    ("fyc", "v1", 24, 20)])
def test_layout_is_detected_from_the_keys(kind, layout, max_len, sites, tmp_path):
    mm = pack_module("motion_module")
    if kind == "fyc":
        raw = follow_your_click_checkpoint(seed=4)
        path = tmp_path / "fyc.ckpt"
    else:
        raw = motion_module_state_dict("v2" if kind == "motion_i2v" else kind, seed=1)
        path = tmp_path / f"{kind}.bin"
    torch.save(raw, path)
    modules = mm.motion_module_set(mm.read_weights(str(path)))
    spec = modules.spec
    assert (spec.layout, spec.max_len, len(spec.sites), spec.heads) == (layout, max_len, sites, 8)
    assert spec.joint_norms == (layout == "v1")    # official v1 configs: use_inflated_groupnorm false
    assert [c for _, c in spec.sites][:2] == [WIDTH, WIDTH] and dict(spec.sites)["up_blocks.0.motion_modules.0"] == 4 * WIDTH
    # The non-motion keys of the Follow-Your-Click UNet (9-channel conv_in, fps/motion embeddings, spatial
    # layers) are not part of the set; every motion tensor is, bit for bit.
    flat = raw["state_dict"] if kind == "fyc" else raw
    motion = {k.removeprefix("module."): v for k, v in flat.items() if ".motion_modules." in k}
    loaded = modules.state_dict()
    assert set(loaded) == set(motion)
    assert all(torch.equal(loaded[k], v) for k, v in motion.items())


# --- the module against its equations ----------------------------------------------------------------

def test_injected_module_matches_float64_reference_with_cond_uncond_layout(sd):
    """One injected slot on a batch of 2 videos (cond and uncond halves) x 4 frames equals AnimateDiff's
    module computed in float64 from the file's tensors, video by video."""
    mod = nodes_module()
    sdict = motion_module_state_dict("v2", seed=11)
    modules = pack_module("motion_module").motion_module_set(sdict)
    site = "up_blocks.1.motion_modules.2"
    slot = mod.MotionModuleSlot(site, modules.get_submodule(site))
    c = dict(modules.spec.sites)[site]
    x = torch.randn(2 * 4, c, 3, 5, generator=torch.Generator().manual_seed(0))
    options = {"cond_or_uncond": [0, 1], mod.KEY: mod.MotionOptions("t", 32)}
    with torch.no_grad():
        got = slot(x, options)
    ref = sd15.motion_module64(x, sdict, site + ".", frames=4)
    assert sd15.rel_err(got, ref) < 1e-5
    # Frames really are grouped per half: mixing the halves would change the result.
    with torch.no_grad():
        as_one_video = slot(x, {"cond_or_uncond": [0], mod.KEY: mod.MotionOptions("t", 32)})
    assert (as_one_video - got).abs().max() > 1e-3


# --- sampling ----------------------------------------------------------------------------------------

def expected_slots(has_mid: bool) -> dict:
    """Where the issue says the modules go: after each SpatialTransformer in input blocks 1, 2, 4, 5, 7, 8,
    after the ResBlock in 10, 11, between the mid block's transformer and second ResBlock (v2), and in every
    output block after its layers but before an Upsample."""
    slots = {("input_blocks", i): f"down_blocks.{(i - 1) // 3}.motion_modules.{(i - 1) % 3}" for i in (1, 2, 4, 5, 7, 8, 10, 11)}
    slots.update({("output_blocks", i): f"up_blocks.{i // 3}.motion_modules.{i % 3}" for i in range(12)})
    if has_mid:
        slots[("middle_block", 0)] = "mid_block.motion_modules.0"
    return slots


def slot_layout(unet) -> dict:
    from comfy.ldm.modules.attention import SpatialTransformer
    from comfy.ldm.modules.diffusionmodules.openaimodel import ResBlock, Upsample
    mod = nodes_module()
    found = {}
    blocks = [("input_blocks", i, b) for i, b in enumerate(unet.input_blocks)] + [("middle_block", 0, unet.middle_block)]
    blocks += [("output_blocks", i, b) for i, b in enumerate(unet.output_blocks)]
    for kind, i, block in blocks:
        layers = list(block)
        at = [j for j, m in enumerate(layers) if isinstance(m, mod.MotionModuleSlot)]
        if not at:
            continue
        assert len(at) == 1, (kind, i)
        j = at[0]
        before, after = layers[j - 1], layers[j + 1:]
        assert isinstance(before, (SpatialTransformer, ResBlock)), (kind, i, type(before))
        if kind == "middle_block":
            assert isinstance(before, SpatialTransformer) and len(after) == 1 and isinstance(after[0], ResBlock)
        else:
            assert all(isinstance(m, Upsample) for m in after), (kind, i, after)
        found[(kind, i)] = layers[j].site
    return found


@pytest.mark.parametrize("layout", ["v1", "v2", "fyc", "motion_i2v"])
def test_modules_are_in_the_unet_only_while_sampling(sd, layout):
    model = sd["model"]
    keys = {k: v.shape for k, v in unet_of(model).state_dict().items()}
    mm = sd15.with_motion(model, sd, layout)
    seen = []
    out = sd15.sample(mm, sd["pos"], sd["neg"], callback=lambda *a: seen.append(slot_layout(unet_of(mm))))
    has_mid = layout in ("v2", "motion_i2v")
    assert len(seen) == 2 and all(s == expected_slots(has_mid) for s in seen)
    assert slot_layout(unet_of(model)) == {}
    assert {k: v.shape for k, v in unet_of(model).state_dict().items()} == keys
    plain = sd15.sample(model, sd["pos"], sd["neg"])
    assert out.shape == plain.shape == (4, 4, 8, 8)
    assert (out - plain).abs().max() > 1e-3           # the frames were mixed


def test_modules_leave_after_failed_and_interrupted_sampling(sd):
    import comfy.model_management
    model = sd["model"]
    mm = sd15.with_motion(model, sd, "v1")

    def interrupt(step, *a):
        assert slot_layout(unet_of(mm))                # injected while it runs
        raise comfy.model_management.InterruptProcessingException()

    with pytest.raises(comfy.model_management.InterruptProcessingException):
        sd15.sample(mm, sd["pos"], sd["neg"], callback=interrupt)
    assert slot_layout(unet_of(model)) == {}
    # A run that fails inside the UNet (25 frames for a 24-position module) also leaves it clean, with an
    # error that names the node, the input and the limit.
    with pytest.raises(ValueError, match=r"MotionKitLoadMotionModule.*'motion_module'.*25 frames.*at most 24"):
        sd15.sample(mm, sd["pos"], sd["neg"], frames=25, steps=1)
    assert slot_layout(unet_of(model)) == {}
    # And the model still samples normally afterwards.
    assert torch.equal(sd15.sample(mm, sd["pos"], sd["neg"]), sd15.sample(mm, sd["pos"], sd["neg"]))


@pytest.mark.parametrize("layout", ["v1", "v2"])
def test_through_the_executor_the_video_differs_and_the_unet_is_restored(comfy, sd, base_dir, layout):
    plain = saved_latent(base_dir, comfy.run(sd15.sd15_prompt(sd, motion=None, prefix=f"mm_plain_{layout}")))
    video = saved_latent(base_dir, comfy.run(sd15.sd15_prompt(sd, motion=layout, prefix=f"mm_{layout}")))
    again = saved_latent(base_dir, comfy.run(sd15.sd15_prompt(sd, motion=None, prefix=f"mm_plain2_{layout}", seed=7)))
    assert video.shape == plain.shape == (4, 4, 8, 8)
    assert (video - plain).abs().max() > 1e-3
    assert torch.equal(again, plain)   # sampling the plain model after the video one: no module left behind


# --- AnimateDiff v1: the ResNet blocks' and the output's GroupNorms over the whole video ------------------
#
# Official AnimateDiff v1 (use_inflated_groupnorm: false; Follow-Your-Click leaves that default) runs the
# image UNet on (B, C, F, H, W): ResnetBlock3D's norm1/norm2 and the UNet's conv_norm_out are plain
# torch.nn.GroupNorm on that 5-D tensor (each group's statistics over all F frames of a video), while the
# spatial transformers' and the motion modules' norms rearrange to (b f) c h w first. v2, v3 and Motion-I2V
# normalise every layer per frame.

@torch.no_grad()
def group_norm_over_videos64(x: torch.Tensor, norm, videos: int) -> torch.Tensor:
    """GroupNorm of (B*F, C, H, W) with each group's mean and variance over the frames, channels of the group
    and positions of one video, float64, then the layer's per-channel affine. ``videos = B*F`` is per frame."""
    bf, c, h, w = x.shape
    g = norm.num_groups
    v = x.double().reshape(videos, bf // videos, g, c // g, h, w)
    mean = v.mean(dim=(1, 3, 4, 5), keepdim=True)
    var = v.var(dim=(1, 3, 4, 5), unbiased=False, keepdim=True)
    v = ((v - mean) / torch.sqrt(var + norm.eps)).reshape(bf, c, h, w)
    return v * norm.weight.double().view(1, c, 1, 1) + norm.bias.double().view(1, c, 1, 1)


@torch.no_grad()
def conv64(conv, x):
    return torch.nn.functional.conv2d(x, conv.weight.double(), conv.bias.double(), conv.stride, conv.padding)


@torch.no_grad()
def resblock64(block, x, emb, videos: int) -> torch.Tensor:
    """ResnetBlock3D (AnimateDiff ``resnet.py``): norm1, SiLU, conv1, + time embedding, norm2, SiLU, conv2,
    + shortcut, with the two norms over ``videos`` videos; on ComfyUI's ResBlock weights."""
    silu = torch.nn.functional.silu
    h = conv64(block.in_layers[2], silu(group_norm_over_videos64(x, block.in_layers[0], videos)))
    lin = block.emb_layers[1]
    h = h + torch.nn.functional.linear(silu(emb.double()), lin.weight.double(), lin.bias.double())[..., None, None]
    h = conv64(block.out_layers[3], silu(group_norm_over_videos64(h, block.out_layers[0], videos)))
    skip = block.skip_connection
    return (x.double() if isinstance(skip, torch.nn.Identity) else conv64(skip, x.double())) + h


@torch.no_grad()
def output64(out, x, videos: int) -> torch.Tensor:
    """conv_norm_out (over ``videos`` videos), SiLU, conv_out."""
    return conv64(out[2], torch.nn.functional.silu(group_norm_over_videos64(x, out[0], videos)))


def official_joint_norms(unet) -> set:
    """ResnetBlock3D.norm1/norm2 of every down, mid and up block and conv_norm_out, on ComfyUI's UNet."""
    from comfy.ldm.modules.diffusionmodules.openaimodel import ResBlock
    blocks = [m for m in unet.modules() if isinstance(m, ResBlock)]
    assert len(blocks) == 2 * 4 + 2 + 3 * 4     # SD1.5: 2 per down block, 2 in the mid block, 3 per up block
    return {id(n) for b in blocks for n in (b.in_layers[0], b.out_layers[0])} | {id(unet.out[0])}


def capture_io(module, calls: list):
    return module.register_forward_hook(lambda m, args, out: calls.append((tuple(a.detach().clone() for a in args),
                                                                             out.detach().clone())))


def sample_capturing(model, sd, frames: int = 4):
    """Sample ``model`` and return the first call's inputs/outputs of a ResBlock with a 1x1 shortcut (input
    block 4: 32 -> 64 channels) and of the UNet's output layers, plus the hooked norms seen while it ran."""
    mod = nodes_module()
    unet = unet_of(model)
    res, out, hooked = [], [], []
    handles = [capture_io(unet.input_blocks[4][0], res), capture_io(unet.out, out)]
    try:
        sd15.sample(model, sd["pos"], sd["neg"], frames=frames, steps=1,
                    callback=lambda *a: hooked.append({id(m) for m, _ in mod.joint_norm_hooks(unet)}))
    finally:
        for h in handles:
            h.remove()
    assert not isinstance(unet.input_blocks[4][0].skip_connection, torch.nn.Identity)
    return res[0], out[0], hooked


@pytest.mark.parametrize("layout", ["v1", "fyc"])
def test_v1_resnet_and_output_norms_match_float64_reference_over_each_video(sd, layout):
    """While a v1-layout module samples, a ResBlock and the output layers equal official AnimateDiff v1 computed
    in float64: their GroupNorms take statistics over all frames of each cond/uncond video (4 frames x 2
    videos), and only the official set of norms does (not the spatial transformers' or the motion modules')."""
    model = sd["model"]
    unet = unet_of(model)
    mm = sd15.with_motion(model, sd, layout)
    ((x, emb), got), ((h,), got_out), hooked = sample_capturing(mm, sd)
    assert x.shape[0] == 8                      # cond and uncond in one batch: two videos of 4 frames
    block = unet.input_blocks[4][0]
    ref, ref_out = resblock64(block, x, emb, videos=2), output64(unet.out, h, videos=2)
    assert sd15.rel_err(got, ref) < 1e-5 and sd15.rel_err(got_out, ref_out) < 1e-5
    # Not vacuous: per-frame norms (the previous behaviour, and v2/v3's) or one 8-frame video are far off.
    for videos in (8, 1):
        assert sd15.rel_err(resblock64(block, x, emb, videos), ref) > 1e-2
        assert sd15.rel_err(output64(unet.out, h, videos), ref_out) > 1e-2
    assert hooked and all(s == official_joint_norms(unet) for s in hooked)


@pytest.mark.parametrize("layout", ["v2", "v3", "motion_i2v"])
def test_v2_v3_and_motion_i2v_keep_per_frame_norms(sd, layout):
    """use_inflated_groupnorm (v2, v3) and Motion-I2V: nothing is added to the norms, the ResBlock and output
    layers equal the per-frame float64 reference, and the run is bit-equal to one without the v1 machinery."""
    mod = nodes_module()
    model = sd["model"]
    unet = unet_of(model)
    mm = sd15.with_motion(model, sd, layout)
    assert mm.get_wrappers(comfy_wrappers().DIFFUSION_MODEL, mod.KEY) == []
    ((x, emb), got), ((h,), got_out), hooked = sample_capturing(mm, sd)
    assert hooked and all(s == set() for s in hooked)
    assert sd15.rel_err(got, resblock64(unet.input_blocks[4][0], x, emb, videos=8)) < 1e-5
    assert sd15.rel_err(got_out, output64(unet.out, h, videos=8)) < 1e-5


def comfy_wrappers():
    import comfy.patcher_extension
    return comfy.patcher_extension.WrappersMP


def test_v1_joint_norms_use_the_layers_own_cast_forward(comfy, sd):
    """A UNet stored in float16 and computed in float32 (ComfyUI's manual-cast ops: every layer casts its
    weights per call, as in low-VRAM mode) gets the same joint norms through each layer's own forward."""
    import comfy.sd
    import folder_paths
    path = folder_paths.get_full_path("checkpoints", sd["ckpt"])
    cast = comfy.sd.load_checkpoint_guess_config(path, output_vae=False, output_clip=False,
                                                 model_options={"dtype": torch.float16})[0]
    unet = unet_of(cast)
    norm = unet.input_blocks[4][0].in_layers[0]
    assert cast.model.manual_cast_dtype == torch.float32 and norm.weight.dtype == torch.float16
    assert norm.comfy_cast_weights
    mm = sd15.with_motion(cast, sd, "v1")
    ((x, emb), got), ((h,), got_out), hooked = sample_capturing(mm, sd)
    assert x.dtype == torch.float32 and hooked and all(s == official_joint_norms(unet) for s in hooked)
    assert sd15.rel_err(got, resblock64(unet.input_blocks[4][0], x, emb, videos=2)) < 1e-5
    assert sd15.rel_err(got_out, output64(unet.out, h, videos=2)) < 1e-5
    assert nodes_module().joint_norm_hooks(unet) == []


def norm_state(unet) -> list:
    """Every GroupNorm of the UNet with its hooks: (path, module id, pre-hooks, hooks)."""
    return [(name, id(m), len(m._forward_pre_hooks), len(m._forward_hooks)) for name, m in unet.named_modules()
            if isinstance(m, torch.nn.GroupNorm)]


def test_v1_joint_norms_leave_after_sampling_errors_and_interrupts(sd):
    """The hooks live exactly as long as the injection: gone after a run, a failed run and an interrupted run,
    the norms are the checkpoint's own modules without hooks, and the image model samples bit-equal to before."""
    import comfy.model_management
    mod = nodes_module()
    model = sd["model"]
    unet = unet_of(model)
    before = norm_state(unet)
    assert all(pre == post == 0 for *_, pre, post in before)
    plain = sd15.sample(model, sd["pos"], sd["neg"])
    mm = sd15.with_motion(model, sd, "v1")
    assert len(mm.get_wrappers(comfy_wrappers().DIFFUSION_MODEL, mod.KEY)) == 1
    assert model.get_wrappers(comfy_wrappers().DIFFUSION_MODEL, mod.KEY) == []   # the input MODEL is untouched

    video = sd15.sample(mm, sd["pos"], sd["neg"])
    assert norm_state(unet) == before and mod.joint_norm_hooks(unet) == []

    def interrupt(step, *a):
        assert len(mod.joint_norm_hooks(unet)) == 2 * 22 + 1     # present while it runs
        raise comfy.model_management.InterruptProcessingException()

    with pytest.raises(comfy.model_management.InterruptProcessingException):
        sd15.sample(mm, sd["pos"], sd["neg"], callback=interrupt)
    assert norm_state(unet) == before
    with pytest.raises(ValueError, match=r"25 frames.*at most 24"):
        sd15.sample(mm, sd["pos"], sd["neg"], frames=25, steps=1)
    assert norm_state(unet) == before
    assert torch.equal(sd15.sample(model, sd["pos"], sd["neg"]), plain)
    assert torch.equal(sd15.sample(mm, sd["pos"], sd["neg"]), video)
    # The image model that Still-Moving trains on drops the video-count wrapper with the modules.
    assert mod.without_motion_modules(mm).get_wrappers(comfy_wrappers().DIFFUSION_MODEL, mod.KEY) == []


def test_zero_motion_module_equals_sd15_frame_by_frame(sd):
    """proj_out = 0 makes every module the identity: the video is SD1.5 sampled on each frame alone with the
    same noise (bit-equal to the batched image model, equal to float rounding frame by frame)."""
    model = sd["model"]
    mm = sd15.with_motion(model, sd, "zero")
    noise = sd15.noise_for(4, seed=5)
    video = sd15.sample(mm, sd["pos"], sd["neg"], noise=noise, seed=5)
    assert torch.equal(video, sd15.sample(model, sd["pos"], sd["neg"], noise=noise, seed=5))
    frames = torch.cat([sd15.sample(model, sd["pos"], sd["neg"], noise=noise[i:i + 1], seed=5) for i in range(4)])
    assert sd15.rel_err(video, frames.double()) < 1e-5      # batched vs single-frame matmul rounding only
    assert (video[1:] - video[:1]).abs().max() > 1e-2   # distinct frames, so the comparison is not vacuous


# --- the other MotionKit patches on the loader's models ------------------------------------------------

def test_all_to_first_on_the_loader_model(sd):
    a2f = sd15.node("MotionKitAllToFirstAttention")()
    model = sd["model"]
    zero = sd15.with_motion(model, sd, "zero")
    # With identity modules, All-to-First on the loader's model is All-to-First on SD1.5 exactly...
    on_loader = sd15.sample(a2f.patch(zero, 1.0, 0.0, 1.0)[0], sd["pos"], sd["neg"])
    on_image_model = sd15.sample(a2f.patch(model, 1.0, 0.0, 1.0)[0], sd["pos"], sd["neg"])
    assert torch.equal(on_loader, on_image_model)
    assert (on_loader - sd15.sample(zero, sd["pos"], sd["neg"])).abs().max() > 1e-3
    # ...and with real modules both patches act: the result differs from either one alone.
    mm = sd15.with_motion(model, sd, "v2")
    both = sd15.sample(a2f.patch(mm, 1.0, 0.0, 1.0)[0], sd["pos"], sd["neg"])
    assert (both - sd15.sample(mm, sd["pos"], sd["neg"])).abs().max() > 1e-3
    assert (both - on_image_model).abs().max() > 1e-3
    assert slot_layout(unet_of(model)) == {} and model.object_patches == {}


def field(frames: int, dx: float = 8.0, size: int = sd15.SIZE):
    flow = torch.zeros(frames, 2, size, size)
    flow[:, 0] = dx * torch.arange(frames).view(-1, 1, 1) / max(frames - 1, 1)
    return pack_module("motion_field").make_motion_field(flow)


@pytest.mark.parametrize("strength", [1.0, 0.6])
def test_motion_augmented_attention_matches_float64_reference(sd, strength):
    """Motion-I2V stage 2 in a motion module: frame 0 splatted by the field and interleaved with the frames,
    the module's sinusoidal encoding over the 2F-1 interleaved positions, queries at the real frames."""
    from motionkit_testing.references import naive_avg_splat
    mod = nodes_module()
    sdict = motion_module_state_dict("v2", seed=12)
    modules = pack_module("motion_module").motion_module_set(sdict)
    site = "down_blocks.1.motion_modules.0"
    slot = mod.MotionModuleSlot(site, modules.get_submodule(site))
    b, t, h, w, c = 2, 4, 3, 4, dict(modules.spec.sites)[site]
    g = torch.Generator().manual_seed(1)
    flow = 1.3 * torch.randn(t, 2, h, w, generator=g)
    flow[0] = 0
    fmod = sd15.pack_node_module("MotionKitMotionAugmentedAttention")

    class Open:
        def active(self, transformer_options):
            return True

    spec = mod.AugmentSpec(fmod.FlowPyramid(flow), strength, Open())
    x = torch.randn(b * t, c, h, w, generator=g)
    with torch.no_grad():
        got = slot(x, {"cond_or_uncond": [0, 1], mod.KEY: mod.MotionOptions("t", 32, spec)})

    def interleave(tokens, hh, ww):   # (B*HW, F, C) float64, spatial positions row-major
        bh, frames, ch = tokens.shape
        out = []
        for v in range(bh // (hh * ww)):
            tok = tokens[v * hh * ww:(v + 1) * hh * ww]
            frame0 = tok[:, 0].reshape(hh, ww, ch).permute(2, 0, 1).numpy()
            cols = [tok[:, 0]]
            for f in range(1, frames):
                warped = torch.from_numpy(naive_avg_splat(frame0, flow[f].double().numpy()))
                cols += [warped.permute(1, 2, 0).reshape(hh * ww, ch), tok[:, f]]
            out.append(torch.stack(cols, 1))
        return torch.cat(out)

    ref = sd15.motion_module64(x, sdict, site + ".", frames=t, interleave=interleave, strength=strength)
    assert sd15.rel_err(got, ref) < 1e-5


def test_motion_augmented_attention_in_sampling(sd, monkeypatch):
    maa = sd15.node("MotionKitMotionAugmentedAttention")()
    mm = sd15.with_motion(sd["model"], sd, "motion_i2v")
    base = sd15.sample(mm, sd["pos"], sd["neg"])
    fmod = sd15.pack_node_module("MotionKitMotionAugmentedAttention")
    resized = []
    original = fmod.resize_flow
    monkeypatch.setattr(fmod, "resize_flow", lambda f, h, w: resized.append((h, w)) or original(f, h, w))
    (patched,) = maa.patch(mm, field(4), 1.0, 0.0, 1.0)
    moved = sd15.sample(patched, sd["pos"], sd["neg"])
    assert (moved - base).abs().max() > 1e-3
    assert sorted(set(resized)) == sorted(resized) == [(1, 1), (2, 2), (4, 4), (8, 8)]   # once per resolution
    assert torch.equal(sd15.sample(maa.patch(mm, field(4), 0.0, 0.0, 1.0)[0], sd["pos"], sd["neg"]), base)
    assert torch.equal(sd15.sample(maa.patch(mm, field(4), 1.0, 0.5, 0.6)[0], sd["pos"], sd["neg"]), base)
    assert torch.equal(sd15.sample(mm, sd["pos"], sd["neg"]), base)   # the input MODEL is unaffected
    assert mm.model_options["transformer_options"][nodes_module().KEY].augment is None


def test_motion_augmented_attention_frame_limits(sd):
    maa = sd15.node("MotionKitMotionAugmentedAttention")()
    v2 = sd15.with_motion(sd["model"], sd, "v2")
    v1 = sd15.with_motion(sd["model"], sd, "v1")
    maa.patch(v2, field(16), 1.0, 0.0, 1.0)                      # 31 interleaved positions fit in 32
    with pytest.raises(ValueError, match=r"'motion_field'.*17 frames.*33 positions.*at most 32.*at most 16 frames"):
        maa.patch(v2, field(17), 1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match=r"'motion_field'.*13 frames.*25 positions.*at most 24.*at most 12 frames"):
        maa.patch(v1, field(13), 1.0, 0.0, 1.0)
    (patched,) = maa.patch(v2, field(4), 1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match=r"'motion_field'.*4 frames but the video has 6"):
        sd15.sample(patched, sd["pos"], sd["neg"], frames=6, steps=1)
    assert slot_layout(unet_of(sd["model"])) == {}


# --- coexistence and errors ------------------------------------------------------------------------------

def test_no_node_id_collides_with_animatediff_evolved_and_nothing_is_monkeypatched(sd):
    import nodes
    import comfy.model_patcher
    import comfy.samplers
    from comfy.ldm.modules.diffusionmodules import openaimodel
    ade = json.loads((REPO / "tests" / "data" / "animatediff_evolved_node_ids.json").read_text())
    ours = {k for k, v in nodes.NODE_CLASS_MAPPINGS.items() if "ComfyUI-MotionKit" in (v.__module__ or "")}
    assert {"MotionKitLoadMotionModule", "MotionKitStillMovingAdapter"} <= ours
    assert all(k.startswith("MotionKit") for k in ours)
    assert not ours & set(ade["node_ids"])
    # ComfyUI's own functions are still ComfyUI's after loading and sampling with motion modules.
    sd15.sample(sd15.with_motion(sd["model"], sd, "v2"), sd["pos"], sd["neg"], steps=1)
    comfy_root = str(Path(openaimodel.__file__).resolve().parents[4])
    for fn in (openaimodel.forward_timestep_embed, openaimodel.TimestepEmbedSequential.forward,
               comfy.model_patcher.ModelPatcher.inject_model, comfy.model_patcher.ModelPatcher.patch_model,
               comfy.samplers.CFGGuider.outer_sample, comfy.samplers.calc_cond_batch):
        assert str(Path(fn.__code__.co_filename).resolve()).startswith(comfy_root), fn


def test_errors_name_the_node_input_and_fix(sd, tmp_path, base_dir):
    loader = sd15.node("MotionKitLoadMotionModule")()
    folder = base_dir / "models" / "animatediff_models"
    bad = {
        "motionkit_not_mm.safetensors": ({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(4, 4, 3, 3)},
                                          r"contains no AnimateDiff motion-module keys"),
        "motionkit_sdxl_mm.safetensors": ({k: v for k, v in motion_module_state_dict("v2").items()
                                           if not k.startswith(("down_blocks.3.", "up_blocks.3."))}, r"SDXL"),
        "motionkit_bad_shape.safetensors": ({**motion_module_state_dict("v1"),
                                             "down_blocks.0.motion_modules.0.temporal_transformer.proj_in.weight":
                                                 torch.zeros(3, 3)}, r"has shape \[3, 3\]"),
    }
    from safetensors.torch import save_file
    for name, (tensors, message) in bad.items():
        save_file(tensors, str(folder / name))
        with pytest.raises(ValueError, match=rf"MotionKitLoadMotionModule.*'motion_module'.*{message}.*Fix:"):
            loader.load(sd["model"], name)
    (folder / "motionkit_text.ckpt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"'motion_module'.*could not be read as weights"):
        loader.load(sd["model"], "motionkit_text.ckpt")
    torch.save({"state_dict": motion_module_state_dict("v1"), "callback": Path("/tmp")}, folder / "motionkit_pickle.ckpt")
    with pytest.raises(ValueError, match=r"without running pickled code"):
        loader.load(sd["model"], "motionkit_pickle.ckpt")
    with pytest.raises(ValueError, match=r"'motion_module'.*not in the animatediff_models folders"):
        loader.load(sd["model"], "missing.ckpt")
    with pytest.raises(ValueError, match=r"'model'.*expected a MODEL"):
        loader.load("not a model", sd["v2"])
    wide = motion_module_state_dict("v2", width=64)
    save_file(wide, str(folder / "motionkit_wide.safetensors"))
    with pytest.raises(ValueError, match=r"'motion_module'.*has 64 channels at down_blocks.0.motion_modules.0 but the UNet has 32"):
        loader.load(sd["model"], "motionkit_wide.safetensors")


def test_svd_model_is_refused(comfy, tiny_ckpt, sd):
    from motionkit_testing.svd import load_tiny
    svd, _, _ = load_tiny(tiny_ckpt)
    with pytest.raises(ValueError, match=r"'model'.*(SD1.5 UNet layout|already has temporal layers)"):
        sd15.node("MotionKitLoadMotionModule")().load(svd, sd["v2"])


def test_first_frame_latent_keeps_frame_0_on_the_image(sd, tiny_ckpt):   # tiny_ckpt writes the test image
    import comfy.sample
    import nodes
    image = nodes.LoadImage().load_image("motionkit_test.png")[0]
    (latent,) = sd15.node("MotionKitFirstFrameLatent")().encode(sd["vae"], image, 64, 64, 4)
    encoded = sd["vae"].encode(image[..., :3])
    assert torch.equal(latent["samples"][0], encoded[0]) and not latent["samples"][1:].any()
    assert latent["noise_mask"].shape == (4, 1, 8, 8)
    assert not latent["noise_mask"][0].any() and latent["noise_mask"][1:].eq(1).all()
    mm = sd15.with_motion(sd["model"], sd, "v2")
    noise = comfy.sample.prepare_noise(latent["samples"], 3)
    video = comfy.sample.sample(mm, noise, 2, sd15.CFG, "euler", "karras", sd["pos"], sd["neg"], latent["samples"],
                                denoise=1.0, noise_mask=latent["noise_mask"], seed=3, disable_pbar=True)
    assert torch.allclose(video[0], encoded[0], rtol=1e-5, atol=1e-5)
    assert (video[1:] - encoded[0]).abs().amax(dim=(1, 2, 3)).min() > 1e-2
    with pytest.raises(ValueError, match=r"'width'.*not a multiple of 8"):
        sd15.node("MotionKitFirstFrameLatent")().encode(sd["vae"], image, 60, 64, 4)
