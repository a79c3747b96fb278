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


# --- arrows JSON version 2: per-arrow timing, timed points, visibility, anchors ---------------------------

def v1_scene(i):
    """A seeded v1 scene (masks, arrows JSON v1, frames, k, easing, seed), independent of the code under test."""
    rng = np.random.default_rng([2026, i])
    h, w = int(rng.integers(12, 48)), int(rng.integers(12, 48))
    n = int(rng.integers(1, 4))
    masks = np.zeros((n, h, w), np.float32)
    for o in range(n):
        y0, x0 = int(rng.integers(0, h - 2)), int(rng.integers(0, w - 2))
        masks[o, y0:y0 + int(rng.integers(2, h - y0 + 1)), x0:x0 + int(rng.integers(2, w - x0 + 1))] = 1.0
    arrows = []
    for obj in [*range(n), "camera"]:
        if rng.random() < 0.7:
            pts = [[round(float(rng.uniform(0, w)), 3), round(float(rng.uniform(0, h)), 3)]
                   for _ in range(int(rng.integers(2, 5)))]
            arrows.append({"object": obj, "points": pts})
    scale = float(rng.choice([1.0, 2.0]))
    doc = {"version": 1, "width": w * scale, "height": h * scale,
           "arrows": [{"object": a["object"], "points": [[x * scale, y * scale] for x, y in a["points"]]}
                      for a in arrows]}
    return masks, doc, int(rng.integers(2, 40)), int(rng.integers(1, 10)), EASINGS[i % 4], int(rng.integers(0, 2 ** 63))


# sha256 (first 16 hex digits) of track_path, track_visibility and object bytes of v1_scene(0..11), recorded
# with the version-1-only implementation (commit 29592ec) before version 2 was added
V1_GOLDEN = ['9dd48ee40316e145', 'a98ab485d73b452c', '6459a00496f1176d', '9628f9c346d463be', '121f60cbf6cf466e',
             'acfb7d7d5ecce657', 'f4f969c4a611ceb8', '039405c8f7126511', '689e36b39d559527', '4692181fc441ed78',
             'b31ca77d15ce1096', 'bbf7cde345205f8d']


def tracks_digest(tracks) -> str:
    import hashlib
    h = hashlib.sha256()
    for t in (tracks["track_path"], tracks["track_visibility"], tracks["motionkit"]["object"]):
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


def from_doc(masks, doc, frames, k, seed, easing):
    h, w = masks.shape[1:]
    motion = arrows_mod.parse_motion(json.dumps(doc), len(masks), w, h)
    return trackgo.arrows_to_tracks(masks, motion.arrows, frames, k, seed, easing, anchors=motion.anchors)


@pytest.mark.parametrize("i", range(len(V1_GOLDEN)))
def test_v1_documents_give_todays_tracks_bit_for_bit(i):
    masks, doc, frames, k, easing, seed = v1_scene(i)
    tracks = from_doc(masks, doc, frames, k, seed, easing)
    assert tracks_digest(tracks) == V1_GOLDEN[i]
    # v1's rule with the v1 function, bit for bit: start + displacements(points, T, easing)
    h, w = masks.shape[1:]
    path = tracks["track_path"].numpy()
    objects = tracks["motionkit"]["object"].numpy()
    for arrow in arrows_mod.parse_arrows(json.dumps(doc), len(masks), w, h):
        idx = np.flatnonzero(objects == arrow.object)
        starts = trackgo.camera_grid(w, h, k) if arrow.object == -1 else \
            trackgo.object_control_points(masks[arrow.object] > 0.5, k, seed, arrow.object)
        want = (starts[None] + arrows_mod.displacements(arrow.points, frames, easing)[:, None]).astype(np.float32)
        assert np.array_equal(path[:, idx], want)
    # the same document as version 2 without any version-2 field, and a v1 document carrying v2 fields
    # (ignored in version 1) give the same bytes
    assert tracks_digest(from_doc(masks, dict(doc, version=2), frames, k, seed, easing)) == V1_GOLDEN[i]
    noisy = dict(doc, anchors=[{"object": None, "point": [1, 1]}],
                 arrows=[dict(a, start_frame=1, end_frame=1, easing="nonsense", visible="range") for a in doc["arrows"]])
    assert tracks_digest(from_doc(masks, noisy, frames, k, seed, easing)) == V1_GOLDEN[i]


