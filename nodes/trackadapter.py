"""TrackAdapter (TrackGo) on SVD: the weight loader and the node that patches SVD's temporal self-attention,
with trained weights or in the training-free mode. The equations and the weight format are in
``modules/trackadapter.py``; the trainer is ``scripts/train_trackadapter.py``."""
from __future__ import annotations

import logging
import os
from typing import Callable, Optional

import torch
import torch.nn.functional as F

import comfy.patcher_extension
import folder_paths
from comfy.ldm.modules.attention import CrossAttention

from ..modules.all_to_first import blend
from ..modules.motion_field import interleave_with_warped
from ..modules.trackadapter import (LAMBDA_BG, RASTER_PER_LATENT, TAU, AdapterFileError, LayerSpec, TrackAdapter,
                                    attention_loss_term, attention_map, cover_tokens, encoder_input, hard_region,
                                    layer_features, load_adapter, merge_heads, mixed_weights, motion_difference,
                                    object_ids, region_tokens, soft_region, split_heads, training_free_geometry)
from ..modules.tracks import TrackInputError, TrackSet, read_tracks
from ._comfy import (MotionKitInputError, SigmaWindow, attention, patch_forwards, require_model, require_percent_window,
                     require_range, temporal_self_attention)
from .motion_field import FlowPyramid

log = logging.getLogger("MotionKit")

ADAPTER_TYPE = "MOTIONKIT_TRACKADAPTER"
FOLDER = "trackadapter"
EXTENSIONS = {".safetensors"}
LOADER = "Load TrackAdapter (MotionKitTrackAdapterLoader)"
APPLY = "TrackAdapter (TrackGo) (MotionKitApplyTrackAdapter)"
WRAPPER_KEY = "motionkit_trackadapter"
LATENT_FACTOR = 8              # SVD's VAE: one latent pixel per 8x8 image pixels
ASPECT_TOLERANCE = 0.02        # relative; resized copies of one image keep the aspect ratio within rounding


def register_model_folder() -> None:
    """``models/trackadapter`` (and any ``trackadapter`` folder from extra_model_paths.yaml), safetensors only."""
    folder_paths.add_model_folder_path(FOLDER, os.path.join(folder_paths.models_dir, FOLDER), is_default=True)
    paths, extensions = folder_paths.folder_names_and_paths[FOLDER]
    folder_paths.folder_names_and_paths[FOLDER] = (paths, set(extensions) | EXTENSIONS)


register_model_folder()


def require_tracks(node: str, tracks) -> TrackSet:
    """Validated TRACKS with at least one track over at least two frames."""
    path = tracks.get("track_path") if isinstance(tracks, dict) else None
    if path is not None and hasattr(path, "shape") and len(path.shape) >= 2 and 0 in tuple(path.shape[-3:-1]):
        raise MotionKitInputError(node, "tracks", f"the TRACKS are empty (track_path {list(path.shape)}: no "
                                  "trajectory).", "draw at least one arrow in Arrows to Trajectories (or give "
                                  "tracks with points).")
    try:
        ts = read_tracks(tracks)
    except TrackInputError as e:
        raise MotionKitInputError(node, e.input_name, e.problem, e.fix) from None
    if ts.num_frames < 2:
        raise MotionKitInputError(node, "tracks", "the tracks have a single frame.",
                                  "make trajectories over the video's frames (Arrows to Trajectories' num_frames).")
    return ts


def layer_specs(model, node: str = APPLY) -> list[LayerSpec]:
    """The temporal self-attentions of ``model`` as the adapter config lists them."""
    return [LayerSpec(site.path, int(site.module.to_q.in_features), int(site.module.heads))
            for site in temporal_self_attention(model, node)]


