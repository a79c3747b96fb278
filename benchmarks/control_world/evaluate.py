#!/usr/bin/env python3
"""Control World: does each MotionKit control move the object where the user drew?

For ``--clips N`` held-out clips drawn from ``--seed S`` (training clips come from another seed range, see
models.training_seed), every row below runs as an API workflow through ComfyUI's real executor on the
trained world model: Load Image (frame 0) + the ground-truth masks -> Arrows to Trajectories (the clip's
ground-truth arrows, linear easing) -> the row's control nodes -> SVD conditioning (64x64, 8 frames) ->
KSampler (euler, karras, ``--steps``, cfg 1, the same seed for every row) -> VAE Decode. Each decoded
video is tracked by colour and measured against the requested trajectory (measure.py): ObjMC, appearance
error, background drift, mean sprite speed. The table gives the median (and the 25-75 % spread) over clips;
the last line printed is one JSON object with every row's figures.

The first run trains the world model (models.py), a TrackAdapter with the pack's own trainer
(scripts/train_trackadapter.py, unchanged) on world clips and a Still-Moving motion adapter with the pack's
'Train Motion Adapter' node (through the executor, on frozen world frames), fine-tunes the world UNet with the
All-to-First node's patch on and, as its control, without it (``--finetune-steps``), and caches them in the user
cache (``~/.cache/motionkit/control_world``); later runs reuse them.

Usage: ``.venv/bin/python benchmarks/control_world/evaluate.py --clips 20 --seed 1 [--steps 25]
[--threads 1] [--train-only] [--rows WORDS]``
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

from motionkit_testing import comfy_session as cs  # noqa: E402
from control_world import measure, models, world  # noqa: E402

ROWS = [
    ("no control", ()),
    ("TrackAdapter, trained", ("trackadapter_trained",)),
    ("TrackAdapter, trained, lambda_bg 1", ("trackadapter_trained:1",)),
    ("TrackAdapter, training-free", ("trackadapter_free",)),
    ("Motion field + Motion-Augmented Attention", ("motion_field",)),
    ("All-to-First", ("all_to_first",)),
    ("All-to-First + TrackAdapter, trained", ("all_to_first", "trackadapter_trained")),
    ("All-to-First + TrackAdapter, training-free", ("all_to_first", "trackadapter_free")),
    ("All-to-First + Motion field + MAA", ("all_to_first", "motion_field")),
    ("Still-Moving motion adapter, alpha -1", ("still_moving:-1",)),
    ("Still-Moving motion adapter, alpha 0", ("still_moving:0",)),
    ("Still-Moving motion adapter, alpha +1", ("still_moving:1",)),
    # Puppet-Master trains its UNet with all-to-first attention: the world UNet fine-tuned with the node's patch
    # on, against the same fine-tune without it (world:NAME picks the checkpoint, see FINETUNES)
    ("no control, world UNet fine-tuned further without All-to-First", ("world:plain",)),
    ("All-to-First, world UNet fine-tuned with All-to-First", ("world:a2f", "all_to_first")),
    ("no control, world UNet fine-tuned with All-to-First", ("world:a2f",)),
    ("All-to-First + TrackAdapter, trained, world UNet fine-tuned with All-to-First",
     ("world:a2f", "all_to_first", "trackadapter_trained")),
    ("All-to-First + TrackAdapter, training-free, world UNet fine-tuned with All-to-First",
     ("world:a2f", "all_to_first", "trackadapter_free")),
    ("All-to-First + Motion field + MAA, world UNet fine-tuned with All-to-First",
     ("world:a2f", "all_to_first", "motion_field")),
]
NOT_RUN = {
    "Puppet-Master drags": (
        "not run: Puppet-Master's drag modules come with its official fine-tuned UNet; MotionKit has no trainer "
        "for them, so there are no world-trained drag modules."),
}
TRACKADAPTER_STEPS = 20000
TRACKADAPTER_CLIPS = 512
STILL_MOVING = {"frames": 128, "steps": 1000, "rank": 8, "learning_rate": 1e-3, "batch_size": 2}
FINETUNE_STEPS = 5000
FINETUNES = {"a2f": True, "plain": False}   # name -> fine-tuned with the All-to-First node's patch on


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--steps", type=int, default=25, help="sampling steps")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--train-only", action="store_true", help="train (or find) the cached models and stop")
    ap.add_argument("--unet-steps", type=int, default=models.TrainPlan.unet_steps)
    ap.add_argument("--vae-steps", type=int, default=models.TrainPlan.vae_steps)
    ap.add_argument("--pool", type=int, default=models.TrainPlan.pool, help="pre-encoded training clips")
    ap.add_argument("--trackadapter-steps", type=int, default=TRACKADAPTER_STEPS)
    ap.add_argument("--trackadapter-clips", type=int, default=TRACKADAPTER_CLIPS, help="world clips it trains on")
    ap.add_argument("--still-moving-steps", type=int, default=STILL_MOVING["steps"])
    ap.add_argument("--finetune-steps", type=int, default=FINETUNE_STEPS,
                    help="UNet steps of the fine-tunes with and without All-to-First (0: none, and their rows are "
                    "not run)")
    ap.add_argument("--rows", default="", help="only the rows whose names contain one of these comma-separated "
                    "words (default: every row)")
    ap.add_argument("--strips", type=Path, help="also write each clip's videos (one row each) as PNG strips here")
    return ap.parse_args(argv)


def write_strip(path: Path, videos: list) -> None:
    """Frames left to right, one video per row (ground truth, through the VAE, then the rows), 2x enlarged."""
    import numpy as np
    from PIL import Image
    rows = [np.concatenate(list(v), axis=1) for v in videos]
    img = (np.clip(np.concatenate(rows, axis=0), 0, 1) * 255).round().astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).resize((img.shape[1] * 2, img.shape[0] * 2), Image.NEAREST).save(path)


def log(msg: str) -> None:
    print(msg, flush=True)


# --- the pack's TrackAdapter trainer on world clips ------------------------------------------------------

def trackadapter_file_name(plan: models.TrainPlan, steps: int, clips: int = TRACKADAPTER_CLIPS,
                           world_key: str = "") -> str:
    """``world_key``: another world model's plan key (default: ``plan``'s)."""
    return f"motionkit_control_world_{world_key or plan.key()}_ta{steps}_c{clips}.safetensors"


def shorter_trackadapter_run(plan: models.TrainPlan, steps: int, clips: int) -> tuple[Optional[Path], str]:
    """The resume file (``.train.pt``) that a TrackAdapter run of ``steps`` steps continues, and why (or None):
    the longest shorter cached run for this world model; else, when this world model continues a shorter world
    run (models.shorter_run), the longest shorter adapter run of that world model, so the adapter follows its
    world model instead of starting over. Same clip count in both cases (the training clips depend on the
    seed only, so they are the same clips)."""
    cache = models.cache_dir()
    keys = [(plan.key(), "")]
    previous = models.read_report(cache / models.world_file_name(plan)).get("continued_from")
    if previous:
        keys.append((models.world_key(previous["file"]),
                     f" of the {previous['unet_steps']}-step world model it continues"))
    for key, where in keys:
        for n in range(steps - 1, 0, -1):
            path = cache / (trackadapter_file_name(plan, n, clips, key) + ".train.pt")
            if path.is_file():
                return path, f"the TrackAdapter trained for {n} steps{where}"
    return None, ""


def trackadapter_file(session, plan: models.TrainPlan, ckpt: str, steps: int,
                      clips: int = TRACKADAPTER_CLIPS) -> tuple[str, float]:
    """A TrackAdapter trained by scripts/train_trackadapter.py on world clips (cached); its name in
    models/trackadapter and the training minutes (0 when cached)."""
    import importlib.util
    import numpy as np
    from motionkit_testing.pack import pack_module
    clips_mod = pack_module("trackadapter_clips")
    name = trackadapter_file_name(plan, steps, clips)
    cached = models.cache_dir() / name
    minutes = 0.0
    if not cached.is_file():
        folder = models.cache_dir() / f"trackadapter_clips_{plan.key()}_{clips}"
        if not folder.is_dir():
            tmp = folder.with_name(folder.name + ".partial")
            tmp.mkdir(parents=True, exist_ok=True)
            for i in range(clips):
                clip = world.make_clip(models.training_seed(plan, 5 * 10 ** 5 + i), plan.world)
                path, ids = world.ground_truth_tracks(clip)
                clips_mod.write_clip(tmp / f"clip_{i:03d}.safetensors", (clip.frames * 255).round().astype(np.uint8),
                                     path.astype(np.float32), np.ones(path.shape[:2], bool), ids,
                                     clip.masks.astype(np.uint8))
            tmp.rename(folder)
        resume = cached.with_name(cached.name + ".train.pt")
        shorter, why = shorter_trackadapter_run(plan, steps, clips)
        if shorter is not None and not resume.exists():   # continue it (the trainer resumes exactly)
            shutil.copyfile(shorter, resume)
            cached.with_suffix(".json").write_text(json.dumps({"continued_from": shorter.name[:-len(".train.pt")]}))
            log(f"[control world] continuing {why}")
        spec = importlib.util.spec_from_file_location("train_trackadapter_cli", REPO / "scripts" / "train_trackadapter.py")
        cli = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(cli)
        ckpt_path = session.base / "models" / "checkpoints" / ckpt
        tick = time.perf_counter()
        cli.main(["--checkpoint", str(ckpt_path), "--clips", str(folder), "--out", str(cached), "--steps", str(steps),
                  "--lr", "3e-4", "--encoder-channels", "8,16,32", "--feature-channels", "32", "--save-every", "250",
                  "--resume", "--device", "cpu", "--seed", str(plan.seed)])
        minutes = (time.perf_counter() - tick) / 60
        cached.with_suffix(".json").write_text(json.dumps({**models.read_report(cached), "minutes": minutes}))
    return models.link_into(session.base / "models" / "trackadapter", cached), minutes


# --- the pack's Still-Moving motion-adapter trainer on world frames ------------------------------------

def still_moving_file(session, plan: models.TrainPlan, ckpt: str, steps: int) -> tuple[str, float, dict]:
    """A Still-Moving motion adapter trained by 'Train Motion Adapter' (MotionKitTrainMotionAdapter, through
    the executor) on frozen videos of world frames (cached); its name in models/still_moving, the training
    minutes (0 when cached) and the trainer's report."""
    import numpy as np
    from PIL import Image
    settings = dict(STILL_MOVING, steps=steps)
    name = f"motionkit_control_world_{plan.key()}_still_moving_{settings['steps']}"
    cached = models.cache_dir() / f"{name}.safetensors"
    report_path = cached.with_suffix(".json")
    folder = session.base / "models" / "still_moving"
    folder.mkdir(parents=True, exist_ok=True)
    minutes, report = 0.0, {}
    if not cached.is_file():
        stills = session.base / "input" / "cw_stills"
        stills.mkdir(parents=True, exist_ok=True)
        for i in range(settings["frames"]):   # one frame of each training clip, at varying times
            clip = world.make_clip(models.training_seed(plan, 6 * 10 ** 5 + i), plan.world)
            frame = clip.frames[i % plan.world.frames]
            Image.fromarray((frame * 255).round().astype(np.uint8)).save(stills / f"still_{i:03d}.png")
        size, frames = plan.world.size, plan.world.frames
        p = {
            "ckpt": {"class_type": "ImageOnlyCheckpointLoader", "inputs": {"ckpt_name": ckpt}},
            "img": {"class_type": "LoadImage", "inputs": {"image": "cw_stills/still_000.png"}},
            "cond": {"class_type": "SVD_img2vid_Conditioning", "inputs": {
                "clip_vision": ["ckpt", 1], "init_image": ["img", 0], "vae": ["ckpt", 2], "width": size,
                "height": size, "video_frames": frames, "motion_bucket_id": 127, "fps": 6, "augmentation_level": 0.0}},
            "train": {"class_type": "MotionKitTrainMotionAdapter", "inputs": {
                "model": ["ckpt", 0], "positive": ["cond", 0], "negative": ["cond", 1], "adapter_name": name,
                "clips_folder": "cw_stills", "frames_per_clip": 1, "generated_videos": 1, "video_frames": frames,
                "width": size, "height": size, "generation_steps": 1, "cfg": 1.0, "rank": settings["rank"],
                "steps": settings["steps"], "learning_rate": settings["learning_rate"],
                "batch_size": settings["batch_size"], "seed": plan.seed, "checkpoint_every": 100, "resume": True,
                "vae": ["ckpt", 2], "clip_vision": ["ckpt", 1]}},
        }
        log(f"[control world] training the Still-Moving motion adapter ({settings['steps']} steps)")
        tick = time.perf_counter()
        history = session.run(p)
        minutes = (time.perf_counter() - tick) / 60
        report = json.loads(history["outputs"]["train"]["text"][0])
        report.update(settings=settings, minutes=minutes)
        shutil.copyfile(folder / f"{name}.safetensors", cached)
        report_path.write_text(json.dumps(report, indent=1))
    else:
        report = models.read_report(cached)
    return models.link_into(folder, cached), minutes, report


