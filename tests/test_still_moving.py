"""Still-Moving adapters on the tiny SD1.5 + motion-module model and on the tiny SVD: the merged weights
against float64 references of the adapter equations (signed alpha, alpha = 0 bit-equal, SVD time_stack),
stacking with a style LoRA in either order, the file format and its errors; and the two trainers through
ComfyUI's executor (a measured loss drop, the saved file reproducing the trained weights, progress,
interruption and bit-exact resume, training on clips) and the same code as a CLI."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from motionkit_testing import sd15
from motionkit_testing.sd15 import motion_projections, spatial_outputs, write_adapter
from motionkit_testing.comfy_session import WorkflowError
from motionkit_testing.tiny_sd15 import style_lora

REPO = Path(__file__).resolve().parents[1]
ADAPTER_NODE = "MotionKitStillMovingAdapter"


pytestmark = pytest.mark.usefixtures("one_thread")


def still_moving_dir(base_dir) -> Path:
    folder = base_dir / "models" / "still_moving"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def adapter_node():
    return sd15.node(ADAPTER_NODE)()


def capture(model, pos, neg, paths_motion=(), paths_spatial=(), frames=4, svd=None) -> tuple[dict, dict, torch.Tensor]:
    """Weights of the given projections as they are *during* sampling (after ComfyUI patched them)."""
    mod = sd15.pack_node_module("MotionKitLoadMotionModule")
    got_m, got_s = {}, {}

    def grab(*_):
        if got_m or got_s:
            return
        mp = mod.motion_patcher(model)
        for p in paths_motion:
            w = mp.model.get_submodule(p).weight if mp is not None else model.model.get_submodule(p).weight
            got_m[p] = w.detach().clone()
        for p in paths_spatial:
            m = model.model.get_submodule(p)
            got_s[p] = (m.weight.detach().clone(), m.bias.detach().clone())

    if svd is None:
        out = sd15.sample(model, pos, neg, frames=frames, steps=1, callback=grab)
    else:
        from motionkit_testing.svd import sample
        out = sample(model, pos, neg, svd, steps=1, callback=grab)
    return got_m, got_s, out


def motion_ref(w, t, p, alpha, scale):
    return w.double() + alpha * scale * (t[f"motion.{p}.lora_up.weight"].double() @ t[f"motion.{p}.lora_down.weight"].double())


def spatial_ref(w, t, p, s, scale):
    u, d = t[f"spatial.{p}.lora_up.weight"].double(), t[f"spatial.{p}.lora_down.weight"].double()
    return w.double() + s * scale * (u @ (d @ w.double().reshape(w.shape[0], -1))).reshape(w.shape)


def close(got, ref, tol=2e-6) -> bool:
    return float((got.double() - ref).abs().max() / ref.abs().max()) < tol


@pytest.fixture(scope="module")
def adapter(sd, base_dir):
    """A motion + spatial adapter (rank 2) for the tiny SD1.5 with a v2 motion module."""
    mm = sd15.with_motion(sd["model"], sd, "v2")
    path = still_moving_dir(base_dir) / "motionkit_test_adapter.safetensors"
    spatial = {p: m.weight for p, m in spatial_outputs(mm).items()}
    tensors = write_adapter(path, motion_projections(mm), spatial, rank=2)
    return {"name": path.name, "tensors": tensors, "mm": mm}


# --- applying ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("alpha", [0.7, -1.3])
def test_motion_adapter_merges_signed_alpha_exactly(sd, adapter, alpha):
    mm, t = adapter["mm"], adapter["tensors"]
    paths = sorted(motion_projections(mm))
    base = {p: w.detach().clone() for p, w in motion_projections(mm).items()}
    (patched,) = adapter_node().apply(mm, adapter["name"], alpha, 0.0)
    got, _, out = capture(patched, sd["pos"], sd["neg"], paths_motion=paths)
    assert len(got) == 21 * 2 * 3
    for p in paths:
        assert close(got[p], motion_ref(base[p], t, p, alpha, 0.5)), p
    assert (out - sd15.sample(mm, sd["pos"], sd["neg"], steps=1)).abs().max() > 1e-3
    # The input model and its motion modules are untouched afterwards.
    assert all(torch.equal(w, base[p]) for p, w in motion_projections(mm).items())


def test_alpha_zero_is_bit_equal_to_no_adapter(sd, adapter):
    mm = adapter["mm"]
    (patched,) = adapter_node().apply(mm, adapter["name"], 0.0, 0.0)
    assert torch.equal(sd15.sample(patched, sd["pos"], sd["neg"]), sd15.sample(mm, sd["pos"], sd["neg"]))
    mod = sd15.pack_node_module("MotionKitLoadMotionModule")
    assert mod.motion_patcher(patched).patches == {} and patched.patches == {}


def test_spatial_adapters_stack_with_a_style_lora_in_either_order(sd, adapter, base_dir):
    """(I + s * scale * up @ down) applied to the LoRA-patched output projections, whichever node comes first;
    the motion adapter's weights are the same in both orders too."""
    import nodes
    lora = nodes.LoraLoaderModelOnly()
    model, t = sd["model"], adapter["tensors"]
    spatial = sorted(spatial_outputs(adapter["mm"]))
    motion = sorted(motion_projections(adapter["mm"]))[:6]
    base_w = {p: (m.weight.detach().clone(), m.bias.detach().clone()) for p, m in spatial_outputs(model).items()}
    # the style LoRA's delta on an output projection, from its file: strength * alpha / rank * up @ down
    style = style_lora()
    strength = 0.8

    def lora_delta(p):
        key = "lora_unet_" + p.removeprefix("diffusion_model.").replace(".", "_")
        up, down = style[f"{key}.lora_up.weight"].double(), style[f"{key}.lora_down.weight"].double()
        return strength * float(style[f"{key}.alpha"]) / down.shape[0] * (up @ down)

    def build(order):
        m = model
        for step in order:
            if step == "lora":
                m = lora.load_lora_model_only(m, sd["lora"], strength)[0]
            elif step == "mm":
                m = sd15.node("MotionKitLoadMotionModule")().load(m, sd["v2"])[0]
            else:
                m = adapter_node().apply(m, adapter["name"], 0.4, 1.5)[0]
        return m

    runs = [capture(build(order), sd["pos"], sd["neg"], motion, spatial)
            for order in (("lora", "mm", "sm"), ("mm", "sm", "lora"))]
    (m1, s1, out1), (m2, s2, out2) = runs
    assert torch.equal(out1, out2)
    assert all(torch.equal(m1[p], m2[p]) for p in motion)
    for p in spatial:
        assert torch.equal(s1[p][0], s2[p][0]) and torch.equal(s1[p][1], s2[p][1]), p
        w, b = base_w[p]
        patched_w = w.double() + lora_delta(p)
        assert close(s1[p][0], spatial_ref(patched_w, t, p, 1.5, 0.75), 1e-5), p
        assert close(s1[p][1], spatial_ref(b, t, p, 1.5, 0.75), 1e-5), p
    # The LoRA really reached these projections (so the order question was real).
    p = spatial[0]
    assert (lora_delta(p).abs().max() > 1e-3) and not close(s1[p][0], spatial_ref(base_w[p][0], t, p, 1.5, 0.75), 1e-5)


