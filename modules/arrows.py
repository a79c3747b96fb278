"""Arrows: what the arrow editor writes, and how an arrow becomes per-frame displacements.

Arrows JSON, version 1 (the ``arrows`` STRING of Arrows to Trajectories; the editor writes it)::

    {"version": 1, "width": W, "height": H,
     "arrows": [{"object": 0, "points": [[x, y], [x, y], ...]},
                {"object": "camera", "points": [[x, y], [x, y]]}]}

* ``width``/``height``: the image the points were drawn on. Points are pixels of that image (x right,
  y down; the image spans ``[0, W] x [0, H]``). When it differs from the masks' size with the same aspect
  ratio the points are scaled (drawn on a resized copy); another aspect ratio is an error.
* each arrow is a polyline from its start to its end (two points or more; extra points bend it).
* ``object``: an index into the ``masks`` batch, or ``"camera"`` (also: missing or null), which moves a
  regular grid over the whole image. One arrow per object at most.
* Unknown fields (top level and per arrow) are ignored, so later versions can add fields. A version-1
  document is read with version-1 rules only: the fields of version 2 below are ignored in it.

Arrows JSON, version 2 (append-only: everything of version 1, plus optional timing per arrow and anchors)::

    {"version": 2, "width": W, "height": H,
     "arrows": [{"object": 0, "points": [[x, y], [x, y, 6], [x, y]],
                 "start_frame": 2, "end_frame": 10, "easing": "ease-in-out", "visible": "always"}],
     "anchors": [{"object": 1, "point": [x, y]}, {"object": null, "point": [x, y]}]}

* ``start_frame`` (default 0) and ``end_frame`` (default ``num_frames - 1``): integers, inclusive; the
  arrow moves only inside ``[start_frame, end_frame]``. ``0 <= start_frame < end_frame <= num_frames - 1``,
  else an error naming the arrow (nothing is clamped).
* ``easing``: ``"linear"``, ``"ease-in"``, ``"ease-out"`` or ``"ease-in-out"``; default the node's
  ``easing`` input.
* ``visible``: ``"always"`` (default) or ``"range"``: the arrow's tracks are hidden
  (``track_visibility`` False) before ``start_frame`` and after ``end_frame`` (pop-in / pop-out).
  Visibility is also False wherever a point is outside the image, as in version 1. (Core Wan-Move takes a
  track's appearance at its frame-0 position: a track hidden at frame 0, i.e. popping in, has none there.)
* a point may carry a third element, the frame (integer) at which the path reaches it (``null``: no
  frame). Timed points lie strictly inside ``(start_frame, end_frame)`` and their frames increase strictly
  along the arrow; the first point is at ``start_frame`` and the last at ``end_frame`` implicitly (a frame
  given on them must equal those).
* ``anchors``: points that stay exactly still for the whole video, each one track, visible in every
  frame. ``object``: a mask index (a track of that object: it pins that spot of the object, e.g. while the
  object's arrow moves the rest of it) or null / ``"camera"`` / missing (a background track with the camera
  object id, -1). "Hold camera" is background anchors around the border. An anchor must lie inside the
  image (``0 <= x < W``, ``0 <= y < H``). Where an anchor lies is not checked against the masks: a
  background anchor may lie on an object (it then holds that spot of the frame, as a camera track) and an
  object anchor off it. Background anchors and a camera arrow contradict each other and are an error.

**Timing rule.** An arrow's keys are ``(start_frame, point 0)``, ``(frame f_j, point j)`` for each timed
point and ``(end_frame, last point)``. Between consecutive keys ``(f_a, a)`` and ``(f_b, b)``, at frame
``t`` the position is the point at arc-length fraction ``easing(u)`` of the sub-polyline from point ``a`` to
point ``b`` (its bends included), with ``u = (t - f_a) / (f_b - f_a)`` (computed as
``numpy.linspace(0, 1, f_b - f_a + 1)``); the arrow's own easing applies within each segment. Before
``start_frame`` a track is exactly at its start, after ``end_frame`` exactly at its end (bit-exact), and at a
timed point's frame exactly at that point. Without timed points and with the default frames this is
version 1's rule below, bit for bit.

Also accepted in place of that JSON: a KJNodes Spline Editor coordinate string (``[[{"x":..,"y":..}, ...],
...]``, or one ``[{"x":..,"y":..}, ...]`` track), in pixels of the masks' image. Track ``i`` is used as the
arrow of mask ``i``; its timing is replaced by ``easing`` along the path's arc length.

Motion along an arrow (TrackGo: the arrow is subdivided by frame into displacements): at frame ``t`` of
``T`` the displacement is ``path(easing(t / (T - 1))) - path(0)``, where ``path(s)`` is the point at
arc-length fraction ``s`` of the polyline. The easings are those of core ``GenerateTracks``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from typing import Any, Optional, Sequence

import numpy as np

from .tracks import CAMERA, TrackInputError, inside_image

ARROWS_VERSION = 2           # the newest version read
ARROWS_V1 = 1                # what arrows_document writes
EASINGS = ("linear", "ease-in", "ease-out", "ease-in-out")
VISIBILITY = ("always", "range")
DEFAULT_ARROWS = json.dumps({"version": ARROWS_V1, "width": 512, "height": 512, "arrows": []})
ASPECT_TOLERANCE = 0.01  # relative; a resized copy keeps its aspect ratio within rounding

_EDITOR_FIX = "redraw the arrows in the node's editor (it writes valid JSON), or see the node's description."


@dataclass(frozen=True)
class Arrow:
    object: int              # mask index, or CAMERA
    points: np.ndarray       # [P >= 2, 2] float64, pixels of the masks' image
    # version 2 (None: the default)
    start_frame: Optional[int] = None
    end_frame: Optional[int] = None
    easing: Optional[str] = None
    visible: str = "always"
    point_frames: tuple = ()  # per point: its frame or None; empty: no point is timed
    where: str = "arrow"      # for messages: "arrow 3", "coordinate track 0"


@dataclass(frozen=True)
class Anchor:
    object: int              # mask index, or CAMERA (background)
    point: np.ndarray        # [2] float64, pixels of the masks' image
    where: str = "anchor"


@dataclass(frozen=True)
class Motion:
    """A parsed arrows value: the arrows and (version 2) the anchors."""
    arrows: tuple
    anchors: tuple = ()


def ease(name: str, t: np.ndarray) -> np.ndarray:
    """Fraction of the path covered at normalised time ``t`` in [0, 1]; monotone, 0 -> 0 and 1 -> 1."""
    t = np.asarray(t, dtype=np.float64)
    if name == "linear":
        return t
    if name == "ease-in":
        return t * t
    if name == "ease-out":
        return 1.0 - (1.0 - t) ** 2
    if name == "ease-in-out":
        return t * t * (3.0 - 2.0 * t)
    raise TrackInputError("easing", f"unknown easing {name!r}.", f"use one of {', '.join(EASINGS)}.")


def point_at_fraction(points: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """Points at arc-length fractions ``fractions`` (in [0, 1]) of the polyline ``points`` [P, 2]."""
    points = np.asarray(points, dtype=np.float64)
    fractions = np.clip(np.asarray(fractions, dtype=np.float64), 0.0, 1.0)
    cumulative = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
    total = cumulative[-1]
    if total == 0.0:  # a zero-length arrow: the object stays where it is
        return np.repeat(points[:1], len(fractions), axis=0)
    target = fractions * total
    seg = np.clip(np.searchsorted(cumulative, target, side="right") - 1, 0, len(points) - 2)
    seg_len = cumulative[seg + 1] - cumulative[seg]
    u = np.where(seg_len > 0, (target - cumulative[seg]) / np.where(seg_len > 0, seg_len, 1.0), 0.0)
    out = points[seg] + u[:, None] * (points[seg + 1] - points[seg])
    out[fractions >= 1.0] = points[-1]  # the last frame lands exactly on the arrow's tip
    return out


def displacements(points: np.ndarray, num_frames: int, easing: str) -> np.ndarray:
    """``[T, 2]`` displacement from the arrow's start at each frame (version 1's rule)."""
    t = np.linspace(0.0, 1.0, num_frames)
    return point_at_fraction(points, ease(easing, t)) - np.asarray(points, dtype=np.float64)[0]


def _timing_error(arrow: Arrow, problem: str, fix: str) -> TrackInputError:
    return TrackInputError("arrows", f"{arrow.where} {problem}", fix)


def arrow_keys(arrow: Arrow, num_frames: int) -> list[tuple[int, int]]:
    """The arrow's timing keys ``[(frame, point index), ...]`` for a video of ``num_frames``: its start,
    its timed points, its end; validated (errors name the arrow and say what to change)."""
    last = num_frames - 1
    start = 0 if arrow.start_frame is None else arrow.start_frame
    end = last if arrow.end_frame is None else arrow.end_frame
    if not 0 <= start <= last:
        raise _timing_error(arrow, f"starts at frame {start}, outside the video's frames 0..{last} "
                            f"(num_frames {num_frames}).", "set start_frame inside the video or raise num_frames.")
    if not 0 <= end <= last:
        raise _timing_error(arrow, f"ends at frame {end}, outside the video's frames 0..{last} "
                            f"(num_frames {num_frames}).", "set end_frame inside the video or raise num_frames.")
    if start >= end:
        raise _timing_error(arrow, f"starts at frame {start} and ends at frame {end}; it must end after it starts.",
                            "set start_frame < end_frame.")
    frames = list(arrow.point_frames) or [None] * len(arrow.points)
    p_last = len(arrow.points) - 1
    if frames[0] is not None and frames[0] != start:
        raise _timing_error(arrow, f"point 0 is timed at frame {frames[0]}, but the first point is reached at the "
                            f"arrow's start_frame ({start}).", f"set start_frame to {frames[0]}, or drop the frame of "
                            "point 0.")
    if frames[-1] is not None and frames[-1] != end:
        raise _timing_error(arrow, f"point {p_last} (the last) is timed at frame {frames[-1]}, but the last point is "
                            f"reached at the arrow's end_frame ({end}).", f"set end_frame to {frames[-1]}, or drop the "
                            f"frame of point {p_last}.")
    keys = [(start, 0)]
    for j in range(1, p_last):
        f = frames[j]
        if f is None:
            continue
        prev_frame, prev_point = keys[-1]
        if not start < f < end:
            raise _timing_error(arrow, f"point {j} is timed at frame {f}, outside its arrow's frames "
                                f"{start}..{end} (timed points lie strictly between start_frame and end_frame).",
                                f"time point {j} at a frame between {start} and {end}, or change the arrow's range.")
        if f <= prev_frame:
            what = "the arrow's start_frame" if prev_point == 0 else f"point {prev_point}"
            raise _timing_error(arrow, f"point {j} is timed at frame {f}, not after {what} (frame {prev_frame}); "
                                "frames must increase along the arrow.",
                                f"time point {j} after frame {prev_frame}, or drop one of the frames.")
        keys.append((f, j))
    keys.append((end, p_last))
    return keys


def arrow_motion(arrow: Arrow, num_frames: int, easing: str) -> tuple[np.ndarray, np.ndarray]:
    """``([T, 2] displacement from the arrow's start, [T] visibility)`` at each frame (the timing rule of
    the module docstring). ``easing`` is the node's, used when the arrow has none of its own."""
    points = np.asarray(arrow.points, dtype=np.float64)
    curve = arrow.easing or easing
    keys = arrow_keys(arrow, num_frames)
    moved = np.empty((num_frames, 2))
    (start, _), (end, _) = keys[0], keys[-1]
    moved[:start] = 0.0                            # still at the start before start_frame
    for (f_a, a), (f_b, b) in zip(keys, keys[1:]):
        u = np.linspace(0.0, 1.0, f_b - f_a + 1)
        moved[f_a:f_b + 1] = point_at_fraction(points[a:b + 1], ease(curve, u)) - points[0]
    moved[end + 1:] = points[-1] - points[0]       # still at the end after end_frame
    visible = np.ones(num_frames, dtype=bool)
    if arrow.visible == "range":
        visible[:start] = False
        visible[end + 1:] = False
    return moved, visible


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _frame(value: Any) -> Optional[int]:
    """An integer frame (also an integral float such as 6.0), else None."""
    if _number(value) and float(value).is_integer():
        return int(value)
    return None


