"""A tiny SD1.5-architecture checkpoint with seeded random weights, and AnimateDiff-style motion-module
state dicts at the matching width, built at test time (never committed).

TEST HARNESS ONLY, not part of the shipped pack. The checkpoint has the real single-file layout:
``model.diffusion_model.*`` (ComfyUI's SD1.5 UNet: 4 levels, 2 res blocks, attention at the first three,
conv/linear shapes as in SD1.5 but ``model_channels`` 32 instead of 320), ``first_stage_model.taesd_*``
(a TAESD VAE, detected by ComfyUI's stock VAE code) and ``cond_stage_model.transformer.text_model.*`` (a
CLIP-L text tower at hidden size 64 with the real vocabulary and 77 positions, so the stock SD1 tokenizer
and ``CLIPTextEncode`` work). :func:`register_tiny_sd15` adds a supported-model entry that only matches
this width, so the stock ``CheckpointLoaderSimple`` loads it.

Motion modules are built from the *official* AnimateDiff configuration, independently of the pack's
loader: ``VanillaTemporalModule`` with one ``TemporalTransformerBlock`` of two temporal self-attentions,
8 heads, GEGLU feed-forward (x4), on ``down_blocks.{0..3}.motion_modules.{0,1}``,
``up_blocks.{0..3}.motion_modules.{0,1,2}`` and (v2 only) ``mid_block.motion_modules.0``, with channels
``(C, 2C, 4C, 4C)`` down and reversed up. At C = 320 :func:`motion_module_shapes` reproduces the key/shape
manifest of Motion-I2V's ``motion_block.bin`` exactly (checked by the tests).
"""
from __future__ import annotations

import math
import os

import torch

TINY_SD15_CKPT = "motionkit_tiny_sd15.safetensors"
TINY_LABEL = "MotionKit TINY RANDOM SD1.5 test model (not a real SD1.5; output is noise-like)"
WIDTH = 32                 # model_channels; SD1.5 has 320
CONTEXT = 64               # text width; SD1.5 (CLIP-L) has 768
CHANNEL_MULT = (1, 2, 4, 4)
CLIP_CONFIG = {
    "architectures": ["CLIPTextModel"], "attention_dropout": 0.0, "bos_token_id": 0, "dropout": 0.0,
    "eos_token_id": 49407, "hidden_act": "quick_gelu", "hidden_size": CONTEXT, "initializer_factor": 1.0,
    "initializer_range": 0.02, "intermediate_size": 4 * CONTEXT, "layer_norm_eps": 1e-5,
    "max_position_embeddings": 77, "model_type": "clip_text_model", "num_attention_heads": 2,
    "num_hidden_layers": 2, "pad_token_id": 1, "projection_dim": CONTEXT, "torch_dtype": "float32",
    "vocab_size": 49408,
}


def unet_config(width: int = WIDTH, context: int = CONTEXT) -> dict:
    """What ComfyUI's ``detect_unet_config`` infers for an SD1.5 UNet of this width (plus SD15's extras)."""
    return {
        "use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True,
        "legacy": False, "adm_in_channels": None, "in_channels": 4, "model_channels": width,
        "num_res_blocks": [2, 2, 2, 2], "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
        "channel_mult": list(CHANNEL_MULT), "transformer_depth_middle": 1, "use_linear_in_transformer": False,
        "context_dim": context, "num_heads": 8, "num_head_channels": -1,
        "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
        "use_temporal_attention": False, "use_temporal_resblock": False,
    }


def _random_init():
    from motionkit_testing.tiny_models import random_init_
    return random_init_


def build_unet(width: int = WIDTH, context: int = CONTEXT, seed: int = 0, device="cpu"):
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
    unet = UNetModel(**unet_config(width, context), dtype=torch.float32, device=device,
                     operations=comfy.ops.disable_weight_init)
    if str(device) != "meta":
        _random_init()(unet, seed)
        _unit_norms(unet, seed + 1000)
    return unet


