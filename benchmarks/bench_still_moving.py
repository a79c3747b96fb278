#!/usr/bin/env python3
"""Cost of Still-Moving adapters: per-step sampling time of SD1.5 + motion module with and without
``MotionKitStillMovingAdapter`` (motion adapter at alpha -0.5 and spatial adapters at strength 1), measured
in one run, with the ratio checked against the target (<= 1.02: the adapters are merged into the weights).

What runs. The pinned ComfyUI in process (``InProcessComfy``: its custom-node loader, node registry and
``PromptExecutor``) executing ``CheckpointLoaderSimple -> MotionKitLoadMotionModule ->
[MotionKitStillMovingAdapter] -> KSampler (euler, normal, cfg 7.5) -> SaveLatent`` on an empty latent batch (the frames). Seeded random
weights built at start, never downloaded: an SD1.5-layout UNet (4 levels, 2 res blocks, attention at the
first three) at ``--width`` channels (default 64; SD1.5 has 320) with a TAESD VAE and a small CLIP text
tower, an AnimateDiff-v2-layout motion module of the same width, and a rank-8 adapter covering every
temporal q/k/v projection and every spatial attention output, scaled so that it changes the weights by
about a tenth of their size, as trained adapters do. (Much larger random deltas sharpen the random
model's attention until the softmax underflows to denormal floats, which is slow on CPUs whatever the
weights' origin; ``--flush-denormal`` turns denormals off for both variants to check such a case.)

Time. ComfyUI's progress-bar hook is called by KSampler after every step; a step's time is the interval
between two consecutive calls (model loading and weight patching happen before the first step and are
excluded). Wall-clock and process CPU time per step are recorded, with one torch thread (default). A
warmup run of each variant comes first; then ``--rounds`` rounds run both variants in alternating order
with a fresh seed each (the same for both, and the two latents are compared to prove the adapters were
active). On a shared machine other processes still slow single steps (cache and memory-bandwidth
contention shows up even in CPU time: per-round ratios scatter by +-20% on a busy 2-core host), and such
noise only ever adds time, so the ratio gated against the target is that of the *minimum* CPU time per
step over all measured steps of each variant; the median ratios and the per-round ratios are printed too.

Usage: ``.venv/bin/python benchmarks/bench_still_moving.py [--width 64 --frames 8 --size 96 --steps 8
--rounds 6 --threads 1 --flush-denormal]``. Prints a table and, last, one JSON line. ``--strict`` exits 1
when the target is missed.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from motionkit_testing import comfy_session as cs  # noqa: E402

TARGET = 1.02
ADAPTER_SCALE = 0.1
CKPT = "motionkit_bench_sd15_w{width}.safetensors"
MOTION = "motionkit_bench_mm_w{width}.safetensors"
ADAPTER = "motionkit_bench_adapter_w{width}.safetensors"


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=64, help="UNet model_channels (multiple of 32)")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--size", type=int, default=96, help="image width and height in pixels")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--flush-denormal", action="store_true", help="torch.set_flush_denormal(True) for both variants")
    ap.add_argument("--strict", action="store_true")
    return ap.parse_args(argv)


def build_models(base: Path, width: int, rank: int) -> dict:
    """Checkpoint, motion module and adapter files in the base directory's model folders."""
    from safetensors.torch import save_file
    from motionkit_testing.sd15 import load, motion_projections, spatial_outputs, with_motion, write_adapter
    from motionkit_testing.tiny_sd15 import motion_module_state_dict, register_tiny_sd15, tiny_sd15_checkpoint
    register_tiny_sd15((width,))
    names = {"ckpt": CKPT.format(width=width), "v2": MOTION.format(width=width), "adapter": ADAPTER.format(width=width)}
    tiny_sd15_checkpoint(str(base / "models" / "checkpoints" / names["ckpt"]), width=width)
    (base / "models" / "animatediff_models").mkdir(parents=True, exist_ok=True)
    save_file(motion_module_state_dict("v2", width=width, seed=1), str(base / "models" / "animatediff_models" / names["v2"]))
    model = load(names)[0]
    video = with_motion(model, names, "v2")
    (base / "models" / "still_moving").mkdir(parents=True, exist_ok=True)
    # Scale 0.1 gives weight changes of about 10% of the weights' own size, as trained adapters have; far
    # larger random ones sharpen the random model's attention until softmax underflows to denormal floats,
    # which costs CPU time whatever the weights' origin (see --flush-denormal).
    write_adapter(base / "models" / "still_moving" / names["adapter"], motion_projections(video),
                  {p: m.weight for p, m in spatial_outputs(video).items()}, rank=rank, scales=(ADAPTER_SCALE, ADAPTER_SCALE))
    return names