def _parse_points(raw: Any, where: str, timed: bool = False) -> tuple[np.ndarray, tuple]:
    """``([P, 2] points, per-point frames)``; with ``timed`` (version 2) a point may be ``[x, y, frame]``."""
    if not isinstance(raw, list) or len(raw) < 2:
        raise TrackInputError("arrows", f"{where} needs a 'points' list of at least 2 [x, y] pairs "
                              f"(start and end), got {json.dumps(raw)[:80]}.", _EDITOR_FIX)
    frames = []
    for j, p in enumerate(raw):
        pair = isinstance(p, (list, tuple)) and len(p) in ((2, 3) if timed else (2,))
        if not (pair and _number(p[0]) and _number(p[1])):
            shape = "an [x, y] pair or [x, y, frame]" if timed else "an [x, y] pair"
            raise TrackInputError("arrows", f"{where} point {j} is {json.dumps(p)[:40]}, not {shape} of "
                                  "finite numbers.", _EDITOR_FIX)
        frame = None
        if len(p) == 3 and p[2] is not None:
            frame = _frame(p[2])
            if frame is None:
                raise TrackInputError("arrows", f"{where} point {j} has frame {json.dumps(p[2])[:20]}, not an "
                                      "integer.", "give the frame at which the path reaches the point as a whole "
                                      "number (or null for none).")
        frames.append(frame)
    points = np.asarray([[p[0], p[1]] for p in raw], dtype=np.float64)
    return points, (tuple(frames) if any(f is not None for f in frames) else ())


