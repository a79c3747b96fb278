"""Float64 references written from the methods' equations, independent of the pack's code paths."""
from __future__ import annotations

import math

import numpy as np
import torch


SOFTSPLAT_EPS = 1e-7   # softsplat's "avg" normalisation: value / (weight + 1e-7)


def naive_avg_splat(img: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """softsplat "avg" as a loop over source pixels: bilinear splat of value and of a unit weight onto
    the four pixels around p + flow(p), then value / (weight + 1e-7), the official divisor; pixels that
    receive nothing are zero."""
    c, h, w = img.shape
    acc, wsum = np.zeros((c, h, w)), np.zeros((h, w))
    for y in range(h):
        for x in range(w):
            tx, ty = x + flow[0, y, x], y + flow[1, y, x]
            for cx in (int(np.floor(tx)), int(np.floor(tx)) + 1):
                for cy in (int(np.floor(ty)), int(np.floor(ty)) + 1):
                    wt = (1 - abs(tx - cx)) * (1 - abs(ty - cy))
                    if 0 <= cx < w and 0 <= cy < h and wt > 0:
                        acc[:, cy, cx] += wt * img[:, y, x]
                        wsum[cy, cx] += wt
    return acc / (wsum + SOFTSPLAT_EPS)


def attention64(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v per head, float64; q [B, Lq, H*d], k/v [B, Lk, H*d]."""
    b, lq, inner = q.shape
    d = inner // heads
    qh, kh, vh = (t.double().reshape(b, -1, heads, d) for t in (q, k, v))
    w = torch.softmax(torch.einsum("bqhd,bkhd->bhqk", qh, kh) / math.sqrt(d), dim=-1)
    return torch.einsum("bhqk,bkhd->bqhd", w, vh).reshape(b, lq, inner)


def linear64(layer, x: torch.Tensor) -> torch.Tensor:
    out = x.double() @ layer.weight.double().T
    return out + layer.bias.double() if getattr(layer, "bias", None) is not None else out


def edm_reference_loss(model, state: dict, seed: int, draws: int) -> float:
    """SVD's training loss (EDM, Karras et al. 2022, as SVD trains) of a Still-Moving trainer's evaluation, from
    its checkpoint's frozen videos and conditions: for draw d and video i the trainer's generator (seed
    ``step_seed(seed, -1 - d, i)``) gives ``ln sigma ~ N(0.7, 1.6^2)`` and then the noise n; the loss is
    ``(sigma^2 + 1) / sigma^2 * mean |D(x0 + sigma n; sigma) - x0|^2`` (sigma_data = 1), averaged over videos
    and draws in float64. D is the model's denoiser as ComfyUI evaluates it (float32)."""
    from .pack import pack_module
    step_seed = pack_module("still_moving").step_seed
    total = 0.0
    for d in range(draws):
        per_video = []
        for i, (latent, conds) in enumerate(zip(state["data"], state["conds"])):
            x0 = model.model.process_latent_in(latent.clone())
            g = torch.Generator().manual_seed(step_seed(seed, -1 - d, i))
            sigma = math.exp(0.7 + 1.6 * float(torch.randn(1, generator=g)))
            noise = torch.randn(x0.shape, generator=g)
            with torch.no_grad():
                denoised = model.model.apply_model(x0 + sigma * noise, torch.full((x0.shape[0],), sigma), **conds,
                                                   transformer_options={"cond_or_uncond": [0]})
            err = ((denoised.double() - x0.double()) ** 2).mean().item()
            per_video.append((sigma ** 2 + 1) / sigma ** 2 * err)
        total += sum(per_video) / len(per_video)
    return total / draws
