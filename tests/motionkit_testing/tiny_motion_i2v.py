"""Tiny Motion-I2V stage-1 model folders with seeded random weights, built at test time (never committed).

TEST HARNESS ONLY. A folder has the Hugging Face repository's layout (``wangfuyun/Motion-I2V``)::

    <name>/models/stage1/StableDiffusion-FlowGen/unet/diffusion_pytorch_model.{bin,safetensors}
    <name>/models/stage1/StableDiffusion-FlowGen/controlnet/controlnet.{bin,safetensors}     keys "controlnet.*"
    <name>/models/stage1/StableDiffusion-FlowGen/vae_flow/diffusion_pytorch_model.{bin,safetensors}
    <name>/models/stage1/StableDiffusion-FlowGen/text_encoder/{pytorch_model.bin,model.safetensors}
    <name>/models/stage2/StableDiffusion/vae/diffusion_pytorch_model.{bin,safetensors}

* FlowGen UNet + ControlNet: the official configuration (4 levels, attention on the first three, motion
  modules everywhere, 8 input channels, stride embedding) at widths (32, 32, 64, 64), one ResNet per
  level, text width 32, position table 8. Key names are the official ones: at the official widths the
  same builder reproduces the official manifest (tests/test_motion_i2v_stage1.py).
* VAEs: diffusers-0.11 ``AutoencoderKL`` names (mid attention ``query/key/value/proj_attn``), made from
  ComfyUI's own AutoencoderKL at width 32 by inverting ComfyUI's diffusers conversion map; 3 channels for
  the image VAE, 2 (dx, dy) for the flow VAE.
* Text encoder: Hugging Face ``CLIPTextModel`` keys (ComfyUI's CLIP text model uses the same names), the
  real vocabulary and 77 positions, hidden size 32, with the ``position_ids`` buffer older exports carry.
"""
from __future__ import annotations

import math
import os
from dataclasses import replace
from pathlib import Path

import torch

from motionkit_testing.pack import pack_module
from motionkit_testing.tiny_models import random_init_

FLOWGEN_DIR = "models/stage1/StableDiffusion-FlowGen"
IMAGE_VAE_DIR = "models/stage2/StableDiffusion/vae"
TEXT_WIDTH = 32


def tiny_config():
    fg = pack_module("flowgen")
    return replace(fg.OFFICIAL, block_out_channels=(32, 32, 64, 64), layers_per_block=1,
                   cross_attention_dim=TEXT_WIDTH, time_embed_dim=128, motion_max_len=8, control_hidden=16)


def flowgen_state_dicts(seed: int = 0) -> tuple[dict, dict]:
    """``(unet, controlnet)`` state dicts; the ControlNet's keys carry ``controlnet.`` as in controlnet.bin.
    Every weight is random (the ControlNet's zero-convolutions too, so the control matters)."""
    fg = pack_module("flowgen")
    model = fg.FlowGenUNet(tiny_config(), with_controlnet=True)
    random_init_(model, seed)
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    unet = {k: v for k, v in sd.items() if not k.startswith("controlnet.")}
    control = {k: v for k, v in sd.items() if k.startswith("controlnet.")}
    return unet, control


def _inverse_vae_conversion(sd: dict) -> dict:
    """ComfyUI (LDM) VAE names -> diffusers-0.11 names, by ComfyUI's own map read backwards."""
    from comfy.diffusers_convert import vae_conversion_map

    attn_names = {"norm": "group_norm", "q": "query", "k": "key", "v": "value", "proj_out": "proj_attn"}
    out = {}
    for key, value in sd.items():
        new = key
        for sd_part, hf_part in vae_conversion_map:
            new = new.replace(sd_part, hf_part)
        if ".attentions.0." in new:
            head, tail = new.split(".attentions.0.")
            name, param = tail.split(".")
            new = f"{head}.attentions.0.{attn_names[name]}.{param}"
            if name != "norm" and value.ndim == 4:
                value = value[:, :, 0, 0]            # 1x1 conv -> Linear, as diffusers-0.11 stores it
        out[new] = value.contiguous()
    return out


