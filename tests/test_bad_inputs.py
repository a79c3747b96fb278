"""Malformed input that used to pass silently or fail with a raw exception (the malformed-input audit).

Each is refused with a MotionKit message that names the node, the input and the fix, through ComfyUI's real
executor wherever a workflow can carry the input: NaN in every FLOAT input with a range of every MotionKit
node (ComfyUI's own min/max check lets NaN through), an empty mask for an object that has tracks, an SVD
MODEL as the uncustomised SD1.5 model, an unreadable clip, and a Motion-I2V folder name that is not found
(the download hint at validation, not ComfyUI's generic "Value not in list"). The trainers stop on a
non-finite loss or non-finite weights with an error naming the step, and never write a non-finite file."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from motionkit_testing import sd15
from motionkit_testing.comfy_session import WorkflowError
from motionkit_testing.pack import pack_module
from motionkit_testing.sd15 import motion_projections, spatial_outputs, write_adapter
from motionkit_testing.svd import IMAGE, load_tiny
from motionkit_testing.trackadapter import arrows_json, moving_disc_clip, trainer_module
from motionkit_testing.workflows import execution_error, svd_prompt, validation_errors

NAN = float("nan")
REPO = Path(__file__).resolve().parents[1]
SIZE = 64

pytestmark = pytest.mark.usefixtures("one_thread")

# Every FLOAT input with a min/max of a MotionKit node (test_every_ranged_float_input_is_covered keeps this
# list in step with the nodes' INPUT_TYPES).
RANGED_FLOATS = [
    ("MotionKitAllToFirstAttention", "strength"),
    ("MotionKitAllToFirstAttention", "start_percent"),
    ("MotionKitAllToFirstAttention", "end_percent"),
    ("MotionKitTracksToMotionField", "boundary_softness"),
    ("MotionKitMotionAugmentedAttention", "strength"),
    ("MotionKitMotionAugmentedAttention", "start_percent"),
    ("MotionKitMotionAugmentedAttention", "end_percent"),
    ("MotionKitVisualizeMotionField", "max_magnitude"),
    ("MotionKitMotionI2VFlowPredictor", "cfg"),
    ("MotionKitApplyTrackAdapter", "lambda_bg"),
    ("MotionKitApplyTrackAdapter", "tau"),
    ("MotionKitApplyTrackAdapter", "strength"),
    ("MotionKitApplyTrackAdapter", "start_percent"),
    ("MotionKitApplyTrackAdapter", "end_percent"),
    ("MotionKitStillMovingAdapter", "motion_alpha"),
    ("MotionKitStillMovingAdapter", "spatial_strength"),
    ("MotionKitTrainMotionAdapter", "cfg"),
    ("MotionKitTrainMotionAdapter", "learning_rate"),
    ("MotionKitTrainSpatialAdapters", "cfg"),
    ("MotionKitTrainSpatialAdapters", "learning_rate"),
    ("MotionKitTrainSpatialAdapters", "prior_weight"),
]


def assert_motionkit_error(details: dict, node_type: str, input_name: str, *fragments: str) -> str:
    message = details["exception_message"]
    assert details["node_type"] == node_type, details
    assert details["exception_type"].endswith("MotionKitInputError"), details
    assert message.startswith("[MotionKit] ") and f"({node_type}), input '{input_name}':" in message, message
    assert "Fix:" in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def still_moving_dir(base_dir) -> Path:
    return base_dir / "models" / "still_moving"


# --- workflows with valid inputs, one per node -----------------------------------------------------------

def mask_nodes(name: str = "obj", value: float = 1.0) -> dict:
    """A 64x64 MASK with a 20x20 square of ``value`` at (12, 22) (value 0: an empty mask)."""
    return {
        f"{name}_bg": {"class_type": "SolidMask", "inputs": {"value": 0.0, "width": SIZE, "height": SIZE}},
        f"{name}_fg": {"class_type": "SolidMask", "inputs": {"value": value, "width": 20, "height": 20}},
        name: {"class_type": "MaskComposite", "inputs": {"destination": [f"{name}_bg", 0], "source": [f"{name}_fg", 0],
                                                        "x": 12, "y": 22, "operation": "add"}},
    }


def tracks_nodes() -> dict:
    return {
        "img": {"class_type": "LoadImage", "inputs": {"image": IMAGE}},
        **mask_nodes(),
        "tracks": {"class_type": "MotionKitArrowsToTracks", "inputs": {
            "masks": ["obj", 0], "arrows": arrows_json(), "num_frames": 4, "points_per_object": 6, "seed": 1,
            "easing": "linear", "image": ["img", 0]}},
    }


def field_prompt(prefix: str) -> dict:
    return {
        **tracks_nodes(),
        "field": {"class_type": "MotionKitTracksToMotionField", "inputs": {
            "tracks": ["tracks", 0], "masks": ["obj", 0], "boundary_softness": 4.0}},
        "view": {"class_type": "MotionKitVisualizeMotionField", "inputs": {
            "motion_field": ["field", 0], "image": ["img", 0], "max_magnitude": 0.0}},
        "save_view": {"class_type": "SaveImage", "inputs": {"images": ["view", 0], "filename_prefix": prefix}},
    }


def svd_with(ckpt: str, prefix: str, node_id: str, node: dict, extra: dict | None = None) -> dict:
    """The tiny SVD workflow with ``node`` between the CFG guidance and the sampler."""
    p = svd_prompt(ckpt, IMAGE, prefix=prefix, steps=1)
    p.update(extra or {})
    p[node_id] = node
    p["ks"]["inputs"]["model"] = [node_id, 0]
    return p


def train_prompt(sd, kind: str, name: str, **inputs) -> dict:
    """Train Motion Adapter / Train Spatial Adapters on the tiny SD1.5 + v2 motion module (1 step)."""
    p = sd15.sd15_prompt(sd, motion="v2", prefix=f"bad_{name}")
    for k in ("latent", "ks", "save"):
        p.pop(k)
    common = {"adapter_name": name, "video_frames": 4, "width": SIZE, "height": SIZE, "generation_steps": 1,
              "cfg": 5.0, "rank": 2, "steps": 1, "learning_rate": 1e-3, "batch_size": 1, "seed": 3,
              "checkpoint_every": 0, "resume": False}
    if kind == "motion":
        p["train"] = {"class_type": "MotionKitTrainMotionAdapter", "inputs": {
            "model": ["mm", 0], "positive": ["pos", 0], "negative": ["neg", 0], "clips_folder": "",
            "frames_per_clip": 1, "generated_videos": 1, **common, "vae": ["ckpt", 2]}}
    else:
        p["lora"] = {"class_type": "LoraLoaderModelOnly", "inputs": {"model": ["ckpt", 0], "lora_name": sd["lora"],
                                                                     "strength_model": 1.0}}
        p["custom"] = {"class_type": "MotionKitLoadMotionModule",
                       "inputs": {"model": ["lora", 0], "motion_module": sd["v2"]}}
        p["train"] = {"class_type": "MotionKitTrainSpatialAdapters", "inputs": {
            "model": ["custom", 0], "uncustomized_model": ["mm", 0], "motion_adapter": MOTION_ADAPTER,
            "positive": ["pos", 0], "negative": ["neg", 0], "images": 1, "prior_videos": 1, "prior_weight": 1.0,
            **common}}
    p["train"]["inputs"].update(inputs)
    return p


MOTION_ADAPTER = "motionkit_bad_inputs_motion.safetensors"
APPLY_ADAPTER = "motionkit_bad_inputs_both.safetensors"


@pytest.fixture(scope="module")
def adapter_files(sd, base_dir):
    """A motion adapter for the tiny SD1.5 + v2 motion module, and a motion + spatial one."""
    mm = sd15.with_motion(sd["model"], sd, "v2")
    folder = still_moving_dir(base_dir)
    write_adapter(folder / MOTION_ADAPTER, motion_projections(mm), None, rank=2, scales=(1.0, 1.0))
    write_adapter(folder / APPLY_ADAPTER, motion_projections(mm),
                  {p: m.weight for p, m in spatial_outputs(mm).items()}, rank=2)
    return folder


def valid_prompt(request, node_type: str, prefix: str) -> tuple[dict, str]:
    """A workflow that runs ``node_type`` (as node ``target``) with valid inputs."""
    if node_type in ("MotionKitTracksToMotionField", "MotionKitVisualizeMotionField"):
        p = field_prompt(prefix)
        return p, "field" if node_type == "MotionKitTracksToMotionField" else "view"
    if node_type == "MotionKitMotionI2VFlowPredictor":
        folder = request.getfixturevalue("tiny_motion_i2v")
        p = {
            "img": {"class_type": "LoadImage", "inputs": {"image": IMAGE}},
            "load": {"class_type": "MotionKitMotionI2VLoader", "inputs": {"model_folder": folder,
                                                                         "weight_dtype": "fp32"}},
            "target": {"class_type": node_type, "inputs": {
                "flow_model": ["load", 0], "image": ["img", 0], "prompt": "a ball rolls", "seed": 1, "steps": 1,
                "cfg": 7.0, "width": SIZE, "height": SIZE, "num_frames": 4}},
            "view": {"class_type": "MotionKitVisualizeMotionField", "inputs": {
                "motion_field": ["target", 0], "image": ["img", 0], "max_magnitude": 0.0}},
            "save": {"class_type": "SaveImage", "inputs": {"images": ["view", 0], "filename_prefix": prefix}},
        }
        return p, "target"
    if node_type in ("MotionKitTrainMotionAdapter", "MotionKitTrainSpatialAdapters"):
        sd = request.getfixturevalue("sd")
        request.getfixturevalue("adapter_files")
        kind = "motion" if node_type == "MotionKitTrainMotionAdapter" else "spatial"
        return train_prompt(sd, kind, prefix), "train"
    if node_type == "MotionKitStillMovingAdapter":
        sd = request.getfixturevalue("sd")
        request.getfixturevalue("adapter_files")
        p = sd15.sd15_prompt(sd, motion="v2", steps=1, prefix=prefix)
        p["target"] = {"class_type": node_type, "inputs": {"model": ["mm", 0], "adapter": APPLY_ADAPTER,
                                                           "motion_alpha": 1.0, "spatial_strength": 1.0}}
        p["ks"]["inputs"]["model"] = ["target", 0]
        return p, "target"
    ckpt = request.getfixturevalue("tiny_ckpt")
    if node_type == "MotionKitAllToFirstAttention":
        node = {"class_type": node_type, "inputs": {"model": ["guid", 0], "strength": 1.0, "start_percent": 0.0,
                                                    "end_percent": 1.0}}
        return svd_with(ckpt, prefix, "target", node), "target"
    if node_type == "MotionKitMotionAugmentedAttention":
        field = {k: v for k, v in field_prompt(prefix).items() if k not in ("view", "save_view", "img")}
        node = {"class_type": node_type, "inputs": {"model": ["guid", 0], "motion_field": ["field", 0],
                                                    "strength": 1.0, "start_percent": 0.0, "end_percent": 1.0}}
        return svd_with(ckpt, prefix, "target", node, field), "target"
    if node_type == "MotionKitApplyTrackAdapter":
        tracks = {k: v for k, v in tracks_nodes().items() if k != "img"}
        node = {"class_type": node_type, "inputs": {"model": ["guid", 0], "tracks": ["tracks", 0], "lambda_bg": 0.4,
                                                    "tau": 0.1, "strength": 1.0, "start_percent": 0.0,
                                                    "end_percent": 1.0, "masks": ["obj", 0]}}
        return svd_with(ckpt, prefix, "target", node, tracks), "target"
    raise AssertionError(f"no valid workflow for {node_type}: add one")


# --- NaN in every ranged FLOAT input ---------------------------------------------------------------------

def ranged_float_inputs() -> set:
    import nodes
    pack = nodes.NODE_CLASS_MAPPINGS["MotionKitAllToFirstAttention"].__module__.rsplit(".", 2)[0]
    found = set()
    for node_type, cls in nodes.NODE_CLASS_MAPPINGS.items():
        if not cls.__module__.startswith(f"{pack}.nodes."):   # the pack's nodes (not the test harness's)
            continue
        types = cls.INPUT_TYPES()
        for section in ("required", "optional"):
            for name, spec in types.get(section, {}).items():
                options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
                if spec[0] == "FLOAT" and ("min" in options or "max" in options):
                    found.add((node_type, name))
    return found


def test_every_ranged_float_input_is_covered(comfy):
    assert ranged_float_inputs() == set(RANGED_FLOATS)


@pytest.mark.parametrize("node_type, input_name", RANGED_FLOATS, ids=[f"{n}-{i}" for n, i in RANGED_FLOATS])
def test_nan_in_a_ranged_float_input_is_refused(comfy, request, base_dir, node_type, input_name):
    """ComfyUI's validation compares NaN with min/max (always false) and lets it through: the node refuses it."""
    prefix = f"nan_{node_type}_{input_name}".lower()
    prompt, target = valid_prompt(request, node_type, prefix)
    assert prompt[target]["class_type"] == node_type
    prompt[target]["inputs"][input_name] = NAN
    assert comfy.validate(prompt)[0], "ComfyUI's own validation refused NaN (then this check is redundant)"
    details = execution_error(comfy, prompt)
    assert_motionkit_error(details, node_type, input_name, "nan is outside")
    if target == "train":   # refused before anything is generated or written
        assert not (still_moving_dir(base_dir) / f"{prefix}.safetensors").exists()
        assert not (still_moving_dir(base_dir) / f"{prefix}.resume.pt").exists()