def test_adapters_stack_with_the_other_motionkit_patches_in_any_order(sd, adapter):
    """Still-Moving (weight patches), All-to-First (spatial forwards) and Motion-Augmented Attention (motion
    modules' attention) compose: the sampled video does not depend on the order of the three nodes."""
    from motionkit_testing.pack import pack_module
    flow = torch.zeros(4, 2, 64, 64)
    flow[:, 0] = 6.0 * torch.arange(4).view(-1, 1, 1) / 3
    field = pack_module("motion_field").make_motion_field(flow)
    steps = {"sm": lambda m: adapter_node().apply(m, adapter["name"], -0.5, 1.0)[0],
             "a2f": lambda m: sd15.node("MotionKitAllToFirstAttention")().patch(m, 0.7, 0.0, 1.0)[0],
             "maa": lambda m: sd15.node("MotionKitMotionAugmentedAttention")().patch(m, field, 1.0, 0.0, 1.0)[0]}
    outs = []
    for order in (("sm", "a2f", "maa"), ("maa", "a2f", "sm"), ("a2f", "sm", "maa")):
        m = adapter["mm"]
        for name in order:
            m = steps[name](m)
        outs.append(sd15.sample(m, sd["pos"], sd["neg"]))
    assert all(torch.equal(outs[0], o) for o in outs[1:])
    only_sm = sd15.sample(steps["sm"](adapter["mm"]), sd["pos"], sd["neg"])
    assert (outs[0] - only_sm).abs().max() > 1e-3


