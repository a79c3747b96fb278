"""Puppet-Master's mechanism against float64 references written from the spec's equations
(../shared/research/puppet_master.md §1.2-1.5; restated in modules/puppet_master.py), and the checkpoint
layout against the official manifests (tests/data, copied from ../shared/research/manifests).

References: drag maps (loops over frames, drags and writes), DragEmbedding + FiLM (float64 convolutions),
drag tokens (bilinear sampling written out, the sin-cos table from its formula, the MLP in float64), and one
whole drag site: the ComfyUI transformer in float64 with every attention written from its equation
(all-to-first in spatial self-attention), fed the FiLM-modulated input and the token-extended context. The
patched transformer is the loaded tiny model's own, with ComfyUI's object patches applied."""
from __future__ import annotations

import copy
import math
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from motionkit_testing import tiny_puppet_master as tpm
from motionkit_testing.pack import pack_module
from motionkit_testing.references import attention64, linear64

pm = pack_module("puppet_master")
stream = pack_module("safetensors_stream")
tracks_mod = pack_module("tracks")
LOADER_ID, DRAGS_ID = "MotionKitPuppetMasterLoader", "MotionKitPuppetMasterDrags"


def nodes_module():
    import nodes
    return sys.modules[nodes.NODE_CLASS_MAPPINGS[LOADER_ID].__module__]


# --- layout: key map and manifests -----------------------------------------------------------------------

def test_key_map_reproduces_the_manifest_map_both_ways():
    mapping = tpm.key_map()
    assert len(mapping) == 1664 and sum(v is None for v in mapping.values()) == 240
    for key, comfy in mapping.items():
        assert pm.comfy_key(key, 2) == comfy, key
        assert pm.is_drag_key(key) == (comfy is None)
        if comfy is not None:
            assert pm.diffusers_key(comfy, 2) == key
    with pytest.raises(pm.LayoutError):
        pm.comfy_key("add_embedding.linear_1.weight", 2)
    with pytest.raises(pm.LayoutError):
        pm.comfy_key("model.diffusion_model.input_blocks.0.0.weight", 2)


def test_drag_configuration_from_the_manifest_shapes():
    shapes = tpm.manifest()
    cfg = pm.drag_config({k: v for k, v in shapes.items() if pm.is_drag_key(k)}, 2)
    assert (cfg.num_drags, cfg.embedder_channels, cfg.pos_dim, cfg.context_dim) == (5, (256, 320, 320), 64, 1024)
    assert [(s.transformer, s.channels) for s in cfg.sites] == [
        ("input_blocks.1.1", 320), ("input_blocks.2.1", 320), ("input_blocks.4.1", 640), ("input_blocks.5.1", 640),
        ("input_blocks.7.1", 1280), ("input_blocks.8.1", 1280)] + [
        (f"output_blocks.{n}.1", c) for n, c in zip(range(3, 12), [1280] * 3 + [640] * 3 + [320] * 3)]
    with torch.device("meta"):
        adapter = pm.DragAdapter(cfg)
    sd = adapter.state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items()} == {k: v for k, v in shapes.items() if pm.is_drag_key(k)}
    assert sum(v.numel() for v in sd.values()) == 153_810_880


def test_full_size_layout_equals_the_manifest_on_the_meta_device(comfy):
    """The official configuration built from ComfyUI's SVD UNet (meta device, nothing allocated) renamed by the
    key map, plus the drag modules: exactly the manifest's 1664 keys and shapes; ComfyUI's stock detection
    takes the renamed keys plus zero label_emb as its own SVD img2vid; the loader's own layout checks pass."""
    import comfy.supported_models
    shapes = tpm.manifest()
    built = tpm.meta_state_dict(tpm.PM_FULL)
    assert built == shapes
    assert sum(math.prod(s) for s in built.values()) == 1_675_809_962
    mod = nodes_module()
    assert mod.official_layout() == set(shapes)
    layout = mod.Layout(header=None, prefix="", layers=2, base={pm.comfy_key(k, 2): k for k in shapes
                                                                 if not pm.is_drag_key(k)},
                        drags=pm.drag_config({k: v for k, v in shapes.items() if pm.is_drag_key(k)}, 2),
                        shapes=shapes, dtype=torch.float32)
    sd, config = mod._detect(layout, "manifest")
    assert type(config) is comfy.supported_models.SVD_img2vid
    assert len(sd) == 1428 and sum(v.numel() for v in sd.values()) == 1_524_623_082
    assert all(v.untyped_storage().nbytes() <= 4 for k, v in sd.items() if not k.startswith("label_emb"))
    mod._check_drag_shapes(layout, config, "manifest")