@st.composite
def timed_scenes(draw):
    """A version-2 scene: every arrow with a random frame range (or the defaults), some interior points timed
    at increasing frames, its own easing or the node's, visibility; anchors of objects and the background."""
    scene = draw(scenes())
    frames, (h, w) = scene["frames"], scene["masks"].shape[1:]
    n_obj = len(scene["masks"])
    arrows = []
    for obj, pts in scene["arrows"]:
        start = draw(st.integers(0, frames - 2))
        end = draw(st.integers(start + 1, frames - 1))
        interior = list(range(1, len(pts) - 1))
        inside = list(range(start + 1, end))
        n_timed = draw(st.integers(0, min(len(interior), len(inside))))
        timed_points = sorted(draw(st.lists(st.sampled_from(interior), min_size=n_timed, max_size=n_timed,
                                            unique=True))) if n_timed else []
        timed_frames = sorted(draw(st.lists(st.sampled_from(inside), min_size=n_timed, max_size=n_timed,
                                            unique=True))) if n_timed else []
        timing = dict(zip(timed_points, timed_frames))
        if draw(st.booleans()):  # sometimes the first / last point carries its (implicit) frame
            timing[0], timing[len(pts) - 1] = start, end
        points = [[x, y, timing[j]] if j in timing else [x, y] for j, (x, y) in enumerate(pts)]
        arrow = {"object": obj, "points": points}
        defaults = draw(st.booleans())
        if not (defaults and start == 0 and end == frames - 1):
            arrow.update(start_frame=start, end_frame=end)
        if draw(st.booleans()):
            arrow["easing"] = draw(st.sampled_from(EASINGS))
        arrow["visible"] = draw(st.sampled_from(["always", "range"]))
        arrows.append((arrow, start, end, timing))
    camera = any(obj == "camera" for obj, _ in scene["arrows"])
    owners = [*range(n_obj)] + ([] if camera else [None])
    point = st.tuples(st.floats(0, w - 0.01, allow_nan=False), st.floats(0, h - 0.01, allow_nan=False))
    anchors = [{"object": o, "point": list(p)}
               for o, p in draw(st.lists(st.tuples(st.sampled_from(owners), point), max_size=4))]
    doc = {"version": 2, "width": w, "height": h, "arrows": [a for a, *_ in arrows], "anchors": anchors}
    return dict(scene, doc=doc, timing=[(a, s, e, t) for a, s, e, t in arrows])


def ref_segment(points, u, easing):
    return ref_point(points, REF_EASE[easing](u))


