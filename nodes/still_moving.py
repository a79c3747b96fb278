"""Still-Moving: applying motion and spatial adapters to a video MODEL, and the two trainers.

The math and the file format are in modules/still_moving.py. Here:
- ``MotionKitStillMovingAdapter`` merges an adapter file into the weights with ComfyUI's weight-patch
  machinery: the motion adapter as ordinary LoRA patches (signed strength ``motion_alpha``) on the motion
  modules' own ModelPatcher or on SVD's ``time_stack`` projections, the spatial adapters as a left-multiplying
  low-rank patch on each spatial attention's ``to_out.0``. Merged weights cost nothing per step. Weight
  patches of other LoRA loaders on the same projection are applied first whatever the node order (see
  ``_spatial_patches_last``), so the adapters always act on the customised layers' output.
- ``MotionKitTrainMotionAdapter`` / ``MotionKitTrainSpatialAdapters`` run the Still-Moving recipe through
  ComfyUI's own sampling machinery (a ``Sampler`` whose ``sample`` is the training loop), so the motion
  modules are injected, the LoRAs patched and the memory managed exactly as when sampling. On SVD the motion
  adapter trains with SVD's own objective (EDM noise levels and weighting), each frozen video conditioned on
  its own frame as ``SVD_img2vid_Conditioning`` conditions a video on its first frame.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import uuid
from dataclasses import dataclass
from typing import Callable, Optional

import torch

import comfy.model_management
import comfy.model_patcher
import comfy.patcher_extension
import comfy.sample
import comfy.samplers
import comfy.utils
import folder_paths
from comfy.weight_adapter import LoRAAdapter, WeightAdapterBase

from ..modules.still_moving import (FORMAT_VERSION, MOTION_PROJECTIONS, SPATIAL_ATTENTIONS, AdapterFile,
                                    AdapterFormatError, AdapterPart, LowRank, Scale, attached, autograd_ready,
                                    clip_files, evenly_spaced, frozen_video, load_adapter, motion_lora_forward,
                                    read_frames, save_adapter, spatial_residual_forward, step_seed)
from ..modules.trackadapter import edm_sigmas, edm_weight
from ._comfy import (MotionKitInputError, model_object, named_modules, require_model, require_range,
                     spatial_self_attention, svd_image_conditioning, svd_model_conds)
from .motion_modules import (motion_options, motion_patcher, set_motion_patcher, without_motion_modules)

log = logging.getLogger("MotionKit")

STILL_MOVING = "still_moving"
KEY = "MotionKit.still_moving"
ADAPTER = "Still-Moving Adapters (MotionKitStillMovingAdapter)"
TRAIN_MOTION = "Train Motion Adapter (MotionKitTrainMotionAdapter)"
TRAIN_SPATIAL = "Train Spatial Adapters (MotionKitTrainSpatialAdapters)"


def register_model_folder() -> None:
    folder_paths.add_model_folder_path(STILL_MOVING, os.path.join(folder_paths.models_dir, STILL_MOVING),
                                       is_default=True)
    paths, _ = folder_paths.folder_names_and_paths[STILL_MOVING]
    folder_paths.folder_names_and_paths[STILL_MOVING] = (paths, {".safetensors"})


register_model_folder()


# --- where the adapters go -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Site:
    """One projection an adapter acts on: its weight-patch key prefix and the live module."""
    path: str                 # "diffusion_model.<...>.to_q" or "down_blocks.0.motion_modules.0.<...>.to_q"
    module: torch.nn.Module


def motion_sites(model: comfy.model_patcher.ModelPatcher, node: str) -> tuple[str, list]:
    """``(host, sites)``: the q/k/v projections of every temporal self-attention, on the motion modules'
    patcher (SD1.5 + motion module) or on the UNet (SVD ``time_stack``)."""
    mp = motion_patcher(model)
    if mp is not None:
        sites = [Site(f"{name}.{proj}", getattr(module, proj)) for name, module in mp.model.named_modules()
                 if name.rsplit(".", 2)[-2:-1] == ["attention_blocks"] for proj in MOTION_PROJECTIONS]
        return "motion_modules", sites
    sites = [Site(f"{name}.{proj}", getattr(module, proj)) for name, module in named_modules(model)
             if ".time_stack." in f".{name}" and name.endswith(".attn1") for proj in MOTION_PROJECTIONS]
    if not sites:
        raise MotionKitInputError(node, "model",
                                  f"this MODEL ({type(model.model).__name__}) has no temporal attention.",
                                  "load a motion module on the SD1.5 model first ('Load Motion Module'), or use an "
                                  "SVD model.")
    return "unet", sites


def spatial_sites(model: comfy.model_patcher.ModelPatcher, node: str) -> list:
    """The output projections (``to_out.0``) of attn1 and attn2 of every spatial transformer block."""
    sites = []
    for attn1 in spatial_self_attention(model, node):
        block = attn1.path.rsplit(".", 1)[0]
        for name in SPATIAL_ATTENTIONS:
            attn = model_object(model, f"{block}.{name}")
            sites.append(Site(f"{block}.{name}.to_out.0", attn.to_out[0]))
    return sites


# --- applying an adapter file as weight patches --------------------------------------------------------

class SpatialAdapterPatch(WeightAdapterBase):
    """ComfyUI weight patch for a spatial adapter on ``to_out.0``: ``W' = W + s * scale * up @ (down @ W)``
    (and the same map on the bias), applied to the weight as patched so far."""
    name = "motionkit_still_moving_spatial"

    def __init__(self, down: torch.Tensor, up: torch.Tensor, scale: float):
        self.loaded_keys = set()
        self.weights = (down, up)
        self.scale = float(scale)

    def calculate_weight(self, weight, key, strength, strength_model, offset, function,
                         intermediate_dtype=torch.float32, original_weight=None):
        down, up = (comfy.model_management.cast_to_device(t, weight.device, intermediate_dtype) for t in self.weights)
        w = weight.to(intermediate_dtype)
        flat = w.reshape(w.shape[0], -1) if w.ndim > 1 else w
        delta = up @ (down @ flat)
        weight += function(((strength * self.scale) * delta).reshape(weight.shape).type(weight.dtype))
        return weight


def _spatial_patches_last(executor, model, *args, **kwargs):
    """PREPARE_SAMPLING wrapper: before the weights are patched, move the spatial-adapter patches of each
    key behind every other patch (a LoRA added after the adapter node still applies first), so the result
    does not depend on the order of the nodes. A new patches_uuid makes ComfyUI re-patch if it changed."""
    changed = False
    for key, patches in model.patches.items():
        ordered = sorted(patches, key=lambda p: isinstance(p[1], SpatialAdapterPatch))   # stable
        if any(a is not b for a, b in zip(ordered, patches)):   # by identity: entries may hold tensors
            model.patches[key] = ordered
            changed = True
    if changed:
        model.patches_uuid = uuid.uuid4()
    return executor(model, *args, **kwargs)


def _require_adapter_file(node: str, name: str, input_name: str = "adapter") -> tuple[AdapterFile, str]:
    path = folder_paths.get_full_path(STILL_MOVING, name) if isinstance(name, str) else None
    if path is None:
        raise MotionKitInputError(node, input_name, f"'{name}' is not in the {STILL_MOVING} folders "
                                  f"{folder_paths.get_folder_paths(STILL_MOVING)}.",
                                  "train one with 'Train Motion Adapter' / 'Train Spatial Adapters' or put the file "
                                  "there and refresh (press R).")
    try:
        return load_adapter(path), path
    except AdapterFormatError as e:
        raise MotionKitInputError(node, input_name, f"'{name}' is not a Still-Moving adapter: {e}.",
                                  "choose a file written by MotionKit's Still-Moving trainers.") from None


def _non_finite(data: AdapterFile) -> list:
    """Names of the adapter's tensors that hold NaN or infinity."""
    return [k for k, t in data.tensors().items() if not bool(torch.isfinite(t).all())]


