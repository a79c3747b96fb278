"""SD1.5 video with AnimateDiff-style motion modules (AnimateDiff v1/v2/v3, Motion-I2V's ``motion_block.bin``,
the motion-module part of a Follow-Your-Click checkpoint), without AnimateDiff-Evolved and without any
global monkeypatching.

How a motion module reaches the UNet, clone-safely (the design AnimateDiff-Evolved established):
- the modules are their own ``ModelPatcher`` (``MotionModulePatcher``), attached to a clone of the MODEL
  with ``set_additional_models``: ComfyUI loads and offloads them with the UNet and applies their weight
  patches (Still-Moving's motion adapter) like any LoRA;
- a ``PatcherInjection`` inserts one ``MotionModuleSlot`` per module into the UNet's
  ``TimestepEmbedSequential`` blocks when ComfyUI loads the clone for sampling, and removes them when it
  unloads it; an ``OUTER_SAMPLE`` wrapper also removes them when sampling ends, fails or is interrupted,
  so between runs the shared UNet is exactly the checkpoint's;
- ``forward_timestep_embed`` calls the slots through a ``forward_timestep_embed_patch`` (it only does
  that for layer classes it does not know), with the step's ``transformer_options``: the frame count
  comes from the cond/uncond layout, per-clone settings (motion-augmented attention) from the clone's
  own ``transformer_options``;
- for v1-layout files (AnimateDiff v1, Follow-Your-Click) the same injection also puts a
  :class:`JointGroupNorm` pair of forward hooks on exactly the layers that official AnimateDiff v1 runs as
  plain GroupNorms on the 5-D video tensor (each ResBlock's ``in_layers.0`` and ``out_layers.0``, the
  UNet's ``out.0``), so their statistics cover all frames of each cond/uncond video; the layers' own
  forward (ComfyUI's weight casting and low-VRAM weight functions) runs unchanged on the 5-D view. A
  ``DIFFUSION_MODEL`` wrapper on the clone gives the hooks the video count of each UNet call (the layers
  do not see ``transformer_options``); the ejection removes the hooks with the slots.
"""
from __future__ import annotations

import contextvars
import functools
import logging
import os
from dataclasses import dataclass, replace
from typing import Any, Optional

import torch
from torch import nn

import comfy.model_patcher
import comfy.patcher_extension
import comfy.utils
import folder_paths
from comfy.ldm.modules.diffusionmodules.openaimodel import ResBlock, Upsample

from ..modules.motion_field import interleave_with_warped
from ..modules.motion_module import (MotionModuleFormatError, MotionModuleSet, frames_to_video, ldm_position,
                                     motion_module_set, read_weights, video_to_frames)
from ._comfy import MotionKitInputError, frames_per_video, named_modules, plain_attention, require_model, unet as unet_of

log = logging.getLogger("MotionKit")

MOTION_MODELS = "animatediff_models"          # AnimateDiff-Evolved's folder name, shared on purpose
KEY = "MotionKit.motion_modules"              # injections, additional models, wrappers, transformer_options
LOADER = "Load Motion Module (MotionKitLoadMotionModule)"
FIRST_FRAME = "First-Frame Video Latent (MotionKitFirstFrameLatent)"
AUGMENTED = "Motion-Augmented Temporal Attention (MotionKitMotionAugmentedAttention)"


def register_model_folder() -> None:
    """``models/animatediff_models``, added to (not replacing) whatever AnimateDiff-Evolved or the user's
    extra_model_paths.yaml registered under that name."""
    folder_paths.add_model_folder_path(MOTION_MODELS, os.path.join(folder_paths.models_dir, MOTION_MODELS))
    paths, extensions = folder_paths.folder_names_and_paths[MOTION_MODELS]
    folder_paths.folder_names_and_paths[MOTION_MODELS] = (paths, set(extensions) | folder_paths.supported_pt_extensions)


register_model_folder()


# --- per-clone settings, seen by the slots through transformer_options -------------------------------