def test_tiny_file_has_every_key_of_the_manifest(comfy, tmp_path):
    path = tpm.write_puppet_master(tmp_path / "tiny.safetensors")
    header = stream.read_header(path)
    shapes = tpm.manifest()
    assert set(header.tensors) == set(shapes)
    assert {k: v.shape for k, v in header.tensors.items()} == tpm.meta_state_dict(tpm.PM_TINY)
    for key, info in header.tensors.items():   # same ranks; the kernel sizes and fixed channel counts agree
        assert len(info.shape) == len(shapes[key]), key
        if len(shapes[key]) == 4:
            assert info.shape[2:] == shapes[key][2:], key
    assert header.tensors["conv_in.weight"].shape[1] == 8 and header.tensors["conv_out.weight"].shape[0] == 4
    assert header.tensors["down_blocks.0.flow_convs.0.conv_in.weight"].shape[1] == 30
    assert sum(math.prod(v.shape) for v in header.tensors.values()) < 20_000_000   # 16.5 M at width 32


def test_streamed_safetensors_round_trip(tmp_path):
    from safetensors.torch import load_file
    tensors = {"a": torch.randn(3, 5), "b": torch.arange(7, dtype=torch.float16), "c": torch.tensor(2.5),
               "d": torch.randn(2, 2).to(torch.bfloat16)}
    path = tmp_path / "x.safetensors"
    stream.write_streamed(str(path), [(k, v.dtype, tuple(v.shape)) for k, v in tensors.items()], tensors.__getitem__,
                          {"m": "1"})
    header = stream.read_header(str(path))
    assert header.metadata == {"m": "1"}
    with open(path, "rb", buffering=0) as f:
        for k, v in tensors.items():
            assert torch.equal(stream.read_tensor(f, header, k), v)
    assert all(torch.equal(load_file(str(path))[k], v) for k, v in tensors.items())
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(stream.SafetensorsError):
        stream.read_header(str(tmp_path / "bad.safetensors"))


# --- float64 references -----------------------------------------------------------------------------------

def ref_maps(drags: np.ndarray, r: int) -> np.ndarray:
    """§1.2 as loops: start at -1; per frame and present drag, the three writes (source, this frame's target,
    last frame's target), each (frac x, frac y) at its cell."""
    frames, k, _ = drags.shape
    out = -np.ones((frames, 6 * k, r, r))
    for f in range(frames):
        for j in range(k):
            if not np.any(drags[f, j] != 0):
                continue
            points = [drags[f, j, 0:2], drags[f, j, 2:4], drags[frames - 1, j, 2:4]]
            for w, (x, y) in enumerate(points):
                cx = min(max(round(float(x) * r - 0.5), 0), r - 1)     # Python round: half to even
                cy = min(max(round(float(y) * r - 0.5), 0), r - 1)
                out[f, 6 * j + 2 * w, cy, cx] = float(x) * r - cx
                out[f, 6 * j + 2 * w + 1, cy, cx] = float(y) * r - cy
    return out


def ref_table(dim: int, r: int) -> torch.Tensor:
    q = dim // 4
    table = torch.zeros(dim, r, r, dtype=torch.float64)
    for d in range(q):
        w = 10000.0 ** (-d / q)
        for y in range(r):
            for x in range(r):
                table[d, y, x], table[q + d, y, x] = math.sin(x * w), math.cos(x * w)
                table[2 * q + d, y, x], table[3 * q + d, y, x] = math.sin(y * w), math.cos(y * w)
    return table