def _match(node: str, input_name: str, table: dict, sites: list, what: str, name: str) -> list:
    """Pair each adapter tensor with its projection; any mismatch is an error, never a silent skip."""
    by_path = {s.path: s for s in sites}
    missing = sorted(set(table) - set(by_path))
    if missing:
        raise MotionKitInputError(node, input_name, f"'{name}' has {what} adapters for {len(missing)} projections this "
                                  f"MODEL lacks (e.g. {missing[0]}).",
                                  "apply it to the base model it was trained on (see its base_model metadata).")
    pairs = []
    for path, (down, up) in table.items():
        weight = by_path[path].module.weight
        if tuple(weight.shape) != (up.shape[0], down.shape[1]):
            raise MotionKitInputError(node, input_name, f"'{name}' has a {up.shape[0]}x{down.shape[1]} {what} adapter "
                                      f"for {path}, whose weight is {list(weight.shape)}.",
                                      "apply it to the base model it was trained on.")
        pairs.append((by_path[path], down, up))
    return pairs


def apply_adapter(model: comfy.model_patcher.ModelPatcher, adapter: AdapterFile, name: str, motion_alpha: float,
                  spatial_strength: float, node: str = ADAPTER) -> comfy.model_patcher.ModelPatcher:
    patched = model.clone()
    motion, spatial = adapter.parts().get("motion"), adapter.parts().get("spatial")
    if motion is not None and motion_alpha != 0.0:
        host, sites = motion_sites(patched, node)
        if host != adapter.motion_host:
            raise MotionKitInputError(node, "adapter", f"'{name}' was trained on "
                                      f"{adapter.motion_host.replace('_', ' ')} but this MODEL's temporal "
                                      f"attention is in its {host.replace('_', ' ')}.",
                                      "apply it to the kind of video model it was trained on.")
        pairs = _match(node, "adapter", motion.tensors, sites, "motion", name)
        # LoRAAdapter computes W + strength * (alpha / rank) * up @ down: alpha = scale * rank gives the scale.
        lora = {f"{s.path}.weight": LoRAAdapter(set(), (up, down, motion.scale * motion.rank, None, None, None))
                for s, down, up in pairs}
        if host == "motion_modules":
            mp = motion_patcher(patched).clone()
            mp.add_patches(lora, strength_patch=motion_alpha)
            set_motion_patcher(patched, mp)
        else:
            patched.add_patches(lora, strength_patch=motion_alpha)
    if spatial is not None and spatial_strength != 0.0:
        pairs = _match(node, "adapter", spatial.tensors, spatial_sites(patched, node), "spatial", name)
        patches = {}
        for s, down, up in pairs:
            patches[f"{s.path}.weight"] = SpatialAdapterPatch(down, up, spatial.scale)
            if getattr(s.module, "bias", None) is not None:
                patches[f"{s.path}.bias"] = SpatialAdapterPatch(down, up, spatial.scale)
        patched.add_patches(patches, strength_patch=spatial_strength)
        patched.remove_wrappers_with_key(comfy.patcher_extension.WrappersMP.PREPARE_SAMPLING, KEY)
        patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.PREPARE_SAMPLING, KEY, _spatial_patches_last)
    return patched


