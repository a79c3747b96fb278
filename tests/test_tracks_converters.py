"""The trajectory toolkit's converters on hand-computed cases, and each output's layout against the
official code's construction as ../shared/research/papers.md describes it (TrackGo point-trajectory maps,
Puppet-Master's drag tensor as `_convert_drag_to_concatting_image` consumes it, Motion-I2V's sparse flow
and mask). Also TRACKS in the core / KJNodes layouts, and the coordinate-string export."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from motionkit_testing.pack import pack_module

tracks_mod = pack_module("tracks")
drawing = pack_module("track_drawing")
conv = pack_module("track_converters")
TrackSet, TrackInputError = tracks_mod.TrackSet, tracks_mod.TrackInputError


def track_set(path, objects, width, height, visible=None):
    path = np.asarray(path, dtype=np.float64)
    vis = np.ones(path.shape[:2], bool) if visible is None else np.asarray(visible)
    return TrackSet(path, vis, np.asarray(objects, dtype=np.int64), width, height)


def rgb(obj):
    return np.array(drawing.CAMERA_COLOR if obj == -1 else drawing.PALETTE[obj], np.float32) / 255


# --- TrackGo point-trajectory maps -------------------------------------------------------------------

def test_track_map_draws_each_track_from_its_start_to_its_frame_position():
    # one track moving right along row 2 through pixel centres, 1 px wide
    ts = track_set([[[2.5, 2.5]], [[4.5, 2.5]], [[6.5, 2.5]]], [0], 10, 6)
    maps = drawing.track_maps(ts, line_width=1)
    assert maps.shape == (3, 6, 10, 3) and maps.dtype == np.float32
    for t, last_col in enumerate((2, 4, 6)):
        expected = np.zeros((6, 10, 3), np.float32)
        expected[2, 2:last_col + 1] = rgb(0)
        assert np.array_equal(maps[t], expected), t


def test_track_map_colours_width_and_trail():
    # object 0 bends (the trail follows the path, not the chord), object 1 is still, one camera track
    path = np.array([
        [[3.5, 3.5], [12.5, 3.5], [10.5, 10.5]],
        [[8.5, 3.5], [12.5, 3.5], [14.5, 10.5]],
        [[8.5, 8.5], [12.5, 3.5], [18.5, 10.5]],
    ])
    ts = track_set(path, [0, 1, -1], 20, 14)
    maps = drawing.track_maps(ts, line_width=3)
    # frame 2, object 0: the corner (8.5, 3.5) is on the trail; the chord's midpoint (6, 6) is not
    assert np.array_equal(maps[2, 3, 8], rgb(0)) and np.array_equal(maps[2, 6, 6], np.zeros(3))
    # width 3 (radius 1.5): pixel centres 1 px off the line are painted, 2 px off are not
    assert np.array_equal(maps[2, 4, 5], rgb(0)) and np.array_equal(maps[2, 5, 5], np.zeros(3))
    # the still object is a dot; the camera track is white
    assert np.array_equal(maps[2, 3, 12], rgb(1))
    assert np.array_equal(maps[2, 10, 18], rgb(-1)) and np.array_equal(maps[2, 10, 14], rgb(-1))
    # each frame's map contains the previous one (a trail only grows)
    assert all(((maps[t] > 0) <= (maps[t + 1] > 0)).all() for t in range(2))
    # background is black
    assert np.array_equal(maps[0, 13, 0], np.zeros(3))


def test_palette_is_distinct():
    assert len(set(drawing.PALETTE)) == len(drawing.PALETTE) and drawing.CAMERA_COLOR not in drawing.PALETTE


# --- Puppet-Master drags ------------------------------------------------------------------------------

def drag_scene():
    starts = np.array([[10, 10], [30, 10], [20, 20], [80, 40], [70, 40], [50, 25]], np.float64)
    step = np.array([[0, 0], [0, 0], [5, -2], [0, 0], [0, 0], [1, 1]], np.float64)
    path = np.stack([starts + t * step for t in range(3)])
    return track_set(path, [0, 0, 0, 1, 1, -1], 100, 50)


def test_drags_pick_one_track_per_object_nearest_its_centroid():
    out = conv.drags(drag_scene())
    # object 0: starts' centroid (20, 13.3) is nearest track 2; object 1: a tie, the lower index (3) wins
    assert out["track"].tolist() == [2, 3] and out["object"].tolist() == [0, 1]
    expected = torch.tensor([
        [[0.2, 0.4, 0.20, 0.40], [0.8, 0.8, 0.8, 0.8]],
        [[0.2, 0.4, 0.25, 0.36], [0.8, 0.8, 0.8, 0.8]],
        [[0.2, 0.4, 0.30, 0.32], [0.8, 0.8, 0.8, 0.8]],
    ])
    assert out["drags"].shape == (3, 2, 4) and out["drags"].dtype == torch.float32
    torch.testing.assert_close(out["drags"], expected)
    assert out["version"] == 1


def reference_drag_image(drags: np.ndarray, res: int) -> np.ndarray:
    """Puppet-Master's drag image as papers.md describes `_convert_drag_to_concatting_image`, one cell at
    a time: (F, 6K, res, res) of -1; for each non-zero drag k, channels 6k..6k+5 hold the sub-cell offsets
    (x_src, y_src) at the source cell, (x_tgt, y_tgt) at frame f's target cell and the last frame's target
    offsets at its cell; cell = round(v*res - 0.5) clipped to [0, res-1], offset = v*res - cell."""
    frames, k = drags.shape[:2]
    out = -np.ones((frames, 6 * k, res, res))

    def cell(v):
        c = int(np.clip(np.round(v * res - 0.5), 0, res - 1))
        return c, v * res - c

    for f in range(frames):
        for d in range(k):
            if not drags[f, d].any():
                continue
            for pair, (x, y) in enumerate([drags[f, d, :2], drags[f, d, 2:], drags[-1, d, 2:]]):
                (cx, fx), (cy, fy) = cell(x), cell(y)
                out[f, 6 * d + 2 * pair, cy, cx] = fx
                out[f, 6 * d + 2 * pair + 1, cy, cx] = fy
    return out


def test_drags_land_in_the_cells_puppet_master_reads():
    d = conv.drags(drag_scene())["drags"].double().numpy()
    padded = np.concatenate([d, np.zeros((3, 5 - d.shape[1], 4))], axis=1)  # the model's K = 5, zeros = absent
    img = reference_drag_image(padded, 8)
    assert img.shape == (3, 30, 8, 8)
    # frame 2, drag 0: source (0.2, 0.4) -> cell (x 1, y 3), offsets (0.6, 0.2)
    assert img[2, 0, 3, 1] == pytest.approx(0.6) and img[2, 1, 3, 1] == pytest.approx(0.2)
    # its frame-2 target (0.30, 0.32) -> cell (2, 2), offsets (0.4, 0.56); it is also the final target
    assert img[2, 2, 2, 2] == pytest.approx(0.4) and img[2, 3, 2, 2] == pytest.approx(0.56)
    assert img[0, 4, 2, 2] == pytest.approx(0.4) and img[0, 5, 2, 2] == pytest.approx(0.56)
    # frame 0's target is the source
    assert img[0, 2, 3, 1] == pytest.approx(0.6)
    # each used channel is set at exactly one cell; the padding drags stay -1 everywhere
    assert ((img[:, :12] != -1).reshape(3, 12, -1).sum(-1) == 1).all()
    assert (img[:, 12:] == -1).all()


def test_drags_refuse_camera_only_and_more_than_five_objects():
    with pytest.raises(TrackInputError, match="camera"):
        conv.drags(track_set(np.zeros((2, 3, 2)) + 5, [-1, -1, -1], 10, 10))
    with pytest.raises(TrackInputError, match="at most 5"):
        conv.drags(track_set(np.zeros((2, 6, 2)) + 5, range(6), 10, 10))


def test_drags_are_clipped_to_the_unit_square():
    ts = track_set([[[5, 5]], [[15, -3]]], [0], 10, 10)
    assert conv.drags(ts)["drags"][1, 0].tolist() == [0.5, 0.5, 1.0, 0.0]


# --- Motion-I2V sparse flow ---------------------------------------------------------------------------

def reference_sparse_flow(path: np.ndarray, radius: int, width: int, height: int):
    """Motion-I2V's app (papers.md, `Drag.run`): for future frame i and each track, the slice
    [max(int(sy) - r, 0) : int(sy) + r, max(int(sx) - r, 0) : int(sx + r)] gets end_i - start, mask 1."""
    frames = path.shape[0]
    flow = np.zeros((frames - 1, height, width, 2))
    mask = np.zeros((frames - 1, height, width, 1))
    for i in range(frames - 1):
        for n in range(path.shape[1]):
            (sx, sy), (ex, ey) = path[0, n], path[i + 1, n]
            rows = slice(max(int(sy) - radius, 0), int(sy) + radius)
            cols = slice(max(int(sx) - radius, 0), int(sx + radius))
            flow[i, rows, cols, 0] = ex - sx
            flow[i, rows, cols, 1] = ey - sy
            mask[i, rows, cols] = 1
    return flow, mask


def test_sparse_flow_hand_case():
    path = np.array([[[5.5, 4.5], [0.5, 0.5]], [[6.5, 4.0], [0.5, 0.5]], [[7.5, 3.5], [2.5, 0.5]]])
    out = conv.sparse_flow(track_set(path, [0, 1], 12, 10), radius=2)
    flow, mask = out["flow"].numpy(), out["mask"].numpy()
    assert flow.shape == (2, 10, 12, 2) and mask.shape == (2, 10, 12)
    expected_mask = np.zeros((10, 12))
    expected_mask[2:6, 3:7] = 1      # rows [4-2, 4+2), cols [5-2, 5+2)
    expected_mask[0:2, 0:2] = 1      # clipped at the border
    assert np.array_equal(mask[0], expected_mask) and np.array_equal(mask[1], expected_mask)
    assert np.array_equal(flow[1, 2:6, 3:7], np.broadcast_to([2.0, -1.0], (4, 4, 2)))
    assert np.array_equal(flow[0, 0:2, 0:2], np.zeros((2, 2, 2)))
    assert np.array_equal(flow[1, 0:2, 0:2], np.broadcast_to([2.0, 0.0], (2, 2, 2)))
    assert np.array_equal(flow[:, expected_mask == 0], np.zeros((2, int((expected_mask == 0).sum()), 2)))


@pytest.mark.parametrize("seed", range(4))
def test_sparse_flow_matches_the_official_construction(seed):
    rng = np.random.default_rng(seed)
    frames, n, w, h, r = 6, 7, 40, 30, int(rng.integers(1, 6))
    start = rng.uniform([0, 0], [w, h], size=(n, 2))
    path = start + np.cumsum(rng.normal(0, 3, size=(frames, n, 2)), axis=0) * (np.arange(frames)[:, None, None] > 0)
    out = conv.sparse_flow(track_set(path, np.arange(n), w, h), r)
    flow, mask = reference_sparse_flow(path, r, w, h)
    np.testing.assert_allclose(out["flow"].numpy(), flow, atol=1e-5)
    assert np.array_equal(out["mask"].numpy()[..., None], mask)
    # what forward_sample receives: flow / (W, H) mapped by (x + 1) / 2, and the mask as (F-1, H, W, 1)
    drag01, mask_drag = conv.motion_i2v_inputs(out)
    np.testing.assert_allclose(drag01.numpy(), (flow / [w, h] + 1) / 2, atol=1e-6)
    assert np.array_equal(mask_drag.numpy(), mask)
    assert (drag01.numpy()[mask[..., 0] == 0] == 0.5).all()   # no flow given = zero flow


# --- TRACKS in the core / KJNodes layouts -----------------------------------------------------------

def test_core_tracks_without_extras_are_accepted():
    core = {"track_path": torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[2.0, 2.0], [3.0, 5.0]]]),
            "track_visibility": torch.ones(2, 2, dtype=torch.bool)}
    ts = tracks_mod.read_tracks(core)
    assert ts.width is None and ts.object.tolist() == [0, 1]   # each track its own object
    with pytest.raises(TrackInputError, match="no image size"):
        ts.sized(0, 0)
    sized = ts.sized(16, 8)
    assert (sized.width, sized.height) == (16, 8) and np.array_equal(sized.path, ts.path)
    maps = drawing.track_maps(sized, 1)
    assert maps.shape == (2, 8, 16, 3) and np.array_equal(maps[1, 2, 1], rgb(0)) and np.array_equal(maps[1, 4, 3], rgb(1))


def test_kjnodes_batched_path_and_per_frame_visibility_are_accepted():
    # a [1, T, N, 2] batch of one, and visibility [T, 1] (core's mask-derived form); no visibility at all
    ts = tracks_mod.read_tracks({"track_path": np.zeros((1, 4, 3, 2)) + 2, "track_visibility": np.ones((4, 1), bool)})
    assert ts.path.shape == (4, 3, 2) and ts.visible.shape == (4, 3)
    assert tracks_mod.read_tracks({"track_path": [[[1, 1]], [[2, 2]]]}).visible.all()


def test_stored_size_scales_to_a_requested_size():
    ts = track_set([[[10.0, 5.0]], [[20.0, 10.0]]], [0], 40, 20)
    assert np.array_equal(ts.sized(80, 40).path, ts.path * 2)
    with pytest.raises(TrackInputError, match="both"):
        ts.sized(80, 0)


@pytest.mark.parametrize("bad, match", [
    ({"track_path": torch.zeros(3, 2)}, "shape"),
    ({"track_path": torch.full((2, 1, 2), float("nan"))}, "NaN"),
    ({"track_path": torch.zeros(2, 3, 2), "track_visibility": torch.ones(2, 2, dtype=torch.bool)}, "visibility"),
    ({"track_path": torch.zeros(2, 1, 2), "motionkit": {"version": 2, "width": 4, "height": 4}}, "newer"),
    ({"track_path": torch.zeros(2, 1, 2), "motionkit": {"version": 1, "width": 0, "height": 4}}, "size"),
    ({"track_path": torch.zeros(2, 2, 2), "motionkit": {"version": 1, "width": 4, "height": 4,
                                                        "object": torch.zeros(3)}}, "objects"),
    ([[1, 2]], "TRACKS dict"),
])
def test_bad_tracks_are_rejected(bad, match):
    with pytest.raises(TrackInputError, match=match):
        tracks_mod.read_tracks(bad)


def test_coordinate_string_round_trip():
    path = np.random.default_rng(0).uniform(0, 50, size=(5, 3, 2))
    text = tracks_mod.tracks_to_coordinates(track_set(path, [0, 0, 1], 50, 50))
    data = json.loads(text)
    assert len(data) == 3 and all(len(track) == 5 for track in data)
    back = np.array([[[p["x"], p["y"]] for p in track] for track in data]).transpose(1, 0, 2)
    np.testing.assert_allclose(back, path, atol=5e-4)


# --- visualisation ----------------------------------------------------------------------------------

def test_visualize_draws_trails_and_dots_over_the_background():
    bg = np.full((2, 12, 16, 3), 0.5, np.float32)
    bg[1] = 0.25  # a video: one background per frame
    ts = track_set([[[2.5, 6.5]], [[10.5, 6.5]]], [3], 16, 12)
    frames = drawing.visualize(ts, bg, line_width=1, point_radius=1)
    c = rgb(3)
    assert np.array_equal(frames[1, 6, 10], c)                     # the dot at the current position
    np.testing.assert_allclose(frames[1, 6, 5], 0.25 * 0.25 + 0.75 * c, atol=1e-6)   # the trail, blended
    assert np.array_equal(frames[1, 0, 0], [0.25] * 3) and np.array_equal(frames[0, 0, 0], [0.5] * 3)
    assert np.array_equal(frames[0, 6, 5], [0.5] * 3)              # no trail yet at frame 0


def test_visualize_over_one_image_equals_over_a_still_video():
    rng = np.random.default_rng(1)
    path = rng.uniform(0, 30, size=(6, 5, 2))
    ts = track_set(path, [0, 0, 1, 2, -1], 30, 20, visible=rng.random((6, 5)) > 0.2)
    image = rng.random((1, 20, 30, 3)).astype(np.float32)
    one = drawing.visualize(ts, image, line_width=3, point_radius=2)
    video = drawing.visualize(ts, np.repeat(image, 6, axis=0), line_width=3, point_radius=2)
    np.testing.assert_allclose(one, video, atol=1e-6)
    assert not np.array_equal(one[-1], np.repeat(image, 6, axis=0)[-1])
