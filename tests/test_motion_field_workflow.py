"""The Motion-I2V chain through ComfyUI's real executor: masks -> Arrows to Trajectories -> Trajectories to
Motion Field -> Motion-Augmented Temporal Attention on SVD -> KSampler, with clone isolation."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from motionkit_testing.svd import IMAGE
from motionkit_testing.workflows import saved_latent, svd_prompt, with_square_object

SHIFT = (12.0, -4.0)


def arrows_json(dx=SHIFT[0], dy=SHIFT[1]):
    return json.dumps({"version": 1, "width": 64, "height": 64,
                       "arrows": [{"object": 0, "points": [[22.0, 32.0], [22.0 + dx, 32.0 + dy]]}]})


def motion_prompt(ckpt, strength=1.0, prefix="maa", frames=4):
    p = with_square_object(svd_prompt(ckpt, IMAGE, frames=frames, prefix=prefix), arrows_json(), frames)
    p.update({
        "field": {"class_type": "MotionKitTracksToMotionField", "inputs": {
            "tracks": ["tracks", 0], "masks": ["mask", 0], "boundary_softness": 4.0}},
        "maa": {"class_type": "MotionKitMotionAugmentedAttention", "inputs": {
            "model": ["guid", 0], "motion_field": ["field", 0], "strength": strength,
            "start_percent": 0.0, "end_percent": 1.0}},
        "view": {"class_type": "MotionKitVisualizeMotionField", "inputs": {
            "motion_field": ["field", 0], "image": ["img", 0], "max_magnitude": 0.0}},
        "save_view": {"class_type": "SaveImage", "inputs": {"images": ["view", 1], "filename_prefix": f"{prefix}_warp"}},
    })
    p["ks"]["inputs"]["model"] = ["maa", 0]
    return p


@pytest.fixture(scope="module")
def baseline(comfy, tiny_ckpt, base_dir):
    return saved_latent(base_dir, comfy.run(svd_prompt(tiny_ckpt, IMAGE, prefix="maa_base")))


def test_workflow_moves_the_video_and_leaves_other_branches_alone(comfy, tiny_ckpt, base_dir, baseline):
    hist = comfy.run(motion_prompt(tiny_ckpt))
    patched = saved_latent(base_dir, hist)
    assert (patched - baseline).abs().max() > 1e-3
    assert len(hist["outputs"]["save_view"]["images"]) == 4       # one warped preview per frame
    prompt = motion_prompt(tiny_ckpt, prefix="maa_branch")
    prompt["ks2"] = {**prompt["ks"], "inputs": {**prompt["ks"]["inputs"], "model": ["guid", 0]}}
    prompt["save2"] = {"class_type": "SaveLatent", "inputs": {"samples": ["ks2", 0], "filename_prefix": "latents/maa_b"}}
    both = comfy.run(prompt)
    assert torch.equal(saved_latent(base_dir, both, "save2"), baseline)
    assert torch.equal(saved_latent(base_dir, both), patched)
    # strength 0 through the executor is the unpatched model, bit for bit; then strength 1 again equals the
    # first run (the node re-executes on the cached MODEL without stacking)
    assert torch.equal(saved_latent(base_dir, comfy.run(motion_prompt(tiny_ckpt, 0.0, prefix="maa_zero"))), baseline)
    assert torch.equal(saved_latent(base_dir, comfy.run(motion_prompt(tiny_ckpt, prefix="maa_again"))), patched)


def test_predictor_reproduces_the_arrow_translation_inside_the_mask(comfy):
    import nodes
    masks = torch.zeros(1, 64, 64)
    masks[0, 22:42, 12:32] = 1
    tracks, _ = nodes.NODE_CLASS_MAPPINGS["MotionKitArrowsToTracks"]().build(
        masks, arrows_json(), 4, 6, 1, "linear")["result"]
    (field,) = nodes.NODE_CLASS_MAPPINGS["MotionKitTracksToMotionField"]().predict(tracks, masks, 4.0)
    flow = field["flow"]
    assert flow.shape == (4, 2, 64, 64) and field["version"] == 1
    inside, outside = masks[0].bool(), ~masks[0].bool()
    for t in range(4):
        frac = t / 3
        torch.testing.assert_close(flow[t, 0][inside], torch.full((400,), SHIFT[0] * frac), atol=1e-4, rtol=0)
        torch.testing.assert_close(flow[t, 1][inside], torch.full((400,), SHIFT[1] * frac), atol=1e-4, rtol=0)
        assert flow[t][:, outside].abs().max() == 0


def test_predictor_rejects_tracks_and_masks_that_do_not_match(comfy):
    import nodes
    build = nodes.NODE_CLASS_MAPPINGS["MotionKitArrowsToTracks"]().build
    predict = nodes.NODE_CLASS_MAPPINGS["MotionKitTracksToMotionField"]().predict
    masks = torch.zeros(1, 64, 64)
    masks[0, 22:42, 12:32] = 1
    tracks = build(masks, arrows_json(), 4, 6, 1, "linear")["result"][0]
    with pytest.raises(ValueError, match=r"input 'masks'.*32x32.*64x64"):
        predict(tracks, torch.zeros(1, 32, 32), 4.0)
    with pytest.raises(ValueError, match=r"input 'masks'.*object 1 but only 1 masks"):
        two = build(torch.cat([masks, masks.roll(20, 2)]), arrows_json(), 4, 6, 1, "linear")["result"][0]
        predict(two, masks, 4.0)
    with pytest.raises(ValueError, match=r"input 'tracks'"):
        predict({"track_path": np.zeros((3, 2))}, masks, 4.0)
    with pytest.raises(ValueError, match=r"input 'tracks'.*start outside"):
        predict({"track_path": torch.tensor([[[70.0, 5.0]], [[71.0, 5.0]]])}, masks, 4.0)
