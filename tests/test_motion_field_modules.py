"""Forward splatting, interleaving and the training-free field fit (modules/, no ComfyUI needed)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from motionkit_testing.pack import pack_module
from motionkit_testing.references import naive_avg_splat

mf = pack_module("motion_field")
fit = pack_module("field_fit")


def translation(n, h, w, dx, dy):
    flow = torch.zeros(n, 2, h, w)
    flow[:, 0], flow[:, 1] = dx, dy
    return flow


def test_integer_translation_moves_a_pattern_exactly():
    """Exactly up to softsplat's divisor: a pixel hit with weight 1 holds value / (1 + 1e-7)."""
    x = torch.randn(2, 3, 9, 11, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out = mf.forward_splat(x, translation(2, 9, 11, 3, -2).double())
    torch.testing.assert_close(out[:, :, 0:7, 3:11], x[:, :, 2:9, 0:8] / (1 + 1e-7), rtol=1e-15, atol=0)
    assert out[:, :, 7:, :].abs().sum() == 0 and out[:, :, :, :3].abs().sum() == 0  # holes are zero
    x32 = x.float()
    torch.testing.assert_close(mf.forward_splat(x32, translation(2, 9, 11, 3, -2))[:, :, 0:7, 3:11],
                               x32[:, :, 2:9, 0:8], rtol=3e-7, atol=0)


def test_zero_field_is_identity():
    x = torch.randn(1, 5, 6, 7, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(mf.forward_splat(x, torch.zeros(1, 2, 6, 7)), x, rtol=3e-7, atol=0)


def test_avg_splat_divides_by_weight_plus_1e_7_as_softsplat():
    """The official softsplat "avg" divisor is weight + 1e-7, which matters where little weight lands: a
    source at x = 0 moved by 0.999 px leaves weight 0.001 on pixel 0 and 0.999 on pixel 1."""
    v = 2.5
    img = torch.tensor([[[[v, 0.0, 0.0]]]], dtype=torch.float64)
    flow = torch.zeros(1, 2, 1, 3, dtype=torch.float64)
    flow[0, 0, 0, 0], flow[0, 0, 0, 1:] = 0.999, 10.0       # pixels 1 and 2 leave the image
    out = mf.forward_splat(img, flow)[0, 0, 0]
    w0, w1 = 1 - 0.999, 0.999
    expected = torch.tensor([v * w0 / (w0 + 1e-7), v * w1 / (w1 + 1e-7), 0.0], dtype=torch.float64)
    torch.testing.assert_close(out, expected, rtol=1e-13, atol=0)
    # the same against the float64 loop, on random fractional flows
    g = torch.Generator().manual_seed(7)
    img, flow = torch.randn(2, 4, 7, 9, generator=g, dtype=torch.float64), 3.0 * torch.randn(2, 2, 7, 9, generator=g, dtype=torch.float64)
    got = mf.forward_splat(img, flow)
    for i in range(2):
        ref = naive_avg_splat(img[i].numpy(), flow[i].numpy())
        np.testing.assert_allclose(got[i].numpy(), ref, rtol=1e-12, atol=1e-14)


def test_splatting_conserves_mass_without_collisions():
    x = torch.rand(1, 2, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    flow = translation(1, 12, 12, 0.0, 0.0).double()
    flow[:, 0, 2:10, 2:10], flow[:, 1, 2:10, 2:10] = 0.37, -0.61   # fractional, stays inside the image
    x[:, :, :2], x[:, :, 10:], x[:, :, :, :2], x[:, :, :, 10:] = 0, 0, 0, 0
    out = mf.forward_splat(x, flow, mode="sum")
    torch.testing.assert_close(out.sum(dim=(2, 3)), x.sum(dim=(2, 3)), rtol=1e-12, atol=1e-12)


def test_avg_splat_matches_a_float64_loop():
    g = torch.Generator().manual_seed(3)
    img, flow = torch.randn(1, 3, 5, 6, generator=g), 2.5 * torch.randn(1, 2, 5, 6, generator=g)
    ref = naive_avg_splat(img[0].double().numpy(), flow[0].double().numpy())
    np.testing.assert_allclose(mf.forward_splat(img, flow)[0].double().numpy(), ref, rtol=1e-5, atol=1e-5)


def test_interleave_layout():
    b, h, w, t, c = 2, 3, 4, 5, 6
    tokens = torch.randn(b * h * w, t, c, generator=torch.Generator().manual_seed(4))
    seq = mf.interleave_with_warped(tokens, h, w, torch.zeros(t, 2, h, w))
    assert seq.shape == (b * h * w, 2 * t - 1, c)
    assert torch.equal(seq[:, 0::2], tokens)
    # zero flow: w_t = h_0 (up to softsplat's divisor 1 + 1e-7)
    torch.testing.assert_close(seq[:, 1::2], tokens[:, :1].expand(-1, t - 1, -1), rtol=3e-7, atol=0)
    shifted = mf.interleave_with_warped(tokens, h, w, translation(t, h, w, 1, 0))
    grid = tokens[:, 0].reshape(b, h, w, c)
    warped = shifted[:, 1].reshape(b, h, w, c)
    torch.testing.assert_close(warped[:, :, 1:], grid[:, :, :-1], rtol=3e-7, atol=0)
    assert warped[:, :, 0].abs().sum() == 0


def test_resize_flow_rescales_vectors():
    flow = translation(2, 8, 16, 4.0, 2.0)
    small = mf.resize_flow(flow, 4, 8)
    torch.testing.assert_close(small[:, 0], torch.full((2, 4, 8), 2.0))
    torch.testing.assert_close(small[:, 1], torch.full((2, 4, 8), 1.0))


# --- training-free field from tracks ----------------------------------------------------------------

def box_mask(h, w, y0, y1, x0, x1):
    m = torch.zeros(h, w)
    m[y0:y1, x0:x1] = 1
    return m


def tracks_for(affines, starts):
    """Track paths [T, N, 2] of points moved by one 2x3 affine per frame."""
    homog = np.hstack([starts, np.ones((len(starts), 1))])
    return np.stack([homog @ a.T for a in affines])


@pytest.mark.parametrize("kind", ["translation", "affine"])
def test_field_reproduces_object_motion_exactly_inside_and_zero_outside(kind):
    h, w, frames = 40, 48, 4
    mask = box_mask(h, w, 10, 30, 12, 36)
    starts = np.array([[14.0, 12.0], [30.0, 13.0], [20.0, 27.0], [33.0, 25.0]])
    ident = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    if kind == "translation":
        affines = [ident + np.array([[0, 0, 2.0 * t], [0, 0, -1.5 * t]]) for t in range(frames)]
    else:
        affines = [ident + t * np.array([[0.05, -0.1, 1.0], [0.08, -0.04, 2.0]]) for t in range(frames)]
    path = tracks_for(affines, starts)
    vis = np.ones(path.shape[:2], bool)
    flow, valid = fit.field_from_tracks(path, vis, np.zeros(4, np.int64), mask[None], softness=4.0)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5   # pixel centres, as in TRACKS
    for t in range(frames):
        a = affines[t]
        exp_dx = a[0, 0] * xs + a[0, 1] * ys + a[0, 2] - xs
        exp_dy = a[1, 0] * xs + a[1, 1] * ys + a[1, 2] - ys
        inside = mask.numpy() > 0
        np.testing.assert_allclose(flow[t, 0].numpy()[inside], exp_dx[inside], atol=1e-4)
        np.testing.assert_allclose(flow[t, 1].numpy()[inside], exp_dy[inside], atol=1e-4)
        assert flow[t, :, ~mask.bool()].abs().max() == 0
    assert flow[0].abs().max() == 0
    assert torch.equal(valid[1, 0], mask)


def test_few_tracks_fall_back_to_translation_and_camera_moves_the_background():
    h, w = 20, 20
    mask = box_mask(h, w, 5, 15, 5, 15)
    path = np.array([[[8.0, 8.0], [1.0, 1.0], [18.0, 1.0], [1.0, 18.0]],
                     [[11.0, 6.0], [2.0, 1.0], [19.0, 1.0], [2.0, 18.0]]])
    ids = np.array([0, fit.CAMERA, fit.CAMERA, fit.CAMERA])
    flow, valid = fit.field_from_tracks(path, np.ones((2, 4), bool), ids, mask[None], softness=0.0)
    assert torch.allclose(flow[1, 0][mask.bool()], torch.tensor(3.0)) and torch.allclose(flow[1, 1][mask.bool()], torch.tensor(-2.0))
    outside = ~mask.bool()
    assert torch.allclose(flow[1, 0][outside], torch.tensor(1.0), atol=1e-5)
    assert torch.allclose(flow[1, 1][outside], torch.tensor(0.0), atol=1e-5)
    assert valid.min() == 1


def test_unlabelled_tracks_belong_to_the_mask_holding_their_start():
    masks = torch.stack([box_mask(10, 10, 0, 5, 0, 5), box_mask(10, 10, 5, 10, 5, 10)])
    path = np.array([[[1.5, 1.5], [7.5, 8.5], [9.5, 1.5], [4.99, 4.99], [5.0, 5.0]]] * 2)
    assert fit.assign_objects(path, masks, None).tolist() == [0, 1, fit.CAMERA, 0, 1]


def test_softmax_splatting_puts_the_faster_source_in_front():
    x = torch.zeros(1, 1, 1, 4)
    x[0, 0, 0, 0], x[0, 0, 0, 2] = 1.0, 5.0
    flow = torch.zeros(1, 2, 1, 4)
    flow[0, 0, 0, 0] = 2.0                               # pixel 0 moves onto pixel 2, which stays
    plain = mf.forward_splat(x, flow)
    assert abs(float(plain[0, 0, 0, 2]) - 6.0 / (2 + 1e-7)) < 1e-6   # "avg": the collision is averaged
    metric = 20.0 * flow.norm(dim=1, keepdim=True) / 2.0
    front = mf.forward_splat(x, flow, metric=metric)
    assert abs(float(front[0, 0, 0, 2]) - 1.0) < 1e-6    # the moving source wins
