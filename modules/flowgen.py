"""Motion-I2V stage 1: the FlowGen UNet and its sparse-trajectory ControlNet (arXiv 2401.15977, seed 002),
in plain torch with the official state-dict layout (diffusers-0.11 names, G-U-N/Motion-I2V
``flowgen/models/unet3d.py``, ``unet_blocks.py``, ``resnet.py``, ``attention.py``, ``controlnet.py``).

What the network is
-------------------
SD1.5's UNet with AnimateDiff-v2 motion modules (``modules/motion_module.py``) after every UNet layer and in
the mid block, plus two changes:

* ``conv_in`` takes 8 channels: ``[image latent (4), noisy flow latent (4)]``; it predicts the noise of the
  flow latent (4 channels).
* A per-frame *stride* embedding: frame ``f`` predicts the flow from the reference frame to a source-video
  frame ``stride[f]`` frames later, and ``emb[b, f] = time_embedding(proj(t)) + stride_embedding(proj(stride[f]))``
  (``proj`` is the sinusoidal timestep projection). Every ResNet adds its own frame's embedding.

The ControlNet (``unet.controlnet``, keys ``controlnet.*``) copies conv_in, both embeddings, the down blocks
and the mid block (motion modules included). Its control image (5 channels: the flow VAE's latent of the
sparse flow, and the sparse mask at latent size) goes through ``Conv3d(5, 512, (1,3,3)) -> SiLU ->
Conv3d(512, C0, (1,3,3))`` (zero-initialised in training) and is added to its ``conv_in`` output. 1x1
zero-convolutions turn its skip features and mid output into residuals that the UNet adds to its own
skips and mid output (conditioning scale 1).

Layout
------
Tensors are ``(B*F, C, H, W)`` with the F frames of one video adjacent, the official ``(b f) c h w``.
Per-frame convolutions and group norms are the official InflatedConv3d / InflatedGroupNorm.

The configuration is inferred from a checkpoint's tensor shapes (:func:`infer_config`), so the same code
loads the official 1.3 B-parameter network and tiny test networks. Only the head counts (8 spatial, 8
temporal: SD1.5's ``attention_head_dim=8`` and the inference config's ``num_attention_heads: 8``) and the
32 norm groups cannot be seen in shapes; they are fixed to the official values.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Callable, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .motion_module import FeedForward, TemporalModule, sdpa_attention, sinusoidal_encoding

AttentionFn = Callable[..., torch.Tensor]
CONTROLNET_PREFIX = "controlnet."


@dataclass(frozen=True)
class FlowGenConfig:
    block_out_channels: tuple = (320, 640, 1280, 1280)
    layers_per_block: int = 2
    in_channels: int = 8
    out_channels: int = 4
    cross_attention_dim: int = 768
    attention_levels: tuple = (True, True, True, False)     # CrossAttnDownBlock3D x3, DownBlock3D
    transformer_layers: int = 1
    use_linear_projection: bool = False
    heads: int = 8
    norm_groups: int = 32
    norm_eps: float = 1e-5
    time_embed_dim: int = 1280
    motion_down: tuple = (True, True, True, True)            # motion_module_resolutions [1, 2, 4, 8]
    motion_mid: bool = True
    motion_up: tuple = (True, True, True, True)
    motion_heads: int = 8
    motion_max_len: int = 32
    motion_blocks: int = 1
    control_channels: int = 5
    control_hidden: int = 512

    @property
    def levels(self) -> int:
        return len(self.block_out_channels)


# configs/configs_flowgen/inference/inference.yaml on SD1.5's UNet config, in_channels 8.
OFFICIAL = FlowGenConfig()


class CheckpointLayoutError(ValueError):
    """A state dict whose keys or shapes are not the architecture's."""

    def __init__(self, what: str, missing=(), unexpected=(), mismatched=(), part: str = ""):
        self.what, self.missing, self.unexpected, self.mismatched = what, list(missing), list(unexpected), list(mismatched)
        self.part = part   # which file of a multi-file model it concerns
        parts = []
        for label, items in (("missing", self.missing), ("unexpected", self.unexpected), ("wrong shape", self.mismatched)):
            if items:
                shown = ", ".join(items[:8]) + (f", ... ({len(items) - 8} more)" if len(items) > 8 else "")
                parts.append(f"{len(items)} {label} key(s): {shown}")
        super().__init__(f"{what}: " + "; ".join(parts) if parts else what)


