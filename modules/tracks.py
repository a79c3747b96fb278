"""TRACKS: point trajectories in pixels, the interchange format of MotionKit's trajectory nodes.

The dict is ComfyUI's own ``TRACKS`` (core ``WanMoveTracksFromCoords`` / ``GenerateTracks`` /
``WanMoveVisualizeTracks`` in ComfyUI builds newer than v0.3.64, KJNodes' track utilities), plus one
key of MotionKit extras that other consumers ignore::

    {
      "track_path":       torch.float32 [T, N, 2]   # (x, y) of track n at frame t, in pixels
      "track_visibility": torch.bool    [T, N]      # False where the point is hidden (ours: outside the image,
                                                    # or outside its arrow's frames with "visible": "range")
      "motionkit": {                                # optional; absent in core / KJNodes TRACKS
          "version": 1,                             # TRACKS_EXTRAS_VERSION; a reader rejects a newer one
          "width":  int,                            # size of the image the pixels refer to
          "height": int,
          "object": torch.int64 [N],                # mask index of each track's object; -1 = camera (whole image)
      },
    }

Pixel convention (the same as core, KJNodes and Puppet-Master's cells): pixel ``(row i, column j)``
covers ``[j, j+1) x [i, i+1)``, so its centre is ``(j + 0.5, i + 0.5)`` and the image spans
``[0, width] x [0, height]``. Frame 0 holds each track's start position.

Readers accept TRACKS without the extras (core and KJNodes layouts, also a ``[1, T, N, 2]`` batch of one):
then every track is its own object and the image size must come from elsewhere (a ``width``/``height``
input). :func:`read_tracks` is the one place that validates a TRACKS value.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch

TRACKS_EXTRAS_VERSION = 1
EXTRAS_KEY = "motionkit"
CAMERA = -1  # object id of camera (whole-image) tracks


class TrackInputError(ValueError):
    """Bad user input found by a module function; the node turns it into a MotionKitInputError."""

    def __init__(self, input_name: str, problem: str, fix: str):
        self.input_name, self.problem, self.fix = input_name, problem, fix
        super().__init__(f"input '{input_name}': {problem} Fix: {fix}")


@dataclass(frozen=True)
class TrackSet:
    """A validated TRACKS value as numpy arrays (float64 for the geometry that follows)."""
    path: np.ndarray           # [T, N, 2] float64, pixels
    visible: np.ndarray        # [T, N] bool
    object: np.ndarray         # [N] int64; -1 = camera
    width: Optional[int]       # None when the TRACKS carry no image size (core / KJNodes layout)
    height: Optional[int]

    @property
    def num_frames(self) -> int:
        return self.path.shape[0]

    @property
    def num_tracks(self) -> int:
        return self.path.shape[1]

    def sized(self, width: int, height: int, input_name: str = "width") -> "TrackSet":
        """This set in pixels of ``width x height``: scaled from its own size, or taken to be in that size
        when it carries none. ``0`` keeps the set's own size."""
        width, height = int(width or 0), int(height or 0)
        if (width == 0) != (height == 0):
            raise TrackInputError(input_name, f"width {width} and height {height}: set both or neither.",
                                  "set both to 0 (use the size stored in the TRACKS) or both to the size you want.")
        if width == 0:
            if self.width is None:
                raise TrackInputError(
                    input_name, "these TRACKS carry no image size (core / KJNodes TRACKS have none).",
                    "set width and height to the size of the image the track pixels refer to.")
            return self
        if self.width is None:
            return TrackSet(self.path, self.visible, self.object, width, height)
        scale = np.array([width / self.width, height / self.height])
        return TrackSet(self.path * scale, self.visible, self.object, width, height)


def make_tracks(path: np.ndarray, object_ids: np.ndarray, width: int, height: int,
                visible: Optional[np.ndarray] = None) -> dict:
    """The TRACKS dict for float64 ``path`` [T, N, 2]; visibility is "inside the image" (of the stored
    float32 path), and ``visible`` [T, N] where given."""
    path32 = torch.from_numpy(np.ascontiguousarray(path, dtype=np.float32))
    shown = inside_image(path32.numpy(), width, height)
    if visible is not None:
        shown = shown & np.asarray(visible, dtype=bool)
    return {
        "track_path": path32,
        "track_visibility": torch.from_numpy(shown),
        EXTRAS_KEY: {
            "version": TRACKS_EXTRAS_VERSION,
            "width": int(width),
            "height": int(height),
            "object": torch.as_tensor(np.asarray(object_ids, dtype=np.int64)),
        },
    }


