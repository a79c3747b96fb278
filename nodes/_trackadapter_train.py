"""The TrackAdapter trainer's core; the command line is ``scripts/train_trackadapter.py``.

A frozen SVD (loaded with ComfyUI's own loaders) is patched with :func:`.trackadapter.patch_model` in
training mode (soft threshold, background free, attention-loss terms collected), and only the trajectory
encoder and the adapter branches (W'_q, W'_k, W_f) are trained with AdamW on

    L = L_diff + w_attn * L_attn            (equation 7 of modules/trackadapter.py)

L_diff is SVD's EDM objective on the x0 prediction of ComfyUI's ``model.model.apply_model``; L_attn pushes
down the original branch's attention inside the moving components (their frame-0 masks carried along the
clip's tracks, ``training_free_geometry``).

One clip per step (its T frames are SVD's batch). Step ``s`` draws its clip, noise level and noise from a
generator seeded with ``(seed, s)``, so a run resumed from a checkpoint continues exactly as an unbroken run.
Checkpoints (``<out>.train.pt``: adapter, AdamW state, step, config; read back with
``torch.load(weights_only=True)``) and the weights (``<out>``, the loader's format) are written every
``save_every`` steps and at the end, each atomically.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

import comfy.model_management

from ..modules.trackadapter import (AdapterConfig, TrackAdapter, edm_sigmas, edm_weight, object_ids, save_adapter,
                                    training_free_geometry)
from ..modules.trackadapter_clips import Clip, resize_clip
from ..modules.tracks import TrackSet
from ._comfy import load_for_compute, model_object, svd_image_conditioning, svd_model_conds
from .trackadapter import APPLY, TrackRun, TrainingTerms, layer_specs, patch_model

CHECKPOINT_FORMAT = "motionkit.trackadapter_checkpoint"
CHECKPOINT_VERSION = 1


@dataclass
class TrainSettings:
    steps: int = 2000
    learning_rate: float = 1e-4
    weight_decay: float = 1e-2
    w_attn: float = 0.1
    tau: float = 0.1
    kappa: float = 0.02
    encoder_channels: tuple = (16, 32, 64)
    feature_channels: int = 128
    seed: int = 0
    save_every: int = 200
    grad_clip: float = 1.0
    fixed_batch: bool = False      # the same clip, noise level and noise every step (an overfitting check)


@dataclass
class EncodedClip:
    name: str
    x0: torch.Tensor              # [T, 4, h, w] latents (model space)
    conds: dict                   # apply_model keyword arguments: c_concat, c_crossattn, y, num_video_frames
    tracks: TrackSet              # pixels of the frames
    cover: torch.Tensor           # [T, H, W] the moving components' masks at each frame, in [0, 1]


@dataclass
class TrainResult:
    adapter: TrackAdapter
    history: list = field(default_factory=list)   # one dict per step: step, loss, diffusion, attention, seconds


class TrainingError(ValueError):
    pass


def encode_clip(model, clip_vision, vae, clip: Clip) -> EncodedClip:
    """SVD's conditioning (ComfyUI's SVD_img2vid_Conditioning on frame 0) and the clip's latents."""
    frames = clip.frames
    count, height, width = frames.shape[:3]
    with torch.no_grad():
        positive = svd_image_conditioning(clip_vision, vae, frames[:1], width, height, count, clip.motion_bucket_id,
                                          clip.fps, 0.0)
        x0 = model.model.process_latent_in(vae.encode(frames)).float()
        conds = svd_model_conds(model, positive, x0)
    ids = object_ids(clip.tracks)
    masks = clip.masks[ids] if ids else torch.zeros(0, height, width)
    cover = training_free_geometry(clip.tracks, width, height, masks).cover
    return EncodedClip(clip.name, x0.clone(), conds, clip.tracks, cover)


# name -> (command-line flag, check, what it must be)
_SETTING_RULES = {
    "steps": ("--steps", lambda v: v >= 1, "an integer >= 1"),
    "learning_rate": ("--lr", lambda v: v > 0, "a finite number > 0 (e.g. 1e-4)"),
    "weight_decay": ("--weight-decay", lambda v: v >= 0, "a finite number >= 0"),
    "w_attn": ("--w-attn", lambda v: v >= 0, "a finite number >= 0"),
    "tau": ("--tau", lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    "kappa": ("--kappa", lambda v: v > 0, "a finite number > 0"),
    "grad_clip": ("--grad-clip", lambda v: v >= 0, "a finite number >= 0 (0: off)"),
    "save_every": ("--save-every", lambda v: v >= 1, "an integer >= 1"),
}


def check_settings(settings: TrainSettings) -> None:
    """Every number of ``settings`` usable (NaN and infinity refused), before any clip is encoded."""
    for name, (flag, ok, what) in _SETTING_RULES.items():
        value = getattr(settings, name)
        try:
            good = math.isfinite(float(value)) and ok(value)
        except (TypeError, ValueError):
            good = False
        if not good:
            raise TrainingError(f"{flag} ({name}) is {value!r}; use {what}.")


def finite_weights(adapter: TrackAdapter) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in adapter.state_dict().values() if p.is_floating_point())


