"""Control World: procedural sprite videos whose motion is known exactly.

A clip is 1-3 sprites (distinct colours, each a disc, square or triangle) on a plain or lightly textured
grey background; each sprite moves along its own path (straight, curved, or still) at constant speed along
the path's arc length, so the clip's motion is exactly what MotionKit's *Arrows to Trajectories* makes of
an arrow drawn along that path with ``easing = linear``. Everything is drawn from one seed; nothing is read
from or written to disk here. Plain numpy, no ComfyUI.

Ground truth of a clip (pixel coordinates: pixel (i, j) covers [j, j+1) x [i, i+1), as in ComfyUI's TRACKS):

- ``frames``     float32 [T, H, W, 3] in [0, 1]
- ``masks``      float32 [K, H, W] frame-0 mask of each sprite (1 inside)
- ``centers``    float64 [T, K, 2] (x, y) of each sprite's centre at every frame
- ``paths``      K polylines [[x, y], ...] (the arrow a user would draw; one point for a still sprite)
- ``colors``     float32 [K, 3]
- ``arrows_json`` MotionKit arrows JSON v1 (one arrow per moving sprite; still sprites have none, so
  Arrows to Trajectories pins them)
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

PALETTE = np.array([
    [0.92, 0.16, 0.14],   # red
    [0.12, 0.78, 0.22],   # green
    [0.16, 0.30, 0.96],   # blue
    [0.96, 0.84, 0.08],   # yellow
    [0.86, 0.16, 0.86],   # magenta
    [0.08, 0.84, 0.88],   # cyan
], dtype=np.float32)
SHAPES = ("disc", "square", "triangle")
PATH_KINDS = ("straight", "curved", "still")


@dataclass(frozen=True)
class WorldSpec:
    size: int = 64
    frames: int = 8
    max_sprites: int = 3
    radius: tuple = (6.0, 8.0)          # sprite half-size, pixels
    travel: tuple = (12.0, 24.0)        # path length of a moving sprite, pixels
    path_weights: tuple = (0.45, 0.35, 0.20)   # straight, curved, still
    texture: float = 0.04               # amplitude of the background's low-frequency texture


@dataclass
class Clip:
    seed: int
    frames: np.ndarray
    masks: np.ndarray
    centers: np.ndarray
    paths: list
    colors: np.ndarray
    shapes: list
    radii: np.ndarray
    kinds: list
    background: np.ndarray
    spec: WorldSpec = field(default_factory=WorldSpec)

    @property
    def moving(self) -> list:
        return [k for k, kind in enumerate(self.kinds) if kind != "still"]

    @property
    def arrows_json(self) -> str:
        arrows = [{"object": k, "points": [[round(float(x), 4), round(float(y), 4)] for x, y in self.paths[k]]}
                  for k in self.moving]
        return json.dumps({"version": 1, "width": self.spec.size, "height": self.spec.size, "arrows": arrows})


# --- geometry ------------------------------------------------------------------------------------------

def point_at(polyline: np.ndarray, fraction: float) -> np.ndarray:
    """The point at ``fraction`` of the polyline's arc length (constant speed along the path)."""
    if len(polyline) == 1:
        return polyline[0].astype(np.float64)
    seg = np.linalg.norm(np.diff(polyline, axis=0), axis=1)
    total = seg.sum()
    if total == 0:
        return polyline[0].astype(np.float64)
    target = fraction * total
    acc = np.concatenate([[0.0], np.cumsum(seg)])
    i = int(np.clip(np.searchsorted(acc, target, side="right") - 1, 0, len(seg) - 1))
    local = 0.0 if seg[i] == 0 else (target - acc[i]) / seg[i]
    return polyline[i] + local * (polyline[i + 1] - polyline[i])


def centers_along(polyline: np.ndarray, frames: int) -> np.ndarray:
    return np.stack([point_at(polyline, t / (frames - 1)) for t in range(frames)])


def sprite_mask(shape: str, center, radius: float, size: int, supersample: int = 4) -> np.ndarray:
    """Coverage in [0, 1] of a sprite centred at ``center`` (x, y), anti-aliased by supersampling."""
    s = supersample
    coords = (np.arange(size * s) + 0.5) / s
    xx, yy = np.meshgrid(coords, coords)
    dx, dy = xx - center[0], yy - center[1]
    if shape == "disc":
        inside = dx * dx + dy * dy <= radius * radius
    elif shape == "square":
        half = radius * 0.86
        inside = (np.abs(dx) <= half) & (np.abs(dy) <= half)
    else:  # an upward triangle inscribed in the radius
        top, base = -radius, radius * 0.6
        inside = (dy >= top) & (dy <= base) & (np.abs(dx) <= (dy - top) / (base - top) * radius * 0.95)
    return inside.reshape(size, s, size, s).mean(axis=(1, 3)).astype(np.float32)


