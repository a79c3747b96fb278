"""API-format prompts for the tests, and the UI-to-API conversion of saved workflows."""
from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file


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


def saved_latent(base: Path, history: dict, node: str = "save"):
    """The tensor a SaveLatent node wrote in this run."""
    info = history["outputs"][node]["latents"][0]
    path = base / "output" / info["subfolder"] / info["filename"]
    return load_file(str(path))["latent_tensor"]


def ui_to_api(workflow: dict, object_info: dict) -> dict:
    """Convert a UI-format workflow (what the frontend saves) to an API prompt, using /object_info for
    each node's input order, the way the frontend's graphToPrompt does for plain graphs: widget values
    map onto the widget inputs in declaration order (with the 'control_after_generate' slot that the
    frontend adds after seed-like INT widgets), links map onto the linked inputs by name."""
    links = {link[0]: link for link in workflow.get("links", [])}
    prompt = {}
    for node in workflow["nodes"]:
        if node.get("mode", 0) in (2, 4):  # muted / bypassed
            continue
        info = object_info[node["type"]]
        spec = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
        linked = {}
        for slot in node.get("inputs", []):
            if slot.get("link") is not None:
                link = links[slot["link"]]
                linked[slot["name"]] = [str(link[1]), link[2]]
        inputs = {}
        values = list(node.get("widgets_values", []))
        for name in info["input_order"].get("required", []) + info["input_order"].get("optional", []):
            kind = spec[name][0]
            is_widget = isinstance(kind, list) or kind in ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")
            if name in linked:
                inputs[name] = linked[name]
                if is_widget and values:  # a widget converted to an input still holds a value slot
                    values.pop(0)
                continue
            if not is_widget or not values:
                continue
            inputs[name] = values.pop(0)
            opts = spec[name][1] if len(spec[name]) > 1 else {}
            if kind == "INT" and (opts.get("control_after_generate") or name in ("seed", "noise_seed")):
                values.pop(0) if values and isinstance(values[0], str) else None
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt


def load_workflow(path: Path) -> dict:
    return json.loads(Path(path).read_text())


TINY_RUN = {"width": 64, "height": 64, "video_frames": 4, "steps": 2}


def adapt_to_tiny_models(prompt: dict, ckpt: str, image: str | None = None, run: dict = TINY_RUN) -> dict:
    """Point an API prompt at the tiny random test checkpoint and shrink it to tiny sizes (a copy)."""
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
    return out