@SETTINGS
@given(timed_scenes())
def test_v2_timing_model(scene):
    masks, frames, k, seed, node_easing = scene["masks"], scene["frames"], scene["k"], scene["seed"], scene["easing"]
    h, w = masks.shape[1:]
    tracks = from_doc(masks, scene["doc"], frames, k, seed, node_easing)
    path = tracks["track_path"].numpy()
    visible = tracks["track_visibility"].numpy()
    objects = tracks["motionkit"]["object"].numpy()
    anchors = scene["doc"]["anchors"]
    n_moving = path.shape[1] - len(anchors)
    inside = (path[..., 0] >= 0) & (path[..., 0] < w) & (path[..., 1] >= 0) & (path[..., 1] < h)

    for arrow, start, end, timing in scene["timing"]:
        obj = -1 if arrow["object"] == "camera" else arrow["object"]
        idx = np.flatnonzero(objects[:n_moving] == obj)
        pts = np.array([p[:2] for p in arrow["points"]], dtype=np.float64)
        starts = trackgo.camera_grid(w, h, k) if obj == -1 else \
            trackgo.object_control_points(masks[obj] > 0.5, k, seed, obj)
        exact = lambda j: (starts + (pts[j] - pts[0])).astype(np.float32)   # noqa: E731
        # exactly at the start up to start_frame, exactly at the end from end_frame on (bit for bit)
        assert np.array_equal(path[:start + 1, idx], np.broadcast_to(starts.astype(np.float32), (start + 1, *starts.shape)))
        assert np.array_equal(path[end:, idx], np.broadcast_to(exact(-1), (frames - end, *starts.shape)))
        # timed points are reached exactly at their frames
        for j, f in timing.items():
            assert np.array_equal(path[f, idx], exact(j)), (j, f)
        # between keys: the arrow's easing along the arc length of the sub-path (float64 reference)
        keys = sorted({(start, 0), (end, len(pts) - 1), *((f, j) for j, f in timing.items())})
        easing = arrow.get("easing", node_easing)
        for (f_a, a), (f_b, b) in zip(keys, keys[1:]):
            for t in range(f_a, f_b + 1):
                want = starts + (ref_segment(pts[a:b + 1], (t - f_a) / (f_b - f_a), easing) - pts[0])
                np.testing.assert_allclose(path[t, idx], want, atol=2e-3, rtol=0)
        # the motion never goes back: the distance travelled is at most the path's length
        anchor = pts[0] + (path[:, idx[0]].astype(np.float64) - starts[0])
        travelled = np.linalg.norm(np.diff(anchor, axis=0), axis=1).sum()
        assert travelled <= np.linalg.norm(np.diff(pts, axis=0), axis=1).sum() + 1e-2
        # visibility: inside the image, and for "range" only within [start_frame, end_frame]
        shown = inside[:, idx].copy()
        if arrow["visible"] == "range":
            shown[:start] = False
            shown[end + 1:] = False
        assert np.array_equal(visible[:, idx], shown)

    # objects without an arrow stay pinned and visible where inside
    moved_objects = {(-1 if a["object"] == "camera" else a["object"]) for a, *_ in scene["timing"]}
    for n in range(n_moving):
        if objects[n] not in moved_objects:
            assert np.array_equal(path[:, n], np.broadcast_to(path[0, n], path[:, n].shape))
    # anchors: the last tracks, exactly still for the whole video, visible throughout, of their object
    for i, anchor in enumerate(anchors):
        n = n_moving + i
        assert objects[n] == (-1 if anchor["object"] is None else anchor["object"])
        assert np.array_equal(path[:, n], np.broadcast_to(np.float32(anchor["point"]), (frames, 2)))
        assert visible[:, n].all()


@SETTINGS
@given(scenes())
def test_v2_without_timing_fields_is_v1(scene):
    """A version-2 document whose arrows carry no version-2 field (or only the defaults) gives v1's tracks."""
    h, w = scene["masks"].shape[1:]
    v1 = json.loads(arrows_mod.arrows_document(w, h, scene["arrows"]))
    defaults = dict(v1, version=2, arrows=[dict(a, start_frame=0, end_frame=scene["frames"] - 1, visible="always",
                                                easing=scene["easing"]) for a in v1["arrows"]])
    for doc in (dict(v1, version=2), defaults):
        a = from_doc(scene["masks"], doc, scene["frames"], scene["k"], scene["seed"], scene["easing"])
        assert tracks_digest(a) == tracks_digest(build(scene))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(EASINGS), st.lists(st.floats(0, 1, allow_nan=False), min_size=2, max_size=20))
def test_easing_is_monotone_and_hits_both_ends(easing, ts):
    ts = np.sort(np.asarray(ts))
    values = arrows_mod.ease(easing, ts)
    assert (np.diff(values) >= 0).all() and (values >= 0).all() and (values <= 1).all()
    assert arrows_mod.ease(easing, np.array([0.0, 1.0])).tolist() == [0.0, 1.0]
    # and along a whole segment of frames (what arrow_motion uses)
    for n in (2, 3, 7, 121):
        fractions = arrows_mod.ease(easing, np.linspace(0.0, 1.0, n))
        assert fractions[0] == 0.0 and fractions[-1] == 1.0 and (np.diff(fractions) >= 0).all()


def v2_doc(arrows, anchors=None, width=30, height=20):
    doc = {"version": 2, "width": width, "height": height, "arrows": arrows}
    if anchors is not None:
        doc["anchors"] = anchors
    return json.dumps(doc)


