"""Shared helpers for tests on the tiny SVD model (real ComfyUI objects; imported after the `comfy` fixture)."""
from __future__ import annotations

import math

import torch

IMAGE = "motionkit_test.png"


class Always:
    """The sampling-window gate, always open (the gate itself is tested in real sampling runs)."""

    def active(self, transformer_options):
        return True


def make_attention(dim: int, heads: int, seed: int):
    import comfy.ops
    from comfy.ldm.modules.attention import CrossAttention
    attn = CrossAttention(dim, heads=heads, dim_head=dim // heads, attn_precision=torch.float32,
                          operations=comfy.ops.disable_weight_init)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in attn.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[-1]))
    return attn


def load_tiny(tiny_ckpt):
    import comfy_extras.nodes_video_model as vm
    return vm.ImageOnlyCheckpointLoader().load_checkpoint(tiny_ckpt)


def transformer_blocks(unet, container):
    from comfy.ldm.modules.attention import BasicTransformerBlock
    return [m for n, m in unet.named_modules()
            if isinstance(m, BasicTransformerBlock) and n.split(".")[-2] == container]


def conditioning(tiny_ckpt, frames, size):
    import nodes
    from comfy_extras.nodes_video_model import SVD_img2vid_Conditioning
    model, clip_vision, vae = load_tiny(tiny_ckpt)
    image = nodes.LoadImage().load_image(IMAGE)[0]
    pos, neg, latent = SVD_img2vid_Conditioning().encode(clip_vision, image, vae, size, size, frames, 127, 6, 0.0)
    return model, pos, neg, latent


def sample(model, pos, neg, latent, steps, seed=3, callback=None):
    import comfy.sample
    noise = comfy.sample.prepare_noise(latent["samples"], seed)
    return comfy.sample.sample(model, noise, steps, 2.5, "euler", "karras", pos, neg, latent["samples"],
                               denoise=1.0, callback=callback, seed=seed)


