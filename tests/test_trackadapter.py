"""TrackAdapter (TrackGo) on SVD: the masked dual-branch attention against float64 references of the equations
in modules/trackadapter.py (trained and training-free), synthetic masking checks, the regions, the controls
in real sampling runs, the once-per-run work, the weight file and the errors."""
from __future__ import annotations

import math
import types

import numpy as np
import pytest
import torch

from motionkit_testing.pack import pack_module
from motionkit_testing.references import attention64, linear64, naive_avg_splat
from motionkit_testing.svd import Always, conditioning, make_attention, sample, transformer_blocks
from motionkit_testing.trackadapter import node_module, pack_modules, random_adapter, square_tracks, trainer_module

APPLY_ID = "MotionKitApplyTrackAdapter"
LOADER_ID = "MotionKitTrackAdapterLoader"


def node(name=APPLY_ID):
    import nodes
    return nodes.NODE_CLASS_MAPPINGS[name]


def options(b, t, c, h, w):
    return {"activations_shape": [b * t, c, h, w], "original_shape": [b * t, 8, h, w], "cond_or_uncond": [1, 0][:b]}


def track_set(tracks):
    return pack_modules("tracks").read_tracks(tracks)


def one_layer_adapter(attn, seed, feature_channels=6):
    """A one-layer adapter for ``attn``: W'_q, W'_k copied from the layer (as initialised), W_f and the encoder
    seeded random (as after training)."""
    ta = pack_modules("trackadapter")
    c = attn.to_q.in_features
    config = ta.AdapterConfig(layers=(ta.LayerSpec("layer", c, attn.heads),), encoder_channels=(3, 4, 5),
                              feature_channels=feature_channels)
    adapter = ta.TrackAdapter(config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in adapter.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p[0].numel() if p.ndim > 1 else 1))
        adapter.layers[0].to_q.weight.copy_(attn.to_q.weight)
        adapter.layers[0].to_k.weight.copy_(attn.to_k.weight)
    return adapter.eval().requires_grad_(False)


def forward_for(attn, run, lambda_bg, tau, strength, layer_index=0):
    mod = node_module()
    return mod.TrackAdapterForward(attn, types.MethodType(type(attn).forward, attn), run, layer_index, lambda_bg, tau,
                                   strength, Always())


# --- trained mode: float64 reference of equations 1-6 -------------------------------------------------

def trained_reference(x, attn, layer, f_tokens, b, h, w, lambda_bg, tau, strength):
    """Float64, from the equations: g = f W_f + b_f; q' k' from x + g; A, A'; D = max_j(A' - A);
    R = 1[D > tau]; o = R A'v + (1 - R) lambda A v; out = (1 - s) to_out(A v) + s to_out(o)."""
    t, c = x.shape[1], x.shape[2]
    heads = attn.heads
    d = c // heads
    g = linear64(layer.proj, f_tokens)                                              # (h*w, T, C)
    xg = x.double() + g.repeat(b, 1, 1)
    def maps(q, k):
        qh = q.reshape(-1, t, heads, d).permute(0, 2, 1, 3)
        kh = k.reshape(-1, t, heads, d).permute(0, 2, 1, 3)
        return torch.softmax(qh @ kh.transpose(-1, -2) / math.sqrt(d), -1)
    a = maps(linear64(attn.to_q, x), linear64(attn.to_k, x))
    a2 = maps(xg @ layer.to_q.weight.double().T, xg @ layer.to_k.weight.double().T)
    v = linear64(attn.to_v, x).reshape(-1, t, heads, d).permute(0, 2, 1, 3)
    diff = (a2 - a).max(-1).values
    r = (diff > tau).double().unsqueeze(-1)
    o = (r * (a2 @ v) + (1 - r) * lambda_bg * (a @ v)).permute(0, 2, 1, 3).reshape(-1, t, c)
    own = (a @ v).permute(0, 2, 1, 3).reshape(-1, t, c)
    return (1 - strength) * linear64(attn.to_out[0], own) + strength * linear64(attn.to_out[0], o), diff


@pytest.mark.parametrize("b,h,w,t,lambda_bg,strength", [(1, 3, 4, 4, 0.4, 1.0), (2, 2, 3, 5, 0.0, 1.0),
                                                        (2, 3, 3, 3, 1.0, 0.7), (2, 2, 2, 4, 0.4, 1.0)])