def _parse_object(raw: Any, where: str, num_objects: int) -> int:
    if raw is None or raw == "camera":
        return CAMERA
    if not isinstance(raw, int) or isinstance(raw, bool) or raw < 0:
        raise TrackInputError("arrows", f"{where} has object {json.dumps(raw)}; expected a mask index "
                              "(0, 1, ...) or \"camera\".", _EDITOR_FIX)
    if raw >= num_objects:
        raise TrackInputError(
            "arrows", f"{where} names object {raw}, but 'masks' holds {num_objects} mask(s) "
            f"(objects 0..{num_objects - 1}).",
            "connect a mask batch with one mask per object, or move the arrow to an existing object.")
    return raw


def _check_inside(points: np.ndarray, where: str, width: float, height: float) -> None:
    outside = (points[:, 0] < 0) | (points[:, 0] > width) | (points[:, 1] < 0) | (points[:, 1] > height)
    if outside.any():
        j = int(np.flatnonzero(outside)[0])
        x, y = points[j]
        raise TrackInputError("arrows", f"{where} point {j} ({x:g}, {y:g}) is outside the {width:g}x{height:g} image.",
                              "keep every arrow point inside the image (0 <= x <= width, 0 <= y <= height).")


def _parse_timing(raw: dict, where: str) -> dict:
    """Version 2's per-arrow fields, type-checked (ranges are checked against num_frames later)."""
    out = {}
    for key in ("start_frame", "end_frame"):
        if raw.get(key) is not None:
            frame = _frame(raw[key])
            if frame is None:
                raise TrackInputError("arrows", f"{where} has {key} {json.dumps(raw[key])[:20]}, not an integer.",
                                      f"set {key} to a frame number (0 is the first frame), or leave it out.")
            out[key] = frame
    easing = raw.get("easing")
    if easing is not None:
        if easing not in EASINGS:
            raise TrackInputError("arrows", f"{where} has easing {json.dumps(easing)[:30]}.",
                                  f"use one of {', '.join(EASINGS)}, or leave it out (the node's easing).")
        out["easing"] = easing
    visible = raw.get("visible")
    if visible is not None:
        if visible not in VISIBILITY:
            raise TrackInputError("arrows", f"{where} has visible {json.dumps(visible)[:30]}.",
                                  "use \"always\" or \"range\" (hidden before start_frame and after end_frame).")
        out["visible"] = visible
    return out