@dataclass(frozen=True)
class AugmentSpec:
    """Motion-augmented attention on the motion modules (set by MotionKitMotionAugmentedAttention)."""
    pyramid: Any          # nodes.motion_field.FlowPyramid: the field resized once per resolution
    strength: float
    window: Any           # _comfy.SigmaWindow


@dataclass(frozen=True)
class MotionOptions:
    name: str
    max_len: int
    augment: Optional[AugmentSpec] = None

    def __deepcopy__(self, memo):   # immutable: clones share it (ModelPatcher.clone deep-copies model_options)
        return self


class _Interleave:
    """The ``TemporalAttention.augment`` callable for one layer call: Motion-I2V's interleaved sequence."""

    def __init__(self, flow_hw: torch.Tensor, height: int, width: int, strength: float):
        self.flow_hw, self.height, self.width, self.strength = flow_hw, height, width, strength

    def __call__(self, tokens: torch.Tensor, module) -> torch.Tensor:
        return interleave_with_warped(tokens, self.height, self.width, self.flow_hw.to(tokens.dtype))


# --- the injected layer ----------------------------------------------------------------------------

class MotionModuleSlot(nn.Module):
    """Stands in a UNet block while sampling and runs one motion module on the block's output."""

    def __init__(self, site: str, module: nn.Module):
        super().__init__()
        self.site = site
        self.module = module

    def forward(self, x: torch.Tensor, transformer_options: dict) -> torch.Tensor:
        options: MotionOptions = transformer_options[KEY]
        _, frames = frames_per_video(x.shape[0], transformer_options)
        augment = self._augment(options, frames, x, transformer_options)
        positions = 2 * frames - 1 if augment is not None else frames
        if positions > options.max_len:
            raise MotionKitInputError(
                LOADER, "motion_module", f"the video has {frames} frames ({positions} temporal positions"
                f"{' with motion-augmented attention' if augment is not None else ''}) but '{options.name}' "
                f"encodes at most {options.max_len} positions.",
                f"sample at most {options.max_len if augment is None else (options.max_len + 1) // 2} frames "
                "(the latent batch size), or use a motion module trained for longer videos.")
        weight = self.module.temporal_transformer.proj_in.weight
        if weight.device != x.device:   # ComfyUI offloaded part of the modules under memory pressure
            self.module.to(x.device)
            weight = self.module.temporal_transformer.proj_in.weight
        attention = functools.partial(plain_attention, transformer_options=transformer_options)
        out = self.module(x.to(weight.dtype), frames, attention, augment)
        return out.to(x.dtype)

    @staticmethod
    def _augment(options: MotionOptions, frames: int, x, transformer_options) -> Optional[_Interleave]:
        spec = options.augment
        if spec is None or not spec.window.active(transformer_options):
            return None
        field_frames = spec.pyramid.flow.shape[0]
        if field_frames != frames:
            raise MotionKitInputError(AUGMENTED, "motion_field", f"the field has {field_frames} frames but the video "
                                      f"has {frames}.", "make the field with the video's frame count.")
        height, width = x.shape[-2:]
        return _Interleave(spec.pyramid.at(height, width, x.device), height, width, spec.strength)


def _run_slot(layer, x, emb, context, transformer_options, *args, **kwargs):
    """``forward_timestep_embed_patch`` handler: ComfyUI calls it for each ``MotionModuleSlot``."""
    return layer(x, transformer_options)


# --- AnimateDiff v1: ResNet and output norms over all frames of a video -------------------------------

# Videos (cond/uncond chunks) in the batch of the UNet call that is running, set by _videos_for_joint_norms.
_JOINT_VIDEOS: contextvars.ContextVar = contextvars.ContextVar("MotionKit.joint_norm_videos", default=None)


