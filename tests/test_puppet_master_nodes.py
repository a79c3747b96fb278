"""Load Puppet-Master and Puppet-Master Drags through ComfyUI's real executor on a tiny file in the official
layout: what the loader builds (ComfyUI's SVD model, zero label_emb, weights equal to the file's, the drag
modules as an additional model, 15 drag-site patches, built-in all-to-first), controls (zero drags in both
halves against the drag modules replaced by their zero-drag values; input MODEL, other branches and reruns
unaffected; cond and uncond in separate calls), composition with MotionKit's other patches in any node order,
and bad input."""
from __future__ import annotations

import json
import shutil
import sys

import pytest
import torch

from motionkit_testing import tiny_puppet_master as tpm
from motionkit_testing.svd import IMAGE, conditioning, sample
from motionkit_testing.trackadapter import arrows_json
from motionkit_testing.workflows import saved_latent

pm = tpm.pm()
stream = tpm.pack_module("safetensors_stream")
LOADER_ID, DRAGS_ID = "MotionKitPuppetMasterLoader", "MotionKitPuppetMasterDrags"
FRAMES, SIZE = 4, 64


def nodes_module():
    import nodes
    return sys.modules[nodes.NODE_CLASS_MAPPINGS[LOADER_ID].__module__]


def node(name):
    import nodes
    return nodes.NODE_CLASS_MAPPINGS[name]()


def error_of(fn, *args) -> str:
    with pytest.raises(ValueError) as info:
        fn(*args)
    assert type(info.value).__name__ == "MotionKitInputError", info.value
    return str(info.value)


@pytest.fixture(scope="module")
def tiny_pm(comfy, base_dir, tiny_ckpt) -> str:
    return tpm.ensure_tiny_puppet_master(base_dir)


@pytest.fixture(scope="module")
def loaded(tiny_pm):
    return node(LOADER_ID).load(tiny_pm)[0]


# --- prompts ---------------------------------------------------------------------------------------------

def pm_prompt(ckpt, unet, *, chain=("drags",), prefix="pm", seed=7, frames=FRAMES, track_frames=None, width=SIZE,
              height=SIZE, arrows=None, steps=2, cfg=2.5, settings=None) -> dict:
    """Load Puppet-Master -> the model nodes of ``chain`` in that order -> KSampler -> SaveLatent; CLIP vision
    and VAE from the tiny SVD checkpoint (its MODEL unused); tracks from an arrow on a square object."""
    settings = settings or {}
    p = {
        "ckpt": {"class_type": "ImageOnlyCheckpointLoader", "inputs": {"ckpt_name": ckpt}},
        "img": {"class_type": "LoadImage", "inputs": {"image": IMAGE}},
        "bg": {"class_type": "SolidMask", "inputs": {"value": 0.0, "width": SIZE, "height": SIZE}},
        "fg": {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 20, "height": 20}},
        "mask": {"class_type": "MaskComposite", "inputs": {"destination": ["bg", 0], "source": ["fg", 0],
                                                          "x": 12, "y": 22, "operation": "add"}},
        "tracks": {"class_type": "MotionKitArrowsToTracks", "inputs": {
            "masks": ["mask", 0], "arrows": arrows or arrows_json(), "num_frames": track_frames or frames,
            "points_per_object": 6, "seed": 1, "easing": "linear", "image": ["img", 0]}},
        "pm": {"class_type": LOADER_ID, "inputs": {"unet_name": unet}},
        "cond": {"class_type": "SVD_img2vid_Conditioning", "inputs": {
            "clip_vision": ["ckpt", 1], "init_image": ["img", 0], "vae": ["ckpt", 2], "width": width,
            "height": height, "video_frames": frames, "motion_bucket_id": 127, "fps": 6, "augmentation_level": 0.0}},
        "ks": {"class_type": "KSampler", "inputs": {
            "seed": seed, "steps": steps, "cfg": cfg, "sampler_name": "euler", "scheduler": "karras",
            "positive": ["cond", 0], "negative": ["cond", 1], "latent_image": ["cond", 2], "denoise": 1.0}},
        "save": {"class_type": "SaveLatent", "inputs": {"samples": ["ks", 0], "filename_prefix": f"latents/{prefix}"}},
    }
    specs = {
        "drags": (DRAGS_ID, {"tracks": ["tracks", 0]}),
        "guid": ("VideoLinearCFGGuidance", {"min_cfg": 1.0}),
        "a2f": ("MotionKitAllToFirstAttention", {"strength": 0.6, "start_percent": 0.0, "end_percent": 1.0}),
        "maa": ("MotionKitMotionAugmentedAttention", {"motion_field": ["field", 0], "strength": 0.5,
                                                      "start_percent": 0.0, "end_percent": 1.0}),
        "ta": ("MotionKitApplyTrackAdapter", {"tracks": ["tracks", 0], "lambda_bg": 0.4, "tau": 0.1, "strength": 0.5,
                                              "start_percent": 0.0, "end_percent": 1.0}),
    }
    if "maa" in chain:
        p["field"] = {"class_type": "MotionKitTracksToMotionField", "inputs": {
            "tracks": ["tracks", 0], "masks": ["mask", 0], "boundary_softness": 4.0}}
    source = ["pm", 0]
    for i, name in enumerate(chain):
        class_type, inputs = specs[name.rstrip("0123456789")]
        p[name] = {"class_type": class_type, "inputs": {"model": source, **inputs, **settings.get(name, {})}}
        source = [name, 0]
    p["ks"]["inputs"]["model"] = source
    return p