def _parse_anchors(raw: Any, num_objects: int) -> list[Anchor]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise TrackInputError("arrows", "'anchors' is not a list of {\"object\", \"point\"}.", _EDITOR_FIX)
    anchors = []
    for i, item in enumerate(raw):
        where = f"anchor {i}"
        if not isinstance(item, dict):
            raise TrackInputError("arrows", f"{where} is not an object with 'object' and 'point'.", _EDITOR_FIX)
        obj = _parse_object(item.get("object"), where, num_objects)
        p = item.get("point")
        if not (isinstance(p, (list, tuple)) and len(p) == 2 and _number(p[0]) and _number(p[1])):
            raise TrackInputError("arrows", f"{where} has point {json.dumps(p)[:40]}, not an [x, y] pair of finite "
                                  "numbers.", _EDITOR_FIX)
        anchors.append(Anchor(obj, np.asarray(p, dtype=np.float64), where))
    return anchors


def _check_anchors(anchors: Sequence[Anchor], arrows: Sequence[Arrow], width: int, height: int) -> None:
    for anchor in anchors:
        stored = np.asarray(anchor.point, dtype=np.float32)   # visibility is of the stored float32 track
        if not inside_image(stored, width, height):
            x, y = anchor.point
            raise TrackInputError("arrows", f"{anchor.where} ({x:g}, {y:g}) is outside the {width}x{height} image "
                                  "(of the masks).", "keep anchors inside the image (0 <= x < width, "
                                  "0 <= y < height).")
    camera = next((a for a in arrows if a.object == CAMERA), None)
    held = next((a for a in anchors if a.object == CAMERA), None)
    if camera is not None and held is not None:
        raise TrackInputError("arrows", f"{held.where} holds the camera (object null) while {camera.where} moves the "
                              "camera.", "delete the camera arrow, or the background anchors (\"hold camera\").")


