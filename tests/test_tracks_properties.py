"""Arrows to trajectories (TrackGo preprocessing), property-tested with hypothesis over random masks,
arrows, frame counts, point counts, easings and seeds, against a float64 reference of the equations:
frame t's displacement = path(easing(t / (T - 1))) - path(0), path(s) = point at arc-length fraction s."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from motionkit_testing.pack import pack_module

arrows_mod = pack_module("arrows")
trackgo = pack_module("trackgo")
tracks_mod = pack_module("tracks")

EASINGS = ("linear", "ease-in", "ease-out", "ease-in-out")
# core GenerateTracks' curves, written out again (not imported) for the reference
REF_EASE = {"linear": lambda t: t, "ease-in": lambda t: t ** 2, "ease-out": lambda t: 1 - (1 - t) ** 2,
            "ease-in-out": lambda t: t * t * (3 - 2 * t)}
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def ref_point(points, s):
    """Walk the polyline segment by segment until arc length s * total is reached (float64)."""
    pts = [(float(x), float(y)) for x, y in points]
    lengths = [math.hypot(b[0] - a[0], b[1] - a[1]) for a, b in zip(pts, pts[1:])]
    total = sum(lengths)
    if total == 0:
        return np.array(pts[0])
    target, walked = s * total, 0.0
    for (a, b), length in zip(zip(pts, pts[1:]), lengths):
        if length > 0 and target <= walked + length:
            u = (target - walked) / length
            return np.array([a[0] + u * (b[0] - a[0]), a[1] + u * (b[1] - a[1])])
        walked += length
    return np.array(pts[-1])


def ref_displacements(points, frames, easing):
    return np.stack([ref_point(points, REF_EASE[easing](t / (frames - 1))) - np.asarray(points[0], float)
                     for t in range(frames)])


@st.composite
def scenes(draw):
    h, w = draw(st.integers(6, 40)), draw(st.integers(6, 40))
    n_obj = draw(st.integers(1, 3))
    masks = np.zeros((n_obj, h, w), dtype=np.float32)
    for i in range(n_obj):
        for _ in range(draw(st.integers(1, 3))):  # a union of rectangles: often non-convex
            y0, x0 = draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))
            y1, x1 = draw(st.integers(y0 + 1, h)), draw(st.integers(x0 + 1, w))
            masks[i, y0:y1, x0:x1] = draw(st.sampled_from([1.0, 0.75]))  # soft masks count above 0.5
        for y, x in draw(st.lists(st.tuples(st.integers(0, h - 1), st.integers(0, w - 1)), max_size=6)):
            masks[i, y, x] = 1.0  # stray pixels, far from the rest
    point = st.tuples(st.floats(0, w, allow_nan=False), st.floats(0, h, allow_nan=False))
    polyline = st.lists(point, min_size=2, max_size=5)
    movers = draw(st.lists(st.sampled_from([*range(n_obj), "camera"]), unique=True, max_size=n_obj + 1))
    arrows = [(obj, draw(polyline)) for obj in movers]
    return {"masks": masks, "arrows": arrows, "frames": draw(st.integers(2, 30)), "k": draw(st.integers(1, 12)),
            "easing": draw(st.sampled_from(EASINGS)), "seed": draw(st.integers(0, 2 ** 64 - 1))}


def build(scene, seed=None):
    h, w = scene["masks"].shape[1:]
    text = arrows_mod.arrows_document(w, h, scene["arrows"])
    arrows = arrows_mod.parse_arrows(text, len(scene["masks"]), w, h)
    return trackgo.arrows_to_tracks(scene["masks"], arrows, scene["frames"], scene["k"],
                                    scene["seed"] if seed is None else seed, scene["easing"])


@SETTINGS
@given(scenes())
def test_tracks_follow_their_arrows(scene):
    tracks = build(scene)
    path = tracks["track_path"].numpy().astype(np.float64)
    objects = tracks["motionkit"]["object"].numpy()
    frames, k, (h, w) = scene["frames"], scene["k"], scene["masks"].shape[1:]
    by_object = {(-1 if o == "camera" else o): pts for o, pts in scene["arrows"]}

    # track_path has num_frames rows; one block of k tracks per mask, then the camera grid
    assert path.shape[0] == frames and path.shape[2] == 2
    for i in range(len(scene["masks"])):
        assert (objects == i).sum() == k
    assert ((objects == -1).sum() >= k) == (-1 in by_object)
    assert tracks["track_visibility"].shape == path.shape[:2]

    # every control point starts inside its mask (pixel floor(y), floor(x) is above 0.5)
    for n in np.flatnonzero(objects >= 0):
        x, y = path[0, n]
        assert scene["masks"][objects[n], int(math.floor(y)), int(math.floor(x))] > 0.5, (n, x, y)

    for obj in np.unique(objects):
        idx = np.flatnonzero(objects == obj)
        moved = path[:, idx] - path[0, idx]
        if obj not in by_object:  # no arrow: pinned
            assert np.array_equal(moved, np.zeros_like(moved))
            continue
        pts = np.asarray(by_object[obj], dtype=np.float64)
        expected = ref_displacements(pts, frames, scene["easing"])
        # frame 0 is the start; every frame follows the easing along the arc length (float32 storage)
        assert np.array_equal(moved[0], np.zeros_like(moved[0]))
        np.testing.assert_allclose(moved, np.broadcast_to(expected[:, None], moved.shape), atol=2e-3, rtol=0)
        # the last frame's displacement is the arrow's end minus its start
        np.testing.assert_allclose(moved[-1], np.broadcast_to(pts[-1] - pts[0], moved[-1].shape), atol=2e-3, rtol=0)
        # monotone along the path: the anchor never travels farther than the path is long
        anchor = pts[0] + moved[:, 0]
        travelled = np.linalg.norm(np.diff(anchor, axis=0), axis=1).sum()
        length = np.linalg.norm(np.diff(pts, axis=0), axis=1).sum()
        assert travelled <= length + 1e-2
        fractions = [REF_EASE[scene["easing"]](t / (frames - 1)) for t in range(frames)]
        assert all(b >= a for a, b in zip(fractions, fractions[1:]))

    # visibility is "inside the image"
    x, y = path[..., 0], path[..., 1]
    inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    assert np.array_equal(tracks["track_visibility"].numpy(), inside)


@SETTINGS
@given(scenes(), st.integers(0, 2 ** 64 - 1))
def test_the_same_seed_gives_the_same_tracks(scene, other_seed):
    a, b = build(scene), build(scene)
    assert np.array_equal(a["track_path"].numpy(), b["track_path"].numpy())
    assert np.array_equal(a["motionkit"]["object"].numpy(), b["motionkit"]["object"].numpy())
    c = build(scene, seed=other_seed)
    assert c["track_path"].shape == a["track_path"].shape


@SETTINGS
@given(scenes())
def test_a_coordinate_string_is_the_same_arrows(scene):
    """A KJNodes Spline Editor string (track i moves mask i) gives the tracks the arrows JSON gives."""
    h, w = scene["masks"].shape[1:]
    n_obj = len(scene["masks"])
    polylines = [pts for obj, pts in scene["arrows"] if obj != "camera"]
    as_arrows = dict(scene, arrows=list(enumerate(polylines))[:n_obj])
    coords = json.dumps([[{"x": x, "y": y} for x, y in pts] for pts in polylines[:n_obj]])
    from_coords = trackgo.arrows_to_tracks(scene["masks"], arrows_mod.parse_arrows(coords, n_obj, w, h),
                                           scene["frames"], scene["k"], scene["seed"], scene["easing"])
    assert np.array_equal(build(as_arrows)["track_path"].numpy(), from_coords["track_path"].numpy())


@SETTINGS
@given(scenes(), st.sampled_from([0.5, 2.0, 3.0]))
def test_arrows_drawn_on_a_resized_copy_are_scaled(scene, factor):
    h, w = scene["masks"].shape[1:]
    scaled = [(o, [(x * factor, y * factor) for x, y in pts]) for o, pts in scene["arrows"]]
    text = arrows_mod.arrows_document(w * factor, h * factor, scaled)
    tracks = trackgo.arrows_to_tracks(scene["masks"], arrows_mod.parse_arrows(text, len(scene["masks"]), w, h),
                                      scene["frames"], scene["k"], scene["seed"], scene["easing"])
    np.testing.assert_allclose(tracks["track_path"].numpy(), build(scene)["track_path"].numpy(), atol=1e-3)


@SETTINGS
@given(st.integers(1, 40), st.integers(8, 200), st.integers(8, 200))
def test_the_camera_grid_covers_the_image_evenly(k, w, h):
    grid = trackgo.camera_grid(w, h, k)
    assert len(grid) >= k
    xs, ys = np.unique(grid[:, 0]), np.unique(grid[:, 1])
    assert len(xs) * len(ys) == len(grid)
    np.testing.assert_allclose(xs, (np.arange(len(xs)) + 0.5) * w / len(xs))   # cell centres
    np.testing.assert_allclose(ys, (np.arange(len(ys)) + 0.5) * h / len(ys))


def test_a_ring_mask_keeps_its_control_point_on_the_ring():
    """k-means on a ring puts the centroid in the hole; the snapped control point lies on the ring."""
    yy, xx = np.mgrid[0:41, 0:41]
    r = np.hypot(xx + 0.5 - 20.5, yy + 0.5 - 20.5)
    ring = (r > 14) & (r < 19)
    for seed in range(5):
        (x, y), = trackgo.object_control_points(ring, 1, seed, 0)
        assert ring[int(y), int(x)]
        assert np.hypot(x - 20.5, y - 20.5) > 14


def test_one_objects_points_do_not_depend_on_the_other_masks():
    rng = np.random.default_rng(3)
    masks = rng.random((3, 30, 30)) > 0.4
    first = trackgo.object_control_points(masks[0], 6, 11, 0)
    tracks = trackgo.arrows_to_tracks(masks, [], 5, 6, 11, "linear")
    assert np.array_equal(tracks["track_path"][0, :6].numpy(), first.astype(np.float32))
    fewer = trackgo.arrows_to_tracks(masks[:1], [], 5, 6, 11, "linear")
    assert np.array_equal(fewer["track_path"].numpy(), tracks["track_path"][:, :6].numpy())


def test_k_means_spreads_points_over_the_object():
    """Control points cover a long bar end to end instead of bunching (the reason TrackGo uses k-means)."""
    bar = np.zeros((10, 200), dtype=bool)
    bar[3:7, :] = True
    pts = trackgo.object_control_points(bar, 5, 0, 0)
    gaps = np.diff(np.sort(pts[:, 0]))
    assert gaps.min() > 25 and pts[:, 0].min() < 40 and pts[:, 0].max() > 160


def test_tiny_masks_repeat_their_pixels():
    mask = np.zeros((5, 5), dtype=bool)
    mask[2, 1:3] = True
    pts = trackgo.object_control_points(mask, 5, 0, 0)
    assert len(pts) == 5 and {tuple(p) for p in pts} == {(1.5, 2.5), (2.5, 2.5)}


@pytest.mark.parametrize("easing", EASINGS)
def test_easings_match_core_generate_tracks(easing):
    t = np.linspace(0, 1, 101)
    np.testing.assert_allclose(arrows_mod.ease(easing, t), [REF_EASE[easing](v) for v in t], atol=1e-15)
    assert arrows_mod.ease(easing, 0.0) == 0.0 and arrows_mod.ease(easing, 1.0) == 1.0


def test_an_arrow_without_an_object_moves_the_camera_and_defaults_are_still():
    masks = np.zeros((1, 12, 20), np.float32)
    masks[0, 2:6, 3:9] = 1
    for obj in ("missing", None, "camera"):
        arrow = {"points": [[1, 1], [5, 3]]} if obj == "missing" else {"object": obj, "points": [[1, 1], [5, 3]]}
        text = json.dumps({"version": 1, "width": 20, "height": 12, "arrows": [arrow], "future_field": True})
        (parsed,) = arrows_mod.parse_arrows(text, 1, 20, 12)
        assert parsed.object == -1
    # the node's default (a 512x512 document without arrows) fits masks of any size: everything stays
    tracks = trackgo.arrows_to_tracks(masks, arrows_mod.parse_arrows(arrows_mod.DEFAULT_ARROWS, 1, 20, 12), 4, 3, 0,
                                      "linear")
    path = tracks["track_path"].numpy()
    assert path.shape == (4, 3, 2) and np.array_equal(path, np.broadcast_to(path[0], path.shape))


def test_visibility_is_of_the_stored_float32_path():
    """A float64 position just inside the image edge (31.999999999999996 of 32) is stored as 32.0 in float32,
    outside: the visibility must describe the stored path (hypothesis found this case)."""
    path = np.array([[[5.0, 31.999999999999996]], [[5.0, 12.0]]])
    tracks = tracks_mod.make_tracks(path, np.zeros(1, np.int64), 32, 32)
    assert float(tracks["track_path"][0, 0, 1]) == 32.0
    assert tracks["track_visibility"].tolist() == [[False], [True]]
