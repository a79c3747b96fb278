"""The main job's model choice (scripts/demo.py): a real SVD checkpoint on disk switches off the tiny
test models, their custom node and the forced CPU."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from motionkit_testing import comfy_session as cs

REPO = Path(__file__).resolve().parents[1]


def load_demo():
    spec = importlib.util.spec_from_file_location("motionkit_demo_script", REPO / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_real_svd_file_is_found_in_either_models_folder(tmp_path):
    demo = load_demo()
    out, comfy = tmp_path / "demo", tmp_path / "ComfyUI"
    for folder in (out / "models" / "checkpoints", comfy / "models" / "checkpoints"):
        folder.mkdir(parents=True)
    assert demo.find_real_svd(out, comfy) is None
    (comfy / "models" / "checkpoints" / "svd.safetensors").write_bytes(b"")
    assert demo.find_real_svd(out, comfy) == "svd.safetensors"
    (out / "models" / "checkpoints" / "svd_xt.safetensors").write_bytes(b"")
    assert demo.find_real_svd(out, comfy) == "svd_xt.safetensors"  # SVD-XT preferred


def test_the_tiny_model_node_is_unlinked_for_a_real_checkpoint(tmp_path):
    base = cs.make_base_dir(tmp_path / "base")
    assert (base / "custom_nodes" / "motionkit_testing").is_symlink()
    cs.make_base_dir(base, with_test_models=False)
    assert not (base / "custom_nodes" / "motionkit_testing").exists()
    assert (base / "custom_nodes" / cs.PACK_DIRNAME).is_symlink()