class JointGroupNorm:
    """Forward hooks that make one GroupNorm of the image UNet normalise each group over all frames of each
    video, as ``torch.nn.GroupNorm`` does on official AnimateDiff v1's (B, C, F, H, W) tensor: the input is
    viewed as (B, C, F, H, W) before the layer and back as (B*F, C, H, W) after it. The layer itself is not
    replaced: its own forward (ComfyUI's weight casting, low-VRAM weight functions) runs on the 5-D view."""

    def __init__(self, norm: nn.GroupNorm):
        self.handles = (norm.register_forward_pre_hook(self.to_video), norm.register_forward_hook(self.to_frames))

    def to_video(self, module, args):
        videos = _JOINT_VIDEOS.get()
        if videos is None:
            raise RuntimeError("MotionKit: a v1 motion module's joint GroupNorm ran outside a UNet call of the clone "
                               "that injected it (no video count); sample the Load Motion Module output directly.")
        return (frames_to_video(args[0], videos), *args[1:])

    def to_frames(self, module, args, output):
        return video_to_frames(output)

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()

    @staticmethod
    def on(module: nn.Module) -> list:
        """The JointGroupNorm hooks installed on ``module``."""
        return [hook.__self__ for hook in module._forward_pre_hooks.values()
                if isinstance(getattr(hook, "__self__", None), JointGroupNorm)]


def joint_norm_layers(unet) -> list:
    """The GroupNorms that official AnimateDiff v1 applies to the whole video: both norms of every ResBlock
    (``norm1``/``norm2`` of ResnetBlock3D) and the output norm (``conv_norm_out``), in module order."""
    layers = [n for m in unet.modules() if isinstance(m, ResBlock) for n in (m.in_layers[0], m.out_layers[0])]
    layers.append(unet.out[0])
    bad = [type(n).__name__ for n in layers if not isinstance(n, nn.GroupNorm)]
    if bad:
        raise MotionKitInputError(LOADER, "model", f"this UNet's ResNet/output norms are {bad[0]}, not GroupNorm, so "
                                  "an AnimateDiff v1 motion module cannot normalise them over the video.",
                                  "connect an SD1.5 checkpoint's MODEL, or use a v2/v3 motion module.")
    return layers


def joint_norm_hooks(unet) -> list:
    """``[(module, JointGroupNorm), ...]`` currently inside ``unet`` (for tests and diagnostics)."""
    return [(m, hook) for m in unet.modules() for hook in JointGroupNorm.on(m)]


def _videos_for_joint_norms(executor, x, *args, **kwargs):
    """DIFFUSION_MODEL wrapper (v1 only): the video count of this UNet call for the JointGroupNorm hooks."""
    transformer_options = args[4] if len(args) > 4 else kwargs.get("transformer_options", {})
    videos, _ = frames_per_video(x.shape[0], transformer_options)
    token = _JOINT_VIDEOS.set(videos)
    try:
        return executor(x, *args, **kwargs)
    finally:
        _JOINT_VIDEOS.reset(token)


# --- the motion modules as their own ModelPatcher ------------------------------------------------------

class MotionModulePatcher(comfy.model_patcher.ModelPatcher):
    """A ModelPatcher around a :class:`MotionModuleSet` (a plain torch module: no ``get_dtype``)."""

    def model_dtype(self):
        return next(self.model.parameters()).dtype

    def load(self, device_to=None, lowvram_model_memory=0, force_patch_weights=False, full_load=False):
        # Plain torch layers cannot be cast to the device per call as ComfyUI's ops are in low-VRAM mode, so
        # the modules always load completely (buffers such as the position encodings included).
        return super().load(device_to, 0, force_patch_weights, True)


def motion_patcher(model: comfy.model_patcher.ModelPatcher) -> Optional[MotionModulePatcher]:
    found = model.get_additional_models_with_key(KEY)
    return found[0] if found else None


def has_motion_modules(model) -> bool:
    return isinstance(model, comfy.model_patcher.ModelPatcher) and motion_patcher(model) is not None


def set_motion_patcher(model: comfy.model_patcher.ModelPatcher, patcher: MotionModulePatcher) -> None:
    """Swap the motion modules' patcher of ``model`` (a clone), e.g. for one carrying adapter patches."""
    model.set_additional_models(KEY, [patcher])


