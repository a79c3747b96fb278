"""The Control World in the demo (``bash scripts/demo.sh --world``): one held-out clip whose sprite is asked to
follow its drawn arrow, rendered by the trained world model through a real ComfyUI server, with the requested
tracks drawn over the generated video; prints the clip's ObjMC. The models come from the user cache
(trained by ``evaluate.py --train-only`` on first use)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from . import measure, models, world
from .evaluate import TRACKADAPTER_STEPS, clip_inputs, prompt, trackadapter_file_name

DEMO_SEED = 7_000_003   # a held-out clip (training seeds start at 10**9)


def cached_files(plan: models.TrainPlan) -> tuple[Path, Path]:
    cache = models.cache_dir()
    return cache / models.world_file_name(plan), cache / trackadapter_file_name(plan, TRACKADAPTER_STEPS)


def available(plan: models.TrainPlan = models.TrainPlan()) -> bool:
    return all(p.is_file() for p in cached_files(plan))


def ensure_trained(python: str, log) -> None:
    if available():
        return
    log("the Control World model is not cached yet: training it now (about 4 hours on a 2-core CPU)")
    # the demo needs the world model and its TrackAdapter, not the All-to-First fine-tunes of the evaluation
    subprocess.run([python, str(Path(__file__).with_name("evaluate.py")), "--train-only", "--finetune-steps", "0"],
                   check=True)


def link_models(base: Path, plan: models.TrainPlan = models.TrainPlan()) -> tuple[str, str]:
    ckpt, adapter = cached_files(plan)
    return (models.link_into(base / "models" / "checkpoints", ckpt),
            models.link_into(base / "models" / "trackadapter", adapter))


def run(server, base: Path, log) -> dict:
    """Render the demo clip through ``server`` (a ComfyUI HTTP server on ``base``); returns the written files
    and the clip's ObjMC."""
    plan = models.TrainPlan()
    ckpt, adapter = link_models(base, plan)
    clip = next(c for c in (world.make_clip(DEMO_SEED + i, plan.world) for i in range(100)) if c.moving)
    files = clip_inputs(base, clip, 0)
    p = prompt(ckpt, clip, files, ("trackadapter_trained",), 1, 25, adapter)   # the best-measured control
    p.pop("sink")
    p["frames"] = {"class_type": "SaveImage", "inputs": {"images": ["decode", 0], "filename_prefix": "world/frame"}}
    p["overlay"] = {"class_type": "MotionKitVisualizeTracks", "inputs": {
        "tracks": ["tracks", 0], "line_width": 1, "point_radius": 1, "image": ["decode", 0]}}
    p["video"] = {"class_type": "SaveWEBM", "inputs": {"images": ["overlay", 0], "filename_prefix": "world/CONTROL_WORLD",
                                                      "codec": "vp9", "fps": 6.0, "crf": 24.0}}
    entry = server.run(p, timeout=3600)
    from PIL import Image
    saved = entry["outputs"]["frames"]["images"]
    frames = np.stack([np.asarray(Image.open(base / "output" / f["subfolder"] / f["filename"]).convert("RGB"),
                                  np.float32) / 255 for f in saved])
    figures = measure.measure(frames, clip, measure.requested_positions(clip))
    written = [base / "output" / f["subfolder"] / f["filename"]
               for kind in ("images", "animated") for f in entry["outputs"]["video"].get(kind, []) if isinstance(f, dict)]
    log(f"Control World clip {clip.seed}: {len(clip.kinds)} sprites ({', '.join(clip.kinds)}); "
        f"trained TrackAdapter; ObjMC {figures['objmc']:.2f} px (lost {figures['lost']:.0%})")
    return {"outputs": [str(p) for p in written], "objmc": figures["objmc"], "clip_seed": clip.seed}


if __name__ == "__main__":   # train the cached models if needed (the demo calls this)
    sys.exit(ensure_trained(sys.executable, print) or 0)