def require_adapter(node: str, adapter, model) -> dict[str, int]:
    """Check that ``adapter`` fits ``model``; returns each layer path's index in the adapter."""
    if not isinstance(adapter, TrackAdapter):
        raise MotionKitInputError(node, "track_adapter", f"expected a TrackAdapter, got {type(adapter).__name__}.",
                                  "connect the output of 'Load TrackAdapter', or nothing for the training-free mode.")
    have = layer_specs(model, node)
    want = list(adapter.config.layers)
    if [(s.channels, s.heads) for s in have] != [(s.channels, s.heads) for s in want]:
        raise MotionKitInputError(
            node, "track_adapter",
            f"this adapter was trained for a model whose {len(want)} temporal attention layers have widths "
            f"{[s.channels for s in want]}; this MODEL has {len(have)} with widths {[s.channels for s in have]}.",
            "use an adapter trained on this base model (SVD and SVD-XT share one architecture), or train one with "
            "scripts/train_trackadapter.py on this checkpoint.")
    if [s.path for s in have] != [s.path for s in want]:
        raise MotionKitInputError(node, "track_adapter", "the adapter's layer paths differ from this MODEL's "
                                  f"(first: {want[0].path} vs {have[0].path}).",
                                  "use an adapter trained on this base model.")
    return {s.path: i for i, s in enumerate(want)}


class TrainingTerms:
    """Set on a :class:`TrackRun` by the trainer: soft threshold, motion masks, collected attention-loss terms."""

    def __init__(self, tau: float, kappa: float, cover: torch.Tensor):
        self.tau, self.kappa, self.cover = tau, kappa, cover    # cover: [T, H, W] motion masks in [0, 1]
        self.terms: list[torch.Tensor] = []


class TrackRun:
    """What all patched layers of one MODEL share: the tracks, the adapter (None: training-free mode), and
    everything derived from them once per sampling run (encoder features, field and regions at each
    resolution), cached by resolution and device. An OUTER_SAMPLE wrapper clears the cache before and
    after each run, so nothing is held between runs."""

    def __init__(self, tracks: TrackSet, adapter: Optional[TrackAdapter] = None,
                 masks: Optional[torch.Tensor] = None):
        self.tracks, self.adapter = tracks, adapter
        self.masks = masks  # frame-0 object masks [K, H, W] in object_ids order, or None (estimated from tracks)
        self.training: Optional[TrainingTerms] = None
        self._cache: dict = {}

    def reset(self) -> None:
        self._cache.clear()

    def _cached(self, key, make: Callable):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def check_video(self, latent: tuple[int, int], frames: int) -> None:
        self._cached(("video", latent, frames), lambda: self._check_video(latent, frames))

    def _check_video(self, latent: tuple[int, int], frames: int) -> bool:
        ts = self.tracks
        if ts.num_frames != frames:
            raise MotionKitInputError(APPLY, "tracks", f"the tracks have {ts.num_frames} frames but the video has "
                                      f"{frames}.", "make the trajectories with num_frames = the video's frame count "
                                      "(SVD_img2vid_Conditioning's video_frames).")
        width, height = latent[1] * LATENT_FACTOR, latent[0] * LATENT_FACTOR
        if ts.width is not None and abs((ts.width / ts.height) / (width / height) - 1) > ASPECT_TOLERANCE:
            raise MotionKitInputError(
                APPLY, "tracks", f"the tracks were drawn on a {ts.width}x{ts.height} image but the video's latent is "
                f"{latent[1]}x{latent[0]} ({width}x{height} pixels): the aspect ratios differ.",
                "draw the masks and arrows on the image you give SVD_img2vid_Conditioning, at the video's aspect "
                "ratio (e.g. resize it to the video size first).")
        return True

    # trained mode
    def adapter_on(self, device: torch.device) -> TrackAdapter:
        """The adapter on ``device`` (a float32 copy for this run, or the adapter itself when it is there, and
        always in training: the trainer's parameters must be the ones used)."""
        if self.training is not None or next(self.adapter.parameters()).device == torch.device(device):
            return self.adapter
        return self._cached(("adapter", str(device)), lambda: _device_copy(self.adapter, device))

    def features(self, latent: tuple[int, int], height: int, width: int, device, dtype) -> torch.Tensor:
        """Encoder features at a layer's grid as ``(h*w, T, C_f)`` in ``dtype``: E runs once per run."""
        def encode():
            maps = encoder_input(self.tracks, latent[1] * LATENT_FACTOR, latent[0] * LATENT_FACTOR,
                                 self.adapter.config.map_line_width).to(device)
            with torch.set_grad_enabled(self.training is not None and torch.is_grad_enabled()):
                return self.adapter_on(device).encoder(maps)
        full = self._cached(("encoder", latent, str(device)), encode)
        return self._cached(("features", latent, height, width, str(device), dtype),
                            lambda: layer_features(full, height, width).to(dtype))

    def motion_tokens(self, height: int, width: int, device) -> torch.Tensor:
        return self._cached(("motion", height, width, str(device)),
                            lambda: cover_tokens(self.training.cover, height, width).to(device))

    # training-free mode
    def geometry(self, latent: tuple[int, int]):
        return self._cached(("geometry", latent), lambda: training_free_geometry(
            self.tracks, latent[1] * RASTER_PER_LATENT, latent[0] * RASTER_PER_LATENT, self.masks))

    def region(self, latent: tuple[int, int], height: int, width: int, tau: float, device) -> torch.Tensor:
        return self._cached(("region", latent, height, width, tau, str(device)),
                            lambda: region_tokens(self.geometry(latent).cover, height, width, tau).to(device))

    def flow(self, latent: tuple[int, int], height: int, width: int, device) -> torch.Tensor:
        pyramid = self._cached(("pyramid", latent), lambda: FlowPyramid(self.geometry(latent).flow))
        return pyramid.at(height, width, device)