def motion_options(model: comfy.model_patcher.ModelPatcher) -> MotionOptions:
    return model.model_options["transformer_options"][KEY]


def set_motion_options(model: comfy.model_patcher.ModelPatcher, options: MotionOptions) -> None:
    model.model_options["transformer_options"][KEY] = options


def without_motion_modules(model: comfy.model_patcher.ModelPatcher) -> comfy.model_patcher.ModelPatcher:
    """A clone that samples as the image model again (no injection, no motion patcher)."""
    image = model.clone()
    image.remove_injections(KEY)
    image.remove_additional_models(KEY)
    image.remove_wrappers_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, KEY)
    image.remove_wrappers_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, KEY)
    image.model_options["transformer_options"].pop(KEY, None)
    return image


def augment_motion_modules(model: comfy.model_patcher.ModelPatcher, pyramid, strength: float, window) -> None:
    """Motion-I2V stage 2 on the motion modules of ``model`` (a clone): every temporal attention of every
    module attends over ``[h0, w1, h1, ...]`` with the position encoding over the interleaved positions."""
    options = motion_options(model)
    frames = int(pyramid.flow.shape[0])
    if 2 * frames - 1 > options.max_len:
        raise MotionKitInputError(
            AUGMENTED, "motion_field", f"the field has {frames} frames: the interleaved sequence has {2 * frames - 1} "
            f"positions but '{options.name}' encodes at most {options.max_len}.",
            f"use at most {(options.max_len + 1) // 2} frames with this motion module.")
    set_motion_options(model, replace(options, augment=AugmentSpec(pyramid, float(strength), window)))


# --- injection ---------------------------------------------------------------------------------------

def _slot_position(block: nn.Sequential, container: str) -> int:
    """After the block's ResBlock/SpatialTransformer, before an upsampler (output blocks) or the second
    ResBlock (middle block)."""
    if container == "middle_block":
        return 2
    return len(block) - 1 if isinstance(block[-1], Upsample) else len(block)


def _unet_block(unet, site: str) -> tuple:
    container, index = ldm_position(site)
    block = unet.middle_block if index is None else getattr(unet, container)[index]
    return block, container


def _inject(patcher: comfy.model_patcher.ModelPatcher) -> None:
    modules: MotionModuleSet = motion_patcher(patcher).model
    unet = patcher.model.diffusion_model
    _eject(patcher)   # never two sets, even after a run that died between inject and eject
    for site, module in modules.sites():
        block, container = _unet_block(unet, site)
        block.insert(_slot_position(block, container), MotionModuleSlot(site, module))
    if modules.spec.joint_norms:
        for norm in joint_norm_layers(unet):
            JointGroupNorm(norm)


def _eject(patcher: comfy.model_patcher.ModelPatcher) -> None:
    unet = patcher.model.diffusion_model
    for block in [*unet.input_blocks, unet.middle_block, *unet.output_blocks]:
        for i in reversed(range(len(block))):
            if isinstance(block[i], MotionModuleSlot):
                del block[i]
    for _, hook in joint_norm_hooks(unet):
        hook.remove()


def _eject_after_sampling(executor, *args, **kwargs):
    """OUTER_SAMPLE wrapper: the modules live in the UNet only while this sampling runs."""
    patcher = executor.class_obj.model_patcher
    try:
        return executor(*args, **kwargs)
    finally:
        patcher.eject_model()


def injected_sites(unet) -> list:
    """The motion modules currently inside ``unet`` (for tests and diagnostics)."""
    return [m.site for m in unet.modules() if isinstance(m, MotionModuleSlot)]