@torch.no_grad()
def _unit_norms(module: torch.nn.Module, seed: int) -> None:
    """Near-unit gains on every normalisation layer. The shared random init only recognises parameters
    named "norm"; the ResBlocks' and the output's GroupNorms (``in_layers.0``, ``out_layers.0``, ``out.0``)
    would get ~0.05 gains and make the tiny UNet's output almost independent of its input."""
    gen = torch.Generator().manual_seed(seed)
    for name, m in sorted(module.named_modules(), key=lambda kv: kv[0]):
        if isinstance(m, (torch.nn.GroupNorm, torch.nn.LayerNorm)) and m.weight is not None:
            m.weight.copy_(1.0 + 0.1 * torch.randn(m.weight.shape, generator=gen))


def build_clip_sd(seed: int = 2) -> dict:
    import comfy.clip_model
    import comfy.ops
    model = comfy.clip_model.CLIPTextModel(dict(CLIP_CONFIG), torch.float32, "cpu", comfy.ops.manual_cast)
    _random_init()(model, seed)
    return {k: v.contiguous() for k, v in model.state_dict().items()}


def tiny_sd15_checkpoint(path: str, width: int = WIDTH, seed: int = 0) -> str:
    """Write a single-file SD1.5-layout checkpoint (UNet + TAESD VAE + CLIP-L-like text encoder)."""
    from safetensors.torch import save_file
    from motionkit_testing.tiny_models import build_taesd

    sd = {f"model.diffusion_model.{k}": v.contiguous() for k, v in build_unet(width, seed=seed).state_dict().items()}
    sd.update({f"first_stage_model.{k}": v.contiguous() for k, v in build_taesd(seed + 1).state_dict().items()})
    sd.update({f"cond_stage_model.transformer.{k}": v for k, v in build_clip_sd(seed + 2).items()})
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_file(sd, path, metadata={"motionkit_test_model": TINY_LABEL, "width": str(width)})
    return path


# --- motion modules from the official AnimateDiff configuration ---------------------------------------

LAYOUTS = {
    # name: (mid block, position-encoding length)       source
    "v1": (False, 24),         # mm_sd_v15.ckpt: motion_module_mid_block False, max_len 24
    "v2": (True, 32),          # mm_sd_v15_v2.ckpt and Motion-I2V motion_block.bin
    "v3": (False, 32),         # v3_sd15_mm.ckpt: motion_module_mid_block False, max_len 32
    "fyc": (False, 24),        # Follow-Your-Click inference config: Vanilla, no mid block, max_len 24
}


def _module_shapes(c: int, max_len: int) -> dict:
    """One VanillaTemporalModule (num_transformer_block=1, ("Temporal_Self", "Temporal_Self"), GEGLU x4)."""
    t = "temporal_transformer."
    b = t + "transformer_blocks.0."
    shapes = {t + "norm.weight": (c,), t + "norm.bias": (c,), t + "proj_in.weight": (c, c), t + "proj_in.bias": (c,),
              t + "proj_out.weight": (c, c), t + "proj_out.bias": (c,),
              b + "ff.net.0.proj.weight": (8 * c, c), b + "ff.net.0.proj.bias": (8 * c,),
              b + "ff.net.2.weight": (c, 4 * c), b + "ff.net.2.bias": (c,),
              b + "ff_norm.weight": (c,), b + "ff_norm.bias": (c,)}
    for j in range(2):
        a = f"{b}attention_blocks.{j}."
        shapes.update({a + "to_q.weight": (c, c), a + "to_k.weight": (c, c), a + "to_v.weight": (c, c),
                       a + "to_out.0.weight": (c, c), a + "to_out.0.bias": (c,), a + "pos_encoder.pe": (1, max_len, c),
                       f"{b}norms.{j}.weight": (c,), f"{b}norms.{j}.bias": (c,)})
    return shapes


def motion_module_shapes(layout: str = "v2", width: int = WIDTH) -> dict:
    """Official key -> shape for a whole motion-module file of this layout at UNet width ``width``."""
    mid, max_len = LAYOUTS[layout]
    chans = [width * m for m in CHANNEL_MULT]
    sites = [(f"down_blocks.{i}.motion_modules.{j}.", chans[i]) for i in range(4) for j in range(2)]
    sites += [(f"up_blocks.{i}.motion_modules.{j}.", chans[3 - i]) for i in range(4) for j in range(3)]
    if mid:
        sites.append(("mid_block.motion_modules.0.", chans[3]))
    return {prefix + k: s for prefix, c in sites for k, s in _module_shapes(c, max_len).items()}


