"""Motion-I2V stage 1 against the official code where MotionKit used to depart from it: prompts are read
literally in one 77-token window (the official ``_encode_prompt``), and sparse drags are resampled over
frames with the app's PCHIP (``interpolate_trajectory``). The third, softsplat's "avg" divisor, is tested
with the splatting in tests/test_motion_field_modules.py.

References are built independently of the pack: ``transformers.CLIPTokenizer`` on ComfyUI's own SD1
tokenizer files called as the official pipeline calls it, the Hugging Face ``CLIPTextModel`` (the class
the official pipeline runs) in float64 on the same weights, and scipy's ``PchipInterpolator``."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from motionkit_testing.pack import pack_module
from motionkit_testing.tiny_motion_i2v import TEXT_WIDTH, text_encoder_state_dict

pipe = pack_module("flowgen_pipeline")
tracks_mod = pack_module("tracks")

# scripts/app.py l.674 (G-U-N/Motion-I2V), the demo's negative prompt: 94 CLIP tokens with start and end.
APP_NEGATIVE = ("(blur, haze, deformed iris, deformed pupils, semi-realistic, cgi, 3d, render, sketch, cartoon, "
                "drawing, anime, mutated hands and fingers:1.4), (deformed, distorted, disfigured:1.3), poorly drawn, "
                "bad anatomy, wrong anatomy, extra limb, missing limb, floating limbs, disconnected limbs, mutation, "
                "mutated, ugly, disgusting, amputation")
PROMPTS = [APP_NEGATIVE,
           "a (red:1.4) car drives along embedding:foo the coast, \\(not emphasis\\) ((very)) fast",
           "",
           "A   dog\nrunning, THE END."]
MAX_LENGTH = 77      # the official tokenizer's model_max_length (SD1.5's tokenizer folder)


@pytest.fixture(scope="module")
def node_mod(comfy):
    import nodes
    return sys.modules[nodes.NODE_CLASS_MAPPINGS["MotionKitMotionI2VFlowPredictor"].__module__]


@pytest.fixture(scope="module")
def official_tokenizer(comfy_path):
    """The official call: ``tokenizer(prompt, padding="max_length", max_length=tokenizer.model_max_length,
    truncation=True)``, with SD1.5's tokenizer (ComfyUI ships its vocabulary and merges)."""
    from transformers import CLIPTokenizer
    tok = CLIPTokenizer.from_pretrained(str(comfy_path / "comfy" / "sd1_tokenizer"))
    return lambda text: tok(text, padding="max_length", max_length=MAX_LENGTH, truncation=True,
                            return_tensors="pt").input_ids


@pytest.fixture(scope="module")
def text_weights():
    return text_encoder_state_dict(seed=2)


@pytest.fixture(scope="module")
def clip(node_mod, text_weights):
    return node_mod.make_text_encoder(dict(text_weights), "tiny/text_encoder/pytorch_model.bin")


@pytest.fixture(scope="module")
def official_text_model(text_weights, clip, tmp_path_factory):
    """The Hugging Face ``CLIPTextModel`` loaded as the official app loads it (``from_pretrained`` of a
    text_encoder folder holding these weights), run in float64; ``text_encoder(ids)[0]`` is its
    ``last_hidden_state`` (after the final layer norm). Each weight is first rounded to the dtype ComfyUI
    stores it in (its text encoders keep most weights in fp16, computing in fp32), so that only the
    tokenisation and the computation are compared."""
    stored = {k: v.dtype for k, v in clip.cond_stage_model.clip_l.transformer.state_dict().items()}
    text_weights = {k: v.to(stored[k]) if k in stored else v for k, v in text_weights.items()}
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel
    folder = tmp_path_factory.mktemp("text_encoder")
    CLIPTextConfig(vocab_size=49408, hidden_size=TEXT_WIDTH, intermediate_size=2 * TEXT_WIDTH, num_hidden_layers=2,
                   num_attention_heads=1, max_position_embeddings=77, hidden_act="quick_gelu",
                   projection_dim=TEXT_WIDTH).save_pretrained(folder)
    save_file({k: v.contiguous() for k, v in text_weights.items()}, str(folder / "model.safetensors"))
    model, info = CLIPTextModel.from_pretrained(folder, output_loading_info=True, attn_implementation="eager")
    assert not info["missing_keys"] and not info.get("mismatched_keys"), info
    model = model.double().eval()

    def run(ids):
        with torch.no_grad():
            return model(ids)[0]
    return run