def run(comfy, base_dir, prompt, node="save"):
    return saved_latent(base_dir, comfy.run(prompt), node)


# --- the loader ---------------------------------------------------------------------------------------------

def test_loader_builds_comfys_svd_with_the_files_weights(loaded, base_dir, tiny_pm):
    import comfy.model_base
    import comfy.utils
    from comfy.ldm.modules.attention import CrossAttention, SpatialVideoTransformer
    mod = nodes_module()
    assert type(loaded.model) is comfy.model_base.SVD_img2vid
    unet = loaded.model.diffusion_model
    for key in pm.LABEL_EMB:
        assert not bool(comfy.utils.get_attr(unet, key).any()), key
    path = base_dir / "models" / "puppet_master" / tiny_pm
    header = stream.read_header(str(path))
    state = unet.state_dict()
    adapter = mod.adapter_of(loaded)
    drag_state = adapter.state_dict()
    with open(path, "rb", buffering=0) as f:
        for key in header.tensors:
            value = stream.read_tensor(f, header, key)
            if pm.is_drag_key(key):
                assert torch.equal(drag_state[key], value.to(drag_state[key].dtype)), key
            else:
                assert torch.equal(state[pm.comfy_key(key, 2)], value.to(state[pm.comfy_key(key, 2)].dtype)), key
    assert len(state) == 1428 and len(drag_state) == 240
    # the drag modules ride along as an additional model; 15 drag sites + 16 all-to-first patches
    patchers = loaded.get_additional_models_with_key(mod.KEY)
    assert len(patchers) == 1 and isinstance(patchers[0], mod.DragAdapterPatcher) and patchers[0].model is adapter
    sites = {k for k, v in loaded.object_patches.items() if isinstance(v, mod.DragSiteForward)}
    a2f = {k for k, v in loaded.object_patches.items() if isinstance(v, mod.AllToFirstForward)}
    assert sites == {f"diffusion_model.{s.transformer}.forward" for s in adapter.config.sites} and len(sites) == 15
    assert len(a2f) == 16 and all(k.endswith("transformer_blocks.0.attn1.forward") and "time_stack" not in k for k in a2f)
    assert all(isinstance(loaded.get_model_object(k[:-len(".forward")]), SpatialVideoTransformer) for k in sites)
    assert all(isinstance(loaded.get_model_object(k[:-len(".forward")]), CrossAttention) for k in a2f)
    assert all(v.strength == 1.0 for k, v in loaded.object_patches.items() if k in a2f)
    assert set(loaded.object_patches) == sites | a2f
    assert mod.options_of(loaded).drags is None and mod.options_of(loaded).num_drags == 5


