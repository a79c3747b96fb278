"""Motion-I2V nodes: the training-free motion-field predictor, motion-augmented temporal attention on
SVD, and a field viewer. MOTION_FIELD is documented in modules/motion_field.py."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from comfy.ldm.modules.attention import CrossAttention

from ..modules.all_to_first import blend
from ..modules.field_fit import assign_objects, field_from_tracks
from ..modules.tracks import EXTRAS_KEY, TrackInputError, TrackSet, read_tracks
from ..modules.motion_field import (check_motion_field, flow_to_rgb, interleave_with_warped, make_motion_field,
                                    resize_flow, warp_image)
from .motion_modules import augment_motion_modules, has_motion_modules
from ._comfy import (MotionKitInputError, SigmaWindow, attention, patch_forwards, require_model, require_percent_window,
                     require_range, temporal_self_attention)

MOTION_FIELD = "MOTION_FIELD"
PREDICTOR = "Trajectories to Motion Field (MotionKitTracksToMotionField)"
AUGMENTED = "Motion-Augmented Temporal Attention (MotionKitMotionAugmentedAttention)"
VISUALIZE = "Visualize Motion Field (MotionKitVisualizeMotionField)"


def require_motion_field(node: str, field, input_name: str = "motion_field") -> dict:
    problems = check_motion_field(field)
    if problems:
        raise MotionKitInputError(node, input_name, "not a usable MOTION_FIELD: " + "; ".join(problems) + ".",
                                  "connect the output of 'Trajectories to Motion Field' or another MotionKit "
                                  "motion-field node.")
    return field


# --- tracks + masks -> field -----------------------------------------------------------------------

def read_node_tracks(node: str, tracks) -> tuple[TrackSet, bool]:
    """The validated tracks, and whether they carry MotionKit's object labels."""
    try:
        return read_tracks(tracks), isinstance(tracks, dict) and tracks.get(EXTRAS_KEY) is not None
    except TrackInputError as e:
        raise MotionKitInputError(node, e.input_name, e.problem, e.fix) from None


def require_masks_of_tracked_objects(node: str, masks: torch.Tensor, ids) -> None:
    """An object that has tracks needs a non-empty mask (an empty one would give it no motion at all)."""
    ids = np.asarray(ids)
    for obj in np.unique(ids[ids >= 0]):
        if not (masks[int(obj)] > 0.5).any():
            raise MotionKitInputError(node, "masks", f"mask {int(obj)} of {len(masks)} is empty (no pixel above 0.5), "
                                      f"but {int((ids == obj).sum())} tracks belong to object {int(obj)}.",
                                      "select the object again (Click to Mask), or connect the masks the tracks were "
                                      "made from (mask i is object i).")


class MotionKitTracksToMotionField:
    DESCRIPTION = (
        "Training-free motion-field predictor (no weights needed). For each object and frame it fits the "
        "object's tracks inside its mask: an affine motion with 3 or more non-collinear tracks, a translation "
        "with 1-2 tracks, and no motion without tracks. Objects blend smoothly where they meet; outside every "
        "object the field is zero, or follows the camera tracks when the TRACKS have them. Tracks without "
        "object labels belong to the mask that holds their start point (or the camera when none does).")
    CATEGORY = "MotionKit"
    RETURN_TYPES = (MOTION_FIELD,)
    RETURN_NAMES = ("motion_field",)
    FUNCTION = "predict"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "tracks": ("TRACKS", {"tooltip": "Point trajectories in pixels of the mask image."}),
            "masks": ("MASK", {"tooltip": "One mask per object, in the order the tracks' object ids use."}),
            "boundary_softness": ("FLOAT", {"default": 4.0, "min": 0.0, "max": 64.0, "step": 0.5,
                                            "tooltip": "Pixels over which touching objects' motions blend."}),
        }}

    def predict(self, tracks, masks, boundary_softness):
        ts, labelled = read_node_tracks(PREDICTOR, tracks)
        path, vis = ts.path, ts.visible
        if ts.num_frames < 2:
            raise MotionKitInputError(PREDICTOR, "tracks", "the tracks have a single frame.",
                                      "give trajectories over at least two frames.")
        if not torch.is_tensor(masks) or masks.ndim not in (2, 3):
            raise MotionKitInputError(PREDICTOR, "masks", "expected a MASK batch [K, H, W].", "connect a MASK output.")
        masks = (masks if masks.ndim == 3 else masks[None]).detach().float().cpu()
        k, height, width = masks.shape
        if ts.width is not None and (ts.width, ts.height) != (width, height):
            raise MotionKitInputError(PREDICTOR, "masks", f"the masks are {width}x{height} but the tracks were drawn "
                                      f"on a {ts.width}x{ts.height} image.",
                                      "use the masks of the image the trajectories were made for (or resize them).")
        start = path[0][vis[0]]
        if len(start) and ((start < 0).any() or (start[:, 0] > width).any() or (start[:, 1] > height).any()):
            raise MotionKitInputError(PREDICTOR, "tracks", f"some tracks start outside the {width}x{height} masks.",
                                      "use masks of the image the tracks were drawn on.")
        ids = assign_objects(path, masks, ts.object if labelled else None)
        if (ids >= k).any() or (ids < -1).any():
            raise MotionKitInputError(PREDICTOR, "masks", f"the tracks refer to object {int(ids.max())} but only "
                                      f"{k} masks are connected.", "connect one mask per object the tracks use.")
        softness = require_range(PREDICTOR, "boundary_softness", boundary_softness, 0.0, 64.0)
        require_masks_of_tracked_objects(PREDICTOR, masks, ids)
        flow, valid = field_from_tracks(path, vis, ids, (masks > 0.5).float(), softness)
        return (make_motion_field(flow, valid),)


