"""All-to-first spatial self-attention (Puppet-Master, arXiv 2408.04631).

Seed 003 ("all-to-first attention"): in every spatial self-attention of the video UNet, each frame's
queries attend to the keys and values of the *first* frame instead of its own, so appearance is copied
from the conditioning frame and drift is reduced. The official processor (RuiningLi/puppet-master,
``networks.py`` ``AllToFirstXFormersAttnProcessor``) computes ``key = to_k(h[:, 0])`` and
``value = to_v(h[:, 0])`` per video and broadcasts them to all frames; CFG halves use their own frame 0.

For a video of T frames with per-frame tokens X_t (N = h*w tokens of width C), per head:

    Q_t = X_t W_q,   K_0 = X_0 W_k,   V_0 = X_0 W_v
    A2F_t = softmax(Q_t K_0^T / sqrt(d)) V_0
    out_t = (1 - s) * SelfAttn(X_t) + s * A2F_t            (then the layer's own output projection)

Blending before or after ``to_out`` is the same because ``to_out`` is affine and the weights sum to one.

Layout. ComfyUI runs the UNet on a batch of ``B*T`` frames, ``B`` cond/uncond chunks of ``T`` frames
each, chunk-major. Because every frame of a video attends to the same K_0/V_0, the frames can be folded
into the query sequence: queries ``(B, T*N, D)`` against keys ``(B, N, D)``. That is exactly the
all-to-first attention, costs the same FLOPs as per-frame attention, and needs K/V for frame 0 only.
"""
from __future__ import annotations

from typing import Callable, Optional

from einops import rearrange
import torch


AttentionFn = Callable[..., torch.Tensor]


def fold_frames(q: torch.Tensor, frames: int) -> torch.Tensor:
    """``(B*T, N, D) -> (B, T*N, D)``: all frames of a video become one query sequence."""
    return rearrange(q, "(b t) n d -> b (t n) d", t=frames)


def unfold_frames(out: torch.Tensor, frames: int) -> torch.Tensor:
    """Inverse of :func:`fold_frames`."""
    return rearrange(out, "b (t n) d -> (b t) n d", t=frames)


def all_to_first_attention(q: torch.Tensor, k0: torch.Tensor, v0: torch.Tensor, frames: int, heads: int,
                           attention: AttentionFn, **attention_kwargs) -> torch.Tensor:
    """Every frame's queries ``q`` ``(B*T, N, D)`` read frame 0's projected keys/values ``(B, N, D)``.

    ``attention(q, k, v, heads=heads, **kw)`` is the host's attention backend (``(B, L, heads*d)`` layout).
    """
    out = attention(fold_frames(q, frames), k0, v0, heads=heads, **attention_kwargs)
    return unfold_frames(out, frames)


def blend(original: Optional[torch.Tensor], patched: torch.Tensor, strength: float) -> torch.Tensor:
    """``(1 - s) * original + s * patched``; ``s == 1`` needs no original branch."""
    if strength == 1.0 or original is None:
        return patched
    return torch.lerp(original, patched, strength)