def check_sd15_unet(model: comfy.model_patcher.ModelPatcher, modules: MotionModuleSet, name: str) -> None:
    """The modules fit this UNet: SD1.5 block layout, no temporal layers of its own, matching widths."""
    unet = unet_of(model, LOADER)
    blocks = (getattr(unet, "input_blocks", None), getattr(unet, "output_blocks", None))
    if any(b is None or len(b) != 12 for b in blocks) or not hasattr(unet, "middle_block"):
        raise MotionKitInputError(LOADER, "model", f"this MODEL ({type(model.model).__name__}) does not have the SD1.5 "
                                  "UNet layout (12 input and 12 output blocks).",
                                  "connect an SD1.5 checkpoint's MODEL (SDXL and other models are not supported).")
    if any(".time_stack." in f"{n}." for n, _ in named_modules(model)):
        raise MotionKitInputError(LOADER, "model", "this MODEL already has temporal layers (Stable Video Diffusion).",
                                  "connect an SD1.5 image model; SVD needs no motion module.")
    for site, module in modules.sites():
        block, _ = _unet_block(unet, site)
        res = next((m for m in block if isinstance(m, ResBlock)), None)
        width = module.temporal_transformer.norm.num_channels
        if res is None or res.out_channels != width:
            raise MotionKitInputError(
                LOADER, "motion_module", f"'{name}' has {width} channels at {site} but the UNet has "
                f"{getattr(res, 'out_channels', '?')} there.",
                "use a motion module made for this base model family (SD1.5 modules for SD1.5 checkpoints).")


def load_motion_modules(path: str, name: str) -> MotionModuleSet:
    try:
        return motion_module_set(read_weights(path))
    except MotionModuleFormatError as e:
        raise MotionKitInputError(LOADER, "motion_module", f"'{name}' is not a motion module: {e}.",
                                  "choose an AnimateDiff v1/v2/v3 motion module (e.g. mm_sd_v15_v2.ckpt), Motion-I2V's "
                                  "motion_block.bin, or a Follow-Your-Click checkpoint.") from None


def apply_motion_modules(model: comfy.model_patcher.ModelPatcher, modules: MotionModuleSet,
                         name: str) -> comfy.model_patcher.ModelPatcher:
    """A clone of ``model`` that samples the latent batch as the frames of one video."""
    check_sd15_unet(model, modules, name)
    dtype = model.model.manual_cast_dtype or model.model_dtype()
    if dtype not in (torch.float16, torch.bfloat16, torch.float32):
        dtype = torch.float16   # fp8-stored UNets compute in half precision; so do the modules
    modules.to(dtype)
    patched = model.clone()
    patched.set_additional_models(KEY, [MotionModulePatcher(modules, load_device=model.load_device,
                                                            offload_device=model.offload_device)])
    patched.set_injections(KEY, [comfy.patcher_extension.PatcherInjection(inject=_inject, eject=_eject)])
    patches = patched.model_options["transformer_options"].setdefault("patches", {})
    patches["forward_timestep_embed_patch"] = [p for p in patches.get("forward_timestep_embed_patch", [])
                                               if p[0] is not MotionModuleSlot]
    patched.set_model_forward_timestep_embed_patch((MotionModuleSlot, _run_slot))
    patched.remove_wrappers_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, KEY)
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, KEY, _eject_after_sampling)
    patched.remove_wrappers_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, KEY)
    if modules.spec.joint_norms:
        joint_norm_layers(patched.get_model_object("diffusion_model"))   # refuses UNets without GroupNorms there
        patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, KEY, _videos_for_joint_norms)
    set_motion_options(patched, MotionOptions(name=name, max_len=modules.spec.max_len))
    return patched


