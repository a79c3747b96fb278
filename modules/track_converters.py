"""TRACKS to the control inputs of the trajectory methods: TrackGo maps, Puppet-Master drags, Motion-I2V
sparse flow. Every converter takes a validated :class:`~.tracks.TrackSet` in pixels of its output size.

MOTIONKIT_DRAGS (version 1), Puppet-Master's drag tensor (arXiv 2408.04631; the input of
``UNetDragSpatioTemporalConditionModel._convert_drag_to_concatting_image`` in RuiningLi/puppet-master)::

    {"version": 1,
     "drags":  torch.float32 [F, K, 4],  # (x_src, y_src, x_tgt_f, y_tgt_f), x = column / W, y = row / H
     "object": torch.int64 [K],          # object id of each drag
     "track":  torch.int64 [K],          # index of the chosen track in the TRACKS
     "width": W, "height": H}

``F`` is the number of frames (frame 0: target = source), ``K <= 5`` (the model was trained with 5 drags;
a consumer pads with all-zero drags, which the official code treats as absent). One drag per object, in
object order: the object's track whose start lies nearest the centroid of the object's track starts
(for TrackGo tracks, k-means spreads those evenly over the mask, so this is near the mask's centroid and
is a point that actually lies on the object). Camera tracks are not drags. Values are clipped to [0, 1],
as the model's cells are.

MOTIONKIT_SPARSE_FLOW (version 1), Motion-I2V's sparse-trajectory control (G-U-N/Motion-I2V
``scripts/app.py``, ``Drag.run``)::

    {"version": 1,
     "flow": torch.float32 [F-1, H, W, 2],  # (dx, dy) in pixels for future frames 1..F-1
     "mask": torch.float32 [F-1, H, W],     # 1 where flow is given
     "radius": r, "width": W, "height": H}

For future frame ``i`` (1-based) and each track with start ``(sx, sy)``, the block of rows
``[floor(sy) - r, floor(sy) + r)`` and columns ``[floor(sx) - r, floor(sx) + r)`` (clipped at the image
border, as the official slices are) holds ``path[i] - path[0]``; later tracks overwrite earlier ones.
:func:`motion_i2v_inputs` gives the two tensors the official ``forward_sample`` receives.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .track_drawing import Progress
from .tracks import CAMERA, TrackInputError, TrackSet

DRAGS_VERSION = 1
SPARSE_FLOW_VERSION = 1
MAX_DRAGS = 5


def choose_drag_tracks(ts: TrackSet) -> tuple[np.ndarray, np.ndarray]:
    """``(track indices, object ids)``: per object, the track whose start is nearest the object's
    centroid of starts (ties: the lower index)."""
    objects = [o for o in np.unique(ts.object) if o != CAMERA]
    chosen = []
    for obj in objects:
        members = np.flatnonzero(ts.object == obj)
        starts = ts.path[0, members]
        distance = np.linalg.norm(starts - starts.mean(0), axis=1)
        chosen.append(members[int(distance.argmin())])
    return np.asarray(chosen, dtype=np.int64), np.asarray(objects, dtype=np.int64)


def drags(ts: TrackSet) -> dict:
    """Puppet-Master drags (see the module docstring)."""
    tracks, objects = choose_drag_tracks(ts)
    if len(tracks) == 0:
        raise TrackInputError("tracks", "these TRACKS hold only camera tracks; Puppet-Master drags move objects.",
                              "give Arrows to Trajectories an object mask and an arrow for it.")
    if len(tracks) > MAX_DRAGS:
        raise TrackInputError(
            "tracks", f"these TRACKS move {len(tracks)} objects; Puppet-Master takes at most {MAX_DRAGS} drags.",
            f"use at most {MAX_DRAGS} masks in Arrows to Trajectories (one drag per object).")
    size = np.array([ts.width, ts.height], dtype=np.float64)
    source = ts.path[0, tracks] / size                    # [K, 2]
    target = ts.path[:, tracks] / size                    # [F, K, 2]
    out = np.concatenate([np.broadcast_to(source, target.shape), target], axis=-1)
    return {
        "version": DRAGS_VERSION,
        "drags": torch.from_numpy(np.clip(out, 0.0, 1.0).astype(np.float32)),
        "object": torch.from_numpy(objects),
        "track": torch.from_numpy(tracks),
        "width": ts.width,
        "height": ts.height,
    }


def sparse_flow(ts: TrackSet, radius: int, progress: Progress = None) -> dict:
    """Motion-I2V sparse flow and mask (see the module docstring)."""
    if ts.num_frames < 2:
        raise TrackInputError("tracks", "these TRACKS have 1 frame; sparse flow needs future frames.",
                              "build the tracks with num_frames >= 2.")
    height, width = ts.height, ts.width
    flow = np.zeros((ts.num_frames - 1, height, width, 2), dtype=np.float32)
    mask = np.zeros((ts.num_frames - 1, height, width), dtype=np.float32)
    for n in range(ts.num_tracks):
        sx, sy = ts.path[0, n]
        cx, cy = math.floor(sx), math.floor(sy)
        rows = slice(max(cy - radius, 0), max(cy + radius, 0))
        cols = slice(max(cx - radius, 0), max(cx + radius, 0))
        moved = (ts.path[1:, n] - ts.path[0, n]).astype(np.float32)   # [F-1, 2]
        flow[:, rows, cols, :] = moved[:, None, None, :]
        mask[:, rows, cols] = 1.0
        if progress:
            progress(n)
    return {"version": SPARSE_FLOW_VERSION, "flow": torch.from_numpy(flow), "mask": torch.from_numpy(mask),
            "radius": int(radius), "width": width, "height": height}


def motion_i2v_inputs(sparse: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_drag [F-1, H, W, 2], mask_drag [F-1, H, W, 1])`` as Motion-I2V's app hands them to
    ``forward_sample`` without a motion brush: flow divided by (W, H), then mapped to [0, 1] by ``(x+1)/2``."""
    flow, mask = sparse["flow"], sparse["mask"]
    scale = torch.tensor([sparse["width"], sparse["height"]], dtype=flow.dtype)
    return (flow / scale + 1.0) / 2.0, mask[..., None]
