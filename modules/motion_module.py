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
and rearranges back. ``TemporalAttention.augment`` (or the ``augment`` argument of the forwards, for
per-call state) is the hook where Motion-I2V's motion-augmented attention replaces the key/value sequence
(see modules/motion_field.py).

Layouts (AnimateDiff naming on the SD1.5 UNet): v1 has ``down_blocks.{0-3}.motion_modules.{0,1}`` and
``up_blocks.{0-3}.motion_modules.{0,1,2}`` with position length 24; v2 adds ``mid_block.motion_modules.0``
and uses length 32; v3 has v1's sites with length 32. Motion-I2V's ``motion_block.bin`` has the v2 keys;
Follow-Your-Click's checkpoint holds a v1-layout set inside its full UNet. :func:`motion_module_set` reads
any of them: it unwraps checkpoint containers, keeps the motion-module keys, infers the layout, channels,
position length and block counts from the keys and shapes (:func:`detect_motion_module`), and fills a
:class:`MotionModuleSet` whose state-dict keys are the official ones. :func:`ldm_position` says where each
module sits in an SD1.5 UNet.

Joint norms (v1 only). Official AnimateDiff runs the image UNet as a 3-D network on (B, C, F, H, W). With
``use_inflated_groupnorm: false`` (the v1 inference config, and Follow-Your-Click's, which leaves the default)
the ResNet blocks' ``norm1``/``norm2`` and the UNet's ``conv_norm_out`` are plain ``torch.nn.GroupNorm`` on
that 5-D tensor, so each group's mean and variance are taken over all F frames of a video jointly; the
spatial transformers' norm and the motion modules' own norm rearrange to ``(b f) c h w`` first and stay
per frame. v2 and v3 (``use_inflated_groupnorm: true``) and Motion-I2V normalise every layer per frame.
:attr:`MotionModuleSpec.joint_norms` records this, and :func:`frames_to_video` / :func:`video_to_frames`
are the layout change around such a norm (the host applies it to its UNet's layers).
"""
from __future__ import annotations

import math
from typing import Callable, Optional

from einops import rearrange
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

    def forward(self, x: torch.Tensor, frames: int, attention: AttentionFn = sdpa_attention,
                augment: Optional[Callable] = None) -> torch.Tensor:
        """``augment`` (same contract as the attribute) applies to this call only, so a host can pass
        per-sampling state without mutating a module that other model clones share. An ``augment`` with a
        ``strength`` attribute below 1 is blended with the plain attention: ``(1 - s) * plain + s * augmented``
        before ``to_out`` (equal to blending after it, since ``to_out`` is affine)."""
        augment = self.augment if augment is None else augment
        bf, hw, c = x.shape
        tokens = rearrange(x, "(b f) n c -> (b n) f c", f=frames)
        plain = None
        if augment is None or getattr(augment, "strength", 1.0) != 1.0:
            seq = self.pos_encoder(tokens)
            plain = attention(self.to_q(seq), self.to_k(seq), self.to_v(seq), self.heads)
        if augment is None:
            out = plain
        else:
            seq = self.pos_encoder(augment(tokens, self))   # encoding over interleaved positions
            query = seq[:, 0::2]
            out = attention(self.to_q(query), self.to_k(seq), self.to_v(seq), self.heads)
            if plain is not None:
                out = torch.lerp(plain, out, float(augment.strength))
        out = self.to_out[0](out)
        return rearrange(out, "(b n) f c -> (b f) n c", n=hw)


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

    def forward(self, x, frames, attention: AttentionFn = sdpa_attention, augment: Optional[Callable] = None):
        for attn, norm in zip(self.attention_blocks, self.norms):
            x = attn(norm(x), frames, attention, augment) + x
        return self.ff(self.ff_norm(x)) + x


class TemporalTransformer(nn.Module):
    def __init__(self, channels: int, heads: int, max_len: int, blocks: int = 1, attention_blocks: int = 2):
        super().__init__()
        self.norm = nn.GroupNorm(32, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, channels)
        self.transformer_blocks = nn.ModuleList([TemporalTransformerBlock(channels, heads, max_len, attention_blocks)
                                                 for _ in range(blocks)])
        self.proj_out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor, frames: int, attention: AttentionFn = sdpa_attention,
                augment: Optional[Callable] = None) -> torch.Tensor:
        bf, c, h, w = x.shape
        tokens = self.norm(x).permute(0, 2, 3, 1).reshape(bf, h * w, c)
        tokens = self.proj_in(tokens)
        for block in self.transformer_blocks:
            tokens = block(tokens, frames, attention, augment)
        tokens = self.proj_out(tokens)
        return x + tokens.reshape(bf, h, w, c).permute(0, 3, 1, 2)


class TemporalModule(nn.Module):
    """AnimateDiff ``VanillaTemporalModule``: input and output (B*F, C, H, W), frames given."""

    def __init__(self, channels: int, heads: int = 8, max_len: int = 32, blocks: int = 1, attention_blocks: int = 2):
        super().__init__()
        self.temporal_transformer = TemporalTransformer(channels, heads, max_len, blocks, attention_blocks)

    def forward(self, x: torch.Tensor, frames: int, attention: AttentionFn = sdpa_attention,
                augment: Optional[Callable] = None) -> torch.Tensor:
        return self.temporal_transformer(x, frames, attention, augment)

    @property
    def max_len(self) -> int:
        """Frames (or interleaved positions) the position encoding covers."""
        return attentions(self)[0].pos_encoder.pe.shape[1]


def attentions(module: nn.Module):
    """Every temporal attention inside a module tree (for patches such as motion augmentation)."""
    return [m for m in module.modules() if isinstance(m, TemporalAttention)]


# --- whole motion-module files: layout detection and the module set ------------------------------------
#
# A motion-module file is a flat state dict with the keys above below one prefix per site:
# ``down_blocks.{i}.motion_modules.{j}.`` (i = 0..3, j = 0..1), ``up_blocks.{i}.motion_modules.{j}.``
# (j = 0..2) and, for v2, ``mid_block.motion_modules.0.``. Everything else about a module is in its
# shapes: channels (``norm.weight``), position-encoding length (``pe``), transformer and attention
# block counts (key indices). The head count is not in the shapes; every AnimateDiff-family release
# (v1, v2, v3, Motion-I2V, Follow-Your-Click, AnimateLCM) uses ``num_attention_heads = 8``.

import re
from dataclasses import dataclass

HEADS = 8
# The SD1.5 UNet sites, in AnimateDiff naming (4 down blocks x 2 layers, 4 up blocks x 3 layers, 1 mid).
SD15_DOWN_SITES = tuple(f"down_blocks.{i}.motion_modules.{j}" for i in range(4) for j in range(2))
SD15_UP_SITES = tuple(f"up_blocks.{i}.motion_modules.{j}" for i in range(4) for j in range(3))
SD15_MID_SITE = "mid_block.motion_modules.0"

_SITE_KEY = re.compile(r"(?:^|\.)((?:down_blocks|up_blocks)\.\d+|mid_block)\.motion_modules\.(\d+)\.(.+)$")
# Wrappers and prefixes seen on released files: Lightning/accelerate checkpoints ({"state_dict": ...},
# "module." from DistributedDataParallel, as Follow-Your-Click's loader strips), diffusers "unet.".
_CONTAINERS = ("state_dict", "module", "model")


class MotionModuleFormatError(ValueError):
    """The file is not an SD1.5 AnimateDiff-style motion module (the message says why)."""


@dataclass(frozen=True)
class MotionModuleSpec:
    layout: str                      # "v1" (no mid block), "v2" (mid block), "v3" (no mid block, 32 positions)
    sites: tuple                     # ((site name, channels), ...) in file order: down, mid, up
    max_len: int                     # position-encoding length
    heads: int = HEADS
    transformer_blocks: int = 1
    attention_blocks: int = 2

    @property
    def has_mid(self) -> bool:
        return any(name == SD15_MID_SITE for name, _ in self.sites)

    @property
    def joint_norms(self) -> bool:
        """The image UNet's ResNet-block norms and output norm take their statistics over all frames of a
        video (official AnimateDiff v1 and Follow-Your-Click: plain GroupNorm on the 5-D tensor), not per frame
        (v2, v3, Motion-I2V: ``use_inflated_groupnorm``). See the module docstring."""
        return self.layout == "v1"

    def describe(self) -> str:
        mid = "with" if self.has_mid else "without"
        norms = "ResNet and output norms over all frames" if self.joint_norms else "per-frame norms"
        return (f"AnimateDiff {self.layout} layout: {len(self.sites)} motion modules {mid} a mid block, "
                f"{self.max_len} positions, channels {sorted({c for _, c in self.sites})}, {norms}")


def unwrap_state_dict(sd: dict) -> dict:
    """The flat tensor dict inside a checkpoint container, with site keys normalised to AnimateDiff's
    spelling (``down_blocks.0.motion_modules.0.temporal_transformer...``); non-motion keys dropped."""
    while isinstance(sd, dict):
        inner = next((sd[k] for k in _CONTAINERS if isinstance(sd.get(k), dict)), None)
        if inner is None or any(torch.is_tensor(v) for v in sd.values()):
            break
        sd = inner
    if not isinstance(sd, dict):
        raise MotionModuleFormatError(f"it holds a {type(sd).__name__}, not a state dict of tensors")
    out = {}
    for key, value in sd.items():
        if not isinstance(key, str) or not torch.is_tensor(value) or ".motion_modules." not in f".{key}":
            continue  # e.g. Follow-Your-Click's conv_in, fps/motion embeddings and spatial layers
        m = _SITE_KEY.search(key)
        if m is None:
            raise MotionModuleFormatError(f"the key '{key}' names a motion module outside AnimateDiff's "
                                          "down_blocks/mid_block/up_blocks layout")
        out[f"{m.group(1)}.motion_modules.{m.group(2)}.{m.group(3)}"] = value
    return out


def _count(keys, pattern: str) -> int:
    found = {int(m.group(1)) for k in keys for m in [re.search(pattern, k)] if m}
    return max(found) + 1 if found else 0


def detect_motion_module(sd: dict) -> MotionModuleSpec:
    """The spec of a normalised motion-module state dict (see :func:`unwrap_state_dict`)."""
    if not sd:
        raise MotionModuleFormatError("it contains no AnimateDiff motion-module keys "
                                      "('down_blocks.N.motion_modules.M.temporal_transformer...')")
    by_site: dict = {}
    for key in sd:
        m = _SITE_KEY.search(key)
        by_site.setdefault(f"{m.group(1)}.motion_modules.{m.group(2)}", []).append(m.group(3))
    known = set(SD15_DOWN_SITES) | set(SD15_UP_SITES) | {SD15_MID_SITE}
    unknown = sorted(set(by_site) - known)
    if unknown:
        raise MotionModuleFormatError(f"it has motion modules at {unknown[:3]}, which an SD1.5 UNet does not have")
    missing = sorted((set(SD15_DOWN_SITES) | set(SD15_UP_SITES)) - set(by_site))
    if missing:
        downs = _count(by_site, r"^down_blocks\.(\d+)\.")
        hint = " (3 down blocks: an SDXL motion module such as HotShot-XL or AnimateDiff-SDXL)" if downs == 3 else ""
        raise MotionModuleFormatError(f"it lacks the motion modules {missing[:3]}{'...' if len(missing) > 3 else ''}"
                                      f"{hint}; an SD1.5 motion module has all 20 down/up sites")
    order = [s for s in (*SD15_DOWN_SITES, SD15_MID_SITE, *SD15_UP_SITES) if s in by_site]
    sites, lengths = [], set()
    first = f"{order[0]}."
    blocks = _count(sd, r"^" + re.escape(first) + r"temporal_transformer\.transformer_blocks\.(\d+)\.")
    attn_blocks = _count(sd, r"^" + re.escape(first)
                         + r"temporal_transformer\.transformer_blocks\.0\.attention_blocks\.(\d+)\.")
    for site in order:
        norm = sd.get(f"{site}.temporal_transformer.norm.weight")
        if norm is None or norm.ndim != 1:
            raise MotionModuleFormatError(f"'{site}' has no temporal_transformer.norm.weight")
        sites.append((site, int(norm.shape[0])))
        lengths |= {int(v.shape[1]) for k, v in sd.items() if k.startswith(site + ".") and k.endswith("pos_encoder.pe")}
    if not lengths:
        raise MotionModuleFormatError("it has no sinusoidal position encodings ('pos_encoder.pe'); formats without "
                                      "them (e.g. AnimateLCM's) are not supported")
    if len(lengths) > 1:
        raise MotionModuleFormatError(f"its position encodings disagree in length: {sorted(lengths)}")
    if blocks < 1 or attn_blocks < 1:
        raise MotionModuleFormatError("its modules have no temporal transformer/attention blocks")
    max_len = lengths.pop()
    has_mid = SD15_MID_SITE in by_site
    layout = "v2" if has_mid else ("v1" if max_len <= 24 else "v3")
    return MotionModuleSpec(layout=layout, sites=tuple(sites), max_len=max_len, transformer_blocks=blocks,
                            attention_blocks=attn_blocks)


class _MotionBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.motion_modules = nn.ModuleList()


class MotionModuleSet(nn.Module):
    """Every motion module of one file, registered under the file's own key names, so
    ``state_dict()`` keys equal the official ones (``down_blocks.0.motion_modules.0...``)."""

    def __init__(self, spec: MotionModuleSpec):
        super().__init__()
        self.spec = spec
        self.down_blocks = nn.ModuleList([_MotionBlock() for _ in range(4)])
        self.up_blocks = nn.ModuleList([_MotionBlock() for _ in range(4)])
        if spec.has_mid:
            self.mid_block = _MotionBlock()
        for site, channels in spec.sites:   # file order, so each block's list fills 0, 1, 2
            parent = self.get_submodule(site.rpartition(".motion_modules.")[0])
            parent.motion_modules.append(TemporalModule(channels, spec.heads, spec.max_len, spec.transformer_blocks,
                                                        spec.attention_blocks))

    def sites(self) -> list:
        """``[(site name, TemporalModule), ...]`` in file order."""
        return [(name, self.get_submodule(name)) for name, _ in self.spec.sites]


def motion_module_set(sd: dict) -> MotionModuleSet:
    """Build and fill the module set of a (possibly wrapped or prefixed) motion-module state dict."""
    sd = unwrap_state_dict(sd)
    spec = detect_motion_module(sd)
    modules = MotionModuleSet(spec)
    expected = modules.state_dict()
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    if missing or unexpected:
        raise MotionModuleFormatError(
            "its keys differ from an AnimateDiff motion module of the same layout: "
            + (f"missing {missing[:2]} " if missing else "") + (f"unexpected {unexpected[:2]}" if unexpected else ""))
    bad = [k for k, v in sd.items() if tuple(v.shape) != tuple(expected[k].shape)]
    if bad:
        raise MotionModuleFormatError(f"'{bad[0]}' has shape {list(sd[bad[0]].shape)}, expected "
                                      f"{list(expected[bad[0]].shape)} for this layout")
    modules.load_state_dict({k: v.float() for k, v in sd.items()})
    return modules.eval().requires_grad_(False)


def frames_to_video(x: torch.Tensor, videos: int) -> torch.Tensor:
    """``(B*F, C, H, W) -> (B, C, F, H, W)``: a GroupNorm applied to the result normalises each group over
    all F frames of its video (``torch.nn.GroupNorm`` on 5-D input), with its per-channel weight and bias."""
    return rearrange(x, "(b f) c h w -> b c f h w", b=videos)


def video_to_frames(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, F, H, W) -> (B*F, C, H, W)``, the inverse of :func:`frames_to_video`."""
    return rearrange(x, "b c f h w -> (b f) c h w")


def ldm_position(site: str) -> tuple:
    """Where AnimateDiff puts a site in the LDM-style SD1.5 UNet (ComfyUI's ``UNetModel``):
    ``("input_blocks", 1 + 3i + j)`` for down block i layer j (after its ResBlock/SpatialTransformer;
    index 3i + 3 is the downsampler), ``("middle_block", None)`` between the transformer and the second
    ResBlock, ``("output_blocks", 3i + j)`` for up block i layer j (before any upsampler)."""
    kind, _, rest = site.partition(".")
    if kind == "mid_block":
        return "middle_block", None
    block, index = int(rest.split(".")[0]), int(site.rsplit(".", 1)[1])
    return ("input_blocks", 1 + 3 * block + index) if kind == "down_blocks" else ("output_blocks", 3 * block + index)


def read_weights(path: str) -> dict:
    """Tensors of a ``.safetensors`` file, or of a pickled checkpoint loaded with ``weights_only=True``
    (no code runs; a pickle that needs more than tensors and containers is refused by torch)."""
    try:
        if path.lower().endswith((".safetensors", ".sft")):
            from safetensors.torch import load_file
            return load_file(path, device="cpu")
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:   # UnpicklingError for disallowed globals; header/EOF errors for other files
        raise MotionModuleFormatError(f"it could not be read as weights without running pickled code "
                                      f"({type(e).__name__}: {str(e).splitlines()[0][:160]})") from None