# --- the world UNet fine-tuned with the pack's All-to-First node on (Puppet-Master's training), and without ---

def finetuned_files(session, plan: models.TrainPlan, steps: int) -> dict:
    """{name: (checkpoint file name, training report)} for FINETUNES: the world UNet trained ``steps`` more steps
    with the All-to-First Attention node's patch (strength 1, the whole schedule) on, and the same steps
    without it (cached)."""
    node = session.nodes.NODE_CLASS_MAPPINGS["MotionKitAllToFirstAttention"]()

    def all_to_first(model):
        return node.patch(model, 1.0, 0.0, 1.0)[0]
    checkpoints = session.base / "models" / "checkpoints"
    return {name: models.finetuned_checkpoint(plan, steps, name, checkpoints, all_to_first if on else None, log)
            for name, on in FINETUNES.items()}


# --- one workflow per clip and row -----------------------------------------------------------------------

def clip_inputs(base: Path, clip, index: int) -> dict:
    """Frame 0 and each sprite's mask as input images of this run."""
    import numpy as np
    from PIL import Image
    inputs = Path(base) / "input"
    frame = f"cw_{index}_frame0.png"
    Image.fromarray((clip.frames[0] * 255).round().astype(np.uint8)).save(inputs / frame)
    masks = []
    for k, mask in enumerate(clip.masks):
        name = f"cw_{index}_mask{k}.png"
        Image.fromarray((mask * 255).astype(np.uint8)).convert("RGB").save(inputs / name)
        masks.append(name)
    return {"frame": frame, "masks": masks}