# --- small pieces -------------------------------------------------------------------------------------

def timestep_projection(t: torch.Tensor, dim: int) -> torch.Tensor:
    """diffusers ``Timesteps(dim, flip_sin_to_cos=True, downscale_freq_shift=0)``: [cos | sin] of
    ``t * 10000^(-i / (dim/2))``, computed in float32 (as diffusers does)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.to(torch.float32).reshape(-1, 1) * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TimestepEmbedding(nn.Module):
    def __init__(self, dim_in: int, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(dim_in, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x):
        return self.linear_2(F.silu(self.linear_1(x)))


class ResnetBlock(nn.Module):
    """``ResnetBlock3D``: per-frame norms/convs, the frame's own time+stride embedding added after conv1."""

    def __init__(self, c_in: int, c_out: int, temb: int, groups: int, eps: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in, eps=eps)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, c_out)
        self.norm2 = nn.GroupNorm(groups, c_out, eps=eps)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else None

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb_proj(F.silu(emb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (x if self.conv_shortcut is None else self.conv_shortcut(x)) + h


class CrossAttention(nn.Module):
    """diffusers-0.11 ``CrossAttention``: bias-free q/k/v, biased ``to_out.0``; heads * head_dim = dim."""

    def __init__(self, dim: int, heads: int, context_dim: Optional[int] = None):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(context_dim or dim, dim, bias=False)
        self.to_v = nn.Linear(context_dim or dim, dim, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim), nn.Dropout(0.0)])

    def forward(self, x, context=None, attention: AttentionFn = sdpa_attention):
        src = x if context is None else context
        return self.to_out[0](attention(self.to_q(x), self.to_k(src), self.to_v(src), self.heads))


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, context_dim: int):
        super().__init__()
        self.attn1 = CrossAttention(dim, heads)
        self.norm1 = nn.LayerNorm(dim)
        self.attn2 = CrossAttention(dim, heads, context_dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x, context, attention):
        x = self.attn1(self.norm1(x), attention=attention) + x
        x = self.attn2(self.norm2(x), context, attention) + x
        return self.ff(self.norm3(x)) + x


class Transformer2D(nn.Module):
    """``Transformer3DModel`` without temporal parts: per-frame spatial self- and cross-attention."""

    def __init__(self, channels: int, cfg: FlowGenConfig):
        super().__init__()
        self.linear = cfg.use_linear_projection
        self.norm = nn.GroupNorm(cfg.norm_groups, channels, eps=1e-6)
        proj = (lambda: nn.Linear(channels, channels)) if self.linear else (lambda: nn.Conv2d(channels, channels, 1))
        self.proj_in = proj()
        self.transformer_blocks = nn.ModuleList(
            [BasicTransformerBlock(channels, cfg.heads, cfg.cross_attention_dim) for _ in range(cfg.transformer_layers)])
        self.proj_out = proj()

    def forward(self, x, context, attention):
        bf, c, h, w = x.shape
        y = self.norm(x)
        if not self.linear:
            y = self.proj_in(y)
        y = y.permute(0, 2, 3, 1).reshape(bf, h * w, c)
        if self.linear:
            y = self.proj_in(y)
        for block in self.transformer_blocks:
            y = block(y, context, attention)
        if self.linear:
            y = self.proj_out(y)
        y = y.reshape(bf, h, w, c).permute(0, 3, 1, 2)
        if not self.linear:
            y = self.proj_out(y)
        return y + x


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x, size):
        # Nearest to the skip's size: x2 when the latent divides evenly, the official forward_upsample_size otherwise.
        return self.conv(F.interpolate(x, size=size, mode="nearest"))


def _motion_module(channels: int, cfg: FlowGenConfig) -> TemporalModule:
    return TemporalModule(channels, heads=cfg.motion_heads, max_len=cfg.motion_max_len, blocks=cfg.motion_blocks)


class Stage(nn.Module):
    """One down block (``CrossAttnDownBlock3D`` / ``DownBlock3D``) or up block: per layer a ResNet, an
    optional spatial transformer and an optional motion module; then the resampler."""

    def __init__(self, resnets: list, attention: bool, motion: bool, channels: int, cfg: FlowGenConfig):
        super().__init__()
        self.resnets = nn.ModuleList(resnets)
        if attention:
            self.attentions = nn.ModuleList([Transformer2D(channels, cfg) for _ in resnets])
        self.motion_modules = nn.ModuleList([_motion_module(channels, cfg) for _ in resnets] if motion else [])

    def layer(self, i, x, emb, context, frames, attention):
        x = self.resnets[i](x, emb)
        if hasattr(self, "attentions"):
            x = self.attentions[i](x, context, attention)
        if len(self.motion_modules):
            x = self.motion_modules[i](x, frames, attention)
        return x


