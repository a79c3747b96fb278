"""modules/sam.py without ComfyUI: config inference from tensor shapes, safe loading, the points format,
the mask overlay and the embedding cache."""
from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest
import torch

from motionkit_testing.pack import pack_module
from motionkit_testing.tiny_sam import TINY_SAM, build_sam, save_sam

msam = pack_module("sam")

OFFICIAL = {  # segment_anything/build_sam.py
    "vit_b": (768, 12, 12, (2, 5, 8, 11)),
    "vit_l": (1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": (1280, 32, 16, (7, 15, 23, 31)),
}


@pytest.mark.parametrize("variant", list(OFFICIAL))
def test_official_configs_are_inferred_from_shapes(variant):
    from segment_anything import sam_model_registry

    with torch.device("meta"):  # shapes only: no 2.5 GB of random weights
        sam = sam_model_registry[variant]()
    cfg = msam.infer_sam_config(sam.state_dict())
    embed, depth, heads, global_idx = OFFICIAL[variant]
    assert (cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.global_attn_indexes) == (embed, depth, heads, global_idx)
    assert (cfg.img_size, cfg.patch_size, cfg.window_size, cfg.prompt_embed_dim) == (1024, 16, 14, 256)
    assert cfg.mlp_ratio == 4.0
    assert (cfg.decoder_depth, cfg.decoder_mlp_dim, cfg.num_multimask_outputs, cfg.mask_in_chans) == (2, 2048, 3, 16)
    assert cfg.variant == variant
    # the rebuilt model has exactly the official tensors
    with torch.device("meta"):
        rebuilt = msam.build_sam(cfg)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in sam.state_dict().items()}


def test_tiny_config_and_weights_round_trip(tmp_path):
    sam = build_sam()
    cfg = msam.infer_sam_config(sam.state_dict())
    assert (cfg.img_size, cfg.patch_size, cfg.embed_dim, cfg.depth, cfg.num_heads) == (64, 8, 32, 4, 2)
    assert (cfg.window_size, cfg.global_attn_indexes, cfg.prompt_embed_dim) == (3, (1, 3), 32)
    for name in save_sam(sam, tmp_path):
        loaded, _ = msam.sam_from_state_dict(msam.load_state_dict_file(str(tmp_path / name)))
        for (k, a), (_, b) in zip(sorted(sam.state_dict().items()), sorted(loaded.state_dict().items())):
            assert torch.equal(a, b), k
        assert torch.equal(loaded.pixel_mean, sam.pixel_mean) and torch.equal(loaded.pixel_std, sam.pixel_std)


def test_a_window_as_large_as_the_grid_is_global_attention():
    """Shapes cannot tell a window spanning the whole token grid from global attention; both readings
    must compute the same embedding, which is why the inference may pick either."""
    spec = {**TINY_SAM, "window_size": 8, "global_attn_indexes": (3,)}  # grid is 8x8
    sam = build_sam(spec)
    cfg = msam.infer_sam_config(sam.state_dict())
    assert cfg.global_attn_indexes == (0, 1, 2, 3) and cfg.window_size == 0
    rebuilt, _ = msam.sam_from_state_dict(sam.state_dict())
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 255
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.image_encoder(x), sam.image_encoder(x), rtol=1e-5, atol=1e-5)


def test_prefixed_keys_and_wrapped_state_dicts_load(tmp_path):
    sd = {f"model.{k}": v for k, v in build_sam().state_dict().items()}
    torch.save({"model": sd}, tmp_path / "wrapped.pth")
    sam, cfg = msam.sam_from_state_dict(msam.load_state_dict_file(str(tmp_path / "wrapped.pth")))
    assert cfg.depth == 4


class Boom:
    def __reduce__(self):
        return (print, ("MotionKit test: this code must never run",))


def test_pickled_code_is_refused_not_run(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"image_encoder.patch_embed.proj.weight": Boom()}, f)
    with pytest.raises(pickle.UnpicklingError):
        msam.load_state_dict_file(str(path))
    assert "must never run" not in capsys.readouterr().out


@pytest.mark.parametrize("damage, message", [
    (lambda sd: {"encoder.weight": torch.zeros(3)}, "image_encoder.patch_embed.proj.weight"),
    (lambda sd: {k: v for k, v in sd.items() if not k.startswith("mask_decoder.iou")}, "mask_decoder.iou_token"),
    (lambda sd: {**sd, "mask_decoder.hf_token.weight": torch.zeros(1, 32)}, "do not match"),  # HQ-SAM extra
    (lambda sd: {k: v for k, v in sd.items() if "rel_pos" not in k}, "rel_pos_h"),
])
def test_non_sam_state_dicts_are_rejected_with_the_reason(damage, message):
    with pytest.raises(msam.NotSamCheckpoint, match=message):
        msam.sam_from_state_dict(damage(build_sam().state_dict()))


# --- points -------------------------------------------------------------------------------------------


def mk(objects, w=96, h=64, **extra):
    return json.dumps({"version": 1, "width": w, "height": h, "objects": objects, **extra})


def test_points_are_parsed_with_their_mask_rule():
    p = msam.parse_points(mk([{"positive": [[1, 2]], "negative": [], "box": None},
                              {"positive": [[1, 2]], "negative": [[3, 4]], "box": None},
                              {"positive": [], "box": [0, 0, 96, 64]},
                              {"positive": [[5, 5.5]], "box": [0, 0, 10, 10]}], future_field=1), (96, 64))
    assert [o.multimask for o in p.objects] == [True, False, False, False]
    assert p.objects[1].negative == ((3.0, 4.0),) and p.objects[3].positive == ((5.0, 5.5),)
    kj = msam.parse_points("[{'x': 3, 'y': 4}, {'x': 10, 'y': 20}]", (96, 64))  # KJNodes, single quotes
    assert kj.source == "kjnodes" and not kj.objects[0].negative
    assert kj.objects[0].positive == ((3.0, 4.0), (10.0, 20.0))


