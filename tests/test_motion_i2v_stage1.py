"""Motion-I2V stage 1 (the diffusion motion-field predictor): the official state-dict layout, the sampling
and control equations against float64 references, and the loader + predictor through ComfyUI's executor
on tiny seeded-random model folders in the official file layout."""
from __future__ import annotations

import gzip
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from motionkit_testing.assets import write_test_image
from motionkit_testing.comfy_session import WorkflowError
from motionkit_testing.pack import pack_module
from motionkit_testing.tiny_models import random_init_
from motionkit_testing.tiny_motion_i2v import (flowgen_state_dicts, parameter_count, tiny_config, tiny_parts,
                                               write_model_folder, zero_control_embedding)

fg = pack_module("flowgen")
pipe = pack_module("flowgen_pipeline")
tracks_mod = pack_module("tracks")
converters = pack_module("track_converters")

MANIFEST = Path(__file__).resolve().parent / "data" / "motion_i2v_stage1_manifest.json.gz"
IMAGE = "motionkit_mi2v.png"
SIZE, FRAMES = 64, 3
BIN = "Motion-I2V"       # the conftest tiny_motion_i2v folder: .bin files, seed 0


@pytest.fixture(scope="module", autouse=True)
def one_intra_op_thread():
    """These tensors are tiny: a second intra-op thread only adds synchronisation, which costs about ten
    times the computation on a busy 2-core machine (measured: 2.5 s vs 0.24 s CPU per predictor run)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def official_manifest() -> dict:
    return json.loads(gzip.decompress(MANIFEST.read_bytes()))


# --- the official architecture -----------------------------------------------------------------------------

def test_official_configuration_reproduces_the_manifests_exactly():
    m = official_manifest()
    unet = {k: tuple(v) for k, v in m["unet"].items()}
    control = {k: tuple(v) for k, v in m["controlnet"].items()}
    assert len(unet) == 1278 and len(control) == 584
    assert parameter_count(unet) == 1_316_000_644 and parameter_count(control) == 567_212_352
    built = fg.expected_shapes(fg.OFFICIAL, with_controlnet=True)       # meta device: no memory
    assert built == {**unet, **control}
    # and the configuration is read back from the shapes alone
    cfg = fg.infer_config(unet)
    assert cfg == fg.OFFICIAL
    assert fg.infer_control_config(cfg, {k[len("controlnet."):]: v for k, v in control.items()}) == fg.OFFICIAL


def test_tiny_configuration_is_inferred_from_its_checkpoint():
    unet, control = flowgen_state_dicts()
    cfg = fg.infer_control_config(fg.infer_config(unet), {k[len("controlnet."):]: v for k, v in control.items()})
    assert cfg == tiny_config()
    assert cfg.block_out_channels == (32, 32, 64, 64) and cfg.motion_max_len == 8 and cfg.control_hidden == 16


def test_layout_check_names_missing_unexpected_and_misshapen_keys():
    unet, control = flowgen_state_dicts()
    control = {k[len("controlnet."):]: v for k, v in control.items()}
    bad = dict(unet)
    bad["stride_embed.linear_1.weight"] = bad.pop("stride_embedding.linear_2.weight")
    bad["conv_out.bias"] = torch.zeros(5)
    with pytest.raises(fg.CheckpointLayoutError) as err:
        fg.build_from_state_dict(bad, control)
    e = err.value
    assert e.part == "unet" and e.missing == ["stride_embedding.linear_2.weight"]
    assert e.unexpected == ["stride_embed.linear_1.weight"] and e.mismatched[0].startswith("conv_out.bias [5]")
    control.pop("controlnet_mid_block.bias")
    with pytest.raises(fg.CheckpointLayoutError) as err:
        fg.build_from_state_dict(unet, control)
    assert err.value.part == "controlnet" and err.value.missing == ["controlnet_mid_block.bias"]
    # the sinusoidal position tables may be absent: they are rebuilt from the formula, at the official
    # length (32) since the length cannot be read from them; their first rows are the same table
    no_pe = {k: v for k, v in unet.items() if not k.endswith("pos_encoder.pe")}
    model = fg.build_from_state_dict(no_pe, None)
    pe = model.down_blocks[0].motion_modules[0].temporal_transformer.transformer_blocks[0].attention_blocks[0].pos_encoder.pe
    tiny_pe = unet["down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.pos_encoder.pe"]
    assert pe.shape == (1, 32, 32) and tiny_pe.shape == (1, 8, 32) and torch.equal(pe[:, :8], tiny_pe)


# --- mechanisms in float64 ----------------------------------------------------------------------------------

def two_level_config():
    """A smaller variant for the float64 checks (also shows the code is not tied to four levels)."""
    return replace(tiny_config(), block_out_channels=(32, 64), attention_levels=(True, False),
                   motion_down=(True, True), motion_up=(True, True))


def tiny_unet_f64(seed=3, with_controlnet=True):
    model = fg.FlowGenUNet(two_level_config(), with_controlnet=with_controlnet)
    random_init_(model, seed)
    return model.double().eval()


def test_frame_embedding_is_time_plus_the_frames_own_stride():
    model = tiny_unet_f64(with_controlnet=False)
    strides = torch.tensor([8.0, 16.0, 24.0])
    emb = fg.frame_embedding(model.time_embedding, model.stride_embedding, torch.tensor(481.0), strides, 2, torch.float64)

    def proj(x):   # diffusers Timesteps(flip_sin_to_cos=True, downscale_freq_shift=0), float64
        half = 16
        arg = x * 10000.0 ** (-torch.arange(half, dtype=torch.float64) / half)
        return torch.cat([torch.cos(arg), torch.sin(arg)])

    def mlp(e, v):
        return e.linear_2(F.silu(e.linear_1(v)))

    with torch.no_grad():
        for b in range(2):
            for f, s in enumerate(strides.tolist()):
                ref = mlp(model.time_embedding, proj(481.0)) + mlp(model.stride_embedding, proj(s))
                # the projection is computed in float32 as diffusers does: angles up to 481 rad
                torch.testing.assert_close(emb[b * 3 + f], ref, rtol=0, atol=1e-4)


def unet_inputs(frames=3, batch=2, seed=0, size=4):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch * frames, 8, size, size, generator=g, dtype=torch.float64)
    ctx = torch.randn(batch, 5, 32, generator=g, dtype=torch.float64)
    control = torch.randn(batch * frames, 5, size, size, generator=g, dtype=torch.float64)
    return x, torch.tensor(501.0), torch.tensor([8.0, 16.0, 24.0][:frames]), ctx, control


def test_frames_interact_only_through_the_motion_modules():
    """With every motion module's output projection at zero (AnimateDiff's initialisation) each frame is
    an independent SD UNet pass with its own stride: permuting frames and strides permutes the output."""
    model = tiny_unet_f64(with_controlnet=False)
    x, t, strides, ctx, _ = unet_inputs(batch=1)
    with torch.no_grad():
        full = model(x, t, strides, ctx, 3)
        for name, p in model.named_parameters():
            if "temporal_transformer.proj_out" in name:
                p.zero_()
        plain = model(x, t, strides, ctx, 3)
        perm = [2, 0, 1]
        torch.testing.assert_close(model(x[perm], t, strides[perm], ctx, 3), plain[perm], rtol=1e-10, atol=1e-10)
        assert (model(x, t, strides[perm], ctx, 3) - plain).abs().max() > 1e-3      # strides matter per frame
    assert (full - plain).abs().max() > 1e-3                                          # the motion modules matter


def test_controlnet_enters_only_through_its_zero_convolutions_and_conditioning_embedding():
    model = tiny_unet_f64()
    x, t, strides, ctx, control = unet_inputs(frames=2, batch=1)
    with torch.no_grad():
        alone = model(x, t, strides, ctx, 2, control=None)
        controlled = model(x, t, strides, ctx, 2, control=control)
        assert (controlled - alone).abs().max() > 1e-3
        # a zero conditioning embedding (its init): the control image cannot reach the network
        last = model.controlnet.controlnet_cond_embedding.layers[2]
        saved = last.weight.clone(), last.bias.clone()
        last.weight.zero_(), last.bias.zero_()
        assert torch.equal(model(x, t, strides, ctx, 2, control=control), model(x, t, strides, ctx, 2, control=-control))
        last.weight.copy_(saved[0]), last.bias.copy_(saved[1])
        # zero-convolutions at zero (their init): the ControlNet adds exactly nothing
        for conv in [*model.controlnet.controlnet_down_blocks, model.controlnet.controlnet_mid_block]:
            conv.weight.zero_(), conv.bias.zero_()
        assert torch.equal(model(x, t, strides, ctx, 2, control=control), alone)


def test_ddim_schedule_is_the_official_scheduler_configuration():
    assert pipe.ddim_timesteps(25) == [961 - 40 * k for k in range(25)]           # leading spacing + steps_offset 1
    assert pipe.ddim_timesteps(2) == [501, 1]
    betas = [0.00085 + (0.012 - 0.00085) * i / 999 for i in range(1000)]          # "linear"
    ref = np.cumprod([1 - b for b in betas])
    torch.testing.assert_close(pipe.alphas_cumprod(), torch.from_numpy(ref), rtol=1e-12, atol=0)
    sl = np.cumprod([1 - (0.00085 ** 0.5 + (0.012 ** 0.5 - 0.00085 ** 0.5) * i / 999) ** 2 for i in range(1000)])
    torch.testing.assert_close(pipe.alphas_cumprod("scaled_linear"), torch.from_numpy(sl), rtol=1e-12, atol=0)


def test_ddim_given_the_true_noise_lands_on_the_clean_latent():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(3, 4, 5, 5, generator=g, dtype=torch.float64)
    noise = torch.randn(3, 4, 5, 5, generator=g, dtype=torch.float64)
    a = pipe.alphas_cumprod()
    start = pipe.ddim_timesteps(25)[0]
    x_t = a[start].sqrt() * x0 + (1 - a[start]).sqrt() * noise
    steps = []
    out = pipe.ddim_sample(lambda x, t: noise, x_t, 25, steps.append)
    assert steps == list(range(25))
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-10)
    assert pipe.guided(torch.tensor(1.0), torch.tensor(3.0), 7.0) == 15.0


def app_sparse_control(paths, radius, width, height, brush_painted):
    """scripts/app.py Drag.run (l.517-610) and forward_sample (l.451-465), transcribed: tracks already at
    the model's frame count; float64 numpy."""
    length = paths.shape[0]
    brush = np.asarray(brush_painted, np.float64).copy()
    painted = brush > 0.5
    brush[painted], brush[~painted] = 0, 1
    brush = np.zeros_like(brush) if (brush == 1).all() else brush
    drag = np.zeros((length - 1, height, width, 2))
    mask = np.zeros((length - 1, height, width, 1))
    for n in range(paths.shape[1]):
        track = paths[:, n]
        for i in range(length - 1):
            start, end = track[0], track[i + 1]
            rows = slice(max(int(start[1]) - radius, 0), int(start[1]) + radius)
            cols = slice(max(int(start[0]) - radius, 0), int(start[0] + radius))
            drag[i, rows, cols, 0] = end[0] - start[0]
            drag[i, rows, cols, 1] = end[1] - start[1]
            mask[i, rows, cols] = 1
    drag[..., 0] /= width
    drag[..., 1] /= height
    drag = drag * (1 - brush[None, :, :, None])
    mask = np.where(brush[None, :, :, None] > 0, 1, mask)
    drag = (drag + 1) / 2
    sparse = (drag - 0.5) * mask + 0.5
    return sparse.transpose(0, 3, 1, 2), mask.transpose(0, 3, 1, 2)