def test_loader_reads_the_file_tensor_by_tensor_without_mapping_it(tiny_pm, monkeypatch):
    """No whole-file loaders (comfy.utils.load_torch_file, safetensors' mapped safe_open / load_file)."""
    import comfy.utils
    import safetensors
    import safetensors.torch

    def refuse(*a, **k):
        raise AssertionError("the whole file was loaded")
    for target, name in ((comfy.utils, "load_torch_file"), (safetensors, "safe_open"), (safetensors.torch, "load_file"),
                         (safetensors.torch, "safe_open")):
        monkeypatch.setattr(target, name, refuse)
    reads = []
    mod = nodes_module()
    original = mod.read_tensor
    monkeypatch.setattr(mod, "read_tensor", lambda f, h, k: reads.append(k) or original(f, h, k))
    node(LOADER_ID).load(tiny_pm)
    assert len(reads) == len(set(reads)) == 1664


def test_loader_lists_puppet_master_and_diffusion_models_folders(comfy, base_dir, tiny_pm):
    import nodes
    info = nodes.NODE_CLASS_MAPPINGS[LOADER_ID].INPUT_TYPES()["required"]
    assert list(info) == ["unet_name"] and tiny_pm in info["unet_name"][0]
    other = base_dir / "models" / "diffusion_models" / "pm_copy.safetensors"
    other.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(base_dir / "models" / "puppet_master" / tiny_pm, other)
    try:
        assert "pm_copy.safetensors" in nodes.NODE_CLASS_MAPPINGS[LOADER_ID].INPUT_TYPES()["required"]["unet_name"][0]
        model = node(LOADER_ID).load("pm_copy.safetensors")[0]
        assert nodes_module().adapter_of(model) is not None
    finally:
        other.unlink()


@pytest.fixture
def scratch_files(base_dir):
    folder = base_dir / "models" / "puppet_master"
    before = set(folder.iterdir())
    yield folder
    for path in set(folder.iterdir()) - before:
        path.unlink()


def test_files_that_are_not_puppet_master_are_clear_errors(comfy, base_dir, tiny_pm, tiny_ckpt, scratch_files):
    folder = scratch_files
    load = node(LOADER_ID).load
    # a stock (tiny) SVD checkpoint: LDM names, every official key missing
    shutil.copy(base_dir / "models" / "checkpoints" / tiny_ckpt, folder / "stock_svd.safetensors")
    msg = error_of(load, "stock_svd.safetensors")
    assert "'unet_name'" in msg and "not a Puppet-Master UNet" in msg and "missing" in msg and "unexpected" in msg
    assert "conv_in.weight" in msg and "model.diffusion_model." in msg and "Fix:" in msg and "rayli/Puppet-Master" in msg
    # the official layout with one drag module of the wrong width, and one key missing
    sd = tpm.puppet_master_state_dict()
    from safetensors.torch import save_file
    bad = dict(sd)
    bad["up_blocks.1.flow_convs.0.conv_out.weight"] = torch.zeros(64, 32, 3, 3)
    bad["up_blocks.1.flow_convs.0.conv_out.bias"] = torch.zeros(64)
    save_file(bad, str(folder / "bad_width.safetensors"))
    msg = error_of(load, "bad_width.safetensors")
    assert "up_blocks.1.flow_convs.0" in msg and "FiLM channels" in msg
    missing = {k: v for k, v in sd.items() if k != "mid_block.attentions.0.proj_in.weight"}
    missing["add_embedding.linear_1.weight"] = torch.zeros(128, 768)
    save_file(missing, str(folder / "missing.safetensors"))
    msg = error_of(load, "missing.safetensors")
    assert "1 key of the official layout is missing (mid_block.attentions.0.proj_in.weight)" in msg
    assert "1 key is unexpected (add_embedding.linear_1.weight; by prefix: add_embedding.linear_1.* 1)" in msg
    # not safetensors at all / not a file in the folders
    (folder / "garbage.safetensors").write_bytes(b"\x00" * 64)
    assert "cannot be read as safetensors" in error_of(load, "garbage.safetensors")
    assert "is in neither" in error_of(load, "nowhere.safetensors")
    (folder / "pickled.ckpt").write_bytes(b"\x80\x04")
    assert "only read from safetensors" in error_of(load, "pickled.ckpt")


# --- the drags node ----------------------------------------------------------------------------------------

