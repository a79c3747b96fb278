"""Click to Mask through the real ComfyUI executor equals segment-anything's SamPredictor, on a tiny SAM
built at test time and loaded from disk (.pth and safetensors) by MotionKit's loader; the image embedding
is computed once per model and image content."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from motionkit_testing.pack import pack_module
from motionkit_testing.tiny_sam import (SAM_TEST_IMAGE, TINY_SAM_PTH, build_sam, click_prompt, ensure_tiny_sam,
                                        load_uint8, points_json, predictor_masks, write_sam_test_image)

msam = pack_module("sam")


@pytest.fixture(scope="module")
def sam_files(comfy, base_dir):
    return ensure_tiny_sam(base_dir)


@pytest.fixture(scope="module")
def reference_sam(sam_files, base_dir):
    """The tiny SAM built by segment-anything's classes and loaded from the saved .pth with plain torch:
    independent of MotionKit's config inference and loader."""
    sam = build_sam(seed=None)
    sam.load_state_dict(torch.load(base_dir / "models" / "sams" / TINY_SAM_PTH, weights_only=True))
    return sam.eval()


@pytest.fixture(scope="module")
def pack(comfy):
    """The pack's node modules as ComfyUI loaded them (the instances the executor runs)."""
    import nodes
    click = sys.modules[nodes.NODE_CLASS_MAPPINGS["MotionKitClickToMask"].__module__]
    return click, sys.modules[click.load_sam_model.__module__]


def saved(base_dir, history, node) -> list:
    return [np.array(Image.open(base_dir / "output" / f["subfolder"] / f["filename"]))
            for f in history["outputs"][node]["images"]]


def saved_masks(base_dir, history, node) -> list:
    out = []
    for rgb in saved(base_dir, history, node):
        assert set(np.unique(rgb)) <= {0, 255}, "a mask PNG holds values other than 0 and 255"
        out.append(rgb[..., 0] == 255)
    return out


CASES = {
    # one click: three candidates, the highest predicted IoU is kept (here candidate 0)
    "one_point": [{"positive": [[28, 32]]}],
    # one click where the best candidate is not the first one
    "one_point_best_is_not_first": [{"positive": [[16, 40]]}],
    "positive_and_negative_points": [{"positive": [[28, 32], [30, 20]], "negative": [[70, 30], [90, 5]]}],
    "box": [{"positive": [], "box": [10, 10, 50, 55]}],
    "box_and_point": [{"positive": [[69, 28]], "box": [55, 5, 85, 50]}],
    "several_objects": [{"positive": [[28, 32]]}, {"positive": [[69, 28]], "negative": [[69, 5]]},
                        {"positive": [[5, 60]], "box": [0, 40, 30, 64]}],
}


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
@pytest.mark.parametrize("case", list(CASES))
def test_masks_equal_sam_predictor(case, fmt, comfy, base_dir, sam_files, reference_sam):
    objects = CASES[case]
    history = comfy.run(click_prompt(points_json(objects), model=sam_files[fmt], prefix=f"sam_eq/{case}_{fmt}"))
    image = load_uint8(base_dir / "input" / SAM_TEST_IMAGE)
    expected = predictor_masks(reference_sam, image, objects)

    masks = saved_masks(base_dir, history, "save_masks")
    assert len(masks) == len(objects)
    for i, (got, (want, candidates, scores)) in enumerate(zip(masks, expected)):
        assert 0 < want.sum() < want.size, f"object {i}: a trivial reference mask would prove nothing"
        assert np.array_equal(got, want), f"object {i}: {np.sum(got != want)} pixels differ from SamPredictor"
    (union,) = saved_masks(base_dir, history, "save_union")
    assert np.array_equal(union, np.logical_or.reduce([e[0] for e in expected]))

    if case.startswith("one_point"):
        _, candidates, scores = expected[0]
        assert len(candidates) == 3
        best = int(np.argmax(scores))
        assert case != "one_point_best_is_not_first" or best != 0
        # the other candidates are different masks, so keeping the wrong one would fail above
        assert all(not np.array_equal(candidates[best], candidates[k]) for k in range(3) if k != best)


def test_preview_is_the_masks_blended_over_the_image(comfy, base_dir, sam_files, reference_sam):
    objects = CASES["several_objects"]
    history = comfy.run(click_prompt(points_json(objects), prefix="sam_preview"))
    image = load_uint8(base_dir / "input" / SAM_TEST_IMAGE).astype(np.float64) / 255
    expected = image.copy()
    reference = predictor_masks(reference_sam, load_uint8(base_dir / "input" / SAM_TEST_IMAGE), objects)
    for i, (mask, _, _) in enumerate(reference):
        a = msam.OVERLAY_ALPHA * mask[..., None]
        expected = expected * (1 - a) + np.array(msam.PALETTE[i], dtype=np.float64) * a
    (preview,) = saved(base_dir, history, "save_preview")
    # SaveImage truncates 255 * value to uint8: allow that one step
    diff = preview.astype(np.float64) - expected * 255
    assert diff.max() <= 1e-3 and diff.min() > -1.0 - 1e-3, (diff.min(), diff.max())
    assert np.abs(preview.astype(np.float64) - image * 255).max() > 50, "the overlay is not visible"