def test_trained_branch_matches_float64_reference(comfy, b, h, w, t, lambda_bg, strength):
    c, tau = 32, 0.08
    attn = make_attention(c, 2, seed=b * 10 + t)
    adapter = one_layer_adapter(attn, seed=t)
    run = node_module().TrackRun(track_set(square_tracks(t)), adapter)
    g = torch.Generator().manual_seed(100 + t)
    f_tokens = torch.randn(h * w, t, 6, generator=g)
    f_tokens[: h * w // 2] = 0           # no trajectory feature there: g = b_f only
    run.features = lambda latent, hh, ww, device, dtype: f_tokens.to(dtype)     # hand the layer its features
    run.check_video = lambda latent, frames: None
    x = torch.randn(b * h * w, t, c, generator=g)
    with torch.no_grad():
        got = forward_for(attn, run, lambda_bg, tau, strength)(x, transformer_options=options(b, t, c, h, w))
    ref, diff = trained_reference(x, attn, adapter.layers[0], f_tokens, b, h, w, lambda_bg, tau, strength)
    assert (diff - tau).abs().min() > 1e-4, "a D value lies at the threshold: pick another tau"
    assert 0 < int((diff > tau).sum()) < diff.numel(), "the region must be neither empty nor everything"
    rel = (got.double() - ref).norm() / ref.norm()
    assert rel < 1e-5, f"relative error {rel:.2e}"


# --- training-free mode: float64 reference ------------------------------------------------------------

def free_reference(x, attn, b, h, w, region, flow, lambda_bg, strength):
    """Float64: aug = Attn(x_t W_q, S W_k, S W_v), S = [h0, w1, h1, ...], w_t = splat_avg(h0, F_t);
    o = R aug + (1 - R) lambda A v; out = (1 - s) to_out(A v) + s to_out(o)."""
    t, c = x.shape[1], x.shape[2]
    xs = x.double().reshape(b, h, w, t, c)
    seqs = []
    for bi in range(b):
        frame0 = xs[bi, :, :, 0].permute(2, 0, 1).numpy()
        cols = [xs[bi, :, :, 0]]
        for ti in range(1, t):
            warped = torch.from_numpy(naive_avg_splat(frame0, flow[ti].double().numpy())).permute(1, 2, 0)
            cols += [warped, xs[bi, :, :, ti]]
        seqs.append(torch.stack(cols, 2).reshape(h * w, 2 * t - 1, c))
    seq = torch.cat(seqs)
    aug = attention64(linear64(attn.to_q, x), linear64(attn.to_k, seq), linear64(attn.to_v, seq), attn.heads)
    own = attention64(linear64(attn.to_q, x), linear64(attn.to_k, x), linear64(attn.to_v, x), attn.heads)
    r = region.repeat(b, 1).double().unsqueeze(-1)
    o = r * aug + (1 - r) * lambda_bg * own
    return (1 - strength) * linear64(attn.to_out[0], own) + strength * linear64(attn.to_out[0], o)


@pytest.mark.parametrize("b,h,w,t,lambda_bg,strength,size,box,shift", [
    (1, 4, 4, 4, 0.4, 1.0, 64, (12, 20, 32, 40), (12.0, 4.0)),
    (2, 3, 5, 3, 0.0, 1.0, (80, 48), (10, 10, 40, 34), (16.0, 0.0)),
    (2, 4, 4, 5, 1.0, 0.6, 64, (8, 8, 30, 30), (-6.0, 20.0)),
])
def test_training_free_branch_matches_float64_reference(comfy, b, h, w, t, lambda_bg, strength, size, box, shift):
    c, tau = 32, 0.3
    attn = make_attention(c, 2, seed=b + t)
    run = node_module().TrackRun(track_set(square_tracks(t, size=size, box=box, shift=shift)))
    g = torch.Generator().manual_seed(7 * t)
    x = torch.randn(b * h * w, t, c, generator=g)
    with torch.no_grad():
        got = forward_for(attn, run, lambda_bg, tau, strength, None)(x, transformer_options=options(b, t, c, h, w))
    region = run.region((h, w), h, w, tau, "cpu")
    flow = run.flow((h, w), h, w, "cpu")
    assert 0 < int(region.sum()) < region.numel() and flow.abs().max() > 0.5
    ref = free_reference(x, attn, b, h, w, region, flow, lambda_bg, strength)
    rel = (got.double() - ref).norm() / ref.norm()
    assert rel < 1e-5, f"relative error {rel:.2e}"


# --- synthetic masking checks ---------------------------------------------------------------------------

def test_masking_inside_and_outside_a_known_region(comfy, monkeypatch):
    """Hand-built features that exist only on a known set of tokens: there the adapter's map is sharply
    different, so R = 1 and the original branch gets weight 0; everywhere else g = 0 exactly, so A' = A,
    R = 0, and the original branch keeps exactly lambda_bg times its weights."""
    b, h, w, t, c, lam = 2, 3, 3, 4, 16, 0.4
    attn = make_attention(c, 2, seed=5)
    ta = pack_modules("trackadapter")
    config = ta.AdapterConfig(layers=(ta.LayerSpec("layer", c, 2),), encoder_channels=(3, 3, 3), feature_channels=c)
    adapter = ta.TrackAdapter.initialised_from(config, [(attn.to_q.weight, attn.to_k.weight)]).requires_grad_(False)
    with torch.no_grad():
        adapter.layers[0].proj.weight.copy_(torch.eye(c))      # g = f
    moving = torch.zeros(h * w, dtype=torch.bool)
    moving[[1, 4, 5]] = True                                   # the known region (spatial positions)
    gen = torch.Generator().manual_seed(0)
    f_tokens = torch.zeros(h * w, t, c)
    f_tokens[moving] = 30.0 * torch.randn(int(moving.sum()), t, c, generator=gen)   # a different feature per frame
    run = node_module().TrackRun(track_set(square_tracks(t)), adapter)
    run.features = lambda latent, hh, ww, device, dtype: f_tokens
    run.check_video = lambda latent, frames: None
    seen = {}
    mod = node_module()
    original_mix = mod.mixed_weights

    def spy(a, a2, region, lambda_bg):
        seen.update(A=a, A2=a2, R=region, W=original_mix(a, a2, region, lambda_bg))
        return seen["W"]
    monkeypatch.setattr(mod, "mixed_weights", spy)
    x = 1e-3 * torch.randn(b * h * w, t, c, generator=gen)    # near-uniform original attention
    with torch.no_grad():
        out = forward_for(attn, run, lam, 0.3, 1.0)(x, transformer_options=options(b, t, c, h, w))
    inside = moving.repeat(b)
    region = seen["R"]                                        # (N, heads, T)
    assert region[inside].all() and not region[~inside].any()
    assert torch.equal(seen["A2"][~inside], seen["A"][~inside])           # g = 0 there: the maps are identical
    assert torch.equal(seen["W"][inside], seen["A2"][inside])             # original branch: weight 0 inside
    assert torch.equal(seen["W"][~inside], lam * seen["A"][~inside])      # lambda_bg times its weight outside
    own = attention64(linear64(attn.to_q, x), linear64(attn.to_k, x), linear64(attn.to_v, x), attn.heads)
    ref_outside = linear64(attn.to_out[0], lam * own)[~inside]
    assert (out[~inside].double() - ref_outside).abs().max() < 1e-6


def test_zero_initialised_adapter_is_the_original_layer(comfy):
    """W_f = 0: g = 0, A' == A bit for bit, R empty; lambda_bg = 1 returns the layer's own forward exactly,
    lambda_bg < 1 damps it (o = lambda A v)."""
    b, h, w, t, c = 2, 3, 3, 4, 32
    attn = make_attention(c, 2, seed=9)
    ta = pack_modules("trackadapter")
    config = ta.AdapterConfig(layers=(ta.LayerSpec("layer", c, 2),), encoder_channels=(3, 4, 5), feature_channels=6)
    adapter = ta.TrackAdapter.initialised_from(config, [(attn.to_q.weight, attn.to_k.weight)], seed=3)
    run = node_module().TrackRun(track_set(square_tracks(t, size=24)), adapter.eval().requires_grad_(False))
    x = torch.randn(b * h * w, t, c, generator=torch.Generator().manual_seed(1))
    opts = options(b, t, c, h, w)
    with torch.no_grad():
        assert torch.equal(forward_for(attn, run, 1.0, 0.0, 1.0)(x, transformer_options=opts),
                           attn(x, transformer_options=opts))
        damped = forward_for(attn, run, 0.4, 0.0, 1.0)(x, transformer_options=opts)
        # another node's attn1_patch hands self-attention its input as context and value: same result
        shared = forward_for(attn, run, 0.4, 0.0, 1.0)(x, context=x, value=x, transformer_options=opts)
        assert torch.equal(shared, damped)
    own = attention64(linear64(attn.to_q, x), linear64(attn.to_k, x), linear64(attn.to_v, x), attn.heads)
    assert (damped.double() - linear64(attn.to_out[0], 0.4 * own)).abs().max() < 1e-6


# --- the regions and the encoder (modules) ---------------------------------------------------------------

def _triangle_distance(p, tri):
    """Distance from points p [M, 2] to a filled triangle (brute-force reference; degenerate allowed)."""
    a, b, c = tri
    def seg(a, b):
        d = b - a
        l2 = float(d @ d)
        u = np.zeros(len(p)) if l2 == 0 else np.clip(((p - a) @ d) / l2, 0, 1)
        return np.linalg.norm(p - (a + u[:, None] * d), axis=1)
    dist = np.minimum(np.minimum(seg(a, b), seg(b, c)), seg(c, a))
    det = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
    if abs(det) > 1e-12:
        l1 = ((b[0] - p[:, 0]) * (c[1] - p[:, 1]) - (b[1] - p[:, 1]) * (c[0] - p[:, 0])) / det
        l2 = ((c[0] - p[:, 0]) * (a[1] - p[:, 1]) - (c[1] - p[:, 1]) * (a[0] - p[:, 0])) / det
        inside = (l1 >= 0) & (l2 >= 0) & (1 - l1 - l2 >= 0)
        dist[inside] = 0.0
    return dist


@pytest.mark.parametrize("seed,n,radius", [(0, 1, 3.0), (1, 2, 2.0), (2, 6, 2.5), (3, 9, 1.2)])
def test_hull_region_is_the_widened_convex_hull(seed, n, radius):
    """Carathéodory: a point of the hull lies in a triangle of three of the points, so the distance to the
    hull is the minimum over all triples."""
    ta = pack_module("trackadapter")
    rng = np.random.default_rng(seed)
    pts = rng.uniform(4, 28, size=(n, 2))
    got = ta.hull_region(pts, radius, 32, 30)
    ys, xs = np.mgrid[0:32, 0:30] + 0.5
    centres = np.stack([xs.ravel(), ys.ravel()], 1)
    triples = [(pts[i], pts[j], pts[k]) for i in range(n) for j in range(n) for k in range(n)]
    dist = np.min([_triangle_distance(centres, tri) for tri in triples], axis=0).reshape(32, 30)
    clear = np.abs(dist - radius) > 1e-6
    assert np.array_equal(got[clear], (dist <= radius)[clear]) and got.any()


def test_regions_move_along_the_tracks_and_tokens_average_area():
    ta = pack_module("trackadapter")
    tracks = pack_module("tracks").read_tracks(square_tracks(4, size=64, box=(12, 20, 32, 40), shift=(12.0, 0.0)))
    geo = ta.training_free_geometry(tracks, 64, 64)
    region0 = geo.regions[0]
    assert torch.equal(geo.cover[0], region0)
    for t in range(4):   # 4 px per frame, an integer shift: the region moves exactly
        assert torch.equal(geo.cover[t, :, 4 * t:], region0[:, : 64 - 4 * t])
        inside = region0.bool()
        assert torch.allclose(geo.flow[t, 0][inside], torch.full((int(inside.sum()),), 4.0 * t), atol=1e-4)
        assert geo.flow[t][:, ~geo.regions.sum(0).bool()].abs().max() < 1e-6      # still outside the object
    box = torch.zeros(64, 64)
    box[20:40, 12:32] = 1
    assert (region0 != box).sum() <= 2 * 80, "the region estimated from the tracks is about the object's box"
    tokens = ta.region_tokens(geo.cover, 8, 8, 0.5)
    manual = geo.cover.reshape(4, 8, 8, 8, 8).mean((2, 4)) > 0.5
    assert torch.equal(tokens, manual.reshape(4, 64).t())
    camera = ta.training_free_geometry(pack_module("tracks").read_tracks(square_tracks(4, camera=True)), 32, 32)
    assert torch.equal(camera.cover, torch.ones(4, 32, 32)) and camera.flow[3, 0].abs().max() > 5


def test_encoder_is_six_convs_two_poolings_and_a_linear(comfy):
    ta = pack_module("trackadapter")
    enc = ta.TrackEncoder((4, 8, 16), 12)
    convs = [m for m in enc.modules() if isinstance(m, torch.nn.Conv2d)]
    linears = [m for m in enc.modules() if isinstance(m, torch.nn.Linear)]
    assert len(convs) == 6 and len(linears) == 1 and linears[0].out_features == 12
    out = enc(torch.rand(3, 3, 40, 24))
    assert out.shape == (3, 12, 10, 6)
    feats = ta.layer_features(out, 5, 3)
    assert feats.shape == (15, 3, 12)
    torch.testing.assert_close(feats[0, 1], out[1, :, :2, :2].mean((1, 2)))     # area average, row-major tokens


# --- controls in real sampling runs, once-per-run work, clone isolation ---------------------------------

@pytest.fixture(scope="module")
def svd(comfy, tiny_ckpt):
    model, pos, neg, latent = conditioning(tiny_ckpt, 4, 64)
    return types.SimpleNamespace(model=model, pos=pos, neg=neg, latent=latent,
                                 base=sample(model, pos, neg, latent, steps=2))


def patch(model, tracks=None, lambda_bg=0.4, tau=0.1, strength=1.0, start=0.0, end=1.0, adapter=None):
    tracks = square_tracks(4) if tracks is None else tracks
    return node()().patch(model, tracks, lambda_bg, tau, strength, start, end, track_adapter=adapter)[0]


def run_sample(svd, model):
    return sample(model, svd.pos, svd.neg, svd.latent, steps=2)


def test_training_free_controls_in_sampling(svd):
    free = run_sample(svd, patch(svd.model, lambda_bg=1.0))              # region non-empty: the video changes
    assert (free - svd.base).abs().max() > 1e-3
    assert torch.equal(run_sample(svd, patch(svd.model, lambda_bg=1.0, tau=1.0)), svd.base)   # empty region
    assert torch.equal(run_sample(svd, patch(svd.model, strength=0.0)), svd.base)
    assert torch.equal(run_sample(svd, patch(svd.model, start=0.5, end=0.6)), svd.base)   # between the 2 steps
    assert torch.equal(run_sample(svd, svd.model), svd.base)          # the input MODEL is unaffected


def test_trained_controls_in_sampling(svd):
    trainer = trainer_module()
    fresh = trainer.new_adapter(svd.model, trainer.TrainSettings(encoder_channels=(4, 8, 8), feature_channels=8))
    fresh = fresh.eval().requires_grad_(False)
    assert torch.equal(run_sample(svd, patch(svd.model, lambda_bg=1.0, adapter=fresh)), svd.base)
    damped = run_sample(svd, patch(svd.model, lambda_bg=0.4, adapter=fresh))    # lambda_bg < 1 damps by design
    assert (damped - svd.base).abs().max() > 1e-3
    trained = run_sample(svd, patch(svd.model, lambda_bg=1.0, adapter=random_adapter(svd.model)))
    assert (trained - svd.base).abs().max() > 1e-3


def test_only_temporal_self_attention_is_patched_and_nodes_do_not_stack(svd):
    patched = patch(svd.model)
    unet = svd.model.get_model_object("diffusion_model")
    keys = set(patched.object_patches)
    assert len(keys) == 7 and all(".time_stack." in k and k.endswith(".attn1.forward") for k in keys)
    temporal = {id(m.attn1) for m in transformer_blocks(unet, "time_stack")}
    assert {id(patched.object_patches[k].attn) for k in keys} == temporal
    again = patch(patched, lambda_bg=0.9)
    mod = node_module()
    assert all(not isinstance(again.object_patches[k].inner, mod.TrackAdapterForward) for k in keys)
    assert len(again.wrappers["outer_sample"]["motionkit_trackadapter"]) == 1
    assert svd.model.object_patches == {} and "motionkit_trackadapter" not in svd.model.wrappers.get("outer_sample", {})


def test_encoder_and_geometry_run_once_per_sampling_run(svd, monkeypatch):
    mod = node_module()
    ta = pack_modules("trackadapter")
    calls = {"encoder": 0, "geometry": 0, "attention": 0}
    encoder_forward = ta.TrackEncoder.forward
    geometry = mod.training_free_geometry
    layer_forward = mod.TrackAdapterForward.__call__

    def count(name, fn):
        def wrapped(*a, **k):
            calls[name] += 1
            return fn(*a, **k)
        return wrapped
    monkeypatch.setattr(ta.TrackEncoder, "forward", count("encoder", encoder_forward))
    monkeypatch.setattr(mod, "training_free_geometry", count("geometry", geometry))
    monkeypatch.setattr(mod.TrackAdapterForward, "__call__", count("attention", layer_forward))
    trained = patch(svd.model, adapter=random_adapter(svd.model))
    run_sample(svd, trained)
    assert calls == {"encoder": 1, "geometry": 0, "attention": 14}        # 2 steps x 7 temporal layers
    run_sample(svd, trained)
    assert calls["encoder"] == 2                                          # recomputed per run, not kept
    run = trained.object_patches[next(iter(trained.object_patches))].run
    assert run._cache == {}                                               # freed when sampling ended
    free = patch(svd.model)
    run_sample(svd, free)
    assert calls["geometry"] == 1 and calls["attention"] == 42


# --- errors -----------------------------------------------------------------------------------------------

def test_tracks_that_do_not_fit_the_video_are_clear_errors(svd):
    with pytest.raises(ValueError, match=r"TrackAdapter \(TrackGo\).*input 'tracks'.*6 frames but the video has 4"):
        run_sample(svd, patch(svd.model, tracks=square_tracks(6)))
    wide = square_tracks(4, size=(128, 64), box=(12, 20, 32, 40))
    with pytest.raises(ValueError, match=r"input 'tracks'.*128x64 image but the video's latent is 8x8.*aspect"):
        run_sample(svd, patch(svd.model, tracks=wide, adapter=random_adapter(svd.model)))
    with pytest.raises(ValueError, match=r"input 'tracks'.*the TRACKS are empty"):
        patch(svd.model, tracks={"track_path": torch.zeros(4, 0, 2),
                                 "track_visibility": torch.zeros(4, 0, dtype=torch.bool)})
    with pytest.raises(ValueError, match=r"input 'tracks'.*expected a TRACKS dict"):
        patch(svd.model, tracks=torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"input 'lambda_bg'.*outside \[0.0, 1.0\]"):
        patch(svd.model, lambda_bg=1.5)
    import comfy.model_patcher
    holder = torch.nn.Module()
    holder.diffusion_model = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match=r"input 'model'.*found no temporal attention"):
        patch(comfy.model_patcher.ModelPatcher(holder, torch.device("cpu"), torch.device("cpu")))


