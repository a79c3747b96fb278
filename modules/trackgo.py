"""TrackGo's arrows-to-trajectories preprocessing (arXiv 2408.11475, seed 001).

For each object mask TrackGo samples ``K * s`` points uniformly at random inside the mask and reduces them
with k-means to ``K`` control points, which spreads them evenly over the object at little cost. Every
control point of an object then moves along that object's arrow: at frame ``t`` its displacement is the
arrow path at arc-length fraction ``easing(t / (T - 1))`` minus the path's start (see ``arrows.py``).
An object without an arrow keeps still tracks (it stays pinned); a camera arrow (the whole image is the
"object") moves a regular grid of points over the image. Arrows JSON version 2 adds per-arrow timing
(start/end frame, timed points, easing, visibility) and anchors, still tracks of an object or of the
background (see ``arrows.py``).

Choices the paper leaves open, made here:

* samples are pixel centres drawn without replacement from the pixels where ``mask > 0.5``;
  ``s = OVERSAMPLE`` (or every pixel of a smaller mask);
* k-means is Lloyd's algorithm from a k-means++ start, with a random generator seeded by
  ``(seed, object index)``, so one object's points do not change when another mask is added;
* each k-means centre is snapped to the nearest sample of its cluster: a plain centroid can fall outside a
  ring- or C-shaped mask, and a control point must lie on the object;
* a mask with fewer pixels than ``K`` repeats its pixels to give ``K`` tracks;
* control points are listed by row, then column, so track order is stable;
* the camera grid has ``rows x cols >= K`` points at cell centres, ``rows / cols`` close to ``H / W``.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .arrows import Anchor, Arrow, arrow_motion, ease
from .tracks import CAMERA, TrackInputError, make_tracks

OVERSAMPLE = 16       # TrackGo's s: samples per control point before k-means
KMEANS_ITERATIONS = 30


def sample_mask_points(mask: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``min(count, area)`` distinct pixel centres ``(x, y)`` drawn uniformly from the boolean mask."""
    flat = np.flatnonzero(mask.reshape(-1))
    chosen = flat if len(flat) <= count else rng.choice(flat, size=count, replace=False)
    rows, cols = np.divmod(chosen, mask.shape[1])
    return np.stack([cols + 0.5, rows + 0.5], axis=1).astype(np.float64)


def _kmeans_pp_init(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    centers = [x[rng.integers(len(x))]]
    d2 = ((x - centers[0]) ** 2).sum(1)
    for _ in range(1, k):
        total = d2.sum()
        idx = rng.choice(len(x), p=d2 / total) if total > 0 else rng.integers(len(x))
        centers.append(x[idx])
        d2 = np.minimum(d2, ((x - x[idx]) ** 2).sum(1))
    return np.array(centers)


def kmeans_control_points(x: np.ndarray, k: int, rng: np.random.Generator,
                          iterations: int = KMEANS_ITERATIONS) -> np.ndarray:
    """``k`` points of ``x`` [n, 2]: k-means centres, each snapped to the nearest member of its cluster."""
    n = len(x)
    if n <= k:  # nothing to reduce: every sample is a control point (repeated if the mask is tiny)
        return x[np.arange(k) % n]
    centers = _kmeans_pp_init(x, k, rng)
    previous = None
    for _ in range(iterations):
        d2 = ((x[:, None, :] - centers[None]) ** 2).sum(-1)
        labels = d2.argmin(1)
        if previous is not None and np.array_equal(labels, previous):
            break  # Lloyd's fixed point: the assignment no longer changes
        previous = labels
        counts = np.bincount(labels, minlength=k)
        sums = np.stack([np.bincount(labels, weights=x[:, c], minlength=k) for c in (0, 1)], axis=1)
        centers = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], centers)
        for j in np.flatnonzero(counts == 0):  # re-seed an empty cluster at the worst-served sample
            centers[j] = x[d2[np.arange(n), labels].argmax()]
    d2 = ((x[:, None, :] - centers[None]) ** 2).sum(-1)
    labels = d2.argmin(1)
    chosen = np.full(k, -1)
    for j in range(k):
        members = np.flatnonzero(labels == j)
        if len(members):
            chosen[j] = members[d2[members, j].argmin()]
    free = np.setdiff1d(np.arange(n), chosen[chosen >= 0])
    for j in np.flatnonzero(chosen < 0):  # still empty: take the free sample farthest from every centre
        pick = free[d2[free].min(1).argmax()]
        chosen[j], free = pick, free[free != pick]
    return x[chosen]