def test_nan_over_http_is_refused(server):
    """The same through ComfyUI's HTTP API (JSON allows NaN), where API clients send it."""
    prompt = field_prompt("nan_http")
    prompt["view"]["inputs"]["max_magnitude"] = NAN
    with pytest.raises(WorkflowError) as e:
        server.run(prompt)
    text = json.dumps(e.value.details)
    assert "input 'max_magnitude'" in text and "nan is outside [0.0, 4096.0]" in text, text


# --- empty masks for objects with tracks ---------------------------------------------------------------------

def test_motion_field_refuses_an_empty_mask_for_an_object_with_tracks(comfy):
    prompt = field_prompt("empty_field")
    prompt.update(mask_nodes("empty", value=0.0))
    prompt["field"]["inputs"]["masks"] = ["empty", 0]
    details = execution_error(comfy, prompt)
    assert_motionkit_error(details, "MotionKitTracksToMotionField", "masks", "mask 0 of 1 is empty",
                           "6 tracks belong to object 0")


def test_motion_field_accepts_an_empty_mask_for_an_object_without_tracks(comfy):
    import nodes
    masks = torch.zeros(2, SIZE, SIZE)
    masks[0, 22:42, 12:32] = 1
    tracks, _ = nodes.NODE_CLASS_MAPPINGS["MotionKitArrowsToTracks"]().build(
        masks[:1], arrows_json(), 4, 6, 1, "linear")["result"]
    (field,) = nodes.NODE_CLASS_MAPPINGS["MotionKitTracksToMotionField"]().predict(tracks, masks, 4.0)
    assert field["flow"][-1, 0, 30, 20] > 1.0


