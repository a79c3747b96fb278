"""TrackGo's TrackAdapter (arXiv 2408.11475, seed ``001_7ae6dcbc8bac6b58.txt``) for SVD's temporal
self-attention, its weight file, and the training-free variant.

TrackGo's code and weights are not public, so the equations below are MotionKit's reading of the seed's
prose (its formulas were lost in the write-up); each cites the passage it implements.

Notation. One temporal self-attention layer ``l`` (SVD ``time_stack.N.attn1``) sees normalised tokens
``x`` of shape ``(B*h*w, T, C)``: one sequence of T frames per spatial position of the layer's h x w grid
and per cond/uncond video. Per head (dimension d), query frame i and key frame j:

(1) Trajectory encoder. Seed, "运动条件提取": "本文使用与Animate Anyone相同的编码器结构来提取时间特征
    ... f 将根据不同时间自注意力层的分辨率进行下采样,并与其输入尺寸对齐"; "实现细节": "该编码器使用总共
    六个卷积层、两个池化层和一个最终的全连接层":

        f   = E(P),  P = TrackGo point-trajectory maps [T, 3, H, W] (``track_drawing.track_maps``)
        E   = conv3x3 SiLU, conv3x3 SiLU, avgpool/2, conv3x3 SiLU, conv3x3 SiLU, avgpool/2,
              conv3x3 SiLU, conv3x3 SiLU, Linear (per pixel, channels -> C_f)        (f at H/4 x W/4)
        f_l = area-downsample(f, (h, w))
        g_l = f_l W_f,l + b_f,l          W_f,l, b_f,l zero-initialised (so a fresh adapter is a no-op)

(2) Original branch (the layer's own weights):   A = softmax(q k^T / sqrt(d)),  q = x W_q, k = x W_k, v = x W_v

(3) Adapter branch. Seed, "TrackAdapter设计": "本文首先为TrackAdapter计算注意力图 ... 是 TrackAdapter 的
    查询和键矩阵, 其中 ... 是从方程 1 中获得的 f 的压缩表示"; "实现细节": "TrackAdapter的查询和键矩阵从原始的
    时间注意力分支初始化":

        q' = (x + g_l) W'_q,  k' = (x + g_l) W'_k,  A' = softmax(q' k'^T / sqrt(d))
        W'_q, W'_k initialised as copies of the layer's W_q, W_k; the branch reuses v.

(4) Motion region. Seed: "TrackAdapter的功能是激活与指定对象对应的运动区域"; "通过设置一个阈值 τ 将注意力图
    转换为相应的注意力 mask"; "TrackAdapter 所关注的运动区域是注意力图中超过阈值 τ 的部分". The part of A'
    that the adapter adds over the original map:

        D_i = max_j (A'_ij - A_ij),      R_i = 1[D_i > tau]          (per token, head and query frame)

(5) Output. Seed: "为了避免原始时间自注意力分支对最终活跃区域的影响 ... 抑制由原始时间自注意力分支激活的区域";
    "通过将注意力 mask 中对应的区域设置为 0, 原始时间自注意力将不再关注这一部分"; "推理": "本文将未指定区域的
    强度设置为 λ":

        o_i = R_i (A' v)_i + (1 - R_i) lambda_bg (A v)_i,     then the layer's own to_out

    i.e. one attention with weights W = R A' + (1 - R) lambda_bg A. Inside the region the original branch
    has weight 0; outside it keeps lambda_bg times its weight. lambda_bg = 1 leaves unspecified regions free,
    lambda_bg = 0 removes their temporal mixing (they freeze); lambda_bg < 1 damps them by design.

(6) Node strength s:  out = (1 - s) original + s out_(5).

Zero-initialised W_f gives g = 0, so q' = q and k' = k exactly, A' = A, D = 0, R = 0 and o = lambda_bg A v:
at lambda_bg = 1 that is the unpatched layer.

(7) Training (soft relaxation of the threshold). Seed, "TrackAdapter的训练和推理": the diffusion loss with the
    trajectories as a condition, plus "基于注意力图的损失函数 ... 注意力损失的目的是抑制原始分支的注意力图中对应于
    mask 的区域, 即运动区域" with "表示下采样操作, 表示第帧中所有运动组件的 mask" and "最终损失函数由这两个项的加权
    平均定义 ... 是一个超参数":

        R_soft = sigmoid((D - tau) / kappa)                     replaces R in (5); lambda_bg = 1 in training
        L_diff = E[(sigma^2 + 1) / sigma^2 * |D_theta(x0 + sigma eps; sigma) - x0|^2],  ln sigma ~ N(0.7, 1.6^2)
        L_attn = mean over layers of mean(m_l * (1 - R_soft) * A)
        L      = L_diff + w_attn * L_attn

    (D_theta is SVD's x0 prediction; m_l[i] = the union of the motion-component masks at frame i,
    area-downsampled to the layer.) Defaults: tau = 0.1, kappa = 0.02, w_attn = 0.1. The paper collects
    16 attention maps: SVD has exactly 16 temporal self-attention layers.

Training-free mode (no weights; not TrackGo, a stand-in that keeps its structure). The region comes from the
tracks and the adapter branch becomes Motion-I2V's attention along the trajectory (``motion_field.py``):

        M_0 = object regions at frame 0 (from masks, or estimated from the tracks: see object_regions)
        F   = field_from_tracks(tracks, M_0)                        dense flow frame 0 -> frame t
        M_t = clamp(splat_sum(M_0, F_t), 0, 1)                       the regions moved along their tracks
        R_i = 1[area-downsample(M_i, (h, w)) > tau]                  (per token and frame, all heads)
        aug = softmax(x_i W_q (S W_k)^T / sqrt(d)) (S W_v),  S = [h_0, w_1, h_1, ...], w_t = splat(h_0, F_t)
        o_i = R_i aug_i + (1 - R_i) lambda_bg (A v)_i,               then to_out

Camera tracks make the whole frame the region (TrackGo: "只需选择整个图像区域作为运动区域").

Weight file (safetensors, format ``motionkit.trackadapter`` version 1). Tensors ``encoder.*`` and
``layers.<i>.{to_q,to_k,proj}.*`` in float32; metadata ``format``, ``format_version`` and ``config`` (JSON:
encoder channels, C_f, the layer list with each layer's module path, width and heads, tau/kappa/w_attn
defaults, the map line width, base model ``svd``). See :func:`save_adapter` / :func:`load_adapter`.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Optional, Sequence

import numpy as np
from einops import rearrange
import torch
import torch.nn.functional as F
from torch import nn

from .field_fit import CAMERA, field_from_tracks
from .motion_field import forward_splat
from .track_drawing import track_maps
from .tracks import TrackSet

FORMAT = "motionkit.trackadapter"
FORMAT_VERSION = 1
BASE_MODEL = "svd"

TAU = 0.1              # threshold on D (trained) or on the region's area fraction (training-free)
KAPPA = 0.02           # temperature of the soft threshold in training
W_ATTN = 0.1           # weight of the attention loss
LAMBDA_BG = 0.4        # node default: strength of the original branch outside the region
P_MEAN, P_STD = 0.7, 1.6   # SVD's EDM training noise: ln(sigma) ~ N(P_MEAN, P_STD^2)
MAP_LINE_WIDTH = 1 / 64    # track-map line width, as a fraction of the video's short side
RASTER_PER_LATENT = 2      # training-free regions and field are computed at 2x the latent grid
SINGLE_TRACK_RADIUS = 1 / 16   # region radius of a one-track object, as a fraction of the short side
FIELD_SOFTNESS = 2.0       # raster pixels over which touching objects' motions blend


# --- configuration ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class LayerSpec:
    """One temporal self-attention of the base model: its object-patch path, width and heads."""
    path: str
    channels: int
    heads: int


@dataclass(frozen=True)
class AdapterConfig:
    layers: tuple[LayerSpec, ...]
    encoder_channels: tuple[int, int, int] = (16, 32, 64)
    feature_channels: int = 128            # C_f
    tau: float = TAU
    kappa: float = KAPPA
    w_attn: float = W_ATTN
    map_line_width: float = MAP_LINE_WIDTH
    base_model: str = BASE_MODEL

    def to_json(self) -> str:
        d = asdict(self)
        d["layers"] = [asdict(s) for s in self.layers]
        d["encoder_channels"] = list(self.encoder_channels)
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "AdapterConfig":
        d = json.loads(text)
        layers = tuple(LayerSpec(str(s["path"]), int(s["channels"]), int(s["heads"])) for s in d["layers"])
        channels = tuple(int(c) for c in d["encoder_channels"])
        if len(channels) != 3 or min(channels) < 1 or int(d["feature_channels"]) < 1 or not layers:
            raise ValueError("encoder_channels must be 3 positive widths, feature_channels positive, layers non-empty")
        return cls(layers=layers, encoder_channels=channels, feature_channels=int(d["feature_channels"]),
                   tau=float(d["tau"]), kappa=float(d["kappa"]), w_attn=float(d["w_attn"]),
                   map_line_width=float(d["map_line_width"]), base_model=str(d["base_model"]))


# --- the networks ----------------------------------------------------------------------------------

class TrackEncoder(nn.Module):
    """Six 3x3 convolutions with SiLU, two stride-2 average poolings, a per-pixel fully connected layer
    (equation 1): [T, 3, H, W] track maps -> [T, C_f, H/4, W/4]."""

    def __init__(self, channels: Sequence[int] = (16, 32, 64), out_channels: int = 128):
        super().__init__()
        c0, c1, c2 = channels
        self.convs = nn.ModuleList([nn.Conv2d(a, b, 3, padding=1) for a, b in
                                    ((3, c0), (c0, c0), (c0, c1), (c1, c1), (c1, c2), (c2, c2))])
        self.fc = nn.Linear(c2, out_channels)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        h = maps
        for i, conv in enumerate(self.convs):
            h = F.silu(conv(h))
            if i in (1, 3):  # after each pair of convolutions but the last
                h = F.avg_pool2d(h, 2, ceil_mode=True)
        return self.fc(h.movedim(1, -1)).movedim(-1, 1)


class LayerAdapter(nn.Module):
    """The adapter branch of one layer: W'_q, W'_k (C x C) and the zero-initialised projection W_f (C_f -> C)."""

    def __init__(self, channels: int, feature_channels: int):
        super().__init__()
        self.to_q = nn.Linear(channels, channels, bias=False)
        self.to_k = nn.Linear(channels, channels, bias=False)
        self.proj = nn.Linear(feature_channels, channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)


class TrackAdapter(nn.Module):
    """Encoder plus one :class:`LayerAdapter` per temporal self-attention, in ``config.layers`` order."""

    def __init__(self, config: AdapterConfig):
        super().__init__()
        self.config = config
        self.encoder = TrackEncoder(config.encoder_channels, config.feature_channels)
        self.layers = nn.ModuleList([LayerAdapter(s.channels, config.feature_channels) for s in config.layers])

    @classmethod
    def initialised_from(cls, config: AdapterConfig, query_key_weights: Sequence[tuple[torch.Tensor, torch.Tensor]],
                         seed: int = 0) -> "TrackAdapter":
        """A fresh adapter: seeded encoder, W'_q/W'_k copied from each layer's (W_q, W_k), W_f zero."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            adapter = cls(config)
        if len(query_key_weights) != len(config.layers):
            raise ValueError(f"{len(query_key_weights)} (W_q, W_k) pairs for {len(config.layers)} layers")
        with torch.no_grad():
            for layer, (wq, wk) in zip(adapter.layers, query_key_weights):
                layer.to_q.weight.copy_(wq.detach().float())
                layer.to_k.weight.copy_(wk.detach().float())
        return adapter