def object_control_points(mask: np.ndarray, k: int, seed: int, object_index: int) -> np.ndarray:
    """TrackGo's ``k`` control points of one object, sorted by row then column."""
    rng = np.random.default_rng([int(seed), int(object_index)])
    points = kmeans_control_points(sample_mask_points(mask, k * OVERSAMPLE, rng), k, rng)
    return points[np.lexsort((points[:, 0], points[:, 1]))]


def camera_grid(width: int, height: int, k: int) -> np.ndarray:
    """A ``rows x cols`` grid (``>= k`` points) of cell centres covering the image."""
    rows = max(1, round(math.sqrt(k * height / width)))
    cols = max(1, math.ceil(k / rows))
    xs = (np.arange(cols) + 0.5) * width / cols
    ys = (np.arange(rows) + 0.5) * height / rows
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([gx.reshape(-1), gy.reshape(-1)], axis=1)


def binary_masks(masks: np.ndarray) -> np.ndarray:
    """``[B, H, W]`` bool (``> 0.5``), with an empty mask reported by index."""
    binary = masks > 0.5
    empty = np.flatnonzero(~binary.reshape(len(binary), -1).any(1))
    if len(empty):
        raise TrackInputError(
            "masks", f"mask {int(empty[0])} of {len(binary)} is empty (no pixel above 0.5).",
            "select the object again (Click to Mask) or remove that mask from the batch.")
    return binary


def arrows_to_tracks(masks: np.ndarray, arrows: Sequence[Arrow], num_frames: int, points_per_object: int,
                     seed: int, easing: str, anchors: Sequence[Anchor] = ()) -> dict:
    """TRACKS for ``masks`` [B, H, W] (float or bool) moved by validated ``arrows``.

    Tracks are listed object by object (mask order, ``points_per_object`` each), then the camera grid if a
    camera arrow is given, then one track per anchor (in the document's order). Visibility is "inside the
    image", and also False outside an arrow's frames where it says ``"visible": "range"``.
    """
    if num_frames < 2:
        raise TrackInputError("num_frames", f"num_frames is {num_frames}; a trajectory needs at least 2 frames.",
                              "set num_frames to 2 or more (SVD: 14 or 25).")
    if points_per_object < 1:
        raise TrackInputError("points_per_object", f"points_per_object is {points_per_object}.", "use 1 or more.")
    ease(easing, 0.0)  # an unknown easing is an error even when no arrow needs it
    binary = binary_masks(np.asarray(masks))
    height, width = binary.shape[1:]
    by_object = {a.object: a for a in arrows}
    motions = {obj: arrow_motion(arrow, num_frames, easing) for obj, arrow in by_object.items()}
    still = (np.zeros((num_frames, 2)), np.ones(num_frames, dtype=bool))

    paths, objects, shown = [], [], []
    for i, mask in enumerate(binary):
        starts = object_control_points(mask, points_per_object, seed, i)
        moves, visible = motions.get(i, still)
        paths.append(starts[None] + moves[:, None])
        objects.append(np.full(len(starts), i))
        shown.append(np.repeat(visible[:, None], len(starts), axis=1))
    if CAMERA in by_object:
        grid = camera_grid(width, height, points_per_object)
        moves, visible = motions[CAMERA]
        paths.append(grid[None] + moves[:, None])
        objects.append(np.full(len(grid), CAMERA))
        shown.append(np.repeat(visible[:, None], len(grid), axis=1))
    for anchor in anchors:  # exactly still, visible throughout
        paths.append(np.repeat(np.asarray(anchor.point, dtype=np.float64)[None, None], num_frames, axis=0))
        objects.append(np.array([anchor.object]))
        shown.append(np.ones((num_frames, 1), dtype=bool))
    return make_tracks(np.concatenate(paths, axis=1), np.concatenate(objects), width, height,
                       visible=np.concatenate(shown, axis=1))
