// MotionKit Click to Mask: the points JSON (v1), editor state and geometry, no DOM and no ComfyUI imports.
// Mirrors modules/sam.py (parse_points, PALETTE, OVERLAY_ALPHA); tests/test_click_to_mask_browser.py checks
// that they agree. ComfyUI loads every web/js/*.js as an extension module: this one only exports functions.

export const POINTS_VERSION = 1;

// Same values as PALETTE and OVERLAY_ALPHA in modules/sam.py (RGB 0..1), so the node's preview output and
// the editor colour each object alike.
export const PALETTE = [
  [0.12, 0.56, 1.0], [1.0, 0.27, 0.27], [0.2, 0.8, 0.3], [1.0, 0.75, 0.1],
  [0.7, 0.35, 1.0], [0.0, 0.85, 0.85], [1.0, 0.45, 0.75], [0.6, 0.45, 0.25],
];
export const OVERLAY_ALPHA = 0.5;

export function objectRgb255(index) {
  return PALETTE[index % PALETTE.length].map((c) => Math.round(c * 255));
}

export function objectCss(index, alpha = 1) {
  const [r, g, b] = objectRgb255(index);
  return `rgba(${r},${g},${b},${alpha})`;
}

export function emptyObject() {
  return { positive: [], negative: [], box: null };
}

/** Editor state: the image size the points belong to, the objects (possibly one empty, being started). */
export function emptyState() {
  return { width: 0, height: 0, objects: [emptyObject()], active: 0 };
}

function pairList(v) {
  if (!Array.isArray(v)) return [];
  return v.filter((p) => Array.isArray(p) && p.length === 2 && p.every(Number.isFinite)).map((p) => [p[0], p[1]]);
}

/**
 * Editor state from the widget text. Returns `{state, error}`: text the editor cannot edit (another
 * version, a KJNodes string) gives an error message and an empty state, and is left untouched until the
 * user clicks.
 */
export function stateFromText(text) {
  const state = emptyState();
  if (typeof text !== "string" || !text.trim()) return { state, error: null };
  let data;
  try {
    data = JSON.parse(text);
  } catch (e) {
    return { state, error: "The points text is not valid JSON; clicking replaces it." };
  }
  if (Array.isArray(data)) {
    const positive = data.filter((p) => p && Number.isFinite(p.x) && Number.isFinite(p.y)).map((p) => [p.x, p.y]);
    state.objects = [{ positive, negative: [], box: null }];
    return { state, error: null };
  }
  if (!data || typeof data !== "object" || data.version !== POINTS_VERSION || !Array.isArray(data.objects)) {
    return { state, error: `Points format version ${data && data.version} is not editable here (version 1 is).` };
  }
  state.width = Number.isInteger(data.width) ? data.width : 0;
  state.height = Number.isInteger(data.height) ? data.height : 0;
  state.objects = data.objects.map((o) => ({
    positive: pairList(o && o.positive),
    negative: pairList(o && o.negative),
    box: o && Array.isArray(o.box) && o.box.length === 4 && o.box.every(Number.isFinite) ? o.box.slice() : null,
  }));
  if (!state.objects.length) state.objects = [emptyObject()];
  state.active = state.objects.length - 1;
  return { state, error: null };
}

export function isEmptyObject(o) {
  return !o.positive.length && !o.negative.length && !o.box;
}

/** Objects SAM can segment: at least one positive point or a box. */
export function isSegmentable(o) {
  return o.positive.length > 0 || !!o.box;
}

/** The widget text: version-1 JSON of the non-empty objects, or "" when there are none. */
export function stateToText(state) {
  const objects = state.objects.filter((o) => !isEmptyObject(o));
  if (!objects.length) return "";
  return JSON.stringify({
    version: POINTS_VERSION, width: state.width, height: state.height,
    objects: objects.map((o) => ({ positive: o.positive, negative: o.negative, box: o.box })),
  });
}

/** The JSON the preview route gets: only segmentable objects, and which editor object each one is. */
export function previewPayload(state) {
  const indices = [];
  const objects = [];
  state.objects.forEach((o, i) => {
    if (isSegmentable(o)) {
      indices.push(i);
      objects.push({ positive: o.positive, negative: o.negative, box: o.box });
    }
  });
  return { indices, points: { version: POINTS_VERSION, width: state.width, height: state.height, objects } };
}

/** Points keep their place on the image when the image changes size (another file of another size). */
export function rescaleState(state, width, height) {
  if (!state.width || !state.height || (state.width === width && state.height === height)) {
    state.width = width;
    state.height = height;
    return state;
  }
  const sx = width / state.width;
  const sy = height / state.height;
  const px = ([x, y]) => [clamp(Math.floor((x + 0.5) * sx), 0, width - 1), clamp(Math.floor((y + 0.5) * sy), 0, height - 1)];
  for (const o of state.objects) {
    o.positive = o.positive.map(px);
    o.negative = o.negative.map(px);
    if (o.box) o.box = [Math.round(o.box[0] * sx), Math.round(o.box[1] * sy), Math.round(o.box[2] * sx), Math.round(o.box[3] * sy)];
  }
  state.width = width;
  state.height = height;
  return state;
}

export function clamp(v, lo, hi) {
  return Math.min(hi, Math.max(lo, v));
}

/** The pixel a click lands on (its index, as SAM reads point coordinates), or null off the image. */
export function pixelAt(x, y, width, height) {
  if (!(x >= 0 && y >= 0 && x < width && y < height)) return null;
  return [Math.floor(x), Math.floor(y)];
}

/** Largest rectangle of the image's aspect inside a box: `{x, y, scale}` maps image px to box px. */
export function fitRect(imageW, imageH, boxW, boxH) {
  const scale = Math.min(boxW / imageW, boxH / imageH);
  return { x: (boxW - imageW * scale) / 2, y: (boxH - imageH * scale) / 2, scale };
}

/**
 * The point nearest to `(x, y)` (image px) within `radius` (image px), as `{object, kind, index}`.
 * Later objects and later points win ties, matching the drawing order (drawn on top).
 */
export function hitPoint(state, x, y, radius) {
  let best = null;
  let bestD = radius * radius;
  state.objects.forEach((o, object) => {
    for (const kind of ["positive", "negative"]) {
      o[kind].forEach(([px, py], index) => {
        const d = (px + 0.5 - x) ** 2 + (py + 0.5 - y) ** 2;
        if (d <= bestD) {
          bestD = d;
          best = { object, kind, index };
        }
      });
    }
  });
  return best;
}

/** A ComfyUI image reference from a Load Image widget value ("sub/name.png [output]" style annotations). */
export function imageRef(value, defaultType = "input") {
  if (typeof value !== "string" || !value) return null;
  let name = value;
  let type = defaultType;
  const m = /^(.*) \[(input|output|temp)\]$/.exec(value);
  if (m) {
    name = m[1];
    type = m[2];
  }
  const cut = name.lastIndexOf("/");
  return { filename: name.slice(cut + 1), subfolder: cut >= 0 ? name.slice(0, cut) : "", type };
}
