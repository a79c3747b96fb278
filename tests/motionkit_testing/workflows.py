"""API-format prompts for the tests, and the UI-to-API conversion of saved workflows."""
from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file

# The UI-to-API conversion of saved workflows lives in ui_format (its rules are documented there and
# checked against the real frontend by tests/test_example_workflows.py); re-exported for the callers.
from .ui_format import ui_to_api  # noqa: F401


def svd_prompt(ckpt: str, image: str, *, frames: int = 4, width: int = 64, height: int = 64, steps: int = 2,
               seed: int = 7, cfg: float = 2.5, a2f: dict | None = None, prefix: str = "mk") -> dict:
    """ImageOnlyCheckpointLoader -> SVD conditioning -> [All-to-First] -> KSampler -> SaveLatent."""
    p = {
        "ckpt": {"class_type": "ImageOnlyCheckpointLoader", "inputs": {"ckpt_name": ckpt}},
        "img": {"class_type": "LoadImage", "inputs": {"image": image}},
        "cond": {"class_type": "SVD_img2vid_Conditioning", "inputs": {
            "clip_vision": ["ckpt", 1], "init_image": ["img", 0], "vae": ["ckpt", 2], "width": width,
            "height": height, "video_frames": frames, "motion_bucket_id": 127, "fps": 6, "augmentation_level": 0.0}},
        "guid": {"class_type": "VideoLinearCFGGuidance", "inputs": {"model": ["ckpt", 0], "min_cfg": 1.0}},
        "ks": {"class_type": "KSampler", "inputs": {
            "model": ["guid", 0], "seed": seed, "steps": steps, "cfg": cfg, "sampler_name": "euler",
            "scheduler": "karras", "positive": ["cond", 0], "negative": ["cond", 1], "latent_image": ["cond", 2],
            "denoise": 1.0}},
        "save": {"class_type": "SaveLatent", "inputs": {"samples": ["ks", 0], "filename_prefix": f"latents/{prefix}"}},
    }
    if a2f is not None:
        p["a2f"] = {"class_type": "MotionKitAllToFirstAttention", "inputs": {
            "model": ["guid", 0], "strength": 1.0, "start_percent": 0.0, "end_percent": 1.0, **a2f}}
        p["ks"]["inputs"]["model"] = ["a2f", 0]
    return p


def with_square_object(p: dict, arrows: str, frames: int = 4) -> dict:
    """Add to an :func:`svd_prompt` a 20x20 square object mask at (12, 22) on the 64x64 image (core mask
    nodes, as ``mask``) and Arrows to Trajectories moving it by ``arrows`` (as ``tracks``)."""
    p.update({
        "bg": {"class_type": "SolidMask", "inputs": {"value": 0.0, "width": 64, "height": 64}},
        "fg": {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 20, "height": 20}},
        "mask": {"class_type": "MaskComposite", "inputs": {"destination": ["bg", 0], "source": ["fg", 0],
                                                          "x": 12, "y": 22, "operation": "add"}},
        "tracks": {"class_type": "MotionKitArrowsToTracks", "inputs": {
            "masks": ["mask", 0], "arrows": arrows, "num_frames": frames, "points_per_object": 6,
            "seed": 1, "easing": "linear", "image": ["img", 0]}},
    })
    return p


def saved_latent(base: Path, history: dict, node: str = "save"):
    """The tensor a SaveLatent node wrote in this run."""
    info = history["outputs"][node]["latents"][0]
    path = base / "output" / info["subfolder"] / info["filename"]
    return load_file(str(path))["latent_tensor"]


def load_workflow(path: Path) -> dict:
    return json.loads(Path(path).read_text())


TINY_RUN = {"width": 64, "height": 64, "video_frames": 4, "num_frames": 4, "steps": 2}


def _rescale_document(text: str, width: int, height: int) -> str:
    """A MotionKit points/arrows JSON document (``version``, ``width``, ``height``) redrawn at another
    size: every [x, y] pair scaled, so it keeps pointing at the same places of the resized image."""
    try:
        doc = json.loads(text)
    except (TypeError, ValueError):
        return text
    if not (isinstance(doc, dict) and "version" in doc and "width" in doc and "height" in doc):
        return text
    sx, sy = width / doc["width"], height / doc["height"]

    def scale(value):
        if isinstance(value, list) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
            return [value[0] * sx, value[1] * sy]
        if isinstance(value, list) and len(value) == 3 and all(isinstance(v, (int, float)) for v in value[:2]) \
                and (value[2] is None or isinstance(value[2], int)):
            return [value[0] * sx, value[1] * sy, value[2]]   # arrows v2: [x, y, frame]
        if isinstance(value, list) and len(value) == 4 and all(isinstance(v, (int, float)) for v in value):
            return [value[0] * sx, value[1] * sy, value[2] * sx, value[3] * sy]   # a box
        if isinstance(value, list):
            return [scale(v) for v in value]
        if isinstance(value, dict):
            return {k: scale(v) for k, v in value.items()}
        return value
    body = {k: scale(v) for k, v in doc.items() if k not in ("version", "width", "height")}
    return json.dumps({"version": doc["version"], "width": width, "height": height, **body})


def adapt_to_tiny_models(prompt: dict, ckpt: str, image: str | None = None, run: dict = TINY_RUN) -> dict:
    """Point an API prompt at the tiny random test checkpoint and shrink it to tiny sizes (a copy); pixel
    documents (click points, arrows) are rescaled to the tiny image."""
    out = json.loads(json.dumps(prompt))
    for node in out.values():
        inputs = node["inputs"]
        if node["class_type"] in ("ImageOnlyCheckpointLoader", "CheckpointLoaderSimple"):
            inputs["ckpt_name"] = ckpt
        if node["class_type"] == "LoadImage" and image is not None:
            inputs["image"] = image
        for key, value in run.items():
            if key in inputs and not isinstance(inputs[key], list):
                inputs[key] = value
        for key, value in inputs.items():
            if isinstance(value, str) and value.lstrip().startswith("{"):
                inputs[key] = _rescale_document(value, run["width"], run["height"])
    return out


def execution_error(comfy, prompt) -> dict:
    """The details of the node error a prompt must fail with while it runs (``comfy``: InProcessComfy)."""
    import pytest
    from .comfy_session import WorkflowError
    with pytest.raises(WorkflowError) as e:
        comfy.run(prompt)
    assert e.value.args[0].startswith("execution failed"), e.value.args[0]
    return e.value.details


def validation_errors(comfy, prompt) -> str:
    """The node errors (as JSON text) a prompt must be refused with before it runs."""
    import pytest
    from .comfy_session import WorkflowError
    with pytest.raises(WorkflowError) as e:
        comfy.run(prompt)
    assert e.value.args[0].startswith("invalid prompt"), e.value.args[0]
    return json.dumps(e.value.details["node_errors"])