# --- motion-augmented temporal attention -------------------------------------------------------------

class FlowPyramid:
    """The field at each attention resolution, resized once per resolution and device (not per call)."""

    def __init__(self, flow: torch.Tensor):
        self.flow = flow
        self._cache: dict = {}

    def at(self, height: int, width: int, device) -> torch.Tensor:
        key = (height, width, str(device))
        if key not in self._cache:
            fh, fw = self.flow.shape[-2:]
            if abs((fw / fh) / (width / height) - 1) > 0.05:
                raise MotionKitInputError(AUGMENTED, "motion_field", f"the field is {fw}x{fh} but the video's "
                                          f"attention grid is {width}x{height}: the aspect ratios differ.",
                                          "make the motion field for an image of the video's aspect ratio.")
            self._cache[key] = resize_flow(self.flow, height, width).to(device)
        return self._cache[key]


class MotionAugmentedForward:
    """Stands in for one temporal ``CrossAttention.forward`` (SVD ``time_stack.N.attn1``): queries of the
    real frames attend over the interleaved [h0, w1, h1, ...] sequence with frame 0 warped by the field."""

    def __init__(self, attn: CrossAttention, inner: Callable, pyramid: FlowPyramid, strength: float,
                 window: SigmaWindow):
        self.attn, self.inner, self.pyramid, self.strength, self.window = attn, inner, pyramid, strength, window

    def __call__(self, x, context=None, value=None, mask=None, transformer_options={}):
        if mask is not None or context is not None or not self.window.active(transformer_options):
            return self.inner(x, context=context, value=value, mask=mask, transformer_options=transformer_options)
        height, width = transformer_options["activations_shape"][-2:]
        frames = x.shape[1]
        field_frames = self.pyramid.flow.shape[0]
        if field_frames != frames:
            raise MotionKitInputError(AUGMENTED, "motion_field", f"the field has {field_frames} frames but the video "
                                      f"has {frames}.", "make the field with the video's frame count.")
        seq = interleave_with_warped(x, height, width, self.pyramid.at(height, width, x.device))
        attn = self.attn
        out = attention(attn, attn.to_q(x), attn.to_k(seq), attn.to_v(seq), transformer_options)
        out = attn.to_out(out)
        if self.strength == 1.0:
            return out
        return blend(self.inner(x, context=context, value=value, mask=mask, transformer_options=transformer_options),
                     out, self.strength)