class MotionKitStillMovingAdapter:
    DESCRIPTION = (
        "Still-Moving adapters on a video model (SD1.5 with a loaded motion module, or SVD). The motion adapter is a "
        "low-rank adapter on the temporal attentions' query/key/value projections, merged with the signed scale "
        "motion_alpha: 1 makes frozen videos, 0 removes it, negative values add motion. The spatial adapters are "
        "low-rank residual maps after the spatial attentions' outputs, where customised T2I weights (a style LoRA) "
        "sit, scaled by spatial_strength. Both are merged into the weights with ComfyUI's patching (no cost per step) "
        "and stack in any order with LoRA loaders and the other MotionKit patches; spatial adapters always act after "
        "the LoRAs on the same layer. Files come from models/still_moving (written by the MotionKit trainers). Measured "
        "(benchmarks/README.md, Control World): a motion adapter trained on SVD by 'Train Motion Adapter' gave median "
        "object speeds 2.80 / 1.24 / 0.06 px per frame at motion_alpha -1 / 0 / +1.")
    CATEGORY = "MotionKit"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "SD1.5 + 'Load Motion Module' (with your style LoRA), or an SVD model."}),
            "adapter": (folder_paths.get_filename_list(STILL_MOVING), {
                "tooltip": "A Still-Moving adapter file from models/still_moving."}),
            "motion_alpha": ("FLOAT", {"default": 0.0, "min": -10.0, "max": 10.0, "step": 0.05,
                                       "tooltip": "Motion adapter scale: 1 = frozen video, 0 = off, "
                                                  "negative = more motion."}),
            "spatial_strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.05,
                                           "tooltip": "Scale of the spatial adapters (0 = off)."}),
        }}

    def apply(self, model, adapter, motion_alpha, spatial_strength):
        model = require_model(ADAPTER, model)
        motion_alpha = require_range(ADAPTER, "motion_alpha", motion_alpha, -10.0, 10.0)
        spatial_strength = require_range(ADAPTER, "spatial_strength", spatial_strength, 0.0, 10.0)
        data, _ = _require_adapter_file(ADAPTER, adapter)
        return (apply_adapter(model, data, adapter, motion_alpha, spatial_strength),)


# --- training --------------------------------------------------------------------------------------------

@dataclass
class TrainItem:
    latent: torch.Tensor      # [T, C, h, w] video latent (VAE space)
    alpha: float              # motion adapter scale while training on it
    weight: float = 1.0       # loss weight
    kind: str = "frozen"      # "frozen" | "prior"
    conds: Optional[dict] = None   # SVD: apply_model keyword arguments of the video's own frame conditioning


@dataclass
class TrainSpec:
    node: str
    kind: str                 # "motion" | "spatial"
    adapter_name: str
    rank: int
    steps: int
    learning_rate: float
    batch_size: int
    seed: int
    checkpoint_every: int
    resume: bool
    eval_draws: int = 2

    def fingerprint(self, sites) -> dict:
        """What a checkpoint must agree with to be resumed (``steps`` may grow: training continues)."""
        return {"kind": self.kind, "rank": self.rank, "seed": self.seed, "learning_rate": self.learning_rate,
                "batch_size": self.batch_size, "sites": sorted(sites)}


class _TrainingLoop(comfy.samplers.Sampler):
    """Runs ``fn(model_wrap, extra_args)`` where a sampler would sample: the models are loaded, patched
    and injected by ComfyUI exactly as for sampling."""

    def __init__(self, fn: Callable):
        self.fn = fn

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
               disable_pbar=False):
        self.fn(model_wrap, extra_args)
        return torch.zeros_like(noise)


def _diffusion_loss(model_wrap, extra_args, x0: torch.Tensor, seed: int) -> torch.Tensor:
    """Epsilon-prediction MSE at one uniformly drawn training timestep (SD's training objective)."""
    ms = model_wrap.inner_model.model_sampling
    g = torch.Generator().manual_seed(seed)
    t = int(torch.randint(0, 1000, (1,), generator=g))
    noise = torch.randn(x0.shape, generator=g).to(x0)
    sigma = float(ms.sigma(torch.tensor(float(t))))
    sigmas = torch.full((x0.shape[0],), sigma, device=x0.device, dtype=x0.dtype)
    xt = ms.noise_scaling(sigmas, noise, x0)
    denoised = model_wrap(xt, sigmas, **extra_args)
    eps = (xt - denoised) / sigma
    return torch.mean((eps.float() - noise.float()) ** 2)


def _svd_loss(model_wrap, extra_args, x0: torch.Tensor, conds: dict, seed: int) -> torch.Tensor:
    """SVD's training objective at one noise level: ``ln sigma ~ N(0.7, 1.6^2)``, the EDM-weighted MSE of the
    denoised prediction, with the video's own conditioning ``conds`` (on x0's device)."""
    g = torch.Generator().manual_seed(seed)
    sigma = edm_sigmas(1, g).to(x0)
    noise = torch.randn(x0.shape, generator=g).to(x0)
    options = dict(extra_args.get("model_options", {}).get("transformer_options", {}), cond_or_uncond=[0])
    sigmas = sigma.expand(x0.shape[0])
    denoised = model_wrap.inner_model.apply_model(x0 + sigma * noise, sigmas, transformer_options=options, **conds)
    return (edm_weight(sigma) * (denoised.float() - x0.float()) ** 2).mean()


def checkpoint_path(adapter_name: str) -> str:
    return os.path.join(folder_paths.get_folder_paths(STILL_MOVING)[0], f"{adapter_name}.resume.pt")


