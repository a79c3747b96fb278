"""Arrows to Trajectories (TrackGo) and the trajectory toolkit: thin nodes over ``modules/``.

Socket types: ``TRACKS`` is ComfyUI's own type name (see ``modules/tracks.py`` for the dict), so these
nodes link with core and KJNodes track nodes; ``MOTIONKIT_DRAGS`` and ``MOTIONKIT_SPARSE_FLOW`` are
MotionKit's (see ``modules/track_converters.py``).

The arrow editor (``web/js/arrow_editor.js``) gets the image and the masks from this node's last run:
Arrows to Trajectories returns them as its UI output (``ui.motionkit_arrows``: PNGs in ComfyUI's temp
folder, the size in pixels, and each track's start and end), which the frontend hands to the node's
``onExecuted``. It also shows the last output of the node wired into ``masks`` when that node sends
``motionkit_masks`` (Click to Mask does, see ``nodes/click_to_mask.py``), so the masks appear as soon as
Click to Mask has run. Before any run the editor shows the image of an upstream Load Image node.
"""
from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from typing import Optional

import numpy as np
import torch
from PIL import Image

import comfy.model_management
import comfy.utils
import folder_paths

from ..modules.arrows import DEFAULT_ARROWS, EASINGS, parse_motion
from ..modules.track_converters import drags, sparse_flow
from ..modules.track_drawing import BACKGROUND, object_color, object_hex, tint_masks, track_maps, visualize
from ..modules.trackgo import arrows_to_tracks, binary_masks
from ..modules.tracks import TrackInputError, read_tracks, tracks_to_coordinates
from ._comfy import MotionKitInputError

EDITOR_UI_KEY = "motionkit_arrows"
EDITOR_UI_VERSION = 1
EDITOR_PREVIEW_MAX = 1024  # longest side of the images sent to the editor
TRACKS_TOOLTIP = "TRACKS from Arrows to Trajectories, or core / KJNodes track nodes."
SIZE_TOOLTIP = ("Output size in pixels; 0 = the image size stored in the TRACKS. Tracks without a stored size "
                "(core / KJNodes) are taken to be in pixels of this size.")


@contextmanager
def user_errors(node: str):
    """Module-level input errors become MotionKitInputErrors that name the node."""
    try:
        yield
    except TrackInputError as e:
        raise MotionKitInputError(node, e.input_name, e.problem, e.fix) from None


def frame_progress(total: int):
    """Per-frame callback: ComfyUI's progress bar and its interrupt check."""
    bar = comfy.utils.ProgressBar(total)

    def step(_index: int) -> None:
        comfy.model_management.throw_exception_if_processing_interrupted()
        bar.update(1)
    return step


def masks_array(node: str, masks) -> np.ndarray:
    """``[objects, H, W]`` float32 from any MASK batch: ``[H, W]``, ``[B, H, W]`` (core, SAM3_Detect,
    SAM3_TrackToMask), ``[B, 1, H, W]``; float, half or bool, on any device."""
    shape = tuple(masks.shape) if isinstance(masks, torch.Tensor) else type(masks).__name__
    if isinstance(masks, torch.Tensor) and masks.ndim == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if not isinstance(masks, torch.Tensor) or masks.ndim not in (2, 3) or masks.numel() == 0:
        empty = isinstance(masks, torch.Tensor) and masks.numel() == 0
        raise MotionKitInputError(
            node, "masks", f"expected a MASK batch [objects, height, width], got {shape}"
            + (" (no masks: a detector that found nothing gives an empty batch)." if empty else "."),
            "connect the MASK output of Click to Mask (or any mask node) holding one mask per object.")
    masks = masks.detach().cpu().float()
    return (masks[None] if masks.ndim == 2 else masks).numpy()


def image_array(node: str, image, name: str = "image") -> Optional[np.ndarray]:
    if image is None:
        return None
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[-1] not in (1, 3, 4):
        raise MotionKitInputError(node, name, f"expected an IMAGE batch [frames, height, width, channels], got "
                                  f"{getattr(image, 'shape', type(image).__name__)}.", "connect an IMAGE output.")
    image = image.detach().float().cpu()[..., :3]
    return (image.expand(*image.shape[:3], 3) if image.shape[-1] == 1 else image).numpy()


def to_image(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32)).clamp_(0.0, 1.0)


def preview_sizes(height: int, width: int) -> tuple[int, int]:
    """Line width and dot radius that read well at this image size."""
    short = min(height, width)
    return max(1, round(short / 150)), max(2, round(short / 100))


