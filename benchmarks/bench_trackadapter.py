#!/usr/bin/env python3
"""Cost of TrackAdapter (TrackGo): per-step sampling time and sampling working memory of SVD with the node in
its training-free mode and with (seeded random) trained weights, against unpatched SVD, in one run; the time
ratios are checked against the target (<= 1.15).

What runs: the pinned ComfyUI in process, executing ``ImageOnlyCheckpointLoader -> SVD_img2vid_Conditioning ->
VideoLinearCFGGuidance -> [MotionKitApplyTrackAdapter <- MotionKitArrowsToTracks <- core masks
(<- MotionKitTrackAdapterLoader)] -> KSampler (euler, karras, cfg 2.5) -> SaveLatent``. The three variants differ
only by the TrackAdapter node (lambda_bg 0.4, tau 0.1, strength 1, whole schedule); the object (a third of
the image) moves a quarter of the width along one arrow. Weights are seeded random, built at start:

* ``--device cpu`` (default): the ``MID`` SVD architecture of the test harness (real layout: 4 levels,
  2 res blocks, 16 temporal self-attentions) at reduced width, 8 frames at 192x192, one torch thread.
* ``--device cuda``: the full SVD / SVD-XT UNet shape (fp16), 25 frames at 1024x576.

The trained variant uses an adapter of the default trainer configuration (encoder 16/32/64 -> 128 features)
with every weight random, so its branch is active everywhere (no short-circuit).

The measurement helpers (ComfyUI start, checkpoints, the step clock, /proc memory reading) are those of
``bench_all_to_first.py``; see its docstring for the method. Time: the progress-bar hook timestamps each
sampler step; steps after the first are timed (the once-per-run work, encoder or field, happens inside the
first step and is reported separately as the median whole-run wall time). On CPU the gated number is process
CPU time per step with one torch thread, wall time is printed beside it. Memory: peak minus pre-run memory
(CUDA: ``max_memory_allocated``; CPU: ``VmHWM`` of a subprocess per variant with
``MALLOC_MMAP_THRESHOLD_=65536``).

Usage: ``.venv/bin/python benchmarks/bench_trackadapter.py [--device cuda] [--frames N --width W --height H
--steps S --rounds R --threads T] [--strict]``. Prints a table and, last, one JSON line.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

_spec = importlib.util.spec_from_file_location("bench_all_to_first", Path(__file__).with_name("bench_all_to_first.py"))
base_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(base_bench)

TARGET = 1.15
VARIANTS = ("unpatched", "free", "trained")
ADAPTER = "bench_random.safetensors"
def parse_args(argv=None) -> argparse.Namespace:
    return base_bench.parse_args(argv, variants=VARIANTS, doc=__doc__)


SamplerClock = base_bench.StepClock  # counts the KSampler's progress only


def prompt(args, ckpt: str, variant: str, seed: int, prefix: str) -> dict:
    from motionkit_testing.workflows import svd_prompt
    w, h = args.width, args.height
    p = svd_prompt(ckpt, base_bench.IMAGE, frames=args.frames, width=w, height=h, steps=args.steps, seed=seed,
                   cfg=2.5, prefix=prefix)
    if variant == "unpatched":
        return p
    box = (w // 3, h // 3)
    start = (w // 6 + box[0] / 2, h // 3 + box[1] / 2)
    arrows = json.dumps({"version": 1, "width": w, "height": h, "arrows": [
        {"object": 0, "points": [list(start), [start[0] + w / 4, start[1] - h / 8]]}]})
    p.update({
        "bg": {"class_type": "SolidMask", "inputs": {"value": 0.0, "width": w, "height": h}},
        "fg": {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": box[0], "height": box[1]}},
        "mask": {"class_type": "MaskComposite", "inputs": {"destination": ["bg", 0], "source": ["fg", 0],
                                                          "x": w // 6, "y": h // 3, "operation": "add"}},
        "tracks": {"class_type": "MotionKitArrowsToTracks", "inputs": {
            "masks": ["mask", 0], "arrows": arrows, "num_frames": args.frames, "points_per_object": 8, "seed": 0,
            "easing": "linear"}},
        "ta": {"class_type": "MotionKitApplyTrackAdapter", "inputs": {
            "model": ["guid", 0], "tracks": ["tracks", 0], "lambda_bg": 0.4, "tau": 0.1, "strength": 1.0,
            "start_percent": 0.0, "end_percent": 1.0}},
    })
    if variant == "trained":
        p["load"] = {"class_type": "MotionKitTrackAdapterLoader", "inputs": {"adapter_name": ADAPTER}}
        p["ta"]["inputs"]["track_adapter"] = ["load", 0]
    p["ks"]["inputs"]["model"] = ["ta", 0]
    return p


def write_adapter(base: Path, ckpt: str) -> int:
    """A TrackAdapter for this checkpoint with every weight seeded random (so its branch is active)."""
    import torch
    import nodes
    path = base / "models" / "trackadapter" / ADAPTER
    path.parent.mkdir(parents=True, exist_ok=True)
    mod = sys.modules[nodes.NODE_CLASS_MAPPINGS["MotionKitApplyTrackAdapter"].__module__]
    ta = importlib.import_module(mod.__name__.rsplit(".", 2)[0] + ".modules.trackadapter")
    model = nodes.NODE_CLASS_MAPPINGS["ImageOnlyCheckpointLoader"]().load_checkpoint(ckpt)[0]
    adapter = ta.TrackAdapter(ta.AdapterConfig(layers=tuple(mod.layer_specs(model))))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in adapter.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) / (p[0].numel() if p.ndim > 1 else 1) ** 0.5)
    if not path.exists():
        ta.save_adapter(adapter, str(path))
    return len(adapter.config.layers)


def child_memory(args) -> None:
    base = Path(args.base)
    session = base_bench.start_comfy(base, "cpu", args.threads)
    ckpt = base_bench.CKPT.format(spec=base_bench.spec_for("cpu").name)
    session.run(prompt(args, ckpt, args.child_memory, seed=0, prefix=f"mem_warm_{args.child_memory}"))
    Path("/proc/self/clear_refs").write_text("5")
    baseline = base_bench._proc_status_kib("VmRSS")
    session.run(prompt(args, ckpt, args.child_memory, seed=1, prefix=f"mem_{args.child_memory}"))
    peak = base_bench._proc_status_kib("VmHWM")
    print("MEMJSON " + json.dumps({"baseline_bytes": baseline * 1024, "peak_bytes": peak * 1024}), flush=True)


base_bench.SCRIPT = Path(__file__).resolve()   # memory subprocesses run this script
cpu_memory = base_bench.cpu_memory


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child_memory:
        child_memory(args)
        return 0
    base = Path(args.base) if args.base else Path(tempfile.mkdtemp(prefix="motionkit-bench-ta-"))
    try:
        return run(args, base, args.device == "cuda")
    finally:
        if not args.base:
            shutil.rmtree(base, ignore_errors=True)


def run(args, base: Path, cuda: bool) -> int:
    import torch

    t_start = time.time()
    session = base_bench.start_comfy(base, args.device, args.threads)
    import comfy.utils
    from motionkit_testing.assets import write_test_image
    from motionkit_testing.workflows import saved_latent

    spec = base_bench.spec_for(args.device)
    ckpt = base_bench.CKPT.format(spec=spec.name)
    ckpt_path = base / "models" / "checkpoints" / ckpt
    base_bench.write_checkpoint(ckpt_path, args.device)
    write_test_image(base / "input" / base_bench.IMAGE, size=(args.height, args.width))
    layers = write_adapter(base, ckpt)
    print(f"[bench] {spec.name} checkpoint and a {layers}-layer random adapter ready ({time.time() - t_start:.0f}s)",
          flush=True)

    memory = {}
    if not cuda:
        for variant in VARIANTS:
            memory[variant] = [cpu_memory(args, base, variant)]
            print(f"[bench] memory {variant}: {memory[variant][0]}", flush=True)

    clock = SamplerClock(cuda)
    comfy.utils.set_progress_bar_global_hook(clock)
    times = {v: [] for v in VARIANTS}
    runs = {v: [] for v in VARIANTS}
    cuda_memory = {v: [] for v in VARIANTS}
    deltas = {v: [] for v in VARIANTS if v != "unpatched"}

    def timed(variant: str, seed: int, record: bool):
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
        tick = time.perf_counter()
        steps, history = base_bench.sample(session, clock, prompt(args, ckpt, variant, seed, f"t_{variant}_{seed}"))
        elapsed = time.perf_counter() - tick
        if len(steps) != args.steps - 1:
            raise RuntimeError(f"expected {args.steps - 1} step times, the progress hook gave {len(steps)}")
        if record:
            times[variant].extend(steps)
            runs[variant].append(elapsed)
            if cuda:
                cuda_memory[variant].append({"baseline_bytes": before, "peak_bytes": torch.cuda.max_memory_allocated()})
        return saved_latent(base, history)

    for variant in VARIANTS:
        timed(variant, seed=999, record=False)
    for r in range(args.rounds):
        order = VARIANTS[r % 3:] + VARIANTS[:r % 3]
        latents = {v: timed(v, seed=1000 + r, record=True) for v in order}
        for v in deltas:
            deltas[v].append(float((latents[v].float() - latents["unpatched"].float()).abs().max()))
        print(f"[bench] round {r + 1}/{args.rounds}: " + ", ".join(
            f"{v} {statistics.median(c for _, c in times[v][-(args.steps - 1):]):.3f}s cpu/step" for v in order),
            flush=True)
    if cuda:
        memory = cuda_memory
    from comfy import model_management as mm
    result = summarise(args, spec, ckpt_path, times, runs, memory, deltas,
                       str(mm.unet_dtype()) if cuda else "torch.float32", time.time() - t_start)
    print_table(result)
    print(json.dumps(result))
    return 1 if args.strict and not result["pass"] else 0


def summarise(args, spec, ckpt_path, times, runs, memory, deltas, dtype, elapsed) -> dict:
    cuda = args.device == "cuda"
    gated = {v: statistics.median((w if cuda else c) for w, c in t) for v, t in times.items()}
    wall = {v: statistics.median(w for w, _ in t) for v, t in times.items()}
    work = {v: max(m["peak_bytes"] - m["baseline_bytes"] for m in ms) for v, ms in memory.items()}
    peak = {v: max(m["peak_bytes"] for m in ms) for v, ms in memory.items()}
    out = {
        "bench": "trackadapter", "device": args.device, "spec": spec.name,
        "unet_parameters": base_bench.unet_parameters(ckpt_path), "dtype": dtype, "threads": args.threads,
        "frames": args.frames, "width": args.width, "height": args.height, "steps_per_run": args.steps,
        "rounds": args.rounds, "time_metric": "wall" if cuda else "process cpu",
        "step_seconds_median": gated, "step_wall_seconds_median": wall,
        "run_wall_seconds_median": {v: statistics.median(r) for v, r in runs.items()},
        "working_memory_bytes": work, "peak_memory_bytes": peak, "target": TARGET,
        "latent_max_abs_diff_per_round": deltas, "wall_seconds": round(elapsed, 1),
    }
    for v in ("free", "trained"):
        out[f"time_ratio_{v}"] = gated[v] / gated["unpatched"]
        out[f"wall_time_ratio_{v}"] = wall[v] / wall["unpatched"]
        out[f"memory_ratio_{v}"] = work[v] / work["unpatched"]
        out[f"active_{v}"] = min(deltas[v]) > 0
    out["pass"] = all(out[f"time_ratio_{v}"] <= TARGET and out[f"active_{v}"] for v in ("free", "trained"))
    return out


def print_table(r: dict) -> None:
    mib = 1024 ** 2
    print()
    print(f"TrackAdapter cost: SVD '{r['spec']}' UNet ({r['unet_parameters'] / 1e6:.1f} M parameters, {r['dtype']}), "
          f"{r['frames']} frames {r['width']}x{r['height']}, {r['steps_per_run']} steps, device {r['device']}, "
          f"threads {r['threads']}; time = {r['time_metric']} per step (median)")
    print(f"{'':28}{'unpatched':>12}{'free':>12}{'trained':>12}{'ratio free':>12}{'ratio trained':>15}")
    s, w, m = r["step_seconds_median"], r["step_wall_seconds_median"], r["working_memory_bytes"]
    print(f"{'time per step (s)':28}{s['unpatched']:>12.3f}{s['free']:>12.3f}{s['trained']:>12.3f}"
          f"{r['time_ratio_free']:>12.3f}{r['time_ratio_trained']:>15.3f}   target <= {r['target']}")
    print(f"{'  wall per step (s)':28}{w['unpatched']:>12.3f}{w['free']:>12.3f}{w['trained']:>12.3f}"
          f"{r['wall_time_ratio_free']:>12.3f}{r['wall_time_ratio_trained']:>15.3f}")
    rw = r["run_wall_seconds_median"]
    print(f"{'  whole run, wall (s)':28}{rw['unpatched']:>12.2f}{rw['free']:>12.2f}{rw['trained']:>12.2f}")
    print(f"{'working memory (MiB)':28}{m['unpatched'] / mib:>12.1f}{m['free'] / mib:>12.1f}{m['trained'] / mib:>12.1f}"
          f"{r['memory_ratio_free']:>12.3f}{r['memory_ratio_trained']:>15.3f}")
    print(f"patch active (max |latent - unpatched| per round): {r['latent_max_abs_diff_per_round']}")
    print(f"overall: {'PASS' if r['pass'] else 'FAIL'} ({r['wall_seconds']}s)")


if __name__ == "__main__":
    sys.exit(main())