def load_checkpoint(spec: TrainSpec) -> Optional[dict]:
    """The resumable state of an earlier run of this adapter_name (safe load), if resuming."""
    path = checkpoint_path(spec.adapter_name)
    if not (spec.resume and os.path.isfile(path)):
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise MotionKitInputError(spec.node, "resume", f"the checkpoint {path} cannot be read ({type(e).__name__}).",
                                  "delete it or set resume to false.") from None


def _items_of(state: dict) -> list:
    conds = state.get("conds") or [None] * len(state["data"])
    return [TrainItem(lat, float(a), float(w), k, c)
            for lat, (a, w, k), c in zip(state["data"], state["items"], conds)]


def train_adapters(model: comfy.model_patcher.ModelPatcher, positive, spec: TrainSpec, items: list,
                   trainable: dict, attach: Callable, state: Optional[dict] = None) -> tuple[dict, dict]:
    """The shared training loop. ``trainable``: path -> LowRank; ``attach(alpha: Scale)`` -> (module, forward)
    pairs installing every adapter (trainable and fixed) for the run; ``state``: a checkpoint to resume.
    Returns (trained LowRanks, report)."""
    ckpt = checkpoint_path(spec.adapter_name)
    fingerprint = spec.fingerprint(trainable)
    params = [p for m in trainable.values() for p in m.parameters()]
    optimizer = torch.optim.AdamW(params, lr=spec.learning_rate, weight_decay=0.0)
    start, losses = 0, []
    if state is not None:
        if state.get("fingerprint") != fingerprint:
            raise MotionKitInputError(spec.node, "resume", f"the checkpoint {ckpt} was made with other settings "
                                      f"({state.get('fingerprint')}).",
                                      "set resume to false to start over, or use another adapter_name.")
        for path, module in trainable.items():
            module.load_state_dict(state["adapters"][path])
        optimizer.load_state_dict(state["optimizer"])
        start, losses = int(state["step"]), list(state["losses"])
        log.info("MotionKit: resuming %s at step %d of %d", spec.adapter_name, start, spec.steps)

    def finite_weights() -> bool:
        return bool(torch.stack([torch.isfinite(p).all() for p in params]).all())

    def save_checkpoint(step: int) -> None:
        if not finite_weights():   # never write a non-finite checkpoint (the last finite one stays)
            log.warning("MotionKit: not saving %s: the adapter weights are not finite", ckpt)
            return
        os.makedirs(os.path.dirname(ckpt), exist_ok=True)
        torch.save({"step": step, "losses": losses, "fingerprint": fingerprint, "optimizer": optimizer.state_dict(),
                    "adapters": {p: {k: v.detach().cpu() for k, v in m.state_dict().items()}
                                 for p, m in trainable.items()},
                    "data": [it.latent for it in items], "items": [(it.alpha, it.weight, it.kind) for it in items],
                    **({"conds": [it.conds for it in items]} if any(it.conds is not None for it in items) else {})},
                   ckpt + ".partial")
        os.replace(ckpt + ".partial", ckpt)   # an interrupted save never spoils the previous checkpoint

    report = {"steps": spec.steps, "resumed_at": start, "losses": losses, "items": len(items)}
    alpha = Scale(1.0)

    def run(model_wrap, extra_args):
        device = model.load_device
        for m in trainable.values():
            m.to(device)
        data = [model_wrap.inner_model.process_latent_in(it.latent.to(device)) for it in items]
        conds = [None if it.conds is None else {k: v.to(device) if torch.is_tensor(v) else v
                                                for k, v in it.conds.items()} for it in items]

        def batch_loss(step: int, indices: list) -> torch.Tensor:
            total = 0.0
            for i in indices:
                alpha.value = items[i].alpha   # the motion adapter's scale for this video
                seed = step_seed(spec.seed, step, i)
                if conds[i] is None:
                    loss = _diffusion_loss(model_wrap, extra_args, data[i], seed)
                else:
                    loss = _svd_loss(model_wrap, extra_args, data[i], conds[i], seed)
                total = total + items[i].weight * loss
            return total / len(indices)

        def evaluate() -> float:
            """Loss on fixed draws (same videos, timesteps and noise before and after training)."""
            with torch.no_grad():
                every = list(range(len(items)))
                return float(sum(batch_loss(-1 - d, every) for d in range(spec.eval_draws))) / spec.eval_draws

        pbar = comfy.utils.ProgressBar(spec.steps)
        pbar.update_absolute(start)
        done = start
        with autograd_ready(model_wrap.inner_model.diffusion_model), attached(attach(alpha)), torch.enable_grad():
            report["eval_loss_before"] = evaluate()
            try:
                for step in range(start, spec.steps):
                    comfy.model_management.throw_exception_if_processing_interrupted()
                    draw = torch.Generator().manual_seed(step_seed(spec.seed, step, 7))
                    loss = batch_loss(step, torch.randperm(len(items), generator=draw)[:spec.batch_size].tolist())
                    if not bool(torch.isfinite(loss.detach())):
                        raise MotionKitInputError(
                            spec.node, "learning_rate", f"the training loss is {float(loss.detach())} at step "
                            f"{step + 1} of {spec.steps}; training stopped (the checkpoint keeps the {done} steps "
                            "before it, no adapter file was written).",
                            "lower learning_rate and train again with resume = false; if it happens at step 1, "
                            "check that the model and the training videos give finite values.")
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    if not finite_weights():
                        raise MotionKitInputError(
                            spec.node, "learning_rate", f"the adapter weights are not finite after step {step + 1} "
                            f"of {spec.steps} (the gradients overflowed); training stopped, no adapter file was "
                            "written.", "lower learning_rate and train again with resume = false.")
                    losses.append(float(loss.detach()))
                    done = step + 1
                    if spec.checkpoint_every and done % spec.checkpoint_every == 0:
                        save_checkpoint(done)
                    pbar.update_absolute(done)   # ComfyUI's server hook may raise the interrupt here
            except BaseException:   # interrupted (or failed): keep the finished steps, resumable
                save_checkpoint(done)
                raise
            report["eval_loss_after"] = evaluate()
        save_checkpoint(spec.steps)

    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(positive, positive)
    guider.set_cfg(1.0)   # cond only: the loss is on the conditional prediction
    shape = items[0].latent.shape
    guider.sample(torch.zeros(shape), torch.zeros(shape), _TrainingLoop(run), torch.tensor([1.0, 0.0]),
                  seed=spec.seed, disable_pbar=True)
    for m in trainable.values():
        m.cpu().requires_grad_(False)
    return trainable, report