def square_tracks(frames=FRAMES, **kw):
    from motionkit_testing.trackadapter import square_tracks as make
    return make(frames, **kw)


def test_drags_node_sets_drags_on_a_clone_and_says_which_it_kept(loaded):
    mod = nodes_module()
    patched, info = node(DRAGS_ID).apply(loaded, square_tracks())
    options = mod.options_of(patched)
    assert options.drags.shape == (FRAMES, 5, 4) and bool((options.drags[:, 1:] == 0).all())
    assert "1 kept" in info and "drag 0: object 0" in info and info == options.summary
    assert mod.options_of(loaded).drags is None                      # the input MODEL is untouched
    assert patched.object_patches == loaded.object_patches           # the same patches, nothing added
    again, _ = node(DRAGS_ID).apply(patched, square_tracks(shift=(-6.0, 3.0)))
    assert not torch.equal(mod.options_of(again).drags, options.drags)   # a second node replaces, never stacks
    assert torch.equal(mod.options_of(again).drags, mod.options_of(node(DRAGS_ID).apply(loaded, square_tracks(
        shift=(-6.0, 3.0)))[0]).drags)


def test_drags_node_bad_input_is_a_clear_error(loaded, tiny_ckpt):
    from motionkit_testing.svd import load_tiny
    svd = load_tiny(tiny_ckpt)[0]
    apply = node(DRAGS_ID).apply
    msg = error_of(apply, svd, square_tracks())
    assert "'model'" in msg and "not a Puppet-Master model" in msg and "Load Puppet-Master" in msg
    msg = error_of(apply, loaded, square_tracks(camera=True))
    assert "'tracks'" in msg and "camera" in msg
    msg = error_of(apply, loaded, square_tracks(shift=(0.0, 0.0)))
    assert "'tracks'" in msg and "no object" in msg
    assert "'tracks'" in error_of(apply, loaded, {"nonsense": 1})
    assert "'model'" in error_of(apply, "not a model", square_tracks())


def test_sampling_mismatches_are_clear_errors(comfy, tiny_ckpt, tiny_pm):
    from motionkit_testing.comfy_session import WorkflowError
    with pytest.raises(WorkflowError) as info:
        comfy.run(pm_prompt(tiny_ckpt, tiny_pm, track_frames=3, prefix="bad_frames"))
    text = str(info.value)
    assert "MotionKitInputError" in text and "'tracks'" in text and "3 frames but the video has 4" in text
    with pytest.raises(WorkflowError) as info:
        comfy.run(pm_prompt(tiny_ckpt, tiny_pm, width=128, height=64, prefix="bad_size"))
    assert "square" in str(info.value) and "width and height" in str(info.value)


# --- whole runs through the executor -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def no_drags(comfy, base_dir, tiny_ckpt, tiny_pm):
    return run(comfy, base_dir, pm_prompt(tiny_ckpt, tiny_pm, chain=(), prefix="no_drags"))


@pytest.fixture(scope="module")
def with_drags(comfy, base_dir, tiny_ckpt, tiny_pm):
    return run(comfy, base_dir, pm_prompt(tiny_ckpt, tiny_pm, prefix="drags"))


def test_drags_change_the_video_and_the_cache_is_freed(comfy, base_dir, tiny_ckpt, tiny_pm, no_drags, with_drags):
    assert no_drags.shape == with_drags.shape == (FRAMES, 4, 8, 8)
    assert (no_drags - with_drags).abs().max() > 1e-3
    seen = []
    mod = nodes_module()
    original = mod.PuppetMasterOptions.cached

    def spy(self, key, make):
        seen.append((key[0], len(self.cache), self.run[0]))
        return original(self, key, make)
    mod.PuppetMasterOptions.cached = spy
    try:
        latent = run(comfy, base_dir, pm_prompt(tiny_ckpt, tiny_pm, prefix="spy", seed=8))
    finally:
        mod.PuppetMasterOptions.cached = original
    assert latent.shape == with_drags.shape
    assert seen and all(active == 1 for _, _, active in seen)          # every site call ran inside the run
    assert max(n for _, n, _ in seen) > 0                               # and reused what earlier calls cached
    options = mod.options_of(comfy.output("drags"))
    assert options.cache == {} and options.run == [0]                   # freed when sampling ended


