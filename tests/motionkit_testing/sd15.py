"""Shared helpers for tests on the tiny SD1.5 model with motion modules (real ComfyUI objects; import after
the ``comfy`` fixture ran). Float64 references of AnimateDiff's motion module, written from its equations."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from safetensors.torch import save_file

from .references import attention64

SIZE = 64
CFG = 5.0


def node(name: str):
    import nodes
    return nodes.NODE_CLASS_MAPPINGS[name]


def pack_node_module(name: str = "MotionKitLoadMotionModule"):
    """The pack's nodes module that defines ``name`` (as ComfyUI loaded it)."""
    return sys.modules[node(name).__module__]


def load(tiny: dict):
    import nodes
    model, clip, vae = nodes.CheckpointLoaderSimple().load_checkpoint(tiny["ckpt"])[:3]
    pos = nodes.CLIPTextEncode().encode(clip, "a red fox, watercolor")[0]
    neg = nodes.CLIPTextEncode().encode(clip, "blurry")[0]
    return model, clip, vae, pos, neg


def with_motion(model, tiny: dict, layout: str = "v2"):
    return node("MotionKitLoadMotionModule")().load(model, tiny[layout])[0]


def noise_for(frames: int, seed: int = 3, size: int = SIZE) -> torch.Tensor:
    import comfy.sample
    return comfy.sample.prepare_noise(torch.zeros(frames, 4, size // 8, size // 8), seed)


def sample(model, pos, neg, frames: int = 4, steps: int = 2, seed: int = 3, callback=None, noise=None,
           size: int = SIZE) -> torch.Tensor:
    import comfy.sample
    noise = noise_for(frames, seed, size) if noise is None else noise
    latent = torch.zeros_like(noise)
    return comfy.sample.sample(model, noise, steps, CFG, "euler", "karras", pos, neg, latent, denoise=1.0,
                               callback=callback, seed=seed, disable_pbar=True)


def sd15_prompt(tiny: dict, *, motion: str | None = "v2", frames: int = 4, steps: int = 2, seed: int = 7,
                prefix: str = "sd15", lora: float | None = None, extra: dict | None = None,
                model_from: str | None = None) -> dict:
    """CheckpointLoaderSimple -> [LoraLoaderModelOnly] -> [MotionKitLoadMotionModule] -> KSampler -> SaveLatent.
    ``extra`` nodes are added as given; ``model_from`` names the node whose MODEL the sampler uses."""
    p = {
        "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": tiny["ckpt"]}},
        "pos": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["ckpt", 1], "text": "a red fox, watercolor"}},
        "neg": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["ckpt", 1], "text": "blurry"}},
        "latent": {"class_type": "EmptyLatentImage", "inputs": {"width": SIZE, "height": SIZE, "batch_size": frames}},
        "ks": {"class_type": "KSampler", "inputs": {
            "model": ["ckpt", 0], "seed": seed, "steps": steps, "cfg": CFG, "sampler_name": "euler",
            "scheduler": "karras", "positive": ["pos", 0], "negative": ["neg", 0], "latent_image": ["latent", 0],
            "denoise": 1.0}},
        "save": {"class_type": "SaveLatent", "inputs": {"samples": ["ks", 0], "filename_prefix": f"latents/{prefix}"}},
    }
    last = "ckpt"
    if lora is not None:
        p["lora"] = {"class_type": "LoraLoaderModelOnly", "inputs": {"model": [last, 0], "lora_name": tiny["lora"],
                                                                     "strength_model": lora}}
        last = "lora"
    if motion is not None:
        p["mm"] = {"class_type": "MotionKitLoadMotionModule", "inputs": {"model": [last, 0], "motion_module": tiny[motion]}}
        last = "mm"
    p.update(extra or {})
    p["ks"]["inputs"]["model"] = [model_from or last, 0]
    return p


# --- Still-Moving adapter files, written from the documented format (not with the pack's writer) -----

def motion_projections(model) -> dict:
    """Every temporal q/k/v projection of a model: path -> weight (motion modules' keys, or SVD's)."""
    mod = pack_node_module("MotionKitLoadMotionModule")
    mp = mod.motion_patcher(model)
    if mp is not None:
        return {name: m.weight for name, m in mp.model.named_modules()
                if ".attention_blocks." in name and name.endswith(("to_q", "to_k", "to_v"))}
    unet = model.model.diffusion_model
    return {f"diffusion_model.{name}": m.weight for name, m in unet.named_modules()
            if ".time_stack." in name and name.endswith(("attn1.to_q", "attn1.to_k", "attn1.to_v"))}


def spatial_outputs(model) -> dict:
    unet = model.model.diffusion_model
    return {f"diffusion_model.{name}": m for name, m in unet.named_modules()
            if ".transformer_blocks." in name and name.endswith(("attn1.to_out.0", "attn2.to_out.0"))}