def test_kjnodes_points_editor_string_is_one_object_of_positive_points(comfy, base_dir, sam_files, reference_sam):
    kj = json.dumps([{"x": 28, "y": 32}, {"x": 30, "y": 20}])
    history = comfy.run(click_prompt(kj, prefix="sam_kj"))
    (got,) = saved_masks(base_dir, history, "save_masks")
    (want, _, _), = predictor_masks(reference_sam, load_uint8(base_dir / "input" / SAM_TEST_IMAGE),
                                    [{"positive": [[28, 32], [30, 20]]}])
    assert np.array_equal(got, want)


def test_first_frame_of_a_batch_is_used(comfy, base_dir, sam_files, reference_sam):
    """A 2-frame batch (the test image, then the image flipped) segments frame 0 only."""
    prompt = click_prompt(points_json([{"positive": [[28, 32]]}]), prefix="sam_batch")
    prompt["flip"] = {"class_type": "ImageFlip", "inputs": {"image": ["img", 0], "flip_method": "x-axis: vertically"}}
    prompt["batch"] = {"class_type": "ImageBatch", "inputs": {"image1": ["img", 0], "image2": ["flip", 0]}}
    prompt["ctm"]["inputs"]["image"] = ["batch", 0]
    history = comfy.run(prompt)
    (got,) = saved_masks(base_dir, history, "save_masks")
    (want, _, _), = predictor_masks(reference_sam, load_uint8(base_dir / "input" / SAM_TEST_IMAGE),
                                    [{"positive": [[28, 32]]}])
    assert np.array_equal(got, want)


def test_second_click_reuses_the_embedding(comfy, base_dir, sam_files, reference_sam, pack):
    """Count the image encoder's forward calls: a new click (new points) on the same image runs only the
    prompt encoder and mask decoder; a different image content runs the encoder again; the same content
    under another file name does not."""
    _, runtime = pack
    rng = np.random.default_rng(7)
    first = base_dir / "input" / "motionkit_sam_cache_a.png"
    write_sam_test_image(first)
    pixels = np.array(Image.open(first))
    pixels[:4, :4] = rng.integers(0, 255, (4, 4, 3))  # content no other test uses: a cold cache
    Image.fromarray(pixels).save(first)
    Image.fromarray(pixels).save(base_dir / "input" / "motionkit_sam_cache_copy.png")
    other = pixels.copy()
    other[-4:, -4:] = 255 - other[-4:, -4:]
    Image.fromarray(other).save(base_dir / "input" / "motionkit_sam_cache_b.png")

    model = runtime.load_sam_model(TINY_SAM_PTH)  # the instance the loader node returns (cached per file)
    calls = []
    hook = model.sam.image_encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        clicks = [{"positive": [[28, 32]]}, {"positive": [[28, 32]], "negative": [[70, 30]]}]
        h1 = comfy.run(click_prompt(points_json(clicks[:1]), image=first.name, prefix="sam_cache/1"))
        assert len(calls) == 1
        h2 = comfy.run(click_prompt(points_json(clicks[1:]), image=first.name, prefix="sam_cache/2"))
        assert len(calls) == 1, "the second click recomputed the image embedding"
        assert h1["outputs"]["ctm"]["motionkit_sam"][0]["embedding_cached"] is False
        assert h2["outputs"]["ctm"]["motionkit_sam"][0]["embedding_cached"] is True
        # the second click's mask is still exactly SamPredictor's for the new points
        (got,) = saved_masks(base_dir, h2, "save_masks")
        (want, _, _), = predictor_masks(reference_sam, pixels, clicks[1:])
        assert np.array_equal(got, want)

        comfy.run(click_prompt(points_json(clicks[:1]), image="motionkit_sam_cache_b.png", prefix="sam_cache/3"))
        assert len(calls) == 2, "a different image must get its own embedding"
        comfy.run(click_prompt(points_json(clicks[1:]), image="motionkit_sam_cache_copy.png", prefix="sam_cache/4"))
        assert len(calls) == 2, "the cache is keyed by image content, not by file name"
    finally:
        hook.remove()


def test_the_model_is_in_comfyuis_model_management(comfy, base_dir, sam_files, pack):
    import comfy.model_management as mm

    _, runtime = pack
    comfy.run(click_prompt(points_json(CASES["one_point"]), prefix="sam_mm"))
    model = runtime.load_sam_model(TINY_SAM_PTH)
    assert isinstance(model.patcher, __import__("comfy.model_patcher").model_patcher.ModelPatcher)
    assert any(m is model.patcher for m in mm.loaded_models()), "SAM is not among ComfyUI's loaded models"
    mm.unload_all_models()
    assert not any(m is model.patcher for m in mm.loaded_models())
    # and it comes back through the same path on the next run
    comfy.run(click_prompt(points_json(CASES["box"]), prefix="sam_mm2"))
    assert any(m is model.patcher for m in mm.loaded_models())