def _parse_document(doc: dict, num_objects: int, width: int, height: int) -> Motion:
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise TrackInputError("arrows", "the arrows JSON has no integer 'version' field.", _EDITOR_FIX)
    if version not in (1, 2):
        newer = version > ARROWS_VERSION
        raise TrackInputError(
            "arrows", f"arrows JSON version {version} is {'newer than' if newer else 'not'} a version this "
            f"MotionKit reads (1, {ARROWS_VERSION}).", "update MotionKit." if newer else _EDITOR_FIX)
    v2 = version >= 2
    doc_w, doc_h = doc.get("width"), doc.get("height")
    if not (_number(doc_w) and _number(doc_h) and doc_w > 0 and doc_h > 0):
        raise TrackInputError("arrows", f"width {doc_w!r} and height {doc_h!r} must be positive numbers.", _EDITOR_FIX)
    raw_arrows = doc.get("arrows")
    if not isinstance(raw_arrows, list):
        raise TrackInputError("arrows", "the arrows JSON has no 'arrows' list.", _EDITOR_FIX)

    arrows, seen = [], {}
    for i, raw in enumerate(raw_arrows):
        where = f"arrow {i}"
        if not isinstance(raw, dict):
            raise TrackInputError("arrows", f"{where} is not an object with 'object' and 'points'.", _EDITOR_FIX)
        obj = _parse_object(raw.get("object"), where, num_objects)
        points, frames = _parse_points(raw.get("points"), where, timed=v2)
        _check_inside(points, where, doc_w, doc_h)
        if obj in seen:
            name = "the camera" if obj == CAMERA else f"object {obj}"
            raise TrackInputError("arrows", f"arrows {seen[obj]} and {i} both move {name}; an object follows one arrow.",
                                  "delete one of them, or bend a single arrow with extra points.")
        seen[obj] = i
        timing = _parse_timing(raw, where) if v2 else {}
        arrows.append(Arrow(obj, points, point_frames=frames, where=where, **timing))
    anchors = _parse_anchors(doc.get("anchors"), num_objects) if v2 else []

    if (arrows or anchors) and (doc_w, doc_h) != (width, height):
        if abs(doc_w / doc_h - width / height) > ASPECT_TOLERANCE * (width / height):
            raise TrackInputError(
                "arrows", f"the arrows were drawn on a {doc_w:g}x{doc_h:g} image but the masks are {width}x{height} "
                "(another aspect ratio).", "queue once so the editor shows this image, then redraw the arrows.")
        scale = np.array([width / doc_w, height / doc_h])
        arrows = [replace(a, points=a.points * scale) for a in arrows]
        anchors = [replace(a, point=a.point * scale) for a in anchors]
    _check_anchors(anchors, arrows, width, height)
    return Motion(tuple(arrows), tuple(anchors))