def prompt(ckpt: str, clip, files: dict, controls: tuple, seed: int, steps: int, ta_name: str,
           sm_name: str = "", checkpoints: Optional[dict] = None) -> dict:
    """``checkpoints``: {name: file} of the other world checkpoints that a ``world:NAME`` control picks."""
    frames, size = clip.spec.frames, clip.spec.size
    for control in controls:
        if control.startswith("world:"):
            ckpt = checkpoints[control.split(":", 1)[1]]
    p = {
        "ckpt": {"class_type": "ImageOnlyCheckpointLoader", "inputs": {"ckpt_name": ckpt}},
        "img": {"class_type": "LoadImage", "inputs": {"image": files["frame"]}},
        "cond": {"class_type": "SVD_img2vid_Conditioning", "inputs": {
            "clip_vision": ["ckpt", 1], "init_image": ["img", 0], "vae": ["ckpt", 2], "width": size, "height": size,
            "video_frames": frames, "motion_bucket_id": 127, "fps": 6, "augmentation_level": 0.0}},
        "ks": {"class_type": "KSampler", "inputs": {
            "model": ["ckpt", 0], "seed": seed, "steps": steps, "cfg": 1.0, "sampler_name": "euler",
            "scheduler": "karras", "positive": ["cond", 0], "negative": ["cond", 1], "latent_image": ["cond", 2],
            "denoise": 1.0}},
        "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["ks", 0], "vae": ["ckpt", 2]}},
        "sink": {"class_type": "PreviewImage", "inputs": {"images": ["decode", 0]}},
    }
    # the ground-truth masks as one MASK batch (mask i = sprite i), then the clip's arrows
    images = []
    for k, name in enumerate(files["masks"]):
        p[f"m{k}"] = {"class_type": "LoadImage", "inputs": {"image": name}}
        images.append([f"m{k}", 0])
    batch = images[0]
    for k, other in enumerate(images[1:]):
        p[f"mb{k}"] = {"class_type": "ImageBatch", "inputs": {"image1": batch, "image2": other}}
        batch = [f"mb{k}", 0]
    p["masks"] = {"class_type": "ImageToMask", "inputs": {"image": batch, "channel": "red"}}
    p["tracks"] = {"class_type": "MotionKitArrowsToTracks", "inputs": {
        "masks": ["masks", 0], "arrows": clip.arrows_json, "num_frames": frames, "points_per_object": 4, "seed": 0,
        "easing": "linear", "image": ["img", 0]}}
    model = ["ckpt", 0]
    for control in controls:
        node = "c_" + control.replace(":", "_").replace("-", "m")
        if control.startswith("world:"):
            continue
        if control == "all_to_first":
            p[node] = {"class_type": "MotionKitAllToFirstAttention", "inputs": {
                "model": model, "strength": 1.0, "start_percent": 0.0, "end_percent": 1.0}}
        elif control.startswith("trackadapter"):
            lambda_bg = float(control.split(":")[1]) if ":" in control else 0.4   # 0.4: the node's default
            p[node] = {"class_type": "MotionKitApplyTrackAdapter", "inputs": {
                "model": model, "tracks": ["tracks", 0], "lambda_bg": lambda_bg, "tau": 0.1, "strength": 1.0,
                "start_percent": 0.0, "end_percent": 1.0, "masks": ["masks", 0]}}
            if control.startswith("trackadapter_trained"):
                p["ta_load"] = {"class_type": "MotionKitTrackAdapterLoader", "inputs": {"adapter_name": ta_name}}
                p[node]["inputs"]["track_adapter"] = ["ta_load", 0]
        elif control.startswith("still_moving:"):
            p[node] = {"class_type": "MotionKitStillMovingAdapter", "inputs": {
                "model": model, "adapter": sm_name, "motion_alpha": float(control.split(":")[1]),
                "spatial_strength": 0.0}}
        elif control == "motion_field":
            p["field"] = {"class_type": "MotionKitTracksToMotionField", "inputs": {
                "tracks": ["tracks", 0], "masks": ["masks", 0], "boundary_softness": 4.0}}
            p[node] = {"class_type": "MotionKitMotionAugmentedAttention", "inputs": {
                "model": model, "motion_field": ["field", 0], "strength": 1.0, "start_percent": 0.0,
                "end_percent": 1.0}}
        model = [node, 0]
    p["ks"]["inputs"]["model"] = model
    return p


