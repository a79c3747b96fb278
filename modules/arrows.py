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
* Unknown fields (top level and per arrow) are ignored, so later versions can add fields.

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
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .tracks import CAMERA, TrackInputError

ARROWS_VERSION = 1
EASINGS = ("linear", "ease-in", "ease-out", "ease-in-out")
DEFAULT_ARROWS = json.dumps({"version": ARROWS_VERSION, "width": 512, "height": 512, "arrows": []})
ASPECT_TOLERANCE = 0.01  # relative; a resized copy keeps its aspect ratio within rounding

_EDITOR_FIX = "redraw the arrows in the node's editor (it writes valid JSON), or see the node's description."


@dataclass(frozen=True)
class Arrow:
    object: int              # mask index, or CAMERA
    points: np.ndarray       # [P >= 2, 2] float64, pixels of the masks' image


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
    """``[T, 2]`` displacement from the arrow's start at each frame."""
    t = np.linspace(0.0, 1.0, num_frames)
    return point_at_fraction(points, ease(easing, t)) - np.asarray(points, dtype=np.float64)[0]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _parse_points(raw: Any, where: str) -> np.ndarray:
    if not isinstance(raw, list) or len(raw) < 2:
        raise TrackInputError("arrows", f"{where} needs a 'points' list of at least 2 [x, y] pairs "
                              f"(start and end), got {json.dumps(raw)[:80]}.", _EDITOR_FIX)
    for j, p in enumerate(raw):
        if not (isinstance(p, (list, tuple)) and len(p) == 2 and _number(p[0]) and _number(p[1])):
            raise TrackInputError("arrows", f"{where} point {j} is {json.dumps(p)[:40]}, not an [x, y] pair of "
                                  "finite numbers.", _EDITOR_FIX)
    return np.asarray(raw, dtype=np.float64)


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


def _parse_document(doc: dict, num_objects: int, width: int, height: int) -> list[Arrow]:
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise TrackInputError("arrows", "the arrows JSON has no integer 'version' field.", _EDITOR_FIX)
    if version != ARROWS_VERSION:
        newer = version > ARROWS_VERSION
        raise TrackInputError(
            "arrows", f"arrows JSON version {version} is {'newer than' if newer else 'not'} the version this "
            f"MotionKit reads ({ARROWS_VERSION}).", "update MotionKit." if newer else _EDITOR_FIX)
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
        points = _parse_points(raw.get("points"), where)
        _check_inside(points, where, doc_w, doc_h)
        if obj in seen:
            name = "the camera" if obj == CAMERA else f"object {obj}"
            raise TrackInputError("arrows", f"arrows {seen[obj]} and {i} both move {name}; an object follows one arrow.",
                                  "delete one of them, or bend a single arrow with extra points.")
        seen[obj] = i
        arrows.append(Arrow(obj, points))

    if arrows and (doc_w, doc_h) != (width, height):
        if abs(doc_w / doc_h - width / height) > ASPECT_TOLERANCE * (width / height):
            raise TrackInputError(
                "arrows", f"the arrows were drawn on a {doc_w:g}x{doc_h:g} image but the masks are {width}x{height} "
                "(another aspect ratio).", "queue once so the editor shows this image, then redraw the arrows.")
        scale = np.array([width / doc_w, height / doc_h])
        arrows = [Arrow(a.object, a.points * scale) for a in arrows]
    return arrows


def _parse_coordinates(tracks: list, num_objects: int, width: int, height: int) -> list[Arrow]:
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
        arrows.append(Arrow(i, points))
    return arrows


def parse_arrows(text: Any, num_objects: int, width: int, height: int) -> list[Arrow]:
    """Validated arrows in pixels of the ``width x height`` masks, from arrows JSON v1 or a KJNodes
    coordinate string."""
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
        return _parse_document(data, num_objects, width, height)
    if isinstance(data, list):
        return _parse_coordinates(data, num_objects, width, height)
    raise TrackInputError("arrows", f"expected a JSON object (arrows v{ARROWS_VERSION}) or a coordinate list, got "
                          f"{type(data).__name__}.", _EDITOR_FIX)


def arrows_document(width: float, height: float, arrows: Sequence[tuple[Any, Sequence[Sequence[float]]]]) -> str:
    """Arrows JSON v1 for ``[(object or "camera", [[x, y], ...]), ...]`` (what the editor writes)."""
    return json.dumps({"version": ARROWS_VERSION, "width": width, "height": height,
                       "arrows": [{"object": obj, "points": [list(map(float, p)) for p in pts]} for obj, pts in arrows]})