def save_editor_images(background: Optional[np.ndarray], masks: np.ndarray) -> tuple[Optional[dict], list[dict]]:
    """The image and one tinted RGBA PNG per mask in ComfyUI's temp folder, at most EDITOR_PREVIEW_MAX wide."""
    subfolder = "motionkit"
    folder = os.path.join(folder_paths.get_temp_directory(), subfolder)
    os.makedirs(folder, exist_ok=True)
    token = uuid.uuid4().hex[:12]
    height, width = masks.shape[1:]
    scale = min(1.0, EDITOR_PREVIEW_MAX / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))

    def save(img: Image.Image, name: str) -> dict:
        if img.size != size:
            img = img.resize(size, Image.NEAREST if img.mode == "RGBA" else Image.BILINEAR)
        img.save(os.path.join(folder, name), compress_level=1)
        return {"filename": name, "subfolder": subfolder, "type": "temp"}

    bg = None
    if background is not None:
        bg = save(Image.fromarray((np.clip(background, 0, 1) * 255).round().astype(np.uint8)), f"arrows_{token}_image.png")
    refs = []
    for i, mask in enumerate(masks):
        rgba = np.zeros((height, width, 4), dtype=np.uint8)
        rgba[..., :3] = np.round(object_color(i) * 255).astype(np.uint8)
        rgba[..., 3] = mask.astype(np.uint8) * 255
        refs.append({**save(Image.fromarray(rgba, "RGBA"), f"arrows_{token}_mask{i}.png"),
                     "object": i, "color": object_hex(i)})
    return bg, refs


class MotionKitArrowsToTracks:
    NODE = "Arrows to Trajectories (MotionKitArrowsToTracks)"
    DESCRIPTION = (
        "TrackGo's point trajectories from object masks and arrows. Draw the arrows in the editor on the node "
        "(it shows the image and the masks, tinted per object, from the node's last run, or from Click to Mask's "
        "last run upstream): pick an object, drag from where it starts to where it should end; drag a point to "
        "bend or move the arrow, double-click a segment to add a point, right-click a point to remove it, R "
        "reverses and Delete removes the selected arrow. Ticks show each frame's position for the chosen "
        "easing. For each mask, many points are sampled uniformly inside it and reduced with seeded k-means to "
        "points_per_object control points; each moves "
        "along its object's arrow (frame t: the arrow point at arc-length fraction easing(t/(num_frames-1))). "
        "Objects without an arrow stay pinned. A 'camera' arrow moves a grid over the whole image. 'arrows' is "
        "JSON {\"version\":1,\"width\":W,\"height\":H,\"arrows\":[{\"object\":0,\"points\":[[x,y],...]}]} in "
        "pixels; version 2 adds per arrow optional \"start_frame\"/\"end_frame\" (inclusive; still before and after), "
        "\"easing\", \"visible\" (\"always\" or \"range\": hidden outside the frames), points [x,y,frame] reached "
        "exactly at that frame, and \"anchors\":[{\"object\":index or null,\"point\":[x,y]}] that stay still for the "
        "whole video (null: background, e.g. 'hold camera' around the border; anchors are tracks after the "
        "others). A KJNodes Spline Editor coordinate string also works (track i moves mask i). Any MASK batch "
        "works (also from core SAM3 nodes): each mask of the batch is one object.")
    CATEGORY = "MotionKit"
    RETURN_TYPES = ("TRACKS", "IMAGE")
    RETURN_NAMES = ("tracks", "preview")
    OUTPUT_TOOLTIPS = ("Point trajectories in pixels (ComfyUI TRACKS, plus object ids and the image size).",
                       "The tracks drawn over the image, one colour per object, one frame per video frame.")
    FUNCTION = "build"
    # An output node runs (and re-sends its UI output to the editor, also from cache) even when nothing is
    # wired to it yet: queue once to see the image and masks, then draw.
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "masks": ("MASK", {"tooltip": "One mask per object, as a batch (Click to Mask makes one; any "
                                              "MASK batch works, e.g. core SAM3 Detect with individual_masks). "
                                              "Object i of the arrows is mask i."}),
                "arrows": ("STRING", {"default": DEFAULT_ARROWS, "multiline": False,
                                      "tooltip": "Arrows JSON (version 1 or 2, see modules/arrows.py) written by the "
                                                 "editor (hidden), or a KJNodes Spline Editor coordinate string "
                                                 "when linked."}),
                "num_frames": ("INT", {"default": 14, "min": 2, "max": 1024,
                                       "tooltip": "Frames of the trajectory (SVD: 14, SVD-XT: 25)."}),
                "points_per_object": ("INT", {"default": 8, "min": 1, "max": 256,
                                              "tooltip": "Control points (tracks) per object, chosen by k-means."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF,
                                 "tooltip": "Seed of the point sampling and k-means; same seed, same tracks."}),
                "easing": (list(EASINGS), {"default": "linear",
                                           "tooltip": "Speed along the arrow over time (core GenerateTracks' curves); "
                                                      "an arrow's own \"easing\" (version 2) replaces it."}),
            },
            "optional": {
                "image": ("IMAGE", {"tooltip": "The image the masks belong to; shown behind the editor and the "
                                               "preview. Must be the masks' size."}),
            },
        }

    def build(self, masks, arrows, num_frames, points_per_object, seed, easing, image=None):
        node = self.NODE
        mask_np = masks_array(node, masks)
        image_np = image_array(node, image)
        height, width = mask_np.shape[1:]
        if image_np is not None and image_np.shape[1:3] != (height, width):
            raise MotionKitInputError(
                node, "image", f"the image is {image_np.shape[2]}x{image_np.shape[1]} but the masks are "
                f"{width}x{height}.", "make the masks from this image (or resize both to the same size).")
        with user_errors(node):
            binary = binary_masks(mask_np)
            motion = parse_motion(arrows, len(binary), width, height)
            tracks = arrows_to_tracks(binary, motion.arrows, int(num_frames), int(points_per_object), int(seed),
                                      easing, anchors=motion.anchors)
            ts = read_tracks(tracks)
        background = image_np[0] if image_np is not None else tint_masks(
            np.full((height, width, 3), BACKGROUND, dtype=np.float32), binary)
        line_width, radius = preview_sizes(height, width)
        preview = visualize(ts, background[None], line_width, radius, frame_progress(ts.num_frames))

        bg_ref, mask_refs = save_editor_images(image_np[0] if image_np is not None else None, binary)
        ui = {
            "version": EDITOR_UI_VERSION, "width": width, "height": height,
            "background": bg_ref, "masks": mask_refs,
            "tracks": {"object": ts.object.tolist(),
                       "start": np.round(ts.path[0], 3).tolist(),
                       "end": np.round(ts.path[-1], 3).tolist()},
        }
        return {"ui": {EDITOR_UI_KEY: [ui]}, "result": (tracks, to_image(preview))}