def sinusoidal_pe(length: int, dim: int) -> torch.Tensor:
    """AnimateDiff's PositionalEncoding buffer, written out here independently of the pack."""
    position = torch.arange(length).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
    pe = torch.zeros(1, length, dim)
    pe[0, :, 0::2] = torch.sin(position * div_term)
    pe[0, :, 1::2] = torch.cos(position * div_term)
    return pe


def motion_module_state_dict(layout: str = "v2", width: int = WIDTH, seed: int = 0, zero_out: bool = False,
                             out_scale: float = 1.0) -> dict:
    """Random values with the official keys and shapes. ``zero_out`` zero-initialises every ``proj_out``
    (as AnimateDiff does before training), so each module's output equals its input."""
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape in sorted(motion_module_shapes(layout, width).items()):
        if key.endswith("pos_encoder.pe"):
            sd[key] = sinusoidal_pe(shape[1], shape[2])
        elif key.endswith("proj_out.weight") or key.endswith("proj_out.bias"):
            sd[key] = torch.zeros(shape) if zero_out else out_scale * torch.randn(shape, generator=gen) / math.sqrt(shape[-1])
        elif "norm" in key and key.endswith("weight"):
            sd[key] = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        elif len(shape) >= 2:
            sd[key] = torch.randn(shape, generator=gen) / math.sqrt(shape[-1])
        else:
            sd[key] = 0.05 * torch.randn(shape, generator=gen)
    return sd


def follow_your_click_checkpoint(width: int = WIDTH, seed: int = 0) -> dict:
    """What ``scripts/inference.py`` of Follow-Your-Click loads: ``{"state_dict": {"module.<UNet3D key>": ...}}``
    with the motion modules (v1 layout) *and* the rest of its UNet: the 9-channel ``conv_in``, the fps and
    motion-strength ``TimestepEmbedding`` MLPs and (a sample of) the spatial layers."""
    c, emb = width, 4 * width
    g = torch.Generator().manual_seed(seed + 100)
    rest = {"conv_in.weight": (c, 9, 3, 3), "conv_in.bias": (c,), "time_embedding.linear_1.weight": (emb, c),
            "fps_embedding.linear_1.weight": (emb, c), "fps_embedding.linear_1.bias": (emb,),
            "fps_embedding.linear_2.weight": (emb, emb), "fps_embedding.linear_2.bias": (emb,),
            "motion_embedding.linear_1.weight": (emb, c), "motion_embedding.linear_1.bias": (emb,),
            "motion_embedding.linear_2.weight": (emb, emb), "motion_embedding.linear_2.bias": (emb,),
            "down_blocks.0.resnets.0.conv1.weight": (c, c, 3, 3),
            "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight": (c, c),
            "mid_block.resnets.0.norm1.weight": (4 * c,),
            "up_blocks.3.attentions.2.proj_out.weight": (c, c)}
    sd = {k: torch.randn(s, generator=g) for k, s in rest.items()}
    sd.update(motion_module_state_dict("fyc", width, seed))
    return {"state_dict": {f"module.{k}": v for k, v in sd.items()}}


# --- registration in a running ComfyUI (test harness only) -------------------------------------------

def _tiny_clip_model():
    from comfy import sd1_clip

    class TinySD1ClipModel(sd1_clip.SD1ClipModel):
        """SD1.5's text encoder class with the tiny CLIP config (ComfyUI's own config-override hook)."""
        def __init__(self, device="cpu", dtype=None, model_options={}, **kwargs):
            model_options = {**model_options, "clip_l_model_config": dict(CLIP_CONFIG)}
            super().__init__(device=device, dtype=dtype, model_options=model_options, **kwargs)

    return TinySD1ClipModel


