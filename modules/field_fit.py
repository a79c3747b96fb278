"""Training-free motion-field predictor: dense flow from point trajectories and object masks.

For every object k and frame t, the tracks of k that are visible at t give point pairs
(p_i -> q_i), p_i the start (frame 0) position and q_i the frame-t position. The object's motion is
fitted by least squares:

    n >= 3 non-collinear tracks:   affine   q = A p + b        (6 parameters)
    n == 1 or 2, or collinear:     translation  q = p + mean(q_i - p_i)
    n == 0:                        still (the object stays pinned)

An affine map is the smallest model that covers translation, rotation, scaling and shear, and it is
exact for any motion of those kinds; three points determine it, so fewer fall back to translation.

Dense field: d_k(x) = A x + b - x for every pixel x. Objects are combined with soft weights confined
to their masks, s_k = mask_k * blur(mask_k), so a pixel inside one object only gets exactly that
object's motion, where objects touch or overlap the motions blend smoothly by depth into each object,
and outside every object the field is zero, or the camera motion when camera tracks are given
(a global affine fitted the same way to the camera tracks).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

CAMERA = -1  # object id of camera (whole-image) tracks


def fit_motion(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """The 2x3 map ``[A | b]`` with ``q ~= A p + b`` (float64; see the module docstring for the rule)."""
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    ident = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    if len(p) == 0:
        return ident
    if len(p) >= 3:
        design = np.hstack([p, np.ones((len(p), 1))])
        if np.linalg.matrix_rank(design, tol=1e-6 * max(1.0, np.abs(p).max())) == 3:
            sol, *_ = np.linalg.lstsq(design, q, rcond=None)
            return sol.T
    ident[:, 2] = (q - p).mean(0)
    return ident


def soft_weights(masks: torch.Tensor, softness: float) -> torch.Tensor:
    """[K, H, W] weights confined to each mask, falling off near its edge over ~``softness`` pixels."""
    if softness <= 0:
        return masks.clone()
    import kornia.filters
    sigma = float(softness) / 2.0
    kernel = int(2 * round(3 * sigma) + 1)
    blurred = kornia.filters.gaussian_blur2d(masks[:, None], (kernel, kernel), (sigma, sigma),
                                             border_type="replicate")[:, 0]
    return masks * blurred.clamp_min(1e-6)


def displacement(affine: np.ndarray, height: int, width: int) -> torch.Tensor:
    """[2, H, W] displacement ``A x + b - x`` of every pixel centre x = (col + 0.5, row + 0.5), the
    TRACKS pixel convention (modules/tracks.py)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5
    dx = affine[0, 0] * xs + affine[0, 1] * ys + affine[0, 2] - xs
    dy = affine[1, 0] * xs + affine[1, 1] * ys + affine[1, 2] - ys
    return torch.from_numpy(np.stack([dx, dy])).to(torch.float32)


def field_from_tracks(track_path: np.ndarray, visibility: np.ndarray, object_ids: np.ndarray,
                      masks: torch.Tensor, softness: float = 4.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense flow [T, 2, H, W] and validity [T, 1, H, W] from tracks ([T, N, 2] pixels, [T, N] bool,
    [N] object index into ``masks`` or ``CAMERA``) and object masks [K, H, W] in {0, 1}."""
    frames = track_path.shape[0]
    k, height, width = masks.shape
    weights = soft_weights(masks.float(), softness)
    total = weights.sum(0)
    inside = total > 0
    norm = torch.where(inside, total, torch.ones_like(total))
    cams = object_ids == CAMERA
    flow = torch.zeros((frames, 2, height, width))
    for t in range(1, frames):
        field = torch.zeros((2, height, width))
        for obj in range(k):
            sel = (object_ids == obj) & visibility[t] & visibility[0]
            motion = fit_motion(track_path[0, sel], track_path[t, sel])
            field += weights[obj] / norm * displacement(motion, height, width)
        if cams.any():
            sel = cams & visibility[t] & visibility[0]
            background = displacement(fit_motion(track_path[0, sel], track_path[t, sel]), height, width)
            field = torch.where(inside, field, background)
        flow[t] = field
    valid = torch.ones((frames, 1, height, width)) if cams.any() else inside.float().expand(frames, 1, -1, -1).clone()
    return flow, valid


def assign_objects(track_path: np.ndarray, masks: torch.Tensor, object_ids: Optional[np.ndarray]) -> np.ndarray:
    """Object index per track: the given ids when present, else the mask that holds the track's start
    point (``CAMERA`` when it lies in none, so unlabelled background tracks move the background)."""
    if object_ids is not None:
        return np.asarray(object_ids, np.int64)
    k, height, width = masks.shape
    start = np.floor(track_path[0]).astype(np.int64)  # pixel (row i, col j) covers [j, j+1) x [i, i+1)
    cols, rows = np.clip(start[:, 0], 0, width - 1), np.clip(start[:, 1], 0, height - 1)
    m = masks.numpy() > 0.5
    ids = np.full(len(start), CAMERA, np.int64)
    for obj in range(k - 1, -1, -1):  # the first mask wins where masks overlap
        ids[m[obj, rows, cols]] = obj
    return ids