def outside_inference_mode(train):
    """ComfyUI runs nodes under ``torch.inference_mode``: tensors made there (new adapters, loaded factors)
    could never take part in autograd, so a trainer's whole body runs outside it, without gradients except
    in the training loop itself (``torch.enable_grad`` there)."""
    @functools.wraps(train)
    def wrapped(*args, **kwargs):
        with torch.inference_mode(False), torch.no_grad():
            return train(*args, **kwargs)
    return wrapped


def _new_adapters(sites: list, rank: int, seed: int, node: str) -> dict:
    if rank > min(min(s.module.weight.shape) for s in sites):
        raise MotionKitInputError(node, "rank", f"rank {rank} exceeds the projections' width.", "use a smaller rank.")
    g = torch.Generator().manual_seed(seed)
    return {s.path: LowRank(s.module.weight.shape[1], s.module.weight.shape[0], rank, g) for s in sites}


def _sample_latents(model, positive, negative, frames: int, width: int, height: int, steps: int, cfg: float,
                    seed: int) -> torch.Tensor:
    latent = torch.zeros([frames, 4, height // 8, width // 8])
    noise = comfy.sample.prepare_noise(latent, seed)
    return comfy.sample.sample(model, noise, steps, cfg, "euler", "normal", positive, negative, latent,
                               denoise=1.0, seed=seed, disable_pbar=True).float().cpu()


def _frames_from_folder(node: str, folder: str, vae, per_clip: int, width: int, height: int) -> list:
    """Latents [C, h, w] of the frames taken from the clips in ``folder``."""
    return [vae.encode(image[..., :3]).float().cpu()[0]
            for image in _images_from_folder(node, folder, vae, per_clip, width, height)]


def _images_from_folder(node: str, folder: str, vae, per_clip: int, width: int, height: int) -> list:
    """Images [1, height, width, C] of the frames taken from the clips in ``folder`` (resized, centre crop)."""
    folder = folder if os.path.isabs(folder) else os.path.join(folder_paths.get_input_directory(), folder)
    if not os.path.isdir(folder):
        raise MotionKitInputError(node, "clips_folder", f"'{folder}' is not a folder.",
                                  "give a folder of video clips (absolute, or relative to ComfyUI's input folder), "
                                  "or leave it empty to train on videos the model generates.")
    if vae is None:
        raise MotionKitInputError(node, "vae", "training on clips needs a VAE to encode their frames.",
                                  "connect the checkpoint's VAE.")
    files = clip_files(folder)
    if not files:
        raise MotionKitInputError(node, "clips_folder", f"'{folder}' holds no video clips or images.",
                                  "add .mp4/.webm/.gif clips (or .png/.jpg frames).")
    clips = []
    for path in files:   # every clip is read before any is encoded
        try:
            frames = read_frames(path, per_clip)
        except Exception as e:   # the decoder's own errors (PyAV, Pillow) for a broken or unsupported file
            raise MotionKitInputError(node, "clips_folder", f"cannot read '{path}' ({type(e).__name__}: {e}).",
                                      "remove or re-encode that file (.mp4/.webm/.gif clips, .png/.jpg "
                                      "images).") from None
        if not frames:
            raise MotionKitInputError(node, "clips_folder", f"'{path}' has no video frames.",
                                      "remove that file or replace it with a clip that has frames.")
        clips.append(frames)
    images = []
    for frames in clips:
        for frame in frames:
            image = torch.from_numpy(frame)[None].movedim(-1, 1)
            images.append(comfy.utils.common_upscale(image, width, height, "bilinear", "center").movedim(1, -1))
    return images


def _require_name(node: str, name: str) -> str:
    name = (name or "").strip()
    if not name or any(c in name for c in '/\\:*?"<>|') or name.startswith("."):
        raise MotionKitInputError(node, "adapter_name", f"'{name}' is not a usable file name.",
                                  "use letters, digits, '-' and '_' (the file is <adapter_name>.safetensors).")
    return name


def _base_info(model, host: str) -> dict:
    if host == "motion_modules":
        options = motion_options(model)
        spec = motion_patcher(model).model.spec
        return {"kind": "sd15_motion_module", "motion_module": options.name, "layout": spec.layout,
                "channels": sorted({c for _, c in spec.sites}), "format_version": FORMAT_VERSION}
    return {"kind": "svd", "format_version": FORMAT_VERSION}


def _common_inputs(generated: str) -> dict:
    return {
        "adapter_name": ("STRING", {"default": "still_moving",
                                    "tooltip": "Output: models/still_moving/<name>.safetensors (and <name>.resume.pt, "
                                               "the resumable checkpoint)."}),
        "video_frames": ("INT", {"default": 16, "min": 2, "max": 64, "tooltip": "Frames of each training video."}),
        "width": ("INT", {"default": 512, "min": 64, "max": 2048, "step": 8}),
        "height": ("INT", {"default": 512, "min": 64, "max": 2048, "step": 8}),
        "generation_steps": ("INT", {"default": 20, "min": 1, "max": 200,
                                     "tooltip": f"Sampling steps for {generated}."}),
        "cfg": ("FLOAT", {"default": 7.5, "min": 1.0, "max": 30.0, "step": 0.1, "tooltip": f"CFG for {generated}."}),
        "rank": ("INT", {"default": 8, "min": 1, "max": 256}),
        "steps": ("INT", {"default": 1000, "min": 1, "max": 100000, "tooltip": "Optimizer steps."}),
        "learning_rate": ("FLOAT", {"default": 1e-4, "min": 1e-7, "max": 1.0, "step": 1e-6}),
        "batch_size": ("INT", {"default": 1, "min": 1, "max": 64, "tooltip": "Videos per optimizer step."}),
        "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF}),
        "checkpoint_every": ("INT", {"default": 100, "min": 0, "max": 100000,
                                     "tooltip": "Save a resumable checkpoint every N steps (0 = only when stopped)."}),
        "resume": ("BOOLEAN", {"default": True, "tooltip": "Continue from <name>.resume.pt when it exists."}),
    }


def _check_size(node: str, width: int, height: int) -> None:
    if width % 8 or height % 8:
        raise MotionKitInputError(node, "width", f"{width}x{height} is not a multiple of 8.",
                                  "use sizes divisible by 8.")


def _check_common(node: str, model, video_frames: int, width: int, height: int) -> None:
    _check_size(node, width, height)
    if motion_patcher(model) is None:
        raise MotionKitInputError(node, "model", "this MODEL has no motion module.",
                                  "connect the output of 'Load Motion Module' (spatial adapters are trained on SD1.5 "
                                  "+ a motion module; on SVD only the motion adapter is trained).")
    if video_frames > motion_options(model).max_len:
        raise MotionKitInputError(node, "video_frames", f"{video_frames} frames exceed the motion module's "
                                  f"{motion_options(model).max_len} positions.", "use fewer frames.")


def _require_rates(node: str, cfg: float, learning_rate: float) -> tuple[float, float]:
    """The trainers' ranged FLOAT inputs (NaN included), before any video is generated."""
    return (require_range(node, "cfg", cfg, 1.0, 30.0),
            require_range(node, "learning_rate", learning_rate, 1e-7, 1.0))


def _check_uncustomized(node: str, model, uncustomized) -> None:
    """The prior-preservation videos come from the same kind of video model without the customisation."""
    kind, base = type(uncustomized.model).__name__, type(model.model).__name__
    if motion_patcher(uncustomized) is None:
        problem = f"this MODEL ({kind}) has no motion module."
    elif kind != base:
        problem = f"this MODEL is a {kind} video model but 'model' is a {base}."
    else:
        return
    raise MotionKitInputError(node, "uncustomized_model", problem,
                              "connect the base model of 'model' without the style LoRA, with the same motion module "
                              "('Load Motion Module').")


class MotionKitTrainMotionAdapter:
    DESCRIPTION = (
        "Still-Moving step 1, once per base video model (SD1.5 + motion module, or SVD): trains the motion adapter, a "
        "low-rank adapter on the temporal attentions' q/k/v, with the diffusion loss at alpha = 1 on frozen videos (one "
        "frame repeated over all frames). The frames come from the clips in clips_folder, or, when it is empty, from "
        "videos the model itself generates from the prompt (SD1.5 only). On SVD, connect the positive output of "
        "SVD_img2vid_Conditioning (its motion bucket, fps and augmentation are used), the checkpoint's clip_vision and "
        "vae: each frozen video is conditioned on its own frame, and the loss is SVD's own (EDM). Shows progress, stops "
        "cleanly when interrupted, saves resumable checkpoints, and writes models/still_moving/<adapter_name>.safetensors "
        "for 'Still-Moving Adapters'.")
    CATEGORY = "MotionKit"
    RETURN_TYPES = ("STRING", "STRING")
    RETURN_NAMES = ("adapter", "report")
    FUNCTION = "train"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        common = _common_inputs("the generated training videos")
        return {"required": {
            "model": ("MODEL", {"tooltip": "The base video model: SD1.5 + 'Load Motion Module' (no style LoRA), "
                                           "or SVD."}),
            "positive": ("CONDITIONING", {"tooltip": "Prompt for training (and for generating videos without clips); "
                                                     "SVD: the positive of SVD_img2vid_Conditioning."}),
            "negative": ("CONDITIONING",),
            "adapter_name": common.pop("adapter_name"),
            "clips_folder": ("STRING", {"default": "", "tooltip": "Folder of video clips (absolute or under input/); "
                                        "empty = generate videos with the model."}),
            "frames_per_clip": ("INT", {"default": 4, "min": 1, "max": 64, "tooltip": "Frames taken from each clip."}),
            "generated_videos": ("INT", {"default": 8, "min": 1, "max": 1000,
                                         "tooltip": "Videos to generate when clips_folder is empty."}),
            **common,
        }, "optional": {"vae": ("VAE", {"tooltip": "Needed to encode clip frames."}),
                        "clip_vision": ("CLIP_VISION", {"tooltip": "SVD: encodes each training frame as SVD's image "
                                                                   "conditioning (the checkpoint's CLIP vision)."})}}

    @outside_inference_mode
    def train(self, model, positive, negative, adapter_name, clips_folder, frames_per_clip, generated_videos,
              video_frames, width, height, generation_steps, cfg, rank, steps, learning_rate, batch_size, seed,
              checkpoint_every, resume, vae=None, clip_vision=None):
        node = TRAIN_MOTION
        model = require_model(node, model)
        cfg, learning_rate = _require_rates(node, cfg, learning_rate)
        spec = TrainSpec(node, "motion", _require_name(node, adapter_name), int(rank), int(steps), float(learning_rate),
                         int(batch_size), int(seed), int(checkpoint_every), bool(resume))
        host, sites = motion_sites(model, node)
        if host == "unet":
            svd = _svd_settings(node, model, positive, clips_folder, vae, clip_vision, width, height)
        else:
            _check_common(node, model, video_frames, width, height)
        trainable = _new_adapters(sites, spec.rank, spec.seed, node)
        state = load_checkpoint(spec)
        if state is not None:
            items = _items_of(state)          # the data the interrupted run trained on
        elif host == "unet":
            items = _svd_frozen_items(model, vae, clip_vision, _images_from_folder(
                node, clips_folder.strip(), vae, frames_per_clip, width, height), video_frames, svd)
        else:
            if clips_folder.strip():
                frames = _frames_from_folder(node, clips_folder.strip(), vae, frames_per_clip, width, height)
            else:
                frames = []
                for v in range(generated_videos):
                    video = _sample_latents(model, positive, negative, video_frames, width, height, generation_steps,
                                            cfg, spec.seed + v)
                    frames += [video[i] for i in evenly_spaced(frames_per_clip, video_frames)]
            items = [TrainItem(frozen_video(f, video_frames), alpha=1.0) for f in frames]
        by_path = {s.path: s for s in sites}

        def attach(alpha: Scale):
            return [(by_path[p].module, motion_lora_forward(by_path[p].module, m, alpha, 1.0))
                    for p, m in trainable.items()]

        trained, report = train_adapters(model, positive, spec, items, trainable, attach, state)
        data = AdapterFile(motion=AdapterPart(spec.rank, 1.0, {p: (m.down, m.up) for p, m in trained.items()}),
                           motion_host=host, base_model=_base_info(model, host))
        return _finish(spec, data, report)


def _svd_settings(node: str, model, positive, clips_folder: str, vae, clip_vision, width: int, height: int) -> dict:
    """What training a motion adapter on SVD needs, checked before any frame is read: its image-conditioning
    settings (from the positive of SVD_img2vid_Conditioning), clips, the VAE and the CLIP vision encoder."""
    _check_size(node, width, height)
    extra = positive[0][1] if isinstance(positive, list) and positive and len(positive[0]) == 2 else {}
    keys = ("motion_bucket_id", "fps", "augmentation_level")
    if not isinstance(extra, dict) or any(k not in extra for k in keys):
        raise MotionKitInputError(node, "positive", "on SVD this must be SVD's image conditioning (it has no motion "
                                  "bucket / fps / augmentation level).",
                                  "connect the positive output of 'SVD_img2vid_Conditioning'.")
    if not clips_folder.strip():
        raise MotionKitInputError(node, "clips_folder", "on SVD the frozen videos come from clip frames (an SVD video "
                                  "needs an image to start from), and clips_folder is empty.",
                                  "give a folder of clips or images (absolute, or relative to ComfyUI's input "
                                  "folder).")
    if vae is None:
        raise MotionKitInputError(node, "vae", "training on SVD needs a VAE to encode the frames.",
                                  "connect the checkpoint's VAE ('Image Only Checkpoint Loader').")
    if clip_vision is None:
        raise MotionKitInputError(node, "clip_vision", "training on SVD needs the CLIP vision encoder to condition "
                                  "each frozen video on its frame.",
                                  "connect the checkpoint's CLIP_VISION ('Image Only Checkpoint Loader').")
    return {k: extra[k] for k in keys}


def _svd_frozen_items(model, vae, clip_vision, images: list, frames: int, svd: dict) -> list:
    """One frozen video per image (its latent repeated ``frames`` times), conditioned on that image exactly as
    SVD_img2vid_Conditioning conditions a video on its first frame."""
    items = []
    for image in images:
        height, width = image.shape[1:3]
        positive = svd_image_conditioning(clip_vision, vae, image[..., :3], width, height, frames,
                                          svd["motion_bucket_id"], svd["fps"], svd["augmentation_level"])
        latent = frozen_video(vae.encode(image[..., :3]).float().cpu()[0], frames)
        conds = svd_model_conds(model, positive, model.model.process_latent_in(latent))
        items.append(TrainItem(latent, alpha=1.0,
                               conds={k: v.cpu() if torch.is_tensor(v) else v for k, v in conds.items()}))
    return items


class MotionKitTrainSpatialAdapters:
    DESCRIPTION = (
        "Still-Moving step 2, once per customised T2I model or LoRA: trains spatial adapters (low-rank residual maps "
        "after the spatial attentions' outputs) on the customised video model (your style LoRA + motion module). "
        "Data: frozen videos made from images the customised model generates, trained with the motion adapter at "
        "alpha = 1, plus prior-preservation videos generated by the uncustomised video model, trained at alpha = 0. "
        "The output file holds the motion adapter too, so one 'Still-Moving Adapters' node applies both.")
    CATEGORY = "MotionKit"
    RETURN_TYPES = ("STRING", "STRING")
    RETURN_NAMES = ("adapter", "report")
    FUNCTION = "train"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        common = _common_inputs("the generated images and prior videos")
        return {"required": {
            "model": ("MODEL", {"tooltip": "The customised video model: SD1.5 + style LoRA + 'Load Motion Module'."}),
            "uncustomized_model": ("MODEL", {"tooltip": "The same video model without the customisation (for prior "
                                                        "preservation)."}),
            "motion_adapter": (folder_paths.get_filename_list(STILL_MOVING), {
                "tooltip": "The motion adapter trained for this base video model ('Train Motion Adapter')."}),
            "positive": ("CONDITIONING",),
            "negative": ("CONDITIONING",),
            "adapter_name": common.pop("adapter_name"),
            "images": ("INT", {"default": 8, "min": 1, "max": 1000, "tooltip": "Customised images to generate."}),
            "prior_videos": ("INT", {"default": 4, "min": 0, "max": 1000,
                                     "tooltip": "Prior-preservation videos from the uncustomised model (0 = none)."}),
            "prior_weight": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.05}),
            **common,
        }}

    @outside_inference_mode
    def train(self, model, uncustomized_model, motion_adapter, positive, negative, adapter_name, images, prior_videos,
              prior_weight, video_frames, width, height, generation_steps, cfg, rank, steps, learning_rate, batch_size,
              seed, checkpoint_every, resume):
        node = TRAIN_SPATIAL
        model = require_model(node, model)
        uncustomized_model = require_model(node, uncustomized_model, "uncustomized_model")
        cfg, learning_rate = _require_rates(node, cfg, learning_rate)
        prior_weight = require_range(node, "prior_weight", prior_weight, 0.0, 10.0)
        spec = TrainSpec(node, "spatial", _require_name(node, adapter_name), int(rank), int(steps),
                         float(learning_rate), int(batch_size), int(seed), int(checkpoint_every), bool(resume))
        _check_common(node, model, video_frames, width, height)
        _check_uncustomized(node, model, uncustomized_model)
        motion_file, _ = _require_adapter_file(node, motion_adapter, "motion_adapter")
        motion = motion_file.parts().get("motion")
        if motion is None:
            raise MotionKitInputError(node, "motion_adapter", f"'{motion_adapter}' holds no motion adapter.",
                                      "choose the output of 'Train Motion Adapter'.")
        host, msites = motion_sites(model, node)
        fixed = {s.path: (s.module, _fixed_low_rank(down, up))
                 for s, down, up in _match(node, "motion_adapter", motion.tensors, msites, "motion", motion_adapter)}
        ssites = spatial_sites(model, node)
        trainable = _new_adapters(ssites, spec.rank, spec.seed, node)
        state = load_checkpoint(spec)
        if state is not None:
            items = _items_of(state)
        else:
            image_model = without_motion_modules(model)   # the customised T2I model
            items = [TrainItem(frozen_video(_sample_latents(image_model, positive, negative, 1, width, height,
                                                            generation_steps, cfg, spec.seed + i)[0], video_frames),
                               alpha=1.0) for i in range(images)]
            items += [TrainItem(_sample_latents(uncustomized_model, positive, negative, video_frames, width, height,
                                                generation_steps, cfg, spec.seed + 10_000 + v),
                                alpha=0.0, weight=float(prior_weight), kind="prior") for v in range(prior_videos)]
        spatial_by_path = {s.path: s for s in ssites}
        strength = Scale(1.0)

        def attach(alpha: Scale):
            pairs = [(module, motion_lora_forward(module, m, alpha, motion.scale)) for module, m in fixed.values()]
            pairs += [(spatial_by_path[p].module, spatial_residual_forward(spatial_by_path[p].module, m, strength, 1.0))
                      for p, m in trainable.items()]
            return pairs

        trained, report = train_adapters(model, positive, spec, items, trainable, attach, state)
        spatial = AdapterPart(spec.rank, 1.0, {p: (m.down, m.up) for p, m in trained.items()})
        data = AdapterFile(motion=motion, spatial=spatial,
                           motion_host=host, base_model={**_base_info(model, host), "motion_adapter": motion_adapter})
        return _finish(spec, data, report)