def first_prediction(model, pos, neg, latent):
    """The denoised prediction of the first sampling step: one UNet evaluation (cond and uncond) on identical
    inputs. (Later steps amplify float32 rounding in this random tiny UNet by about 1e3, so comparisons of
    two computations of the same thing are made here.)"""
    x0 = []
    sample(model, pos, neg, latent, steps=2, callback=lambda step, den, x, total: x0.append(den.clone()))
    return x0[0]


class ZeroDragSite:
    """The control: a drag site whose modules output their zero-drag values: FiLM from the site's DragEmbedding
    of the all -1 map (what zero drags give in every frame), then K zero tokens appended to the context."""

    def __init__(self, inner, embedding, num_drags, context_dim):
        self.inner, self.embedding, self.num_drags, self.context_dim = inner, embedding, num_drags, context_dim

    def __call__(self, x, context=None, time_context=None, timesteps=None, image_only_indicator=None,
                 transformer_options={}):
        r = x.shape[-1]
        with torch.no_grad():
            gamma, beta = self.embedding(-torch.ones(1, 6 * self.num_drags, r, r)).chunk(2, 1)
        tokens = context.new_zeros(context.shape[0], self.num_drags, self.context_dim)
        return self.inner(x * (1 + gamma) + beta, torch.cat([context, tokens], 1), time_context, timesteps,
                          image_only_indicator, transformer_options)


def test_zero_drags_in_both_halves_equal_the_modules_at_their_zero_drag_values(loaded, tiny_ckpt):
    mod = nodes_module()
    _, pos, neg, latent = conditioning(tiny_ckpt, FRAMES, SIZE)
    adapter = mod.adapter_of(loaded)
    control = loaded.clone()
    for key, value in loaded.object_patches.items():
        if isinstance(value, mod.DragSiteForward):
            embedding, _ = adapter.site_modules(value.site)
            control.add_object_patch(key, ZeroDragSite(value.inner, embedding, 5, tpm.PM_TINY.context_dim))
    got, want = first_prediction(loaded, pos, neg, latent), first_prediction(control, pos, neg, latent)
    assert (got - want).abs().max() < 1e-5 * want.abs().max(), (got - want).abs().max()
    drags = node(DRAGS_ID).apply(loaded, square_tracks())[0]
    assert (first_prediction(drags, pos, neg, latent) - want).abs().max() > 1e-2 * want.abs().max()   # drags differ


def test_cond_and_uncond_in_separate_calls_give_the_same_video(loaded, tiny_ckpt, monkeypatch):
    """ComfyUI runs cond and uncond as separate UNet calls when it cannot batch them (low memory, conds that do
    not concatenate); each call gets its own video's drags."""
    import comfy.samplers
    _, pos, neg, latent = conditioning(tiny_ckpt, FRAMES, SIZE)
    drags = node(DRAGS_ID).apply(loaded, square_tracks())[0]
    calls = []
    mod = nodes_module()
    original = mod.DragSiteForward._kinds
    monkeypatch.setattr(mod.DragSiteForward, "_kinds", staticmethod(
        lambda b, f, o: calls.append(tuple(o.get("cond_or_uncond") or ())) or original(b, f, o)))
    batched = first_prediction(drags, pos, neg, latent)
    assert set(calls) == {(1, 0)} or set(calls) == {(0, 1)}
    calls.clear()
    monkeypatch.setattr(comfy.samplers, "can_concat_cond", lambda c1, c2: c1 is c2)   # what low memory does
    separate = first_prediction(drags, pos, neg, latent)
    assert set(calls) == {(0,), (1,)}
    assert (batched - separate).abs().max() < 1e-5 * batched.abs().max()