def _path(rng: np.random.Generator, kind: str, start: np.ndarray, spec: WorldSpec, radius: float) -> np.ndarray:
    if kind == "still":
        return start[None].copy()
    length = rng.uniform(*spec.travel)
    angle = rng.uniform(0, 2 * math.pi)
    end = start + length * np.array([math.cos(angle), math.sin(angle)])
    if kind == "straight":
        return np.stack([start, end])
    normal = np.array([-math.sin(angle), math.cos(angle)])
    bend = rng.choice([-1, 1]) * rng.uniform(0.25, 0.45) * length
    ctrl = (start + end) / 2 + bend * normal
    u = np.linspace(0, 1, 7)[:, None]
    return (1 - u) ** 2 * start + 2 * u * (1 - u) * ctrl + u ** 2 * end   # a quadratic Bezier, as a polyline


def _inside(points: np.ndarray, radius: float, size: int) -> bool:
    margin = radius + 1.0
    return bool(((points >= margin) & (points <= size - margin)).all())


def _apart(a: np.ndarray, b: np.ndarray, ra: float, rb: float) -> bool:
    return bool((np.linalg.norm(a - b, axis=1) > ra + rb + 3.0).all())


def background(rng: np.random.Generator, spec: WorldSpec) -> np.ndarray:
    size = spec.size
    level = rng.uniform(0.38, 0.62)
    yy, xx = np.mgrid[0:size, 0:size] / size
    fx, fy, phase = rng.uniform(0.5, 2.0), rng.uniform(0.5, 2.0), rng.uniform(0, 2 * math.pi)
    textured = rng.random() < 0.5
    tex = spec.texture * np.sin(2 * math.pi * (fx * xx + fy * yy) + phase) if textured else 0.0 * xx
    tint = rng.uniform(-0.03, 0.03, size=3)
    return np.clip(level + tex[..., None] + tint, 0, 1).astype(np.float32)


def make_clip(seed: int, spec: WorldSpec = WorldSpec(), sprites: int | None = None) -> Clip:
    """The clip of ``seed`` (the same seed always gives the same clip)."""
    rng = np.random.default_rng(seed)
    count = sprites or int(rng.integers(1, spec.max_sprites + 1))
    colors = PALETTE[rng.choice(len(PALETTE), size=count, replace=False)]
    shapes = [SHAPES[int(i)] for i in rng.integers(0, len(SHAPES), size=count)]
    radii = rng.uniform(*spec.radius, size=count)
    kinds, paths, centers = [], [], []
    for k in range(count):
        for _ in range(200):
            kind = PATH_KINDS[int(rng.choice(3, p=np.asarray(spec.path_weights) / sum(spec.path_weights)))]
            start = rng.uniform(radii[k] + 2, spec.size - radii[k] - 2, size=2)
            path = _path(rng, kind, start, spec, radii[k])
            c = centers_along(path, spec.frames)
            if _inside(path, radii[k], spec.size) and all(_apart(c, centers[j], radii[k], radii[j]) for j in range(k)):
                break
        else:   # crowded: keep it still where it fits
            kind, path, c = "still", start[None], np.repeat(start[None], spec.frames, 0)
        kinds.append(kind)
        paths.append(path)
        centers.append(c)
    centers_arr = np.stack(centers, axis=1)                                  # [T, K, 2]
    bg = background(rng, spec)
    frames = np.repeat(bg[None], spec.frames, axis=0)
    for t in range(spec.frames):
        for k in range(count):
            cover = sprite_mask(shapes[k], centers_arr[t, k], radii[k], spec.size)[..., None]
            frames[t] = frames[t] * (1 - cover) + colors[k] * cover
    masks = np.stack([(sprite_mask(shapes[k], centers_arr[0, k], radii[k], spec.size) >= 0.5).astype(np.float32)
                      for k in range(count)])
    return Clip(seed, frames.astype(np.float32), masks, centers_arr, paths, colors, shapes, radii, kinds, bg, spec)


def ground_truth_tracks(clip: Clip, points_per_sprite: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """``(track_path [T, N, 2], object_ids [N])``: points inside each sprite's frame-0 mask moved rigidly with it."""
    rng = np.random.default_rng(clip.seed + 1)
    paths, ids = [], []
    for k in range(len(clip.kinds)):
        ys, xs = np.nonzero(clip.masks[k] > 0.5)
        pick = rng.choice(len(xs), size=min(points_per_sprite, len(xs)), replace=False)
        starts = np.stack([xs[pick] + 0.5, ys[pick] + 0.5], -1)
        paths.append(starts[None] + (clip.centers[:, k] - clip.centers[0, k])[:, None])
        ids += [k] * len(pick)
    return np.concatenate(paths, axis=1), np.asarray(ids, np.int64)