def test_an_adapter_for_another_model_is_a_clear_error(svd):
    ta = pack_modules("trackadapter")
    specs = node_module().layer_specs(svd.model)
    wider = ta.AdapterConfig(layers=tuple(ta.LayerSpec(s.path, 2 * s.channels, s.heads) for s in specs),
                             encoder_channels=(4, 8, 8), feature_channels=8)
    with pytest.raises(ValueError, match=r"input 'track_adapter'.*widths \[64, 128, 128, 128, 128, 64, 64\]; this "
                                         r"MODEL has 7 with widths \[32, 64, 64, 64, 64, 32, 32\]"):
        patch(svd.model, adapter=ta.TrackAdapter(wider))
    with pytest.raises(ValueError, match=r"input 'track_adapter'.*expected a TrackAdapter"):
        patch(svd.model, adapter={"weights": 1})


def _write(path, tensors, metadata):
    from safetensors.torch import save_file
    save_file(tensors, str(path), metadata=metadata)
    return path.name


def test_loader_reads_its_format_and_refuses_other_files(svd, base_dir):
    ta = pack_modules("trackadapter")
    folder = base_dir / "models" / "trackadapter"
    folder.mkdir(parents=True, exist_ok=True)
    adapter = random_adapter(svd.model, seed=4)
    ta.save_adapter(adapter, str(folder / "ok.safetensors"))
    loader = node(LOADER_ID)()
    (loaded,) = loader.load("ok.safetensors")
    assert loaded.config == adapter.config
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), adapter.state_dict().values()))
    assert not any(p.requires_grad for p in loaded.parameters())

    good = {k: v.contiguous() for k, v in adapter.state_dict().items()}
    meta = {"format": ta.FORMAT, "format_version": "1", "config": adapter.config.to_json()}
    cases = {
        _write(folder / "v2.safetensors", good, {**meta, "format_version": "2"}):
            r"format version '2'.*update MotionKit",
        _write(folder / "lora.safetensors", good, {"format": "lora"}): r"format 'lora'.*not a MotionKit TrackAdapter",
        _write(folder / "missing.safetensors", {k: v for k, v in good.items() if "layers.3." not in k}, meta):
            r"4 missing \(e.g. \['layers.3.proj.bias'",
        _write(folder / "shapes.safetensors", {**good, "encoder.fc.weight": torch.zeros(8, 3)}, meta):
            r"tensor shapes differ.*encoder.fc.weight \[8, 3\]",
    }
    (folder / "junk.safetensors").write_bytes(b"not a safetensors file at all")
    cases["junk.safetensors"] = r"cannot read it as safetensors"
    for name, message in cases.items():
        with pytest.raises(ValueError, match=rf"Load TrackAdapter.*input 'adapter_name': '{name}': .*{message}"):
            loader.load(name)
    with pytest.raises(ValueError, match=r"input 'adapter_name'.*not in models/trackadapter"):
        loader.load("absent.safetensors")