def test_motion_adapter_on_svd_time_stack(comfy, tiny_ckpt, base_dir):
    from motionkit_testing.svd import conditioning
    model, pos, neg, latent = conditioning(tiny_ckpt, 4, 64)
    projections = motion_projections(model)
    assert len(projections) == 7 * 3                              # time_stack attn1 q/k/v of the tiny SVD
    path = still_moving_dir(base_dir) / "motionkit_test_svd.safetensors"
    t = write_adapter(path, projections, None, rank=3, scales=(0.25, 1.0), host="unet")
    base = {p: w.detach().clone() for p, w in projections.items()}
    got, _, out = capture(adapter_node().apply(model, path.name, -2.0, 1.0)[0], pos, neg, sorted(projections), svd=latent)
    for p in projections:
        assert close(got[p], motion_ref(base[p], t, p, -2.0, 0.25)), p
    from motionkit_testing.svd import sample
    plain = sample(model, pos, neg, latent, steps=1)
    assert (out - plain).abs().max() > 1e-4
    assert torch.equal(sample(adapter_node().apply(model, path.name, 0.0, 1.0)[0], pos, neg, latent, steps=1), plain)


def test_adapter_errors(sd, adapter, base_dir, tmp_path):
    node = adapter_node()
    folder = still_moving_dir(base_dir)
    mm, model = adapter["mm"], sd["model"]
    save_file(style_lora(), str(folder / "motionkit_plain_lora.safetensors"))
    with pytest.raises(ValueError, match=r"MotionKitStillMovingAdapter.*'adapter'.*not a Still-Moving adapter.*LoraLoaderModelOnly"):
        node.apply(mm, "motionkit_plain_lora.safetensors", 1.0, 1.0)
    write_adapter(folder / "motionkit_v2_file.safetensors", {"a.to_q": torch.zeros(4, 4)}, None, 2,
                  motionkit_version="2")
    with pytest.raises(ValueError, match=r"format version 2"):
        node.apply(mm, "motionkit_v2_file.safetensors", 1.0, 1.0)
    # A v2 motion adapter (it has the mid block) on a v1 motion module: named, not skipped.
    v1 = sd15.with_motion(model, sd, "v1")
    with pytest.raises(ValueError, match=r"'adapter'.*motion adapters for 6 projections this MODEL lacks.*mid_block"):
        node.apply(v1, adapter["name"], 1.0, 0.0)
    # Without a motion module there is no temporal attention for the motion part...
    with pytest.raises(ValueError, match=r"'model'.*no temporal attention.*Load Motion Module"):
        node.apply(model, adapter["name"], 1.0, 0.0)
    # ...but alpha = 0 only needs the spatial part, which fits any SD1.5 UNet.
    node.apply(model, adapter["name"], 0.0, 1.0)
    wide = {p: torch.zeros(w.shape[0], w.shape[1] * 2) for p, w in motion_projections(mm).items()}
    write_adapter(folder / "motionkit_wide.safetensors", wide, None, 2)
    with pytest.raises(ValueError, match=r"'adapter'.*whose weight is \[32, 32\]"):
        node.apply(mm, "motionkit_wide.safetensors", 1.0, 0.0)
    with pytest.raises(ValueError, match=r"'motion_alpha'.*outside \[-10.0, 10.0\]"):
        node.apply(mm, adapter["name"], 11.0, 0.0)
    with pytest.raises(ValueError, match=r"'adapter'.*not in the still_moving folders"):
        node.apply(mm, "missing.safetensors", 1.0, 0.0)


# --- training ------------------------------------------------------------------------------------------

def train_prompt(sd, kind: str, name: str, steps: int, extra: dict | None = None, **inputs) -> dict:
    p = sd15.sd15_prompt(sd, motion="v2", prefix=f"train_{name}")
    for k in ("latent", "ks", "save"):
        p.pop(k)
    common = {"adapter_name": name, "video_frames": 4, "width": 64, "height": 64, "generation_steps": 2, "cfg": 5.0,
              "rank": 4, "steps": steps, "learning_rate": 1e-2, "batch_size": 2, "seed": 3, "checkpoint_every": 0,
              "resume": False}
    if kind == "motion":
        p["train"] = {"class_type": "MotionKitTrainMotionAdapter", "inputs": {
            "model": ["mm", 0], "positive": ["pos", 0], "negative": ["neg", 0], "clips_folder": "",
            "frames_per_clip": 2, "generated_videos": 2, **common, "vae": ["ckpt", 2], **inputs}}
    else:
        p["lora"] = {"class_type": "LoraLoaderModelOnly", "inputs": {"model": ["ckpt", 0], "lora_name": sd["lora"],
                                                                     "strength_model": 1.0}}
        p["custom"] = {"class_type": "MotionKitLoadMotionModule", "inputs": {"model": ["lora", 0], "motion_module": sd["v2"]}}
        p["train"] = {"class_type": "MotionKitTrainSpatialAdapters", "inputs": {
            "model": ["custom", 0], "uncustomized_model": ["mm", 0], "positive": ["pos", 0], "negative": ["neg", 0],
            "images": 2, "prior_videos": 1, "prior_weight": 1.0, **common, **inputs}}
    p.update(extra or {})
    return p


