"""AnimateDiff-style motion modules in plain torch, with the official state-dict key names.

One ``TemporalModule`` (AnimateDiff's ``VanillaTemporalModule``) sits after a UNet layer and mixes
information across frames at every spatial position. Keys below a module (``.../motion_modules.j.``)::

    temporal_transformer.norm.{weight,bias}                  GroupNorm(32, C)
    temporal_transformer.proj_in.{weight,bias}               Linear(C, C)
    temporal_transformer.transformer_blocks.0.attention_blocks.{0,1}.{to_q,to_k,to_v}.weight, .to_out.0.{weight,bias}
    temporal_transformer.transformer_blocks.0.attention_blocks.{0,1}.pos_encoder.pe     [1, max_len, C]
    temporal_transformer.transformer_blocks.0.norms.{0,1}.{weight,bias}                 LayerNorm(C)
    temporal_transformer.transformer_blocks.0.ff.net.0.proj.{weight,bias}               GEGLU Linear(C, 8C)
    temporal_transformer.transformer_blocks.0.ff.net.2.{weight,bias}                    Linear(4C, C)
    temporal_transformer.transformer_blocks.0.ff_norm.{weight,bias}                     LayerNorm(C)
    temporal_transformer.proj_out.{weight,bias}              Linear(C, C), zero-initialised in training

Forward (AnimateDiff ``TemporalTransformer3DModel``), for x of shape (B*F, C, H, W)::

    h = proj_in(GroupNorm(x)) as tokens (B*F, H*W, C)
    for each attention block j:  h = h + TemporalAttn_j(LayerNorm_j(h))
    h = h + FF(LayerNorm_ff(h))
    out = x + proj_out(h)

TemporalAttn rearranges (B*F, HW, C) -> (B*HW, F, C), adds the sinusoidal position encoding to its
input (after the norm, before the projections), runs multi-head self-attention over the F frames,
and rearranges back. ``TemporalAttention.augment`` is the hook where Motion-I2V's motion-augmented
attention replaces the key/value sequence (see modules/motion_field.py).

Layouts (AnimateDiff naming on the SD1.5 UNet): v1 has ``down_blocks.{0-3}.motion_modules.{0,1}`` and
``up_blocks.{0-3}.motion_modules.{0,1,2}`` with position length 24; v2 adds ``mid_block.motion_modules.0``
and uses length 32. Motion-I2V's ``motion_block.bin`` has the v2 keys.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

AttentionFn = Callable[..., torch.Tensor]


def sdpa_attention(q, k, v, heads, **_):
    """Default attention (B, L, heads*d) layout; the host (ComfyUI) passes its own backend instead."""
    b, lq, inner = q.shape
    split = lambda t: t.reshape(b, t.shape[1], heads, inner // heads).transpose(1, 2)  # noqa: E731
    out = F.scaled_dot_product_attention(split(q), split(k), split(v))
    return out.transpose(1, 2).reshape(b, lq, inner)


def sinusoidal_encoding(length: int, dim: int) -> torch.Tensor:
    """AnimateDiff's ``PositionalEncoding.pe``: [1, length, dim], sin on even and cos on odd channels."""
    position = torch.arange(length).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
    pe = torch.zeros(1, length, dim)
    pe[0, :, 0::2] = torch.sin(position * div_term)
    pe[0, :, 1::2] = torch.cos(position * div_term)
    return pe


class PositionalEncoding(nn.Module):
    def __init__(self, dim: int, max_len: int):
        super().__init__()
        self.register_buffer("pe", sinusoidal_encoding(max_len, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] > self.pe.shape[1]:
            raise ValueError(f"{x.shape[1]} frames exceed this motion module's position encoding "
                             f"({self.pe.shape[1]} positions)")
        return x + self.pe[:, : x.shape[1]].to(x)


class TemporalAttention(nn.Module):
    """AnimateDiff ``VersatileAttention`` in "Temporal" self-attention mode."""

    def __init__(self, dim: int, heads: int, max_len: int):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim), nn.Dropout(0.0)])
        self.pos_encoder = PositionalEncoding(dim, max_len)
        # Optional replacement of the key/value sequence: fn(tokens (B*HW, F, C), module) -> sequence
        # (B*HW, L, C) whose even positions are the real frames (Motion-I2V's interleaving); None = plain.
        self.augment: Optional[Callable] = None

    def forward(self, x: torch.Tensor, frames: int, attention: AttentionFn = sdpa_attention) -> torch.Tensor:
        bf, hw, c = x.shape
        tokens = x.reshape(bf // frames, frames, hw, c).transpose(1, 2).reshape(-1, frames, c)   # (B*HW, F, C)
        if self.augment is None:
            seq = self.pos_encoder(tokens)
            query = seq
        else:
            seq = self.pos_encoder(self.augment(tokens, self))   # encoding over interleaved positions
            query = seq[:, 0::2]
        out = attention(self.to_q(query), self.to_k(seq), self.to_v(seq), self.heads)
        out = self.to_out[0](out)
        return out.reshape(bf // frames, hw, frames, c).transpose(1, 2).reshape(bf, hw, c)


class GEGLU(nn.Module):
    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x):
        x, gate = self.proj(x).chunk(2, dim=-1)
        return x * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.net = nn.ModuleList([GEGLU(dim, dim * mult), nn.Dropout(0.0), nn.Linear(dim * mult, dim)])

    def forward(self, x):
        for layer in self.net:
            x = layer(x)
        return x


class TemporalTransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, max_len: int, attention_blocks: int = 2):
        super().__init__()
        self.attention_blocks = nn.ModuleList([TemporalAttention(dim, heads, max_len) for _ in range(attention_blocks)])
        self.norms = nn.ModuleList([nn.LayerNorm(dim) for _ in range(attention_blocks)])
        self.ff = FeedForward(dim)
        self.ff_norm = nn.LayerNorm(dim)

    def forward(self, x, frames, attention: AttentionFn = sdpa_attention):
        for attn, norm in zip(self.attention_blocks, self.norms):
            x = attn(norm(x), frames, attention) + x
        return self.ff(self.ff_norm(x)) + x


class TemporalTransformer(nn.Module):
    def __init__(self, channels: int, heads: int, max_len: int, blocks: int = 1):
        super().__init__()
        self.norm = nn.GroupNorm(32, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, channels)
        self.transformer_blocks = nn.ModuleList([TemporalTransformerBlock(channels, heads, max_len) for _ in range(blocks)])
        self.proj_out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor, frames: int, attention: AttentionFn = sdpa_attention) -> torch.Tensor:
        bf, c, h, w = x.shape
        tokens = self.norm(x).permute(0, 2, 3, 1).reshape(bf, h * w, c)
        tokens = self.proj_in(tokens)
        for block in self.transformer_blocks:
            tokens = block(tokens, frames, attention)
        tokens = self.proj_out(tokens)
        return x + tokens.reshape(bf, h, w, c).permute(0, 3, 1, 2)


class TemporalModule(nn.Module):
    """AnimateDiff ``VanillaTemporalModule``: input and output (B*F, C, H, W), frames given."""

    def __init__(self, channels: int, heads: int = 8, max_len: int = 32, blocks: int = 1):
        super().__init__()
        self.temporal_transformer = TemporalTransformer(channels, heads, max_len, blocks)

    def forward(self, x: torch.Tensor, frames: int, attention: AttentionFn = sdpa_attention) -> torch.Tensor:
        return self.temporal_transformer(x, frames, attention)


def attentions(module: nn.Module):
    """Every temporal attention inside a module tree (for patches such as motion augmentation)."""
    return [m for m in module.modules() if isinstance(m, TemporalAttention)]
