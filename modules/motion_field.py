"""Dense motion fields and Motion-I2V's motion-augmented temporal attention (arXiv 2401.15977, seed 002).

MOTION_FIELD (format version 1)
-------------------------------
A dict passed between MotionKit nodes::

    {"version": 1,
     "flow":  float32 tensor [T, 2, H, W]   # (dx, dy) in pixels, from frame 0 to frame t; flow[0] == 0
     "valid": float32 tensor [T, 1, H, W] or None   # 1 where the field is given (optional)
     "width": W, "height": H}                # pixel size of the image the field describes

Frame 0 is always the identity (all zero). A field of any pixel size can drive any video of the same
aspect ratio: it is resized to each attention layer's resolution and its vectors rescaled with it.

Motion-augmented temporal attention (seed 002 stage 2; official ``VersatileAttention.forward``)
------------------------------------------------------------------------------------------------
For the temporal self-attention of one spatial position, with normalised per-frame inputs h_t:

    w_t   = splat(h_0, flow_t)                       forward-warp of frame 0's features to frame t
    S     = [h_0, w_1, h_1, w_2, h_2, ..., w_{T-1}, h_{T-1}]     (2T - 1 tokens)
    out_t = softmax(h_t W_q (S W_k)^T / sqrt(d)) (S W_v)          queries from real frames only
    out   = (1 - s) * TemporalAttn(h) + s * out                   then the layer's own to_out

No new parameters: W_q, W_k, W_v are the layer's own projections. ``splat`` is softsplat's "average"
forward splatting: bilinear splat of the value and of a unit weight, divided by the weight plus 1e-7;
pixels no source lands on (disocclusions) are zero.

The divisor is the official one: softsplat's ``strMode="avg"`` divides by ``weight + 1e-7``, and so does
``forward_splat`` (it used to divide only where the weight is positive). The two agree at
disocclusions (zero) and differ by value * 1e-7 / weight where little weight lands: an independent
comparison against the official code measured 4.7e-4 abs. No measurement gave a reason
to keep the departure (same speed; the only cost is that a zero or integer flow moves values to within a
relative 1e-7 instead of bit-exactly). Softmax splatting (``metric``), which has no part in Motion-I2V
and only draws the warped image of *Visualize Motion Field*, divides where the weight is positive, so a
drawn picture keeps its exact pixel values.

Batches under classifier-free guidance: each video's frame 0 is warped for that same video (cond with
cond, uncond with uncond), as the method intends. The official stage-2 code (``forward_warp_hidden``)
tiles the frame-0 features with ``.repeat`` over frames while the flows are laid out video-major, so
with a batch of two it pairs some frames with the other batch item's frame 0; MotionKit does not copy
that.
"""
from __future__ import annotations

from typing import Optional

from einops import rearrange, repeat
import torch
import torch.nn.functional as F

FORMAT_VERSION = 1
SPLAT_EPS = 1e-7   # softsplat "avg": value / (weight + 1e-7)


# --- the MOTION_FIELD value -------------------------------------------------------------------------

def make_motion_field(flow: torch.Tensor, valid: Optional[torch.Tensor] = None) -> dict:
    """Wrap a [T, 2, H, W] pixel flow (frame 0 forced to zero) as a MOTION_FIELD."""
    flow = flow.detach().to(torch.float32).clone()
    flow[0] = 0.0
    if valid is not None:
        valid = valid.detach().to(torch.float32)
    field = {"version": FORMAT_VERSION, "flow": flow, "valid": valid,
             "width": int(flow.shape[-1]), "height": int(flow.shape[-2])}
    check_motion_field(field)
    return field


