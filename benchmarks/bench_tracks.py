"""Benchmark: building TrackGo tracks for 8 objects x 8 points x 25 frames on a 1024x576 image (CPU).

Times what Arrows to Trajectories does to make its TRACKS (parse and validate the arrows JSON, threshold the
masks, sample + seeded k-means per object, move the points along bent arrows), median of many runs; then,
separately, the node's preview frames and the converters on the same tracks.

    .venv/bin/python benchmarks/bench_tracks.py [--repeats 30]
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT, OBJECTS, POINTS, FRAMES = 1024, 576, 8, 8, 25


def modules(name: str):
    """The pack's plain-torch ``modules/`` without ComfyUI (loaded as the package ``motionkit_modules``)."""
    if "motionkit_modules" not in sys.modules:
        spec = importlib.util.spec_from_file_location("motionkit_modules", REPO / "modules" / "__init__.py",
                                                      submodule_search_locations=[str(REPO / "modules")])
        package = importlib.util.module_from_spec(spec)
        sys.modules["motionkit_modules"] = package
        spec.loader.exec_module(package)
    return importlib.import_module(f"motionkit_modules.{name}")


def scene(seed: int = 0):
    """8 elliptical object masks spread over the image, each with a 3-point (bent) arrow."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH] + 0.5
    masks = np.zeros((OBJECTS, HEIGHT, WIDTH), np.float32)
    arrows = []
    for i in range(OBJECTS):
        cx, cy = 80 + (i % 4) * 260 + rng.uniform(-20, 20), 150 + (i // 4) * 280 + rng.uniform(-20, 20)
        rx, ry = rng.uniform(30, 90), rng.uniform(30, 90)
        masks[i] = (((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 < 1).astype(np.float32)
        end = np.clip([cx + rng.uniform(-150, 150), cy + rng.uniform(-100, 100)], 0, [WIDTH, HEIGHT])
        bend = np.clip((np.array([cx, cy]) + end) / 2 + rng.uniform(-60, 60, 2), 0, [WIDTH, HEIGHT])
        arrows.append({"object": i, "points": [[cx, cy], bend.tolist(), end.tolist()]})
    text = json.dumps({"version": 1, "width": WIDTH, "height": HEIGHT, "arrows": arrows})
    return torch.from_numpy(masks), text


def median_ms(fn, repeats: int) -> tuple[float, float]:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    arrows_mod, trackgo, tracks_mod = modules("arrows"), modules("trackgo"), modules("tracks")
    drawing, conv = modules("track_drawing"), modules("track_converters")
    masks, text = scene()

    def build():
        m = masks.numpy()
        return trackgo.arrows_to_tracks(m, arrows_mod.parse_arrows(text, OBJECTS, WIDTH, HEIGHT),
                                        FRAMES, POINTS, 0, "ease-in-out")

    tracks = build()
    assert tuple(tracks["track_path"].shape) == (FRAMES, OBJECTS * POINTS, 2)
    ts = tracks_mod.read_tracks(tracks)
    print(f"MotionKit tracks benchmark: {OBJECTS} objects x {POINTS} points x {FRAMES} frames, "
          f"{WIDTH}x{HEIGHT}; torch {torch.__version__}, numpy {np.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} torch threads; median (min) of {args.repeats} runs")
    keep = ts.object < 5  # Puppet-Master takes at most 5 drags
    five = tracks_mod.TrackSet(ts.path[:, keep], ts.visible[:, keep], ts.object[keep], ts.width, ts.height)
    rows = [("build tracks (parse + masks + k-means + paths)", build, args.repeats)]
    few = max(3, args.repeats // 6)
    rows += [
        ("preview frames (visualize over the image)", lambda: drawing.visualize(ts, None, 4, 6), few),
        ("track maps (line width 4)", lambda: drawing.track_maps(ts, 4), few),
        ("Puppet-Master drags (first 5 objects)", lambda: conv.drags(five), args.repeats),
        ("Motion-I2V sparse flow (radius 8)", lambda: conv.sparse_flow(ts, 8), few),
    ]
    for name, fn, repeats in rows:
        med, best = median_ms(fn, repeats)
        print(f"  {name:<50s} {med:8.1f} ms  ({best:.1f})")


if __name__ == "__main__":
    main()