def _device_copy(adapter: TrackAdapter, device) -> TrackAdapter:
    copy = TrackAdapter(adapter.config)
    copy.load_state_dict(adapter.state_dict())
    return copy.to(device).eval().requires_grad_(False)


class TrackAdapterForward:
    """Stands in for one temporal ``CrossAttention.forward`` (SVD ``time_stack.N.attn1``): the masked
    dual-branch attention of equations 2-5, trained or training-free, blended by strength (equation 6)."""

    def __init__(self, attn: CrossAttention, inner: Callable, run: TrackRun, layer_index: Optional[int],
                 lambda_bg: float, tau: float, strength: float, window: SigmaWindow):
        self.attn, self.inner, self.run, self.layer_index = attn, inner, run, layer_index
        self.lambda_bg, self.tau, self.strength, self.window = lambda_bg, tau, strength, window

    def __call__(self, x, context=None, value=None, mask=None, transformer_options={}):
        # An attn1_patch elsewhere hands self-attention its own input as context/value: still self-attention.
        own = (context is None or context is x) and (value is None or value is x)
        if mask is not None or not own or not self.window.active(transformer_options):
            return self.inner(x, context=context, value=value, mask=mask, transformer_options=transformer_options)
        height, width = transformer_options["activations_shape"][-2:]
        latent = tuple(transformer_options.get("original_shape", (height, width))[-2:])
        self.run.check_video(latent, x.shape[1])
        if self.run.adapter is not None:
            out = self.trained(x, latent, height, width)
        else:
            out = self.training_free(x, latent, height, width, transformer_options)
        if out is None:  # empty motion region at lambda_bg == 1: exactly the original layer
            return self.inner(x, context=context, value=value, mask=mask, transformer_options=transformer_options)
        out = self.attn.to_out(out)
        if self.strength == 1.0:
            return out
        return blend(self.inner(x, context=context, value=value, mask=mask, transformer_options=transformer_options),
                     out, self.strength)

    def _precision(self, x: torch.Tensor) -> Optional[torch.dtype]:
        if self.attn.attn_precision == torch.float32 or x.dtype in (torch.float16, torch.bfloat16):
            return torch.float32
        return None

    def trained(self, x: torch.Tensor, latent, height: int, width: int) -> Optional[torch.Tensor]:
        attn, run = self.attn, self.run
        tokens, frames, channels = x.shape
        layer = run.adapter_on(x.device).layers[self.layer_index]
        f = run.features(latent, height, width, x.device, x.dtype)                             # (h*w, T, C_f)
        g = F.linear(f, layer.proj.weight.to(x.dtype), layer.proj.bias.to(x.dtype))            # (h*w, T, C)
        xg = (x.view(-1, height * width, frames, channels) + g).view_as(x)
        q2 = F.linear(xg, layer.to_q.weight.to(x.dtype))
        k2 = F.linear(xg, layer.to_k.weight.to(x.dtype))
        q, k = attn.to_q(x), attn.to_k(x)
        precision = self._precision(x)
        a = attention_map(q, k, attn.heads, precision)
        a2 = attention_map(q2, k2, attn.heads, precision)
        diff = motion_difference(a, a2)
        training = run.training
        if training is None:
            region, lambda_bg = hard_region(diff, self.tau), self.lambda_bg
            if lambda_bg == 1.0 and not bool(region.any()):
                return None
        else:  # equation 7: soft region, background free, attention-loss term collected for the trainer
            region, lambda_bg = soft_region(diff, training.tau, training.kappa), 1.0
            motion = run.motion_tokens(height, width, x.device).repeat(tokens // (height * width), 1)
            training.terms.append(attention_loss_term(a, region, motion))
        weights = mixed_weights(a, a2, region, lambda_bg)
        v = split_heads(attn.to_v(x), attn.heads)
        return merge_heads(weights @ v.to(weights.dtype)).to(x.dtype)

    def training_free(self, x: torch.Tensor, latent, height: int, width: int, options: dict) -> Optional[torch.Tensor]:
        attn, lam = self.attn, self.lambda_bg
        videos = x.shape[0] // (height * width)
        region = self.run.region(latent, height, width, self.tau, x.device)                    # (h*w, T)
        if not bool(region.any()):
            if lam == 1.0:
                return None
            if lam == 0.0:
                return x.new_zeros(*x.shape[:2], attn.heads * attn.dim_head)
            return lam * attention(attn, attn.to_q(x), attn.to_k(x), attn.to_v(x), options)
        region = region.repeat(videos, 1)                                                      # (N, T)
        out = x.new_zeros(*x.shape[:2], attn.heads * attn.dim_head)
        background = ~region.all(1)          # tokens with a frame outside the region: original branch
        if lam > 0.0 and bool(background.any()):
            xb = x[background]
            own = attention(attn, attn.to_q(xb), attn.to_k(xb), attn.to_v(xb), options)
            out[background] = own if lam == 1.0 else lam * own
        moving = region.any(1)               # tokens with a frame inside: attention along the trajectory
        seq = interleave_with_warped(x, height, width, self.run.flow(latent, height, width, x.device))[moving]
        aug = attention(attn, attn.to_q(x[moving]), attn.to_k(seq), attn.to_v(seq), options)
        out[moving] = torch.where(region[moving].unsqueeze(-1), aug, out[moving])
        return out


def patch_model(model, run: TrackRun, lambda_bg: float, tau: float, strength: float, start_percent: float,
                end_percent: float, node: str = APPLY):
    """A clone of ``model`` whose temporal self-attentions run :class:`TrackAdapterForward` (also the trainer's)."""
    sites = temporal_self_attention(model, node)
    index = require_adapter(node, run.adapter, model) if run.adapter is not None else {}
    patched = model.clone()
    window = SigmaWindow(patched, start_percent, end_percent)
    patch_forwards(patched, sites, lambda site, inner: TrackAdapterForward(
        site.module, inner, run, index.get(site.path), lambda_bg, tau, strength, window), TrackAdapterForward)
    outer = comfy.patcher_extension.WrappersMP.OUTER_SAMPLE
    patched.remove_wrappers_with_key(outer, WRAPPER_KEY)
    patched.add_wrapper_with_key(outer, WRAPPER_KEY, ClearPerRun(run))
    return patched


class ClearPerRun:
    """OUTER_SAMPLE wrapper: the per-run cache starts empty and is freed when sampling ends."""

    def __init__(self, run: TrackRun):
        self.run = run

    def __call__(self, executor, *args, **kwargs):
        self.run.reset()
        try:
            return executor(*args, **kwargs)
        finally:
            self.run.reset()


# --- nodes ------------------------------------------------------------------------------------------

class MotionKitTrackAdapterLoader:
    DESCRIPTION = (
        "Loads TrackAdapter weights (TrackGo's trajectory encoder and the adapter branch of every temporal "
        "self-attention) from models/trackadapter. TrackGo's own weights are not public: train adapter weights "
        "for your SVD checkpoint with scripts/train_trackadapter.py. The file is safetensors (format "
        "'motionkit.trackadapter' version 1, configuration in its metadata); a file of another format, version "
        "or with missing tensors is refused with the reason.")
    CATEGORY = "MotionKit"
    RETURN_TYPES = (ADAPTER_TYPE,)
    RETURN_NAMES = ("track_adapter",)
    OUTPUT_TOOLTIPS = ("Trained TrackAdapter weights for 'TrackAdapter (TrackGo)'.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "adapter_name": (folder_paths.get_filename_list(FOLDER), {
                "tooltip": "A TrackAdapter .safetensors file in models/trackadapter (written by the trainer)."}),
        }}

    def load(self, adapter_name):
        path = folder_paths.get_full_path(FOLDER, adapter_name)
        if path is None:
            raise MotionKitInputError(LOADER, "adapter_name", f"'{adapter_name}' is not in models/{FOLDER}.",
                                      f"put the file in ComfyUI/models/{FOLDER} and refresh (R) the node list.")
        try:
            adapter = load_adapter(path)
        except AdapterFileError as e:
            raise MotionKitInputError(LOADER, "adapter_name", f"'{adapter_name}': {e.problem}", e.fix) from None
        log.info("[MotionKit] TrackAdapter %s: %d layers, encoder %s -> %d features", adapter_name,
                 len(adapter.config.layers), list(adapter.config.encoder_channels), adapter.config.feature_channels)
        return (adapter,)


