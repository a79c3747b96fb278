// MotionKit arrow editor: geometry, timing and (de)serialisation, no DOM and no ComfyUI imports.
// Mirrors modules/arrows.py (easing, arc-length interpolation, the arrows JSON v1 and v2, the per-arrow
// timing model) and modules/track_drawing.py (the palette); tests/test_arrow_editor_browser.py checks they
// agree. ComfyUI loads every web/js/*.js as an extension module: this one only exports functions.
//
// Arrows JSON (see modules/arrows.py):
//   {"version": 1|2, "width": W, "height": H,
//    "arrows": [{"object": 0 | "camera", "points": [[x, y], [x, y, frame], ..., [x, y]],
//                "start_frame": 2, "end_frame": 10, "easing": "ease-in-out", "visible": "always" | "range"}],
//    "anchors": [{"object": 1 | null, "point": [x, y]}]}
// Version 2 adds the optional timing keys, a point's third element (the frame the path reaches it on) and
// the anchors (points that stay still; object null: the background). The editor writes version 1 while no
// version-2 key is used, so such a workflow stays readable by an older MotionKit.

export const ARROWS_VERSION = 1;       // what a document without version-2 keys is written as
export const ARROWS_VERSION_MAX = 2;   // the newest version the editor reads and writes
export const CAMERA = "camera";
export const BACKGROUND = null;        // the object of a background anchor
export const TIMING_KEYS = ["start_frame", "end_frame", "easing", "visible"];
export const VISIBILITY = ["always", "range"];
export const HOLD_CAMERA_INSET = 0.05; // "hold camera": background anchors this far inside the border