BAD_V2 = [
    (v2_doc([{"object": 0, "points": [[1, 1], [5, 5]], "start_frame": 8, "end_frame": 4}]),
     "arrow 0 starts at frame 8 and ends at frame 4"),
    (v2_doc([{"object": 0, "points": [[1, 1], [5, 5]], "start_frame": 3, "end_frame": 3}]),
     "arrow 0 starts at frame 3 and ends at frame 3"),
    (v2_doc([{"object": 0, "points": [[1, 1], [5, 5]], "end_frame": 10}]),
     "arrow 0 ends at frame 10, outside the video's frames 0..9"),
    (v2_doc([{"object": 0, "points": [[1, 1], [5, 5]], "start_frame": -1}]),
     "arrow 0 starts at frame -1, outside"),
    (v2_doc([{"object": 0, "points": [[1, 1], [5, 5]], "start_frame": 1.5}]), "arrow 0 has start_frame 1.5, not an integer"),
    (v2_doc([{"object": 0, "points": [[1, 1], [5, 5]], "easing": "bounce"}]), "arrow 0 has easing \"bounce\""),
    (v2_doc([{"object": 0, "points": [[1, 1], [5, 5]], "visible": "sometimes"}]), "arrow 0 has visible \"sometimes\""),
    (v2_doc([{"object": 0, "points": [[1, 1], [3, 3, 6], [4, 4, 5], [5, 5]]}]),
     "arrow 0 point 2 is timed at frame 5, not after point 1 (frame 6)"),
    (v2_doc([{"object": 0, "points": [[1, 1], [3, 3, 9], [5, 5]], "end_frame": 9}]),
     "arrow 0 point 1 is timed at frame 9, outside its arrow's frames 0..9"),
    (v2_doc([{"object": 0, "points": [[1, 1, 2], [5, 5]]}]), "arrow 0 point 0 is timed at frame 2, but the first point"),
    (v2_doc([{"object": 0, "points": [[1, 1], [5, 5, 4]]}]), "arrow 0 point 1 (the last) is timed at frame 4"),
    (v2_doc([{"object": 0, "points": [[1, 1], [5, 5, "x"]]}]), "arrow 0 point 1 has frame \"x\", not an integer"),
    (v2_doc([], [{"object": 2, "point": [1, 1]}]), "anchor 0 names object 2, but 'masks' holds 2"),
    (v2_doc([], [{"object": 0, "point": [30, 1]}]), "anchor 0 (30, 1) is outside the 30x20 image"),
    (v2_doc([], [{"object": 0, "point": [1]}]), "anchor 0 has point [1], not an [x, y] pair"),
    (v2_doc([], {"object": 0}), "'anchors' is not a list"),
    (v2_doc([{"object": "camera", "points": [[1, 1], [5, 5]]}], [{"object": None, "point": [1, 1]}]),
     "anchor 0 holds the camera (object null) while arrow 0 moves the camera"),
    (json.dumps({"version": 3, "width": 30, "height": 20, "arrows": []}), "version 3 is newer than"),
]


@pytest.mark.parametrize("text, problem", BAD_V2, ids=[b[1][:30] for b in BAD_V2])
def test_bad_v2_documents_are_refused_naming_the_arrow_point_or_anchor(text, problem):
    masks = np.zeros((2, 20, 30), np.float32)
    masks[:, 5:10, 5:10] = 1
    with pytest.raises(tracks_mod.TrackInputError) as excinfo:
        motion = arrows_mod.parse_motion(text, 2, 30, 20)
        trackgo.arrows_to_tracks(masks, motion.arrows, 10, 2, 0, "linear", anchors=motion.anchors)
    assert excinfo.value.input_name == "arrows"
    assert problem in excinfo.value.problem, excinfo.value.problem
    assert excinfo.value.fix


def test_anchors_scale_with_a_resized_drawing_and_anchor_an_object_while_it_moves():
    masks = np.zeros((1, 20, 30), np.float32)
    masks[0, 2:12, 2:20] = 1
    doc = {"version": 2, "width": 60, "height": 40,
           "arrows": [{"object": 0, "points": [[10, 10], [30, 10]]}],
           "anchors": [{"object": 0, "point": [8, 8]}, {"object": None, "point": [58, 38]}]}
    tracks = from_doc(masks, doc, 5, 3, 0, "linear")
    path, objects = tracks["track_path"].numpy(), tracks["motionkit"]["object"].numpy()
    assert objects.tolist() == [0, 0, 0, 0, -1]
    assert np.array_equal(path[:, 3], np.full((5, 2), 4.0, np.float32))
    assert np.array_equal(path[:, 4], np.broadcast_to(np.float32([29, 19]), (5, 2)))
    np.testing.assert_allclose(path[-1, :3] - path[0, :3], np.full((3, 2), [10.0, 0.0]), atol=1e-5)