def _parse_coordinates(tracks: list, num_objects: int, width: int, height: int) -> Motion:
    if tracks and isinstance(tracks[0], dict):  # a single track
        tracks = [tracks]
    if len(tracks) > num_objects:
        raise TrackInputError(
            "arrows", f"the coordinate string has {len(tracks)} tracks but 'masks' holds {num_objects} mask(s); "
            "track i moves mask i.", "connect one mask per track, or remove tracks in the spline editor.")
    arrows = []
    for i, track in enumerate(tracks):
        where = f"coordinate track {i}"
        if not isinstance(track, list) or not track or not all(
                isinstance(p, dict) and _number(p.get("x")) and _number(p.get("y")) for p in track):
            raise TrackInputError("arrows", f"{where} is not a list of {{\"x\": .., \"y\": ..}} points.",
                                  "connect the coord_str output of a KJNodes Spline Editor, or use the arrow editor.")
        points = np.asarray([[p["x"], p["y"]] for p in track], dtype=np.float64)
        if len(points) == 1:  # a static point (KJNodes): the object stays
            points = np.repeat(points, 2, axis=0)
        _check_inside(points, where, width, height)
        arrows.append(Arrow(i, points, where=where))
    return Motion(tuple(arrows))


def parse_motion(text: Any, num_objects: int, width: int, height: int, num_frames: Optional[int] = None) -> Motion:
    """Validated arrows and anchors in pixels of the ``width x height`` masks, from arrows JSON (v1, v2) or a
    KJNodes coordinate string. With ``num_frames`` each arrow's timing is checked against it too."""
    if not isinstance(text, str):
        raise TrackInputError("arrows", f"expected a STRING, got {type(text).__name__}.", _EDITOR_FIX)
    stripped = text.strip()
    try:
        data = json.loads(stripped)
    except json.JSONDecodeError as first_error:
        try:  # KJNodes / core parsers also accept single-quoted coordinate strings
            data = json.loads(stripped.replace("'", '"'))
        except json.JSONDecodeError:
            raise TrackInputError("arrows", f"not valid JSON ({first_error.msg} at character {first_error.pos}).",
                                  _EDITOR_FIX) from None
        if not isinstance(data, list):
            raise TrackInputError("arrows", "not valid JSON (single quotes are only accepted in coordinate strings).",
                                  _EDITOR_FIX)
    if isinstance(data, dict):
        motion = _parse_document(data, num_objects, width, height)
    elif isinstance(data, list):
        motion = _parse_coordinates(data, num_objects, width, height)
    else:
        raise TrackInputError("arrows", f"expected a JSON object (arrows v1 or v{ARROWS_VERSION}) or a coordinate "
                              f"list, got {type(data).__name__}.", _EDITOR_FIX)
    if num_frames is not None:
        for arrow in motion.arrows:
            arrow_keys(arrow, num_frames)
    return motion


def parse_arrows(text: Any, num_objects: int, width: int, height: int) -> list[Arrow]:
    """The arrows of :func:`parse_motion` (anchors dropped; kept for callers of version 1)."""
    return list(parse_motion(text, num_objects, width, height).arrows)


def arrows_document(width: float, height: float, arrows: Sequence[tuple[Any, Sequence[Sequence[float]]]]) -> str:
    """Arrows JSON v1 for ``[(object or "camera", [[x, y], ...]), ...]`` (what the editor writes)."""
    return json.dumps({"version": ARROWS_V1, "width": width, "height": height,
                       "arrows": [{"object": obj, "points": [list(map(float, p)) for p in pts]} for obj, pts in arrows]})
