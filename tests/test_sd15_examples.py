"""The SD1.5 example workflows (Still-Moving with a style LoRA; Motion-I2V stage 2) run through the real
ComfyUI HTTP server on the tiny SD1.5 model: converted from the saved UI format with /object_info, pointed
at the tiny checkpoint, motion modules, LoRA, adapter and SAM, shrunk to 64x64 and 4 frames, and their
saved videos decoded. (The generic example-workflow tests skip them: they need an image checkpoint.)"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from motionkit_testing import examples as svd_examples
from motionkit_testing import sd15
from motionkit_testing.sd15_examples import EXAMPLES, still_moving_spec
from motionkit_testing.ui_builder import build_workflow
from motionkit_testing.ui_format import ui_to_api
from motionkit_testing.workflows import TINY_RUN, adapt_to_tiny_models, load_workflow

REPO = Path(__file__).resolve().parents[1]
TEST_IMAGE = "motionkit_test.png"
FRAMES, SIZE = TINY_RUN["video_frames"], (TINY_RUN["width"], TINY_RUN["height"])


@pytest.fixture(scope="module")
def object_info(server) -> dict:
    return server.get("/object_info")


@pytest.fixture(scope="module")
def tiny_adapter(comfy, tiny_sd15, base_dir) -> str:
    """A random motion + spatial adapter for the tiny SD1.5 + v2 motion module (documented file format)."""
    model = sd15.load(tiny_sd15)[0]
    mm = sd15.with_motion(model, tiny_sd15, "v2")
    name = "motionkit_example_adapter.safetensors"
    sd15.write_adapter(base_dir / "models" / "still_moving" / name, sd15.motion_projections(mm),
                       {p: m.weight for p, m in sd15.spatial_outputs(mm).items()}, rank=2)
    return name


def tiny_prompt(path: Path, object_info: dict, tiny: dict, adapter: str, base_dir: Path) -> dict:
    from motionkit_testing.tiny_sam import ensure_tiny_sam
    prompt = adapt_to_tiny_models(ui_to_api(load_workflow(path), object_info), tiny["ckpt"], image=TEST_IMAGE)
    motion = "motion_i2v" if "motion_i2v" in path.stem else "v2"
    for node in prompt.values():
        inputs, kind = node["inputs"], node["class_type"]
        replace = {"LoraLoaderModelOnly": {"lora_name": tiny["lora"]},
                   "MotionKitLoadMotionModule": {"motion_module": tiny[motion]},
                   "MotionKitStillMovingAdapter": {"adapter": adapter, "motion_alpha": -0.5},
                   "EmptyLatentImage": {"batch_size": FRAMES},
                   "MotionKitSAMLoader": {"model_name": ensure_tiny_sam(base_dir)["pth"]}}.get(kind, {})
        inputs.update(replace)
        if "filename_prefix" in inputs:
            inputs["filename_prefix"] = f"example_workflows/{path.stem}"
    return prompt


def saved_files(entry: dict, base_dir: Path) -> list:
    return [base_dir / "output" / f.get("subfolder", "") / f["filename"]
            for out in entry["outputs"].values() for items in out.values() if isinstance(items, list)
            for f in items if isinstance(f, dict) and "filename" in f and f.get("type") == "output"]


def decode(path: Path) -> tuple:
    import av
    with av.open(str(path)) as container:
        frames = [(f.width, f.height) for f in container.decode(video=0)]
    return len(frames), frames[0]


def test_saved_examples_are_the_specs(object_info):
    """The files are what the specs build against today's node definitions, on every host (so regenerating
    changes nothing): the SD1.5 examples here and the ones of motionkit_testing/examples.py."""
    for name, spec in {**EXAMPLES, **svd_examples.EXAMPLES}.items():
        saved = load_workflow(REPO / "example_workflows" / f"{name}.json")
        assert saved == json.loads(json.dumps(build_workflow(spec(), object_info))), name
        assert (REPO / "example_workflows" / f"{name}.jpg").is_file()
    types = [n["type"] for n in still_moving_spec()]
    for needed in ("CheckpointLoaderSimple", "LoraLoaderModelOnly", "MotionKitLoadMotionModule",
                   "MotionKitStillMovingAdapter", "KSampler", "SaveWEBM"):
        assert needed in types


@pytest.mark.server
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_runs_on_the_tiny_sd15_through_http(name, server, object_info, tiny_sd15, tiny_adapter, base_dir):
    path = REPO / "example_workflows" / f"{name}.json"
    prompt = tiny_prompt(path, object_info, tiny_sd15, tiny_adapter, base_dir)
    entry = server.run(prompt)
    videos = [f for f in saved_files(entry, base_dir) if f.suffix in (".mp4", ".webm", ".mov", ".mkv")]
    assert len(videos) == 1 and videos[0].stat().st_size > 0, entry["outputs"]
    assert decode(videos[0]) == (FRAMES, SIZE)
    if name == "sd15_motion_i2v_stage2":   # the field preview ran too (one warped frame per video frame)
        preview = next(n["id"] for n in load_workflow(path)["nodes"] if n["type"] == "PreviewImage")
        assert len(entry["outputs"][str(preview)]["images"]) == FRAMES
