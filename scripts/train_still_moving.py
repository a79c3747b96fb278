#!/usr/bin/env python3
"""Train Still-Moving adapters from the command line, with the same code as MotionKit's trainer nodes.

It starts ComfyUI in this process (no server): ComfyUI's own checkpoint/LoRA loaders and memory management,
its custom-node loader (so MotionKit and any pack registering model types are loaded as in the app), then
calls the node functions ``MotionKitTrainMotionAdapter.train`` / ``MotionKitTrainSpatialAdapters.train``.
Progress goes to stderr; the last line on stdout is the JSON report. Ctrl-C stops cleanly: the trainer
saves ``models/still_moving/<adapter-name>.resume.pt`` and the same command resumes from it.

  # once per base video model: the motion adapter, on frozen videos from clips (or generated ones)
  python scripts/train_still_moving.py motion --checkpoint v1-5-pruned-emaonly.safetensors \\
      --motion-module mm_sd_v15_v2.ckpt --prompt "a photo of a city street" --adapter-name sd15_v2_motion \\
      [--clips-folder /data/clips --frames-per-clip 4]

  # once per customised model: spatial adapters for a style LoRA, with the motion adapter above
  python scripts/train_still_moving.py spatial --checkpoint v1-5-pruned-emaonly.safetensors \\
      --lora my_style.safetensors --motion-module mm_sd_v15_v2.ckpt --motion-adapter sd15_v2_motion.safetensors \\
      --prompt "a fox, in my style" --adapter-name my_style_spatial

ComfyUI: ``--comfyui PATH``, else the ComfyUI whose ``custom_nodes/`` holds this pack, else the one
``scripts/get_comfyui.py`` finds. Model folders: ComfyUI's, or ``--base-directory`` (a ComfyUI base
directory with ``models/``, ``input/``, ``custom_nodes/``).
"""
from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=("motion", "spatial"), help="which adapter to train")
    ap.add_argument("--comfyui", help="ComfyUI folder")
    ap.add_argument("--base-directory", help="ComfyUI base directory (models/, input/, custom_nodes/)")
    ap.add_argument("--cpu", action="store_true", help="run on the CPU (ComfyUI's --cpu)")
    ap.add_argument("--only-motionkit", action="store_true", help="load no other custom nodes")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--checkpoint", required=True, help="SD1.5 checkpoint in models/checkpoints")
    ap.add_argument("--motion-module", required=True, help="motion module in models/animatediff_models")
    ap.add_argument("--lora", help="style LoRA in models/loras (spatial: the customisation)")
    ap.add_argument("--lora-strength", type=float, default=1.0)
    ap.add_argument("--motion-adapter", help="spatial: the motion adapter file in models/still_moving")
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--negative", default="")
    ap.add_argument("--adapter-name", required=True, help="output models/still_moving/<name>.safetensors")
    ap.add_argument("--clips-folder", default="", help="motion: folder of clips (empty = generate videos)")
    ap.add_argument("--frames-per-clip", type=int, default=4)
    ap.add_argument("--generated-videos", type=int, default=8, help="motion: videos to generate without clips")
    ap.add_argument("--images", type=int, default=8, help="spatial: customised images to generate")
    ap.add_argument("--prior-videos", type=int, default=4, help="spatial: prior-preservation videos")
    ap.add_argument("--prior-weight", type=float, default=1.0)
    ap.add_argument("--video-frames", type=int, default=16)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--height", type=int, default=512)
    ap.add_argument("--generation-steps", type=int, default=20)
    ap.add_argument("--cfg", type=float, default=7.5)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--learning-rate", type=float, default=1e-4)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--checkpoint-every", type=int, default=100)
    ap.add_argument("--no-resume", action="store_true", help="start over even if a checkpoint exists")
    args = ap.parse_args(argv)
    if args.kind == "spatial" and not (args.lora and args.motion_adapter):
        ap.error("spatial training needs --lora (the customisation) and --motion-adapter")
    return args


def find_comfyui(given: str | None) -> Path:
    if given:
        return Path(given).resolve()
    if PACK_ROOT.parent.name == "custom_nodes" and (PACK_ROOT.parent.parent / "comfy").is_dir():
        return PACK_ROOT.parent.parent
    out = subprocess.run([sys.executable, str(PACK_ROOT / "scripts" / "get_comfyui.py")], check=True,
                         capture_output=True, text=True).stdout.strip()
    return Path(out)