def ref_embedding(module, maps: torch.Tensor) -> torch.Tensor:
    def conv(layer, h):
        return F.conv2d(h, layer.weight.double(), layer.bias.double(), padding=1)
    h = F.silu(conv(module.conv_in, maps.double()))
    for block in module.blocks:
        h = F.silu(conv(block, h))
    return conv(module.conv_out, h)


def ref_film(module, h: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    gamma, beta = ref_embedding(module, maps).chunk(2, dim=1)
    return h.double() * (1 + gamma) + beta


def ref_bilinear(features: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """Bilinear sample of (C, r, r) at (x, y) in [0, 1]: pixel u = x r - 0.5, clamped to the border."""
    r = features.shape[-1]
    u = min(max(x * r - 0.5, 0.0), r - 1.0)
    v = min(max(y * r - 0.5, 0.0), r - 1.0)
    u0, v0 = math.floor(u), math.floor(v)
    u1, v1 = min(u0 + 1, r - 1), min(v0 + 1, r - 1)
    a, b = u - u0, v - v0
    return ((1 - a) * (1 - b) * features[:, v0, u0] + a * (1 - b) * features[:, v0, u1]
            + (1 - a) * b * features[:, v1, u0] + a * b * features[:, v1, u1])


def ref_tokens(mlp, modulated: torch.Tensor, drags: np.ndarray, pos_dim: int) -> torch.Tensor:
    """§1.4: per frame and drag, [S(h', src); S(h', tgt_f); S(P, src); S(P, tgt_f)] -> Linear, SiLU, Linear;
    zero for a drag that is all-zero in every frame."""
    frames, k, _ = drags.shape
    table = ref_table(pos_dim, modulated.shape[-1])
    out = torch.zeros(frames, k, mlp[2].weight.shape[0], dtype=torch.float64)
    for j in range(k):
        if not np.any(drags[:, j] != 0):
            continue
        for f in range(frames):
            (xs, ys), (xt, yt) = drags[f, j, :2].tolist(), drags[f, j, 2:].tolist()
            h = modulated[f].double()
            inp = torch.cat([ref_bilinear(h, xs, ys), ref_bilinear(h, xt, yt),
                             ref_bilinear(table, xs, ys), ref_bilinear(table, xt, yt)])
            out[f, j] = linear64(mlp[2], F.silu(linear64(mlp[0], inp[None])))[0]
    return out


def example_drags(frames: int, k: int = 5, real: int = 3, seed: int = 0) -> np.ndarray:
    """``real`` drags along curved paths, one of them absent in some middle frames, the rest padding; values
    include the borders 0 and 1 and points on cell boundaries."""
    rng = np.random.default_rng(seed)
    d = np.zeros((frames, k, 4), np.float32)
    t = np.linspace(0, 1, frames)[:, None]
    for j in range(real):
        start = rng.uniform(0.05, 0.95, 2)
        end = rng.uniform(0.0, 1.0, 2)
        path = start * (1 - t) + end * t + 0.1 * np.sin(np.pi * t) * np.array([1, -1])
        d[:, j, :2], d[:, j, 2:] = start, np.clip(path, 0, 1)
    d[:, 0, 2:][-1] = [1.0, 0.0]                 # ends on the border
    d[:, 1, :2] = [0.5, 0.25]                    # starts on cell boundaries for every r
    d[0, :real, 2:] = d[0, :real, :2]            # frame 0: target = source
    if frames > 3:
        d[frames // 2, 2] = 0.0                  # drag 2 absent in one frame (map), still valid (token)
    return d


@pytest.mark.parametrize("r", [32, 16, 8, 4, 2])
@pytest.mark.parametrize("frames", [14, 3])
def test_drag_maps_match_the_float64_reference_exactly(r, frames):
    drags = example_drags(frames)
    got = pm.drag_maps(torch.from_numpy(drags), r)
    assert got.shape == (frames, 30, r, r) and got.dtype == torch.float32
    assert np.array_equal(got.double().numpy(), ref_maps(drags.astype(np.float64), r))
    batched = pm.drag_maps(torch.from_numpy(np.stack([drags, np.zeros_like(drags)])), r)
    assert torch.equal(batched[0], got) and bool((batched[1] == -1).all())


def test_drag_validity_is_per_video():
    drags = torch.from_numpy(example_drags(6))
    assert pm.drag_validity(drags).tolist() == [True, True, True, False, False]


def test_sincos_table_matches_its_formula():
    for r in (32, 8, 1):
        assert torch.allclose(pm.sincos_table(64, r), ref_table(64, r), rtol=0, atol=1e-12)


@pytest.fixture(scope="module")
def adapter():
    return tpm.build_adapter(tpm.PM_TINY, seed=5)


@pytest.mark.parametrize("site_index", [0, 6, 14])
def test_drag_embedding_and_film_match_the_float64_reference(adapter, site_index):
    site = adapter.config.sites[site_index]
    embedding, _ = adapter.site_modules(site)
    r, frames = 8, 14
    maps = pm.drag_maps(torch.from_numpy(example_drags(frames)), r)
    h = torch.randn(frames, site.channels, r, r, generator=torch.Generator().manual_seed(site_index))
    gamma, beta = embedding(maps).chunk(2, dim=1)
    got = h * (1 + gamma) + beta
    ref = ref_film(embedding, h, maps)
    assert (got.double() - ref).abs().max() / ref.abs().max() < 1e-5
    assert (ref - h.double()).abs().max() > 1e-2           # FiLM is not the identity with these weights


@pytest.mark.parametrize("site_index,r", [(0, 16), (7, 4), (14, 2)])
def test_drag_tokens_match_the_float64_reference(adapter, site_index, r):
    site = adapter.config.sites[site_index]
    _, mlp = adapter.site_modules(site)
    frames = 5
    drags = example_drags(frames, real=3)
    h = torch.randn(frames, site.channels, r, r, generator=torch.Generator().manual_seed(1))
    d = torch.from_numpy(drags)
    valid = pm.drag_validity(d)[None].expand(frames, -1)
    got = pm.drag_tokens(h, d, pm.sincos_table(adapter.config.pos_dim, r).float(), mlp, valid)
    ref = ref_tokens(mlp, h, drags, adapter.config.pos_dim)
    assert got.shape == (frames, 5, tpm.PM_TINY.context_dim)
    assert (got.double() - ref).abs().max() / ref.abs().max() < 1e-5
    assert bool((got[:, 3:] == 0).all()) and bool((got[:, :3].abs().sum(-1) > 0).all())


# --- one whole drag site, the patched transformer of the loaded tiny model ---------------------------------

def a2f64(attn, frames):
    def forward(x, context=None, value=None, mask=None, transformer_options={}):
        b = x.shape[0] // frames
        q, k, v = linear64(attn.to_q, x), linear64(attn.to_k, x), linear64(attn.to_v, x)
        first = lambda t: t.view(b, frames, *t.shape[1:])[:, :1].expand(b, frames, *t.shape[1:]).reshape(t.shape)  # noqa: E731
        return linear64(attn.to_out[0], attention64(q, first(k), first(v), attn.heads))
    return forward


def attention_ref(attn):
    def forward(x, context=None, value=None, mask=None, transformer_options={}):
        context = x if context is None else context
        value = context if value is None else value
        out = attention64(linear64(attn.to_q, x), linear64(attn.to_k, context), linear64(attn.to_v, value), attn.heads)
        return linear64(attn.to_out[0], out)
    return forward


def reference_transformer(module, frames):
    """The transformer in float64 with every attention from its equation; spatial self-attention all-to-first."""
    from comfy.ldm.modules.attention import CrossAttention
    ref = copy.deepcopy(module).double()
    for layer in ref.modules():
        layer.__dict__.pop("forward", None)      # never a patch left on the shared module
    for name, layer in ref.named_modules():
        if isinstance(layer, CrossAttention):
            spatial_self = name.startswith("transformer_blocks.") and name.endswith("attn1")
            layer.forward = a2f64(layer, frames) if spatial_self else attention_ref(layer)
    return ref


def reference_site(module, embedding, mlp, x, context, kinds, drags, frames, pos_dim, ablate=()):
    """§1.3-1.5 for one site: per video, FiLM from its map (zero drags for uncond), tokens from the modulated
    input, then the float64 transformer with [CLIP; tokens] as context (time_context None: the temporal
    blocks read frame 0's). ``ablate`` removes pieces for the ablation figures."""
    ref = reference_transformer(module, frames)
    r = x.shape[-1]
    xs, tokens = [], []
    for c, kind in enumerate(kinds):
        d = drags if (kind == 0) != ("swap" in ablate) else np.zeros_like(drags)
        maps = torch.from_numpy(ref_maps(d.astype(np.float64), r))
        h = x[c * frames:(c + 1) * frames].double()
        h = h if "film" in ablate else ref_film(embedding, h, maps)
        xs.append(h)
        tokens.append(ref_tokens(mlp, h, d, pos_dim))
    h, tok = torch.cat(xs), torch.cat(tokens)
    ctx64 = context.double()
    full = ctx64 if "tokens" in ablate else torch.cat([ctx64, tok], dim=1)
    time_context = ctx64 if "temporal_tokens" in ablate else None
    if "all_to_first" in ablate:
        for name, layer in ref.named_modules():
            if name.startswith("transformer_blocks.") and name.endswith("attn1"):
                layer.forward = attention_ref(layer)
    return ref(h, full, time_context, frames, torch.zeros(1, dtype=torch.float64), {})


@pytest.fixture(scope="module")
def loaded(comfy, base_dir):
    name = tpm.ensure_tiny_puppet_master(base_dir)
    import nodes
    (model,) = nodes.NODE_CLASS_MAPPINGS[LOADER_ID]().load(name)
    return model


def site_call(model, path, x, context, frames, options, kinds):
    """The transformer at ``path`` as ComfyUI runs it for sampling (object patches applied)."""
    mod = nodes_module()
    opts = {mod.KEY: options}
    if kinds is not None:
        opts["cond_or_uncond"] = kinds
    import comfy.utils
    prefix = f"diffusion_model.{path}."
    patches = {k: v for k, v in model.object_patches.items() if k.startswith(prefix)}
    assert f"{prefix}forward" in patches and f"{prefix}transformer_blocks.0.attn1.forward" in patches
    for key, value in patches.items():          # what ModelPatcher.patch_model does with object patches
        comfy.utils.set_attr(model.model, key, value)
    try:
        layer = model.get_model_object(f"diffusion_model.{path}")
        with torch.no_grad():
            return layer(x, context, None, frames, torch.zeros(1), opts)
    finally:
        for key in patches:
            module_path, _, attr = key.rpartition(".")
            delattr(comfy.utils.get_attr(model.model, module_path), attr)


def options_with(model, drags):
    mod = nodes_module()
    base = mod.options_of(model)
    return mod.PuppetMasterOptions(name=base.name, num_drags=base.num_drags,
                                   drags=None if drags is None else torch.from_numpy(drags))


@pytest.mark.parametrize("path,r,frames", [("input_blocks.1.1", 16, 14), ("input_blocks.8.1", 4, 14),
                                           ("output_blocks.9.1", 8, 3)])
def test_patched_drag_site_matches_the_float64_reference_in_any_cond_order(loaded, path, r, frames, capsys):
    mod = nodes_module()
    adapter = mod.adapter_of(loaded)
    site = next(s for s in adapter.config.sites if s.transformer == path)
    embedding, mlp = adapter.site_modules(site)
    unpatched = loaded.model.diffusion_model
    for part in path.split("."):
        unpatched = unpatched[int(part)] if part.isdigit() else getattr(unpatched, part)
    drags = example_drags(frames)
    options = options_with(loaded, drags)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2 * frames, site.channels, r, r, generator=gen)
    context = torch.randn(2 * frames, 1, tpm.PM_TINY.context_dim, generator=gen)
    pos = adapter.config.pos_dim
    refs = {}
    for kinds in ([0, 1], [1, 0]):
        got = site_call(loaded, path, x, context, frames, options, kinds)
        ref = reference_site(unpatched, embedding, mlp, x, context, kinds, drags, frames, pos)
        refs[tuple(kinds)] = ref
        err = ((got.double() - ref).abs().max() / ref.abs().max()).item()
        assert err < 2e-5, f"{kinds}: relative error {err:.2e}"
    # cond and uncond in separate calls give the same rows as the batched call
    cond = site_call(loaded, path, x[:frames], context[:frames], frames, options, [0])
    uncond = site_call(loaded, path, x[frames:], context[frames:], frames, options, [1])
    ref = refs[(0, 1)]
    assert ((cond.double() - ref[:frames]).abs().max() / ref.abs().max()).item() < 2e-5
    assert ((uncond.double() - ref[frames:]).abs().max() / ref.abs().max()).item() < 2e-5
    # outside a sampler (no cond_or_uncond) the video is conditional
    alone = site_call(loaded, path, x[frames:], context[frames:], frames, options, None)
    ref_alone = reference_site(unpatched, embedding, mlp, x[frames:], context[frames:], [0], drags, frames, pos)
    assert ((alone.double() - ref_alone).abs().max() / ref_alone.abs().max()).item() < 2e-5
    with capsys.disabled():
        print(f"\n[puppet-master site {path}, r={r}, {frames} frames] max |patched - float64 reference| / max |ref|: "
              + ", ".join(f"{list(k)} {((site_call(loaded, path, x, context, frames, options, list(k)).double() - v).abs().max() / v.abs().max()).item():.1e}"
                          for k, v in refs.items()))


def test_each_piece_of_the_site_matters(loaded, capsys):
    """Ablations of the reference at one site (max |delta| of the output, relative to max |output|): FiLM,
    the drag tokens, the frame-0 tokens in temporal attention, all-to-first, and drags on the wrong video."""
    mod = nodes_module()
    adapter = mod.adapter_of(loaded)
    path, r, frames = "input_blocks.2.1", 8, 14
    site = next(s for s in adapter.config.sites if s.transformer == path)
    embedding, mlp = adapter.site_modules(site)
    unpatched = loaded.model.diffusion_model.input_blocks[2][1]
    drags = example_drags(frames)
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2 * frames, site.channels, r, r, generator=gen)
    context = torch.randn(2 * frames, 1, tpm.PM_TINY.context_dim, generator=gen)
    args = (unpatched, embedding, mlp, x, context, [1, 0], drags, frames, adapter.config.pos_dim)
    full = reference_site(*args)
    deltas = {}
    for piece in ("film", "tokens", "temporal_tokens", "all_to_first", "swap"):
        deltas[piece] = ((reference_site(*args, ablate=(piece,)) - full).abs().max() / full.abs().max()).item()
    with capsys.disabled():
        print("\n[puppet-master ablations, relative max |delta| at input_blocks.2.1] "
              + ", ".join(f"{k} {v:.3f}" for k, v in deltas.items()))
    assert all(v > 1e-3 for v in deltas.values()), deltas


# --- tracks -> drags ---------------------------------------------------------------------------------------

def track_set(path, objects, width, height):
    path = np.asarray(path, dtype=np.float64)
    return tracks_mod.TrackSet(path, np.ones(path.shape[:2], bool), np.asarray(objects, np.int64), width, height)


def test_drags_are_normalised_to_the_square_the_conditioning_encodes(comfy):
    """A dot drawn at a track's start in a wide (and a tall) image lands, after SVD_img2vid_Conditioning's
    resize to 256x256 (common_upscale, centre crop), where the drag's start says."""
    import comfy.utils
    for width, height, point in ((480, 270, (300.5, 100.5)), (200, 333, (60.5, 250.5))):
        ts = track_set([[point], [(point[0] + 5, point[1])]], [0], width, height)
        drags, kept, _ = pm.choose_drags(ts)
        image = torch.zeros(1, 1, height, width, dtype=torch.float64)
        row, col = int(point[1]), int(point[0])
        image[0, 0, row - 1:row + 2, col - 1:col + 2] = 1.0              # a 3x3 dot centred on the point
        out = comfy.utils.common_upscale(image, 256, 256, "bilinear", "center")[0, 0]
        grid = (torch.arange(256, dtype=torch.float64) + 0.5) / 256
        centre = ((out.sum(0) * grid).sum() / out.sum(), (out.sum(1) * grid).sum() / out.sum())
        assert abs(centre[0] - drags[0, 0, 0]) < 1 / 256 and abs(centre[1] - drags[0, 0, 1]) < 1 / 256
        x0, y0, cw, ch = pm.square_crop(width, height)
        assert drags[0, 0, 0] == pytest.approx((point[0] - x0) / cw) and drags[0, 0, 1] == pytest.approx((point[1] - y0) / ch)


def test_one_drag_per_object_farthest_moving_at_most_five():
    frames, size = 3, 100
    paths, objects = [], []
    # objects 0..6; object o has three tracks moving by (o+1) * [1, 2, 3] px; object 6 is static; camera track
    for o in range(7):
        for i, speed in enumerate((1, 2, 3)):
            step = 0 if o == 6 else (o + 1) * speed
            start = (10 + 10 * o, 10 + 20 * i)
            paths.append([(start[0] + t * step, start[1]) for t in range(frames)])
            objects.append(o)
    paths.append([(50, 50), (60, 50), (70, 50)])
    objects.append(-1)
    ts = track_set(np.transpose(np.array(paths, float), (1, 0, 2)), objects, size, size)
    drags, kept, dropped = pm.choose_drags(ts)
    assert [c.object for c in kept] == [1, 2, 3, 4, 5]                  # 5 farthest movers, object order
    assert [c.track for c in kept] == [3 * o + 2 for o in (1, 2, 3, 4, 5)]  # each object's fastest track
    assert dict(dropped).keys() == {0, 6}
    assert "static" in dict(dropped)[6] and "farthest" in dict(dropped)[0]
    assert drags.shape == (frames, 5, 4)
    assert np.allclose(drags[:, :, :2], drags[:1, :, :2]) and np.allclose(drags[0, :, 2:], drags[0, :, :2])
    padded = pm.pad_drags(torch.from_numpy(drags[:, :2]), 5)
    assert padded.shape == (frames, 5, 4) and bool((padded[:, 2:] == 0).all())
    text = pm.describe(kept, dropped, frames)
    assert "object 6 left out" in text and "drag 4: object 5" in text


def test_rigid_motion_ties_go_to_the_track_nearest_the_middle():
    starts = [(10, 10), (30, 30), (50, 50), (31, 29)]
    paths = np.array([[(x + 4 * t, y) for (x, y) in starts] for t in range(4)], float)
    drags, kept, _ = pm.choose_drags(track_set(paths, [0, 0, 0, 0], 64, 64))
    assert kept[0].track == 1


def test_bad_tracks_are_clear_errors():
    with pytest.raises(tracks_mod.TrackInputError, match="camera"):
        pm.choose_drags(track_set([[(1, 1)], [(5, 1)]], [-1], 10, 10))
    with pytest.raises(tracks_mod.TrackInputError, match="no object"):
        pm.choose_drags(track_set([[(1, 1)], [(1, 1)]], [0], 10, 10))
    with pytest.raises(tracks_mod.TrackInputError, match="image size"):
        pm.choose_drags(track_set([[(1, 1)], [(5, 1)]], [0], None, None))