# --- the weight file -------------------------------------------------------------------------------

class AdapterFileError(ValueError):
    """A weight file that is not a usable TrackAdapter: ``problem`` and ``fix`` are sentences."""

    def __init__(self, problem: str, fix: str):
        self.problem, self.fix = problem, fix
        super().__init__(f"{problem} Fix: {fix}")


def save_adapter(adapter: TrackAdapter, path: str, extra: Optional[dict] = None) -> None:
    """Write ``adapter`` as a version-1 TrackAdapter safetensors file (float32 tensors, JSON config)."""
    from safetensors.torch import save_file
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in adapter.state_dict().items()}
    metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "config": adapter.config.to_json()}
    metadata.update({k: str(v) for k, v in (extra or {}).items()})
    save_file(tensors, path, metadata=metadata)


def load_adapter(path: str) -> TrackAdapter:
    """Read a TrackAdapter file written by :func:`save_adapter` (float32, eval mode, no gradients)."""
    from safetensors import safe_open
    retrain = "use a file written by MotionKit's trainer (scripts/train_trackadapter.py) for this MotionKit."
    try:
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # not safetensors, truncated, unreadable
        raise AdapterFileError(f"cannot read it as safetensors ({type(e).__name__}: {e}).", retrain) from None
    if metadata.get("format") != FORMAT:
        raise AdapterFileError(f"its metadata names format {metadata.get('format')!r}, not {FORMAT!r}: it is not a "
                               "MotionKit TrackAdapter.", retrain)
    version = metadata.get("format_version")
    if version != str(FORMAT_VERSION):
        newer = version is not None and version.isdigit() and int(version) > FORMAT_VERSION
        raise AdapterFileError(f"it is format version {version!r}; this MotionKit reads version {FORMAT_VERSION}.",
                               "update MotionKit." if newer else retrain)
    try:
        config = AdapterConfig.from_json(metadata["config"])
    except Exception as e:
        raise AdapterFileError(f"its 'config' metadata is missing or malformed ({type(e).__name__}: {e}).",
                               retrain) from None
    if config.base_model != BASE_MODEL:
        raise AdapterFileError(f"it was trained for base model {config.base_model!r}; MotionKit's TrackAdapter "
                               f"runs on {BASE_MODEL!r}.", "use an adapter trained on Stable Video Diffusion.")
    adapter = TrackAdapter(config)
    expected = adapter.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise AdapterFileError(
            f"its tensors do not match its config: {len(missing)} missing (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:3]}).", retrain)
    wrong = [f"{k} {list(tensors[k].shape)} (config says {list(v.shape)})" for k, v in expected.items()
             if tensors[k].shape != v.shape]
    if wrong:
        raise AdapterFileError(f"tensor shapes differ from its config: {', '.join(wrong[:3])}.", retrain)
    adapter.load_state_dict({k: v.float() for k, v in tensors.items()})
    return adapter.eval().requires_grad_(False)


