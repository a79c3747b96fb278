"""A stand-in for *another* node pack that replaces whole attention modules on its clone of the MODEL, as
many packs do (``add_object_patch("diffusion_model....attn1", module)``). Test-only: it lets the isolation
tests check that MotionKit never captures such a module from the shared network (ComfyUI keeps the last
sampled clone loaded with its object patches applied) and never runs its code inside MotionKit's clone."""
from __future__ import annotations

import re

import torch

CALLS = {"count": 0}   # forward calls of every ForeignAttention, ever (the tests read differences)

TARGETS = {
    "spatial": re.compile(r"\.transformer_blocks\.\d+\.attn1$"),
    "temporal": re.compile(r"\.time_stack\.\d+\.attn1$"),
}


def foreign_attention_class():
    from comfy.ldm.modules.attention import CrossAttention

    class ForeignAttention(CrossAttention):
        """The original layer's projections, shared, with its own forward (its output scaled)."""

        def __init__(self, original: torch.nn.Module, scale: float):
            torch.nn.Module.__init__(self)
            for key, value in vars(original).items():
                # not an instance-level ``forward``: ComfyUI leaves the bound method there after a clone's
                # ``attn1.forward`` object patch was removed, and copying it would bypass this class's forward
                if key not in ("_modules", "_parameters", "_buffers", "training", "forward"):
                    object.__setattr__(self, key, value)
            for name, child in original.named_children():
                self.add_module(name, child)
            self.scale = scale

        def forward(self, x, context=None, value=None, mask=None, transformer_options={}):
            CALLS["count"] += 1
            out = super().forward(x, context=context, value=value, mask=mask, transformer_options=transformer_options)
            return out * self.scale

    return ForeignAttention


class MotionKitTestForeignAttention:
    """TEST HARNESS ONLY: another pack's whole-module attention replacement, on a clone."""
    CATEGORY = "MotionKit/testing"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "target": (list(TARGETS),),
                             "scale": ("FLOAT", {"default": 0.5, "min": -10.0, "max": 10.0})}}

    def patch(self, model, target, scale):
        cls = foreign_attention_class()
        patched = model.clone()
        pattern = TARGETS[target]
        unet = model.get_model_object("diffusion_model")
        count = 0
        for name, module in unet.named_modules():
            path = f"diffusion_model.{name}"
            if pattern.search(path) and type(module).__name__ == "CrossAttention":
                patched.add_object_patch(path, cls(module, scale))
                count += 1
        if not count:
            raise ValueError(f"no {target} attention found")
        return (patched,)
