"""Helpers shared by MotionKit's patch nodes: input checks with clear errors, finding attention layers
in ComfyUI's UNets, and the sampling-window gate. This is the only place that knows ComfyUI's module
layout, so the nodes stay thin."""
from __future__ import annotations

import logging
import re
import types
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

import torch

import comfy.ldm.modules.attention as comfy_attention
import comfy.model_management
import comfy.model_patcher
from comfy.ldm.modules.attention import BasicTransformerBlock, CrossAttention

from ..modules.layout import videos_in_batch

log = logging.getLogger("MotionKit")


class MotionKitInputError(ValueError):
    """A user-facing error: names the node, the input, what is wrong and how to fix it."""

    def __init__(self, node: str, input_name: str, problem: str, fix: str):
        self.node, self.input_name = node, input_name
        super().__init__(f"[MotionKit] {node}, input '{input_name}': {problem} Fix: {fix}")


def require_model(node: str, model: Any, input_name: str = "model") -> comfy.model_patcher.ModelPatcher:
    if not isinstance(model, comfy.model_patcher.ModelPatcher):
        raise MotionKitInputError(
            node, input_name, f"expected a MODEL, got {type(model).__name__}.",
            "connect the MODEL output of a checkpoint loader (e.g. 'Image Only Checkpoint Loader (img2vid model)').")
    return model


