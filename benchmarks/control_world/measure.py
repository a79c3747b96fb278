"""Measuring a generated Control World video: track each sprite by its colour, then ObjMC, appearance drift,
background drift and speed. Plain numpy.

- **Tracking.** A pixel belongs to sprite k in frame t when its colour is within ``COLOR_TOLERANCE``
  (Euclidean, RGB in [0, 1]) of the sprite's colour as the video shows it in frame 0 (the median inside the
  sprite's ground-truth frame-0 mask); the sprite's position is the centroid of those pixels
  (pixel centres at j + 0.5). A sprite with fewer than ``MIN_PIXELS`` such pixels in a frame is *lost* there.
- **ObjMC** (DragAnything / TrackGo): the mean Euclidean distance, in pixels, between the generated and the
  requested trajectory, over the frames after the first and over the sprites. A lost sprite counts the
  distance from its requested position to the farthest image corner (the worst it could be), so losing an
  object is never rewarded. **ObjMC, tracked** is the same mean over only the sprite-frames the tracker found:
  how closely the sprites that survive follow their paths, apart from how many are lost.
- **Appearance error**: per sprite and frame, 1 - IoU of its colour mask with the frame-0 colour mask after
  shifting both to their centroids (shape and colour change; a lost sprite counts 1), averaged.
- **Background drift**: mean absolute RGB change from frame 0 over the pixels no sprite covers (dilated by
  2 px) in either frame, in the ground truth.
- **Speed**: the mean per-frame displacement of the tracked centroids (pixels / frame).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COLOR_TOLERANCE = 0.3
MIN_PIXELS = 4


@dataclass
class Tracked:
    positions: np.ndarray     # [T, K, 2] centroid (x, y); NaN where lost
    masks: np.ndarray         # [T, K, H, W] bool colour masks


def track_by_color(frames: np.ndarray, colors: np.ndarray, tolerance: float = COLOR_TOLERANCE) -> Tracked:
    frames = np.asarray(frames, dtype=np.float32)
    t, h, w, _ = frames.shape
    masks = np.linalg.norm(frames[:, None] - np.asarray(colors, np.float32)[None, :, None, None], axis=-1) < tolerance
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    count = masks.sum(axis=(2, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        cx = (masks * xx).sum(axis=(2, 3)) / count
        cy = (masks * yy).sum(axis=(2, 3)) / count
    pos = np.stack([cx, cy], -1)
    pos[count < MIN_PIXELS] = np.nan
    return Tracked(pos, masks)


def objmc(tracked: np.ndarray, requested: np.ndarray, width: int, height: int) -> float:
    """Mean distance over frames 1.. and sprites ([T, K, 2] each); a lost sprite counts its worst case."""
    req = np.asarray(requested, np.float64)[1:]
    got = np.asarray(tracked, np.float64)[1:]
    dist = np.linalg.norm(got - req, axis=-1)
    corners = np.array([[0, 0], [width, 0], [0, height], [width, height]], np.float64)
    worst = np.linalg.norm(req[..., None, :] - corners, axis=-1).max(-1)
    return float(np.where(np.isnan(dist), worst, dist).mean())


def objmc_tracked(tracked: np.ndarray, requested: np.ndarray) -> float:
    """ObjMC over frames 1.. and the sprite-frames that were found (lost ones left out); nan when none was."""
    dist = np.linalg.norm(np.asarray(tracked, np.float64)[1:] - np.asarray(requested, np.float64)[1:], axis=-1)
    return float(np.nanmean(dist)) if np.isfinite(dist).any() else float("nan")


def _centered(mask: np.ndarray) -> np.ndarray:
    """The mask shifted (by whole pixels) so its centroid is at the image centre."""
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return mask
    dy, dx = int(round(h / 2 - ys.mean() - 0.5)), int(round(w / 2 - xs.mean() - 0.5))
    out = np.zeros_like(mask)
    ys2, xs2 = ys + dy, xs + dx
    keep = (ys2 >= 0) & (ys2 < h) & (xs2 >= 0) & (xs2 < w)
    out[ys2[keep], xs2[keep]] = True
    return out


def appearance_error(tracked: Tracked) -> float:
    t, k = tracked.masks.shape[:2]
    errors = []
    for j in range(k):
        ref = _centered(tracked.masks[0, j])
        for i in range(1, t):
            cur = _centered(tracked.masks[i, j])
            union = (ref | cur).sum()
            errors.append(1.0 if union == 0 or not cur.any() else 1.0 - (ref & cur).sum() / union)
    return float(np.mean(errors)) if errors else 0.0


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    out = mask.copy()
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            out |= np.roll(np.roll(mask, dy, 0), dx, 1)
    return out


def background_drift(frames: np.ndarray, gt_frames: np.ndarray, background: np.ndarray) -> float:
    """Over pixels where the ground truth shows background in frame 0 and frame t (no sprite nearby)."""
    frames = np.asarray(frames, np.float32)
    is_bg = np.abs(np.asarray(gt_frames) - background[None]).max(-1) < 1e-3       # [T, H, W]
    drift = []
    for i in range(1, len(frames)):
        keep = ~_dilate(~(is_bg[0] & is_bg[i]), 2)
        if keep.any():
            drift.append(float(np.abs(frames[i] - frames[0])[keep].mean()))
    return float(np.mean(drift)) if drift else 0.0


def speed(tracked: np.ndarray) -> float:
    steps = np.linalg.norm(np.diff(np.asarray(tracked, np.float64), axis=0), axis=-1)
    return float(np.nanmean(steps)) if np.isfinite(steps).any() else float("nan")


def first_frame_colors(frames: np.ndarray, clip) -> np.ndarray:
    """Each sprite's colour as the video shows it in frame 0: the median colour inside its ground-truth mask
    shrunk by 2 px (the VAE of a model need not reproduce the exact colour; the motion is what is measured)."""
    colors = []
    for k, mask in enumerate(clip.masks > 0.5):
        core = ~_dilate(~mask, 2)
        pixels = np.asarray(frames[0])[core if core.any() else mask]
        colors.append(np.median(pixels, axis=0) if len(pixels) else clip.colors[k])
    return np.asarray(colors, np.float32)


def measure(frames: np.ndarray, clip, requested: np.ndarray, colors: np.ndarray | None = None) -> dict:
    """Every figure of one generated video of ``clip`` against the ``requested`` sprite centres [T, K, 2];
    sprites are tracked by ``colors`` (default: their colours in the video's own frame 0)."""
    tr = track_by_color(frames, first_frame_colors(frames, clip) if colors is None else colors)
    size = clip.spec.size
    return {"objmc": objmc(tr.positions, requested, size, size),
            "objmc_tracked": objmc_tracked(tr.positions, requested), "appearance": appearance_error(tr),
            "background": background_drift(frames, clip.frames, clip.background), "speed": speed(tr.positions),
            "lost": float(np.isnan(tr.positions[..., 0]).mean())}


def requested_positions(clip) -> np.ndarray:
    """Where each sprite's tracked centroid should be in every frame: its centroid in the ground-truth frame 0
    moved by the requested displacement (a triangle's centroid is not its drawing centre)."""
    start = track_by_color(clip.frames[:1], clip.colors).positions[0]
    return start[None] + (clip.centers - clip.centers[:1])
