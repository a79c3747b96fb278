#!/usr/bin/env python3
"""MotionKit's main job: start the pinned ComfyUI with MotionKit on 127.0.0.1, run an example workflow
headless through /prompt, and write the video to an output folder.

With a real SVD checkpoint (``svd_xt.safetensors``, ``svd.safetensors``, ... in ComfyUI's
``models/checkpoints`` or the demo's own ``models/checkpoints``) the workflow runs as saved. Without one,
``--world`` (the default when the Control World model is already trained in the user cache) renders the
Control World: the trained world model makes a sprite follow its drawn arrow, the tracks are drawn over
the video, and the clip's ObjMC is printed (benchmarks/control_world). Otherwise it runs the embedded
default: tiny RANDOM test models at tiny sizes. That output is labelled
``TINY_RANDOM_MODEL`` in its file name and in the log, and looks like noise: it proves the pipeline, not
the method.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from motionkit_testing import comfy_session as cs  # noqa: E402
from motionkit_testing.assets import write_test_image  # noqa: E402
from motionkit_testing.workflows import adapt_to_tiny_models, load_workflow, ui_to_api  # noqa: E402

REAL_SVD = ("svd_xt.safetensors", "svd_xt_1_1.safetensors", "svd.safetensors", "svd_image_decoder.safetensors")
TINY_CKPT = "motionkit_TINY_RANDOM_svd.safetensors"


def log(msg: str) -> None:
    print(f"[motionkit demo] {msg}", flush=True)


def extra_model_paths(base: Path, comfy: Path) -> Path:
    """Let the demo's ComfyUI also see the host ComfyUI's own model folders (where users keep SVD)."""
    yaml = base / "extra_model_paths.yaml"
    yaml.write_text(f"comfyui_host:\n    base_path: {comfy}\n    checkpoints: models/checkpoints\n"
                    f"    clip_vision: models/clip_vision\n    vae: models/vae\n    loras: models/loras\n")
    return yaml


def find_real_svd(out: Path, comfy: Path) -> str | None:
    """The first SVD checkpoint in the demo's or the host ComfyUI's ``models/checkpoints`` (the folders
    ``extra_model_paths`` shows the server), looked up on disk before the server starts."""
    for name in REAL_SVD:
        for folder in (out / "models" / "checkpoints", comfy / "models" / "checkpoints"):
            if (folder / name).is_file():
                return name
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workflow", default=str(REPO / "example_workflows" / "svd_all_to_first.json"))
    ap.add_argument("--out", default=str(REPO / "output" / "demo"), help="demo ComfyUI base directory")
    ap.add_argument("--tiny", action="store_true", help="use the tiny random models even if SVD is present")
    ap.add_argument("--cpu", action="store_true", help="run a real checkpoint on the CPU too (very slow)")
    ap.add_argument("--world", action="store_true",
                    help="render the Control World (benchmarks/control_world): a sprite asked to follow its arrow, "
                         "on the world model trained in the user cache (trained first if missing)")
    args = ap.parse_args()

    comfy = cs.comfyui_path()
    out = Path(args.out).resolve()
    real = None if args.tiny or args.world else find_real_svd(out, comfy)
    sys.path.insert(0, str(REPO / "benchmarks"))
    from control_world import demo as world_demo
    if args.world or (real is None and not args.tiny and world_demo.available()):
        return run_world(comfy, out, world_demo)
    # The test-only custom node (tiny model shapes) is linked only when the tiny models are used.
    base = cs.make_base_dir(out, with_test_models=real is None)
    log(f"ComfyUI {comfy} (pinned), base directory {base}")
    # Tiny random models run on the CPU; a real checkpoint gets ComfyUI's own device choice (the GPU).
    use_cpu = real is None or args.cpu
    server = cs.ComfyServer(base, comfy, cpu=use_cpu,
                            extra_args=("--extra-model-paths-config", str(extra_model_paths(base, comfy))))
    try:
        log(f"server up at {server.url} ({'CPU' if use_cpu else 'ComfyUI picks the device'})")
        object_info = server.get("/object_info")
        prompt = ui_to_api(load_workflow(Path(args.workflow)), object_info)
        available = object_info["ImageOnlyCheckpointLoader"]["input"]["required"]["ckpt_name"][0]
        if real is not None and real not in available:
            raise SystemExit(f"[motionkit demo] {real} is on disk but ComfyUI does not list it: {available}")
        if real:
            log(f"using the real SVD checkpoint {real}")
            for node in prompt.values():
                if node["class_type"] == "ImageOnlyCheckpointLoader":
                    node["inputs"]["ckpt_name"] = real
        else:
            log("NO real SVD checkpoint found: running the embedded default, TINY RANDOM test models "
                "(the video is noise-like; it exercises the pipeline, not the method)")
            import subprocess
            subprocess.run([sys.executable, "-c",
                            "import sys; sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[2]);"
                            "from comfy.cli_args import args; args.cpu = True;"
                            "from motionkit_testing.tiny_models import tiny_svd_checkpoint;"
                            "tiny_svd_checkpoint(sys.argv[3])",
                            str(comfy), str(REPO / "tests"), str(base / "models" / "checkpoints" / TINY_CKPT)],
                           check=True)
            prompt = adapt_to_tiny_models(prompt, TINY_CKPT)
            for node in prompt.values():
                if "filename_prefix" in node["inputs"]:
                    node["inputs"]["filename_prefix"] = "video/TINY_RANDOM_MODEL_" + \
                        Path(node["inputs"]["filename_prefix"]).name
        for node in prompt.values():
            if node["class_type"] == "LoadImage" and not (base / "input" / node["inputs"]["image"]).exists():
                write_test_image(base / "input" / node["inputs"]["image"], size=(576, 1024))
                log(f"wrote a synthetic input image {node['inputs']['image']}")
        t0 = time.time()
        entry = server.run(prompt, timeout=6 * 3600)
        log(f"workflow finished in {time.time() - t0:.1f}s")
        written = [base / "output" / f.get("subfolder", "") / f["filename"]
                   for out in entry["outputs"].values() for kind in ("images", "videos", "gifs", "animated")
                   for f in out.get(kind, []) if isinstance(f, dict) and "filename" in f]
        for path in written:
            log(f"wrote {path}")
        print(json.dumps({"outputs": [str(p) for p in written], "tiny_random_model": real is None}))
        return 0 if written else 1
    finally:
        server.stop()


def run_world(comfy: Path, out: Path, world_demo) -> int:
    """The Control World demo: the trained world model (not random), one held-out clip, its ObjMC."""
    world_demo.ensure_trained(sys.executable, log)
    base = cs.make_base_dir(out, with_test_models=True)   # the harness registers the world model's shapes
    server = cs.ComfyServer(base, comfy)
    try:
        log(f"server up at {server.url} (CPU); rendering the Control World")
        t0 = time.time()
        result = world_demo.run(server, base, log)
        log(f"workflow finished in {time.time() - t0:.1f}s")
        for path in result["outputs"]:
            log(f"wrote {path}")
        print(json.dumps({**result, "control_world": True, "tiny_random_model": False}))
        return 0 if result["outputs"] else 1
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
