"""Small SVD-architecture models with seeded random weights, built at test time (never committed).

TEST HARNESS ONLY, not part of the shipped pack. ComfyUI's model detection only knows the real SVD
shapes, so :func:`register_tiny_models` adds supported-model entries for these sizes, and a detection
fallback for the tiny CLIP-vision encoder, in the running ComfyUI. Real checkpoints are unaffected:
the entries only match the tiny shapes, and are appended after ComfyUI's own.

The checkpoint layout is the real one: ``model.diffusion_model.*`` (SGM UNet names),
``first_stage_model.taesd_*`` (a TAESD VAE, detected by ComfyUI's stock VAE code) and the CLIP vision
tower under SVD's ``conditioner.embedders.0.open_clip.model.visual.`` prefix, so the stock
``ImageOnlyCheckpointLoader`` loads all three.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass

import torch

CLIP_PREFIX = "conditioner.embedders.0.open_clip.model.visual."
TINY_LABEL = "MotionKit TINY RANDOM test model (not a real SVD; output is noise-like)"


@dataclass(frozen=True)
class SVDSpec:
    name: str
    model_channels: int
    channel_mult: tuple
    num_res_blocks: int
    context_dim: int
    head_channels: int
    clip_hidden: int = 32
    clip_layers: int = 2
    clip_heads: int = 2
    clip_image_size: int = 56

    def unet_config(self) -> dict:
        """The config ComfyUI's ``detect_unet_config`` infers for this UNet (plus the never-inferred extras)."""
        levels = len(self.channel_mult)
        attn_levels = levels if levels < 4 else levels - 1  # real SVD: no attention at the lowest level
        depth = [1 if i < attn_levels else 0 for i in range(levels) for _ in range(self.num_res_blocks)]
        # ComfyUI's detection lists the output blocks from the last (shallowest) to output_blocks.0, and
        # UNetModel pops from the end: shallowest level first here
        out_depth = [1 if i < attn_levels else 0 for i in range(levels) for _ in range(self.num_res_blocks + 1)]
        return {
            "use_checkpoint": False, "image_size": 32, "use_spatial_transformer": True, "legacy": False,
            "num_classes": "sequential", "adm_in_channels": 768,
            "in_channels": 8, "out_channels": 4, "model_channels": self.model_channels,
            "num_res_blocks": [self.num_res_blocks] * levels, "transformer_depth": depth,
            "transformer_depth_output": out_depth, "channel_mult": list(self.channel_mult),
            "transformer_depth_middle": 1, "use_linear_in_transformer": True, "context_dim": self.context_dim,
            "extra_ff_mix_layer": True, "use_spatial_context": True, "merge_strategy": "learned_with_images",
            "merge_factor": 0.0, "video_kernel_size": [3, 1, 1], "use_temporal_resblock": True,
            "use_temporal_attention": True, "disable_temporal_crossattention": False,
        }

    def extra_config(self) -> dict:
        return {"num_heads": -1, "num_head_channels": self.head_channels, "attn_precision": torch.float32}

    def clip_config(self) -> dict:
        return {
            "model_type": "clip_vision_model", "hidden_size": self.clip_hidden, "intermediate_size": 4 * self.clip_hidden,
            "num_attention_heads": self.clip_heads, "num_hidden_layers": self.clip_layers, "num_channels": 3,
            "image_size": self.clip_image_size, "patch_size": 14, "hidden_act": "gelu", "layer_norm_eps": 1e-5,
            "projection_dim": self.context_dim, "torch_dtype": "float32",
        }


TINY = SVDSpec("tiny", model_channels=32, channel_mult=(1, 2), num_res_blocks=1, context_dim=64, head_channels=16)
# The real SVD / SVD-XT UNet (they share one architecture; XT was trained for 25 frames).
FULL_SVD = SVDSpec("svd", model_channels=320, channel_mult=(1, 2, 4, 4), num_res_blocks=2, context_dim=1024,
                   head_channels=64, clip_hidden=1280, clip_layers=32, clip_heads=16, clip_image_size=224)
# For CPU benchmarks: the real layout (4 levels, 2 res blocks, 64-channel heads) at reduced width.
MID = SVDSpec("mid", model_channels=64, channel_mult=(1, 2, 4, 4), num_res_blocks=2, context_dim=256, head_channels=32)
# The Control World's model (benchmarks/control_world): trained, not random; 64x64 frames, 8x8 latents.
WORLD = SVDSpec("world", model_channels=64, channel_mult=(1, 2), num_res_blocks=1, context_dim=64, head_channels=32)
SPECS = {s.name: s for s in (TINY, MID, WORLD)}


def build_unet(spec: SVDSpec, device="cpu", dtype=torch.float32, seed: int | None = 0):
    """An SVD-architecture ``UNetModel`` with seeded random weights (or uninitialised on ``meta``)."""
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    cfg = {**spec.unet_config(), **spec.extra_config()}
    unet = UNetModel(**cfg, dtype=dtype, device=device, operations=comfy.ops.disable_weight_init)
    if seed is not None and str(device) != "meta":
        random_init_(unet, seed)
    return unet


