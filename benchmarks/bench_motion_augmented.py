#!/usr/bin/env python3
"""Cost of Motion-Augmented Temporal Attention (Motion-I2V stage 2 on SVD): per-step sampling time and
sampling working memory with and without the node, in one run; targets: time ratio <= 1.25, working-memory
ratio <= 1.15.

The method, sizes and output are those of ``bench_all_to_first.py`` (read its docstring): the same MID SVD
architecture on CPU (the full SVD-XT shape, 25 frames at 1024x576, with ``--device cuda``), ComfyUI in
process, alternating rounds, CPU time of a single-threaded process on CPU, VmHWM subprocesses for memory.
Only the patch differs: a square object (a third of the image) gets an arrow across a quarter of the
width; ``Arrows to Trajectories -> Trajectories to Motion Field`` makes the field, and
``MotionKitMotionAugmentedAttention`` (strength 1, whole schedule) patches every temporal self-attention.
Building the field happens before sampling and is not in the step times.

Usage: ``.venv/bin/python benchmarks/bench_motion_augmented.py [--device cuda] [--frames N --width W
--height H --steps S --rounds R --threads T] [--strict]``.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_spec = importlib.util.spec_from_file_location("bench_all_to_first", Path(__file__).with_name("bench_all_to_first.py"))
base_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(base_bench)


def add_motion_augmented(p: dict, args) -> dict:
    base_bench.add_box_tracks(p, args)
    p.update({
        "field": {"class_type": "MotionKitTracksToMotionField", "inputs": {
            "tracks": ["tracks", 0], "masks": ["mask", 0], "boundary_softness": 4.0}},
        "maa": {"class_type": "MotionKitMotionAugmentedAttention", "inputs": {
            "model": ["guid", 0], "motion_field": ["field", 0], "strength": 1.0,
            "start_percent": 0.0, "end_percent": 1.0}},
    })
    p["ks"]["inputs"]["model"] = ["maa", 0]
    return p


base_bench.BENCH, base_bench.TITLE = "motion_augmented", "Motion-Augmented Temporal Attention"
base_bench.TARGET, base_bench.MEMORY_TARGET = 1.25, 1.15
base_bench.SCRIPT = Path(__file__).resolve()
base_bench.add_patch = add_motion_augmented

if __name__ == "__main__":
    sys.exit(base_bench.main())