class DownStage(Stage):
    def __init__(self, c_in: int, c_out: int, level: int, cfg: FlowGenConfig):
        resnets = [ResnetBlock(c_in if j == 0 else c_out, c_out, cfg.time_embed_dim, cfg.norm_groups, cfg.norm_eps)
                   for j in range(cfg.layers_per_block)]
        super().__init__(resnets, cfg.attention_levels[level], cfg.motion_down[level], c_out, cfg)
        if level < cfg.levels - 1:
            self.downsamplers = nn.ModuleList([Downsample(c_out)])

    def forward(self, x, emb, context, frames, attention):
        skips = []
        for i in range(len(self.resnets)):
            x = self.layer(i, x, emb, context, frames, attention)
            skips.append(x)
        if hasattr(self, "downsamplers"):
            x = self.downsamplers[0](x)
            skips.append(x)
        return x, skips


class UpStage(Stage):
    def __init__(self, index: int, cfg: FlowGenConfig):
        rev = list(reversed(cfg.block_out_channels))
        c_out, prev = rev[index], rev[max(index - 1, 0)]
        c_skip_last = rev[min(index + 1, cfg.levels - 1)]
        layers = cfg.layers_per_block + 1
        resnets = [ResnetBlock((prev if j == 0 else c_out) + (c_skip_last if j == layers - 1 else c_out), c_out,
                               cfg.time_embed_dim, cfg.norm_groups, cfg.norm_eps) for j in range(layers)]
        level = cfg.levels - 1 - index
        super().__init__(resnets, cfg.attention_levels[level], cfg.motion_up[index], c_out, cfg)
        if index < cfg.levels - 1:
            self.upsamplers = nn.ModuleList([Upsample(c_out)])

    def forward(self, x, skips, emb, context, frames, attention, next_size):
        for i in range(len(self.resnets)):
            x = self.layer(i, torch.cat([x, skips.pop()], dim=1), emb, context, frames, attention)
        if hasattr(self, "upsamplers"):
            x = self.upsamplers[0](x, next_size)
        return x


class MidStage(nn.Module):
    """``UNetMidBlock3DCrossAttn``: ResNet, then (transformer, motion module, ResNet)."""

    def __init__(self, cfg: FlowGenConfig):
        super().__init__()
        c = cfg.block_out_channels[-1]
        self.resnets = nn.ModuleList([ResnetBlock(c, c, cfg.time_embed_dim, cfg.norm_groups, cfg.norm_eps) for _ in range(2)])
        self.attentions = nn.ModuleList([Transformer2D(c, cfg)])
        self.motion_modules = nn.ModuleList([_motion_module(c, cfg)] if cfg.motion_mid else [])

    def forward(self, x, emb, context, frames, attention):
        x = self.resnets[0](x, emb)
        x = self.attentions[0](x, context, attention)
        if len(self.motion_modules):
            x = self.motion_modules[0](x, frames, attention)
        return self.resnets[1](x, emb)


def frame_embedding(time_embedding: TimestepEmbedding, stride_embedding: TimestepEmbedding, timestep: torch.Tensor,
                    strides: torch.Tensor, batch: int, dtype: torch.dtype) -> torch.Tensor:
    """``(B*F, E)``: ``time_embedding(proj(t_b)) + stride_embedding(proj(stride_f))`` (unet3d.py l.424-442).

    ``timestep`` is a scalar or ``[B]``; ``strides`` is ``[F]`` or ``[B, F]``."""
    strides = strides.reshape(-1, strides.shape[-1]).expand(batch, -1)
    frames = strides.shape[1]
    dim = time_embedding.linear_1.in_features
    t = timestep.reshape(-1).expand(batch)
    t_emb = time_embedding(timestep_projection(t, dim).to(dtype))                           # [B, E]
    s_emb = stride_embedding(timestep_projection(strides.reshape(-1), dim).to(dtype))       # [B*F, E]
    return (t_emb[:, None] + s_emb.reshape(batch, frames, -1)).reshape(batch * frames, -1)


