#!/usr/bin/env python3
"""Train TrackAdapter weights (TrackGo, arXiv 2408.11475) for an SVD checkpoint on your own clips.

TrackGo's weights are not public; this trains the architecture MotionKit implements
(``modules/trackadapter.py``: trajectory encoder + adapter branch in each temporal self-attention) on a
frozen SVD, with the diffusion loss plus TrackGo's attention loss, and writes a file that
'Load TrackAdapter' reads (put it in ``ComfyUI/models/trackadapter``).

Clips: a folder of ``*.safetensors`` files, one per clip, in the format documented in
``modules/trackadapter_clips.py`` (frames, track_path, track_visibility, object_ids, first-frame masks;
metadata format ``motionkit.trackgo_clip`` version 1). TrackGo made them with DEVA masks, k-means control
points and Co-Tracker tracks.

Example (SVD-XT, 14-frame clips at 512x320 on one GPU)::

    python scripts/train_trackadapter.py --checkpoint svd_xt.safetensors --clips my_clips/ \\
        --out ~/ComfyUI/models/trackadapter/my_trackadapter.safetensors --steps 4000 --lr 1e-4 \\
        --width 512 --height 320

Progress is printed per step (loss, its two terms, the noise level, seconds). Every ``--save-every``
steps and at the end it writes the weights and ``<out>.train.pt`` (AdamW state and step); ``--resume``
continues from that checkpoint exactly as an unbroken run would. ComfyUI is found as the tests find it
(``$COMFYUI_PATH``, the ComfyUI this pack sits in, or the pinned clone; see scripts/get_comfyui.py).
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACK = "motionkit_pack"


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--checkpoint", required=True,
                    help="SVD checkpoint: a path, or a name in ComfyUI's models/checkpoints")
    ap.add_argument("--clips", required=True, type=Path, help="folder of *.safetensors training clips")
    ap.add_argument("--out", required=True, type=Path, help="weights file to write (.safetensors)")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate")
    ap.add_argument("--weight-decay", type=float, default=1e-2)
    ap.add_argument("--w-attn", type=float, default=0.1, help="weight of TrackGo's attention loss")
    ap.add_argument("--tau", type=float, default=0.1, help="threshold on the adapter's extra attention")
    ap.add_argument("--kappa", type=float, default=0.02, help="temperature of the soft threshold in training")
    ap.add_argument("--encoder-channels", default="16,32,64", help="widths of the encoder's three conv stages")
    ap.add_argument("--feature-channels", type=int, default=128, help="C_f, the encoder's output width")
    ap.add_argument("--width", type=int, help="training width (default: the first clip's)")
    ap.add_argument("--height", type=int, help="training height (default: the first clip's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save-every", type=int, default=200)
    ap.add_argument("--grad-clip", type=float, default=1.0, help="gradient-norm clip (0: off)")
    ap.add_argument("--fixed-batch", action="store_true",
                    help="same clip, noise level and noise every step (checks that the loss can go down)")
    ap.add_argument("--resume", action="store_true", help="continue from <out>.train.pt when it exists")
    ap.add_argument("--device", choices=("auto", "cpu"), default="auto", help="'cpu' forces ComfyUI's CPU mode")
    ap.add_argument("--comfyui", type=Path, help="ComfyUI folder (default: found like the tests find it)")
    ap.add_argument("--base-directory", type=Path, help="ComfyUI base directory (models/, ...)")
    return ap.parse_args(argv)


def start_comfy(args) -> None:
    """Put ComfyUI on sys.path with the requested device, before anything imports it."""
    comfy = args.comfyui
    if comfy is None:
        sys.path.insert(0, str(REPO / "scripts"))
        from get_comfyui import find_comfyui
        comfy = find_comfyui()
    sys.path.insert(0, str(Path(comfy).resolve()))
    from comfy.cli_args import args as comfy_args
    comfy_args.cpu = args.device == "cpu"
    if args.base_directory:
        comfy_args.base_directory = str(args.base_directory.resolve())
    import utils.extra_config  # noqa: F401  (ComfyUI's own import order: utils before comfy.utils)


def pack():
    """This pack's package: the copy ComfyUI already imported (same classes), else imported without running
    its ``__init__`` (which registers every node, and needs a server)."""
    init = (REPO / "__init__.py").resolve()
    for module in list(sys.modules.values()):
        if getattr(module, "__file__", None) and hasattr(module, "__path__") and Path(module.__file__).resolve() == init:
            return module  # as a package (a tool may also have imported the file as a lone module)
    if PACK not in sys.modules:
        spec = importlib.util.spec_from_file_location(PACK, init, submodule_search_locations=[str(REPO)])
        sys.modules[PACK] = importlib.util.module_from_spec(spec)
    return sys.modules[PACK]


def trainer():
    return importlib.import_module(f"{pack().__name__}.nodes._trackadapter_train")


def clips_module():
    return importlib.import_module(f"{pack().__name__}.modules.trackadapter_clips")


def load_svd(checkpoint: str):
    """MODEL, CLIP_VISION and VAE with ComfyUI's own loader (as 'Image Only Checkpoint Loader' does)."""
    import comfy.sd
    import folder_paths
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        found = folder_paths.get_full_path("checkpoints", checkpoint)
        if found is None:
            raise SystemExit(f"checkpoint {checkpoint!r} is neither a file nor in models/checkpoints")
        path = Path(found)
    model, _, vae, clip_vision = comfy.sd.load_checkpoint_guess_config(
        str(path), output_vae=True, output_clip=False, output_clipvision=True,
        embedding_directory=folder_paths.get_folder_paths("embeddings"))
    if clip_vision is None:
        raise SystemExit(f"{path} has no CLIP vision encoder: use an SVD img2vid checkpoint "
                         "(svd.safetensors, svd_xt.safetensors)")
    return model, clip_vision, vae


def read_clips(folder: Path) -> list:
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise SystemExit(f"no *.safetensors clips in {folder} (format: modules/trackadapter_clips.py)")
    read = clips_module().read_clip
    return [read(f) for f in files]


def main(argv=None) -> int:
    args = parse_args(argv)
    start_comfy(args)
    core = trainer()
    settings = core.TrainSettings(
        steps=args.steps, learning_rate=args.lr, weight_decay=args.weight_decay, w_attn=args.w_attn, tau=args.tau,
        kappa=args.kappa, encoder_channels=tuple(int(c) for c in args.encoder_channels.split(",")),
        feature_channels=args.feature_channels, seed=args.seed, save_every=args.save_every,
        grad_clip=args.grad_clip, fixed_batch=args.fixed_batch)
    try:
        core.check_settings(settings)   # before the clips and the checkpoint are loaded
        clips = read_clips(args.clips)
        model, clip_vision, vae = load_svd(args.checkpoint)
        result = core.train(model, clip_vision, vae, clips, settings, out=args.out.expanduser(), resume=args.resume,
                            width=args.width, height=args.height, log=lambda m: print(m, flush=True))
    except core.TrainingError as e:
        raise SystemExit(f"[train_trackadapter] error: {e}") from None
    if result.history:
        first, last = result.history[0], result.history[-1]
        print(f"[train_trackadapter] loss {first['loss']:.5f} (step {first['step']}) -> {last['loss']:.5f} "
              f"(step {last['step']}); weights: {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
