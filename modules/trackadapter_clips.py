"""Training clips for the TrackAdapter trainer (``scripts/train_trackadapter.py``): one safetensors file per clip.

Clip format ``motionkit.trackgo_clip``, version 1 (TrackGo's training triplets: video, point trajectories,
first-frame masks of the moving components; the paper segments with DEVA, picks control points per mask with
k-means and tracks them with Co-Tracker)::

    tensors
      frames            uint8 [T, H, W, 3] (or float32 in [0, 1])   the video, RGB
      track_path        float32 [T, N, 2]     (x, y) of track n at frame t, pixels of the frames
                                              (pixel (i, j) covers [j, j+1) x [i, i+1), as in TRACKS)
      track_visibility  bool [T, N]           False where the point is hidden
      object_ids        int64 [N]             index into ``masks`` of each track's component; -1 = camera
      masks             uint8 / bool [K, H, W] frame-0 mask of each moving component (> 0.5 is inside)
    metadata (strings)
      format            "motionkit.trackgo_clip"
      format_version    "1"
      fps               optional, SVD's fps conditioning (default 6)
      motion_bucket_id  optional, SVD's motion bucket (default 127)

All frames of all clips of one training run are resized to the run's ``--width x --height`` (tracks and masks
with them); the frame count T must be the same for every clip of a run.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .tracks import CAMERA, TrackSet

CLIP_FORMAT = "motionkit.trackgo_clip"
CLIP_VERSION = 1
DEFAULT_FPS = 6
DEFAULT_MOTION_BUCKET = 127


class ClipFormatError(ValueError):
    def __init__(self, path, problem: str):
        self.path, self.problem = str(path), problem
        super().__init__(f"training clip {path}: {problem} (see modules/trackadapter_clips.py for the format)")


@dataclass
class Clip:
    name: str
    frames: torch.Tensor      # [T, H, W, 3] float32 in [0, 1]
    tracks: TrackSet          # pixels of the frames
    masks: torch.Tensor       # [K, H, W] float32 in {0, 1}, frame-0 masks indexed by object id
    fps: int = DEFAULT_FPS
    motion_bucket_id: int = DEFAULT_MOTION_BUCKET

    @property
    def num_frames(self) -> int:
        return self.frames.shape[0]


def write_clip(path, frames, track_path, track_visibility, object_ids, masks, fps: int = DEFAULT_FPS,
               motion_bucket_id: int = DEFAULT_MOTION_BUCKET) -> Path:
    """Write one clip (see the module docstring); ``frames`` float in [0, 1] are stored as uint8."""
    from safetensors.torch import save_file
    frames = torch.as_tensor(frames)
    if frames.is_floating_point():
        frames = (frames.clamp(0, 1) * 255).round().to(torch.uint8)
    tensors = {
        "frames": frames.contiguous(),
        "track_path": torch.as_tensor(np.asarray(track_path), dtype=torch.float32).contiguous(),
        "track_visibility": torch.as_tensor(np.asarray(track_visibility)).bool().contiguous(),
        "object_ids": torch.as_tensor(np.asarray(object_ids), dtype=torch.int64).contiguous(),
        "masks": (torch.as_tensor(masks) > 0.5).to(torch.uint8).contiguous(),
    }
    save_file(tensors, str(path), metadata={"format": CLIP_FORMAT, "format_version": str(CLIP_VERSION),
                                            "fps": str(int(fps)), "motion_bucket_id": str(int(motion_bucket_id))})
    return Path(path)


def read_clip(path) -> Clip:
    """Load and validate one clip file."""
    from safetensors import safe_open
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise ClipFormatError(path, f"not a readable safetensors file ({type(e).__name__}: {e}).") from None
    if meta.get("format") != CLIP_FORMAT:
        raise ClipFormatError(path, f"metadata 'format' is {meta.get('format')!r}, expected {CLIP_FORMAT!r}.")
    if meta.get("format_version") != str(CLIP_VERSION):
        raise ClipFormatError(path, f"format_version {meta.get('format_version')!r}; this MotionKit reads "
                                    f"{CLIP_VERSION}.")
    missing = [k for k in ("frames", "track_path", "track_visibility", "object_ids", "masks") if k not in tensors]
    if missing:
        raise ClipFormatError(path, f"missing tensors {missing}.")
    frames = tensors["frames"]
    frames = frames.float() / 255.0 if frames.dtype == torch.uint8 else frames.float()
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 2:
        raise ClipFormatError(path, f"'frames' is {list(frames.shape)}; expected [T >= 2, H, W, 3].")
    frames_n, height, width = frames.shape[:3]
    track_path = tensors["track_path"].double().numpy()
    if track_path.ndim != 3 or track_path.shape[0] != frames_n or track_path.shape[2] != 2 or track_path.shape[1] < 1:
        raise ClipFormatError(path, f"'track_path' is {list(track_path.shape)}; expected [{frames_n}, N >= 1, 2].")
    if not np.isfinite(track_path).all():
        raise ClipFormatError(path, "'track_path' has NaN or infinite values.")
    visible = tensors["track_visibility"].bool().numpy()
    if visible.shape != track_path.shape[:2]:
        raise ClipFormatError(path, f"'track_visibility' is {list(visible.shape)}; expected "
                                    f"{list(track_path.shape[:2])}.")
    ids = tensors["object_ids"].long().reshape(-1).numpy()
    masks = tensors["masks"].float()
    if masks.ndim != 3 or tuple(masks.shape[1:]) != (height, width):
        raise ClipFormatError(path, f"'masks' is {list(masks.shape)}; expected [K, {height}, {width}].")
    if ids.shape != (track_path.shape[1],) or ((ids != CAMERA) & ((ids < 0) | (ids >= masks.shape[0]))).any():
        raise ClipFormatError(path, f"'object_ids' must hold one id per track in [-1, {masks.shape[0] - 1}].")
    try:
        fps = int(meta.get("fps", DEFAULT_FPS))
        bucket = int(meta.get("motion_bucket_id", DEFAULT_MOTION_BUCKET))
    except ValueError:
        raise ClipFormatError(path, "metadata 'fps' and 'motion_bucket_id' must be integers.") from None
    tracks = TrackSet(track_path, visible, ids, width, height)
    return Clip(path.stem, frames, tracks, (masks > 0.5).float(), fps, bucket)


def resize_clip(clip: Clip, width: int, height: int) -> Clip:
    """The clip at ``width x height`` (bilinear frames, area masks thresholded at 0.5, tracks scaled)."""
    if (clip.frames.shape[2], clip.frames.shape[1]) == (width, height):
        return clip
    import torch.nn.functional as F
    frames = F.interpolate(clip.frames.permute(0, 3, 1, 2), size=(height, width), mode="bilinear",
                           align_corners=False, antialias=True).permute(0, 2, 3, 1).clamp(0, 1)
    masks = F.interpolate(clip.masks[:, None], size=(height, width), mode="area")[:, 0] if len(clip.masks) else \
        torch.zeros(0, height, width)
    return Clip(clip.name, frames.contiguous(), clip.tracks.sized(width, height), (masks > 0.5).float(),
                clip.fps, clip.motion_bucket_id)