def inside_image(path: np.ndarray, width: float, height: float) -> np.ndarray:
    x, y = path[..., 0], path[..., 1]
    return (x >= 0) & (x < width) & (y >= 0) & (y < height)


def _as_array(value: Any, name: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except Exception:  # ragged lists and the like
        raise TrackInputError("tracks", f"'{name}' is not an array ({type(value).__name__}).",
                              "connect TRACKS from Arrows to Trajectories, core GenerateTracks or KJNodes.")


def read_tracks(tracks: Any, input_name: str = "tracks") -> TrackSet:
    """Validate a TRACKS value (MotionKit, core or KJNodes layout) into a :class:`TrackSet`."""
    fix = "connect the TRACKS output of Arrows to Trajectories, core GenerateTracks or KJNodes track nodes."
    if not isinstance(tracks, dict) or "track_path" not in tracks:
        raise TrackInputError(input_name, f"expected a TRACKS dict with 'track_path', got {type(tracks).__name__}.", fix)
    path = _as_array(tracks["track_path"], "track_path")
    if path.ndim == 4 and path.shape[0] == 1:  # a batch of one, as some visualisers pass it
        path = path[0]
    if path.ndim != 3 or path.shape[-1] != 2 or path.shape[0] < 1 or path.shape[1] < 1:
        raise TrackInputError(input_name, f"track_path has shape {tuple(path.shape)}; expected [frames, tracks, 2].", fix)
    if not np.issubdtype(path.dtype, np.number) or not np.isfinite(path.astype(np.float64)).all():
        raise TrackInputError(input_name, "track_path holds non-numbers, NaN or infinity.", fix)
    path = path.astype(np.float64)
    frames, n = path.shape[:2]

    visible = tracks.get("track_visibility")
    if visible is None:
        visible = np.ones((frames, n), dtype=bool)
    else:
        visible = _as_array(visible, "track_visibility")
        if visible.ndim == 3 and visible.shape[0] == 1:
            visible = visible[0]
        if visible.shape == (frames, 1) and n > 1:  # core's mask-derived visibility is per frame
            visible = np.repeat(visible, n, axis=1)
        if visible.shape != (frames, n):
            raise TrackInputError(input_name, f"track_visibility has shape {tuple(visible.shape)}; "
                                  f"expected [{frames}, {n}] to match track_path.", fix)
        visible = visible.astype(bool)

    extras = tracks.get(EXTRAS_KEY)
    if extras is None:
        return TrackSet(path, visible, np.arange(n, dtype=np.int64), None, None)
    if not isinstance(extras, dict) or not isinstance(extras.get("version"), int):
        raise TrackInputError(input_name, f"the '{EXTRAS_KEY}' extras are malformed (no version).", fix)
    if extras["version"] > TRACKS_EXTRAS_VERSION:
        raise TrackInputError(input_name, f"these TRACKS use MotionKit extras version {extras['version']}, newer "
                              f"than this MotionKit reads ({TRACKS_EXTRAS_VERSION}).", "update MotionKit.")
    width, height = extras.get("width"), extras.get("height")
    if not (isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
        raise TrackInputError(input_name, f"the extras' image size {width}x{height} is not two positive integers.", fix)
    objects = _as_array(extras.get("object", np.arange(n)), "object").astype(np.int64).reshape(-1)
    if objects.shape != (n,):
        raise TrackInputError(input_name, f"the extras name {objects.shape[0]} objects for {n} tracks.", fix)
    return TrackSet(path, visible, objects, width, height)


def tracks_to_coordinates(ts: TrackSet, decimals: int = 3) -> str:
    """KJNodes / core ``WanTrackToVideo`` coordinate string: one ``[{"x":..,"y":..}, ...]`` list per track,
    one point per frame (core's parser pads or cuts each track to its 121-point clip length)."""
    tracks = [[{"x": round(float(x), decimals), "y": round(float(y), decimals)} for x, y in ts.path[:, n]]
              for n in range(ts.num_tracks)]
    return json.dumps(tracks)
