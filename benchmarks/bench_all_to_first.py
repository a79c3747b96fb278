#!/usr/bin/env python3
"""Cost of All-to-First Attention: per-step sampling time and peak memory of SVD with and without the
node, measured in one run, with the ratios checked against the targets (both <= 1.05).

What runs. The pinned ComfyUI in process (``InProcessComfy``: its own custom-node loader, node registry
and ``PromptExecutor``), executing the API workflow ``ImageOnlyCheckpointLoader -> SVD_img2vid_Conditioning
-> VideoLinearCFGGuidance -> [MotionKitAllToFirstAttention] -> KSampler (euler, karras, cfg 2.5) ->
SaveLatent``. The two variants differ only by the MotionKit node (strength 1, whole schedule). The
weights are seeded random (never downloaded), built at start:

* ``--device cpu`` (default): the ``MID`` SVD architecture from the test harness (real SVD layout: 4
  levels, 2 res blocks, 64-channel heads, temporal layers, at reduced width; 73 M parameters), 8 frames
  at 192x192 (576 tokens per frame in the first level), one torch thread: about 2 s per step.
* ``--device cuda``: the full SVD / SVD-XT UNet shape (``FULL_SVD``, 1.5 B parameters, with a ViT-H
  CLIP vision tower and a TAESD VAE), 25 frames at 1024x576, in the dtype ComfyUI picks for SVD on
  that GPU (fp16). Writing its ~4 GB checkpoint takes a minute.

Time. ComfyUI's progress-bar hook is called by KSampler after every step; a step's time is the
interval between two consecutive calls (so model loading and condition preparation, which happen
before the first step, are excluded; on CUDA the hook synchronises first). Both the wall-clock time and
the process CPU time of each step are recorded. The ratio checked against the target is the wall-clock
one on CUDA, and the CPU-time one on CPU, where torch runs single-threaded by default (``--threads``):
on a shared machine a step's wall-clock time includes the time other processes held the cores, while
the CPU time of a single-threaded process is the time the step itself computed, i.e. its wall-clock
time on an idle machine. Both ratios are printed. Warmup runs of both
variants come first; then ``--rounds`` rounds each run both variants, in alternating order (U,P then
P,U ...) so that drift (thermal, other processes on a shared machine) hits both alike. Each round uses
a new seed (otherwise ComfyUI's cache would skip the sampler), the same for both variants, and the two
latents of each round are compared to prove the patch was active. Reported: median step time per
variant; ratio = patched / unpatched.

Memory. "Sampling working memory" = peak memory during the measured sampling run minus the memory in
use just before it (weights, conditioning and the ComfyUI process are in both variants alike and would
only dilute the ratio; the absolute peaks are printed too). The ratio gated against the target is the
working-memory ratio.

* CUDA: ``torch.cuda.reset_peak_memory_stats`` before each timed run, ``max_memory_allocated`` after
  it, ``memory_allocated`` before it as the baseline (the allocator's view: live tensors, not cache).
  Every timed run is measured; the maximum per variant is reported.
* CPU: ``tracemalloc`` does not see torch's allocations, so each variant runs in its own subprocess
  with ``MALLOC_MMAP_THRESHOLD_=65536`` (glibc then serves every tensor above 64 KiB with its own mmap
  and returns it to the OS on free, so the resident set follows live tensor memory instead of keeping
  freed heap). The subprocess loads ComfyUI, runs one warmup sampling, resets the kernel's peak-RSS
  counter (``/proc/self/clear_refs`` = 5), reads ``VmRSS`` as the baseline, runs the measured sampling
  and reads the peak ``VmHWM``. Linux only.

Usage: ``.venv/bin/python benchmarks/bench_all_to_first.py [--device cuda] [--frames N --width W
--height H --steps S --rounds R]``. Prints a table and, last, one JSON line. ``--strict`` exits 1 when a
target is missed.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from motionkit_testing import comfy_session as cs  # noqa: E402

# What is measured; another patch's benchmark (bench_motion_augmented.py) swaps these four.
BENCH, TITLE, NODE_LABEL = "all_to_first", "All-to-First Attention", "node"
TARGET = 1.05          # time ratio target
MEMORY_TARGET = 1.05   # working-memory ratio target
SCRIPT = Path(__file__).resolve()  # the script a memory subprocess runs
CKPT = "motionkit_bench_{spec}.safetensors"
IMAGE = "motionkit_bench.png"
DEFAULTS = {  # device -> (frames, width, height, steps, rounds, torch threads)
    "cpu": (8, 192, 192, 4, 3, 1),
    "cuda": (25, 1024, 576, 8, 4, None),
}
MEMORY_STEPS = 2  # the memory peak is one UNet call's; it does not grow with the step count


def parse_args(argv=None, variants=("unpatched", "patched"), doc: str = __doc__) -> argparse.Namespace:
    """The SVD benchmarks' shared options; ``variants`` are the memory subprocess names."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--frames", type=int)
    ap.add_argument("--width", type=int)
    ap.add_argument("--height", type=int)
    ap.add_argument("--steps", type=int, help="sampler steps per run (each run gives steps-1 step times)")
    ap.add_argument("--rounds", type=int, help="timed rounds; each runs every variant once")
    ap.add_argument("--threads", type=int, help="torch CPU threads (CPU default 1, see the docstring)")
    ap.add_argument("--base", help="ComfyUI base directory to use and keep (default: a temporary one)")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    ap.add_argument("--child-memory", choices=variants, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    frames, width, height, steps, rounds, threads = DEFAULTS[args.device]
    args.frames = args.frames or frames
    args.width, args.height = args.width or width, args.height or height
    args.steps, args.rounds = args.steps or steps, args.rounds or rounds
    args.threads = args.threads or threads
    if args.steps < 2:
        ap.error("--steps must be at least 2 (a step time is the interval between two steps)")
    return args


# --- ComfyUI in process ----------------------------------------------------------------------------

def start_comfy(base: Path, device: str, threads: int | None = None) -> cs.InProcessComfy:
    if threads:
        import torch
        torch.set_num_threads(threads)
    comfy = cs.comfyui_path()
    cs.make_base_dir(base)
    cs.configure_comfy(base, comfy)  # puts ComfyUI on sys.path, CPU mode by default
    if device == "cuda":
        from comfy.cli_args import args
        args.cpu = False
        # model_management reads the flag once, at import: import it now, before InProcessComfy
        # re-applies the harness's CPU default (which then no longer has any effect).
        import comfy.model_management  # noqa: F401
    session = cs.InProcessComfy(base, comfy)
    import comfy.model_management as mm
    if mm.get_torch_device().type != device:
        raise SystemExit(f"asked for {device}, ComfyUI runs on {mm.get_torch_device()}")
    return session


def spec_for(device: str):
    from motionkit_testing import tiny_models as tm
    return tm.FULL_SVD if device == "cuda" else tm.MID


def write_checkpoint(path: Path, device: str) -> None:
    """Seeded random SVD-layout checkpoint: ``MID`` (fp32) on CPU, the full SVD shape (fp16) on CUDA."""
    import torch
    from motionkit_testing import tiny_models as tm
    if path.exists():
        return
    spec = spec_for(device)
    if device == "cpu":
        tm.tiny_svd_checkpoint(str(path), spec=spec)
        return
    from safetensors.torch import save_file
    half = lambda sd: {k: v.to(torch.float16).contiguous() for k, v in sd.items()}  # noqa: E731
    sd = {f"model.diffusion_model.{k}": v for k, v in half(tm.build_unet(spec, dtype=torch.float16).state_dict()).items()}
    sd.update({f"first_stage_model.{k}": v.contiguous() for k, v in tm.build_taesd().state_dict().items()})
    sd.update({f"{tm.CLIP_PREFIX}{k}": v for k, v in half(tm.build_clip_vision_sd(spec)).items()})
    save_file(sd, str(path), metadata={"motionkit_test_model": tm.TINY_LABEL, "spec": spec.name})


def unet_parameters(path: Path) -> int:
    from safetensors import safe_open
    with safe_open(str(path), "pt") as f:
        return sum(_numel(f.get_slice(k).get_shape()) for k in f.keys() if k.startswith("model.diffusion_model."))


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def add_box_tracks(p: dict, args) -> dict:
    """A box object (a third of the frame, left of centre) as a MASK (node "mask") and its arrow, a quarter of
    the width to the right, as TRACKS (node "tracks"): the drawn control of the benchmarks that need one."""
    w, h = args.width, args.height
    side_w, side_h = w // 3, h // 3
    x0, y0 = w // 6, h // 3
    start = [x0 + side_w / 2, y0 + side_h / 2]
    arrows = {"version": 1, "width": w, "height": h,
              "arrows": [{"object": 0, "points": [start, [start[0] + w / 4, start[1]]]}]}
    p.update({
        "bg": {"class_type": "SolidMask", "inputs": {"value": 0.0, "width": w, "height": h}},
        "fg": {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": side_w, "height": side_h}},
        "mask": {"class_type": "MaskComposite", "inputs": {"destination": ["bg", 0], "source": ["fg", 0],
                                                          "x": x0, "y": y0, "operation": "add"}},
        "tracks": {"class_type": "MotionKitArrowsToTracks", "inputs": {
            "masks": ["mask", 0], "arrows": json.dumps(arrows), "num_frames": args.frames,
            "points_per_object": 8, "seed": 0, "easing": "linear"}},
    })
    return p


def add_patch(p: dict, args) -> dict:
    """Insert the measured patch between the guidance node and the KSampler (All-to-First, strength 1)."""
    p["a2f"] = {"class_type": "MotionKitAllToFirstAttention", "inputs": {
        "model": ["guid", 0], "strength": 1.0, "start_percent": 0.0, "end_percent": 1.0}}
    p["ks"]["inputs"]["model"] = ["a2f", 0]
    return p


def prompt(args, ckpt: str, patched: bool, seed: int, prefix: str) -> dict:
    from motionkit_testing.workflows import svd_prompt
    p = svd_prompt(ckpt, IMAGE, frames=args.frames, width=args.width, height=args.height, steps=args.steps,
                   seed=seed, cfg=2.5, prefix=prefix)
    return add_patch(p, args) if patched else p


class StepClock:
    """ComfyUI progress-bar hook: wall-clock and process CPU time after each sampler step. Only the
    KSampler's ("ks") progress counts: other nodes (trajectory builders) report progress too."""

    def __init__(self, cuda: bool):
        self.cuda, self.marks = cuda, []

    def __call__(self, value, total, preview=None, node_id=None, **_):
        if node_id is None:
            from comfy_execution.utils import get_executing_context
            context = get_executing_context()
            node_id = context.node_id if context is not None else None
        if node_id != "ks":
            return
        if self.cuda:
            import torch
            torch.cuda.synchronize()
        self.marks.append((value, time.perf_counter(), time.process_time()))

    def step_times(self) -> list[tuple[float, float]]:
        """``(wall, cpu)`` seconds of each step after the first."""
        return [(w1 - w0, c1 - c0) for (v0, w0, c0), (v1, w1, c1) in zip(self.marks, self.marks[1:]) if v1 == v0 + 1]


def sample(session, clock: StepClock, p: dict) -> tuple[list[float], dict]:
    clock.marks.clear()
    history = session.run(p)
    return clock.step_times(), history


# --- memory ----------------------------------------------------------------------------------------

def _proc_status_kib(field: str) -> int:
    return int(re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M).group(1))


def child_memory(args) -> None:
    """One variant's CPU sampling working memory, in this (fresh) process; prints one JSON line."""
    base = Path(args.base)
    session = start_comfy(base, "cpu", args.threads)
    ckpt = CKPT.format(spec=spec_for("cpu").name)
    patched = args.child_memory == "patched"
    session.run(prompt(args, ckpt, patched, seed=0, prefix=f"mem_warm_{args.child_memory}"))
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS counter to the current RSS
    baseline = _proc_status_kib("VmRSS")
    session.run(prompt(args, ckpt, patched, seed=1, prefix=f"mem_{args.child_memory}"))
    peak = _proc_status_kib("VmHWM")
    print("MEMJSON " + json.dumps({"baseline_bytes": baseline * 1024, "peak_bytes": peak * 1024}), flush=True)


def cpu_memory(args, base: Path, variant: str) -> dict:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, str(SCRIPT), "--device", "cpu", "--base", str(base),
           "--frames", str(args.frames), "--width", str(args.width), "--height", str(args.height),
           "--steps", str(MEMORY_STEPS), "--threads", str(args.threads), "--child-memory", variant]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("MEMJSON ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"memory subprocess for {variant} failed ({out.returncode}):\n{out.stdout[-3000:]}\n"
                           f"{out.stderr[-3000:]}")
    return json.loads(line[len("MEMJSON "):])


