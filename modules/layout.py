"""How ComfyUI lays a video out in a UNet batch: ``B*T`` frames, ``B`` cond/uncond chunks of ``T`` frames,
chunk-major (the latent batch is the frame axis for SVD and for AnimateDiff-style SD1.5)."""
from __future__ import annotations

import torch


def videos_in_batch(batch: int, chunks: int) -> tuple[int, int]:
    """Split a batch of ``B*T`` frames into ``(B, T)``: one video per cond/uncond chunk."""
    if chunks < 1 or batch % chunks != 0:
        raise ValueError(f"a batch of {batch} frames cannot be split into {chunks} cond/uncond chunks")
    return chunks, batch // chunks


def first_frame(tokens: torch.Tensor, frames: int) -> torch.Tensor:
    """``(B*T, N, C) -> (B, N, C)``: the tokens of frame 0 of each video."""
    return tokens.unflatten(0, (-1, frames))[:, 0]
