"""Inputs for the TrackAdapter tests: synthetic clips with a known moving object, TRACKS that move a known
square, and adapters with seeded random weights (nothing is downloaded or committed)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from .pack import pack_module


def node_module():
    """The pack's nodes/trackadapter.py as ComfyUI loaded it (same classes as the registered nodes)."""
    import nodes
    return sys.modules[nodes.NODE_CLASS_MAPPINGS["MotionKitApplyTrackAdapter"].__module__]


def trainer_module():
    import importlib
    return importlib.import_module(node_module().__name__.rsplit(".", 1)[0] + "._trackadapter_train")


def pack_modules(name: str):
    """A ``modules/`` file of the pack as ComfyUI loaded it (its classes are the nodes' classes)."""
    import importlib
    return importlib.import_module(node_module().__name__.rsplit(".", 2)[0] + f".modules.{name}")


def square_tracks(frames: int, size=64, box=(12, 20, 32, 40), shift=(12.0, 0.0), grid: int = 3,
                  camera: bool = False) -> dict:
    """TRACKS (MotionKit layout) on a ``size`` (int, or (width, height)) image: one box object
    ``box`` = (x0, y0, x1, y1) whose ``grid x grid`` control points move linearly by ``shift`` pixels over
    the frames (``camera``: labelled as camera tracks instead)."""
    tracks_mod = pack_module("tracks")
    x0, y0, x1, y1 = box
    xs = np.linspace(x0 + 2.5, x1 - 2.5, grid)
    ys = np.linspace(y0 + 2.5, y1 - 2.5, grid)
    starts = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)
    frac = np.arange(frames)[:, None, None] / (frames - 1)
    path = starts[None] + frac * np.asarray(shift)[None, None]
    ids = np.zeros(len(starts), np.int64)
    if camera:
        ids[:] = -1
    width, height = (size, size) if isinstance(size, int) else size
    return tracks_mod.make_tracks(path, ids, width, height)


def moving_disc_clip(path: Path, frames: int = 4, size: int = 64, shift: float = 3.0, seed: int = 0) -> Path:
    """A clip file: a bright disc moving right by ``shift`` px per frame over a textured background, its
    frame-0 mask and 9 tracks on it."""
    clips = pack_module("trackadapter_clips")
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    background = np.stack([xx / size, yy / size, 0.5 + 0.2 * np.sin(xx / 5)], -1)
    background += 0.05 * rng.standard_normal(background.shape)
    center, radius = np.array([0.3 * size, 0.5 * size]), 0.15 * size
    video = []
    for t in range(frames):
        c = center + [shift * t, 0.0]
        disc = (xx - c[0]) ** 2 + (yy - c[1]) ** 2 < radius ** 2
        frame = background.copy()
        frame[disc] = [1.0, 0.85, 0.2]
        video.append(frame)
    offsets = np.stack(np.meshgrid([-4.0, 0.0, 4.0], [-4.0, 0.0, 4.0]), -1).reshape(-1, 2)
    starts = center[None] + offsets
    track_path = starts[None] + np.arange(frames)[:, None, None] * np.array([shift, 0.0])
    mask = ((xx - center[0]) ** 2 + (yy - center[1]) ** 2 < radius ** 2)[None]
    return clips.write_clip(path, np.clip(np.stack(video), 0, 1).astype(np.float32), track_path,
                            np.ones(track_path.shape[:2], bool), np.zeros(9, np.int64), mask)


def random_adapter(model, seed: int = 0, encoder_channels=(4, 8, 8), feature_channels: int = 8, scale: float = 0.5):
    """An adapter for ``model`` whose every weight is seeded random (W_f too, so the branch is active)."""
    trackadapter = pack_modules("trackadapter")
    specs = node_module().layer_specs(model)
    config = trackadapter.AdapterConfig(layers=tuple(specs), encoder_channels=encoder_channels,
                                        feature_channels=feature_channels)
    adapter = trackadapter.TrackAdapter(config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in adapter.parameters():
            fan_in = p[0].numel() if p.ndim > 1 else 1
            p.copy_(scale * torch.randn(p.shape, generator=gen) / fan_in ** 0.5)
    return adapter.eval().requires_grad_(False)


def arrows_json(size: int = 64, start=(22.0, 32.0), shift=(12.0, -4.0)) -> str:
    return json.dumps({"version": 1, "width": size, "height": size,
                       "arrows": [{"object": 0, "points": [list(start), [start[0] + shift[0], start[1] + shift[1]]]}]})