def start_comfyui(comfy: Path, args) -> None:
    """ComfyUI in this process with its custom nodes (the executor is not needed: nodes run directly)."""
    sys.path.insert(0, str(comfy))
    from comfy.cli_args import args as comfy_args
    comfy_args.cpu = comfy_args.cpu or args.cpu   # before comfy.model_management is imported
    comfy_args.disable_api_nodes = True
    if args.base_directory:
        comfy_args.base_directory = str(Path(args.base_directory).resolve())
    import utils.extra_config  # noqa: F401  (main.py's import order: ComfyUI's utils package first)
    import nodes
    if args.only_motionkit:
        asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
    else:
        asyncio.run(nodes.init_extra_nodes(init_custom_nodes=True, init_api_nodes=False))
    if "MotionKitTrainMotionAdapter" not in nodes.NODE_CLASS_MAPPINGS:
        asyncio.run(nodes.load_custom_node(str(PACK_ROOT)))
    if "MotionKitTrainMotionAdapter" not in nodes.NODE_CLASS_MAPPINGS:
        raise SystemExit(f"MotionKit's nodes did not load from {PACK_ROOT}; see the messages above")


def progress_to_stderr() -> None:
    import comfy.utils
    state = {"t0": time.time(), "last": None}

    def hook(value, total, preview=None, node_id=None):
        if total and (value, total) != state["last"]:
            state["last"] = (value, total)
            print(f"[still-moving] step {value}/{total} ({time.time() - state['t0']:.0f}s)", file=sys.stderr, flush=True)

    comfy.utils.set_progress_bar_global_hook(hook)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    start_comfyui(find_comfyui(args.comfyui), args)
    import nodes
    progress_to_stderr()
    model, clip, vae = nodes.CheckpointLoaderSimple().load_checkpoint(args.checkpoint)[:3]
    positive = nodes.CLIPTextEncode().encode(clip, args.prompt)[0]
    negative = nodes.CLIPTextEncode().encode(clip, args.negative)[0]
    load_mm = nodes.NODE_CLASS_MAPPINGS["MotionKitLoadMotionModule"]()
    video = load_mm.load(model, args.motion_module)[0]
    common = dict(adapter_name=args.adapter_name, video_frames=args.video_frames, width=args.width,
                  height=args.height, generation_steps=args.generation_steps, cfg=args.cfg, rank=args.rank,
                  steps=args.steps, learning_rate=args.learning_rate, batch_size=args.batch_size, seed=args.seed,
                  checkpoint_every=args.checkpoint_every, resume=not args.no_resume)
    try:
        if args.kind == "motion":
            if args.lora:
                model = nodes.LoraLoaderModelOnly().load_lora_model_only(model, args.lora, args.lora_strength)[0]
                video = load_mm.load(model, args.motion_module)[0]
            trainer = nodes.NODE_CLASS_MAPPINGS["MotionKitTrainMotionAdapter"]()
            out = trainer.train(video, positive, negative, clips_folder=args.clips_folder,
                                frames_per_clip=args.frames_per_clip, generated_videos=args.generated_videos,
                                vae=vae, **common)
        else:
            styled = nodes.LoraLoaderModelOnly().load_lora_model_only(model, args.lora, args.lora_strength)[0]
            customised = load_mm.load(styled, args.motion_module)[0]
            trainer = nodes.NODE_CLASS_MAPPINGS["MotionKitTrainSpatialAdapters"]()
            out = trainer.train(customised, video, args.motion_adapter, positive, negative, images=args.images,
                                prior_videos=args.prior_videos, prior_weight=args.prior_weight, **common)
    except KeyboardInterrupt:
        print("[still-moving] interrupted; the checkpoint is saved, run the same command to resume", file=sys.stderr)
        return 130
    except ValueError as e:   # MotionKit's input errors (the node's input names are the --options here)
        if not str(e).startswith("[MotionKit]"):
            raise
        print(f"[still-moving] error: {e}", file=sys.stderr)
        return 2
    print(out["result"][1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