def new_adapter(model, settings: TrainSettings) -> TrackAdapter:
    """A fresh adapter for ``model``: W'_q/W'_k copied from each temporal layer, zero W_f (a no-op at start)."""
    specs = layer_specs(model)
    weights = []
    for spec in specs:
        attn = model_object(model, spec.path)
        weights.append((attn.to_q.weight, attn.to_k.weight))
    config = AdapterConfig(layers=tuple(specs), encoder_channels=tuple(settings.encoder_channels),
                           feature_channels=settings.feature_channels, tau=settings.tau, kappa=settings.kappa,
                           w_attn=settings.w_attn)
    return TrackAdapter.initialised_from(config, weights, seed=settings.seed)


def step_draw(settings: TrainSettings, step: int,
              clips: Sequence[EncodedClip]) -> tuple[EncodedClip, torch.Tensor, torch.Tensor]:
    """Step ``step``'s clip, noise level and noise, from a generator seeded with ``(seed, step)``."""
    gen = torch.Generator().manual_seed(settings.seed * 1_000_003 + (0 if settings.fixed_batch else step))
    clip = clips[int(torch.randint(len(clips), (1,), generator=gen))]
    sigma = edm_sigmas(1, gen)
    noise = torch.randn(clip.x0.shape, generator=gen)
    return clip, sigma, noise


