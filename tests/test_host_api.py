"""What MotionKit takes from the host ComfyUI goes through ``nodes/_comfy.py``: attention dispatch (the
configured backend, sampler ``optimized_attention_override`` s, a newer host's per-layer backend handed
q/k/v in tensor containers) and model loading (Dynamic VRAM's loader refuses full loads)."""
from __future__ import annotations

import sys
import types

import pytest
import torch

from motionkit_testing.svd import Always, make_attention


def node_module(node_id):
    import nodes
    return sys.modules[nodes.NODE_CLASS_MAPPINGS[node_id].__module__]


def comfy_helpers():
    return sys.modules[node_module("MotionKitAllToFirstAttention").__name__.rsplit(".", 1)[0] + "._comfy"]


class CountingOverride:
    """A sampler's ``optimized_attention_override``: sees every attention call, runs the backend."""

    def __init__(self):
        self.calls = 0

    def __call__(self, func, *args, **kwargs):
        self.calls += 1
        return func(*args, **kwargs)


def patched_forwards():
    """One MotionKit attention patch of each kind on the same layer, with the transformer_options it needs."""
    attn = make_attention(32, 2, seed=5)
    inner = types.MethodType(type(attn).forward, attn)
    a2f = node_module("MotionKitAllToFirstAttention").AllToFirstForward(attn, inner, 0.5, Always())
    maa_mod = node_module("MotionKitMotionAugmentedAttention")
    flow = torch.randn(3, 2, 2, 2, generator=torch.Generator().manual_seed(0))
    maa = maa_mod.MotionAugmentedForward(attn, inner, maa_mod.FlowPyramid(flow), 0.5, Always())
    return [("all_to_first", a2f, torch.randn(6, 4, 32), {"cond_or_uncond": [1, 0]}),
            ("motion_augmented", maa, torch.randn(8, 3, 32),
             {"activations_shape": [6, 32, 2, 2], "cond_or_uncond": [1, 0]})]


@pytest.mark.parametrize("index", [0, 1], ids=["all_to_first", "motion_augmented"])
def test_attention_goes_through_a_samplers_override(comfy, index):
    name, forward, x, options = patched_forwards()[index]
    with torch.no_grad():
        plain = forward(x, transformer_options=dict(options))
        override = CountingOverride()
        routed = forward(x, transformer_options={**options, "optimized_attention_override": override})
    # the patch's own attention and the original branch (strength 0.5) both reach the override
    assert override.calls >= 2, name
    assert torch.equal(plain, routed), name


def test_a_newer_hosts_layer_backend_gets_containers(comfy, monkeypatch):
    """On hosts whose attention layers own a backend (``ComfyAttention``, passed as ``preferred_attention``),
    MotionKit's attention hands it q/k/v in ``AttentionTensorContainer`` s exactly as the host's layer does.
    Simulated here (v0.3.64 and v0.33.0 layers own none): a stand-in backend class and container."""
    helpers = comfy_helpers()

    class Backend(torch.nn.Module):
        pass

    class Container:
        def __init__(self, tensor):
            self.tensor = tensor

    seen = {}

    def optimized_attention(q, k, v, heads, **kwargs):
        seen.update(kwargs, q=q, heads=heads)
        return torch.zeros(getattr(q, "tensor", q).shape)

    monkeypatch.setattr(helpers, "_ComfyAttention", Backend)
    monkeypatch.setattr(helpers, "_Container", Container)
    monkeypatch.setattr(helpers.comfy_attention, "optimized_attention", optimized_attention)
    attn = make_attention(32, 2, seed=1)
    attn.comfy_attention = Backend()
    q = torch.randn(2, 4, 32)
    helpers.attention(attn, q, q, q, {"cond_or_uncond": [0]})
    assert isinstance(seen["q"], Container) and seen["q"].tensor is q
    assert seen["preferred_attention"] is attn.comfy_attention and seen["heads"] == 2
    assert seen["attn_precision"] is attn.attn_precision and seen["transformer_options"] == {"cond_or_uncond": [0]}
    # a layer without one: plain tensors, no preferred backend
    seen.clear()
    helpers.attention(make_attention(32, 2, seed=2), q, q, q, {})
    assert seen["q"] is q and "preferred_attention" not in seen


def test_models_load_fully_except_under_dynamic_vram(comfy, monkeypatch):
    helpers = comfy_helpers()
    calls = []
    monkeypatch.setattr(helpers.comfy.model_management, "load_models_gpu",
                        lambda models, memory_required=0, force_full_load=False: calls.append(force_full_load))

    class Legacy:
        pass

    class Dynamic:
        def is_dynamic(self):
            return True

    helpers.load_for_compute([Legacy()])
    helpers.load_for_compute([Legacy(), Dynamic()])
    assert calls == [True, False]