def report_of(history: dict) -> dict:
    return json.loads(history["outputs"]["train"]["text"][0])


def checkpoint_adapters(base_dir, name: str) -> dict:
    return torch.load(still_moving_dir(base_dir) / f"{name}.resume.pt", weights_only=True)["adapters"]


def assert_file_reproduces_training(base_dir, name: str, kind: str):
    """The saved file holds exactly the trained factors (the trainer's own checkpoint of its final step
    is the independent record), with its rank, targets and base model in the metadata."""
    path = still_moving_dir(base_dir) / f"{name}.safetensors"
    tensors = load_file(str(path))
    from safetensors import safe_open
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    trained = checkpoint_adapters(base_dir, name)
    assert {k.removeprefix(f"{kind}.").rsplit(".lora_", 1)[0] for k in tensors if k.startswith(f"{kind}.")} == set(trained)
    for p, factors in trained.items():
        assert torch.equal(tensors[f"{kind}.{p}.lora_down.weight"], factors["down"])
        assert torch.equal(tensors[f"{kind}.{p}.lora_up.weight"], factors["up"])
    assert json.loads(meta["rank"])[kind] == 4 and kind in json.loads(meta["targets"])
    return tensors, meta


@pytest.mark.slow
def test_train_motion_adapter_lowers_the_loss_and_its_file_loads(comfy, sd, base_dir):
    report = report_of(comfy.run(train_prompt(sd, "motion", "motionkit_t_motion", 30)))
    before, after = report["eval_loss_before"], report["eval_loss_after"]
    print(f"\nmotion adapter, 30 steps: eval loss {before:.4f} -> {after:.4f} ({100 * (after / before - 1):+.1f}%)")
    assert after < 0.97 * before
    tensors, meta = assert_file_reproduces_training(base_dir, "motionkit_t_motion", "motion")
    base_model = json.loads(meta["base_model"])
    assert (base_model["kind"], base_model["motion_module"], base_model["layout"]) == ("sd15_motion_module", sd["v2"], "v2")
    assert json.loads(meta["scale"]) == {"motion": 1.0} and meta["motion_host"] == "motion_modules"
    # Loaded at alpha = 1 the projections are exactly the trained W + up @ down.
    mm = sd15.with_motion(sd["model"], sd, "v2")
    base = {p: w.detach().clone() for p, w in motion_projections(mm).items()}
    paths = sorted(base)[:9]
    got, _, _ = capture(adapter_node().apply(mm, "motionkit_t_motion.safetensors", 1.0, 1.0)[0], sd["pos"], sd["neg"], paths)
    for p in paths:
        assert close(got[p], motion_ref(base[p], tensors, p, 1.0, 1.0)), p


@pytest.mark.slow
def test_train_spatial_adapters_lowers_the_loss_and_its_file_loads(comfy, sd, base_dir):
    mm = sd15.with_motion(sd["model"], sd, "v2")
    write_adapter(still_moving_dir(base_dir) / "motionkit_t_fixed_motion.safetensors", motion_projections(mm), None,
                  rank=4, scales=(1.0, 1.0), seed=5)
    report = report_of(comfy.run(train_prompt(sd, "spatial", "motionkit_t_spatial", 30,
                                              motion_adapter="motionkit_t_fixed_motion.safetensors")))
    before, after = report["eval_loss_before"], report["eval_loss_after"]
    print(f"\nspatial adapters, 30 steps: eval loss {before:.4f} -> {after:.4f} ({100 * (after / before - 1):+.1f}%)")
    assert after < 0.97 * before
    tensors, meta = assert_file_reproduces_training(base_dir, "motionkit_t_spatial", "spatial")
    assert sorted(json.loads(meta["targets"])) == ["motion", "spatial"]   # the motion adapter travels along
    assert json.loads(meta["base_model"])["motion_adapter"] == "motionkit_t_fixed_motion.safetensors"
    fixed = load_file(str(still_moving_dir(base_dir) / "motionkit_t_fixed_motion.safetensors"))
    assert all(torch.equal(tensors[k], v) for k, v in fixed.items())
    # Applied on the customised model (style LoRA first) the output projections are (I + up @ down)(W + LoRA).
    import nodes
    custom = nodes.LoraLoaderModelOnly().load_lora_model_only(sd["model"], sd["lora"], 1.0)[0]
    custom = sd15.node("MotionKitLoadMotionModule")().load(custom, sd["v2"])[0]
    paths = sorted(spatial_outputs(custom))[:4]
    _, with_lora, _ = capture(custom, sd["pos"], sd["neg"], (), paths)
    _, got, _ = capture(adapter_node().apply(custom, "motionkit_t_spatial.safetensors", 0.0, 1.0)[0],
                        sd["pos"], sd["neg"], (), paths)
    for p in paths:
        assert close(got[p][0], spatial_ref(with_lora[p][0], tensors, p, 1.0, 1.0), 1e-5), p
        assert close(got[p][1], spatial_ref(with_lora[p][1], tensors, p, 1.0, 1.0), 1e-5), p


