"""Rasterising tracks: one colour per object, thick lines as capsules (round caps), numpy only.

Colours: object ``i`` uses ``PALETTE[i % len(PALETTE)]``, camera tracks ``CAMERA_COLOR``. The arrow
editor (``web/js/arrow_geometry.js``) uses the same table, so the editor, the previews and the track maps
agree. A pixel is painted when its centre ``(j + 0.5, i + 0.5)`` lies within ``line_width / 2`` of the
segment (see ``tracks.py`` for the pixel convention).
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np

from .tracks import CAMERA, TrackSet

# 12 well-separated colours (0-255 RGB); the editor's PALETTE must list the same values.
PALETTE = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40),
)
CAMERA_COLOR = (255, 255, 255)
BACKGROUND = 0.12        # grey behind tracks when no image is given
TRAIL_OPACITY = 0.75
MASK_TINT = 0.45

Progress = Optional[Callable[[int], None]]


def object_color(obj: int) -> np.ndarray:
    """RGB in [0, 1] for an object id (``-1`` = camera)."""
    rgb = CAMERA_COLOR if obj == CAMERA else PALETTE[int(obj) % len(PALETTE)]
    return np.asarray(rgb, dtype=np.float32) / 255.0


def object_hex(obj: int) -> str:
    rgb = CAMERA_COLOR if obj == CAMERA else PALETTE[int(obj) % len(PALETTE)]
    return "#%02x%02x%02x" % rgb


def capsule(shape: tuple[int, int], a: np.ndarray, b: np.ndarray, radius: float):
    """``(rows, cols, inside)``: the pixels whose centres lie within ``radius`` of segment ``a``-``b``,
    as a boolean block over the segment's bounding box (``None`` when it misses the image)."""
    height, width = shape
    x0 = max(math.floor(min(a[0], b[0]) - radius), 0)
    x1 = min(math.ceil(max(a[0], b[0]) + radius), width)
    y0 = max(math.floor(min(a[1], b[1]) - radius), 0)
    y1 = min(math.ceil(max(a[1], b[1]) + radius), height)
    if x0 >= x1 or y0 >= y1:
        return None
    px = np.arange(x0, x1, dtype=np.float64)[None, :] + 0.5
    py = np.arange(y0, y1, dtype=np.float64)[:, None] + 0.5
    d = np.asarray(b, dtype=np.float64) - a
    length2 = float(d @ d)
    u = 0.0 if length2 == 0 else np.clip(((px - a[0]) * d[0] + (py - a[1]) * d[1]) / length2, 0.0, 1.0)
    dx, dy = px - (a[0] + u * d[0]), py - (a[1] + u * d[1])
    return slice(y0, y1), slice(x0, x1), dx * dx + dy * dy <= radius * radius


def paint(canvas: np.ndarray, a, b, radius: float, color: np.ndarray, coverage: Optional[np.ndarray] = None) -> None:
    hit = capsule(canvas.shape[:2], np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), radius)
    if hit is None:
        return
    rows, cols, inside = hit
    canvas[rows, cols][inside] = color
    if coverage is not None:
        coverage[rows, cols] |= inside


def _trail_step(ts: TrackSet, t: int, canvas: np.ndarray, radius: float, colors: np.ndarray,
                coverage: Optional[np.ndarray] = None) -> None:
    """Extend every visible track's trail to frame ``t`` (frame 0: a dot at the start)."""
    for n in range(ts.num_tracks):
        if not ts.visible[t, n]:
            continue
        start = ts.path[t - 1, n] if t > 0 else ts.path[0, n]
        paint(canvas, start, ts.path[t, n], radius, colors[n], coverage)


def track_maps(ts: TrackSet, line_width: float, progress: Progress = None) -> np.ndarray:
    """TrackGo point-trajectory maps ``[T, H, W, 3]`` in [0, 1] on black: frame ``t`` shows each track's
    path from its start to its frame-``t`` position, ``line_width`` wide, in its object's colour."""
    height, width = ts.height, ts.width
    colors = np.stack([object_color(o) for o in ts.object])
    canvas = np.zeros((height, width, 3), dtype=np.float32)
    frames = np.empty((ts.num_frames, height, width, 3), dtype=np.float32)
    for t in range(ts.num_frames):
        _trail_step(ts, t, canvas, line_width / 2.0, colors)
        frames[t] = canvas
        if progress:
            progress(t)
    return frames


def tint_masks(background: np.ndarray, masks: np.ndarray, alpha: float = MASK_TINT) -> np.ndarray:
    """``background`` [H, W, 3] with each boolean mask [B, H, W] tinted in its object's colour."""
    out = background.astype(np.float32, copy=True)
    for i, mask in enumerate(masks):
        out[mask] = (1 - alpha) * out[mask] + alpha * object_color(i)
    return out


def visualize(ts: TrackSet, background: Optional[np.ndarray], line_width: float, point_radius: float,
              progress: Progress = None) -> np.ndarray:
    """Frames ``[T, H, W, 3]``: trails so far (``TRAIL_OPACITY`` over the background) and a dot at each track's
    current position, over ``background`` (``[1 or T, H, W, 3]``; grey when ``None``)."""
    height, width = ts.height, ts.width
    if background is None:
        background = np.full((1, height, width, 3), BACKGROUND, dtype=np.float32)
    background = np.asarray(background, dtype=np.float32)
    colors = np.stack([object_color(o) for o in ts.object])
    still = len(background) == 1
    # One image: keep the blended composite and touch only newly painted pixels (full-frame blends per frame
    # cost ~30x more at 1024x576). A video: blend each frame inside the trails' bounding box.
    composite = background[0].copy() if still else None
    trail = np.zeros((height, width, 3), dtype=np.float32)
    coverage = np.zeros((height, width), dtype=bool)
    frames = np.empty((ts.num_frames, height, width, 3), dtype=np.float32)
    for t in range(ts.num_frames):
        for n in range(ts.num_tracks):
            if not ts.visible[t, n]:
                continue
            hit = capsule((height, width), ts.path[t - 1, n] if t > 0 else ts.path[0, n], ts.path[t, n], line_width / 2.0)
            if hit is None:
                continue
            rows, cols, inside = hit
            trail[rows, cols][inside] = colors[n]
            coverage[rows, cols] |= inside
            if still:
                composite[rows, cols][inside] = ((1 - TRAIL_OPACITY) * background[0][rows, cols][inside]
                                                 + TRAIL_OPACITY * colors[n])
        frame = frames[t]
        if still:
            frame[...] = composite
        else:
            frame[...] = background[t]
            ys, xs = np.flatnonzero(coverage.any(1)), np.flatnonzero(coverage.any(0))
            if len(ys):
                box = (slice(ys[0], ys[-1] + 1), slice(xs[0], xs[-1] + 1))
                frame[box] = np.where(coverage[box][..., None],
                                      (1 - TRAIL_OPACITY) * frame[box] + TRAIL_OPACITY * trail[box], frame[box])
        for n in range(ts.num_tracks):
            if ts.visible[t, n]:
                paint(frame, ts.path[t, n], ts.path[t, n], point_radius, colors[n])
        if progress:
            progress(t)
    return frames