def test_sparse_control_and_motion_brush_follow_the_app():
    width, height, radius = 40, 24, 3
    paths = np.array([[[10.4, 8.7], [30.2, 15.1]], [[13.0, 9.5], [28.0, 14.0]], [[17.9, 12.2], [25.5, 11.0]]])
    brush = np.zeros((height, width))
    brush[:, :22] = 1.0                       # painted: may move; the right part (second track) is held still
    ts = tracks_mod.TrackSet(paths, np.ones(paths.shape[:2], bool), np.arange(2), width, height)
    sparse = converters.sparse_flow(ts, radius)
    static = pipe.static_region(torch.from_numpy(brush).float(), height, width)
    got, mask = pipe.sparse_control_images(sparse["flow"], sparse["mask"], static, 2)
    ref, ref_mask = app_sparse_control(paths, radius, width, height, brush)
    torch.testing.assert_close(got.double(), torch.from_numpy(ref), rtol=0, atol=1e-6)
    assert torch.equal(mask.double(), torch.from_numpy(ref_mask))
    # no tracks and no brush: every pixel "unobserved" (0.5, mask 0), as the app's empty control
    empty, empty_mask = pipe.sparse_control_images(None, None, pipe.static_region(None, height, width), 2)
    assert torch.equal(empty, torch.full((2, 2, height, width), 0.5)) and not empty_mask.any()
    # an empty brush lets everything move (the app's all-ones special case)
    assert not pipe.static_region(torch.zeros(1, height, width), height, width).any()
    # the mask at latent size is the official nearest interpolation
    m = (torch.rand(3, 1, 32, 48, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    official = F.interpolate(m.permute(1, 0, 2, 3)[None], scale_factor=(1, 1 / 8, 1 / 8))[0].permute(1, 0, 2, 3)
    assert torch.equal(pipe.mask_at_latent_size(m), official)


def test_decoded_flow_becomes_pixels_with_a_still_frame_zero():
    g = torch.Generator().manual_seed(2)
    decoded = torch.rand(3, 2, 16, 24, generator=g, dtype=torch.float64) * 1.4 - 0.2     # a little outside [0, 1]
    static = torch.zeros(16, 24, dtype=torch.float64)
    static[:, 20:] = 1
    flow = pipe.flow_from_decoded(decoded, static)
    ref = np.clip(decoded.numpy() * 2 - 1, -1, 1) * (1 - static.numpy())
    ref[:, 0] *= 24
    ref[:, 1] *= 16
    assert flow.shape == (4, 2, 16, 24) and not flow[0].any()
    torch.testing.assert_close(flow[1:].double(), torch.from_numpy(ref), rtol=0, atol=1e-5)


def test_text_contexts_of_different_lengths_batch_without_changing_cross_attention():
    g = torch.Generator().manual_seed(4)
    long, short = (torch.randn(1, n, 8, generator=g, dtype=torch.float64) for n in (154, 77))   # 2 chunks vs 1
    pair = pipe.cross_attention_pair(long, short)
    assert pair.shape == (2, 154, 8) and torch.equal(pair[0], long[0])
    q = torch.randn(1, 5, 8, generator=g, dtype=torch.float64)
    torch.testing.assert_close(F.scaled_dot_product_attention(q, pair[1:], pair[1:]),
                               F.scaled_dot_product_attention(q, short, short), rtol=0, atol=1e-12)


def test_track_resampling_and_strides():
    path = np.array([[[0.0, 0.0]], [[3.0, 6.0]]])
    out = pipe.resample_track_frames(path, 4)
    np.testing.assert_allclose(out[:, 0], [[0, 0], [1, 2], [2, 4], [3, 6]])
    assert pipe.resample_track_frames(out, 4) is out
    assert pipe.frame_strides(16) == list(range(8, 121, 8))              # app.py l.467
    noise = pipe.initial_noise(5, 3, 16, 24)
    full = torch.randn((1, 8, 3, 2, 3), generator=torch.Generator().manual_seed(5))
    assert torch.equal(noise, full[0, :4].transpose(0, 1))


# --- through ComfyUI ----------------------------------------------------------------------------------------

def drop_some_keys(sd):
    sd = dict(sd)
    sd["stride_embed.linear_1.weight"] = sd.pop("stride_embedding.linear_1.weight")
    del sd["conv_out.bias"]
    return sd


@pytest.fixture(scope="module")
def folders(comfy, base_dir, tiny_motion_i2v):
    """The session's tiny folder (.bin files, seed 0) is the reference; variants of the same weights here."""
    assert tiny_motion_i2v == BIN
    root = base_dir / "models" / "motion_i2v"
    write_test_image(base_dir / "input" / IMAGE)
    parts = tiny_parts(seed=0)
    write_model_folder(root / "TinySafetensors", parts, "safetensors", unet_prefix="module.")
    write_model_folder(root / "TinyZeroControl", {**parts, "controlnet": zero_control_embedding(parts["controlnet"])})
    write_model_folder(root / "TinyNoControlNet", {k: v for k, v in parts.items() if k != "controlnet"})
    write_model_folder(root / "TinyWrongKeys", {**parts, "unet": drop_some_keys(parts["unet"])})
    write_model_folder(root / "TinyMissingFlowVae", {k: v for k, v in parts.items() if k != "vae_flow"})
    yield root
    for name in ("TinySafetensors", "TinyZeroControl", "TinyNoControlNet", "TinyWrongKeys", "TinyMissingFlowVae"):
        shutil.rmtree(root / name, ignore_errors=True)


def mask_nodes(prefix, x, y, w, h):
    return {
        f"{prefix}_bg": {"class_type": "SolidMask", "inputs": {"value": 0.0, "width": SIZE, "height": SIZE}},
        f"{prefix}_fg": {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": w, "height": h}},
        prefix: {"class_type": "MaskComposite", "inputs": {"destination": [f"{prefix}_bg", 0], "source": [f"{prefix}_fg", 0],
                                                          "x": x, "y": y, "operation": "add"}},
    }


def predictor_prompt(folder, seed=1, tracks=False, brush=False, prefix="mi2v", cfg=7.0):
    p = {
        "img": {"class_type": "LoadImage", "inputs": {"image": IMAGE}},
        "load": {"class_type": "MotionKitMotionI2VLoader", "inputs": {"model_folder": folder, "weight_dtype": "fp32"}},
        "pred": {"class_type": "MotionKitMotionI2VFlowPredictor", "inputs": {
            "flow_model": ["load", 0], "image": ["img", 0], "prompt": "a yellow ball rolls to the right", "seed": seed,
            "steps": 2, "cfg": cfg, "width": SIZE, "height": SIZE, "num_frames": FRAMES, "track_radius": 4}},
        "view": {"class_type": "MotionKitVisualizeMotionField", "inputs": {
            "motion_field": ["pred", 0], "image": ["img", 0], "max_magnitude": 0.0}},
        "save": {"class_type": "SaveImage", "inputs": {"images": ["view", 0], "filename_prefix": prefix}},
    }
    if tracks:
        p.update(mask_nodes("obj", 12, 22, 20, 20))
        arrows = {"version": 1, "width": SIZE, "height": SIZE,
                  "arrows": [{"object": 0, "points": [[22.0, 32.0], [40.0, 26.0]]}]}
        p["tracks"] = {"class_type": "MotionKitArrowsToTracks", "inputs": {
            # more frames than the field: the predictor resamples the tracks in time
            "masks": ["obj", 0], "arrows": json.dumps(arrows), "num_frames": 5, "points_per_object": 4,
            "seed": 1, "easing": "linear", "image": ["img", 0]}}
        p["pred"]["inputs"]["tracks"] = ["tracks", 0]
    if brush:
        p.update(mask_nodes("brush", 8, 16, 32, 24))
        p["pred"]["inputs"]["brush_mask"] = ["brush", 0]
    return p


def run_field(comfy, prompt):
    """Run the prompt; return the predictor's MOTION_FIELD (the executor's output cache) and the history."""
    history = comfy.run(prompt)
    field = comfy.output("pred")
    return field, history


@pytest.fixture(scope="module")
def bin_run(comfy, folders):
    """The session folder (.bin), seed 1, no tracks, no brush: the reference run."""
    return run_field(comfy, predictor_prompt(BIN, prefix="mi2v_bin"))


def test_predictor_runs_the_official_layout_from_bin_and_safetensors(comfy, bin_run):
    field, hist = bin_run
    flow = field["flow"]
    assert field["version"] == 1 and (field["width"], field["height"]) == (SIZE, SIZE)
    assert flow.shape == (FRAMES, 2, SIZE, SIZE) and flow.dtype == torch.float32
    assert torch.isfinite(flow).all() and not flow[0].any()
    assert all(flow[t].abs().max() > 1e-3 for t in range(1, FRAMES))
    assert flow.abs().max() <= SIZE                                   # |decoded*2-1| <= 1, times the size
    assert len(hist["outputs"]["save"]["images"]) == FRAMES           # one flow picture per frame
    # the same weights as safetensors (with a module. prefix): an independent load and run, same seed
    same, _ = run_field(comfy, predictor_prompt("TinySafetensors", prefix="mi2v_st"))
    assert torch.equal(same["flow"], flow)
    other, _ = run_field(comfy, predictor_prompt(BIN, seed=2, prefix="mi2v_seed2"))
    assert (other["flow"] - flow).abs().max() > 1e-3


def test_the_image_vae_receives_the_image_in_0_1(comfy, bin_run):
    """As the official pipeline: the stage-1 image VAE encodes the picture in [0, 1], not ComfyUI's
    usual [-1, 1] (and the flow VAE's sparse-control images, in [0, 1] with 0.5 = no motion)."""
    import nodes

    model = comfy.output("load")
    seen = {}

    def record(name):
        def hook(_module, args):
            seen[name] = (float(args[0].min()), float(args[0].max()))
        return hook

    hooks = [model.image_vae.first_stage_model.encoder.register_forward_pre_hook(record("image")),
             model.flow_vae.first_stage_model.encoder.register_forward_pre_hook(record("flow"))]
    ramp = torch.linspace(0, 1, SIZE)
    image = torch.stack([ramp[None, :].expand(SIZE, SIZE), ramp[:, None].expand(SIZE, SIZE),
                         torch.full((SIZE, SIZE), 0.5)], dim=-1)[None]
    try:
        with torch.inference_mode():   # as the executor runs nodes
            nodes.NODE_CLASS_MAPPINGS["MotionKitMotionI2VFlowPredictor"]().predict(
                model, image, "a ball", 1, 1, 1.0, SIZE, SIZE, FRAMES)
    finally:
        for h in hooks:
            h.remove()
    lo, hi = seen["image"]
    assert lo == pytest.approx(0.0, abs=1e-3) and hi == pytest.approx(1.0, abs=1e-3)
    lo, hi = seen["flow"]
    assert 0.0 <= lo and hi <= 1.0


def test_tracks_steer_the_field_through_the_controlnet(comfy, bin_run):
    free = bin_run[0]
    steered, _ = run_field(comfy, predictor_prompt(BIN, tracks=True, prefix="mi2v_tracks"))
    assert (steered["flow"] - free["flow"]).abs().max() > 1e-2
    # a zero conditioning embedding (a ControlNet at its initialisation): tracks change nothing
    zero_free, _ = run_field(comfy, predictor_prompt("TinyZeroControl", prefix="mi2v_zfree"))
    zero_steered, _ = run_field(comfy, predictor_prompt("TinyZeroControl", tracks=True, prefix="mi2v_ztracks"))
    assert torch.equal(zero_steered["flow"], zero_free["flow"])
    assert (zero_free["flow"] - free["flow"]).abs().max() > 1e-3     # the two folders differ only in that conv


def test_motion_brush_holds_the_unpainted_region_still(comfy, folders):
    field, _ = run_field(comfy, predictor_prompt(BIN, brush=True, prefix="mi2v_brush"))
    flow = field["flow"]
    painted = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    painted[16:40, 8:40] = True
    assert not flow[:, :, ~painted].any()
    assert flow[1:, :, painted].abs().max() > 1e-3


def error_of(comfy, prompt) -> str:
    with pytest.raises(WorkflowError) as err:
        comfy.run(prompt)
    return str(err.value.details.get("exception_message", err.value.details))


def test_wrong_keys_are_reported_with_what_is_missing_and_unexpected(comfy, folders):
    msg = error_of(comfy, predictor_prompt("TinyWrongKeys", prefix="mi2v_wrong"))
    assert "Load Motion-I2V Flow Predictor" in msg and "model_folder" in msg and "Fix:" in msg
    assert "missing key(s)" in msg and "stride_embedding.linear_1.weight" in msg and "conv_out.bias" in msg
    assert "unexpected key(s): stride_embed.linear_1.weight" in msg
    assert "wangfuyun/Motion-I2V" in msg


def test_missing_files_say_what_to_download_and_where(comfy, folders, base_dir):
    msg = error_of(comfy, predictor_prompt("TinyMissingFlowVae", prefix="mi2v_missing"))
    assert "models/stage1/StableDiffusion-FlowGen/vae_flow/diffusion_pytorch_model.bin" in msg
    assert "git clone https://huggingface.co/wangfuyun/Motion-I2V" in msg
    assert str(base_dir / "models" / "motion_i2v" / "TinyMissingFlowVae") in msg


def test_tracks_without_a_controlnet_are_refused(comfy, folders):
    field, _ = run_field(comfy, predictor_prompt("TinyNoControlNet", prefix="mi2v_noctrl", cfg=1.0))   # one branch
    assert field["flow"].shape == (FRAMES, 2, SIZE, SIZE)
    msg = error_of(comfy, predictor_prompt("TinyNoControlNet", tracks=True, prefix="mi2v_noctrl_tracks"))
    assert "input 'tracks'" in msg and "ControlNet" in msg and "controlnet.bin" in msg


def test_frame_count_is_bounded_by_the_motion_modules(comfy, folders):
    prompt = predictor_prompt(BIN, prefix="mi2v_frames")
    prompt["pred"]["inputs"]["num_frames"] = 10                     # the tiny position table has 8 entries
    msg = error_of(comfy, prompt)
    assert "input 'num_frames'" in msg and "2 to 9" in msg