def test_trackadapter_refuses_an_empty_mask_for_an_object_with_tracks(comfy, tiny_ckpt):
    tracks = {k: v for k, v in tracks_nodes().items() if k != "img"}
    tracks.update(mask_nodes("empty", value=0.0))
    node = {"class_type": "MotionKitApplyTrackAdapter", "inputs": {
        "model": ["guid", 0], "tracks": ["tracks", 0], "lambda_bg": 0.4, "tau": 0.1, "strength": 1.0,
        "start_percent": 0.0, "end_percent": 1.0, "masks": ["empty", 0]}}
    details = execution_error(comfy, svd_with(tiny_ckpt, "empty_ta", "ta", node, tracks))
    assert_motionkit_error(details, "MotionKitApplyTrackAdapter", "masks", "mask 0 of 1 is empty",
                           "6 tracks belong to object 0")


# --- Still-Moving trainers ---------------------------------------------------------------------------------

def test_train_spatial_refuses_an_svd_model_as_the_uncustomized_model(comfy, sd, adapter_files, tiny_ckpt, base_dir):
    prompt = train_prompt(sd, "spatial", "bad_svd_uncustomized")
    prompt["svd"] = {"class_type": "ImageOnlyCheckpointLoader", "inputs": {"ckpt_name": tiny_ckpt}}
    prompt["train"]["inputs"]["uncustomized_model"] = ["svd", 0]
    details = execution_error(comfy, prompt)
    assert_motionkit_error(details, "MotionKitTrainSpatialAdapters", "uncustomized_model", "no motion module")
    assert not (still_moving_dir(base_dir) / "bad_svd_uncustomized.safetensors").exists()