def summarise(values: list) -> dict:
    import numpy as np
    a = np.asarray(values, float)
    a = a[np.isfinite(a)]                     # speed is undefined for a video where every sprite is lost
    if not len(a):
        return {"median": None, "p25": None, "p75": None, "mean": None}
    return {"median": float(np.median(a)), "p25": float(np.percentile(a, 25)), "p75": float(np.percentile(a, 75)),
            "mean": float(a.mean())}


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    base = cs.make_base_dir(Path(tempfile.mkdtemp(prefix="motionkit-control-world-")))
    try:
        return evaluate(args, base)
    finally:   # the run's ComfyUI base directory (inputs, links to the cache), never the cache itself
        shutil.rmtree(base, ignore_errors=True)


def evaluate(args, base: Path) -> int:
    session = cs.InProcessComfy(base, cs.comfyui_path())
    plan = models.TrainPlan(vae_steps=args.vae_steps, unet_steps=args.unet_steps, pool=args.pool)
    ckpt, report = models.world_checkpoint(plan, base / "models" / "checkpoints", log)
    ta_name, ta_minutes = trackadapter_file(session, plan, ckpt, args.trackadapter_steps, args.trackadapter_clips)
    ta_report = models.read_report(models.cache_dir() / ta_name)
    training = {"world_model": report, "trackadapter": {**ta_report, "steps": args.trackadapter_steps,
                                                         "clips": args.trackadapter_clips, "file": ta_name,
                                                         "minutes_this_run": ta_minutes}}
    sm_name, sm_minutes, sm_report = still_moving_file(session, plan, ckpt, args.still_moving_steps)
    training["still_moving"] = {**sm_report, "file": sm_name, "minutes_this_run": sm_minutes}
    finetunes = finetuned_files(session, plan, args.finetune_steps) if args.finetune_steps > 0 else {}
    training["finetunes"] = {name: {**report, "file": file} for name, (file, report) in finetunes.items()}
    log(f"[control world] models: {', '.join([ckpt, ta_name, sm_name] + [f for f, _ in finetunes.values()])}")
    if args.train_only:
        print(json.dumps({"training": training}))
        return 0

    words = [w.strip().lower() for w in args.rows.split(",") if w.strip()]
    rows = [(name, controls) for name, controls in ROWS if not words or any(w in name.lower() for w in words)]
    skipped = [name for name, controls in rows if any(c.startswith("world:") for c in controls) and not finetunes]
    rows = [(name, controls) for name, controls in rows if name not in skipped]
    per_row = {name: [] for name, _ in rows}
    ground, ground_vae = [], []
    clips = [world.make_clip(args.seed * 10 ** 5 + i, plan.world) for i in range(args.clips)]
    finetuned = {name: file for name, (file, _) in finetunes.items()}
    tick = time.perf_counter()
    for i, clip in enumerate(clips):
        files = clip_inputs(session.base, clip, i)
        requested = measure.requested_positions(clip)
        ground.append(measure.measure(clip.frames, clip, requested))
        videos = [clip.frames]
        for name, controls in rows:
            session.run(prompt(ckpt, clip, files, controls, args.seed * 1000 + i, args.steps, ta_name, sm_name,
                               finetuned))
            video = session.output("decode").cpu().numpy()
            per_row[name].append(measure.measure(video, clip, requested))
            videos.append(video)
        import torch
        vae = session.output("ckpt", 2)
        with torch.no_grad():
            through_vae = vae.decode(vae.encode(torch.from_numpy(clip.frames))).cpu().numpy()
        ground_vae.append(measure.measure(through_vae, clip, requested))
        if args.strips:
            write_strip(args.strips / f"clip_{i:03d}.png", [clip.frames, through_vae] + videos[1:])
        log(f"[control world] clip {i + 1}/{len(clips)} ({time.perf_counter() - tick:.0f} s)")

    result = {"clips": args.clips, "seed": args.seed, "steps": args.steps, "training": training, "rows": {}}
    result["rows"]["ground-truth video (measurement floor)"] = {k: summarise([m[k] for m in ground]) for k in ground[0]}
    result["rows"]["ground-truth video through the world VAE"] = {k: summarise([m[k] for m in ground_vae])
                                                                  for k in ground_vae[0]}
    for name, _ in rows:
        result["rows"][name] = {k: summarise([m[k] for m in per_row[name]]) for k in per_row[name][0]}
    for name in skipped:
        result["rows"][name] = {"not_run": "not run: --finetune-steps 0 (no fine-tuned world UNet)"}
    for name, why in NOT_RUN.items():
        result["rows"][name] = {"not_run": why}
    # every clip's ObjMC, tracked ObjMC and lost share per row (clip i is world.make_clip(seed * 10**5 + i)), to
    # see which clips a control fails on
    result["per_clip"] = {name: {k: [None if math.isnan(m[k]) else round(m[k], 4) for m in per_row[name]]
                                 for k in ("objmc", "objmc_tracked", "lost")}
                          for name, _ in rows}
    print_table(result)
    print(json.dumps(result, allow_nan=False))
    return 0