# --- both modes through ComfyUI's real executor ------------------------------------------------------------

def trackadapter_prompt(ckpt, prefix, adapter_file=None, lambda_bg=0.4, strength=1.0, with_unpatched_branch=False):
    """Masks (core nodes) -> Arrows to Trajectories -> TrackAdapter (TrackGo) [<- Load TrackAdapter] -> KSampler."""
    from motionkit_testing.svd import IMAGE
    from motionkit_testing.trackadapter import arrows_json
    from motionkit_testing.workflows import svd_prompt, with_square_object
    p = with_square_object(svd_prompt(ckpt, IMAGE, frames=4, prefix=prefix), arrows_json())
    p.update({
        "ta": {"class_type": APPLY_ID, "inputs": {
            "model": ["guid", 0], "tracks": ["tracks", 0], "lambda_bg": lambda_bg, "tau": 0.1, "strength": strength,
            "start_percent": 0.0, "end_percent": 1.0}},
    })
    if adapter_file is not None:
        p["load"] = {"class_type": LOADER_ID, "inputs": {"adapter_name": adapter_file}}
        p["ta"]["inputs"]["track_adapter"] = ["load", 0]
    p["ks"]["inputs"]["model"] = ["ta", 0]
    if with_unpatched_branch:
        p["ks2"] = {**p["ks"], "inputs": {**p["ks"]["inputs"], "model": ["guid", 0]}}
        p["save2"] = {"class_type": "SaveLatent",
                      "inputs": {"samples": ["ks2", 0], "filename_prefix": f"latents/{prefix}_b"}}
    return p


