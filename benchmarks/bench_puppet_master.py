#!/usr/bin/env python3
"""Cost of Puppet-Master against plain SVD at the same size: per-step sampling time and sampling working memory
in one run (target: time ratio <= 1.10); and, with ``--load-memory``, the peak resident memory of loading a
Puppet-Master file (target: one copy of the weights in the load dtype).

**Sampling.** The method, output and helpers are those of ``bench_all_to_first.py`` (read its docstring):
ComfyUI in process, alternating rounds, KSampler step clock, process CPU time of a single-threaded process on
CPU (synchronised wall time on CUDA), peak-minus-baseline memory (``VmHWM`` subprocesses with
``MALLOC_MMAP_THRESHOLD_=65536`` on CPU, ``max_memory_allocated`` on CUDA). The two variants:

* plain SVD: ``ImageOnlyCheckpointLoader -> SVD_img2vid_Conditioning -> VideoLinearCFGGuidance -> KSampler``;
* Puppet-Master: the same graph with the MODEL from ``Load Puppet-Master -> Puppet-Master Drags`` (one square
  object dragged a quarter of the width; 15 drag sites, all-to-first in the 16 spatial self-attentions), the
  Puppet-Master file holding the *same* base UNet weights plus seeded random drag modules.

Sizes: Puppet-Master's own, 14 frames at 256x256 (drag maps at 32, 16, 8). ``--device cpu`` (default): the MID
SVD architecture (real SVD layout: 4 levels, 2 res blocks, 64-channel heads, at reduced width; drag embedder
48/64/64) with one torch thread; ``--device cuda``: the full SVD shape (1.5 B + 154 M parameters) in the dtype
ComfyUI picks for SVD on that GPU (fp16).

**Loading** (``--load-memory full|mid``): writes a file with every key and shape of the official manifest
(``full``: 1.68 B parameters, 6.7 GB in fp32; streamed to disk, never held in memory) or the MID size, then in a
fresh subprocess loads it with Load Puppet-Master's code into an fp16 model (``dtype`` override, and no manual
cast: what ComfyUI picks on a GPU) and reports the peak resident set over the process's pre-load baseline
(``VmHWM`` after ``/proc/self/clear_refs``) against one fp16 copy of the weights (parameters x 2 bytes); the
target is that copy plus one tensor of the file in flight plus 64 MiB. ``--naive`` also
measures, for contrast, reading the whole file with ``safetensors.torch.load_file`` into a state dict and
handing the renamed dict to ComfyUI (what a loader built on ComfyUI's own file loading would do).

Usage: ``.venv/bin/python benchmarks/bench_puppet_master.py [--device cuda] [--frames N --width W --height H
--steps S --rounds R --threads T] [--strict]`` and ``... --load-memory full [--naive]``. Prints a table and,
last, one JSON line.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

_spec = importlib.util.spec_from_file_location("bench_all_to_first", Path(__file__).with_name("bench_all_to_first.py"))
base_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(base_bench)

PM_FILE = "bench_puppet_master_{spec}.safetensors"


def spec_for(device: str):
    """MID / full SVD with SVD's real output layout (what a Puppet-Master file's key map expects)."""
    from motionkit_testing import tiny_puppet_master as tpm
    return tpm.PM_FULL if device == "cuda" else tpm.PM_MID


def write_checkpoint(path: Path, device: str) -> None:
    """The plain SVD checkpoint, and next to the models the Puppet-Master file with the same base UNet."""
    _write_svd_checkpoint(path, device)
    from motionkit_testing import tiny_puppet_master as tpm
    spec = spec_for(device)
    out = path.parents[1] / "puppet_master" / PM_FILE.format(spec=spec.name)
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tpm.write_from_svd_checkpoint(path, out, spec)


def add_puppet_master(p: dict, args) -> dict:
    """Plain SVD's graph with its MODEL replaced by Load Puppet-Master -> Puppet-Master Drags."""
    base_bench.add_box_tracks(p, args)
    p.update({
        "pm": {"class_type": "MotionKitPuppetMasterLoader",
               "inputs": {"unet_name": PM_FILE.format(spec=spec_for(args.device).name)}},
        "drags": {"class_type": "MotionKitPuppetMasterDrags", "inputs": {"model": ["pm", 0], "tracks": ["tracks", 0]}},
    })
    p["guid"]["inputs"]["model"] = ["drags", 0]
    return p


_write_svd_checkpoint = base_bench.write_checkpoint
base_bench.BENCH, base_bench.TITLE, base_bench.NODE_LABEL = "puppet_master", "Puppet-Master (vs plain SVD)", "PM"
base_bench.TARGET, base_bench.MEMORY_TARGET = 1.10, 1.25
base_bench.CKPT = "motionkit_bench_pm_{spec}.safetensors"
base_bench.DEFAULTS = {"cpu": (14, 256, 256, 4, 3, 1), "cuda": (14, 256, 256, 8, 4, None)}
base_bench.SCRIPT = Path(__file__).resolve()
base_bench.spec_for = spec_for
base_bench.write_checkpoint = write_checkpoint
base_bench.add_patch = add_puppet_master


# --- loading memory ------------------------------------------------------------------------------------

def _kib(field: str) -> int:
    return base_bench._proc_status_kib(field)


