"""Puppet-Master (arXiv 2408.04631): its official checkpoint on ComfyUI's own SVD network, and drags.

Load Puppet-Master reads the official diffusers-format UNet (``model.safetensors``, 1664 keys) and returns a
MODEL made of ComfyUI's stock pieces (the spec is ``../shared/research/puppet_master.md`` §3-4; the equations are
in ``modules/puppet_master.py``):

- ComfyUI's own SVD ``UNetModel`` (detected and built by ``comfy.sd.load_diffusion_model_state_dict``) from the
  1424 renamed base keys plus four zero ``label_emb`` tensors (Puppet-Master has no fps / motion-bucket
  embedding; zero weights make that term exactly 0 and let ComfyUI detect the file as SVD img2vid);
- the 240 drag-module keys as a plain torch :class:`DragAdapter`, held as an additional model
  (:class:`DragAdapterPatcher`) that ComfyUI loads and offloads with the UNet;
- object patches on the ``forward`` of the 15 ``SpatialVideoTransformer`` s that the drag sites feed
  (:class:`DragSiteForward`: FiLM on the input, drag tokens appended to the cross-attention context), and
- all-to-first attention at strength 1 on every spatial self-attention (MotionKit's All-to-First patch): the
  weights were trained with it.

The configuration comes from the tensors' shapes, so a small file in the official layout takes the same path
as the real one. The file is read key by key with plain reads (``modules/safetensors_stream.py``) and cast
into the already allocated weights as it goes: loading the 6.7 GB fp32 file into an fp16 model holds one
fp16 copy of the weights plus one tensor of the file.

Puppet-Master Drags sets the drags on a clone; each drag site reads them per UNet call from
``transformer_options``: the cond video (``cond_or_uncond`` entry 0) gets them, the uncond video (1) zero
drags, whatever the chunk order and also when cond and uncond run in separate calls. The drag maps depend
only on the drags, so each site's FiLM scale and shift are computed once per sampling run (and freed after).
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

import comfy.model_base
import comfy.model_detection
import comfy.model_management
import comfy.model_patcher
import comfy.ops
import comfy.patcher_extension
import comfy.sd
import comfy.supported_models
import comfy.utils
import folder_paths
from comfy.ldm.modules.attention import SpatialVideoTransformer
from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

from ..modules import puppet_master as pm
from ..modules.safetensors_stream import SafetensorsError, read_header, read_tensor
from ..modules.tracks import read_tracks
from ._comfy import MotionKitInputError, SigmaWindow, model_object, patch_forwards, require_model, spatial_self_attention
from .all_to_first import AllToFirstForward
from .motion_modules import MotionModulePatcher
from .trajectories import user_errors

log = logging.getLogger("MotionKit")

MODEL_FOLDER = "puppet_master"
ALSO_FROM = "diffusion_models"
KEY = "MotionKit.puppet_master"       # additional models, wrappers, transformer_options
LOADER = "Load Puppet-Master (MotionKitPuppetMasterLoader)"
DRAGS = "Puppet-Master Drags (MotionKitPuppetMasterDrags)"
EXTENSIONS = (".safetensors", ".sft")
COND, UNCOND = 0, 1
DOWNLOAD = ("the Puppet-Master UNet, ckpts/model.safetensors of the Hugging Face Space rayli/Puppet-Master "
            "(6.7 GB), in models/puppet_master/")


def register_model_folder() -> None:
    folder_paths.add_model_folder_path(MODEL_FOLDER, os.path.join(folder_paths.models_dir, MODEL_FOLDER))
    paths, extensions = folder_paths.folder_names_and_paths[MODEL_FOLDER]
    folder_paths.folder_names_and_paths[MODEL_FOLDER] = (paths, set(extensions) | set(EXTENSIONS))


register_model_folder()


def model_files() -> list:
    """Safetensors files in models/puppet_master, then those of models/diffusion_models not listed yet."""
    own = [f for f in folder_paths.get_filename_list(MODEL_FOLDER) if f.lower().endswith(EXTENSIONS)]
    also = [f for f in folder_paths.get_filename_list(ALSO_FROM) if f.lower().endswith(EXTENSIONS) and f not in own]
    return own + also


def model_path(name: str) -> Optional[str]:
    if not isinstance(name, str):
        return None
    return folder_paths.get_full_path(MODEL_FOLDER, name) or folder_paths.get_full_path(ALSO_FROM, name)


# --- per-clone settings ------------------------------------------------------------------------------

@dataclass(frozen=True)
class PuppetMasterOptions:
    """What the drag sites read from ``transformer_options[KEY]``: the model's drag count and the drags of the
    cond video (``None``: zero drags for every video). Shared by clones (immutable apart from the per-run
    cache, which the OUTER_SAMPLE wrapper opens and clears)."""
    name: str
    num_drags: int
    drags: Optional[torch.Tensor] = None       # (F, K, 4) float32, padded to num_drags
    summary: str = "no drags"
    cache: dict = field(default_factory=dict, compare=False)
    run: list = field(default_factory=lambda: [0], compare=False)   # active sampling runs

    def __deepcopy__(self, memo):   # clones share it (ModelPatcher.clone deep-copies model_options)
        return self

    def cached(self, key, make: Callable):
        if not self.run[0]:
            return make()
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]


def options_of(model: comfy.model_patcher.ModelPatcher) -> Optional[PuppetMasterOptions]:
    found = model.model_options.get("transformer_options", {}).get(KEY)
    return found if isinstance(found, PuppetMasterOptions) else None


class PerRunCache:
    """OUTER_SAMPLE wrapper: the drag sites' per-run cache (FiLM scale/shift, position samples) exists only
    while this sampling runs; it starts empty and is freed afterwards, also on errors and interrupts."""

    def __call__(self, executor, *args, **kwargs):
        options = executor.class_obj.model_options.get("transformer_options", {}).get(KEY)
        if not isinstance(options, PuppetMasterOptions):
            return executor(*args, **kwargs)
        options.cache.clear()
        options.run[0] += 1
        try:
            return executor(*args, **kwargs)
        finally:
            options.run[0] -= 1
            options.cache.clear()


# --- the drag modules as an additional model --------------------------------------------------------------

class DragAdapterPatcher(MotionModulePatcher):
    """A ModelPatcher around the :class:`~..modules.puppet_master.DragAdapter` (plain torch layers, always
    loaded completely, as MotionKit's motion modules)."""


def adapter_of(model: comfy.model_patcher.ModelPatcher) -> Optional[pm.DragAdapter]:
    found = model.get_additional_models_with_key(KEY)
    return found[0].model if found else None


# --- the patched drag site ------------------------------------------------------------------------------

class DragSiteForward:
    """Stands in for one ``SpatialVideoTransformer.forward`` that a Puppet-Master drag site feeds: FiLM from
    the site's DragEmbedding, then the drag tokens appended to the context (and to ``time_context`` when some
    node set one), then the transformer it replaces (``inner``) with the modulated input."""

    def __init__(self, index: int, site: pm.DragSite, adapter: pm.DragAdapter, inner: Callable):
        self.index, self.site, self.adapter, self.inner = index, site, adapter, inner

    def __call__(self, x, context=None, time_context=None, timesteps=None, image_only_indicator=None,
                 transformer_options={}):
        options = transformer_options.get(KEY)
        if not isinstance(options, PuppetMasterOptions):   # not set by the loader's clone: zero drags
            options = PuppetMasterOptions(name="", num_drags=self.adapter.config.num_drags)
        frames = int(timesteps) if timesteps else x.shape[0]
        kinds = self._kinds(x.shape[0], frames, transformer_options)
        height, width = x.shape[-2:]
        if height != width:
            raise MotionKitInputError(
                LOADER, "model", f"Puppet-Master's drag maps are square, but this video's latent is {width}x{height}.",
                "set SVD_img2vid_Conditioning's width and height to the same value (256, as Puppet-Master was "
                "trained).")
        embedding, mlp = self._modules(x.device)
        dtype = embedding.conv_in.weight.dtype
        out = torch.empty_like(x)
        tokens = x.new_zeros(x.shape[0], options.num_drags, mlp[2].weight.shape[0])
        for chunk, kind in enumerate(kinds):
            rows = slice(chunk * frames, (chunk + 1) * frames)
            drags = options.drags if kind == COND else None
            if drags is not None and drags.shape[0] != frames:
                raise MotionKitInputError(
                    DRAGS, "tracks", f"the drags have {drags.shape[0]} frames but the video has {frames}.",
                    f"make the trajectories with num_frames = SVD_img2vid_Conditioning's video_frames "
                    f"({pm.OFFICIAL_FRAMES} for Puppet-Master).")
            which = "zero" if drags is None else "drags"
            scale, shift = options.cached(("film", self.index, which, frames, width, str(x.device), x.dtype),
                                          lambda: self._film(embedding, drags, frames, width, x, dtype, options))
            torch.addcmul(shift, x[rows], scale, out=out[rows])
            if drags is not None:
                valid, any_valid = options.cached(("valid", str(x.device)), lambda: _validity(drags, x.device))
                if any_valid:
                    tokens[rows] = self._tokens(out[rows], drags, valid, mlp, width, options).to(tokens.dtype)
        context = torch.cat([context, tokens.to(context.dtype)], dim=1)
        if time_context is not None and time_context.shape[0] == x.shape[0]:
            time_context = torch.cat([time_context, tokens.to(time_context.dtype)], dim=1)
        return self.inner(out, context, time_context, timesteps, image_only_indicator, transformer_options)

    @staticmethod
    def _kinds(batch: int, frames: int, transformer_options: dict) -> list:
        if batch % frames:
            raise RuntimeError(f"[MotionKit] {LOADER}: a batch of {batch} frames is not whole videos of {frames}.")
        chunks = batch // frames
        kinds = transformer_options.get("cond_or_uncond")
        if not kinds:          # called outside a sampler: every video is conditional
            return [COND] * chunks
        if len(kinds) != chunks:
            raise RuntimeError(f"[MotionKit] {LOADER}: cond_or_uncond {list(kinds)} does not describe a batch of "
                               f"{chunks} videos of {frames} frames.")
        return list(kinds)

    def _modules(self, device: torch.device):
        embedding, mlp = self.adapter.site_modules(self.site)
        if embedding.conv_in.weight.device != device:   # ComfyUI offloaded the adapter under memory pressure
            self.adapter.to(device)
            embedding, mlp = self.adapter.site_modules(self.site)
        return embedding, mlp

    def _film(self, embedding, drags, frames: int, resolution: int, x: torch.Tensor, dtype, options):
        """``(1 + gamma, beta)`` in x's dtype: ``(frames, C, r, r)`` for drags, ``(1, C, r, r)`` for zero drags
        (their map is -1 everywhere in every frame)."""
        if drags is None:
            maps = torch.full((1, pm.MAP_CHANNELS * options.num_drags, resolution, resolution), -1.0,
                              device=x.device, dtype=dtype)
        else:
            maps = pm.drag_maps(drags.to(x.device), resolution).to(dtype)
        gamma, beta = embedding(maps).chunk(2, dim=1)
        return (1 + gamma).to(x.dtype), beta.to(x.dtype)

    def _tokens(self, modulated, drags, valid, mlp, resolution: int, options):
        device, dtype = modulated.device, modulated.dtype
        frame_drags = options.cached(("drags", str(device), dtype), lambda: drags.to(device, dtype))
        table = options.cached(("table", resolution, str(device), dtype),
                               lambda: pm.sincos_table(self.adapter.config.pos_dim, resolution).to(device, dtype))
        positions = options.cached(("positions", resolution, str(device), dtype),
                                   lambda: pm.position_features(table, frame_drags))
        mask = valid[None].expand(modulated.shape[0], -1)
        return pm.drag_tokens(modulated, frame_drags, table, mlp, mask, positions)


def _validity(drags: torch.Tensor, device) -> tuple:
    """Which drags get tokens, on ``device``, and whether any does (decided on the CPU copy: no device sync)."""
    valid = pm.drag_validity(drags)
    return valid.to(device), bool(valid.any())


# --- loading ---------------------------------------------------------------------------------------------

def _strip_prefix(keys: list) -> str:
    for prefix in ("module.", "unet."):
        if keys and all(k.startswith(prefix) for k in keys):
            return prefix
    return ""


def _generic_unet_config(levels: int, layers: int, mult: tuple) -> dict:
    """An SVD UNet configuration of the given depth and channel multipliers at a small width (key names depend
    on where the width changes, not on the width)."""
    attn = [1 if i < levels - 1 else 0 for i in range(levels) for _ in range(layers)]
    out = [1 if i < levels - 1 else 0 for i in range(levels) for _ in range(layers + 1)]   # UNetModel pops from the end
    return {"use_checkpoint": False, "image_size": 32, "use_spatial_transformer": True, "legacy": False,
            "num_classes": "sequential", "adm_in_channels": 768, "in_channels": 8, "out_channels": 4,
            "model_channels": 32, "num_res_blocks": [layers] * levels, "transformer_depth": attn,
            "transformer_depth_output": out, "channel_mult": list(mult), "transformer_depth_middle": 1,
            "use_linear_in_transformer": True, "context_dim": 32, "extra_ff_mix_layer": True,
            "use_spatial_context": True, "merge_strategy": "learned_with_images", "merge_factor": 0.0,
            "video_kernel_size": [3, 1, 1], "use_temporal_resblock": True, "use_temporal_attention": True,
            "disable_temporal_crossattention": False, "num_heads": -1, "num_head_channels": 16}


def _meta_unet(unet_config: dict) -> dict:
    """``key -> shape`` of ComfyUI's UNetModel for ``unet_config``, built on the meta device (no memory)."""
    unet = UNetModel(**unet_config, device="meta", operations=comfy.ops.disable_weight_init)
    return {k: tuple(v.shape) for k, v in unet.state_dict().items()}


def official_layout(levels: int = 4, layers: int = 2, embedder_blocks: int = 4, mult: tuple = (1, 2, 4, 4)) -> set:
    """The checkpoint key names of a Puppet-Master UNet with this depth (official: 4 levels, 2 layers, channel
    multipliers 1, 2, 4, 4)."""
    names = {pm.diffusers_key(k, layers) for k in _meta_unet(_generic_unet_config(levels, layers, mult))
             if not k.startswith("label_emb.")}
    for kind, blocks, per in (("down", range(levels - 1), layers), ("up", range(1, levels), layers + 1)):
        for b in blocks:
            for j in range(per):
                conv = f"{kind}_blocks.{b}.flow_convs.{j}"
                names |= {f"{conv}.{n}.{p}" for n in ["conv_in", "conv_out"] + [f"blocks.{i}" for i in range(embedder_blocks)]
                          for p in ("weight", "bias")}
                names |= {f"{kind}_blocks.{b}.drag_token_mlps.{j}.{i}.{p}" for i in (0, 2) for p in ("weight", "bias")}
    return names


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _channel_mult(shapes: dict, levels: int) -> tuple:
    """Per-level width multipliers from the first ResNet of each down block (official 1, 2, 4, 4 when absent)."""
    base = shapes.get("conv_in.weight", (0,))[0]
    widths = [shapes.get(f"down_blocks.{i}.resnets.0.spatial_res_block.conv1.weight", (0,))[0] for i in range(levels)]
    if base and all(w and w % base == 0 for w in widths):
        return tuple(w // base for w in widths)
    return tuple(min(2 ** i, 4) for i in range(levels))


def _count(keys: list) -> str:
    return f"{len(keys)} key" + ("" if len(keys) == 1 else "s")


def _prefixes(keys: list, limit: int = 6) -> str:
    """``model.diffusion_model.* 686, conditioner.embedders.* 390, ...``: what kind of file this is."""
    from collections import Counter
    counts = Counter(".".join(k.split(".")[:2]) + (".*" if k.count(".") > 1 else "") for k in keys)
    return ", ".join(f"{p} {n}" for p, n in counts.most_common(limit)) + (", ..." if len(counts) > limit else "")


def _listing(keys: list, limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return f"{shown}, ... ({len(keys)} in all)" if len(keys) > limit else shown


def _not_puppet_master(name: str, problem: str) -> MotionKitInputError:
    return MotionKitInputError(
        LOADER, "unet_name", f"'{name}' is not a Puppet-Master UNet: {problem}",
        f"choose {DOWNLOAD}. A stock SVD checkpoint loads with 'Image Only Checkpoint Loader (img2vid model)'.")


@dataclass
class Layout:
    """A checked checkpoint: its header, key prefix, base key map, drag configuration and detected model."""
    header: Any
    prefix: str
    layers: int
    base: dict             # ComfyUI key -> checkpoint key
    drags: pm.DragConfig
    shapes: dict           # checkpoint key (without prefix) -> shape
    dtype: torch.dtype     # the file's (most common) dtype


def check_layout(path: str, name: str) -> Layout:
    """Read the header and check it is a Puppet-Master UNet, naming missing, unexpected and misshaped keys."""
    try:
        header = read_header(path)
    except (SafetensorsError, OSError) as e:
        raise _not_puppet_master(name, f"it cannot be read as safetensors ({e}).") from None
    keys = list(header.tensors)
    prefix = _strip_prefix(keys)
    shapes = {k[len(prefix):]: header.tensors[k].shape for k in keys}
    floats = {header.tensors[k].torch_dtype for k in keys}
    if not floats <= {torch.float16, torch.bfloat16, torch.float32, torch.float64}:
        raise _not_puppet_master(name, f"it stores {sorted(str(d) for d in floats)} tensors, not floating-point weights.")
    layers = pm.layers_per_block(shapes)
    levels = len({m.group(1) for k in shapes if (m := re.match(r"^down_blocks\.(\d+)\.", k))}) or 4
    embedder_blocks = len({m.group(1) for k in shapes if (m := re.match(r"^down_blocks\.0\.flow_convs\.0\.blocks\.(\d+)\.weight$", k))}) or 4
    expected = official_layout(levels, layers, embedder_blocks, _channel_mult(shapes, levels))
    missing, unexpected = sorted(expected - set(shapes)), sorted(set(shapes) - expected)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{_count(missing)} of the official layout {'is' if len(missing) == 1 else 'are'} missing "
                         f"({_listing(missing)})")
        if unexpected:
            parts.append(f"{_count(unexpected)} {'is' if len(unexpected) == 1 else 'are'} unexpected "
                         f"({_listing(unexpected)}; by prefix: {_prefixes(unexpected)})")
        raise _not_puppet_master(name, "; ".join(parts) + ".")
    try:
        drags = pm.drag_config({k: v for k, v in shapes.items() if pm.is_drag_key(k)}, layers)
    except pm.LayoutError as e:
        raise _not_puppet_master(name, f"its drag modules do not fit together: {e}.") from None
    base = {pm.comfy_key(k, layers): k for k in shapes if not pm.is_drag_key(k)}
    count = lambda d: sum(_numel(header.tensors[k].shape) for k in keys if header.tensors[k].torch_dtype == d)  # noqa: E731
    dtype = max(floats, key=count)
    return Layout(header, prefix, layers, base, drags, shapes, dtype)


def _placeholders(layout: Layout) -> dict:
    """The ComfyUI state dict with every base tensor as a zero-strided placeholder of its shape and the file's
    dtype (detection and ComfyUI's dtype choice see the real shapes and dtype; nothing is allocated) and
    the four zero ``label_emb`` tensors (real, small)."""
    sd = {k: torch.zeros((), dtype=layout.dtype).expand(layout.shapes[v]) for k, v in layout.base.items()}
    time_dim = layout.shapes["time_embedding.linear_1.weight"][0]
    for key, shape in zip(pm.LABEL_EMB, ((time_dim, 768), (time_dim,), (time_dim, time_dim), (time_dim,))):
        sd[key] = torch.zeros(shape, dtype=layout.dtype)
    return sd


def _detect(layout: Layout, name: str):
    sd = _placeholders(layout)
    try:
        config = comfy.model_detection.model_config_from_unet(sd, "")
    except Exception as e:   # detection indexes keys and shapes freely
        config, error = None, e
    else:
        error = None
    if config is None or not isinstance(config, comfy.supported_models.SVD_img2vid):
        found = type(config).__name__ if config is not None else "no known model"
        raise _not_puppet_master(name, f"with its keys renamed, ComfyUI detects {found} instead of an SVD img2vid UNet"
                                 + (f" ({error})" if error else "") + ".")
    want = _meta_unet(config.unet_config)
    wrong = sorted(f"{layout.base.get(k, k)} {tuple(layout.shapes[layout.base[k]]) if k in layout.base else '-'} "
                   f"(expected {shape})" for k, shape in want.items()
                   if k in layout.base and tuple(layout.shapes[layout.base[k]]) != shape)
    if wrong or set(want) != set(sd):
        raise _not_puppet_master(name, f"shapes differ from the SVD UNet they describe: {_listing(wrong)}.")
    return sd, config


def _check_drag_shapes(layout: Layout, config, name: str) -> None:
    widths = {}
    unet = _meta_unet(config.unet_config)
    for site in layout.drags.sites:
        norm = unet.get(f"{site.transformer}.norm.weight")
        widths[site] = norm[0] if norm else None
    bad = [f"{s.prefix}.flow_convs.{s.layer} gives {2 * s.channels} FiLM channels for a {widths[s]}-channel "
           f"transformer" for s in layout.drags.sites if widths[s] != s.channels]
    context = config.unet_config.get("context_dim")
    if layout.drags.context_dim != context:
        bad.append(f"drag tokens are {layout.drags.context_dim}-wide but the UNet's context is {context}")
    if bad:
        raise _not_puppet_master(name, f"its drag modules do not fit its UNet: {_listing(bad)}.")


def load_puppet_master(path: str, name: str, dtype: Optional[torch.dtype] = None) -> comfy.model_patcher.ModelPatcher:
    """The Load Puppet-Master node's work (``dtype`` overrides ComfyUI's choice of the UNet weight dtype)."""
    layout = check_layout(path, name)
    placeholders, config = _detect(layout, name)
    _check_drag_shapes(layout, config, name)
    model = comfy.sd.load_diffusion_model_state_dict(placeholders, model_options={"dtype": dtype} if dtype else {})
    if model is None or not isinstance(model.model, comfy.model_base.SVD_img2vid):
        raise _not_puppet_master(name, "ComfyUI did not build an SVD img2vid model from it.")
    compute = model.model.manual_cast_dtype or model.model_dtype()
    if compute not in (torch.float16, torch.bfloat16, torch.float32):
        compute = torch.float16
    with torch.device("meta"):
        adapter = pm.DragAdapter(layout.drags)
    adapter = adapter.to(dtype=compute).to_empty(device="cpu").eval().requires_grad_(False)
    _stream_weights(layout, model.model.diffusion_model, adapter)
    return attach(model, adapter, name)


def _stream_weights(layout: Layout, unet: torch.nn.Module, adapter: torch.nn.Module) -> None:
    """Every tensor of the file, read one at a time and cast into its place (see the module docstring)."""
    order = layout.header.in_file_order()
    bar = comfy.utils.ProgressBar(len(order))
    unet_params = dict(unet.named_parameters()) | dict(unet.named_buffers())
    drag_params = dict(adapter.named_parameters())
    comfy_of = {v: k for k, v in layout.base.items()}
    with open(layout.header.path, "rb", buffering=0) as f, torch.no_grad():
        for file_key in order:
            key = file_key[len(layout.prefix):]
            tensor = read_tensor(f, layout.header, file_key)
            if pm.is_drag_key(key):
                module, target, params = adapter, key, drag_params
            else:
                module, target, params = unet, comfy_of[key], unet_params
            param = params[target]
            if 0 in param.stride() and param.numel() > 1:   # a placeholder the host assigned instead of copying
                comfy.utils.set_attr_param(module, target, tensor.to(param.dtype))
            else:
                param.copy_(tensor)
            del tensor
            comfy.model_management.throw_exception_if_processing_interrupted()
            bar.update(1)


def attach(model: comfy.model_patcher.ModelPatcher, adapter: pm.DragAdapter, name: str) -> comfy.model_patcher.ModelPatcher:
    """Turn a freshly loaded SVD ModelPatcher into Puppet-Master: adapter, drag sites, all-to-first, options."""
    model.set_additional_models(KEY, [DragAdapterPatcher(adapter, load_device=model.load_device,
                                                         offload_device=model.offload_device)])
    sites = []
    for site in adapter.config.sites:
        path = f"diffusion_model.{site.transformer}"
        module = model_object(model, path)
        if not isinstance(module, SpatialVideoTransformer):
            raise MotionKitInputError(LOADER, "unet_name", f"{path} is a {type(module).__name__}, not an SVD "
                                      "spatial-temporal transformer.", f"choose {DOWNLOAD}.")
        sites.append(_Site(path, module, site, len(sites)))
    patch_forwards(model, sites, lambda s, inner: DragSiteForward(s.index, s.site, adapter, inner), DragSiteForward)
    window = SigmaWindow(model, 0.0, 1.0)
    patch_forwards(model, spatial_self_attention(model, LOADER),
                   lambda s, inner: AllToFirstForward(s.module, inner, 1.0, window), AllToFirstForward)
    model.model_options["transformer_options"][KEY] = PuppetMasterOptions(name=name, num_drags=adapter.config.num_drags)
    outer = comfy.patcher_extension.WrappersMP.OUTER_SAMPLE
    model.remove_wrappers_with_key(outer, KEY)
    model.add_wrapper_with_key(outer, KEY, PerRunCache())
    return model


@dataclass(frozen=True)
class _Site:
    path: str
    module: Any
    site: pm.DragSite
    index: int


# --- nodes ---------------------------------------------------------------------------------------------

class MotionKitPuppetMasterLoader:
    DESCRIPTION = (
        "Loads Puppet-Master's drag-controlled SVD UNet (the official model.safetensors, diffusers format, from "
        "models/puppet_master or models/diffusion_models) onto ComfyUI's own SVD network: the fine-tuned UNet, "
        "the drag modules (loaded and offloaded with it), and all-to-first spatial attention at strength 1, "
        "which the model was trained with. Take CLIP vision and the VAE from the stock SVD checkpoint "
        "(Image Only Checkpoint Loader with svd.safetensors). Sampled without Puppet-Master Drags, every video "
        "gets zero drags. Puppet-Master was trained at 256x256 and 14 frames; fps, motion bucket and "
        "augmentation do nothing (keep augmentation_level at 0: it still adds noise to the image). An "
        "All-to-First node after this one replaces the built-in all-to-first settings (strength 0 turns it off).")
    CATEGORY = "MotionKit"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"unet_name": (model_files(), {
            "tooltip": "Puppet-Master's model.safetensors (from the Hugging Face Space rayli/Puppet-Master, "
                       "ckpts/) in models/puppet_master (files of models/diffusion_models are listed too)."})}}

    def load(self, unet_name):
        path = model_path(unet_name)
        if path is None:
            raise MotionKitInputError(LOADER, "unet_name", f"'{unet_name}' is in neither models/{MODEL_FOLDER} "
                                      f"{folder_paths.get_folder_paths(MODEL_FOLDER)} nor models/{ALSO_FROM}.",
                                      f"put {DOWNLOAD} and refresh (press R).")
        if not path.lower().endswith(EXTENSIONS):
            raise MotionKitInputError(LOADER, "unet_name", f"'{unet_name}' is not a .safetensors file; Puppet-Master "
                                      "weights are only read from safetensors (nothing in them can run code).",
                                      f"choose {DOWNLOAD}.")
        model = load_puppet_master(path, unet_name)
        config = adapter_of(model).config
        log.info("MotionKit: Puppet-Master '%s': %d drag sites, %d drags, drag embedder %s, tokens %d-wide",
                 unet_name, len(config.sites), config.num_drags, config.embedder_channels, config.context_dim)
        return (model,)


