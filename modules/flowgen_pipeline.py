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


def _pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Derivatives at the knots of the monotone piecewise-cubic Hermite interpolant (Fritsch-Carlson with
    the three-point end conditions of Moler's ``pchiptx``, the rule scipy's ``PchipInterpolator`` uses).

    ``x`` [K] increasing, ``y`` [K, ...]. With secants ``m_k = (y_{k+1} - y_k) / h_k``:
      interior knot: 0 where m_{k-1}, m_k differ in sign or either is 0, else the weighted harmonic mean
                     1/d_k = (w1/m_{k-1} + w2/m_k) / (w1 + w2), w1 = 2 h_k + h_{k-1}, w2 = h_k + 2 h_{k-1};
      end knot:      d = ((2 h_0 + h_1) m_0 - h_0 m_1) / (h_0 + h_1), set to 0 if its sign differs from
                     m_0's, or to 3 m_0 if m_0 and m_1 differ in sign and |d| > 3 |m_0|;
      two knots:     both derivatives are the one secant (a straight line)."""
    h = np.diff(x).reshape(-1, *([1] * (y.ndim - 1)))
    m = np.diff(y, axis=0) / h
    d = np.zeros_like(y)
    if len(x) == 2:
        d[:] = m[0]
        return d
    hp, hn, mp, mn = h[:-1], h[1:], m[:-1], m[1:]
    flat = (np.sign(mp) != np.sign(mn)) | (mp == 0) | (mn == 0)
    w1, w2 = 2 * hn + hp, hn + 2 * hp
    with np.errstate(divide="ignore", invalid="ignore"):
        inner = (w1 + w2) / (w1 / mp + w2 / mn)
    d[1:-1] = np.where(flat, 0.0, inner)

    def end(h0, h1, m0, m1):
        e = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
        overshoot = (np.sign(m0) != np.sign(m1)) & (np.abs(e) > 3 * np.abs(m0))
        return np.where(np.sign(e) != np.sign(m0), 0.0, np.where(overshoot, 3 * m0, e))

    d[0] = end(h[0], h[1], m[0], m[1])
    d[-1] = end(h[-1], h[-2], m[-1], m[-2])
    return d


def pchip(x: np.ndarray, y: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The monotone cubic (PCHIP) through knots ``(x, y[k])`` evaluated at ``at`` (inside [x_0, x_-1]);
    ``y`` is [K, ...], the result [len(at), ...]."""
    x, y, at = np.asarray(x, np.float64), np.asarray(y, np.float64), np.asarray(at, np.float64)
    d = _pchip_slopes(x, y)
    k = np.clip(np.searchsorted(x, at, side="right") - 1, 0, len(x) - 2)
    shape = (-1, *([1] * (y.ndim - 1)))
    h = (x[k + 1] - x[k]).reshape(shape)
    s = ((at - x[k]) / (x[k + 1] - x[k])).reshape(shape)
    h00, h10 = (1 + 2 * s) * (1 - s) ** 2, s * (1 - s) ** 2
    h01, h11 = s ** 2 * (3 - 2 * s), s ** 2 * (s - 1)
    return h00 * y[k] + h10 * h * d[k] + h01 * y[k + 1] + h11 * h * d[k + 1]


def resample_track_frames(path: np.ndarray, frames: int) -> np.ndarray:
    """Tracks ``[T, N, 2]`` at ``frames`` evenly spaced times through a monotone cubic (PCHIP) in time,
    x and y separately, as the app's ``interpolate_trajectory``: knots at ``linspace(0, 1, T)``, samples at
    ``linspace(0, 1, frames)`` (two knots give a straight line; a single point stays still)."""
    t = path.shape[0]
    if t == frames:
        return path
    if t == 1:
        return np.repeat(path, frames, axis=0)
    return pchip(np.linspace(0.0, 1.0, t), path, np.linspace(0.0, 1.0, frames)).astype(path.dtype, copy=False)