def test_train_motion_names_an_unreadable_clip(comfy, sd, base_dir):
    from PIL import Image
    folder = base_dir / "input" / "motionkit_bad_clips"
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((48, 80, 3), np.uint8)).save(folder / "a_good.png")
    (folder / "b_broken.mp4").write_bytes(b"this is not a video" * 50)
    prompt = train_prompt(sd, "motion", "bad_clip", clips_folder="motionkit_bad_clips")
    details = execution_error(comfy, prompt)
    assert_motionkit_error(details, "MotionKitTrainMotionAdapter", "clips_folder", "b_broken.mp4")


def still_moving_module():
    return sd15.pack_node_module("MotionKitTrainMotionAdapter")


def test_a_non_finite_loss_stops_training_at_its_step(comfy, sd, base_dir, monkeypatch):
    """The loss of step 2 is NaN: the run stops there naming the step; no adapter file is written and the
    resumable checkpoint holds step 1 with finite weights."""
    mod = still_moving_module()
    real, calls = mod._diffusion_loss, []

    def loss(*args, **kwargs):
        value = real(*args, **kwargs)
        if torch.is_grad_enabled():        # training steps (the evaluations run without gradients)
            calls.append(1)
            if len(calls) == 2:
                return value * NAN
        return value

    monkeypatch.setattr(mod, "_diffusion_loss", loss)
    details = execution_error(comfy, train_prompt(sd, "motion", "bad_nan_loss", steps=4))
    assert_motionkit_error(details, "MotionKitTrainMotionAdapter", "learning_rate", "step 2 of 4", "nan")
    folder = still_moving_dir(base_dir)
    assert not (folder / "bad_nan_loss.safetensors").exists()
    state = torch.load(folder / "bad_nan_loss.resume.pt", weights_only=True)
    assert state["step"] == 1
    assert all(torch.isfinite(t).all() for m in state["adapters"].values() for t in m.values())