def require_range(node: str, name: str, value: float, lo: float, hi: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise MotionKitInputError(node, name, f"expected a number, got {value!r}.", f"use a value in [{lo}, {hi}].")
    if not (lo <= value <= hi):  # also rejects NaN
        raise MotionKitInputError(node, name, f"{value} is outside [{lo}, {hi}].", f"use a value in [{lo}, {hi}].")
    return value


def require_percent_window(node: str, start: float, end: float) -> tuple[float, float]:
    start = require_range(node, "start_percent", start, 0.0, 1.0)
    end = require_range(node, "end_percent", end, 0.0, 1.0)
    if start > end:
        raise MotionKitInputError(node, "start_percent", f"start_percent {start} is after end_percent {end}.",
                                  "set start_percent <= end_percent (0 is the first step, 1 the last).")
    return start, end


@dataclass(frozen=True)
class AttentionSite:
    """One attention module of the diffusion model, by its object-patch path."""
    path: str              # e.g. "diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1"
    module: CrossAttention


_SPATIAL_BLOCK = re.compile(r"(^|\.)transformer_blocks\.\d+$")
_TEMPORAL_BLOCK = re.compile(r"(^|\.)time_stack\.\d+$")


def model_object(model: comfy.model_patcher.ModelPatcher, path: str) -> Any:
    """``path`` (e.g. ``"diffusion_model.input_blocks.1.1"``) as *this clone* sees it.

    ComfyUI keeps the last sampled clone loaded with its object patches applied to the one network that
    all clones share, and clones share ``object_patches_backup``. Walking the live tree would therefore
    find another clone's (another pack's) replacement modules. Here each prefix of the path resolves to
    this clone's own object patch if it has one, else to the original that the loaded clone backed up,
    else to the attribute of the (so resolved) parent: the network exactly as this clone will run it.
    ``ModelPatcher.get_model_object`` does the same for the full path only, not for its prefixes.
    """
    own, backup = model.object_patches, model.object_patches_backup
    obj, prefix = model.model, ""
    for part in path.split("."):
        prefix = f"{prefix}.{part}" if prefix else part
        if prefix in own:
            obj = own[prefix]
        elif prefix in backup:
            obj = backup[prefix]
        else:
            obj = getattr(obj, part)
    return obj


def named_modules(model: comfy.model_patcher.ModelPatcher, root: str = "diffusion_model") -> Iterator[tuple[str, torch.nn.Module]]:
    """``(path, module)`` for ``root`` and every module below it, in this clone's own view
    (:func:`model_object`), in ``nn.Module.named_modules`` order; paths are full object-patch paths."""
    own, backup = model.object_patches, model.object_patches_backup
    stack = [(root, model_object(model, root))]
    seen = set()
    while stack:
        path, module = stack.pop()
        if id(module) in seen:
            continue
        seen.add(id(module))
        yield path, module
        children = []
        for name, child in module.named_children():
            child_path = f"{path}.{name}"
            child = own.get(child_path, backup.get(child_path, child))
            if isinstance(child, torch.nn.Module):
                children.append((child_path, child))
        stack.extend(reversed(children))


def unet(model: comfy.model_patcher.ModelPatcher, node: str) -> torch.nn.Module:
    """The diffusion model (UNet) in this clone's own view, or a clear error for models without one."""
    try:
        found = model_object(model, "diffusion_model")
    except AttributeError:
        found = None
    if not isinstance(found, torch.nn.Module):
        raise MotionKitInputError(
            node, "model", f"this MODEL ({type(model.model).__name__}) has no diffusion UNet.",
            "connect a Stable Video Diffusion or SD1.5 UNet model.")
    return found


def _blocks(model: comfy.model_patcher.ModelPatcher, node: str, pattern: re.Pattern) -> Iterator[tuple[str, BasicTransformerBlock]]:
    unet(model, node)
    for path, module in named_modules(model):
        if isinstance(module, BasicTransformerBlock) and pattern.search(path):
            yield path, module


def _attn1(model: comfy.model_patcher.ModelPatcher, node: str, block_path: str) -> "AttentionSite":
    path = f"{block_path}.attn1"
    module = model_object(model, path)
    if not isinstance(module, CrossAttention):
        raise MotionKitInputError(
            node, "model", f"{path} of this MODEL is a {type(module).__name__}, not ComfyUI's attention layer: a node "
            "earlier in this branch replaced it.",
            "apply MotionKit's node before the node that replaces attention modules, or remove that node.")
    return AttentionSite(path, module)


def spatial_self_attention(model: comfy.model_patcher.ModelPatcher, node: str) -> list[AttentionSite]:
    """The spatial self-attentions (``transformer_blocks.N.attn1``) of a UNet, chosen by module path.

    Selecting by path, not by token shape, cannot confuse SVD's temporal attention (``time_stack``)
    with spatial attention, even when h*w equals the frame count.
    """
    sites = [_attn1(model, node, path) for path, block in _blocks(model, node, _SPATIAL_BLOCK)
             if not getattr(block, "disable_self_attn", False)]
    if not sites:
        raise MotionKitInputError(
            node, "model", f"found no spatial self-attention layers in {type(model.model).__name__}.",
            "this node patches UNet video models (Stable Video Diffusion, or SD1.5 sampled as frames); "
            "connect one of those.")
    return sites


def temporal_self_attention(model: comfy.model_patcher.ModelPatcher, node: str) -> list[AttentionSite]:
    """SVD's temporal self-attentions (``time_stack.N.attn1``)."""
    sites = [_attn1(model, node, path) for path, block in _blocks(model, node, _TEMPORAL_BLOCK)]
    if not sites:
        raise MotionKitInputError(
            node, "model", f"found no temporal attention layers in {type(model.model).__name__}.",
            "connect a Stable Video Diffusion model (its UNet has time_stack temporal attention).")
    return sites


def patch_forwards(patched: comfy.model_patcher.ModelPatcher, sites: list[AttentionSite],
                   make: Callable[[AttentionSite, Callable], Any], kind: type) -> None:
    """Object-patch each site's ``forward`` with ``make(site, inner)``.

    ``inner`` is what runs there in this clone: another node's patch (chained onto), else the class's own
    forward bound to the module, never a forward some other clone left installed on the shared module. An
    earlier patch of the same ``kind`` (with an ``inner`` attribute) is replaced, never stacked on.
    """
    for site in sites:
        key = f"{site.path}.forward"
        inner = patched.object_patches.get(key) or types.MethodType(type(site.module).forward, site.module)
        if isinstance(inner, kind):
            inner = inner.inner
        patched.add_object_patch(key, make(site, inner))


class SigmaWindow:
    """Active between ``start_percent`` and ``end_percent`` of the sampling schedule.

    Same convention as ComfyUI's ControlNet ``timestep_percent_range``: percents are converted to
    sigmas with the model's own ``model_sampling`` once, and a call is active when
    ``sigma_end <= sigma <= sigma_start``.
    """

    def __init__(self, model: comfy.model_patcher.ModelPatcher, start_percent: float, end_percent: float):
        sampling = model.get_model_object("model_sampling")
        self.sigma_start = float(sampling.percent_to_sigma(start_percent))
        self.sigma_end = float(sampling.percent_to_sigma(end_percent))

    def active(self, transformer_options: dict) -> bool:
        sigmas = transformer_options.get("sigmas")
        if sigmas is None:  # called outside a sampler: nothing to gate on
            return True
        sigma = float(sigmas.reshape(-1)[0])
        return self.sigma_end <= sigma <= self.sigma_start


def frames_per_video(batch: int, transformer_options: dict) -> tuple[int, int]:
    """``(videos, frames)`` of a UNet batch: one video of T frames per cond/uncond chunk."""
    return videos_in_batch(batch, len(transformer_options.get("cond_or_uncond") or [None]))


# --- host differences -------------------------------------------------------------------------------
# Everything MotionKit needs from ComfyUI that changed between the hosts it supports (v0.3.64 ... v0.33.0)
# or that newer hosts are known to change, so the nodes never test versions themselves.

_Container = getattr(comfy_attention, "AttentionTensorContainer", None)      # v0.3x: q/k/v handed over
_ComfyAttention = getattr(comfy_attention, "ComfyAttention", None)             # newer: per-layer backend


def _preferred_attention(layer: torch.nn.Module) -> Any:
    """The per-layer attention backend a newer host's ``CrossAttention`` owns (a ``ComfyAttention``
    submodule, passed as ``preferred_attention``), or ``None`` where layers have none (v0.3.64, v0.33.0)."""
    if _ComfyAttention is None:
        return None
    return next((m for m in layer.children() if isinstance(m, _ComfyAttention)), None)


def attention(layer: torch.nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, transformer_options: dict,
              **kwargs) -> torch.Tensor:
    """Scaled dot-product attention of ``(B, L, heads*d)`` tensors, dispatched the way the host's own
    ``CrossAttention`` dispatches ``layer``: ComfyUI's configured backend (``optimized_attention``, looked up
    at call time), the layer's ``attn_precision``, ``transformer_options`` (so an
    ``optimized_attention_override`` set by a sampler or another node applies), and on hosts whose layers own
    a preferred backend, that backend with q/k/v handed over in ``AttentionTensorContainer`` s."""
    heads = kwargs.pop("heads", None) or layer.heads
    kwargs.setdefault("attn_precision", getattr(layer, "attn_precision", None))
    preferred = _preferred_attention(layer)
    if preferred is not None:
        kwargs["preferred_attention"] = preferred
        if _Container is not None:
            q, k, v = _Container(q), _Container(k), _Container(v)
    return comfy_attention.optimized_attention(q, k, v, heads, transformer_options=transformer_options, **kwargs)


def plain_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int,
                    transformer_options: Optional[dict] = None, **kwargs) -> torch.Tensor:
    """The host's configured attention (looked up at call time) for MotionKit's own layers (motion modules,
    Motion-I2V's UNet), with ``transformer_options`` when there are any (sampler overrides apply)."""
    if transformer_options is not None:
        kwargs["transformer_options"] = transformer_options
    return comfy_attention.optimized_attention(q, k, v, heads, **kwargs)