# --- main ------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child_memory:
        child_memory(args)
        return 0
    cuda = args.device == "cuda"
    base = Path(args.base) if args.base else Path(tempfile.mkdtemp(prefix="motionkit-bench-"))
    try:
        return run(args, base, cuda)
    finally:
        if not args.base:
            shutil.rmtree(base, ignore_errors=True)


def run(args, base: Path, cuda: bool) -> int:
    import torch

    t_start = time.time()
    session = start_comfy(base, args.device, args.threads)
    import comfy.utils
    from comfy.ldm.modules.attention import optimized_attention
    from motionkit_testing.assets import write_test_image
    from motionkit_testing.workflows import saved_latent

    spec = spec_for(args.device)
    ckpt = CKPT.format(spec=spec.name)
    ckpt_path = base / "models" / "checkpoints" / ckpt
    write_checkpoint(ckpt_path, args.device)
    write_test_image(base / "input" / IMAGE, size=(args.height, args.width))
    print(f"[bench] ComfyUI in process on {args.device}; checkpoint {spec.name} ready "
          f"({time.time() - t_start:.0f}s)", flush=True)

    memory = {}
    if not cuda:  # separate processes, before this one loads the model (see the docstring)
        for variant in ("unpatched", "patched"):
            memory[variant] = [cpu_memory(args, base, variant)]
            print(f"[bench] memory {variant}: {memory[variant][0]}", flush=True)

    clock = StepClock(cuda)
    comfy.utils.set_progress_bar_global_hook(clock)
    times = {"unpatched": [], "patched": []}
    cuda_memory = {"unpatched": [], "patched": []}
    deltas = []

    def timed(variant: str, seed: int, record: bool):
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
        steps, history = sample(session, clock, prompt(args, ckpt, variant == "patched", seed, f"t_{variant}_{seed}"))
        if len(steps) != args.steps - 1:
            raise RuntimeError(f"expected {args.steps - 1} step times, the progress hook gave {len(steps)}")
        if record:
            times[variant].extend(steps)
            if cuda:
                cuda_memory[variant].append({"baseline_bytes": before, "peak_bytes": torch.cuda.max_memory_allocated()})
        return saved_latent(base, history)

    for variant in ("unpatched", "patched"):  # warmup: model load, allocator, kernels
        timed(variant, seed=999, record=False)
    for r in range(args.rounds):
        order = ("unpatched", "patched") if r % 2 == 0 else ("patched", "unpatched")
        latents = {v: timed(v, seed=1000 + r, record=True) for v in order}
        deltas.append(float((latents["patched"].float() - latents["unpatched"].float()).abs().max()))
        print(f"[bench] round {r + 1}/{args.rounds}: " + ", ".join(
            f"{v} {statistics.median(w for w, _ in times[v][-(args.steps - 1):]):.3f}s/step wall, "
            f"{statistics.median(c for _, c in times[v][-(args.steps - 1):]):.3f}s cpu" for v in order), flush=True)
    if cuda:
        memory = cuda_memory

    from comfy import model_management as mm
    result = summarise(args, spec, ckpt_path, times, memory, deltas, optimized_attention.__name__,
                       str(mm.unet_dtype()) if cuda else "torch.float32", time.time() - t_start)
    print_table(result)
    print(json.dumps(result))
    return 1 if args.strict and not result["pass"] else 0