def write_clips(folder: Path, count: int = 2, frames: int = 5) -> None:
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for c in range(count):
        images = [Image.fromarray(rng.integers(0, 255, (48, 80, 3), dtype=np.uint8)) for _ in range(frames)]
        images[0].save(folder / f"clip{c}.gif", save_all=True, append_images=images[1:], duration=100, loop=0)


@pytest.mark.slow
def test_interrupted_training_resumes_to_the_same_adapter(comfy, sd, base_dir):
    """Progress is reported per step. Interrupted twice (by the interrupt flag the loop checks, at step 2, and
    by a progress hook that raises, as ComfyUI's server hook does, at step 4) and resumed each time, training
    finishes with factors bit-equal to an uninterrupted run. The data are frames of clips from a folder."""
    import comfy.model_management as management
    import comfy.utils as comfy_utils
    clips = base_dir / "input" / "motionkit_clips"
    write_clips(clips)
    inputs = {"clips_folder": "motionkit_clips", "frames_per_clip": 3}
    straight = report_of(comfy.run(train_prompt(sd, "motion", "motionkit_t_straight", 6, **inputs)))
    assert straight["eval_loss_before"] > 0 and len(checkpoint_adapters(base_dir, "motionkit_t_straight")) == 21 * 6

    seen = []

    def flag_at_2(value, total, preview, node_id=None):
        seen.append((value, total))
        if (value, total) == (2, 6):
            management.interrupt_current_processing(True)

    def raise_at_4(value, total, preview, node_id=None):
        seen.append((value, total))
        if (value, total) == (4, 6):
            raise management.InterruptProcessingException()

    previous = comfy_utils.PROGRESS_BAR_HOOK
    ckpt = still_moving_dir(base_dir) / "motionkit_t_resumed.resume.pt"
    try:
        for hook, resume, stopped_at in ((flag_at_2, False, 2), (raise_at_4, True, 4)):
            comfy_utils.set_progress_bar_global_hook(hook)
            with pytest.raises(WorkflowError):
                comfy.run(train_prompt(sd, "motion", "motionkit_t_resumed", 6, resume=resume, **inputs))
            state = torch.load(ckpt, weights_only=True)
            assert state["step"] == stopped_at and len(state["losses"]) == stopped_at and len(state["data"]) == 2 * 3
    finally:
        comfy_utils.set_progress_bar_global_hook(previous)
    assert [v for v in seen if v[1] == 6] == [(0, 6), (1, 6), (2, 6), (2, 6), (3, 6), (4, 6)]
    assert not (still_moving_dir(base_dir) / "motionkit_t_resumed.safetensors").exists()
    resumed = report_of(comfy.run(train_prompt(sd, "motion", "motionkit_t_resumed", 6, resume=True, **inputs)))
    assert resumed["resumed_at"] == 4
    a = load_file(str(still_moving_dir(base_dir) / "motionkit_t_straight.safetensors"))
    b = load_file(str(still_moving_dir(base_dir) / "motionkit_t_resumed.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["eval_loss_after"] == straight["eval_loss_after"]
    # Other settings than the checkpoint's are refused, not mixed in.
    with pytest.raises(WorkflowError, match=r"'resume'.*other settings"):
        comfy.run(train_prompt(sd, "motion", "motionkit_t_resumed", 8, resume=True, rank=2, **inputs))


def svd_train_prompt(ckpt: str, name: str, steps: int, **inputs) -> dict:
    """Image Only Checkpoint Loader -> SVD_img2vid_Conditioning -> Train Motion Adapter on SVD."""
    from motionkit_testing.svd import IMAGE
    return {
        "ckpt": {"class_type": "ImageOnlyCheckpointLoader", "inputs": {"ckpt_name": ckpt}},
        "img": {"class_type": "LoadImage", "inputs": {"image": IMAGE}},
        "cond": {"class_type": "SVD_img2vid_Conditioning", "inputs": {
            "clip_vision": ["ckpt", 1], "init_image": ["img", 0], "vae": ["ckpt", 2], "width": 64, "height": 64,
            "video_frames": 4, "motion_bucket_id": 90, "fps": 8, "augmentation_level": 0.0}},
        "train": {"class_type": "MotionKitTrainMotionAdapter", "inputs": {
            "model": ["ckpt", 0], "positive": ["cond", 0], "negative": ["cond", 1], "adapter_name": name,
            "clips_folder": "motionkit_svd_stills", "frames_per_clip": 1, "generated_videos": 1, "video_frames": 4,
            "width": 64, "height": 64, "generation_steps": 1, "cfg": 1.0, "rank": 4, "steps": steps,
            "learning_rate": 1e-2, "batch_size": 2, "seed": 3, "checkpoint_every": 0, "resume": False,
            "vae": ["ckpt", 2], "clip_vision": ["ckpt", 1], **inputs}},
    }


def write_stills(folder: Path, count: int = 3) -> list:
    """``count`` distinct 64x64 images (each one frozen video)."""
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    images = []
    for c in range(count):
        img = np.zeros((64, 64, 3), np.uint8) + rng.integers(0, 255, 3, dtype=np.uint8)
        y, x = rng.integers(8, 40, 2)
        img[y:y + 16, x:x + 16] = rng.integers(0, 255, 3, dtype=np.uint8)
        Image.fromarray(img).save(folder / f"still{c}.png")
        images.append(img)
    return images


@pytest.mark.slow
def test_train_motion_adapter_on_svd(comfy, tiny_ckpt, base_dir):
    """On SVD the trainer conditions each frozen video on its own frame (as SVD_img2vid_Conditioning does),
    with the positive's motion bucket and fps; its loss is SVD's EDM objective, checked against a float64
    reference written from the equations (ln sigma ~ N(0.7, 1.6^2), x = x0 + sigma n, loss
    (sigma^2 + 1) / sigma^2 * |D(x) - x0|^2) on the untrained adapter (a no-op); training lowers it and the
    file applies to the SVD time_stack."""
    import comfy.model_management as management
    from motionkit_testing.svd import load_tiny
    from motionkit_testing.references import edm_reference_loss
    images = write_stills(base_dir / "input" / "motionkit_svd_stills")
    report = report_of(comfy.run(svd_train_prompt(tiny_ckpt, "motionkit_t_svd", 60, learning_rate=3e-2)))
    before, after = report["eval_loss_before"], report["eval_loss_after"]
    print(f"\nSVD motion adapter, 60 steps: eval loss {before:.4f} -> {after:.4f} ({100 * (after / before - 1):+.1f}%)")
    assert after < 0.99 * before          # measured: -2.1 % (a random tiny model; its loss is mostly noise)
    tensors, meta = assert_file_reproduces_training(base_dir, "motionkit_t_svd", "motion")
    assert meta["motion_host"] == "unet" and json.loads(meta["base_model"])["kind"] == "svd"
    assert len(tensors) == 2 * 7 * 3                      # time_stack attn1 q/k/v of the tiny SVD
    state = torch.load(still_moving_dir(base_dir) / "motionkit_t_svd.resume.pt", weights_only=True)
    model, clip_vision, vae = load_tiny(tiny_ckpt)
    assert len(state["conds"]) == len(images) == len(state["data"])
    for img, latent, conds in zip(images, state["data"], state["conds"]):
        pixels = torch.from_numpy(img.astype(np.float32) / 255)[None]
        own = vae.encode(pixels)[0]
        assert latent.shape == (4, *own.shape) and all(torch.equal(f, own) for f in latent)   # frozen video
        assert conds["c_concat"].shape == latent.shape and all(torch.equal(f, own) for f in conds["c_concat"])
        embed = clip_vision.encode_image(pixels).image_embeds
        assert torch.allclose(conds["c_crossattn"][0, 0], embed[0], atol=1e-6)
        assert conds["num_video_frames"] == 4
        # the positive's motion bucket and fps (not SVD's defaults 127 / 6) in every frame's vector condition
        ours = model.model.encode_adm(fps=8, motion_bucket_id=90, augmentation_level=0.0)
        assert torch.allclose(conds["y"], ours.expand(4, -1))
        assert not torch.allclose(ours, model.model.encode_adm(fps=6, motion_bucket_id=127, augmentation_level=0.0))
    management.unload_all_models()
    # the eval loss before training: 2 draws over every frozen video, on the model without the adapter
    ref = edm_reference_loss(model, state, seed=3, draws=2)
    assert abs(ref - before) <= 1e-4 * abs(ref), (ref, before)
    from motionkit_testing.svd import conditioning, sample
    model, pos, neg, latent = conditioning(tiny_ckpt, 4, 64)
    plain = sample(model, pos, neg, latent, steps=1)
    assert torch.equal(sample(adapter_node().apply(model, "motionkit_t_svd.safetensors", 0.0, 0.0)[0], pos, neg,
                              latent, steps=1), plain)
    assert (sample(adapter_node().apply(model, "motionkit_t_svd.safetensors", 1.0, 0.0)[0], pos, neg, latent,
                   steps=1) - plain).abs().max() > 1e-5


@pytest.mark.slow
def test_interrupted_svd_training_resumes_to_the_same_adapter(comfy, tiny_ckpt, base_dir):
    """Interrupted at step 2 of 4 and resumed, SVD training (its per-frame conditions are in the checkpoint)
    ends bit-equal to an unbroken run."""
    import comfy.model_management as management
    import comfy.utils as comfy_utils
    write_stills(base_dir / "input" / "motionkit_svd_stills")
    straight = report_of(comfy.run(svd_train_prompt(tiny_ckpt, "motionkit_t_svd_straight", 4)))

    def flag_at_2(value, total, preview, node_id=None):
        if (value, total) == (2, 4):
            management.interrupt_current_processing(True)

    previous = comfy_utils.PROGRESS_BAR_HOOK
    try:
        comfy_utils.set_progress_bar_global_hook(flag_at_2)
        with pytest.raises(WorkflowError):
            comfy.run(svd_train_prompt(tiny_ckpt, "motionkit_t_svd_resumed", 4))
    finally:
        comfy_utils.set_progress_bar_global_hook(previous)
    state = torch.load(still_moving_dir(base_dir) / "motionkit_t_svd_resumed.resume.pt", weights_only=True)
    assert state["step"] == 2 and len(state["conds"]) == 3
    resumed = report_of(comfy.run(svd_train_prompt(tiny_ckpt, "motionkit_t_svd_resumed", 4, resume=True)))
    assert resumed["resumed_at"] == 2 and resumed["eval_loss_after"] == straight["eval_loss_after"]
    a = load_file(str(still_moving_dir(base_dir) / "motionkit_t_svd_straight.safetensors"))
    b = load_file(str(still_moving_dir(base_dir) / "motionkit_t_svd_resumed.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_svd_trainer_errors(comfy, tiny_ckpt, base_dir):
    from motionkit_testing.svd import conditioning, load_tiny
    model, pos, neg, _ = conditioning(tiny_ckpt, 4, 64)
    _, clip_vision, vae = load_tiny(tiny_ckpt)
    write_stills(base_dir / "input" / "motionkit_svd_stills")
    train = sd15.node("MotionKitTrainMotionAdapter")()
    args = dict(positive=pos, negative=neg, adapter_name="x", clips_folder="motionkit_svd_stills", frames_per_clip=1,
                generated_videos=1, video_frames=4, width=64, height=64, generation_steps=1, cfg=1.0, rank=2, steps=1,
                learning_rate=1e-3, batch_size=1, seed=0, checkpoint_every=0, resume=False)
    with pytest.raises(ValueError, match=r"MotionKitTrainMotionAdapter.*'clip_vision'.*CLIP vision.*Image Only Checkpoint Loader"):
        train.train(model, **args, vae=vae)
    with pytest.raises(ValueError, match=r"'vae'.*needs a VAE"):
        train.train(model, **args, clip_vision=clip_vision)
    with pytest.raises(ValueError, match=r"'clips_folder'.*empty"):
        train.train(model, **{**args, "clips_folder": " "}, vae=vae, clip_vision=clip_vision)
    text = [[torch.zeros(1, 77, 64), {}]]
    with pytest.raises(ValueError, match=r"'positive'.*SVD's image conditioning.*SVD_img2vid_Conditioning"):
        train.train(model, **{**args, "positive": text}, vae=vae, clip_vision=clip_vision)


def test_trainer_errors(comfy, sd, base_dir):
    train = sd15.node("MotionKitTrainMotionAdapter")()
    args = dict(positive=sd["pos"], negative=sd["neg"], adapter_name="x", clips_folder="", frames_per_clip=1,
                generated_videos=1, video_frames=4, width=64, height=64, generation_steps=1, cfg=1.0, rank=2, steps=1,
                learning_rate=1e-3, batch_size=1, seed=0, checkpoint_every=0, resume=False)
    with pytest.raises(ValueError, match=r"MotionKitTrainMotionAdapter.*'model'.*no temporal attention"):
        train.train(sd["model"], **args)
    mm = sd15.with_motion(sd["model"], sd, "v1")
    with pytest.raises(ValueError, match=r"'video_frames'.*25 frames exceed.*24"):
        train.train(mm, **{**args, "video_frames": 25})
    with pytest.raises(ValueError, match=r"'clips_folder'.*is not a folder"):
        train.train(mm, **{**args, "clips_folder": "no_such_folder"}, vae=sd["vae"])
    with pytest.raises(ValueError, match=r"'adapter_name'.*not a usable file name"):
        train.train(mm, **{**args, "adapter_name": "../x"})
    with pytest.raises(ValueError, match=r"'rank'.*exceeds"):
        train.train(mm, **{**args, "rank": 64})


@pytest.mark.slow
def test_cli_runs_the_same_trainer(comfy, sd, base_dir, comfy_path):
    """scripts/train_still_moving.py in its own process: ComfyUI's loaders and MotionKit's trainer node."""
    cmd = [sys.executable, str(REPO / "scripts" / "train_still_moving.py"), "motion", "--threads", "1",
           "--comfyui", str(comfy_path), "--base-directory", str(base_dir), "--cpu", "--checkpoint", sd["ckpt"], "--motion-module", sd["v2"],
           "--prompt", "a red fox", "--adapter-name", "motionkit_t_cli", "--video-frames", "4", "--width", "64",
           "--height", "64", "--generated-videos", "1", "--frames-per-clip", "2", "--generation-steps", "1",
           "--steps", "3", "--rank", "2", "--learning-rate", "0.01", "--no-resume"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["adapter"] == "motionkit_t_cli.safetensors" and report["steps"] == 3 and len(report["losses"]) == 3
    assert "step 3/3" in run.stderr
    tensors = load_file(str(still_moving_dir(base_dir) / "motionkit_t_cli.safetensors"))
    assert len(tensors) == 2 * 21 * 6


@pytest.mark.slow
def test_cli_trains_an_svd_motion_adapter(comfy, tiny_ckpt, base_dir, capsys):
    """scripts/train_still_moving.py motion without --motion-module trains on SVD (in this process, where the
    tiny test shapes are registered; its ComfyUI start-up is the SD1.5 CLI test's): Image Only Checkpoint
    Loader, SVD_img2vid_Conditioning with --motion-bucket-id / --fps, frames from --clips-folder."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("train_still_moving_cli", REPO / "scripts" / "train_still_moving.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    write_stills(base_dir / "input" / "motionkit_svd_stills")
    argv = ["motion", "--checkpoint", tiny_ckpt, "--clips-folder", "motionkit_svd_stills", "--frames-per-clip", "1",
            "--adapter-name", "motionkit_t_svd_cli", "--video-frames", "4", "--width", "64", "--height", "64",
            "--steps", "3", "--rank", "2", "--learning-rate", "0.01", "--motion-bucket-id", "90", "--no-resume"]
    args = cli.parse_args(argv)
    common = dict(adapter_name=args.adapter_name, video_frames=4, width=64, height=64, generation_steps=1, cfg=1.0,
                  rank=2, steps=3, learning_rate=0.01, batch_size=1, seed=0, checkpoint_every=0, resume=False)
    assert cli.run_node(lambda: cli.train_svd(args, common)) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["adapter"] == "motionkit_t_svd_cli.safetensors" and len(report["losses"]) == 3 and report["items"] == 3
    state = torch.load(still_moving_dir(base_dir) / "motionkit_t_svd_cli.resume.pt", weights_only=True)
    import comfy_extras.nodes_video_model as video_model
    model = video_model.ImageOnlyCheckpointLoader().load_checkpoint(tiny_ckpt)[0]
    assert torch.allclose(state["conds"][0]["y"][0], model.model.encode_adm(fps=6, motion_bucket_id=90,
                                                                            augmentation_level=0.0)[0])
    assert len(load_file(str(still_moving_dir(base_dir) / "motionkit_t_svd_cli.safetensors"))) == 2 * 7 * 3
    with pytest.raises(SystemExit):
        cli.parse_args([a for a in argv if a not in ("--clips-folder", "motionkit_svd_stills")])
    assert "--clips-folder" in capsys.readouterr().err