class MotionKitMotionAugmentedAttention:
    DESCRIPTION = (
        "Motion-I2V's motion-augmented temporal attention on Stable Video Diffusion. In every temporal "
        "self-attention (time_stack), frame 0's features are forward-warped to each frame by the motion field "
        "(resized to the layer's resolution) and interleaved with the real frames; each frame's queries then "
        "attend over that sequence with the layer's own projections (no new weights). Output = (1 - strength) "
        "* original + strength * augmented, between start_percent and end_percent. Spatial attention is untouched. "
        "On SD1.5 with a motion module from 'Load Motion Module' (e.g. Motion-I2V's motion_block.bin) it acts on every "
        "temporal attention of the motion modules, with their position encoding over the interleaved positions as "
        "Motion-I2V does, so the video can have at most (encoding length + 1) / 2 frames (16 for v2). Under CFG each "
        "video (cond, uncond) is warped from its own frame 0, as the method intends; the official stage-2 code "
        "pairs some frames with the other batch item's frame 0 (its .repeat tiling), which MotionKit does not copy. "
        "Measured (benchmarks/README.md, Control World): on an SVD-architecture model not trained with it, with "
        "a field from Trajectories to Motion Field, it did not measurably steer objects along their tracks.")
    CATEGORY = "MotionKit"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "A Stable Video Diffusion model, or SD1.5 + 'Load Motion Module'."}),
            "motion_field": (MOTION_FIELD, {"tooltip": "Dense flow from frame 0 to every frame."}),
            "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}),
            "start_percent": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.001}),
            "end_percent": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.001}),
        }}

    def patch(self, model, motion_field, strength, start_percent, end_percent):
        model = require_model(AUGMENTED, model)
        field = require_motion_field(AUGMENTED, motion_field)
        strength = require_range(AUGMENTED, "strength", strength, 0.0, 1.0)
        start_percent, end_percent = require_percent_window(AUGMENTED, start_percent, end_percent)
        if has_motion_modules(model):   # SD1.5 + motion modules: the modules' own temporal attention
            patched = model.clone()
            if strength > 0.0:
                window = SigmaWindow(patched, start_percent, end_percent)
                augment_motion_modules(patched, FlowPyramid(field["flow"]), strength, window)
            return (patched,)
        sites = temporal_self_attention(model, AUGMENTED)
        patched = model.clone()
        if strength == 0.0:
            return (patched,)
        window = SigmaWindow(patched, start_percent, end_percent)
        pyramid = FlowPyramid(field["flow"])
        patch_forwards(patched, sites,
                       lambda site, inner: MotionAugmentedForward(site.module, inner, pyramid, strength, window),
                       MotionAugmentedForward)
        return (patched,)


# --- seeing the field ---------------------------------------------------------------------------------

class MotionKitVisualizeMotionField:
    DESCRIPTION = ("Shows a MOTION_FIELD before sampling: the flow of every frame in the standard optical-flow "
                   "colour wheel (hue = direction, saturation = speed, white = still), and the input image "
                   "forward-warped by the field (black where nothing lands).")
    CATEGORY = "MotionKit"
    RETURN_TYPES = ("IMAGE", "IMAGE")
    RETURN_NAMES = ("flow_colors", "warped_image")
    FUNCTION = "visualize"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "motion_field": (MOTION_FIELD,),
            "image": ("IMAGE", {"tooltip": "The first frame; the field is resized to it."}),
            "max_magnitude": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 4096.0, "step": 1.0,
                                        "tooltip": "Pixels of motion shown fully saturated; 0 = the field's maximum."}),
        }}

    def visualize(self, motion_field, image, max_magnitude):
        field = require_motion_field(VISUALIZE, motion_field)
        if not torch.is_tensor(image) or image.ndim != 4:
            raise MotionKitInputError(VISUALIZE, "image", "expected an IMAGE.", "connect an IMAGE output.")
        max_magnitude = require_range(VISUALIZE, "max_magnitude", max_magnitude, 0.0, 4096.0)
        first = image[0, ..., :3].float().cpu()
        flow = resize_flow(field["flow"].float().cpu(), first.shape[0], first.shape[1])
        return (flow_to_rgb(flow, max_magnitude), warp_image(first, flow).clamp(0, 1))


NODE_CLASS_MAPPINGS = {
    "MotionKitTracksToMotionField": MotionKitTracksToMotionField,
    "MotionKitMotionAugmentedAttention": MotionKitMotionAugmentedAttention,
    "MotionKitVisualizeMotionField": MotionKitVisualizeMotionField,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "MotionKitTracksToMotionField": "Trajectories to Motion Field",
    "MotionKitMotionAugmentedAttention": "Motion-Augmented Temporal Attention (Motion-I2V)",
    "MotionKitVisualizeMotionField": "Visualize Motion Field",
}