def _finish(spec: TrainSpec, data: AdapterFile, report: dict) -> dict:
    """Write the adapter file (the loader's format) and report."""
    path = os.path.join(folder_paths.get_folder_paths(STILL_MOVING)[0], f"{spec.adapter_name}.safetensors")
    bad = _non_finite(data)
    if bad:   # the loop checks every step; this guards the file itself
        raise MotionKitInputError(spec.node, "learning_rate", f"the trained adapter is not finite ({bad[0]} holds NaN "
                                  "or infinite values); no adapter file was written.",
                                  "lower learning_rate and train again with resume = false.")
    save_adapter(path, data)
    report.update(adapter=os.path.basename(path), kind=spec.kind)
    summary = {k: report[k] for k in ("adapter", "steps", "resumed_at", "eval_loss_before", "eval_loss_after")
               if k in report}
    log.info("MotionKit: trained %s", summary)
    return {"ui": {"text": [json.dumps(summary)]}, "result": (report["adapter"], json.dumps(report))}


def _fixed_low_rank(down: torch.Tensor, up: torch.Tensor) -> LowRank:
    m = LowRank(down.shape[1], up.shape[0], down.shape[0])
    with torch.no_grad():
        m.down.copy_(down)
        m.up.copy_(up)
    return m.requires_grad_(False)


NODE_CLASS_MAPPINGS = {
    "MotionKitStillMovingAdapter": MotionKitStillMovingAdapter,
    "MotionKitTrainMotionAdapter": MotionKitTrainMotionAdapter,
    "MotionKitTrainSpatialAdapters": MotionKitTrainSpatialAdapters,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "MotionKitStillMovingAdapter": "Still-Moving Adapters",
    "MotionKitTrainMotionAdapter": "Train Motion Adapter (Still-Moving)",
    "MotionKitTrainSpatialAdapters": "Train Spatial Adapters (Still-Moving)",
}