def prompt(names: dict, args, seed: int, adapters: bool) -> dict:
    p = {
        "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": names["ckpt"]}},
        "pos": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["ckpt", 1], "text": "a red fox in the snow"}},
        "neg": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["ckpt", 1], "text": "blurry"}},
        "mm": {"class_type": "MotionKitLoadMotionModule", "inputs": {"model": ["ckpt", 0], "motion_module": names["v2"]}},
        "latent": {"class_type": "EmptyLatentImage", "inputs": {"width": args.size, "height": args.size,
                                                                "batch_size": args.frames}},
        "ks": {"class_type": "KSampler", "inputs": {
            "model": ["mm", 0], "seed": seed, "steps": args.steps, "cfg": 7.5, "sampler_name": "euler",
            "scheduler": "normal", "positive": ["pos", 0], "negative": ["neg", 0], "latent_image": ["latent", 0],
            "denoise": 1.0}},
        "save": {"class_type": "SaveLatent", "inputs": {"samples": ["ks", 0],
                                                        "filename_prefix": f"bench/sm_{int(adapters)}_{seed}"}},
    }
    if adapters:
        p["sm"] = {"class_type": "MotionKitStillMovingAdapter", "inputs": {
            "model": ["mm", 0], "adapter": names["adapter"], "motion_alpha": -0.5, "spatial_strength": 1.0}}
        p["ks"]["inputs"]["model"] = ["sm", 0]
    return p


class StepClock:
    """Wall-clock and CPU time between consecutive progress-bar calls of one sampling run."""

    def __init__(self):
        self.marks = []

    def hook(self, value, total, preview, node_id=None):
        self.marks.append((value, time.perf_counter(), time.process_time()))

    def steps(self) -> tuple[list, list]:
        marks = [m for m in self.marks if m[0] >= 1]
        wall = [b[1] - a[1] for a, b in zip(marks, marks[1:])]
        cpu = [b[2] - a[2] for a, b in zip(marks, marks[1:])]
        return wall, cpu


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    if args.flush_denormal:
        torch.set_flush_denormal(True)
    base = cs.make_base_dir(Path(tempfile.mkdtemp(prefix="motionkit-bench-sm-")))
    comfy = cs.InProcessComfy(base, cs.comfyui_path())
    import comfy.utils as comfy_utils
    from motionkit_testing.workflows import saved_latent
    names = build_models(base, args.width, args.rank)
    times = {False: ([], []), True: ([], [])}
    changed = []

    def run(adapters: bool, seed: int, record: bool):
        clock = StepClock()
        comfy_utils.set_progress_bar_global_hook(clock.hook)
        try:
            history = comfy.run(prompt(names, args, seed, adapters))
        finally:
            comfy_utils.set_progress_bar_global_hook(None)
        if record:
            wall, cpu = clock.steps()
            times[adapters][0].extend(wall)
            times[adapters][1].extend(cpu)
        return saved_latent(base, history)

    run(False, 1, False)
    run(True, 1, False)
    round_ratios = []
    for r in range(args.rounds):
        seed = 100 + r
        order = (False, True) if r % 2 == 0 else (True, False)
        before = {a: len(times[a][1]) for a in times}
        out = {a: run(a, seed, True) for a in order}
        changed.append(float((out[True] - out[False]).abs().max()))
        this = {a: statistics.median(times[a][1][before[a]:]) for a in times}
        round_ratios.append(this[True] / this[False])
    med = {a: (statistics.median(times[a][0]), statistics.median(times[a][1])) for a in (False, True)}
    low = {a: min(times[a][1]) for a in (False, True)}
    wall_ratio, cpu_ratio = med[True][0] / med[False][0], med[True][1] / med[False][1]
    min_ratio = low[True] / low[False]
    print(f"SD1.5 (width {args.width}) + v2 motion module, {args.frames} frames at {args.size}x{args.size}, "
          f"{args.steps} steps x {args.rounds} rounds, {args.threads} thread(s)")
    print(f"{'variant':<22}{'median wall':>14}{'median cpu':>14}{'min cpu':>14}   (s/step, {len(times[False][1])} steps each)")
    print(f"{'plain':<22}{med[False][0]:>14.4f}{med[False][1]:>14.4f}{low[False]:>14.4f}")
    print(f"{'Still-Moving adapters':<22}{med[True][0]:>14.4f}{med[True][1]:>14.4f}{low[True]:>14.4f}")
    print(f"{'ratio':<22}{wall_ratio:>14.4f}{cpu_ratio:>14.4f}{min_ratio:>14.4f}   target <= {TARGET} (min cpu)")
    print(f"per-round cpu ratios: {' '.join(f'{x:.3f}' for x in round_ratios)}")
    result = {"bench": "still_moving", "width": args.width, "frames": args.frames, "size": args.size,
              "steps": args.steps, "rounds": args.rounds, "threads": args.threads,
              "plain_s_per_step": {"wall": med[False][0], "cpu": med[False][1]},
              "adapters_s_per_step": {"wall": med[True][0], "cpu": med[True][1]},
              "min_cpu_s_per_step": {"plain": low[False], "adapters": low[True]},
              "ratio": {"median_wall": wall_ratio, "median_cpu": cpu_ratio, "min_cpu": min_ratio},
              "round_cpu_ratios": round_ratios, "target": TARGET,
              "flush_denormal": args.flush_denormal,
              "adapters_changed_output": min(changed) > 0, "met": min_ratio <= TARGET}
    print(json.dumps(result))
    return 1 if args.strict and not result["met"] else 0


if __name__ == "__main__":
    sys.exit(main())