class MotionKitVisualizeTracks:
    NODE = "Visualize Tracks (MotionKitVisualizeTracks)"
    DESCRIPTION = ("Draws any TRACKS as video frames: each track's trail so far and a dot at its current position, "
                   "one colour per object (camera tracks white), over the image (one image, or a video with one "
                   "frame per track frame) or grey. Tracks are scaled to the image's size.")
    CATEGORY = "MotionKit"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    FUNCTION = "draw"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "tracks": ("TRACKS", {"tooltip": TRACKS_TOOLTIP}),
                "line_width": ("INT", {"default": 3, "min": 1, "max": 128, "tooltip": "Trail width in pixels."}),
                "point_radius": ("INT", {"default": 4, "min": 0, "max": 128,
                                         "tooltip": "Radius of the dot at each track's position (0: none)."}),
            },
            "optional": {
                "image": ("IMAGE", {"tooltip": "Background: one image, or a video with as many frames as the tracks."}),
            },
        }

    def draw(self, tracks, line_width, point_radius, image=None):
        node = self.NODE
        image_np = image_array(node, image)
        with user_errors(node):
            ts = read_tracks(tracks)
            if image_np is not None:
                if len(image_np) not in (1, ts.num_frames):
                    raise TrackInputError("image", f"the image batch has {len(image_np)} frames but the tracks have "
                                          f"{ts.num_frames}.", "connect one image, or a video of as many frames.")
                ts = ts.sized(image_np.shape[2], image_np.shape[1], "image")
            else:
                ts = ts.sized(0, 0, "image")
        frames = visualize(ts, image_np, line_width, point_radius, frame_progress(ts.num_frames))
        return (to_image(frames),)


class MotionKitTracksToTrackMaps:
    NODE = "Tracks to Track Maps (MotionKitTracksToTrackMaps)"
    DESCRIPTION = ("TrackGo's point-trajectory maps, the input of a TrackAdapter encoder: one image per frame on "
                   "black, where each track is drawn from its start along its path to its position at that frame, "
                   "line_width wide, in its object's colour (MotionKit's fixed palette; camera tracks white).")
    CATEGORY = "MotionKit"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("track_maps",)
    FUNCTION = "convert"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "tracks": ("TRACKS", {"tooltip": TRACKS_TOOLTIP}),
            "line_width": ("INT", {"default": 4, "min": 1, "max": 256, "tooltip": "Line width in output pixels."}),
            "width": ("INT", {"default": 0, "min": 0, "max": 16384, "tooltip": SIZE_TOOLTIP}),
            "height": ("INT", {"default": 0, "min": 0, "max": 16384, "tooltip": SIZE_TOOLTIP}),
        }}

    def convert(self, tracks, line_width, width, height):
        with user_errors(self.NODE):
            ts = read_tracks(tracks).sized(width, height)
        return (to_image(track_maps(ts, line_width, frame_progress(ts.num_frames))),)