@pytest.mark.parametrize("points, problem", [
    ("", "no points yet"),
    ("{not json", "not valid JSON"),
    (json.dumps({"width": 96, "height": 64, "objects": [{"positive": [[1, 2]]}]}), "no 'version'"),
    (json.dumps({"version": 2, "width": 96, "height": 64, "objects": []}), "unknown points format version 2"),
    (json.dumps({"version": True, "width": 96, "height": 64, "objects": []}), "unknown points format version"),
    (mk([]), "no objects"),
    (mk([{"positive": [], "negative": [[3, 4]], "box": None}]), "object 1 has no positive point"),
    (mk([{"positive": [[96, 10]]}]), "outside the 96x64 image"),
    (mk([{"positive": [[-1, 10]]}]), "outside"),
    (mk([{"positive": [[5, 5]], "negative": [[5, 64]]}]), "negative point 1 (5, 64) is outside"),
    (mk([{"positive": [[5, 5]], "box": [10, 10, 5, 20]}]), "box (10, 10, 5, 20) is empty or outside"),
    (mk([{"positive": [[5, 5]], "box": [0, 0, 97, 20]}]), "outside"),
    (mk([{"positive": [[5, 5]], "box": [0, 0, 20]}]), "not [x0, y0, x1, y1]"),
    (mk([{"positive": [[5, 5]]}], w=100), "placed on a 100x64 image, but the image is 96x64"),
    (mk([{"positive": [[5, 5]]}], w=0), "'width' is 0"),
    (mk([{"positive": [[5, "7"]]}]), "not a finite number"),
    (mk([{"positive": [[5, True]]}]), "not a finite number"),
    ('{"version":1,"width":96,"height":64,"objects":[{"positive":[[NaN,3]]}]}', "not a finite number"),
    (mk([{"positive": [[5, 5, 5]]}]), "not an [x, y] pair"),
    (mk([{"negative": [[5, 5]]}]), "no 'positive' list"),
    (mk([{"positive": [[1, 1]]}] * 33), "33 objects"),
    (mk([{"positive": [[1, 1]] * 65}]), "65 points"),
    ("[]", "coordinate list is empty"),
    ('[{"x": 0.25, "y": 0.5}]', "look normalized"),
    ('[{"x": 3}]', "not {\"x\":..,\"y\":..}"),
    ('"text"', "JSON str"),
])
def test_bad_points_say_what_is_wrong_and_how_to_fix_it(points, problem):
    with pytest.raises(msam.PointsError) as e:
        msam.parse_points(points, (96, 64))
    assert problem in e.value.problem, e.value.problem
    assert e.value.fix


def test_kjnodes_integer_points_in_a_tiny_corner_are_not_mistaken_for_normalized():
    p = msam.parse_points('[{"x": 0, "y": 1}, {"x": 1, "y": 0}]', (96, 64))
    assert p.objects[0].positive == ((0.0, 1.0), (1.0, 0.0))


# --- overlay and cache --------------------------------------------------------------------------------


def test_draw_masks_matches_the_float64_blend():
    g = torch.Generator().manual_seed(3)
    image = torch.rand(5, 7, 3, generator=g)
    masks = (torch.rand(10, 5, 7, generator=g) > 0.5).float()  # more objects than colours: the palette cycles
    out = msam.draw_masks(image, masks)
    ref = image.double().numpy()
    for i, m in enumerate(masks.double().numpy()):
        a = 0.5 * m[..., None]
        ref = ref * (1 - a) + np.array(msam.PALETTE[i % len(msam.PALETTE)]) * a
    np.testing.assert_allclose(out.double().numpy(), ref, rtol=0, atol=1e-6)
    assert torch.equal(msam.draw_masks(image, torch.zeros(2, 5, 7)), image)


def test_image_to_uint8_returns_the_bytes_load_image_read():
    pixels = np.arange(256, dtype=np.uint8).repeat(3).reshape(16, 16, 3)
    as_loaded = torch.from_numpy(pixels.astype(np.float32) / 255.0)  # what core LoadImage produces
    assert np.array_equal(msam.image_to_uint8(as_loaded), pixels)


def test_embedding_cache_is_an_lru_keyed_by_model_and_content():
    cache = msam.LRUCache(max_entries=2)
    made = []

    def make(tag):
        return lambda: made.append(tag) or tag

    assert cache.get_or_compute(("m", "a"), make("a")) == ("a", False)
    cache.get_or_compute(("m2", "a"), make("b"))      # same image, another model: its own entry
    assert cache.get_or_compute(("m", "a"), make("a2")) == ("a", True)  # ("m", "a") is now the most recent
    cache.get_or_compute(("m", "c"), make("c"))       # full: evicts the least recently used, ("m2", "a")
    assert ("m", "a") in cache and ("m", "c") in cache and ("m2", "a") not in cache
    assert made == ["a", "b", "c"] and (cache.hits, cache.misses) == (1, 3)
    img = np.zeros((4, 5, 3), np.uint8)
    assert msam.image_digest(img) != msam.image_digest(img.reshape(5, 4, 3))  # same bytes, other shape


def test_embedding_memory_estimate_covers_a_global_attention_matrix():
    with torch.device("meta"):
        from segment_anything import sam_model_registry
        cfg = msam.infer_sam_config(sam_model_registry["vit_h"]().state_dict())
    assert msam.embedding_memory_bytes(cfg) >= 16 * 4096 * 4096 * 4  # heads x tokens^2 x fp32
    assert math.isfinite(msam.embedding_memory_bytes(cfg))