def losses(patched, run: TrackRun, clip: EncodedClip, sigma: torch.Tensor, noise: torch.Tensor,
           settings: TrainSettings) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(L, L_diff, L_attn)`` for one clip at one noise level (equation 7)."""
    device = patched.load_device
    x0 = clip.x0.to(device)
    frames = x0.shape[0]
    sigma = sigma.to(device)
    run.tracks = clip.tracks
    run.reset()
    run.training = TrainingTerms(settings.tau, settings.kappa, clip.cover)
    conds = {k: v.to(device) if torch.is_tensor(v) else v for k, v in clip.conds.items()}
    try:
        pred = patched.model.apply_model(x0 + sigma * noise.to(device), sigma.expand(frames), **conds,
                                         transformer_options={"cond_or_uncond": [0]})
        terms = run.training.terms
    finally:
        run.training = None
        run.reset()
    if not terms:
        raise TrainingError("the patched model ran no temporal self-attention; is this an SVD model?")
    diffusion = (edm_weight(sigma) * (pred.float() - x0) ** 2).mean()
    attention = torch.stack(terms).mean()
    return diffusion + settings.w_attn * attention, diffusion, attention


def _atomic_save(write: Callable[[str], None], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(str(tmp))
    os.replace(tmp, path)


def checkpoint_path(out: Path) -> Path:
    return out.with_name(out.name + ".train.pt")


def save_checkpoint(path: Path, adapter: TrackAdapter, optimizer, step: int, settings: TrainSettings) -> None:
    state = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "step": step,
             "config": adapter.config.to_json(), "settings": json.dumps(asdict(settings)),
             "adapter": {k: v.detach().cpu() for k, v in adapter.state_dict().items()},
             "optimizer": optimizer.state_dict()}
    _atomic_save(lambda p: torch.save(state, p), path)


def load_checkpoint(path: Path, adapter: TrackAdapter, optimizer) -> int:
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if state.get("format") != CHECKPOINT_FORMAT or state.get("version") != CHECKPOINT_VERSION:
        raise TrainingError(f"{path} is not a version-{CHECKPOINT_VERSION} TrackAdapter training checkpoint.")
    if state["config"] != adapter.config.to_json():
        raise TrainingError(f"{path} was written for another adapter configuration or base model; start a new run "
                            "(another --out) or use the same settings.")
    adapter.load_state_dict(state["adapter"])
    optimizer.load_state_dict(state["optimizer"])
    return int(state["step"])


def train(model, clip_vision, vae, clips: Sequence[Clip], settings: TrainSettings, out: Optional[Path] = None,
          resume: bool = False, width: Optional[int] = None, height: Optional[int] = None,
          log: Callable[[str], None] = print) -> TrainResult:
    """Train a TrackAdapter for ``model`` (an SVD MODEL) on ``clips``; write ``out`` (and its checkpoint)."""
    check_settings(settings)
    if not clips:
        raise TrainingError("no training clips.")
    width = width or clips[0].frames.shape[2]
    height = height or clips[0].frames.shape[1]
    if width % 8 or height % 8:
        raise TrainingError(f"the training size {width}x{height} must be a multiple of 8 (SVD's latent).")
    if len({c.num_frames for c in clips}) != 1:
        raise TrainingError(f"the clips have different frame counts {sorted({c.num_frames for c in clips})}; "
                            "one run trains on one frame count.")
    with torch.inference_mode(False), torch.enable_grad():
        model.model.requires_grad_(False)
        encoded = [encode_clip(model, clip_vision, vae, resize_clip(c, width, height)) for c in clips]
        device = model.load_device
        adapter = new_adapter(model, settings).to(device).train().requires_grad_(True)
        optimizer = torch.optim.AdamW(adapter.parameters(), lr=settings.learning_rate,
                                      weight_decay=settings.weight_decay)
        start = 0
        ckpt = checkpoint_path(out) if out is not None else None
        if resume and ckpt is not None and ckpt.is_file():
            start = load_checkpoint(ckpt, adapter, optimizer)
            log(f"[train_trackadapter] resumed from {ckpt} at step {start}")
        run = TrackRun(encoded[0].tracks, adapter)
        patched = patch_model(model, run, 1.0, settings.tau, 1.0, 0.0, 1.0, node=APPLY)
        load_for_compute([patched])
        log(f"[train_trackadapter] {len(encoded)} clips of {encoded[0].x0.shape[0]} frames at {width}x{height}, "
            f"{sum(p.numel() for p in adapter.parameters()) / 1e6:.2f} M trainable parameters, "
            f"steps {start}..{settings.steps}")
        result = TrainResult(adapter)
        for step in range(start, settings.steps):
            tick = time.perf_counter()
            clip, sigma, noise = step_draw(settings, step, encoded)
            loss, diffusion, attention = losses(patched, run, clip, sigma, noise, settings)
            if not math.isfinite(loss.item()):   # before the step: the weights stay those of the last step
                raise TrainingError(f"the loss became {loss.item()} at step {step + 1} of {settings.steps} (diffusion "
                                    f"{diffusion.item()}, attention {attention.item()}); training stopped, nothing of "
                                    "this step was saved. Lower --lr (and resume from the last saved step).")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            loss, diffusion, attention = loss.detach(), diffusion.detach(), attention.detach()
            if settings.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(adapter.parameters(), settings.grad_clip)
            optimizer.step()
            if not finite_weights(adapter):
                raise TrainingError(f"the adapter weights are not finite after step {step + 1} of {settings.steps} "
                                    "(the gradients overflowed); training stopped, nothing of this step was saved. "
                                    "Lower --lr or keep --grad-clip on.")
            record = {"step": step + 1, "loss": loss.item(), "diffusion": diffusion.item(),
                      "attention": attention.item(), "sigma": sigma.item(), "clip": clip.name,
                      "seconds": time.perf_counter() - tick}
            result.history.append(record)
            log(f"[train_trackadapter] step {step + 1}/{settings.steps} loss {record['loss']:.5f} (diffusion "
                f"{record['diffusion']:.5f}, attention {record['attention']:.5f}) sigma {record['sigma']:.3f} "
                f"{record['seconds']:.2f}s")
            if out is not None and ((step + 1) % settings.save_every == 0 or step + 1 == settings.steps):
                save(adapter, optimizer, step + 1, settings, out, log)
        adapter.eval().requires_grad_(False)
        result.adapter = adapter.cpu()
        return result


def save(adapter: TrackAdapter, optimizer, step: int, settings: TrainSettings, out: Path, log) -> None:
    if not finite_weights(adapter):   # the loop checks every step; this guards the files themselves
        raise TrainingError(f"the adapter weights are not finite at step {step}; {out} was not written.")
    out.parent.mkdir(parents=True, exist_ok=True)
    _atomic_save(lambda p: save_adapter(adapter, p, {"trained_steps": step}), out)
    save_checkpoint(checkpoint_path(out), adapter, optimizer, step, settings)
    log(f"[train_trackadapter] wrote {out} and {checkpoint_path(out).name} at step {step}")