@pytest.fixture(scope="module")
def executor_baseline(comfy, tiny_ckpt, base_dir):
    from motionkit_testing.svd import IMAGE
    from motionkit_testing.workflows import saved_latent, svd_prompt
    return saved_latent(base_dir, comfy.run(svd_prompt(tiny_ckpt, IMAGE, prefix="ta_base")))


def test_both_modes_run_through_the_executor_with_clone_isolation(comfy, tiny_ckpt, base_dir, executor_baseline, svd):
    from motionkit_testing.workflows import saved_latent
    ta = pack_modules("trackadapter")
    folder = base_dir / "models" / "trackadapter"
    folder.mkdir(parents=True, exist_ok=True)
    ta.save_adapter(random_adapter(svd.model, seed=11), str(folder / "e2e_random.safetensors"))
    trainer = trainer_module()
    fresh = trainer.new_adapter(svd.model, trainer.TrainSettings(encoder_channels=(4, 8, 8), feature_channels=8))
    ta.save_adapter(fresh, str(folder / "e2e_zero_init.safetensors"))

    for adapter_file in (None, "e2e_random.safetensors"):
        prefix = "ta_free" if adapter_file is None else "ta_trained"
        hist = comfy.run(trackadapter_prompt(tiny_ckpt, prefix, adapter_file, with_unpatched_branch=True))
        assert (saved_latent(base_dir, hist) - executor_baseline).abs().max() > 1e-3, prefix
        # the other branch of the same graph samples the unpatched model
        assert torch.equal(saved_latent(base_dir, hist, "save2"), executor_baseline), prefix
    # controls through the executor: strength 0, and zero-initialised adapter weights at lambda_bg = 1
    zero = comfy.run(trackadapter_prompt(tiny_ckpt, "ta_s0", strength=0.0))
    assert torch.equal(saved_latent(base_dir, zero), executor_baseline)
    noop = comfy.run(trackadapter_prompt(tiny_ckpt, "ta_zero_init", "e2e_zero_init.safetensors", lambda_bg=1.0))
    assert torch.equal(saved_latent(base_dir, noop), executor_baseline)