def require_object_masks(node: str, masks, ts: TrackSet) -> torch.Tensor:
    """The masks of the tracks' objects, in ``object_ids`` order (object label i is mask i)."""
    if not torch.is_tensor(masks) or masks.ndim not in (2, 3):
        raise MotionKitInputError(node, "masks", "expected a MASK batch [K, H, W].", "connect a MASK output.")
    masks = (masks if masks.ndim == 3 else masks[None]).detach().float().cpu()
    ids = object_ids(ts)
    if ids and ids[-1] >= len(masks):
        raise MotionKitInputError(node, "masks", f"the tracks use object {ids[-1]} but {len(masks)} masks are "
                                  "connected.", "connect the same masks you gave Arrows to Trajectories.")
    height, width = masks.shape[-2:]
    if ts.width is not None and abs((ts.width / ts.height) / (width / height) - 1) > ASPECT_TOLERANCE:
        raise MotionKitInputError(node, "masks", f"the masks are {width}x{height} but the tracks were drawn on a "
                                  f"{ts.width}x{ts.height} image.", "connect the masks of the image the tracks "
                                  "were drawn on.")
    for obj in ids:
        if not (masks[obj] > 0.5).any():
            raise MotionKitInputError(node, "masks", f"mask {obj} of {len(masks)} is empty (no pixel above 0.5), but "
                                      f"{int((ts.object == obj).sum())} tracks belong to object {obj}.",
                                      "select the object again (Click to Mask), or connect the masks you gave Arrows "
                                      "to Trajectories (mask i is object i).")
    return masks[ids] if ids else masks[:0]


