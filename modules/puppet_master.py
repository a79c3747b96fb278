"""Puppet-Master (arXiv 2408.04631): drag-controlled Stable Video Diffusion, ported onto ComfyUI's own SVD
network. Plain torch/numpy; nothing here imports ComfyUI. The porting spec is
``../shared/research/puppet_master.md`` (sections cited as §N); the official code is RuiningLi/puppet-master
``networks.py`` / ``network_utils.py`` and the HF Space ``rayli/Puppet-Master`` ``app.py``.

The checkpoint (``model.safetensors``, diffusers names, 1664 keys) is a fine-tuned SVD img2vid UNet without
``add_embedding`` plus, at 15 "drag sites", a DragEmbedding (FiLM) and a token MLP. Notation for one site
of channel width C at latent width r, one video of F frames with K drags (official F = 14, K = 5, r in
{32, 16, 8}):

Drags. ``d[f, k] = (x_src, y_src, x_tgt_f, y_tgt_f)`` in [0, 1] of the square image the model sees (x =
column / width, y = row / height, no half-pixel offset); frame 0's target is the source; padding drags are
all zero and come last. A drag is *present in frame f* when its four numbers are not all zero, and
*valid* when it is present in some frame.

(1) Drag map ``M_r[f]`` in R^{6K x r x r} (§1.2), everywhere -1 except, for each drag present in frame f,

        cell(v) = clip(round(v r - 0.5), 0, r - 1)   (round half to even),   frac(v) = v r - cell(v)
        M[6k + 0 : 6k + 2, cell(y_src), cell(x_src)] = frac(x_src), frac(y_src)
        M[6k + 2 : 6k + 4, cell(y_tgt_f), cell(x_tgt_f)] = frac(x_tgt_f), frac(y_tgt_f)
        M[6k + 4 : 6k + 6, cell(y_tgt_F-1), cell(x_tgt_F-1)] = frac(x_tgt_F-1), frac(y_tgt_F-1)   (last frame)

(2) FiLM (§1.3). ``DragEmbedding`` = conv_in, SiLU, then (conv, SiLU) x 4, then conv_out (all 3x3, padding 1,
    stride 1; conv_out zero-initialised in training) gives ``[gamma; beta] = DragEmbedding(M_r)`` (2C channels,
    gamma first). The site's input h (the ResNet block's output, (F, C, r, r)) becomes

        h' = h * (1 + gamma) + beta

    which is also the transformer's residual input.

(3) Drag tokens (§1.4). With ``S(X, p)`` = bilinear sampling of X at p = (x, y) in [0, 1]
    (``grid_sample(X, 2p - 1, align_corners=False, padding_mode="border")``) and ``P_r`` the fixed 2-D sin-cos
    table (64 x r x r: ``P[0:16, y, x] = sin(x w_d)``, ``P[16:32] = cos(x w_d)``, ``P[32:48] = sin(y w_d)``,
    ``P[48:64] = cos(y w_d)``, ``w_d = 10000^(-d/16)``, x, y integer cells):

        t_k[f] = W2 SiLU(W1 [S(h'[f], src_k); S(h'[f], tgt_k,f); S(P_r, src_k); S(P_r, tgt_k,f)] + b1) + b2
        t_k[f] = 0 when drag k is not valid (zero tokens are still attended to: there is no mask)

    The site's cross-attention context is ``[CLIP token; t_1 .. t_K]`` (each site starts again from the
    1-token context). SVD's temporal blocks read frame 0's context, so they see the frame-0 tokens.

Spatial self-attention is all-to-first at strength 1 in all 16 spatial transformers (§1.5; MotionKit's
``modules/all_to_first.py``). ``label_emb`` (fps / motion bucket / augmentation) is absent: ComfyUI's SVD
gets four zero ``label_emb`` tensors, which make that term exactly 0 (§3.3).

Classifier-free guidance (§2.2): the uncond video gets zero drags (all maps -1, all tokens 0), the cond video
the user's drags. Maps depend on the drags only, so ``gamma``/``beta`` are the same at every sampling step
(the node computes them once per run and site).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .tracks import CAMERA, TrackInputError, TrackSet

MAP_CHANNELS = 6             # (x, y) of source, this frame's target, last frame's target
OFFICIAL_FRAMES = 14         # the trained video length (the official all-to-first processor hard-codes it)
OFFICIAL_SIZE = 256          # the trained image size (32x32 latent; maps at r = 32, 16, 8)
OFFICIAL_DRAGS = 5           # num_drags of the checkpoint
STATIC_TOLERANCE = 0.5 / OFFICIAL_SIZE   # a drag moving less than half a pixel of the 256 image is static


# --- (1) drag maps -------------------------------------------------------------------------------------

def drag_maps(drags: torch.Tensor, resolution: int) -> torch.Tensor:
    """Equation (1): ``drags`` ``(..., F, K, 4)`` -> maps ``(..., F, 6K, r, r)`` in ``drags``' dtype."""
    *lead, frames, count, _ = drags.shape
    r = int(resolution)
    d = drags.reshape(-1, frames, count, 4)
    n = d.shape[0]
    final = d[:, -1:, :, 2:].expand(n, frames, count, 2)
    points = torch.stack([d[..., 0:2], d[..., 2:4], final], dim=3)           # (n, F, K, 3 writes, (x, y))
    scaled = points * r
    cell = (scaled - 0.5).round().clamp(0, r - 1)
    frac = scaled - cell
    flat = (cell[..., 1] * r + cell[..., 0]).long()                           # (n, F, K, 3)
    empty = d.new_full((n, frames, count, 3, 2, r * r), -1.0)
    written = empty.scatter(-1, flat[..., None, None].expand(n, frames, count, 3, 2, 1), frac[..., None])
    present = d.any(dim=-1)[..., None, None, None]                           # per frame
    return torch.where(present, written, empty).reshape(*lead, frames, MAP_CHANNELS * count, r, r)