def test_non_finite_weights_stop_training_and_write_no_file(comfy, sd, base_dir, monkeypatch):
    """A finite loss whose gradient is NaN turns the weights into NaN at step 1: refused, nothing written."""
    mod = still_moving_module()
    real = mod._diffusion_loss

    def loss(*args, **kwargs):
        value = real(*args, **kwargs)
        if torch.is_grad_enabled():   # finite value, NaN gradient (the gradient of sqrt at -1 times 0)
            return torch.where(torch.tensor(True), value, torch.sqrt(value - value - 1.0))
        return value

    monkeypatch.setattr(mod, "_diffusion_loss", loss)
    details = execution_error(comfy, train_prompt(sd, "motion", "bad_nan_weights", steps=1))
    assert_motionkit_error(details, "MotionKitTrainMotionAdapter", "learning_rate", "after step 1 of 1")
    folder = still_moving_dir(base_dir)
    assert not (folder / "bad_nan_weights.safetensors").exists()
    assert not (folder / "bad_nan_weights.resume.pt").exists()


def test_a_non_finite_adapter_file_is_refused(comfy, sd, adapter_files):
    tensors = load_file(str(adapter_files / APPLY_ADAPTER))
    from safetensors import safe_open
    with safe_open(str(adapter_files / APPLY_ADAPTER), "pt") as f:
        meta = f.metadata()
    key = sorted(tensors)[0]
    tensors[key][0, 0] = NAN
    from safetensors.torch import save_file
    save_file(tensors, str(adapter_files / "motionkit_bad_nan_file.safetensors"), metadata=meta)
    mm = sd15.with_motion(sd["model"], sd, "v2")
    with pytest.raises(ValueError, match=r"'adapter'.*NaN or infinite values.*Fix:"):
        sd15.node("MotionKitStillMovingAdapter")().apply(mm, "motionkit_bad_nan_file.safetensors", 1.0, 1.0)