def load_child(path: Path, mode: str) -> None:
    """In a fresh process: load ``path`` into an fp16 model and print the peak RSS over the baseline."""
    import torch
    base = Path(tempfile.mkdtemp(prefix="motionkit-bench-load-"))
    try:
        base_bench.start_comfy(base, "cpu", 1)
        import nodes
        mod = sys.modules[nodes.NODE_CLASS_MAPPINGS["MotionKitPuppetMasterLoader"].__module__]
        stream = sys.modules[mod.__name__.rsplit(".", 2)[0] + ".modules.safetensors_stream"]
        header = stream.read_header(str(path))
        params = sum(_numel(info.shape) for info in header.tensors.values())
        largest = max(info.end - info.begin for info in header.tensors.values())
        # As on a GPU that computes fp16 in fp16: no manual cast, so the drag modules (plain torch layers, kept
        # in the compute dtype) are fp16 too. (On the CPU ComfyUI computes fp16 weights in fp32.)
        import comfy.model_management
        comfy.model_management.unet_manual_cast = lambda *a, **k: None
        Path("/proc/self/clear_refs").write_text("5")
        baseline = _kib("VmRSS") * 1024
        t0 = time.perf_counter()
        if mode == "streamed":
            model = mod.load_puppet_master(str(path), path.name, dtype=torch.float16)
            dtypes = sorted({str(p.dtype) for p in model.model.diffusion_model.parameters()}
                            | {str(p.dtype) for p in mod.adapter_of(model).parameters()})
        else:   # what loading the whole file first would cost
            import comfy.sd
            from safetensors.torch import load_file
            pm = sys.modules[mod.__name__.rsplit(".", 2)[0] + ".modules.puppet_master"]
            sd = load_file(str(path))
            converted = {pm.comfy_key(k, 2): v for k, v in sd.items() if not pm.is_drag_key(k)}
            time_dim = converted["time_embed.0.weight"].shape[0]
            for key, shape in zip(pm.LABEL_EMB, ((time_dim, 768), (time_dim,), (time_dim, time_dim), (time_dim,))):
                converted[key] = torch.zeros(shape)
            model = comfy.sd.load_diffusion_model_state_dict(converted, model_options={"dtype": torch.float16})
            drags = {k: v.to(torch.float16) for k, v in sd.items() if pm.is_drag_key(k)}
            dtypes = sorted({str(p.dtype) for p in model.model.diffusion_model.parameters()})
        seconds = time.perf_counter() - t0
        peak = _kib("VmHWM") * 1024
        print("LOADJSON " + json.dumps({"mode": mode, "parameters": params, "largest_tensor_bytes": largest,
                                         "baseline_bytes": baseline,
                                         "peak_bytes": peak, "seconds": seconds, "dtypes": dtypes}), flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def load_memory(size: str, naive: bool, keep: str | None) -> int:
    import torch
    folder = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="motionkit-bench-pmfile-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"puppet_master_{size}_fp32.safetensors"
    try:
        t0 = time.time()
        if not path.exists():
            scratch = Path(tempfile.mkdtemp(prefix="motionkit-bench-w-"))
            try:
                base_bench.start_comfy(scratch, "cpu", None)
                from motionkit_testing import tiny_puppet_master as tpm
                if size == "full":
                    tpm.write_full_size(path, torch.float32)
                else:
                    tpm.write_puppet_master(path, tpm.PM_MID)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        print(f"[bench] {path.name}: {path.stat().st_size / 1e9:.2f} GB ({time.time() - t0:.0f}s)", flush=True)
        results = [_run_load_child(path, "streamed")]
        if naive:
            results.append(_run_load_child(path, "naive"))
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)
    gib = 1024 ** 3
    rows = []
    for r in results:
        one_copy = r["parameters"] * 2
        r["load_bytes"] = r["peak_bytes"] - r["baseline_bytes"]
        r["copies_of_fp16_weights"] = r["load_bytes"] / one_copy
        rows.append(r)
        print(f"{r['mode']:>9}: peak RSS over baseline {r['load_bytes'] / gib:.2f} GiB = "
              f"{r['copies_of_fp16_weights']:.3f} x one fp16 copy ({one_copy / gib:.2f} GiB, {r['parameters']:,} "
              f"parameters); baseline {r['baseline_bytes'] / gib:.2f} GiB; {r['seconds']:.1f}s; weights {r['dtypes']}")
    streamed = rows[0]
    # one copy, plus one tensor of the file in flight (as stored, fp32), plus 64 MiB of slack
    limit = streamed["parameters"] * 2 + streamed["largest_tensor_bytes"] + 64 * 1024 ** 2
    ok = streamed["load_bytes"] <= limit
    print(f"one copy at a time: {'PASS' if ok else 'FAIL'} (target: one fp16 copy + the largest tensor of the file "
          f"({streamed['largest_tensor_bytes'] / gib:.3f} GiB) + 64 MiB = {limit / gib:.2f} GiB)")
    print(json.dumps({"bench": "puppet_master_load", "size": size, "results": rows, "pass": ok}))
    return 0 if ok else 1


def _run_load_child(path: Path, mode: str) -> dict:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "PYTHONUNBUFFERED": "1"}
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--load-child", str(path), mode],
                         env=env, capture_output=True, text=True)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("LOADJSON ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"load subprocess ({mode}) failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return json.loads(line[len("LOADJSON "):])


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--load-child"]:
        load_child(Path(argv[1]), argv[2])
        return 0
    if "--load-memory" in argv:
        i = argv.index("--load-memory")
        size = argv[i + 1] if i + 1 < len(argv) and not argv[i + 1].startswith("--") else "full"
        keep = argv[argv.index("--keep-file") + 1] if "--keep-file" in argv else None
        return load_memory(size, "--naive" in argv, keep)
    return base_bench.main(argv)


if __name__ == "__main__":
    sys.exit(main())