def summarise(args, spec, ckpt_path, times, memory, deltas, attention, dtype, elapsed) -> dict:
    wall = {v: [w for w, _ in t] for v, t in times.items()}
    cpu = {v: [c for _, c in t] for v, t in times.items()}
    med_wall = {v: statistics.median(t) for v, t in wall.items()}
    med_cpu = {v: statistics.median(t) for v, t in cpu.items()}
    work = {v: max(m["peak_bytes"] - m["baseline_bytes"] for m in ms) for v, ms in memory.items()}
    peak = {v: max(m["peak_bytes"] for m in ms) for v, ms in memory.items()}
    wall_ratio = med_wall["patched"] / med_wall["unpatched"]
    cpu_ratio = med_cpu["patched"] / med_cpu["unpatched"]
    # CPU: process CPU time of a single-threaded run (the machine may be shared); CUDA: synchronised wall time
    time_ratio = wall_ratio if args.device == "cuda" else cpu_ratio
    mem_ratio = work["patched"] / work["unpatched"]
    return {
        "bench": BENCH, "device": args.device, "spec": spec.name,
        "unet_parameters": unet_parameters(ckpt_path), "dtype": dtype, "attention": attention,
        "frames": args.frames, "width": args.width, "height": args.height, "steps_per_run": args.steps,
        "rounds": args.rounds, "unet_batch": 2 * args.frames, "torch_threads": args.threads,
        "time_metric": "wall" if args.device == "cuda" else "process_cpu",
        "step_wall_seconds_median": med_wall, "step_cpu_seconds_median": med_cpu,
        "step_wall_seconds_range": {v: [min(t), max(t)] for v, t in wall.items()},
        "step_cpu_seconds_range": {v: [min(t), max(t)] for v, t in cpu.items()},
        "step_samples": {v: len(t) for v, t in times.items()},
        "wall_time_ratio": wall_ratio, "cpu_time_ratio": cpu_ratio,
        "memory_method": "torch.cuda.max_memory_allocated" if args.device == "cuda" else
                         "peak RSS (VmHWM) in a subprocess per variant, MALLOC_MMAP_THRESHOLD_=65536",
        "working_memory_bytes": work, "peak_memory_bytes": peak,
        "time_ratio": time_ratio, "memory_ratio": mem_ratio,
        "peak_memory_ratio": peak["patched"] / peak["unpatched"],
        "target": TARGET, "memory_target": MEMORY_TARGET,
        "time_pass": time_ratio <= TARGET, "memory_pass": mem_ratio <= MEMORY_TARGET,
        # a benchmark of a patch that changed nothing would measure nothing: it must alter every round's latent
        "patch_active": all(d > 0 for d in deltas),
        "pass": time_ratio <= TARGET and mem_ratio <= MEMORY_TARGET and all(d > 0 for d in deltas),
        "latent_max_abs_diff_per_round": deltas, "wall_seconds": round(elapsed, 1),
    }