def test_the_training_free_example_workflow():
    """The example (run over HTTP on the tiny models by tests/test_example_workflows.py) is the training-free
    mode: the TrackAdapter node's track_adapter input is left unconnected, its tracks come from Arrows to
    Trajectories, and it sits between the SVD model and the sampler."""
    import json
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "example_workflows" / "svd_trackadapter_training_free.json"
    wf = json.loads(path.read_text())
    by_id = {n["id"]: n for n in wf["nodes"]}
    links = {link[0]: link for link in wf["links"]}
    (ta,) = [n for n in wf["nodes"] if n["type"] == APPLY_ID]
    slots = {i["name"]: i for i in ta["inputs"]}
    assert slots["track_adapter"]["link"] is None and LOADER_ID not in {n["type"] for n in wf["nodes"]}
    assert by_id[links[slots["tracks"]["link"]][1]]["type"] == "MotionKitArrowsToTracks"
    assert by_id[links[slots["model"]["link"]][1]]["type"] == "VideoLinearCFGGuidance"
    sampler = by_id[links[ta["outputs"][0]["links"][0]][3]]
    assert sampler["type"] == "KSampler"
    assert ta["widgets_values"] == [0.4, 0.1, 1.0, 0.0, 1.0]      # lambda_bg, tau, strength, start, end