class MotionKitApplyTrackAdapter:
    DESCRIPTION = (
        "TrackGo's TrackAdapter on Stable Video Diffusion: objects follow the TRACKS. In every temporal "
        "self-attention (time_stack) a motion region is found per frame; there the original temporal attention "
        "is suppressed and a trajectory-driven branch takes over; outside it the original branch keeps strength "
        "lambda_bg (0 freezes unspecified regions, 1 leaves them free). Which mode runs: WITH track_adapter "
        "connected, the trained TrackAdapter (the adapter's own attention map, from the trajectory encoder's "
        "features, marks the region where it exceeds the original map by more than tau). WITHOUT track_adapter, "
        "a training-free mode (not TrackGo's weights; a stand-in with its structure): the region is each "
        "object's area (estimated from its tracks) carried along its tracks, where more than tau of a cell is "
        "covered, and the branch there is attention along the trajectory (frame 0's features warped along the "
        "tracks, as Motion-I2V). Camera tracks make the whole frame the region. Output = (1 - strength) * "
        "original + strength * patched, between start_percent and end_percent. The encoder, field and regions "
        "are computed once per sampling run. Measured (benchmarks/README.md, Control World): the training-free "
        "mode barely steers and slows objects down; weights trained by MotionKit's trainer on that small world "
        "cut the median distance to the drawn paths by about a quarter (mean: a third; not yet TrackGo-like: "
        "objects moving along their tracks often change colour or dissolve on the way); the objects that stay "
        "visible follow their paths about three times closer than without control.")
    CATEGORY = "MotionKit"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "A Stable Video Diffusion model (SVD or SVD-XT)."}),
                "tracks": ("TRACKS", {"tooltip": "Point trajectories with the video's frame count, drawn on the "
                                                 "input image (Arrows to Trajectories). Tracks drawn at another "
                                                 "size with the video's aspect ratio are scaled to it; another "
                                                 "aspect ratio is an error."}),
                "lambda_bg": ("FLOAT", {"default": LAMBDA_BG, "min": 0.0, "max": 1.0, "step": 0.01,
                                        "tooltip": "TrackGo's lambda: strength of the original temporal attention "
                                                   "outside the motion region. 0 freezes unspecified regions, 1 "
                                                   "leaves them free."}),
                "tau": ("FLOAT", {"default": TAU, "min": 0.0, "max": 1.0, "step": 0.01,
                                  "tooltip": "Threshold of the motion region. Trained: how far the adapter's "
                                             "attention must exceed the original's (the trainer's default is 0.1). "
                                             "Training-free: the fraction of a cell the moving objects must cover."}),
                "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                       "tooltip": "0 leaves the model unchanged, 1 is the full TrackAdapter."}),
                "start_percent": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.001,
                                            "tooltip": "Fraction of the sampling schedule where the patch starts."}),
                "end_percent": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.001,
                                          "tooltip": "Fraction of the sampling schedule where the patch ends."}),
            },
            "optional": {
                "track_adapter": (ADAPTER_TYPE, {"tooltip": "Trained weights from 'Load TrackAdapter'. Leave "
                                                            "unconnected for the training-free mode."}),
                "masks": ("MASK", {"tooltip": "Training-free mode: the objects' masks (one per object, as given to "
                                              "Arrows to Trajectories). Without them each object's area is "
                                              "estimated from its tracks."}),
            },
        }

    def patch(self, model, tracks, lambda_bg, tau, strength, start_percent, end_percent, track_adapter=None,
              masks=None):
        model = require_model(APPLY, model)
        ts = require_tracks(APPLY, tracks)
        object_masks = None if masks is None else require_object_masks(APPLY, masks, ts)
        lambda_bg = require_range(APPLY, "lambda_bg", lambda_bg, 0.0, 1.0)
        tau = require_range(APPLY, "tau", tau, 0.0, 1.0)
        strength = require_range(APPLY, "strength", strength, 0.0, 1.0)
        start_percent, end_percent = require_percent_window(APPLY, start_percent, end_percent)
        temporal_self_attention(model, APPLY)
        if track_adapter is not None:
            require_adapter(APPLY, track_adapter, model)
        if strength == 0.0:
            return (model.clone(),)
        mode = "trained TrackAdapter" if track_adapter is not None else "training-free mode"
        log.info("[MotionKit] TrackAdapter (TrackGo): %s, %d tracks over %d frames", mode, ts.num_tracks, ts.num_frames)
        run = TrackRun(ts, track_adapter, object_masks)
        return (patch_model(model, run, lambda_bg, tau, strength, start_percent, end_percent),)


NODE_CLASS_MAPPINGS = {
    "MotionKitTrackAdapterLoader": MotionKitTrackAdapterLoader,
    "MotionKitApplyTrackAdapter": MotionKitApplyTrackAdapter,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "MotionKitTrackAdapterLoader": "Load TrackAdapter (TrackGo)",
    "MotionKitApplyTrackAdapter": "TrackAdapter (TrackGo)",
}