class MotionKitLoadMotionModule:
    DESCRIPTION = (
        "Turns an SD1.5 MODEL into a video model: the latent batch is sampled as the frames of one video, with "
        "AnimateDiff-style motion modules mixing the frames after each block (v1 and v3 without, v2 with a mid "
        "block). Reads AnimateDiff v1/v2/v3 files, Motion-I2V's motion_block.bin and the motion-module part of a "
        "Follow-Your-Click checkpoint; the layout, widths and position-encoding length come from the file's keys "
        "and shapes. Files are read safely (safetensors, or pickles with weights_only). The modules enter the UNet "
        "only while sampling and leave it afterwards, also when sampling fails or is interrupted. Works beside "
        "AnimateDiff-Evolved (same 'animatediff_models' folder, no shared nodes or global patches). LoRAs, "
        "All-to-First, Motion-Augmented Attention and Still-Moving adapters stack on the output. As in official "
        "AnimateDiff v1, v1-layout files (AnimateDiff v1, Follow-Your-Click) also make the UNet's ResNet-block and "
        "output GroupNorms take their statistics over all frames of the video while sampling (v2, v3 and "
        "Motion-I2V normalise per frame).")
    CATEGORY = "MotionKit"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "An SD1.5 model (checkpoint or UNet loader, optionally with LoRAs)."}),
            "motion_module": (folder_paths.get_filename_list(MOTION_MODELS), {
                "tooltip": "A motion-module file from models/animatediff_models (e.g. mm_sd_v15_v2.ckpt, "
                           "Motion-I2V's motion_block.bin)."}),
        }}

    def load(self, model, motion_module):
        model = require_model(LOADER, model)
        path = folder_paths.get_full_path(MOTION_MODELS, motion_module) if isinstance(motion_module, str) else None
        if path is None:
            raise MotionKitInputError(LOADER, "motion_module", f"'{motion_module}' is not in the "
                                      f"{MOTION_MODELS} folders {folder_paths.get_folder_paths(MOTION_MODELS)}.",
                                      "put the motion module there and refresh (press R) or pick another file.")
        modules = load_motion_modules(path, motion_module)
        log.info("MotionKit: %s: %s", motion_module, modules.spec.describe())
        return (apply_motion_modules(model, modules, motion_module),)


# --- the first frame for image-to-video (Motion-I2V stage 2) ---------------------------------------------

class MotionKitFirstFrameLatent:
    DESCRIPTION = (
        "An SD1.5 video latent whose first frame is the encoded image and stays fixed while sampling (a noise "
        "mask of 0 on frame 0 and 1 elsewhere), as Motion-I2V's stage 2 anchors frame 0 to the input image. "
        "The other frames start from noise.")
    CATEGORY = "MotionKit"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "vae": ("VAE",),
            "image": ("IMAGE", {"tooltip": "The first frame (resized and centre-cropped to width x height)."}),
            "width": ("INT", {"default": 512, "min": 64, "max": 4096, "step": 8}),
            "height": ("INT", {"default": 320, "min": 64, "max": 4096, "step": 8}),
            "video_frames": ("INT", {"default": 16, "min": 2, "max": 256,
                                     "tooltip": "Frames of the video (the latent batch size)."}),
        }}

    def encode(self, vae, image, width, height, video_frames):
        if not torch.is_tensor(image) or image.ndim != 4:
            raise MotionKitInputError(FIRST_FRAME, "image", "expected an IMAGE.", "connect a Load Image output.")
        if width % 8 or height % 8:
            raise MotionKitInputError(FIRST_FRAME, "width", f"{width}x{height} is not a multiple of 8.",
                                      "use sizes divisible by 8.")
        first = comfy.utils.common_upscale(image[:1, :, :, :3].movedim(-1, 1), width, height, "bilinear", "center")
        latent = vae.encode(first.movedim(1, -1))
        frames = torch.zeros((int(video_frames), *latent.shape[1:]), dtype=latent.dtype)
        frames[0] = latent[0]
        mask = torch.ones((int(video_frames), 1, *latent.shape[-2:]), dtype=torch.float32)
        mask[0] = 0.0
        return ({"samples": frames, "noise_mask": mask},)


NODE_CLASS_MAPPINGS = {
    "MotionKitLoadMotionModule": MotionKitLoadMotionModule,
    "MotionKitFirstFrameLatent": MotionKitFirstFrameLatent,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "MotionKitLoadMotionModule": "Load Motion Module (AnimateDiff-compatible)",
    "MotionKitFirstFrameLatent": "First-Frame Video Latent (SD1.5)",
}