class ControlNet(nn.Module):
    """``ControlNetModel.from_unet(unet)``: conv_in, embeddings, down and mid blocks, zero-convs."""

    def __init__(self, cfg: FlowGenConfig):
        super().__init__()
        ch = cfg.block_out_channels
        self.conv_in = nn.Conv2d(cfg.in_channels, ch[0], 3, padding=1)
        self.time_embedding = TimestepEmbedding(ch[0], cfg.time_embed_dim)
        self.stride_embedding = TimestepEmbedding(ch[0], cfg.time_embed_dim)
        self.controlnet_cond_embedding = nn.Module()
        self.controlnet_cond_embedding.layers = nn.Sequential(
            nn.Conv3d(cfg.control_channels, cfg.control_hidden, (1, 3, 3), padding=(0, 1, 1)), nn.SiLU(),
            nn.Conv3d(cfg.control_hidden, ch[0], (1, 3, 3), padding=(0, 1, 1)))
        self.down_blocks = nn.ModuleList([DownStage(ch[max(i - 1, 0)], ch[i], i, cfg) for i in range(cfg.levels)])
        zero_convs = [ch[0]]
        for i in range(cfg.levels):
            zero_convs += [ch[i]] * (cfg.layers_per_block + (1 if i < cfg.levels - 1 else 0))
        self.controlnet_down_blocks = nn.ModuleList([nn.Conv2d(c, c, 1) for c in zero_convs])
        self.mid_block = MidStage(cfg)
        self.controlnet_mid_block = nn.Conv2d(ch[-1], ch[-1], 1)

    def forward(self, sample, timestep, strides, context, control, frames, attention=sdpa_attention, scale=1.0):
        """``control`` is ``(B*F, 5, H, W)``; returns (skip residuals, mid residual)."""
        bf = sample.shape[0]
        emb = frame_embedding(self.time_embedding, self.stride_embedding, timestep, strides, bf // frames, sample.dtype)
        cond = control.reshape(bf // frames, frames, *control.shape[1:]).transpose(1, 2)        # B C F H W (Conv3d)
        cond = self.controlnet_cond_embedding.layers(cond).transpose(1, 2).reshape(bf, -1, *control.shape[-2:])
        h = self.conv_in(sample) + cond
        context = context.repeat_interleave(frames, dim=0)
        skips = [h]
        for block in self.down_blocks:
            h, out = block(h, emb, context, frames, attention)
            skips += out
        h = self.mid_block(h, emb, context, frames, attention)
        res = [conv(s) * scale for conv, s in zip(self.controlnet_down_blocks, skips)]
        return res, self.controlnet_mid_block(h) * scale


class FlowGenUNet(nn.Module):
    """``UNet3DConditionModel`` of flowgen (with ``self.controlnet`` attached when ``with_controlnet``)."""

    def __init__(self, cfg: FlowGenConfig = OFFICIAL, with_controlnet: bool = True):
        super().__init__()
        self.config = cfg
        ch = cfg.block_out_channels
        self.conv_in = nn.Conv2d(cfg.in_channels, ch[0], 3, padding=1)
        self.time_embedding = TimestepEmbedding(ch[0], cfg.time_embed_dim)
        self.stride_embedding = TimestepEmbedding(ch[0], cfg.time_embed_dim)
        self.down_blocks = nn.ModuleList([DownStage(ch[max(i - 1, 0)], ch[i], i, cfg) for i in range(cfg.levels)])
        self.mid_block = MidStage(cfg)
        self.up_blocks = nn.ModuleList([UpStage(i, cfg) for i in range(cfg.levels)])
        self.conv_norm_out = nn.GroupNorm(cfg.norm_groups, ch[0], eps=cfg.norm_eps)
        self.conv_out = nn.Conv2d(ch[0], cfg.out_channels, 3, padding=1)
        self.controlnet = ControlNet(cfg) if with_controlnet else None
        # The host sets its attention backend here (ComfyUI's optimized_attention); same (q, k, v, heads) API.
        self.attention: AttentionFn = sdpa_attention

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, strides: torch.Tensor, context: torch.Tensor,
                frames: int, control: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Noise prediction for ``sample`` ``(B*F, in_channels, H, W)``; ``context`` ``(B, L, D)``;
        ``control`` ``(B*F, 5, H, W)`` or None (no ControlNet residuals, as the official forward without one)."""
        attention = self.attention
        bf = sample.shape[0]
        residuals = None
        if control is not None and self.controlnet is not None:
            residuals = self.controlnet(sample, timestep, strides, context, control, frames, attention)
        emb = frame_embedding(self.time_embedding, self.stride_embedding, timestep, strides, bf // frames, sample.dtype)
        ctx = context.repeat_interleave(frames, dim=0)
        h = self.conv_in(sample)
        skips = [h]
        for block in self.down_blocks:
            h, out = block(h, emb, ctx, frames, attention)
            skips += out
        if residuals is not None:
            skips = [s + r for s, r in zip(skips, residuals[0])]
        h = self.mid_block(h, emb, ctx, frames, attention)
        if residuals is not None:
            h = h + residuals[1]
        for block in self.up_blocks:
            n = len(block.resnets)
            mine, skips = skips[-n:], skips[:-n]
            next_size = skips[-1].shape[-2:] if skips else None
            h = block(h, mine, emb, ctx, frames, attention, next_size)
        return self.conv_out(F.silu(self.conv_norm_out(h)))


# --- configuration from shapes, and the key check ------------------------------------------------------

def _indices(keys, pattern: str) -> list:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in keys if (m := rx.match(k))})


def infer_config(shapes: Mapping[str, Sequence[int]]) -> FlowGenConfig:
    """The configuration whose UNet has these (UNet, not ControlNet) tensor shapes.

    ``shapes`` maps keys to shapes (or tensors). Raises :class:`CheckpointLayoutError` when the
    skeleton keys this needs are absent."""
    shapes = {k: tuple(v.shape) if hasattr(v, "shape") else tuple(v) for k, v in shapes.items()}
    keys = list(shapes)
    needed = ["conv_in.weight", "conv_out.weight", "time_embedding.linear_1.weight", "down_blocks.0.resnets.0.conv1.weight"]
    absent = [k for k in needed if k not in shapes]
    if absent:
        raise CheckpointLayoutError("not a Motion-I2V FlowGen UNet", missing=absent)
    levels = _indices(keys, r"down_blocks\.(\d+)\.")
    ch = tuple(shapes[f"down_blocks.{i}.resnets.0.conv1.weight"][0] for i in levels)
    layers = len(_indices(keys, r"down_blocks\.0\.resnets\.(\d+)\.conv1\.weight"))
    attn = tuple(f"down_blocks.{i}.attentions.0.proj_in.weight" in shapes for i in levels)
    first_attn = next((i for i, a in zip(levels, attn) if a), None)
    mm = r"motion_modules\.0\.temporal_transformer\.proj_in\.weight"
    pe = [k for k in keys if k.endswith("attention_blocks.0.pos_encoder.pe")]
    first_mm = next((k.split(".temporal_transformer")[0] for k in keys if re.search(mm, k)), None)
    cross = [v[1] for k, v in shapes.items() if k.endswith("attn2.to_k.weight")]
    return replace(
        OFFICIAL,
        block_out_channels=ch,
        layers_per_block=layers,
        in_channels=shapes["conv_in.weight"][1],
        out_channels=shapes["conv_out.weight"][0],
        cross_attention_dim=cross[0] if cross else OFFICIAL.cross_attention_dim,
        attention_levels=attn,
        transformer_layers=len(_indices(keys, rf"down_blocks\.{first_attn}\.attentions\.0\.transformer_blocks\.(\d+)\.norm1\.weight"))
        if first_attn is not None else 1,
        use_linear_projection=first_attn is not None and len(shapes[f"down_blocks.{first_attn}.attentions.0.proj_in.weight"]) == 2,
        time_embed_dim=shapes["time_embedding.linear_1.weight"][0],
        motion_down=tuple(f"down_blocks.{i}.motion_modules.0.temporal_transformer.proj_in.weight" in shapes for i in levels),
        motion_mid="mid_block.motion_modules.0.temporal_transformer.proj_in.weight" in shapes,
        motion_up=tuple(f"up_blocks.{i}.motion_modules.0.temporal_transformer.proj_in.weight" in shapes
                        for i in range(len(levels))),
        motion_max_len=shapes[pe[0]][1] if pe else OFFICIAL.motion_max_len,
        motion_blocks=len(_indices(keys, re.escape(first_mm) + r"\.temporal_transformer\.transformer_blocks\.(\d+)\.ff_norm\.weight"))
        if first_mm else 1,
    )


def infer_control_config(cfg: FlowGenConfig, control_shapes: Mapping[str, Sequence[int]]) -> FlowGenConfig:
    """The ControlNet's own size parameters (its other parts copy the UNet's configuration)."""
    w = control_shapes.get("controlnet_cond_embedding.layers.0.weight")
    if w is None:
        return cfg
    shape = tuple(w.shape) if hasattr(w, "shape") else tuple(w)
    return replace(cfg, control_channels=shape[1], control_hidden=shape[0])


def is_position_encoding(key: str) -> bool:
    """AnimateDiff's sinusoidal tables: fixed by the formula, so a checkpoint may omit them."""
    return key.endswith("pos_encoder.pe")


def layout_problems(expected: Mapping[str, Sequence[int]], got: Mapping[str, Sequence[int]]):
    """``(missing, unexpected, mismatched)`` key lists of ``got`` against ``expected`` (shapes compared)."""
    shape = lambda v: tuple(v.shape) if hasattr(v, "shape") else tuple(v)  # noqa: E731
    missing = sorted(k for k in expected if k not in got and not is_position_encoding(k))
    unexpected = sorted(k for k in got if k not in expected)
    mismatched = sorted(f"{k} {list(shape(got[k]))} (expected {list(shape(expected[k]))})"
                        for k in expected if k in got and shape(got[k]) != shape(expected[k]))
    return missing, unexpected, mismatched


def strip_prefixes(sd: dict, prefixes: Sequence[str] = ("module.", "model.", "unet.", "state_dict.")) -> dict:
    """Drop wrapper prefixes that every key carries (DataParallel's ``module.``, trainers' ``model.`` ...)."""
    changed = True
    while changed and sd:
        changed = False
        for p in prefixes:
            if all(k.startswith(p) for k in sd):
                sd = {k[len(p):]: v for k, v in sd.items()}
                changed = True
    return sd


def expected_shapes(cfg: FlowGenConfig, with_controlnet: bool) -> dict:
    """Key -> shape of the architecture, built on the meta device (no memory)."""
    with torch.device("meta"):
        model = FlowGenUNet(cfg, with_controlnet)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def build_from_state_dict(unet_sd: dict, control_sd: Optional[dict], dtype: torch.dtype = torch.float32,
                          what: str = "FlowGen UNet") -> FlowGenUNet:
    """The network for a UNet state dict (and an optional ControlNet state dict, keys without the
    ``controlnet.`` prefix), with the layout checked key by key. Weights are assigned, not copied."""
    try:
        cfg = infer_config(unet_sd)
    except CheckpointLayoutError:
        cfg = OFFICIAL   # too broken to size: report every difference from the official layout instead
    if control_sd is not None:
        cfg = infer_control_config(cfg, control_sd)
    with torch.device("meta"):
        model = FlowGenUNet(cfg, with_controlnet=control_sd is not None)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    unet_expected = {k: v for k, v in expected.items() if not k.startswith(CONTROLNET_PREFIX)}
    problems = layout_problems(unet_expected, unet_sd)
    if any(problems):
        raise CheckpointLayoutError(f"the {what} does not have the official Motion-I2V FlowGen layout", *problems,
                                    part="unet")
    merged = dict(unet_sd)
    if control_sd is not None:
        control_expected = {k[len(CONTROLNET_PREFIX):]: v for k, v in expected.items() if k.startswith(CONTROLNET_PREFIX)}
        problems = layout_problems(control_expected, control_sd)
        if any(problems):
            raise CheckpointLayoutError("the ControlNet does not have the official Motion-I2V layout "
                                        "(for the FlowGen UNet it goes with)", *problems, part="controlnet")
        merged.update({CONTROLNET_PREFIX + k: v for k, v in control_sd.items()})
    model.load_state_dict({k: v.to(dtype) for k, v in merged.items()}, strict=False, assign=True)
    _materialize_position_encodings(model, dtype)
    return model.eval().requires_grad_(False)


def _materialize_position_encodings(model: nn.Module, dtype: torch.dtype) -> None:
    for module in model.modules():
        pe = getattr(module, "pe", None)
        if isinstance(pe, torch.Tensor) and pe.is_meta:
            module.pe = sinusoidal_encoding(pe.shape[1], pe.shape[2]).to(dtype)