def _supported_model(width: int = WIDTH):
    import comfy.supported_models
    from comfy import sd1_clip, supported_models_base

    cfg = unet_config(width)
    clip_model = _tiny_clip_model()
    match = ("context_dim", "model_channels", "use_linear_in_transformer", "adm_in_channels",
             "use_temporal_attention", "in_channels", "channel_mult", "num_res_blocks", "transformer_depth")
    return type(_model_name(width), (comfy.supported_models.SD15,), {
        "unet_config": {k: cfg[k] for k in match},
        "unet_extra_config": {"num_heads": 8, "num_head_channels": -1},
        "clip_target": lambda self, state_dict={}: supported_models_base.ClipTarget(sd1_clip.SD1Tokenizer, clip_model),
    })


def _model_name(width: int) -> str:
    return "MotionKitTest_SD15_tiny" if width == WIDTH else f"MotionKitTest_SD15_w{width}"


def register_tiny_sd15(widths: tuple = (WIDTH,)) -> None:
    """Make ComfyUI's stock ``CheckpointLoaderSimple`` accept SD1.5 UNets of these widths (the tests use 32,
    the benchmark a wider one). Idempotent."""
    import comfy.supported_models
    for width in widths:
        if _model_name(width) not in {m.__name__ for m in comfy.supported_models.models}:
            comfy.supported_models.models.append(_supported_model(width))


# --- files for a test session -----------------------------------------------------------------------

MOTION_FILES = {
    "v1": "motionkit_tiny_mm_v1.ckpt",                  # pickled, as mm_sd_v15.ckpt
    "v2": "motionkit_tiny_mm_v2.safetensors",
    "motion_i2v": "motionkit_tiny_motion_block.bin",    # pickled, as Motion-I2V's motion_block.bin
    "v3": "motionkit_tiny_mm_v3.ckpt",                  # pickled, as v3_sd15_mm.ckpt
    "fyc": "motionkit_tiny_fyc.ckpt",                   # a whole Follow-Your-Click UNet checkpoint
    "zero": "motionkit_tiny_mm_zero.safetensors",       # v2 with zero-initialised proj_out
}
STYLE_LORA = "motionkit_tiny_style.safetensors"


def style_lora(width: int = WIDTH, rank: int = 2, seed: int = 7) -> dict:
    """A kohya-format LoRA on every spatial attention's q and output projections (a "style")."""
    unet = build_unet(width, device="meta")
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, module in unet.named_modules():
        if ".transformer_blocks." in name and name.endswith(("attn1.to_q", "attn1.to_out.0", "attn2.to_out.0")):
            key = "lora_unet_" + name.replace(".", "_")
            out_f, in_f = module.weight.shape
            sd[f"{key}.lora_down.weight"] = torch.randn(rank, in_f, generator=g) / math.sqrt(in_f)
            sd[f"{key}.lora_up.weight"] = 0.5 * torch.randn(out_f, rank, generator=g) / math.sqrt(rank)
            sd[f"{key}.alpha"] = torch.tensor(float(rank))
    return sd


def write_assets(base_dir) -> dict:
    """The tiny SD1.5 checkpoint, one motion-module file per supported layout, and a style LoRA."""
    from pathlib import Path
    from safetensors.torch import save_file

    base = Path(base_dir)
    for sub in ("checkpoints", "animatediff_models", "loras", "still_moving"):
        (base / "models" / sub).mkdir(parents=True, exist_ok=True)
    tiny_sd15_checkpoint(str(base / "models" / "checkpoints" / TINY_SD15_CKPT))
    mm = base / "models" / "animatediff_models"
    torch.save(motion_module_state_dict("v1", seed=1), mm / MOTION_FILES["v1"])
    save_file(motion_module_state_dict("v2", seed=2), str(mm / MOTION_FILES["v2"]))
    torch.save(motion_module_state_dict("v2", seed=3), mm / MOTION_FILES["motion_i2v"])
    torch.save(motion_module_state_dict("v3", seed=6), mm / MOTION_FILES["v3"])
    torch.save(follow_your_click_checkpoint(seed=4), mm / MOTION_FILES["fyc"])
    save_file(motion_module_state_dict("v2", seed=5, zero_out=True), str(mm / MOTION_FILES["zero"]))
    save_file(style_lora(), str(base / "models" / "loras" / STYLE_LORA))
    return {"ckpt": TINY_SD15_CKPT, "lora": STYLE_LORA, **MOTION_FILES}