@torch.no_grad()
def random_init_(module: torch.nn.Module, seed: int) -> None:
    """Deterministic init (comfy's ops skip reset_parameters): fan-in scaled weights, near-unit norms."""
    gen = torch.Generator().manual_seed(seed)
    for name, p in sorted(module.named_parameters(), key=lambda kv: kv[0]):
        if p.ndim >= 2:
            fan_in = p[0].numel()
            p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(fan_in))
        elif "norm" in name and name.endswith("weight"):
            p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
        else:
            p.copy_(0.05 * torch.randn(p.shape, generator=gen))


def build_taesd(seed: int = 1):
    import comfy.taesd.taesd
    taesd = comfy.taesd.taesd.TAESD(latent_channels=4)
    random_init_(taesd, seed)
    return taesd


def build_clip_vision_sd(spec: SVDSpec, seed: int = 2) -> dict:
    import comfy.clip_model
    import comfy.ops
    model = comfy.clip_model.CLIPVisionModelProjection(spec.clip_config(), torch.float32, "cpu", comfy.ops.manual_cast)
    random_init_(model, seed)
    return {k: v.contiguous() for k, v in model.state_dict().items()}


def tiny_svd_checkpoint(path: str, spec: SVDSpec = TINY, seed: int = 0) -> str:
    """Write a single-file SVD-layout checkpoint (UNet + TAESD VAE + CLIP vision) and return its path."""
    from safetensors.torch import save_file

    sd = {f"model.diffusion_model.{k}": v.contiguous() for k, v in build_unet(spec, seed=seed).state_dict().items()}
    sd.update({f"first_stage_model.{k}": v.contiguous() for k, v in build_taesd(seed + 1).state_dict().items()})
    sd.update({f"{CLIP_PREFIX}{k}": v for k, v in build_clip_vision_sd(spec, seed + 2).items()})
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_file(sd, path, metadata={"motionkit_test_model": TINY_LABEL, "spec": spec.name})
    return path


def meta_unet_state_dict(spec: SVDSpec) -> dict:
    """Keys and shapes of a UNet built on the meta device, prefixed as in a checkpoint (no memory used)."""
    unet = build_unet(spec, device="meta", seed=None)
    return {f"model.diffusion_model.{k}": v for k, v in unet.state_dict().items()}


# --- registration in a running ComfyUI (test harness only) -------------------------------------------

_MATCH_KEYS = ("model_channels", "in_channels", "use_linear_in_transformer", "transformer_depth", "context_dim",
               "adm_in_channels", "use_temporal_attention", "use_temporal_resblock", "channel_mult", "num_res_blocks")


def _supported_model(spec: SVDSpec):
    import comfy.supported_models

    cfg = spec.unet_config()
    return type(f"MotionKitTest_SVD_{spec.name}", (comfy.supported_models.SVD_img2vid,), {
        "unet_config": {k: cfg[k] for k in _MATCH_KEYS},
        "unet_extra_config": spec.extra_config(),
    })


def _clip_vision_fallback(original):
    import comfy.clip_vision
    import comfy.utils

    def load_clipvision_from_sd(sd, prefix="", convert_keys=False):
        found = original(sd, prefix, convert_keys)
        if found is not None:
            return found
        # ComfyUI strips the prefix in place before detecting; accept either spelling.
        sd = comfy.utils.state_dict_prefix_replace(dict(sd), {prefix: ""}) if prefix else dict(sd)
        width = sd.get("vision_model.embeddings.patch_embedding.weight")
        proj = sd.get("visual_projection.weight")
        spec = next((s for s in SPECS.values() if width is not None and proj is not None
                     and width.shape[0] == s.clip_hidden and proj.shape[0] == s.context_dim), None)
        if spec is None:
            return None
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(spec.clip_config(), f)
        try:
            clip = comfy.clip_vision.ClipVisionModel(f.name)
        finally:
            os.unlink(f.name)
        missing, _ = clip.load_sd({k: v for k, v in sd.items() if k.startswith(("vision_model.", "visual_projection."))})
        if missing:
            raise RuntimeError(f"tiny clip vision: missing keys {missing}")
        return clip
    load_clipvision_from_sd.motionkit_test_fallback = True
    return load_clipvision_from_sd


def register_tiny_models() -> None:
    """Make ComfyUI's stock loaders accept the tiny test shapes. Idempotent."""
    import comfy.clip_vision
    import comfy.supported_models

    names = {m.__name__ for m in comfy.supported_models.models}
    for spec in SPECS.values():
        cls = _supported_model(spec)
        if cls.__name__ not in names:
            comfy.supported_models.models.append(cls)
    if not getattr(comfy.clip_vision.load_clipvision_from_sd, "motionkit_test_fallback", False):
        comfy.clip_vision.load_clipvision_from_sd = _clip_vision_fallback(comfy.clip_vision.load_clipvision_from_sd)