class MotionKitTracksToDrags:
    NODE = "Tracks to Drags (MotionKitTracksToDrags)"
    DESCRIPTION = ("Puppet-Master's drag tensor (frames, K<=5, 4) of (x_src, y_src, x_tgt, y_tgt) normalised to "
                   "[0, 1]: one drag per object, the object's track whose start is nearest the centroid of its "
                   "tracks' starts. Camera tracks are not drags; more than 5 objects is an error.")
    CATEGORY = "MotionKit"
    RETURN_TYPES = ("MOTIONKIT_DRAGS",)
    RETURN_NAMES = ("drags",)
    FUNCTION = "convert"

    @classmethod
    def INPUT_TYPES(cls):
        size = "Only for TRACKS without a stored image size: the size their pixels refer to (0 = stored size)."
        return {"required": {"tracks": ("TRACKS", {"tooltip": TRACKS_TOOLTIP})},
                "optional": {"width": ("INT", {"default": 0, "min": 0, "max": 16384, "tooltip": size}),
                             "height": ("INT", {"default": 0, "min": 0, "max": 16384, "tooltip": size})}}

    def convert(self, tracks, width=0, height=0):
        with user_errors(self.NODE):
            ts = read_tracks(tracks)
            ts = ts.sized(0 if ts.width else width, 0 if ts.width else height)
            return (drags(ts),)


class MotionKitTracksToSparseFlow:
    NODE = "Tracks to Sparse Flow (MotionKitTracksToSparseFlow)"
    DESCRIPTION = ("Motion-I2V's sparse-trajectory control: for each future frame, a square of half-size radius "
                   "around each track's start holds its displacement (end_t - start) in pixels, and a mask marks "
                   "where flow is given (the official demo's construction, default square 64 at 512x320).")
    CATEGORY = "MotionKit"
    RETURN_TYPES = ("MOTIONKIT_SPARSE_FLOW", "MASK")
    RETURN_NAMES = ("sparse_flow", "flow_mask")
    FUNCTION = "convert"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "tracks": ("TRACKS", {"tooltip": TRACKS_TOOLTIP}),
            "radius": ("INT", {"default": 8, "min": 1, "max": 1024, "tooltip": "Half-size of each square in pixels."}),
            "width": ("INT", {"default": 0, "min": 0, "max": 16384, "tooltip": SIZE_TOOLTIP}),
            "height": ("INT", {"default": 0, "min": 0, "max": 16384, "tooltip": SIZE_TOOLTIP}),
        }}

    def convert(self, tracks, radius, width, height):
        with user_errors(self.NODE):
            ts = read_tracks(tracks).sized(width, height)
            flow = sparse_flow(ts, int(radius))
        return flow, flow["mask"]


class MotionKitTracksToCoordinates:
    NODE = "Tracks to Coordinates (MotionKitTracksToCoordinates)"
    DESCRIPTION = ("TRACKS as the KJNodes / core coordinate string [[{\"x\":..,\"y\":..}, ...], ...] (one list per "
                   "track, one point per frame, pixels), for core WanTrackToVideo (which expects 121 points per "
                   "track: build the tracks with num_frames 121) and KJNodes nodes.")
    CATEGORY = "MotionKit"
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("coordinates",)
    FUNCTION = "convert"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"tracks": ("TRACKS", {"tooltip": TRACKS_TOOLTIP})}}

    def convert(self, tracks):
        with user_errors(self.NODE):
            return (tracks_to_coordinates(read_tracks(tracks)),)


NODE_CLASS_MAPPINGS = {
    "MotionKitArrowsToTracks": MotionKitArrowsToTracks,
    "MotionKitTracksToTrackMaps": MotionKitTracksToTrackMaps,
    "MotionKitTracksToDrags": MotionKitTracksToDrags,
    "MotionKitTracksToSparseFlow": MotionKitTracksToSparseFlow,
    "MotionKitVisualizeTracks": MotionKitVisualizeTracks,
    "MotionKitTracksToCoordinates": MotionKitTracksToCoordinates,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "MotionKitArrowsToTracks": "Arrows to Trajectories (TrackGo)",
    "MotionKitTracksToTrackMaps": "Tracks to Track Maps (TrackGo)",
    "MotionKitTracksToDrags": "Tracks to Drags (Puppet-Master)",
    "MotionKitTracksToSparseFlow": "Tracks to Sparse Flow (Motion-I2V)",
    "MotionKitVisualizeTracks": "Visualize Tracks",
    "MotionKitTracksToCoordinates": "Tracks to Coordinates (KJNodes / WanTrackToVideo)",
}
