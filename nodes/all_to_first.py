"""All-to-First Attention (Puppet-Master): a patch on a clone of the MODEL, never on the shared network."""
from __future__ import annotations

import functools
from typing import Callable

from comfy.ldm.modules.attention import CrossAttention

from ..modules.all_to_first import all_to_first_attention, blend
from ..modules.layout import first_frame
from ._comfy import (SigmaWindow, attention, frames_per_video, patch_forwards, require_model, require_percent_window,
                     require_range, spatial_self_attention)

NODE = "All-to-First Attention (MotionKitAllToFirstAttention)"


class AllToFirstForward:
    """Stands in for one spatial ``CrossAttention.forward``: frames read frame 0's keys and values.

    It holds the module (shared by all clones, as ComfyUI intends) and the forward it replaces, so
    inactive steps and the ``1 - strength`` share run exactly the original code.
    """

    def __init__(self, attn: CrossAttention, inner: Callable, strength: float, window: SigmaWindow):
        self.attn, self.inner, self.strength, self.window = attn, inner, strength, window

    def __call__(self, x, context=None, value=None, mask=None, transformer_options={}):
        if mask is not None or not self.window.active(transformer_options):
            return self.inner(x, context=context, value=value, mask=mask, transformer_options=transformer_options)
        _, frames = frames_per_video(x.shape[0], transformer_options)
        keys_from = x if context is None else context
        values_from = keys_from if value is None else value
        if keys_from.shape[0] != x.shape[0] or values_from.shape[0] != x.shape[0]:
            raise RuntimeError(f"[MotionKit] {NODE}: another patch gave attn1 a context of batch "
                               f"{keys_from.shape[0]} for {x.shape[0]} frames; all-to-first needs one per frame.")
        attn = self.attn
        q = attn.to_q(x)
        k0 = attn.to_k(first_frame(keys_from, frames))
        v0 = attn.to_v(first_frame(values_from, frames))
        out = all_to_first_attention(q, k0, v0, frames, attn.heads, functools.partial(attention, attn),
                                     transformer_options=transformer_options)
        out = attn.to_out(out)
        if self.strength == 1.0:
            return out
        original = self.inner(x, context=context, value=value, mask=mask, transformer_options=transformer_options)
        return blend(original, out, self.strength)


class MotionKitAllToFirstAttention:
    DESCRIPTION = (
        "Puppet-Master's all-to-first attention: in every spatial self-attention of the video UNet, each "
        "frame's queries attend to the keys and values of frame 0 of the same video (and the same cond/uncond "
        "half), which keeps the object's appearance anchored to the input image. Output = (1 - strength) * "
        "original + strength * all-to-first, only between start_percent and end_percent of the schedule. "
        "Temporal attention and cross-attention are unchanged. On an image model without temporal layers "
        "(SD1.5 sampled with the latent batch as frames, as AnimateDiff does), each cond/uncond half of the "
        "batch is treated as the frames of one video. A second All-to-First node on the same model replaces "
        "the first one's settings (strength 0 turns it off); so does one after Load Puppet-Master, whose model has "
        "all-to-first built in. Measured (benchmarks/README.md, Control World): on an SVD-architecture model not "
        "trained with it, it raised the appearance error, lost more objects and made a trained TrackAdapter "
        "less accurate; on the same small model fine-tuned with it on (as Puppet-Master's UNet is trained) it "
        "still raised the appearance error, by less. Puppet-Master's UNet is trained with it, and there it is "
        "part of the model.")
    CATEGORY = "MotionKit"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "A Stable Video Diffusion model (or an SD1.5 model sampled as frames)."}),
            "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                   "tooltip": "0 leaves the model unchanged, 1 is full all-to-first attention."}),
            "start_percent": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.001,
                                        "tooltip": "Fraction of the sampling schedule where the patch starts."}),
            "end_percent": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.001,
                                      "tooltip": "Fraction of the sampling schedule where the patch ends."}),
        }}

    def patch(self, model, strength, start_percent, end_percent):
        model = require_model(NODE, model)
        strength = require_range(NODE, "strength", strength, 0.0, 1.0)
        start_percent, end_percent = require_percent_window(NODE, start_percent, end_percent)
        sites = spatial_self_attention(model, NODE)
        patched = model.clone()
        if strength == 0.0:   # also turns off an earlier All-to-First (e.g. Load Puppet-Master's built-in one)
            for site in sites:
                earlier = patched.object_patches.get(f"{site.path}.forward")
                if isinstance(earlier, AllToFirstForward):
                    patched.add_object_patch(f"{site.path}.forward", earlier.inner)
            return (patched,)
        window = SigmaWindow(patched, start_percent, end_percent)
        patch_forwards(patched, sites, lambda site, inner: AllToFirstForward(site.module, inner, strength, window),
                       AllToFirstForward)
        return (patched,)


NODE_CLASS_MAPPINGS = {"MotionKitAllToFirstAttention": MotionKitAllToFirstAttention}
NODE_DISPLAY_NAME_MAPPINGS = {"MotionKitAllToFirstAttention": "All-to-First Attention (Puppet-Master)"}