def check_motion_field(field) -> list[str]:
    """Problems with a MOTION_FIELD, as sentences (empty when it is valid)."""
    if not isinstance(field, dict) or "flow" not in field:
        return ["it is not a MOTION_FIELD dict"]
    problems = []
    if field.get("version") != FORMAT_VERSION:
        problems.append(f"its format version is {field.get('version')!r}, this MotionKit reads {FORMAT_VERSION}")
    flow = field["flow"]
    if not torch.is_tensor(flow) or flow.ndim != 4 or flow.shape[1] != 2:
        problems.append("'flow' must be a [T, 2, H, W] tensor")
        return problems
    if flow.shape[0] < 2:
        problems.append("it needs at least 2 frames")
    if not torch.isfinite(flow).all():
        problems.append("'flow' has NaN or infinite values")
    valid = field.get("valid")
    if valid is not None and (not torch.is_tensor(valid) or tuple(valid.shape) != (flow.shape[0], 1, *flow.shape[2:])):
        problems.append("'valid' must be None or a [T, 1, H, W] tensor")
    return problems


def resize_flow(flow: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear resize of a [T, 2, H, W] pixel flow to (height, width), vectors rescaled to the new pixels
    (as the official code: dx / (W_flow / W), dy / (H_flow / H))."""
    h0, w0 = flow.shape[-2:]
    if (h0, w0) == (height, width):
        return flow
    out = F.interpolate(flow, size=(height, width), mode="bilinear", align_corners=False)
    scale = torch.tensor([width / w0, height / h0], dtype=out.dtype, device=out.device).view(1, 2, 1, 1)
    return out * scale


# --- forward splatting ------------------------------------------------------------------------------

def forward_splat(values: torch.Tensor, flow: torch.Tensor, mode: str = "avg",
                  metric: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Forward-warp ``values`` [N, C, H, W] by ``flow`` [N, 2, H, W] (pixels, dx then dy).

    Each source pixel p is splatted bilinearly onto the four pixels around p + flow(p).
    ``mode="sum"`` returns the splatted sums (mass-conserving for targets inside the image);
    ``mode="avg"`` divides by the splatted weight + ``SPLAT_EPS`` (softsplat's "avg", the official
    divisor): integer flows move values to within a relative 1e-7, and pixels that receive nothing are
    zero. ``metric`` [N, 1, H, W] (avg mode only) weights each source by ``exp(metric - max metric)``
    (softmax splatting): where sources collide, the larger metric wins; it divides where the weight is
    positive (exact, for drawing).
    """
    if mode not in ("sum", "avg"):
        raise ValueError(f"unknown splat mode {mode!r}")
    n, c, h, w = values.shape
    dtype = torch.float32 if values.dtype in (torch.float16, torch.bfloat16) else values.dtype
    src = values.to(dtype).reshape(n, c, h * w)
    ys, xs = torch.meshgrid(torch.arange(h, device=values.device, dtype=dtype),
                            torch.arange(w, device=values.device, dtype=dtype), indexing="ij")
    tx = (xs + flow[:, 0].to(dtype)).reshape(n, h * w)
    ty = (ys + flow[:, 1].to(dtype)).reshape(n, h * w)
    x0, y0 = torch.floor(tx), torch.floor(ty)
    out = values.new_zeros((n, c + (mode == "avg"), h * w), dtype=dtype)
    if mode == "avg":
        weight0 = torch.ones_like(src[:, :1]) if metric is None else \
            torch.exp(metric.to(dtype).reshape(n, 1, h * w) - metric.to(dtype).amax(dim=(1, 2, 3)).view(n, 1, 1))
        payload = torch.cat([src * weight0, weight0], 1)
    else:
        payload = src
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        cx, cy = x0 + dx, y0 + dy
        weight = (1 - (tx - cx).abs()) * (1 - (ty - cy).abs())
        inside = (cx >= 0) & (cx <= w - 1) & (cy >= 0) & (cy <= h - 1) & (weight > 0)
        index = (cy.clamp(0, h - 1) * w + cx.clamp(0, w - 1)).long()
        contrib = payload * (weight * inside).unsqueeze(1)
        out.scatter_add_(2, index.unsqueeze(1).expand(-1, payload.shape[1], -1), contrib)
    if mode == "avg":
        norm = out[:, -1:]
        if metric is None:    # Motion-I2V's softsplat "avg"
            out = out[:, :-1] / (norm + SPLAT_EPS)
        else:
            out = out[:, :-1] / torch.where(norm > 0, norm, torch.ones_like(norm))
    return out.reshape(n, c, h, w).to(values.dtype)


# --- motion-augmented temporal attention ------------------------------------------------------------

def interleave_with_warped(tokens: torch.Tensor, height: int, width: int, flow_hw: torch.Tensor) -> torch.Tensor:
    """Temporal tokens ``(B*h*w, T, C)`` (spatial positions row-major, as ComfyUI's SVD time_stack and
    AnimateDiff motion modules lay them out) -> the interleaved ``(B*h*w, 2T-1, C)`` sequence
    ``[h0, w1, h1, ..., w_{T-1}, h_{T-1}]`` where w_t is frame 0 forward-splatted by ``flow_hw[t]``
    ([T, 2, h, w], already at this resolution)."""
    bhw, frames, channels = tokens.shape
    batch = bhw // (height * width)
    frame0 = rearrange(tokens[:, 0], "(b h w) c -> b c h w", h=height, w=width)
    # one copy of frame 0 per target frame t = 1..T-1, each splatted by its own flow
    sources = repeat(frame0, "b c h w -> (b t) c h w", t=frames - 1)
    flows = repeat(flow_hw[1:].to(tokens.device), "t k h w -> (b t) k h w", b=batch)
    warped = forward_splat(sources.detach(), flows, mode="avg")
    warped = rearrange(warped, "(b t) c h w -> (b h w) t c", t=frames - 1)
    seq = tokens.new_empty((bhw, 2 * frames - 1, channels))
    seq[:, 0::2] = tokens
    seq[:, 1::2] = warped
    return seq


# --- seeing a field ---------------------------------------------------------------------------------

def _color_wheel() -> torch.Tensor:
    """The standard optical-flow colour wheel (Baker et al., Middlebury): 55 hues, RGB in [0, 1]."""
    segments = [(15, (1, 0, 0), (1, 1, 0)), (6, (1, 1, 0), (0, 1, 0)), (4, (0, 1, 0), (0, 1, 1)),
                (11, (0, 1, 1), (0, 0, 1)), (13, (0, 0, 1), (1, 0, 1)), (6, (1, 0, 1), (1, 0, 0))]
    rows = []
    for n, a, b in segments:
        t = torch.arange(n, dtype=torch.float32).unsqueeze(1) / n
        rows.append(torch.tensor(a) * (1 - t) + torch.tensor(b) * t)
    return torch.cat(rows)


def flow_to_rgb(flow: torch.Tensor, max_magnitude: float = 0.0) -> torch.Tensor:
    """[T, 2, H, W] flow -> [T, H, W, 3] colours: hue is direction, saturation is magnitude relative to
    ``max_magnitude`` (0 = the field's own maximum), white is no motion."""
    wheel = _color_wheel()
    dx, dy = flow[:, 0].float(), flow[:, 1].float()
    mag = torch.sqrt(dx ** 2 + dy ** 2)
    scale = float(max_magnitude) if max_magnitude > 0 else float(mag.max().clamp_min(1e-6))
    angle = torch.atan2(-dy, -dx) / torch.pi                       # (-1, 1]
    pos = (angle + 1) / 2 * (len(wheel) - 1)
    i0 = pos.floor().long().clamp(0, len(wheel) - 1)
    i1 = (i0 + 1) % len(wheel)
    frac = (pos - i0.float()).unsqueeze(-1)
    hue = wheel[i0] * (1 - frac) + wheel[i1] * frac
    sat = (mag / scale).clamp(0, 1).unsqueeze(-1)
    return 1 - sat * (1 - hue)


def warp_image(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Forward-warp one image [H, W, 3] by every frame of a [T, 2, H, W] flow -> [T, H, W, 3]. Moving pixels
    are drawn in front of still ones (softmax splatting by speed), so a moved object stays opaque."""
    frames = flow.shape[0]
    src = image.permute(2, 0, 1).unsqueeze(0).expand(frames, -1, -1, -1).contiguous()
    speed = flow.to(src.dtype).norm(dim=1, keepdim=True)
    metric = 20.0 * speed / speed.amax().clamp_min(1e-6)
    return forward_splat(src, flow.to(src.dtype), mode="avg", metric=metric).permute(0, 2, 3, 1)