# --- the masked dual-branch attention (equations 2-5, 7) --------------------------------------------

def split_heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    """``(N, T, heads*d) -> (N, heads, T, d)``."""
    return rearrange(t, "n t (h d) -> n h t d", h=heads)


def merge_heads(t: torch.Tensor) -> torch.Tensor:
    """``(N, heads, T, d) -> (N, T, heads*d)``."""
    return rearrange(t, "n h t d -> n t (h d)")


def attention_map(q: torch.Tensor, k: torch.Tensor, heads: int, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d))`` per head: ``(N, T, heads*d)`` -> ``(N, heads, Tq, Tk)``, in ``dtype``
    (default: the inputs'); half-precision inputs should pass float32, as the layer's attn_precision does."""
    qh, kh = split_heads(q, heads), split_heads(k, heads)
    if dtype is not None:
        qh, kh = qh.to(dtype), kh.to(dtype)
    scale = qh.shape[-1] ** -0.5
    return torch.softmax((qh @ kh.transpose(-1, -2)) * scale, dim=-1)


def motion_difference(original: torch.Tensor, adapter: torch.Tensor) -> torch.Tensor:
    """``D_i = max_j (A'_ij - A_ij)``: ``(N, heads, T)``, >= 0 (both rows sum to one)."""
    return (adapter - original).amax(dim=-1)


def hard_region(diff: torch.Tensor, tau: float) -> torch.Tensor:
    return diff > tau


def soft_region(diff: torch.Tensor, tau: float, kappa: float) -> torch.Tensor:
    return torch.sigmoid((diff - tau) / kappa)


def mixed_weights(original: torch.Tensor, adapter: torch.Tensor, region: torch.Tensor,
                  lambda_bg: float) -> torch.Tensor:
    """``W = R A' + (1 - R) lambda_bg A`` (equation 5); ``region`` is ``(N, heads, Tq)``, bool or in [0, 1].
    With a bool region the original branch's weight inside it is exactly 0 and outside exactly
    ``lambda_bg * A`` (``A`` itself when ``lambda_bg == 1``)."""
    background = original if lambda_bg == 1.0 else original * lambda_bg
    if region.dtype == torch.bool:
        return torch.where(region.unsqueeze(-1), adapter, background)
    r = region.unsqueeze(-1).to(adapter.dtype)
    return r * adapter + (1 - r) * background


def attention_loss_term(original: torch.Tensor, region: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
    """``mean(m * (1 - R_soft) * A)`` for one layer: ``original`` (N, heads, Tq, Tk), ``region`` (N, heads, Tq),
    ``motion`` (N, Tq) the motion masks of each token's query frame at this layer."""
    m = motion.to(original.dtype)[:, None, :, None]
    return (m * (1 - region.to(original.dtype)).unsqueeze(-1) * original).mean()


def layer_features(features: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Encoder output ``[T, C_f, H', W']`` area-downsampled to a layer's grid, as temporal tokens
    ``(h*w, T, C_f)`` (spatial positions row-major, as SVD's time_stack lays them out)."""
    f = F.adaptive_avg_pool2d(features, (height, width))
    return f.flatten(2).permute(2, 0, 1)


def edm_sigmas(count: int, generator: torch.Generator) -> torch.Tensor:
    """SVD training noise levels: ``ln sigma ~ N(P_MEAN, P_STD^2)``."""
    return torch.exp(P_MEAN + P_STD * torch.randn(count, generator=generator))


def edm_weight(sigma: torch.Tensor) -> torch.Tensor:
    """EDM loss weight on the x0 prediction with sigma_data = 1: ``(sigma^2 + 1) / sigma^2``."""
    return (sigma ** 2 + 1) / sigma ** 2


# --- track maps (encoder input) ---------------------------------------------------------------------

def map_line_width(width: int, height: int, fraction: float = MAP_LINE_WIDTH) -> float:
    return max(1.0, fraction * min(width, height))


def encoder_input(ts: TrackSet, width: int, height: int, line_fraction: float = MAP_LINE_WIDTH) -> torch.Tensor:
    """TrackGo point-trajectory maps of ``ts`` at ``width x height`` as ``[T, 3, H, W]`` float32 in [0, 1]."""
    maps = track_maps(ts.sized(width, height), map_line_width(width, height, line_fraction))
    return torch.from_numpy(maps).permute(0, 3, 1, 2).contiguous()


# --- motion regions (training-free mode, and the trainer's motion masks) -------------------------------

def convex_hull(points: np.ndarray) -> np.ndarray:
    """Vertices of the convex hull of ``points`` [n, 2], counter-clockwise (Andrew's monotone chain);
    fewer than 3 for degenerate sets (one point, or collinear points: the two extremes)."""
    pts = np.unique(np.asarray(points, np.float64), axis=0)
    if len(pts) <= 2:
        return pts

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])
    lower, upper = [], []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in pts[::-1]:
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return np.array(lower[:-1] + upper[:-1])


def hull_region(points: np.ndarray, radius: float, height: int, width: int) -> np.ndarray:
    """Pixels (bool [H, W]) whose centres ``(j + 0.5, i + 0.5)`` lie within ``radius`` of the convex hull
    of ``points`` (pixels, the TRACKS convention)."""
    out = np.zeros((height, width), bool)
    hull = convex_hull(points)
    if len(hull) == 0:
        return out
    x0 = max(math.floor(hull[:, 0].min() - radius), 0)
    x1 = min(math.ceil(hull[:, 0].max() + radius) + 1, width)
    y0 = max(math.floor(hull[:, 1].min() - radius), 0)
    y1 = min(math.ceil(hull[:, 1].max() + radius) + 1, height)
    if x0 >= x1 or y0 >= y1:
        return out
    px = np.arange(x0, x1, dtype=np.float64)[None, :] + 0.5
    py = np.arange(y0, y1, dtype=np.float64)[:, None] + 0.5
    dist2 = np.full((y1 - y0, x1 - x0), np.inf)
    inside = np.ones_like(dist2, dtype=bool) if len(hull) >= 3 else np.zeros_like(dist2, dtype=bool)
    edges = [(hull[i], hull[(i + 1) % len(hull)]) for i in range(len(hull))] if len(hull) > 1 else [(hull[0], hull[0])]
    for a, b in edges:
        d = b - a
        length2 = float(d @ d)
        u = 0.0 if length2 == 0 else np.clip(((px - a[0]) * d[0] + (py - a[1]) * d[1]) / length2, 0.0, 1.0)
        dx, dy = px - (a[0] + u * d[0]), py - (a[1] + u * d[1])
        dist2 = np.minimum(dist2, dx * dx + dy * dy)
        if len(hull) >= 3:  # counter-clockwise hull: inside is left of every edge
            inside &= d[0] * (py - a[1]) - d[1] * (px - a[0]) >= 0
    out[y0:y1, x0:x1] = inside | (dist2 <= radius * radius)
    return out


def track_spacing_radius(points: np.ndarray, short_side: float) -> float:
    """Region radius around an object's control points: half their median nearest-neighbour distance
    (TrackGo's k-means spreads them evenly over the mask, so the hull sits about that far inside the
    mask's edge); ``SINGLE_TRACK_RADIUS * short_side`` for a single point."""
    pts = np.unique(np.asarray(points, np.float64), axis=0)
    if len(pts) < 2:
        return SINGLE_TRACK_RADIUS * short_side
    d = np.sqrt(((pts[:, None] - pts[None]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    return max(0.5 * float(np.median(d.min(1))), 1.0)


def object_ids(ts: TrackSet) -> list[int]:
    """The object labels of ``ts`` (camera excluded), sorted."""
    return sorted(int(o) for o in np.unique(ts.object) if o != CAMERA)


def object_regions(ts: TrackSet, width: int, height: int) -> torch.Tensor:
    """Frame-0 region of each object of ``ts`` (in :func:`object_ids` order) when no masks are given:
    the convex hull of its visible start points, widened by :func:`track_spacing_radius`. ``ts`` must be
    in pixels of ``width x height``. -> float32 [K, H, W] in {0, 1}."""
    regions = []
    for obj in object_ids(ts):
        starts = ts.path[0, (ts.object == obj) & ts.visible[0]]
        radius = track_spacing_radius(starts, min(width, height))
        regions.append(hull_region(starts, radius, height, width) if len(starts) else np.zeros((height, width), bool))
    return torch.from_numpy(np.stack(regions).astype(np.float32)) if regions else torch.zeros(0, height, width)


def tracks_field(ts: TrackSet, masks: torch.Tensor, softness: float = FIELD_SOFTNESS) -> torch.Tensor:
    """Dense flow ``[T, 2, H, W]`` (frame 0 -> t, pixels) from ``ts`` and the objects' frame-0 ``masks``
    [K, H, W] (in :func:`object_ids` order), by the training-free field fit (``field_fit.py``)."""
    ids = object_ids(ts)
    index = {obj: i for i, obj in enumerate(ids)}
    remapped = np.array([index.get(int(o), CAMERA) for o in ts.object], np.int64)
    if not ids:  # camera tracks only: a whole-image object keeps field_from_tracks' camera branch exact
        masks = torch.zeros(0, *masks.shape[-2:])
    flow, _ = field_from_tracks(ts.path, ts.visible, remapped, (masks > 0.5).float(), softness)
    return flow


def moving_cover(masks: torch.Tensor, flow: torch.Tensor, whole_frame: bool = False) -> torch.Tensor:
    """``M_t = clamp(splat_sum(M_0, F_t), 0, 1)``: the union of the frame-0 ``masks`` [K, H, W] carried
    along ``flow`` [T, 2, H, W] -> [T, H, W] coverage in [0, 1]. ``whole_frame`` (camera motion): all ones."""
    frames, _, height, width = flow.shape
    if whole_frame:
        return torch.ones(frames, height, width)
    union = (masks > 0.5).any(0).float() if len(masks) else torch.zeros(height, width)
    src = union.expand(frames, 1, height, width).contiguous()
    return forward_splat(src, flow.float(), mode="sum")[:, 0].clamp(0.0, 1.0)


def region_tokens(cover: torch.Tensor, height: int, width: int, tau: float) -> torch.Tensor:
    """``R = 1[area-downsample(M_t) > tau]`` at a layer's grid, as ``(h*w, T)`` bool (row-major tokens)."""
    frac = F.adaptive_avg_pool2d(cover[:, None].float(), (height, width))[:, 0]
    return (frac > tau).flatten(1).t().contiguous()


def cover_tokens(cover: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The area-downsampled coverage itself as ``(h*w, T)`` (the trainer's motion masks m_l)."""
    frac = F.adaptive_avg_pool2d(cover[:, None].float(), (height, width))[:, 0]
    return frac.flatten(1).t().contiguous()


@dataclass
class TrainingFreeGeometry:
    """The training-free mode's inputs at one raster size: flow and moving-region coverage."""
    flow: torch.Tensor        # [T, 2, H, W] pixels of the raster
    cover: torch.Tensor       # [T, H, W] in [0, 1]
    regions: torch.Tensor     # [K, H, W] frame-0 object regions
    camera: bool = field(default=False)


def training_free_geometry(ts: TrackSet, width: int, height: int,
                           masks: Optional[torch.Tensor] = None) -> TrainingFreeGeometry:
    """Field and moving regions for ``ts`` (any size; rescaled here) at a ``width x height`` raster.
    ``masks`` [K, H, W] are the objects' frame-0 masks in :func:`object_ids` order, when known (the
    trainer's clips); without them the regions are estimated from the tracks (:func:`object_regions`)."""
    sized = ts.sized(width, height)
    if masks is None:
        regions = object_regions(sized, width, height)
    else:
        regions = F.interpolate(masks[:, None].float(), size=(height, width), mode="area")[:, 0].gt(0.5).float()
    flow = tracks_field(sized, regions)
    camera = bool((sized.object == CAMERA).any())
    return TrainingFreeGeometry(flow, moving_cover(regions, flow, whole_frame=camera), regions, camera)