# --- TrackAdapter trainer ----------------------------------------------------------------------------------

TINY = {"encoder_channels": (4, 8, 8), "feature_channels": 8}


@pytest.fixture(scope="module")
def trackadapter_data(comfy, tiny_ckpt, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad_clips")
    moving_disc_clip(folder / "disc.safetensors", shift=3.0, seed=0)
    clips = [pack_module("trackadapter_clips").read_clip(folder / "disc.safetensors")]
    return load_tiny(tiny_ckpt), clips


@pytest.mark.parametrize("setting, value, flag", [
    ("learning_rate", NAN, "--lr"), ("learning_rate", 0.0, "--lr"), ("weight_decay", NAN, "--weight-decay"),
    ("w_attn", math.inf, "--w-attn"), ("tau", NAN, "--tau"), ("kappa", 0.0, "--kappa"),
    ("grad_clip", NAN, "--grad-clip"), ("steps", 0, "--steps"),
])
def test_trackadapter_trainer_refuses_bad_settings_before_any_work(trackadapter_data, tmp_path, monkeypatch,
                                                                   setting, value, flag):
    (model, clip_vision, vae), clips = trackadapter_data
    trainer = trainer_module()
    monkeypatch.setattr(trainer, "encode_clip", lambda *a: pytest.fail("encoded clips before checking settings"))
    settings = trainer.TrainSettings(steps=2, **TINY)
    setattr(settings, setting, value)
    with pytest.raises(trainer.TrainingError, match=rf"{flag} .*{setting}"):
        trainer.train(model, clip_vision, vae, clips, settings, out=tmp_path / "x.safetensors", log=lambda m: None)


def test_trackadapter_trainer_stops_at_a_non_finite_loss(trackadapter_data, tmp_path, monkeypatch):
    (model, clip_vision, vae), clips = trackadapter_data
    trainer = trainer_module()
    real, calls = trainer.losses, []

    def losses(*args, **kwargs):
        calls.append(1)
        loss, diffusion, attention = real(*args, **kwargs)
        return (loss * NAN, diffusion, attention) if len(calls) == 2 else (loss, diffusion, attention)

    monkeypatch.setattr(trainer, "losses", losses)
    out = tmp_path / "nan_loss.safetensors"
    settings = trainer.TrainSettings(steps=3, save_every=1, **TINY)
    with pytest.raises(trainer.TrainingError, match=r"loss .*nan.* at step 2"):
        trainer.train(model, clip_vision, vae, clips, settings, out=out, log=lambda m: None)
    # The file of step 1 stays (finite); step 2 wrote nothing.
    state = torch.load(str(trainer.checkpoint_path(out)), weights_only=True)
    assert state["step"] == 1
    assert all(torch.isfinite(t).all() for t in load_file(str(out)).values())


def test_trackadapter_trainer_stops_at_non_finite_weights_and_writes_no_file(trackadapter_data, tmp_path, monkeypatch):
    (model, clip_vision, vae), clips = trackadapter_data
    trainer = trainer_module()
    real = trainer.losses

    def losses(*args, **kwargs):
        loss, diffusion, attention = real(*args, **kwargs)
        return torch.where(torch.tensor(True), loss, torch.sqrt(loss - loss - 1.0)), diffusion, attention

    monkeypatch.setattr(trainer, "losses", losses)
    out = tmp_path / "nan_weights.safetensors"
    settings = trainer.TrainSettings(steps=1, save_every=1, grad_clip=0.0, **TINY)
    with pytest.raises(trainer.TrainingError, match=r"not finite after step 1"):
        trainer.train(model, clip_vision, vae, clips, settings, out=out, log=lambda m: None)
    assert not out.exists() and not trainer.checkpoint_path(out).exists()


def test_trackadapter_command_line_refuses_nan_before_loading_anything(comfy, comfy_path, tmp_path, monkeypatch):
    import importlib.util
    spec = importlib.util.spec_from_file_location("train_trackadapter_cli_bad_inputs",
                                                  REPO / "scripts" / "train_trackadapter.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    monkeypatch.setattr(cli, "load_svd", lambda *a: pytest.fail("loaded the checkpoint before checking the settings"))
    with pytest.raises(SystemExit) as e:   # the clips folder is empty too: the settings are checked first
        cli.main(["--checkpoint", "svd.safetensors", "--clips", str(tmp_path), "--out", str(tmp_path / "x.safetensors"),
                  "--device", "cpu", "--comfyui", str(comfy_path), "--lr", "nan"])
    assert str(e.value.code).startswith("[train_trackadapter] error: --lr (learning_rate) is nan; use a finite number")


# --- Motion-I2V folder names --------------------------------------------------------------------------------

def loader_prompt(folder: str) -> dict:
    return {
        "load": {"class_type": "MotionKitMotionI2VLoader", "inputs": {"model_folder": folder, "weight_dtype": "fp32"}},
        "pred": {"class_type": "MotionKitMotionI2VFlowPredictor", "inputs": {
            "flow_model": ["load", 0], "image": ["img", 0], "prompt": "", "seed": 1, "steps": 1, "cfg": 1.0,
            "width": SIZE, "height": SIZE, "num_frames": 4}},
        "img": {"class_type": "LoadImage", "inputs": {"image": IMAGE}},
        "view": {"class_type": "MotionKitVisualizeMotionField", "inputs": {
            "motion_field": ["pred", 0], "image": ["img", 0], "max_magnitude": 0.0}},
        "save": {"class_type": "SaveImage", "inputs": {"images": ["view", 0], "filename_prefix": "mi2v_names"}},
    }


@pytest.mark.parametrize("name", ["Motion-I2V-main", "../motion_i2v/Motion-I2V"])
def test_a_motion_i2v_folder_that_is_not_found_gets_the_download_hint(comfy, base_dir, tiny_motion_i2v, name):
    assert comfy.validate(loader_prompt(tiny_motion_i2v))[0]      # the installed folder validates
    errors = validation_errors(comfy, loader_prompt(name))
    assert "Value not in list" not in errors, errors
    assert "Load Motion-I2V Flow Predictor (MotionKitMotionI2VLoader), input 'model_folder'" in errors, errors
    assert "git clone https://huggingface.co/wangfuyun/Motion-I2V" in errors, errors
    assert str(base_dir / "models" / "motion_i2v") in errors and tiny_motion_i2v in errors, errors