def test_public_inputs_and_names(comfy):
    import nodes
    spec = node().INPUT_TYPES()
    assert list(spec["required"]) == ["model", "tracks", "lambda_bg", "tau", "strength", "start_percent", "end_percent"]
    assert list(spec["optional"]) == ["track_adapter", "masks"]   # appended inputs only, never reordered
    assert spec["optional"]["track_adapter"][0] == "MOTIONKIT_TRACKADAPTER" and spec["optional"]["masks"][0] == "MASK"
    assert spec["required"]["tracks"][0] == "TRACKS"
    lam = spec["required"]["lambda_bg"][1]
    assert (lam["default"], lam["min"], lam["max"]) == (0.4, 0.0, 1.0)
    assert nodes.NODE_DISPLAY_NAME_MAPPINGS[APPLY_ID] == "TrackAdapter (TrackGo)"
    assert node().RETURN_TYPES == ("MODEL",) and node(LOADER_ID).RETURN_TYPES == ("MOTIONKIT_TRACKADAPTER",)
    assert "WITHOUT track_adapter" in node().DESCRIPTION and "WITH track_adapter" in node().DESCRIPTION
    import folder_paths
    assert folder_paths.get_folder_paths("trackadapter")[0].endswith("trackadapter")


def test_training_free_masks_input_gives_the_exact_object_region(svd):
    """With the objects' masks connected, the frame-0 moving region is the mask itself (not the estimate from
    the tracks), carried along the field; bad masks are clear errors."""
    yy, xx = torch.meshgrid(torch.arange(64) + 0.5, torch.arange(64) + 0.5, indexing="ij")
    masks = (((xx - 22) ** 2 + (yy - 30) ** 2) < 6 ** 2).float()[None]   # a small disc inside square_tracks' box
    patched = node()().patch(svd.model, square_tracks(4), 0.4, 0.1, 1.0, 0.0, 1.0, masks=masks)[0]
    run = next(iter(patched.object_patches.values())).run
    latent = tuple(svd.latent["samples"].shape[-2:])
    geometry = run.geometry(latent)
    raster = tuple(geometry.cover.shape[-2:])
    expected = torch.nn.functional.interpolate(masks[:, None], size=raster, mode="area")[0, 0].gt(0.5).float()
    assert torch.equal(geometry.cover[0], expected)
    estimated = patch(svd.model).object_patches
    assert not torch.equal(next(iter(estimated.values())).run.geometry(latent).cover[0], expected)
    moved = run_sample(svd, patched)
    assert (moved - svd.base).abs().max() > 1e-3
    with pytest.raises(ValueError, match=r"input 'masks'.*object 0 but 0 masks"):
        node()().patch(svd.model, square_tracks(4), 0.4, 0.1, 1.0, 0.0, 1.0, masks=torch.zeros(0, 64, 64))
    with pytest.raises(ValueError, match=r"input 'masks'.*128x64"):
        node()().patch(svd.model, square_tracks(4), 0.4, 0.1, 1.0, 0.0, 1.0, masks=torch.zeros(1, 64, 128))