def drag_validity(drags: torch.Tensor) -> torch.Tensor:
    """``(..., F, K, 4)`` -> ``(..., K)``: the drag is not all-zero in some frame (its token is used)."""
    return drags.ne(0).any(dim=-1).any(dim=-2)


# --- (2) DragEmbedding, (3) tokens ----------------------------------------------------------------------

class DragEmbedding(nn.Module):
    """Official ``network_utils.DragEmbedding`` with its parameter names (stride 1 everywhere)."""

    def __init__(self, map_channels: int, channels: tuple, out_channels: int):
        super().__init__()
        self.conv_in = nn.Conv2d(map_channels, channels[0], 3, padding=1)
        blocks = []
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            blocks += [nn.Conv2d(c_in, c_in, 3, padding=1), nn.Conv2d(c_in, c_out, 3, padding=1)]
        self.blocks = nn.ModuleList(blocks)
        self.conv_out = nn.Conv2d(channels[-1], out_channels, 3, padding=1)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.conv_in(maps))
        for block in self.blocks:
            h = F.silu(block(h))
        return self.conv_out(h)


def token_mlp(in_features: int, context_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_features, context_dim), nn.SiLU(), nn.Linear(context_dim, context_dim))


def sincos_table(dim: int, resolution: int) -> torch.Tensor:
    """``P_r`` ``(dim, r, r)`` in float64: the first half encodes the column x, the second the row y, each
    as ``[sin(c w_d), cos(c w_d)]`` with ``w_d = 10000^(-d / (dim / 4))``."""
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    angles = torch.arange(resolution, dtype=torch.float64)[:, None] * omega          # (r, dim/4)
    axis = torch.cat([angles.sin(), angles.cos()], dim=1).T                        # (dim/2, r)
    x_part = axis[:, None, :].expand(-1, resolution, -1)                            # [c, y, x] = axis[c, x]
    y_part = axis[:, :, None].expand(-1, -1, resolution)                            # [c, y, x] = axis[c, y]
    return torch.cat([x_part, y_part], dim=0).contiguous()