def print_table(result: dict) -> None:
    print(f"\nControl World: {result['clips']} held-out clips (seed {result['seed']}), {result['steps']} steps, "
          "median [25-75 %] over clips")
    w = max(len(name) for name in result["rows"])
    print(f"{'row':{w}s} {'ObjMC px':>18s} {'ObjMC, tracked':>18s} {'appearance':>18s} {'background':>18s} "
          f"{'speed px/f':>12s} {'lost':>6s}")
    for name, row in result["rows"].items():
        if "not_run" in row:
            print(f"{name:{w}s} {row['not_run']}")
            continue

        def cell(key, fmt):
            s = row[key]
            if s["median"] is None:   # undefined in every clip (e.g. every sprite lost)
                return "-"
            return f"{s['median']:{fmt}} [{s['p25']:{fmt}}-{s['p75']:{fmt}}]"
        speed = row["speed"]["median"]
        print(f"{name:{w}s} {cell('objmc', '.2f'):>18s} {cell('objmc_tracked', '.2f'):>18s} "
              f"{cell('appearance', '.3f'):>18s} "
              f"{cell('background', '.4f'):>18s} {'-' if speed is None else f'{speed:.2f}':>12s} "
              f"{row['lost']['mean']:6.2f}")


if __name__ == "__main__":
    sys.exit(main())
