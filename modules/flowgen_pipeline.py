"""Motion-I2V stage 1 sampling: DDIM, the sparse-trajectory control, and flow latents back to pixels
(G-U-N/Motion-I2V ``flowgen/pipelines/pipeline_flow_gen.py`` and ``scripts/app.py``, ``Drag.run`` /
``Drag.forward_sample``).

Flow representation (training: ``train_ctrl_flow_gen_dot.py`` l.639-643)
    flow01 = ((dx / W, dy / H) + 1) / 2         in [0, 1]; the flow VAE encodes it, latents x 0.18215
    decoded:  flow_px = (2 * vae_flow.decode(z / 0.18215) - 1).clamp(-1, 1) * (1 - static) * (W, H)

Sparse control (app.py l.555-610, l.451-465), for future frame i (1..F-1):
    sparse_px  (dx, dy) where a track's square says so, 0 elsewhere; mask 1 on the squares
    static     motion-brush region that must not move (1 = still); it forces flow 0 and mask 1
    flow01     = ((sparse_px / (W, H)) * (1 - static) + 1) / 2
    mask       = max(mask, static)
    sparse01   = (flow01 - 1/2) * mask + 1/2                      (unobserved pixels: zero flow)
    control    = [vae_flow.encode(sparse01) (4, unscaled), mask at latent size (nearest, every 8th pixel)]
The control goes to both CFG branches; only the text differs.

Sampling (app: DDIM, 25 steps, CFG 7; configs_flowgen/inference/inference.yaml: betas from 0.00085 to
0.012 on the ``linear`` schedule, 1000 training steps, steps_offset 1, clip_sample false, eps prediction;
diffusers' DDIMScheduler with eta 0 and ``set_alpha_to_one``). The UNet input is
``[image latent, x_t]`` and only ``x_t`` is stepped; the image latent (image in [0, 1], as the official
stage 1 feeds it) is the same for every frame. Frame f predicts the flow to source-video frame
``8 * f`` (``stride = range(8, 121, 8)`` for 16 frames).
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

LATENT_SCALE = 0.18215
TRAIN_STEPS = 1000
BETA_START, BETA_END = 0.00085, 0.012
STEPS_OFFSET = 1
STRIDE_STEP = 8          # source-video frames between consecutive predicted flows
LATENT_FACTOR = 8        # VAE downsampling


# --- DDIM ---------------------------------------------------------------------------------------------

def alphas_cumprod(schedule: str = "linear", beta_start: float = BETA_START, beta_end: float = BETA_END,
                   steps: int = TRAIN_STEPS) -> torch.Tensor:
    """Cumulative products of ``1 - beta`` (float64). ``linear`` is the official stage-1 schedule;
    ``scaled_linear`` (SD1.5's own) is linear in sqrt(beta)."""
    if schedule == "linear":
        betas = torch.linspace(beta_start, beta_end, steps, dtype=torch.float64)
    elif schedule == "scaled_linear":
        betas = torch.linspace(beta_start ** 0.5, beta_end ** 0.5, steps, dtype=torch.float64) ** 2
    else:
        raise ValueError(f"unknown beta schedule {schedule!r}")
    return torch.cumprod(1.0 - betas, dim=0)


def ddim_timesteps(steps: int, train_steps: int = TRAIN_STEPS, offset: int = STEPS_OFFSET) -> list[int]:
    """diffusers' DDIM ("leading") spacing: ``k * (train_steps // steps) + offset``, descending."""
    ratio = train_steps // steps
    return [k * ratio + offset for k in reversed(range(steps))]


def ddim_step(x: torch.Tensor, eps: torch.Tensor, alpha: float, alpha_prev: float) -> torch.Tensor:
    """Deterministic DDIM (eta 0): predicted x0 from eps, re-noised to the previous level."""
    x0 = (x - (1 - alpha) ** 0.5 * eps) / alpha ** 0.5
    return alpha_prev ** 0.5 * x0 + (1 - alpha_prev) ** 0.5 * eps


def ddim_sample(predict_eps: Callable[[torch.Tensor, int], torch.Tensor], noise: torch.Tensor, steps: int,
                on_step: Optional[Callable[[int], None]] = None, schedule: str = "linear") -> torch.Tensor:
    """Run DDIM from ``noise`` (init sigma 1). ``predict_eps(x_t, t)`` returns the (guided) noise."""
    alphas = alphas_cumprod(schedule)
    ratio = TRAIN_STEPS // steps
    x = noise
    for i, t in enumerate(ddim_timesteps(steps)):
        eps = predict_eps(x, t).to(x.dtype)
        prev = t - ratio
        x = ddim_step(x, eps, float(alphas[t]), float(alphas[prev]) if prev >= 0 else 1.0)
        if on_step is not None:
            on_step(i)
    return x


def guided(eps_uncond: torch.Tensor, eps_cond: torch.Tensor, cfg: float) -> torch.Tensor:
    return eps_uncond + cfg * (eps_cond - eps_uncond)


# --- frames, noise, image ------------------------------------------------------------------------------

def frame_strides(num_frames: int) -> list[int]:
    """Source-video offsets of the predicted flows (frame 0 is the reference and is not predicted)."""
    return [STRIDE_STEP * k for k in range(1, num_frames)]


def initial_noise(seed: int, future_frames: int, height: int, width: int) -> torch.Tensor:
    """``(F, 4, h, w)`` float32 noise. Drawn as the official pipeline does: an 8-channel ``(1, 8, F, h, w)``
    draw (the UNet's in_channels) of which the first 4 channels are kept."""
    gen = torch.Generator("cpu").manual_seed(int(seed))
    full = torch.randn((1, 8, future_frames, height // LATENT_FACTOR, width // LATENT_FACTOR), generator=gen)
    return full[0, :4].transpose(0, 1).contiguous()


def resize_image(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``[H, W, C]`` in [0, 1] -> ``[height, width, 3]``, stretched (the app resizes without cropping)."""
    chw = image[..., :3].permute(2, 0, 1)[None].float()
    if chw.shape[-2:] != (height, width):
        chw = F.interpolate(chw, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    return chw[0].permute(1, 2, 0).clamp(0, 1)


def cross_attention_pair(uncond: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """``[uncond, cond]`` text contexts as one batch. Prompts longer than 77 tokens give longer
    contexts; both are repeated to a common length, which leaves cross-attention unchanged (each key
    appears the same number of times)."""
    a, b = uncond.shape[1], cond.shape[1]
    if a != b:
        n = a * b // math.gcd(a, b)
        uncond, cond = uncond.repeat(1, n // a, 1), cond.repeat(1, n // b, 1)
    return torch.cat([uncond, cond])


# --- motion brush and sparse control -------------------------------------------------------------------

def static_region(brush_mask: Optional[torch.Tensor], height: int, width: int) -> torch.Tensor:
    """``[height, width]`` with 1 where nothing may move.

    ``brush_mask`` is the painted region that *may* move (a ComfyUI MASK, 1 = painted), as the app's
    motion brush: the app resizes it bilinearly, thresholds at 0.5 and inverts it, and an empty brush
    means that everything may move. ``None`` = no brush."""
    if brush_mask is None:
        return torch.zeros(height, width)
    m = brush_mask.float().reshape(-1, *brush_mask.shape[-2:])[0]
    m = F.interpolate(m[None, None], size=(height, width), mode="bilinear", align_corners=False)[0, 0]
    painted = m > 0.5
    if not painted.any():
        return torch.zeros(height, width)
    return (~painted).float()


def sparse_control_images(sparse_px: Optional[torch.Tensor], mask: Optional[torch.Tensor], static: torch.Tensor,
                          future_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sparse01 [F, 2, H, W], mask [F, 1, H, W])``: what the app encodes (see the module docstring).

    ``sparse_px`` ``[F, H, W, 2]`` (pixels) and ``mask`` ``[F, H, W]`` come from the tracks (None: no
    tracks, then every pixel is unobserved)."""
    height, width = static.shape
    if sparse_px is None:
        sparse_px = torch.zeros(future_frames, height, width, 2)
        mask = torch.zeros(future_frames, height, width)
    flow = sparse_px.float().permute(0, 3, 1, 2) / torch.tensor([width, height], dtype=torch.float32).view(1, 2, 1, 1)
    flow = flow * (1 - static)
    mask = torch.maximum(mask.float()[:, None], static.expand(future_frames, 1, height, width))
    flow01 = (flow + 1) / 2
    return (flow01 - 0.5) * mask + 0.5, mask


def mask_at_latent_size(mask: torch.Tensor) -> torch.Tensor:
    """``F.interpolate(mask, scale_factor=1/8)`` with nearest mode: every 8th pixel, from the first."""
    return mask[..., ::LATENT_FACTOR, ::LATENT_FACTOR]


def flow_from_decoded(decoded: torch.Tensor, static: torch.Tensor) -> torch.Tensor:
    """Flow VAE output ``[F, 2, H, W]`` -> pixel flow ``[F + 1, 2, H, W]`` with frame 0 zero (app l.481-490)."""
    height, width = decoded.shape[-2:]
    flow = (decoded.float() * 2 - 1).clamp(-1, 1) * (1 - static.to(decoded.device))
    flow = flow * torch.tensor([width, height], dtype=flow.dtype, device=flow.device).view(1, 2, 1, 1)
    return torch.cat([torch.zeros_like(flow[:1]), flow])


def resample_track_frames(path: np.ndarray, frames: int) -> np.ndarray:
    """Tracks ``[T, N, 2]`` at ``frames`` evenly spaced times, linear in time (the app interpolates each
    click path to the model's frame count)."""
    t = path.shape[0]
    if t == frames:
        return path
    if t == 1:
        return np.repeat(path, frames, axis=0)
    pos = np.linspace(0.0, t - 1, frames)
    lo = np.minimum(np.floor(pos).astype(np.int64), t - 2)
    frac = (pos - lo)[:, None, None]
    return path[lo] * (1 - frac) + path[lo + 1] * frac