def sample_points(features: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """``S``: bilinear samples of ``features`` ``(M, C, r, r)`` at ``points`` ``(M, K, 2)`` in [0, 1] ->
    ``(M, K, C)`` (border padding, pixel u = x r - 0.5)."""
    grid = (points * 2 - 1).to(features.dtype)[:, None]
    out = F.grid_sample(features, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[:, :, 0].transpose(1, 2)


def position_features(table: torch.Tensor, drags: torch.Tensor) -> torch.Tensor:
    """``[S(P_r, src_k); S(P_r, tgt_k,f)]`` ``(M, K, 2P)`` for ``drags`` ``(M, K, 4)``: the part of the token
    input that depends on the drags only."""
    positions = table.expand(drags.shape[0], *table.shape)
    return torch.cat([sample_points(positions, drags[..., :2]), sample_points(positions, drags[..., 2:])], dim=-1)


def drag_tokens(modulated: torch.Tensor, drags: torch.Tensor, table: torch.Tensor, mlp: nn.Module,
                valid: torch.Tensor, positions: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Equation (3) for a batch of frames: ``modulated`` h' ``(M, C, r, r)``, ``drags`` ``(M, K, 4)`` (each
    frame's row), ``table`` P_r ``(P, r, r)``, ``valid`` ``(M, K)`` -> tokens ``(M, K, D)``. ``positions``:
    :func:`position_features` computed beforehand (they do not change between sampling steps)."""
    if positions is None:
        positions = position_features(table.to(modulated.dtype), drags)
    inputs = torch.cat([sample_points(modulated, drags[..., :2]), sample_points(modulated, drags[..., 2:]),
                        positions.to(modulated.dtype)], dim=-1)
    weight = mlp[0].weight
    tokens = mlp(inputs.to(weight.dtype))
    return tokens.masked_fill(~valid[..., None], 0.0)


# --- the drag modules as in the checkpoint ----------------------------------------------------------

@dataclass(frozen=True)
class DragSite:
    """One drag site: the checkpoint's block and layer, the UNet transformer it feeds, its width."""
    kind: str            # "down" or "up"
    block: int           # diffusers down_blocks.<block> / up_blocks.<block>
    layer: int           # flow_convs.<layer>, drag_token_mlps.<layer>
    channels: int        # C
    transformer: str     # ComfyUI path below diffusion_model, e.g. "input_blocks.1.1"

    @property
    def prefix(self) -> str:
        return f"{self.kind}_blocks.{self.block}"


@dataclass(frozen=True)
class DragConfig:
    """The drag modules' configuration, read from the checkpoint's shapes (:func:`drag_config`)."""
    num_drags: int                 # K
    embedder_channels: tuple       # (256, 320, 320) officially
    pos_dim: int                   # P, rows of the sin-cos table (64; the token MLP reads 2P of them)
    context_dim: int               # 1024
    layers_per_block: int          # 2
    sites: tuple                   # DragSite, in UNet call order


class _SiteBlock(nn.Module):
    def __init__(self, widths: list, config: DragConfig):
        super().__init__()
        k = config.num_drags * MAP_CHANNELS
        self.flow_convs = nn.ModuleList(DragEmbedding(k, config.embedder_channels, 2 * c) for c in widths)
        self.drag_token_mlps = nn.ModuleList(token_mlp(2 * c + 2 * config.pos_dim, config.context_dim) for c in widths)


class DragAdapter(nn.Module):
    """All drag modules, with exactly the checkpoint's parameter names (``down_blocks.0.flow_convs.0.conv_in
    .weight``, ...), so the 240 drag keys load with ``strict=True``. Blocks without sites hold nothing."""

    def __init__(self, config: DragConfig):
        super().__init__()
        self.config = config
        for kind in ("down", "up"):
            sites = [s for s in config.sites if s.kind == kind]
            count = max((s.block for s in sites), default=-1) + 1
            blocks = []
            for b in range(count):
                widths = [s.channels for s in sorted(sites, key=lambda s: s.layer) if s.block == b]
                blocks.append(_SiteBlock(widths, config) if widths else nn.Module())
            setattr(self, f"{kind}_blocks", nn.ModuleList(blocks))

    def site_modules(self, site: DragSite) -> tuple:
        block = getattr(self, f"{site.kind}_blocks")[site.block]
        return block.flow_convs[site.layer], block.drag_token_mlps[site.layer]


# --- checkpoint layout: diffusers <-> ComfyUI names (§3.1) ---------------------------------------------

_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1", "norm2": "out_layers.0",
           "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
_RESNET_INV = {v: k for k, v in _RESNET.items()}
_TOP = {"conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2",
        "time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2"}
_TOP_INV = {v: k for k, v in _TOP.items()}
DRAG_KEY = re.compile(r"^(down|up)_blocks\.(\d+)\.(flow_convs|drag_token_mlps)\.(\d+)\.")
LABEL_EMB = ("label_emb.0.0.weight", "label_emb.0.0.bias", "label_emb.0.2.weight", "label_emb.0.2.bias")


class LayoutError(ValueError):
    """A key that the Puppet-Master layout does not have."""


def is_drag_key(key: str) -> bool:
    return DRAG_KEY.match(key) is not None


def _resnet_to_comfy(rest: str) -> str:
    part, _, tail = rest.partition(".")
    if part == "time_mixer":
        return rest
    if part not in ("spatial_res_block", "temporal_res_block"):
        raise LayoutError(rest)
    layer, _, param = tail.partition(".")
    if layer not in _RESNET:
        raise LayoutError(rest)
    return ("time_stack." if part == "temporal_res_block" else "") + f"{_RESNET[layer]}.{param}"


def _attention_to_comfy(rest: str) -> str:
    if rest.startswith("temporal_transformer_blocks."):
        return "time_stack." + rest[len("temporal_transformer_blocks."):]
    if rest.startswith("time_pos_embed.linear_"):
        return "time_pos_embed." + {"1": "0", "2": "2"}[rest[len("time_pos_embed.linear_")]] + rest[len("time_pos_embed.linear_1"):]
    if rest.split(".")[0] in ("norm", "proj_in", "proj_out", "transformer_blocks", "time_mixer"):
        return rest
    raise LayoutError(rest)


def comfy_key(key: str, layers_per_block: int = 2) -> Optional[str]:
    """The ComfyUI SVD ``UNetModel`` key (no ``diffusion_model.`` prefix) of a checkpoint key (§3.1), ``None``
    for a drag-module key; :class:`LayoutError` for a key the layout does not have."""
    if is_drag_key(key):
        return None
    per = layers_per_block + 1
    for name, target in _TOP.items():
        if key.startswith(name + "."):
            return target + key[len(name):]
    m = re.match(r"^(down|up)_blocks\.(\d+)\.(resnets|attentions|downsamplers|upsamplers)\.(\d+)\.(.+)$", key)
    if m:
        kind, block, group, index, rest = m.group(1), int(m.group(2)), m.group(3), int(m.group(4)), m.group(5)
        if group == "downsamplers" and kind == "down" and index == 0 and rest.startswith("conv."):
            return f"input_blocks.{per * (block + 1)}.0.op.{rest[len('conv.'):]}"
        if group == "upsamplers" and kind == "up" and index == 0 and rest.startswith("conv."):
            slot = 1 if block == 0 else 2      # up block 0 has no attention
            return f"output_blocks.{per * block + layers_per_block}.{slot}.conv.{rest[len('conv.'):]}"
        if group in ("resnets", "attentions"):
            n = 1 + per * block + index if kind == "down" else per * block + index
            container = "input_blocks" if kind == "down" else "output_blocks"
            if group == "resnets":
                return f"{container}.{n}.0.{_resnet_to_comfy(rest)}"
            return f"{container}.{n}.1.{_attention_to_comfy(rest)}"
        raise LayoutError(key)
    m = re.match(r"^mid_block\.(resnets|attentions)\.(\d+)\.(.+)$", key)
    if m:
        group, index, rest = m.group(1), int(m.group(2)), m.group(3)
        if group == "resnets" and index in (0, 1):
            return f"middle_block.{2 * index}.{_resnet_to_comfy(rest)}"
        if group == "attentions" and index == 0:
            return f"middle_block.1.{_attention_to_comfy(rest)}"
    raise LayoutError(key)


def diffusers_key(key: str, layers_per_block: int = 2) -> str:
    """Inverse of :func:`comfy_key` for ComfyUI SVD ``UNetModel`` keys (``label_emb`` has no counterpart)."""
    per = layers_per_block + 1
    for name, target in _TOP_INV.items():
        if key.startswith(name + "."):
            return target + key[len(name):]

    def resnet(rest: str) -> str:
        if rest.startswith("time_mixer."):
            return rest
        part = "spatial_res_block"
        if rest.startswith("time_stack."):
            part, rest = "temporal_res_block", rest[len("time_stack."):]
        for comfy_name, name in _RESNET_INV.items():
            if rest.startswith(comfy_name + "."):
                return f"{part}.{name}{rest[len(comfy_name):]}"
        raise LayoutError(key)

    def attention(rest: str) -> str:
        if rest.startswith("time_stack."):
            return "temporal_transformer_blocks." + rest[len("time_stack."):]
        if rest.startswith("time_pos_embed."):
            index, _, tail = rest[len("time_pos_embed."):].partition(".")
            return f"time_pos_embed.linear_{ {'0': 1, '2': 2}[index] }.{tail}"
        return rest

    m = re.match(r"^(input_blocks|output_blocks)\.(\d+)\.(\d+)\.(.+)$", key)
    if m:
        container, n, slot, rest = m.group(1), int(m.group(2)), int(m.group(3)), m.group(4)
        if container == "input_blocks":
            block, index = divmod(n - 1, per)
            if index == layers_per_block and slot == 0 and rest.startswith("op."):
                return f"down_blocks.{block}.downsamplers.0.conv.{rest[len('op.'):]}"
            prefix = f"down_blocks.{block}"
        else:
            block, index = divmod(n, per)
            if rest.startswith("conv.") and index == layers_per_block and slot == (1 if block == 0 else 2):
                return f"up_blocks.{block}.upsamplers.0.conv.{rest[len('conv.'):]}"
            prefix = f"up_blocks.{block}"
        if slot == 0:
            return f"{prefix}.resnets.{index}.{resnet(rest)}"
        return f"{prefix}.attentions.{index}.{attention(rest)}"
    m = re.match(r"^middle_block\.(\d+)\.(.+)$", key)
    if m:
        slot, rest = int(m.group(1)), m.group(2)
        if slot == 1:
            return f"mid_block.attentions.0.{attention(rest)}"
        return f"mid_block.resnets.{slot // 2}.{resnet(rest)}"
    raise LayoutError(key)


def layers_per_block(keys: Iterable[str], default: int = 2) -> int:
    """Res blocks per down block, from the checkpoint's ``down_blocks.0.resnets.<i>`` keys."""
    found = {int(m.group(1)) for k in keys if (m := re.match(r"^down_blocks\.0\.resnets\.(\d+)\.", k))}
    return max(found) + 1 if found else default


def drag_site_path(kind: str, block: int, layer: int, layers_per_block: int) -> str:
    per = layers_per_block + 1
    if kind == "down":
        return f"input_blocks.{1 + per * block + layer}.1"
    return f"output_blocks.{per * block + layer}.1"


def drag_config(shapes: dict, layers_per_block: int) -> DragConfig:
    """The drag modules' configuration from the checkpoint's shapes (``key -> shape``); :class:`LayoutError`
    naming the inconsistency when the sites disagree."""
    sites, embedders, pos_dims, contexts, drag_counts, per_site = [], set(), set(), set(), set(), []
    for key, shape in shapes.items():
        m = re.match(r"^(down|up)_blocks\.(\d+)\.flow_convs\.(\d+)\.conv_out\.weight$", key)
        if not m:
            continue
        kind, block, layer = m.group(1), int(m.group(2)), int(m.group(3))
        prefix = f"{kind}_blocks.{block}"
        width = int(shape[0]) // 2
        conv_in = shapes.get(f"{prefix}.flow_convs.{layer}.conv_in.weight")
        mlp_in = shapes.get(f"{prefix}.drag_token_mlps.{layer}.0.weight")
        mlp_out = shapes.get(f"{prefix}.drag_token_mlps.{layer}.2.weight")
        if conv_in is None or mlp_in is None or mlp_out is None:
            raise LayoutError(f"{prefix}: drag site {layer} is incomplete")
        blocks = sorted({int(b.group(1)) for k in shapes
                         if (b := re.match(rf"^{re.escape(prefix)}\.flow_convs\.{layer}\.blocks\.(\d+)\.weight$", k))})
        channels = (int(conv_in[0]),) + tuple(int(shapes[f"{prefix}.flow_convs.{layer}.blocks.{b}.weight"][0])
                                               for b in blocks if b % 2 == 1)
        embedders.add(channels)
        drag_counts.add(int(conv_in[1]))
        pos_dims.add((int(mlp_in[1]) - 2 * width) / 2)
        per_site.append((f"{prefix}.flow_convs.{layer}", 2 * width, int(mlp_in[1]), (int(mlp_in[1]) - 2 * width) / 2))
        contexts.add(int(mlp_out[0]))
        sites.append(DragSite(kind, block, layer, width, drag_site_path(kind, block, layer, layers_per_block)))
    if not sites:
        raise LayoutError("no drag modules (flow_convs / drag_token_mlps)")
    if len(pos_dims) > 1:   # FiLM width and token-MLP input disagree somewhere: name the odd sites
        common = max(pos_dims, key=lambda v: sum(1 for s in per_site if s[3] == v))
        odd = [f"{name} gives {film} FiLM channels but its token MLP reads {mlp} features (2C + {int(2 * common)} "
               f"expected)" for name, film, mlp, pos in per_site if pos != common]
        raise LayoutError("; ".join(odd))
    for name, values in (("drag map channels", drag_counts), ("drag embedder channels", embedders),
                         ("position table size", pos_dims), ("token width", contexts)):
        if len(values) != 1:
            raise LayoutError(f"the drag sites disagree on the {name}: {sorted(values)}")
    (map_channels,), (pos_dim,) = drag_counts, pos_dims
    if map_channels % MAP_CHANNELS or pos_dim <= 0 or pos_dim != int(pos_dim) or int(pos_dim) % 4:
        raise LayoutError(f"drag map channels {map_channels} / position table {pos_dim} do not fit the layout")
    order = sorted(sites, key=lambda s: (s.kind != "down", s.block, s.layer))
    return DragConfig(map_channels // MAP_CHANNELS, next(iter(embedders)), int(pos_dim), next(iter(contexts)),
                      layers_per_block, tuple(order))


# --- tracks -> drags (the Puppet-Master Drags node) ------------------------------------------------------

def square_crop(width: int, height: int) -> tuple[int, int, int, int]:
    """``(x0, y0, crop_width, crop_height)`` of the centre crop ComfyUI's ``common_upscale(..., "center")``
    takes for a square output (what ``SVD_img2vid_Conditioning`` encodes at width == height)."""
    old_aspect, new_aspect = width / height, 1.0
    x = y = 0
    if old_aspect > new_aspect:
        x = round((width - width * (new_aspect / old_aspect)) / 2)
    elif old_aspect < new_aspect:
        y = round((height - height * (old_aspect / new_aspect)) / 2)
    return x, y, width - 2 * x, height - 2 * y


@dataclass(frozen=True)
class ChosenDrag:
    object: int
    track: int
    start: tuple          # normalised (x, y) in the square field of view
    end: tuple
    displacement: float   # largest |p_t - p_0| over frames, in the square's units (1 = its side)


def choose_drags(ts: TrackSet, max_drags: int = OFFICIAL_DRAGS) -> tuple[np.ndarray, list, list]:
    """Puppet-Master drags from TRACKS (the rule of the Puppet-Master Drags node):

    1. Positions are normalised to the centre square that ``SVD_img2vid_Conditioning`` crops at a square
       size (:func:`square_crop`), clipped to [0, 1] as the model's cells are.
    2. Camera tracks (object -1) are not drags.
    3. One drag per object: the object's track that moves farthest (largest distance from its start over all
       frames). Tracks within ``STATIC_TOLERANCE`` of that distance count as tied; the tie goes to the one
       whose start lies nearest the centroid of the object's track starts (for a rigid translation, where
       all tracks tie: the point nearest the object's middle).
    4. Objects whose drag moves less than ``STATIC_TOLERANCE`` (half a pixel at 256x256) are left out:
       static drags were filtered out of Puppet-Master's training data (§2.1).
    5. With more than ``max_drags`` moving objects, the ``max_drags`` that move farthest are kept (ties: the
       lower object id); kept drags stay in object order.

    Returns ``(drags [F, K, 4] float32, kept, dropped)``; ``kept`` is a list of :class:`ChosenDrag`,
    ``dropped`` a list of ``(object, reason)``.
    """
    if ts.width is None:
        raise TrackInputError("tracks", "these TRACKS carry no image size.",
                              "set width and height to the size of the image the track pixels refer to.")
    x0, y0, cw, ch = square_crop(ts.width, ts.height)
    norm = (ts.path - np.array([x0, y0], dtype=np.float64)) / np.array([cw, ch], dtype=np.float64)
    norm = np.clip(norm, 0.0, 1.0)
    objects = [int(o) for o in np.unique(ts.object) if o != CAMERA]
    if not objects:
        raise TrackInputError("tracks", "these TRACKS hold only camera tracks; Puppet-Master drags move objects.",
                              "give Arrows to Trajectories an object mask and an arrow for it.")
    candidates, dropped = [], []
    for obj in objects:
        members = np.flatnonzero(ts.object == obj)
        moves = np.linalg.norm(norm[:, members] - norm[:1, members], axis=-1).max(axis=0)     # per track
        best = moves.max()
        if best < STATIC_TOLERANCE:
            dropped.append((obj, "does not move (static drags are outside Puppet-Master's training data)"))
            continue
        tied = members[moves >= best - STATIC_TOLERANCE]
        starts = ts.path[0, members]
        centroid = starts.mean(axis=0)
        track = int(tied[np.argmin(np.linalg.norm(ts.path[0, tied] - centroid, axis=-1))])
        move = float(np.linalg.norm(norm[:, track] - norm[0, track], axis=-1).max())
        candidates.append(ChosenDrag(obj, track, tuple(norm[0, track].tolist()), tuple(norm[-1, track].tolist()), move))
    if not candidates:
        raise TrackInputError("tracks", "no object in these TRACKS moves.",
                              "draw an arrow for the object to move in Arrows to Trajectories.")
    ranked = sorted(candidates, key=lambda c: (-c.displacement, c.object))
    keep = {c.object for c in ranked[:max_drags]}
    dropped += [(c.object, f"only the {max_drags} farthest-moving objects are kept") for c in ranked[max_drags:]]
    kept = [c for c in candidates if c.object in keep]
    tracks = [c.track for c in kept]
    target = norm[:, tracks]                                                        # (F, K, 2)
    drags = np.concatenate([np.broadcast_to(target[:1], target.shape), target], axis=-1)
    return drags.astype(np.float32), kept, sorted(dropped)


def pad_drags(drags: torch.Tensor, count: int) -> torch.Tensor:
    """Real drags first, zero drags after them (the training layout), up to ``count``."""
    frames, k, _ = drags.shape
    if k > count:
        raise ValueError(f"{k} drags for a model with {count}")
    return torch.cat([drags, drags.new_zeros(frames, count - k, 4)], dim=1)


def describe(kept: list, dropped: list, frames: int) -> str:
    lines = [f"Puppet-Master drags: {len(kept)} kept, {frames} frames (x, y in the square field of view, 0..1)"]
    for i, c in enumerate(kept):
        lines.append(f"  drag {i}: object {c.object}, track {c.track}: ({c.start[0]:.3f}, {c.start[1]:.3f}) -> "
                     f"({c.end[0]:.3f}, {c.end[1]:.3f}), moves {c.displacement:.3f}")
    for obj, reason in dropped:
        lines.append(f"  object {obj} left out: {reason}")
    return "\n".join(lines)