def is_dynamic(model: Any) -> bool:
    """Whether ``model`` is loaded by Dynamic VRAM (``ModelPatcherDynamic``, comfy-aimdo; v0.3x+ on NVIDIA):
    its weights are streamed to the GPU per layer, so it cannot be fully loaded or patched outside
    ``load_models_gpu``."""
    return bool(getattr(model, "is_dynamic", lambda: False)())


def load_for_compute(models: list, memory_required: int = 0) -> None:
    """Load ``models`` (ModelPatchers) on their device the way the host allows, for MotionKit's own compute
    outside a sampler (trainers, the SAM and Motion-I2V predictors): fully where the legacy loader can
    (plain torch layers cannot be cast per call in its low-VRAM mode), and through Dynamic VRAM's own
    loading where that loader manages the model (it refuses ``full_load`` and streams weights per layer)."""
    full = not any(is_dynamic(m) for m in models)
    comfy.model_management.load_models_gpu(models, memory_required=memory_required, force_full_load=full)


# --- SVD conditioning for the trainers -----------------------------------------------------------------

def svd_image_conditioning(clip_vision, vae, image: torch.Tensor, width: int, height: int, frames: int,
                           motion_bucket_id: int, fps: int, augmentation_level: float) -> list:
    """The positive CONDITIONING ComfyUI's ``SVD_img2vid_Conditioning`` makes for ``image`` [1, H, W, 3]."""
    from comfy_extras.nodes_video_model import SVD_img2vid_Conditioning
    positive, _, _ = SVD_img2vid_Conditioning().encode(clip_vision, image, vae, width, height, frames,
                                                       motion_bucket_id, fps, augmentation_level)
    return positive


def svd_model_conds(model: comfy.model_patcher.ModelPatcher, positive: list, latent: torch.Tensor) -> dict:
    """``apply_model`` keyword arguments (``c_concat``, ``c_crossattn``, ``y``, ``num_video_frames``) of an SVD
    positive CONDITIONING for the latent video ``latent`` [T, C, h, w] (model space), as sampling builds them."""
    pooled, extra = positive[0]
    made = model.model.extra_conds(noise=latent, cross_attn=pooled, device=latent.device, **extra)
    conds = {k: c.process_cond(batch_size=latent.shape[0], area=None).concat([]) for k, c in made.items()}
    return {k: v.clone() if torch.is_tensor(v) else v for k, v in conds.items()}
