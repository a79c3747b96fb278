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

  # SVD (no --motion-module): the motion adapter on frozen videos of clip frames, each conditioned on its frame
  python scripts/train_still_moving.py motion --checkpoint svd_xt.safetensors --clips-folder /data/clips \\
      --adapter-name svd_xt_motion --video-frames 14 --width 1024 --height 576 [--motion-bucket-id 127 --fps 6]

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
    ap.add_argument("--checkpoint", required=True, help="SD1.5 (or, for motion without --motion-module, SVD) "
                    "checkpoint in models/checkpoints")
    ap.add_argument("--motion-module", help="motion module in models/animatediff_models (SD1.5; omit for SVD)")
    ap.add_argument("--lora", help="style LoRA in models/loras (spatial: the customisation)")
    ap.add_argument("--lora-strength", type=float, default=1.0)
    ap.add_argument("--motion-adapter", help="spatial: the motion adapter file in models/still_moving")
    ap.add_argument("--prompt", help="SD1.5: the training prompt")
    ap.add_argument("--motion-bucket-id", type=int, default=127, help="SVD: SVD_img2vid_Conditioning's setting")
    ap.add_argument("--fps", type=int, default=6, help="SVD: SVD_img2vid_Conditioning's setting")
    ap.add_argument("--augmentation-level", type=float, default=0.0, help="SVD: SVD_img2vid_Conditioning's setting")
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
    if args.kind == "spatial" and not (args.lora and args.motion_adapter and args.motion_module):
        ap.error("spatial training needs --motion-module, --lora (the customisation) and --motion-adapter")
    if args.motion_module and args.prompt is None:
        ap.error("SD1.5 training needs --prompt")
    if not args.motion_module and not args.clips_folder:
        ap.error("SVD (no --motion-module) trains on clip frames: give --clips-folder")
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
    common = dict(adapter_name=args.adapter_name, video_frames=args.video_frames, width=args.width,
                  height=args.height, generation_steps=args.generation_steps, cfg=args.cfg, rank=args.rank,
                  steps=args.steps, learning_rate=args.learning_rate, batch_size=args.batch_size, seed=args.seed,
                  checkpoint_every=args.checkpoint_every, resume=not args.no_resume)
    if not args.motion_module:
        return run_node(lambda: train_svd(args, common))
    model, clip, vae = nodes.CheckpointLoaderSimple().load_checkpoint(args.checkpoint)[:3]
    positive = nodes.CLIPTextEncode().encode(clip, args.prompt)[0]
    negative = nodes.CLIPTextEncode().encode(clip, args.negative)[0]
    load_mm = nodes.NODE_CLASS_MAPPINGS["MotionKitLoadMotionModule"]()
    video = load_mm.load(model, args.motion_module)[0]

    def train():
        if args.kind == "motion":
            motion = video
            if args.lora:
                styled = nodes.LoraLoaderModelOnly().load_lora_model_only(model, args.lora, args.lora_strength)[0]
                motion = load_mm.load(styled, args.motion_module)[0]
            trainer = nodes.NODE_CLASS_MAPPINGS["MotionKitTrainMotionAdapter"]()
            return trainer.train(motion, positive, negative, clips_folder=args.clips_folder,
                                 frames_per_clip=args.frames_per_clip, generated_videos=args.generated_videos,
                                 vae=vae, **common)
        styled = nodes.LoraLoaderModelOnly().load_lora_model_only(model, args.lora, args.lora_strength)[0]
        customised = load_mm.load(styled, args.motion_module)[0]
        trainer = nodes.NODE_CLASS_MAPPINGS["MotionKitTrainSpatialAdapters"]()
        return trainer.train(customised, video, args.motion_adapter, positive, negative, images=args.images,
                             prior_videos=args.prior_videos, prior_weight=args.prior_weight, **common)

    return run_node(train)


def train_svd(args, common: dict) -> dict:
    """The motion adapter on SVD: ComfyUI's Image Only Checkpoint Loader and SVD_img2vid_Conditioning (its
    settings; the trainer conditions each frozen video on its own frame)."""
    import comfy_extras.nodes_video_model as video_model
    import nodes
    import torch
    model, clip_vision, vae = video_model.ImageOnlyCheckpointLoader().load_checkpoint(args.checkpoint)
    blank = torch.zeros(1, args.height, args.width, 3)   # only the settings matter: each frame conditions itself
    positive, negative, _ = video_model.SVD_img2vid_Conditioning().encode(
        clip_vision, blank, vae, args.width, args.height, args.video_frames, args.motion_bucket_id, args.fps,
        args.augmentation_level)
    trainer = nodes.NODE_CLASS_MAPPINGS["MotionKitTrainMotionAdapter"]()
    return trainer.train(model, positive, negative, clips_folder=args.clips_folder,
                         frames_per_clip=args.frames_per_clip, generated_videos=1, vae=vae, clip_vision=clip_vision,
                         **common)


def run_node(train) -> int:
    """Run the trainer node; its report is the last line on stdout (exit 2 on MotionKit's input errors)."""
    try:
        out = train()
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