def vae_state_dict(channels: int, seed: int) -> dict:
    import comfy.ldm.models.autoencoder

    ddconfig = {"double_z": True, "z_channels": 4, "resolution": 64, "in_channels": channels, "out_ch": channels,
                "ch": 32, "ch_mult": [1, 1, 1, 1], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}
    vae = comfy.ldm.models.autoencoder.AutoencoderKL(ddconfig=ddconfig, embed_dim=4)
    random_init_(vae, seed)
    sd = _inverse_vae_conversion(vae.state_dict())
    for known in ("encoder.mid_block.attentions.0.query.weight", "decoder.mid_block.attentions.0.proj_attn.bias",
                  "encoder.down_blocks.0.downsamplers.0.conv.weight", "decoder.up_blocks.0.upsamplers.0.conv.weight",
                  "decoder.up_blocks.3.resnets.1.conv2.weight", "encoder.conv_norm_out.weight", "quant_conv.weight"):
        assert known in sd, f"tiny VAE lacks the diffusers key {known}"
    assert not any(k.startswith(("encoder.down.", "decoder.up.")) for k in sd)
    return sd


def text_encoder_state_dict(seed: int) -> dict:
    import comfy.clip_model
    import comfy.ops

    config = {"num_hidden_layers": 2, "hidden_size": TEXT_WIDTH, "num_attention_heads": 1,
              "intermediate_size": 2 * TEXT_WIDTH, "hidden_act": "quick_gelu", "max_position_embeddings": 77,
              "eos_token_id": 49407, "vocab_size": 49408, "projection_dim": TEXT_WIDTH}
    model = comfy.clip_model.CLIPTextModel(config, torch.float32, "cpu", comfy.ops.manual_cast)
    random_init_(model, seed)
    sd = {k: v.contiguous() for k, v in model.state_dict().items() if k != "text_projection.weight"}
    sd["text_model.embeddings.position_ids"] = torch.arange(77)[None]
    return sd


def _save(sd: dict, path: Path, fmt: str) -> None:
    os.makedirs(path.parent, exist_ok=True)
    if fmt == "safetensors":
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path.with_suffix(".safetensors")))
    else:
        torch.save(sd, str(path.with_suffix(".bin")))


def tiny_parts(seed: int = 0) -> dict:
    """The five state dicts of a tiny model folder, by part name."""
    unet, control = flowgen_state_dicts(seed)
    return {"unet": unet, "controlnet": control, "vae_flow": vae_state_dict(2, seed + 1),
            "text_encoder": text_encoder_state_dict(seed + 2), "image_vae": vae_state_dict(3, seed + 3)}


def zero_control_embedding(control: dict) -> dict:
    """The ControlNet with the last conv of its conditioning embedding at zero, as a fresh ControlNet
    starts: the control image then cannot reach the network."""
    out = dict(control)
    for name in ("weight", "bias"):
        key = f"controlnet.controlnet_cond_embedding.layers.2.{name}"
        out[key] = torch.zeros_like(out[key])
    return out


def write_model_folder(folder: Path, parts: dict, fmt: str = "bin", unet_prefix: str = "") -> Path:
    """Write ``parts`` (see :func:`tiny_parts`; leave one out to omit its file) in the official layout."""
    text_file = "model" if fmt == "safetensors" else "pytorch_model"
    files = {"unet": f"{FLOWGEN_DIR}/unet/diffusion_pytorch_model", "controlnet": f"{FLOWGEN_DIR}/controlnet/controlnet",
             "vae_flow": f"{FLOWGEN_DIR}/vae_flow/diffusion_pytorch_model",
             "text_encoder": f"{FLOWGEN_DIR}/text_encoder/{text_file}",
             "image_vae": f"{IMAGE_VAE_DIR}/diffusion_pytorch_model"}
    for part, sd in parts.items():
        if part == "unet":
            sd = {unet_prefix + k: v for k, v in sd.items()}
        _save(sd, folder / files[part], fmt)
    return folder


def parameter_count(shapes: dict) -> int:
    return sum(math.prod(s) for s in shapes.values())