def write_adapter(path: Path, motion: dict | None, spatial: dict | None, rank: int, scales=(0.5, 0.75), seed=0,
                  host="motion_modules", **meta) -> dict:
    """A file in the documented v1 format with random factors for the given projections."""
    g = torch.Generator().manual_seed(seed)
    tensors, ranks, scale = {}, {}, {}
    for kind, table, s in (("motion", motion, scales[0]), ("spatial", spatial, scales[1])):
        if not table:
            continue
        ranks[kind], scale[kind] = rank, s
        for p, w in table.items():
            out_f, in_f = w.shape
            tensors[f"{kind}.{p}.lora_down.weight"] = torch.randn(rank, in_f, generator=g) / in_f ** 0.5
            tensors[f"{kind}.{p}.lora_up.weight"] = torch.randn(out_f, rank, generator=g) / rank ** 0.5
    metadata = {"motionkit_format": "still_moving_adapter", "motionkit_version": "1", "rank": json.dumps(ranks),
                "scale": json.dumps(scale), "targets": json.dumps(list(ranks)), "motion_host": host,
                "base_model": json.dumps({"kind": "test"}), **meta}
    save_file(tensors, str(path), metadata=metadata)
    return tensors


# --- float64 references ----------------------------------------------------------------------------------

def group_norm64(x: torch.Tensor, weight, bias, groups: int = 32, eps: float = 1e-6) -> torch.Tensor:
    b, c = x.shape[:2]
    g = x.reshape(b, groups, -1)
    g = (g - g.mean(-1, keepdim=True)) / torch.sqrt(g.var(-1, unbiased=False, keepdim=True) + eps)
    return g.reshape(x.shape) * weight.double().view(1, c, 1, 1) + bias.double().view(1, c, 1, 1)


def layer_norm64(x: torch.Tensor, weight, bias, eps: float = 1e-5) -> torch.Tensor:
    x = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + eps)
    return x * weight.double() + bias.double()


def lin64(x, weight, bias=None):
    out = x @ weight.double().t()
    return out if bias is None else out + bias.double()


def temporal_attention64(h: torch.Tensor, sd: dict, prefix: str, frames: int, heads: int = 8, interleave=None,
                         strength: float = 1.0) -> torch.Tensor:
    """AnimateDiff VersatileAttention (Temporal): tokens (B*F, HW, C) -> attention over frames at each position.
    With ``interleave`` (fn: (B*HW, F, C) -> (B*HW, 2F-1, C)), Motion-I2V's motion-augmented form: position
    encoding over the interleaved positions, queries from the real (even) positions, keys/values from all."""
    bf, hw, c = h.shape
    t = h.reshape(bf // frames, frames, hw, c).transpose(1, 2).reshape(-1, frames, c)
    pe = sd[prefix + "pos_encoder.pe"].double()
    q_in = seq = t + pe[:, :frames]
    out = attention64(lin64(q_in, sd[prefix + "to_q.weight"]), lin64(seq, sd[prefix + "to_k.weight"]),
                      lin64(seq, sd[prefix + "to_v.weight"]), heads)
    if interleave is not None:
        long = interleave(t)
        long = long + pe[:, :long.shape[1]]
        aug = attention64(lin64(long[:, 0::2], sd[prefix + "to_q.weight"]), lin64(long, sd[prefix + "to_k.weight"]),
                          lin64(long, sd[prefix + "to_v.weight"]), heads)
        out = (1 - strength) * out + strength * aug
    out = lin64(out, sd[prefix + "to_out.0.weight"], sd[prefix + "to_out.0.bias"])
    return out.reshape(bf // frames, hw, frames, c).transpose(1, 2).reshape(bf, hw, c)


def motion_module64(x: torch.Tensor, sd: dict, prefix: str, frames: int, heads: int = 8, interleave=None,
                    strength: float = 1.0) -> torch.Tensor:
    """AnimateDiff VanillaTemporalModule on x (B*F, C, H, W), float64, from the official key names."""
    x = x.double()
    bf, c, hh, ww = x.shape
    tt = prefix + "temporal_transformer."
    h = group_norm64(x, sd[tt + "norm.weight"], sd[tt + "norm.bias"])
    h = lin64(h.permute(0, 2, 3, 1).reshape(bf, hh * ww, c), sd[tt + "proj_in.weight"], sd[tt + "proj_in.bias"])
    blk = tt + "transformer_blocks.0."
    for j in range(2):
        normed = layer_norm64(h, sd[f"{blk}norms.{j}.weight"], sd[f"{blk}norms.{j}.bias"])
        h = h + temporal_attention64(normed, sd, f"{blk}attention_blocks.{j}.", frames, heads,
                                     None if interleave is None else (lambda t: interleave(t, hh, ww)), strength)
    a = lin64(layer_norm64(h, sd[blk + "ff_norm.weight"], sd[blk + "ff_norm.bias"]),
              sd[blk + "ff.net.0.proj.weight"], sd[blk + "ff.net.0.proj.bias"])
    value, gate = a.chunk(2, dim=-1)
    h = h + lin64(value * F.gelu(gate), sd[blk + "ff.net.2.weight"], sd[blk + "ff.net.2.bias"])
    h = lin64(h, sd[tt + "proj_out.weight"], sd[tt + "proj_out.bias"])
    return x + h.reshape(bf, hh, ww, c).permute(0, 3, 1, 2)


def rel_err(got: torch.Tensor, ref: torch.Tensor) -> float:
    return float((got.double() - ref).norm() / ref.norm().clamp_min(1e-30))