// Same values as PALETTE / CAMERA_COLOR in modules/track_drawing.py.
export const PALETTE = [
  [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
  [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128], [170, 110, 40],
];
export const CAMERA_COLOR = [255, 255, 255];

export function objectRgb(object) {
  return object === CAMERA || object === null || object === undefined ? CAMERA_COLOR : PALETTE[object % PALETTE.length];
}

export function objectColor(object, alpha = 1) {
  const [r, g, b] = objectRgb(object);
  return alpha >= 1 ? `rgb(${r},${g},${b})` : `rgba(${r},${g},${b},${alpha})`;
}

// Same curves as modules/arrows.py ease() (core GenerateTracks' easings).
export const EASINGS = {
  "linear": (t) => t,
  "ease-in": (t) => t * t,
  "ease-out": (t) => 1 - (1 - t) * (1 - t),
  "ease-in-out": (t) => t * t * (3 - 2 * t),
};

export function ease(name, t) {
  return (EASINGS[name] || EASINGS.linear)(t);
}

export function cumulativeLengths(points) {
  const c = [0];
  for (let i = 1; i < points.length; i++) {
    c.push(c[i - 1] + Math.hypot(points[i][0] - points[i - 1][0], points[i][1] - points[i - 1][1]));
  }
  return c;
}

export function pathLength(points) {
  const c = cumulativeLengths(points);
  return c[c.length - 1];
}

// The point at arc length `target` (pixels from the start) of a polyline, `c` its cumulative lengths.
function pointAtLength(points, c, target) {
  const total = c[c.length - 1];
  if (total === 0 || target <= 0) return [points[0][0], points[0][1]];
  if (target >= total) return [points[points.length - 1][0], points[points.length - 1][1]];
  let i = 0;
  while (i < points.length - 2 && c[i + 1] <= target) i++;
  const seg = c[i + 1] - c[i];
  const u = seg > 0 ? (target - c[i]) / seg : 0;
  return [points[i][0] + u * (points[i + 1][0] - points[i][0]), points[i][1] + u * (points[i + 1][1] - points[i][1])];
}

// The point at arc-length fraction s in [0, 1] of a polyline [[x, y], ...].
export function pointAt(points, s) {
  const c = cumulativeLengths(points);
  return pointAtLength(points, c, s >= 1 ? Infinity : s * c[c.length - 1]);
}

// Where the object's anchor is at each of numFrames frames (frame t: easing(t / (numFrames - 1))): the
// version-1 motion, an arrow without timing keys over the whole video.
export function frameTicks(points, numFrames, easing) {
  const ticks = [];
  for (let t = 0; t < numFrames; t++) ticks.push(pointAt(points, ease(easing, numFrames > 1 ? t / (numFrames - 1) : 0)));
  return ticks;
}

const clampInt = (v, lo, hi) => Math.max(lo, Math.min(hi, Math.round(v)));

/** An arrow's timing for a video of numFrames frames: {start, end, easing, visible, keys}. `keys` are
 * [frame, point index] pairs, strictly increasing in both: the first point at start, the points that carry a
 * frame, the last point at end. Keys the document gets wrong (out of order, outside the range) are ignored
 * here; the editor never writes them. */
export function arrowTiming(arrow, numFrames, defaultEasing = "linear") {
  const last = Math.max(0, numFrames - 1);
  const start = Number.isInteger(arrow.start_frame) ? clampInt(arrow.start_frame, 0, last) : 0;
  const end = Number.isInteger(arrow.end_frame) ? clampInt(arrow.end_frame, start, last) : Math.max(start, last);
  const easing = EASINGS[arrow.easing] ? arrow.easing : (EASINGS[defaultEasing] ? defaultEasing : "linear");
  const n = arrow.points.length;
  const keys = [[start, 0]];
  for (let j = 1; j < n - 1; j++) {
    const f = arrow.points[j][2];
    if (Number.isInteger(f) && f > keys[keys.length - 1][0] && f < end) keys.push([f, j]);
  }
  keys.push([end, n - 1]);
  return { start, end, easing, visible: arrow.visible === "range" ? "range" : "always", keys };
}

/** The arrow's point at each frame: still at its start before start_frame, at its end from end_frame on;
 * between two keys it runs along the arc length with the arrow's easing (per key-to-key segment). Without
 * timing keys this is frameTicks(points, numFrames, easing). */
export function arrowFrames(arrow, numFrames, defaultEasing = "linear") {
  const { start, end, easing, keys } = arrowTiming(arrow, numFrames, defaultEasing);
  const pts = arrow.points;
  const c = cumulativeLengths(pts);
  const out = [];
  let k = 0;
  for (let t = 0; t < numFrames; t++) {
    if (t >= end) { out.push(pointAtLength(pts, c, Infinity)); continue; }
    if (t <= start) { out.push([pts[0][0], pts[0][1]]); continue; }
    while (k < keys.length - 2 && keys[k + 1][0] <= t) k++;
    const [f0, j0] = keys[k], [f1, j1] = keys[k + 1];
    const u = ease(easing, (t - f0) / (f1 - f0));
    out.push(pointAtLength(pts, c, c[j0] + u * (c[j1] - c[j0])));
  }
  return out;
}

/** Whether the arrow's object is shown at each frame ("range": only from start_frame to end_frame). */
export function arrowVisibility(arrow, numFrames) {
  const { start, end, visible } = arrowTiming(arrow, numFrames);
  return [...Array(numFrames).keys()].map((t) => visible === "always" || (t >= start && t <= end));
}

/** The 8 background anchors of "hold camera": corners and edge midpoints, inset by HOLD_CAMERA_INSET. */
export function holdCameraPoints(width, height, inset = HOLD_CAMERA_INSET) {
  const xs = [inset * width, width / 2, (1 - inset) * width], ys = [inset * height, height / 2, (1 - inset) * height];
  const out = [];
  for (const y of ys) for (const x of xs) if (!(x === xs[1] && y === ys[1])) out.push([x, y]);
  return out;
}

export function distanceToSegment(p, a, b) {
  const dx = b[0] - a[0], dy = b[1] - a[1];
  const l2 = dx * dx + dy * dy;
  const u = l2 === 0 ? 0 : Math.max(0, Math.min(1, ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / l2));
  return Math.hypot(p[0] - (a[0] + u * dx), p[1] - (a[1] + u * dy));
}

// --- the arrows document (JSON v1 / v2) --------------------------------------------------------------

export function emptyDocument(width, height) {
  return { version: ARROWS_VERSION, width, height, arrows: [] };
}

const finitePair = (p) => Array.isArray(p) && p.length >= 2 && Number.isFinite(p[0]) && Number.isFinite(p[1]);
// [x, y] or [x, y, frame] (frame null: none, as modules/arrows.py reads it)
const isPoint = (p) => finitePair(p) && (p.length === 2 || (p.length === 3 && (p[2] === null || (Number.isInteger(p[2]) && p[2] >= 0))));
const copyPoint = (p) => (Number.isInteger(p[2]) ? [p[0], p[1], p[2]] : [p[0], p[1]]);

// Parse the widget value. Returns {doc, problem}: doc is editable (unknown fields kept) or null when the
// value is not arrows JSON v1/v2 (e.g. a KJNodes coordinate string), problem says why.
export function parseDocument(text) {
  let data;
  try {
    data = JSON.parse(text);
  } catch (e) {
    return { doc: null, problem: "the arrows value is not JSON" };
  }
  if (Array.isArray(data)) return { doc: null, problem: "the arrows value is a coordinate string (track i moves mask i)" };
  if (!data || typeof data !== "object") return { doc: null, problem: "the arrows value is not a JSON object" };
  if (!Number.isInteger(data.version) || data.version < 1 || data.version > ARROWS_VERSION_MAX) {
    return { doc: null, problem: `arrows JSON version ${data.version} is not one this editor reads (1 or ${ARROWS_VERSION_MAX})` };
  }
  if (!(data.width > 0 && data.height > 0) || !Array.isArray(data.arrows)) {
    return { doc: null, problem: "the arrows JSON lacks width, height or arrows" };
  }
  const arrows = data.arrows.filter((a) => a && Array.isArray(a.points) && a.points.length >= 2 && a.points.every(isPoint));
  const doc = { ...data, arrows: arrows.map((a) => ({ ...a, object: normaliseObject(a.object), points: a.points.map(copyPoint) })) };
  if (Array.isArray(data.anchors)) {
    doc.anchors = data.anchors.filter((a) => a && finitePair(a.point))
      .map((a) => ({ ...a, object: anchorObject(a.object), point: [a.point[0], a.point[1]] }));
  } else {
    delete doc.anchors;
  }
  return { doc, problem: null };
}

export function normaliseObject(object) {
  return Number.isInteger(object) && object >= 0 ? object : CAMERA;
}

/** An anchor's object: a mask index, or null (the background). */
export function anchorObject(object) {
  return Number.isInteger(object) && object >= 0 ? object : BACKGROUND;
}

const round2 = (v) => Math.round(v * 100) / 100;

/** Whether the document uses anything of version 2 (then it is written as version 2). */
export function usesVersion2(doc) {
  return (doc.anchors?.length ?? 0) > 0 ||
    doc.arrows.some((a) => TIMING_KEYS.some((k) => a[k] !== undefined) || a.points.some((p) => p.length > 2));
}

export function serializeDocument(doc) {
  const arrows = doc.arrows.map((a) => {
    const out = { ...a, points: a.points.map((p) => (p.length > 2 && Number.isInteger(p[2]) ? [round2(p[0]), round2(p[1]), p[2]] : [round2(p[0]), round2(p[1])])) };
    for (const k of TIMING_KEYS) if (out[k] === undefined || out[k] === null) delete out[k];
    return out;
  });
  const anchors = (doc.anchors || []).map((a) => ({ ...a, object: anchorObject(a.object), point: [round2(a.point[0]), round2(a.point[1])] }));
  const out = { ...doc, arrows };
  if (anchors.length) out.anchors = anchors; else delete out.anchors;
  out.version = usesVersion2(out) ? ARROWS_VERSION_MAX : ARROWS_VERSION;
  // the version first, as the editor always wrote it
  const { version, ...rest } = out;
  return JSON.stringify({ version, ...rest });
}

export function clampPoint([x, y], width, height) {
  return [Math.max(0, Math.min(width, x)), Math.max(0, Math.min(height, y))];
}

// Points scaled from the document's size to width x height (used when the image size changes); a point's
// frame and everything else stay.
export function rescaleDocument(doc, width, height) {
  const sx = width / doc.width, sy = height / doc.height;
  const out = { ...doc, width, height,
    arrows: doc.arrows.map((a) => ({ ...a, points: a.points.map(([x, y, ...f]) => [x * sx, y * sy, ...f]) })) };
  if (doc.anchors) out.anchors = doc.anchors.map((a) => ({ ...a, point: [a.point[0] * sx, a.point[1] * sy] }));
  return out;
}

// The arrow of `object` is replaced (one arrow per object), keeping the old arrow's start/end frame, easing
// and visibility (a redrawn path keeps its timing); returns the new arrow's index.
export function setArrow(doc, object, points) {
  const old = doc.arrows.find((a) => a.object === object);
  const keep = doc.arrows.filter((a) => a.object !== object);
  const arrow = { object, points };
  for (const k of TIMING_KEYS) if (old && old[k] !== undefined) arrow[k] = old[k];
  doc.arrows = [...keep, arrow];
  return doc.arrows.length - 1;
}

// Reversed: the path runs the other way over the same frames (a point's frame f becomes start + end - f).
export function reverseArrow(arrow, numFrames = null) {
  const timed = arrow.points.some((p) => p.length > 2);
  if (!timed || !numFrames) {
    arrow.points = arrow.points.slice().reverse().map(([x, y, ...f]) => (timed ? [x, y, ...f] : [x, y]));
    return;
  }
  const { start, end } = arrowTiming(arrow, numFrames);
  arrow.points = arrow.points.slice().reverse().map(([x, y, f]) => (Number.isInteger(f) ? [x, y, start + end - f] : [x, y]));
}

/** The frames a point of the arrow may be given: strictly between its neighbouring keys. [lo, hi] or null
 * for the first and last point (they are at start_frame and end_frame). */
export function pointFrameRange(arrow, index, numFrames) {
  const n = arrow.points.length;
  if (index <= 0 || index >= n - 1) return null;
  const { start, end } = arrowTiming(arrow, numFrames);
  let lo = start, hi = end;
  for (let j = index - 1; j > 0; j--) if (Number.isInteger(arrow.points[j][2])) { lo = arrow.points[j][2]; break; }
  for (let j = index + 1; j < n - 1; j++) if (Number.isInteger(arrow.points[j][2])) { hi = arrow.points[j][2]; break; }
  return hi - lo >= 2 ? [lo + 1, hi - 1] : null;
}

/** The frames start_frame and end_frame may take, given the points' own frames: [startMax, endMin]. */
export function rangeLimits(arrow) {
  const frames = arrow.points.slice(1, -1).map((p) => p[2]).filter(Number.isInteger);
  return frames.length ? [Math.min(...frames) - 1, Math.max(...frames) + 1] : [null, null];
}

// What is under p (image pixels): an anchor, a vertex, a segment's midpoint handle (selected arrow only) or
// a segment.
export function hitTest(doc, p, tolerance, selected = -1) {
  const anchors = doc.anchors || [];
  for (let i = anchors.length - 1; i >= 0; i--) {
    const q = anchors[i].point;
    if (Math.hypot(p[0] - q[0], p[1] - q[1]) <= tolerance) return { kind: "anchor", anchor: i };
  }
  const order = doc.arrows.map((_, i) => i).sort((a, b) => (b === selected) - (a === selected));
  for (const i of order) {
    const pts = doc.arrows[i].points;
    for (let j = 0; j < pts.length; j++) {
      if (Math.hypot(p[0] - pts[j][0], p[1] - pts[j][1]) <= tolerance) return { arrow: i, kind: "vertex", index: j };
    }
  }
  if (selected >= 0 && selected < doc.arrows.length) {
    const pts = doc.arrows[selected].points;
    for (let j = 0; j < pts.length - 1; j++) {
      const mid = [(pts[j][0] + pts[j + 1][0]) / 2, (pts[j][1] + pts[j + 1][1]) / 2];
      if (Math.hypot(p[0] - mid[0], p[1] - mid[1]) <= tolerance) return { arrow: selected, kind: "midpoint", index: j };
    }
  }
  for (const i of order) {
    const pts = doc.arrows[i].points;
    for (let j = 0; j < pts.length - 1; j++) {
      if (distanceToSegment(p, pts[j], pts[j + 1]) <= tolerance) return { arrow: i, kind: "segment", index: j };
    }
  }
  return null;
}
