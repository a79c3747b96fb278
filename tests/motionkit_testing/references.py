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