def print_table(r: dict) -> None:
    mib = 1024 ** 2
    verdict = lambda ok: "PASS" if ok else "FAIL"  # noqa: E731
    print()
    print(f"{TITLE} cost: SVD '{r['spec']}' UNet ({r['unet_parameters'] / 1e6:.1f} M parameters, "
          f"{r['dtype']}), {r['frames']} frames {r['width']}x{r['height']}, cfg batch {r['unet_batch']}, "
          f"device {r['device']}, attention {r['attention']}")
    print(f"{r['step_samples']['unpatched']} step times per variant over {r['rounds']} alternating rounds, "
          f"torch threads {r['torch_threads'] or 'default'}; gated time: {r['time_metric']}; "
          f"memory: {r['memory_method']}")
    print(f"{'':34}{'without ' + NODE_LABEL:>14}{'with ' + NODE_LABEL:>14}{'ratio':>9}{'target':>9}  result")
    row = lambda name, u, p, ratio, ok, target=r["target"]: print(  # noqa: E731
        f"{name:34}{u:>14}{p:>14}{ratio:>9.3f}{'<= ' + str(target):>9}  {ok}")
    for metric in ("cpu", "wall"):
        med, rng = r[f"step_{metric}_seconds_median"], r[f"step_{metric}_seconds_range"]
        gated = (metric == "wall") == (r["time_metric"] == "wall")
        row(f"{metric} time per step, median (s)", f"{med['unpatched']:.3f}", f"{med['patched']:.3f}",
            r[f"{metric}_time_ratio"], verdict(r["time_pass"]) if gated else "(information)")
        print(f"{'  min-max (s)':34}{rng['unpatched'][0]:>7.3f}-{rng['unpatched'][1]:<6.3f}"
              f"{rng['patched'][0]:>7.3f}-{rng['patched'][1]:<6.3f}")
    w, pk = r["working_memory_bytes"], r["peak_memory_bytes"]
    row("sampling working memory (MiB)", f"{w['unpatched'] / mib:.1f}", f"{w['patched'] / mib:.1f}",
        r["memory_ratio"], verdict(r["memory_pass"]), r["memory_target"])
    print(f"{'peak memory incl. weights (MiB)':34}{pk['unpatched'] / mib:>14.1f}{pk['patched'] / mib:>14.1f}"
          f"{r['peak_memory_ratio']:>9.3f}  (information)")
    print(f"patch active: {r['patch_active']} (max |latent with - latent without| per round: "
          + ", ".join(f"{d:.3g}" for d in r["latent_max_abs_diff_per_round"]) + ")")
    print(f"overall: {verdict(r['pass'])} ({r['wall_seconds']}s)")


if __name__ == "__main__":
    sys.exit(main())
