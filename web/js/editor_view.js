// MotionKit: what both in-node editors (Click to Mask, Arrows to Trajectories) share for looking at and
// editing their image: the letterboxed, zoomable view and the undo/redo history. No DOM, no ComfyUI imports;
// ComfyUI loads every web/js/*.js as an extension module, this one only exports.
//
// View: the image is fitted into the editor's canvas keeping its aspect ratio (letterbox), at any node size;
// zoom (1 = fitted, up to MAX_ZOOM) and pan move it inside the canvas. The mapping image px -> canvas CSS px
// is `canvas = offset + image * scale`.
//
// History: snapshots of the editor's saved value (the hidden widget's string), so undo/redo restore exactly
// what was saved. One entry per user action (a whole drag is one). Neither the view nor the history is saved:
// a page reload, a workflow tab switch or a pasted copy starts fitted with an empty history (the data itself
// is in the widget and is restored).

export const MAX_ZOOM = 16;
export const HISTORY_LIMIT = 200;

export function newView() {
  return { zoom: 1, panX: 0, panY: 0 };
}

/** The mapping of an imageW x imageH image into a boxW x boxH canvas under `view`:
 * {x, y, scale, fitScale}, canvas = (x, y) + image * scale. */
export function viewFit(imageW, imageH, boxW, boxH, view = null) {
  const fitScale = Math.max(1e-6, Math.min(boxW / imageW, boxH / imageH));
  const zoom = view ? view.zoom : 1;
  const scale = fitScale * zoom;
  const x = (boxW - imageW * scale) / 2 + (view ? view.panX : 0);
  const y = (boxH - imageH * scale) / 2 + (view ? view.panY : 0);
  return { x, y, scale, fitScale };
}

/** Keep at least a quarter of the canvas covered by the image; zoom 1 is always the plain fit. */
export function clampView(view, imageW, imageH, boxW, boxH) {
  view.zoom = Math.max(1, Math.min(MAX_ZOOM, view.zoom));
  if (view.zoom === 1) {
    view.panX = 0;
    view.panY = 0;
    return view;
  }
  const fit = viewFit(imageW, imageH, boxW, boxH, { zoom: view.zoom, panX: 0, panY: 0 });
  const w = imageW * fit.scale, h = imageH * fit.scale;
  const limX = Math.max(0, (w - boxW) / 2) + boxW / 4, limY = Math.max(0, (h - boxH) / 2) + boxH / 4;
  view.panX = Math.max(-limX, Math.min(limX, view.panX));
  view.panY = Math.max(-limY, Math.min(limY, view.panY));
  return view;
}

/** Zoom by `factor` keeping the image point under canvas point (cx, cy) where it is. */
export function zoomAt(view, factor, cx, cy, imageW, imageH, boxW, boxH) {
  const before = viewFit(imageW, imageH, boxW, boxH, view);
  const ix = (cx - before.x) / before.scale, iy = (cy - before.y) / before.scale;
  view.zoom = Math.max(1, Math.min(MAX_ZOOM, view.zoom * factor));
  const after = viewFit(imageW, imageH, boxW, boxH, { zoom: view.zoom, panX: 0, panY: 0 });
  view.panX = cx - ix * after.scale - after.x;
  view.panY = cy - iy * after.scale - after.y;
  return clampView(view, imageW, imageH, boxW, boxH);
}

export function panBy(view, dx, dy, imageW, imageH, boxW, boxH) {
  view.panX += dx;
  view.panY += dy;
  return clampView(view, imageW, imageH, boxW, boxH);
}

/** The zoom factor of one wheel event (deltaY < 0: in). */
export function wheelFactor(e) {
  const unit = e.deltaMode === 1 ? 33 : e.deltaMode === 2 ? 400 : 1;
  return Math.pow(1.0015, -Math.max(-400, Math.min(400, e.deltaY * unit)));
}

/** Undo/redo of string snapshots. `begin(value)` before an action, `end(value)` after it: an action that
 * changed nothing leaves no entry. */
export class History {
  constructor(limit = HISTORY_LIMIT) {
    this.limit = limit;
    this.undoStack = [];
    this.redoStack = [];
    this.pending = null;
  }

  begin(value) {
    if (this.pending === null) this.pending = value;
  }

  end(value) {
    const before = this.pending;
    this.pending = null;
    if (before === null || before === value) return false;
    this.undoStack.push(before);
    if (this.undoStack.length > this.limit) this.undoStack.shift();
    this.redoStack = [];
    return true;
  }

  /** The value to restore, or null. */
  undo(current) {
    if (!this.undoStack.length) return null;
    this.redoStack.push(current);
    return this.undoStack.pop();
  }

  redo(current) {
    if (!this.redoStack.length) return null;
    this.undoStack.push(current);
    return this.redoStack.pop();
  }

  clear() {
    this.undoStack = [];
    this.redoStack = [];
    this.pending = null;
  }

  get sizes() {
    return { undo: this.undoStack.length, redo: this.redoStack.length };
  }
}

/** Ctrl/Cmd+Z, Ctrl/Cmd+Shift+Z and Ctrl/Cmd+Y: "undo", "redo" or null. */
export function historyKey(e) {
  if (!(e.ctrlKey || e.metaKey) || e.altKey) return null;
  const k = e.key.toLowerCase();
  if (k === "z") return e.shiftKey ? "redo" : "undo";
  if (k === "y" && !e.shiftKey) return "redo";
  return null;
}

/** The element that takes the editor's keyboard focus: a read-only, invisible text input inside the editor.
 * The frontends' own shortcut handlers (the change tracker's Ctrl+Z / Ctrl+Y, listening on the window in
 * the capture phase, and the keybindings: Delete, copy/paste) leave keys typed into an input alone, so
 * the editor's Ctrl+Z undoes the editor's last edit only, and Delete never removes the node. The editor
 * root must be positioned (relative). */
export function keyboardTarget(label) {
  const input = document.createElement("input");
  input.type = "text";
  input.readOnly = true;
  input.tabIndex = -1;
  input.setAttribute("aria-label", label);
  input.dataset.motionkit = "keys";
  Object.assign(input.style, { position: "absolute", left: "0", top: "0", width: "1px", height: "1px", opacity: "0",
    border: "0", padding: "0", margin: "0", pointerEvents: "none", caretColor: "transparent" });
  return input;
}
