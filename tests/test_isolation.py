"""Isolation across packs: ComfyUI keeps the last sampled clone loaded *with its object patches applied* to
the one network all clones share. Another pack's clone that replaced whole attention modules
(``add_object_patch("diffusion_model....attn1", module)``) and ran last must not leak into MotionKit's patch
sites: every MotionKit patch node, run right after such a clone, gives latents bit-identical to the same
graph on a fresh executor (``/free``: caches reset, models unloaded), the foreign module's code never runs
inside MotionKit's clone, and the reverse order leaves the other pack's result unchanged too."""
from __future__ import annotations

import sys

import pytest
import torch

from motionkit_testing.svd import IMAGE
from motionkit_testing.trackadapter import arrows_json
from motionkit_testing.workflows import saved_latent, svd_prompt, with_square_object

pytestmark = pytest.mark.slow

ADAPTER = "motionkit_isolation_svd.safetensors"


def foreign_calls() -> int:
    import nodes
    return sys.modules[nodes.NODE_CLASS_MAPPINGS["MotionKitTestForeignAttention"].__module__].CALLS["count"]


def fresh(comfy) -> None:
    """What ComfyUI's ``/free`` (unload models, free memory) does between prompts."""
    import comfy.model_management as mm
    comfy.executor.reset()
    mm.unload_all_models()
    mm.soft_empty_cache()


def base(ckpt, prefix):
    return svd_prompt(ckpt, IMAGE, frames=4, prefix=prefix, steps=2)


def foreign_prompt(ckpt, target, prefix="foreign"):
    p = base(ckpt, prefix)
    p["other_pack"] = {"class_type": "MotionKitTestForeignAttention",
                       "inputs": {"model": ["guid", 0], "target": target, "scale": 0.5}}
    p["ks"]["inputs"]["model"] = ["other_pack", 0]
    return p


def motionkit_prompt(ckpt, kind, prefix):
    """One MotionKit patch node between the SVD model and the sampler (partial strengths, so the original
    branch of each patched layer runs too)."""
    p = base(ckpt, prefix)
    if kind == "all_to_first":
        p["mk"] = {"class_type": "MotionKitAllToFirstAttention", "inputs": {
            "model": ["guid", 0], "strength": 0.5, "start_percent": 0.0, "end_percent": 1.0}}
    elif kind == "motion_augmented":
        with_square_object(p, arrows_json())
        p["field"] = {"class_type": "MotionKitTracksToMotionField", "inputs": {
            "tracks": ["tracks", 0], "masks": ["mask", 0], "boundary_softness": 4.0}}
        p["mk"] = {"class_type": "MotionKitMotionAugmentedAttention", "inputs": {
            "model": ["guid", 0], "motion_field": ["field", 0], "strength": 0.5,
            "start_percent": 0.0, "end_percent": 1.0}}
    elif kind == "trackadapter":
        with_square_object(p, arrows_json())
        p["mk"] = {"class_type": "MotionKitApplyTrackAdapter", "inputs": {
            "model": ["guid", 0], "tracks": ["tracks", 0], "lambda_bg": 0.4, "tau": 0.1, "strength": 0.5,
            "start_percent": 0.0, "end_percent": 1.0}}
    elif kind == "still_moving":
        p["mk"] = {"class_type": "MotionKitStillMovingAdapter", "inputs": {
            "model": ["guid", 0], "adapter": ADAPTER, "motion_alpha": -1.0, "spatial_strength": 1.0}}
    p["ks"]["inputs"]["model"] = ["mk", 0]
    return p


@pytest.fixture(scope="module")
def svd_adapter(comfy, tiny_ckpt, base_dir):
    from motionkit_testing.sd15 import motion_projections, write_adapter
    from motionkit_testing.svd import load_tiny
    folder = base_dir / "models" / "still_moving"
    folder.mkdir(parents=True, exist_ok=True)
    write_adapter(folder / ADAPTER, motion_projections(load_tiny(tiny_ckpt)[0]), None, rank=2, scales=(0.5, 1.0),
                  host="unet")
    return ADAPTER


CASES = [("all_to_first", "spatial"), ("motion_augmented", "temporal"), ("trackadapter", "temporal"),
         ("still_moving", "temporal")]


@pytest.mark.parametrize("kind,target", CASES)
def test_a_foreign_clone_sampled_last_does_not_leak_into_motionkit(comfy, tiny_ckpt, base_dir, svd_adapter,
                                                                   kind, target):
    fresh(comfy)
    alone = saved_latent(base_dir, comfy.run(motionkit_prompt(tiny_ckpt, kind, f"iso_{kind}_fresh")))

    fresh(comfy)
    before = foreign_calls()
    comfy.run(foreign_prompt(tiny_ckpt, target))               # the other pack's clone stays loaded
    assert foreign_calls() > before, "the foreign module did not run in its own clone"
    before = foreign_calls()
    after = saved_latent(base_dir, comfy.run(motionkit_prompt(tiny_ckpt, kind, f"iso_{kind}_after")))
    assert foreign_calls() == before, "the foreign module's code ran inside MotionKit's clone"
    assert torch.equal(after, alone), f"{kind} after a foreign clone: max diff {(after - alone).abs().max():.3e}"


@pytest.mark.parametrize("kind,target", CASES)
def test_motionkit_sampled_last_does_not_leak_into_a_foreign_clone(comfy, tiny_ckpt, base_dir, svd_adapter,
                                                                   kind, target):
    fresh(comfy)
    alone = saved_latent(base_dir, comfy.run(foreign_prompt(tiny_ckpt, target, "iso_foreign_fresh")))
    fresh(comfy)
    comfy.run(motionkit_prompt(tiny_ckpt, kind, f"iso_{kind}_first"))
    after = saved_latent(base_dir, comfy.run(foreign_prompt(tiny_ckpt, target, "iso_foreign_after")))
    assert torch.equal(after, alone), f"foreign after {kind}: max diff {(after - alone).abs().max():.3e}"
    fresh(comfy)


def test_foreign_module_in_the_same_branch_is_a_clear_error(comfy, tiny_ckpt):
    """A module another node put in place of attn1 *in this branch* is not ComfyUI's attention layer when it is
    not a CrossAttention: MotionKit says so instead of patching something else."""
    import nodes
    from motionkit_testing.svd import load_tiny
    model = load_tiny(tiny_ckpt)[0].clone()
    unet = model.get_model_object("diffusion_model")
    path = next(f"diffusion_model.{n}" for n, _ in unet.named_modules() if n.endswith("transformer_blocks.0.attn1"))
    model.add_object_patch(path, torch.nn.Identity())
    with pytest.raises(ValueError, match=r"All-to-First.*'model'.*not ComfyUI's attention layer"):
        nodes.NODE_CLASS_MAPPINGS["MotionKitAllToFirstAttention"]().patch(model, 1.0, 0.0, 1.0)
