// MotionKit arrow editor: geometry and (de)serialisation, no DOM and no ComfyUI imports.
// Mirrors modules/arrows.py (easing, arc-length interpolation, the arrows JSON v1) and
// modules/track_drawing.py (the palette); tests/test_arrow_editor_browser.py checks they agree.
// ComfyUI loads every web/js/*.js as an extension module: this one only exports functions.

export const ARROWS_VERSION = 1;
export const CAMERA = "camera";

// Same values as PALETTE / CAMERA_COLOR in modules/track_drawing.py.
export const PALETTE = [
  [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
  [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128], [170, 110, 40],
];
export const CAMERA_COLOR = [255, 255, 255];

export function objectRgb(object) {
  return object === CAMERA ? CAMERA_COLOR : PALETTE[object % PALETTE.length];
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

function cumulativeLengths(points) {
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

// The point at arc-length fraction s in [0, 1] of a polyline [[x, y], ...].
export function pointAt(points, s) {
  const c = cumulativeLengths(points);
  const total = c[c.length - 1];
  if (total === 0 || s <= 0) return [points[0][0], points[0][1]];
  if (s >= 1) return [points[points.length - 1][0], points[points.length - 1][1]];
  const target = s * total;
  let i = 0;
  while (i < points.length - 2 && c[i + 1] <= target) i++;
  const seg = c[i + 1] - c[i];
  const u = seg > 0 ? (target - c[i]) / seg : 0;
  return [points[i][0] + u * (points[i + 1][0] - points[i][0]), points[i][1] + u * (points[i + 1][1] - points[i][1])];
}

// Where the object's anchor is at each of numFrames frames (frame t: easing(t / (numFrames - 1))).
export function frameTicks(points, numFrames, easing) {
  const ticks = [];
  for (let t = 0; t < numFrames; t++) ticks.push(pointAt(points, ease(easing, numFrames > 1 ? t / (numFrames - 1) : 0)));
  return ticks;
}

export function distanceToSegment(p, a, b) {
  const dx = b[0] - a[0], dy = b[1] - a[1];
  const l2 = dx * dx + dy * dy;
  const u = l2 === 0 ? 0 : Math.max(0, Math.min(1, ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / l2));
  return Math.hypot(p[0] - (a[0] + u * dx), p[1] - (a[1] + u * dy));
}

// --- the arrows document (JSON v1) ------------------------------------------------------------------

export function emptyDocument(width, height) {
  return { version: ARROWS_VERSION, width, height, arrows: [] };
}

// Parse the widget value. Returns {doc, problem}: doc is editable (unknown fields kept) or null when the
// value is not arrows JSON v1 (e.g. a KJNodes coordinate string), problem says why.
export function parseDocument(text) {
  let data;
  try {
    data = JSON.parse(text);
  } catch (e) {
    return { doc: null, problem: "the arrows value is not JSON" };
  }
  if (Array.isArray(data)) return { doc: null, problem: "the arrows value is a coordinate string (track i moves mask i)" };
  if (!data || typeof data !== "object") return { doc: null, problem: "the arrows value is not a JSON object" };
  if (data.version !== ARROWS_VERSION) return { doc: null, problem: `arrows JSON version ${data.version} is not ${ARROWS_VERSION}` };
  if (!(data.width > 0 && data.height > 0) || !Array.isArray(data.arrows)) {
    return { doc: null, problem: "the arrows JSON lacks width, height or arrows" };
  }
  const arrows = data.arrows.filter((a) => a && Array.isArray(a.points) && a.points.length >= 2 &&
    a.points.every((p) => Array.isArray(p) && p.length === 2 && p.every(Number.isFinite)));
  return { doc: { ...data, arrows: arrows.map((a) => ({ ...a, object: normaliseObject(a.object) })) }, problem: null };
}

export function normaliseObject(object) {
  return Number.isInteger(object) && object >= 0 ? object : CAMERA;
}

const round2 = (v) => Math.round(v * 100) / 100;

export function serializeDocument(doc) {
  return JSON.stringify({
    ...doc,
    version: ARROWS_VERSION,
    arrows: doc.arrows.map((a) => ({ ...a, points: a.points.map(([x, y]) => [round2(x), round2(y)]) })),
  });
}

export function clampPoint([x, y], width, height) {
  return [Math.max(0, Math.min(width, x)), Math.max(0, Math.min(height, y))];
}

// Points scaled from the document's size to width x height (used when the image size changes).
export function rescaleDocument(doc, width, height) {
  const sx = width / doc.width, sy = height / doc.height;
  return { ...doc, width, height, arrows: doc.arrows.map((a) => ({ ...a, points: a.points.map(([x, y]) => [x * sx, y * sy]) })) };
}

// The arrow of `object` is replaced (one arrow per object); returns the new arrow's index.
export function setArrow(doc, object, points) {
  const keep = doc.arrows.filter((a) => a.object !== object);
  doc.arrows = [...keep, { object, points }];
  return doc.arrows.length - 1;
}

export function reverseArrow(arrow) {
  arrow.points = arrow.points.slice().reverse();
}

// What is under p (image pixels): a vertex, a segment's midpoint handle (selected arrow only) or a segment.
export function hitTest(doc, p, tolerance, selected = -1) {
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
