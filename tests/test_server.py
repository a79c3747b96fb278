"""MotionKit inside a real ComfyUI HTTP server (python main.py --listen 127.0.0.1): registration as
the frontend sees it, and workflows posted to /prompt and read back from /history."""
from __future__ import annotations

import pytest
import torch

from motionkit_testing.workflows import saved_latent, svd_prompt

pytestmark = pytest.mark.server
IMAGE = "motionkit_test.png"


def test_object_info_lists_the_node_with_its_public_inputs(server):
    info = server.get("/object_info/MotionKitAllToFirstAttention")["MotionKitAllToFirstAttention"]
    assert info["display_name"] == "All-to-First Attention (Puppet-Master)"
    assert info["category"] == "MotionKit"
    assert info["output"] == ["MODEL"]
    # widget order is saved in users' workflows: it must never change
    assert info["input_order"]["required"] == ["model", "strength", "start_percent", "end_percent"]
    assert info["input"]["required"]["strength"][1]["default"] == 1.0
    assert info["python_module"] == "custom_nodes.ComfyUI-MotionKit"


def test_prompts_over_http_patch_only_the_patched_branch(server, comfy, tiny_ckpt, base_dir):
    base_http = saved_latent(base_dir, server.run(svd_prompt(tiny_ckpt, IMAGE, prefix="http_base")))
    a2f_http = saved_latent(base_dir, server.run(svd_prompt(tiny_ckpt, IMAGE, a2f={}, prefix="http_a2f")))
    base_again = saved_latent(base_dir, server.run(svd_prompt(tiny_ckpt, IMAGE, prefix="http_base2")))
    assert (a2f_http - base_http).abs().max() > 1e-3
    assert torch.equal(base_again, base_http)  # the server's cached MODEL was left unpatched
    # the server computes what the in-process executor computes
    base_local = saved_latent(base_dir, comfy.run(svd_prompt(tiny_ckpt, IMAGE, prefix="local_base")))
    torch.testing.assert_close(base_http, base_local, rtol=1e-5, atol=1e-5)


def test_bad_prompt_gets_a_400_naming_the_input(server, tiny_ckpt):
    prompt = svd_prompt(tiny_ckpt, IMAGE, a2f={"strength": 3.0})
    status, body = server.post("/prompt", {"prompt": prompt})
    assert status == 400
    errors = body["node_errors"]["a2f"]["errors"]
    assert any(e["extra_info"]["input_name"] == "strength" for e in errors)