class MotionKitPuppetMasterDrags:
    DESCRIPTION = (
        "Puppet-Master drags from TRACKS: the cond video gets them, the uncond video zero drags. One drag per "
        "object (camera tracks are not drags): the object's farthest-moving track (ties: the one starting nearest "
        "the middle of the object's tracks); objects that do not move are left out (static drags were not in "
        "the training data); with more than 5 moving objects the 5 that move farthest are kept. Drags are padded "
        "with zero drags to the model's 5. Positions are normalised to the centre square that "
        "SVD_img2vid_Conditioning crops at a square size (256x256 as trained), so draw the tracks on the image "
        "you condition on. The tracks need the video's frame count (14 as trained). The second output lists "
        "the drags kept and left out. A second Drags node replaces the first one's drags.")
    CATEGORY = "MotionKit"
    RETURN_TYPES = ("MODEL", "STRING")
    RETURN_NAMES = ("model", "drags_info")
    OUTPUT_TOOLTIPS = ("The Puppet-Master model with these drags on its cond video.",
                       "Which track of which object became each drag (normalised positions), and which objects "
                       "were left out and why.")
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        size = "Only for TRACKS without a stored image size (core / KJNodes): the size their pixels refer to."
        return {"required": {
            "model": ("MODEL", {"tooltip": "The MODEL of Load Puppet-Master."}),
            "tracks": ("TRACKS", {"tooltip": "TRACKS from Arrows to Trajectories (14 frames), or any TRACKS."}),
        }, "optional": {
            "width": ("INT", {"default": 0, "min": 0, "max": 16384, "tooltip": size}),
            "height": ("INT", {"default": 0, "min": 0, "max": 16384, "tooltip": size}),
        }}

    def apply(self, model, tracks, width=0, height=0):
        model = require_model(DRAGS, model)
        options = options_of(model)
        if options is None or adapter_of(model) is None:
            raise MotionKitInputError(DRAGS, "model", "this MODEL is not a Puppet-Master model.",
                                      "connect the MODEL output of Load Puppet-Master (nodes in between are fine).")
        with user_errors(DRAGS):
            ts = read_tracks(tracks)
            ts = ts.sized(0 if ts.width else width, 0 if ts.width else height)
            drags, kept, dropped = pm.choose_drags(ts, options.num_drags)
        if ts.num_frames < 2:
            raise MotionKitInputError(DRAGS, "tracks", "these TRACKS have 1 frame.",
                                      f"build the trajectories with num_frames = {pm.OFFICIAL_FRAMES}.")
        if ts.num_frames != pm.OFFICIAL_FRAMES:
            log.warning("MotionKit: %s: %d frames; Puppet-Master was trained with %d (other lengths are outside its "
                        "training data).", DRAGS, ts.num_frames, pm.OFFICIAL_FRAMES)
        summary = pm.describe(kept, dropped, ts.num_frames)
        log.info("MotionKit: %s", summary)
        padded = pm.pad_drags(torch.from_numpy(drags), options.num_drags)
        patched = model.clone()
        patched.model_options["transformer_options"][KEY] = PuppetMasterOptions(
            name=options.name, num_drags=options.num_drags, drags=padded, summary=summary)
        return (patched, summary)


NODE_CLASS_MAPPINGS = {
    "MotionKitPuppetMasterLoader": MotionKitPuppetMasterLoader,
    "MotionKitPuppetMasterDrags": MotionKitPuppetMasterDrags,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "MotionKitPuppetMasterLoader": "Load Puppet-Master",
    "MotionKitPuppetMasterDrags": "Puppet-Master Drags",
}