def rel(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


# --- prompts ----------------------------------------------------------------------------------------------

def test_the_default_negative_prompt_is_the_apps(node_mod):
    assert node_mod.APP_NEGATIVE_PROMPT == APP_NEGATIVE


def test_prompt_token_ids_are_the_official_tokenisation(node_mod, clip, official_tokenizer):
    for text in PROMPTS:
        ids = node_mod.literal_token_ids(clip, text)
        assert ids == official_tokenizer(text)[0].tolist(), text
    # known ids of SD1.5's vocabulary: start, "a photo of a cat", end, then end as padding
    assert node_mod.literal_token_ids(clip, "a photo of a cat") == [49406, 320, 1125, 539, 320, 2368] + [49407] * 71
    # the negative prompt is longer than the window: cut to 75 words + end, as the official truncation
    ids = node_mod.literal_token_ids(clip, APP_NEGATIVE)
    assert len(ids) == MAX_LENGTH and ids[-1] == 49407 and 49407 not in ids[:-1]


@pytest.mark.parametrize("index", range(len(PROMPTS)))
def test_prompt_context_is_the_official_text_encoding(node_mod, clip, official_tokenizer, official_text_model, index):
    """One 77-token window, literal text: the official ``text_encoder(ids)[0]`` (no emphasis weighting,
    no second chunk, no embedding lookup)."""
    text = PROMPTS[index]
    got = node_mod.encode_text(clip, text)
    ref = official_text_model(official_tokenizer(text))
    assert got.shape == ref.shape == (1, MAX_LENGTH, TEXT_WIDTH)
    assert rel(got, ref) < 1e-5, f"relative error {rel(got, ref):.2e}"


def test_predictor_conditions_on_the_official_encodings(comfy, base_dir, tiny_motion_i2v, node_mod, official_tokenizer,
                                                        monkeypatch):
    """Through the nodes: the [uncond, cond] context the FlowGen UNet receives is the official pair."""
    import nodes
    (model,) = nodes.NODE_CLASS_MAPPINGS["MotionKitMotionI2VLoader"]().load(tiny_motion_i2v, "fp32")
    unet = model.unet
    seen = []
    forward = unet.forward
    monkeypatch.setattr(unet, "forward", lambda *a, **k: seen.append(a[3].detach().clone()) or forward(*a, **k))
    image = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(0))
    prompt = PROMPTS[1]
    predictor = nodes.NODE_CLASS_MAPPINGS["MotionKitMotionI2VFlowPredictor"]()
    predictor.predict(model, image, prompt, 0, 1, 7.0, 64, 64, 2)                 # default negative prompt
    context = seen[0]
    assert context.shape == (2, MAX_LENGTH, TEXT_WIDTH)
    te = model.clip.cond_stage_model.clip_l.transformer
    with torch.no_grad():      # ComfyUI's own text model on the official ids, final layer norm applied
        direct = [te(official_tokenizer(t), intermediate_output=None, final_layer_norm_intermediate=True)[0]
                  for t in (APP_NEGATIVE, prompt)]
    assert rel(context[0], direct[0][0]) < 1e-6 and rel(context[1], direct[1][0]) < 1e-6


# --- trajectories -----------------------------------------------------------------------------------------

def app_interpolate(path, n_points):
    """scripts/app.py ``interpolate_trajectory`` per track: PchipInterpolator over linspace(0, 1, len(points)),
    sampled at linspace(0, 1, n_points)."""
    from scipy.interpolate import PchipInterpolator
    t, new_t = np.linspace(0, 1, path.shape[0]), np.linspace(0, 1, n_points)
    return np.stack([np.stack([PchipInterpolator(t, path[:, n, c])(new_t) for c in range(2)], -1)
                     for n in range(path.shape[1])], 1)


def test_tracks_are_resampled_with_the_apps_pchip():
    drag = np.array([[[100.0, 100.0]], [[140.0, 110.0]], [[150.0, 160.0]]])       # a 3-click drag
    for frames in (5, 16):
        np.testing.assert_allclose(pipe.resample_track_frames(drag, frames), app_interpolate(drag, frames),
                                   rtol=0, atol=1e-9)
    rng = np.random.default_rng(0)
    for clicks in (2, 3, 4, 6, 9):
        for frames in (2, 5, 16, 33):
            if clicks == frames:
                continue
            path = rng.normal(scale=40.0, size=(clicks, 5, 2)) + 100
            path[1, 0] = path[0, 0]                     # a flat segment (slope 0 at a knot)
            path[:, 1, 1] = np.linspace(0, 50, clicks)  # straight and evenly spaced: stays linear
            path[:, 2, 0] = 7.0                         # constant
            got = pipe.resample_track_frames(path, frames)
            np.testing.assert_allclose(got, app_interpolate(path, frames), rtol=0, atol=1e-9)
    # monotone clicks give a monotone track (no overshoot past the clicks)
    steps = pipe.resample_track_frames(np.array([[[0.0, 0.0]], [[1.0, 10.0]], [[30.0, 11.0]]]), 16)[:, 0]
    assert (np.diff(steps, axis=0) >= 0).all() and steps[-1, 1] == pytest.approx(11.0)


def test_predictor_sparse_control_follows_the_pchip_track(node_mod):
    """The node hands the ControlNet the displacement of the PCHIP track (frames 1..F-1 from frame 0)."""
    drag = np.array([[[20.0, 20.0]], [[40.0, 22.0]], [[44.0, 40.0]]])
    tracks = tracks_mod.make_tracks(drag, np.zeros(1, dtype=np.int64), 64, 64)
    flow, mask = node_mod.tracks_to_sparse(tracks, 5, 64, 64, (64, 64), 2)
    expected = app_interpolate(drag, 5)[:, 0]
    assert mask[:, 20, 20].all()
    np.testing.assert_allclose(flow[:, 20, 20].numpy(), expected[1:] - expected[0], rtol=0, atol=1e-4)