def test_input_model_other_branches_and_reruns_are_unaffected(comfy, base_dir, tiny_ckpt, tiny_pm, no_drags,
                                                             with_drags):
    p = pm_prompt(tiny_ckpt, tiny_pm, prefix="branch_a")
    p["ks2"] = {**p["ks"], "inputs": {**p["ks"]["inputs"], "model": ["pm", 0]}}
    p["save2"] = {"class_type": "SaveLatent", "inputs": {"samples": ["ks2", 0], "filename_prefix": "latents/branch_b"}}
    hist = comfy.run(p)
    assert torch.equal(saved_latent(base_dir, hist, "save2"), no_drags)
    assert torch.equal(saved_latent(base_dir, hist, "save"), with_drags)
    # the loader's output sampled again after the drags ran, and the drags graph re-executed: unchanged
    assert torch.equal(run(comfy, base_dir, pm_prompt(tiny_ckpt, tiny_pm, chain=(), prefix="no_drags_again")), no_drags)
    other = run(comfy, base_dir, pm_prompt(tiny_ckpt, tiny_pm, prefix="other", arrows=arrows_json(shift=(-10.0, 6.0))))
    assert not torch.equal(other, with_drags)
    assert torch.equal(run(comfy, base_dir, pm_prompt(tiny_ckpt, tiny_pm, prefix="drags_again")), with_drags)
    # two Drags nodes in a row: the second one's drags, nothing stacked
    p = pm_prompt(tiny_ckpt, tiny_pm, chain=("drags1", "drags"), prefix="two")
    p["tracks2"] = {**p["tracks"], "inputs": {**p["tracks"]["inputs"], "arrows": arrows_json(shift=(-10.0, 6.0))}}
    p["drags1"]["inputs"]["tracks"] = ["tracks2", 0]
    assert torch.equal(run(comfy, base_dir, p), with_drags)


def test_composes_with_motionkits_other_patches_in_any_order(comfy, base_dir, tiny_ckpt, tiny_pm, with_drags):
    # Motion-augmented attention and TrackAdapter both patch temporal self-attention and chain in node order
    # (as always in MotionKit), so they keep their order; Puppet-Master's nodes and All-to-First move around them.
    orders = [("drags", "guid", "a2f", "maa", "ta"), ("a2f", "maa", "ta", "guid", "drags"),
              ("maa", "drags", "ta", "a2f", "guid"), ("guid", "maa", "a2f", "ta", "drags")]
    results = [run(comfy, base_dir, pm_prompt(tiny_ckpt, tiny_pm, chain=order, prefix=f"order{i}"))
               for i, order in enumerate(orders)]
    assert all(torch.equal(r, results[0]) for r in results[1:])
    assert not torch.equal(results[0], run(comfy, base_dir, pm_prompt(tiny_ckpt, tiny_pm, chain=("drags", "guid"),
                                                                       prefix="guid_only")))


def test_all_to_first_node_replaces_the_built_in_settings(comfy, base_dir, tiny_ckpt, tiny_pm, with_drags):
    def a2f(strength, prefix):
        return run(comfy, base_dir, pm_prompt(tiny_ckpt, tiny_pm, chain=("drags", "a2f"), prefix=prefix,
                                              settings={"a2f": {"strength": strength}}))
    same = a2f(1.0, "a2f_one")
    off = a2f(0.0, "a2f_off")
    half = a2f(0.5, "a2f_half")
    assert torch.equal(same, with_drags)          # the built-in is strength 1 over the whole schedule
    assert not torch.equal(off, with_drags) and not torch.equal(half, with_drags) and not torch.equal(off, half)
    loaded = comfy.output("pm")
    (turned_off,) = node("MotionKitAllToFirstAttention").patch(loaded, 0.0, 0.0, 1.0)
    mod = nodes_module()
    assert not any(isinstance(v, mod.AllToFirstForward) for v in turned_off.object_patches.values())
    assert sum(isinstance(v, mod.AllToFirstForward) for v in loaded.object_patches.values()) == 16


def test_wrong_link_type_is_rejected_by_validation(comfy, tiny_ckpt, tiny_pm):
    p = pm_prompt(tiny_ckpt, tiny_pm, prefix="wrong")
    p["drags"]["inputs"]["tracks"] = ["img", 0]
    _, _, _, node_errors = comfy.validate(p)      # (Arrows to Trajectories alone is still a valid output)
    assert node_errors["drags"]["errors"][0]["extra_info"]["input_name"] == "tracks"
    assert node_errors["drags"]["class_type"] == DRAGS_ID
