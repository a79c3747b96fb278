// MotionKit Click to Mask (SAM): a point editor with a live mask preview inside the node.
//
// The node shows its input image (the upstream Load Image file, else the frame of its last run). Left click
// adds a positive point, right click a negative point (or deletes the point under the cursor), dragging on
// the image draws the active object's box (Shift+right click removes it), N or "New object" starts another
// object (as many as you like), points can be dragged, Delete removes the hovered point. Undo/redo: buttons,
// Ctrl+Z, Ctrl+Shift+Z / Ctrl+Y. Zoom: the wheel (after a click in the editor); pan: Alt+drag, Space+drag or
// the middle button; "Fit" (0) resets the view. The image is letterboxed into the node at any size. After
// every edit the masks are fetched from POST /motionkit/sam/preview, which runs only SAM's decoder on the
// cached image embedding. The points live in the node's hidden STRING widget "points" (saved in workflows,
// sent in API prompts, copied with the node, kept across workflow tabs and page reloads); the canvas widget,
// the view and the undo history are not saved. The editor follows the upstream Load Image and SAM loader by
// polling (editor_live.js), so it works with Nodes 2.0, which never calls the canvas's draw callbacks.
import { nodeByExecutionId, notifyGraphChanged, unwatch, watch } from "./editor_live.js";
import {
  OVERLAY_ALPHA, clamp, emptyObject, hitPoint, imageRef, isEmptyObject, isSegmentable, objectCss,
  objectRgb255, pixelAt, previewPayload, rescaleState, stateFromText, stateToText,
} from "./sam_points.js";
import { History, historyKey, keyboardTarget, newView, panBy, viewFit, wheelFactor, zoomAt } from "./editor_view.js";

const { app } = window.comfyAPI.app;
const { api } = window.comfyAPI.api;

const NODE_TYPE = "MotionKitClickToMask";
const LOADER_TYPE = "MotionKitSAMLoader";
const PREVIEW_ROUTE = "/motionkit/sam/preview";
const MODELS_ROUTE = "/motionkit/sam/models";
const POINT_RADIUS = 5; // CSS px
const HIT_RADIUS = 9; // CSS px
const DRAG_PX = 4; // CSS px a press must move to draw a box instead of adding a point
const HELP = "Click: object · right click: background / delete point · drag: box · N: new object · " +
  "wheel: zoom · Alt+drag: pan · Ctrl+Z: undo";

/** The node feeding `inputName`, through legacy Reroute nodes. */
function upstream(node, inputName) {
  if (!node.graph) return null; // being removed, or its graph is being cleared: LiteGraph would throw
  try {
    const slot = node.findInputSlot ? node.findInputSlot(inputName) : -1;
    if (slot < 0) return null;
    let source = node.getInputNode(slot);
    for (let guard = 0; source && source.type === "Reroute" && guard < 32; guard++) source = source.getInputNode(0);
    return source || null;
  } catch {
    return null;
  }
}

function widgetValue(node, name) {
  const w = node && node.widgets && node.widgets.find((x) => x.name === name);
  return w ? w.value : undefined;
}

function viewUrl(ref, bust) {
  const q = new URLSearchParams({ filename: ref.filename, type: ref.type, subfolder: ref.subfolder || "" });
  if (bust) q.set("rand", String(bust));
  return api.apiURL(`/view?${q}`);
}

function refKey(ref) {
  return ref ? `${ref.type}/${ref.subfolder}/${ref.filename}` : "";
}

class SamPointEditor {
  constructor(node, pointsWidget) {
    this.node = node;
    this.pointsWidget = pointsWidget;
    ({ state: this.state, error: this.formatError } = stateFromText(pointsWidget.value));
    this.image = null; // HTMLImageElement of the current source
    this.imageKey = "";
    this.lastOutput = null; // image ref from the node's last run
    this.overlays = new Map(); // editor object index -> tinted canvas
    this.maskInfo = [];
    this.message = "";
    this.hover = null;
    this.drag = null;
    this.seq = 0;
    this.inflight = false;
    this.again = false;
    this.view = newView();
    this.history = new History();
    this.lastValue = String(pointsWidget.value ?? "");
    this.spaceHeld = false;
    this.buildDom();
  }

  // --- DOM ------------------------------------------------------------------------------------------
  buildDom() {
    const root = document.createElement("div");
    root.className = "motionkit-sam-editor";
    root.dataset.motionkitEditor = "click-to-mask";
    // Nodes 2.0 forwards wheel events to the graph unless a focused element inside this one captures them
    root.dataset.captureWheel = "true";
    Object.assign(root.style, {
      display: "flex", flexDirection: "column", gap: "4px", boxSizing: "border-box", minHeight: "0",
      font: "12px sans-serif", color: "var(--input-text, #ddd)",
    });
    const stage = document.createElement("div");
    Object.assign(stage.style, { flex: "1 1 auto", minHeight: "0", position: "relative", overflow: "hidden",
      background: "rgba(0,0,0,0.25)", borderRadius: "4px" });
    const canvas = document.createElement("canvas");
    Object.assign(canvas.style, { position: "absolute", left: "0", top: "0", width: "100%", height: "100%",
      outline: "none", cursor: "crosshair", touchAction: "none" });
    stage.appendChild(canvas);

    const bar = document.createElement("div");
    Object.assign(bar.style, { display: "flex", gap: "4px", alignItems: "center", flexWrap: "wrap" });
    const button = (label, title, onClick, name) => {
      const b = document.createElement("button");
      b.textContent = label;
      b.title = title;
      b.dataset.motionkit = name;
      Object.assign(b.style, { font: "12px sans-serif", padding: "1px 6px", cursor: "pointer" });
      b.addEventListener("click", (e) => {
        e.stopPropagation();
        onClick();
        this.focus();
      });
      bar.appendChild(b);
      return b;
    };
    button("New object", "Start another object (N)", () => this.newObject(), "new-object");
    button("Delete object", "Remove the active object", () => this.deleteObject(this.state.active), "delete-object");
    button("Clear", "Remove all points", () => this.clearAll(), "clear");
    button("Undo", "Undo (Ctrl+Z)", () => this.applyHistory("undo"), "undo");
    button("Redo", "Redo (Ctrl+Shift+Z, Ctrl+Y)", () => this.applyHistory("redo"), "redo");
    button("Fit", "Fit the image in the editor (0)", () => this.resetView(), "fit");
    this.legend = document.createElement("span");
    Object.assign(this.legend.style, { display: "flex", gap: "3px", alignItems: "center" });
    bar.appendChild(this.legend);

    const status = document.createElement("div");
    Object.assign(status.style, { minHeight: "15px", opacity: "0.85", whiteSpace: "nowrap", overflow: "hidden",
      textOverflow: "ellipsis" });

    this.keys = keyboardTarget("Click to Mask editor");
    root.style.position = "relative";
    root.append(this.keys, stage, bar, status);
    this.root = root;
    this.stage = stage;
    this.canvas = canvas;
    this.statusEl = status;

    canvas.addEventListener("pointerdown", (e) => this.onPointerDown(e));
    canvas.addEventListener("pointermove", (e) => this.onPointerMove(e));
    canvas.addEventListener("pointerup", (e) => this.onPointerUp(e));
    canvas.addEventListener("pointerleave", () => {
      if (!this.drag) {
        this.hover = null;
        this.render();
      }
    });
    canvas.addEventListener("contextmenu", (e) => {
      e.preventDefault();
      e.stopPropagation();
    });
    this.keys.addEventListener("keydown", (e) => this.onKeyDown(e));
    this.keys.addEventListener("keyup", (e) => {
      if (e.key !== " ") return;
      this.spaceHeld = false;
      e.stopPropagation();
    });
    this.keys.addEventListener("blur", () => { this.spaceHeld = false; });
    canvas.addEventListener("pointercancel", (e) => this.onPointerUp(e));
    canvas.addEventListener("wheel", (e) => this.onWheel(e), { passive: false });
    // Keep canvas interactions away from the graph canvas behind (no node drag, no graph menu).
    for (const type of ["pointerdown", "mousedown", "wheel", "dblclick", "contextmenu"]) {
      root.addEventListener(type, (e) => e.stopPropagation());
    }
    this.resizeObserver = new ResizeObserver(() => this.render());
    this.resizeObserver.observe(stage);
  }

  destroy() {
    unwatch(this);
    this.resizeObserver.disconnect();
  }

  // --- sources ----------------------------------------------------------------------------------------
  imageSource() {
    const source = upstream(this.node, "image");
    if (source && (source.comfyClass || source.type) === "LoadImage") {
      return imageRef(widgetValue(source, "image"), "input");
    }
    return this.lastOutput;
  }

  modelName() {
    const source = upstream(this.node, "sam_model");
    const name = source ? widgetValue(source, "model_name") : undefined;
    return typeof name === "string" && name ? name : null;
  }

  pointsLinked() {
    const slot = this.node.findInputSlot ? this.node.findInputSlot("points") : -1;
    return slot >= 0 && this.node.inputs[slot].link != null;
  }

  /** Called by the editor timer (and when the node is drawn or rewired): cheap, reloads only when the
   * source changed. */
  poll() {
    const value = String(this.pointsWidget.value ?? "");
    if (!this.drag && value !== this.lastValue) {
      // written from outside the editor (a pasted node's configure, a test, another extension): show it; the
      // editor's own history no longer leads to it
      this.lastValue = value;
      this.history.clear();
      this.reloadFromWidget();
    }
    const ref = this.imageSource();
    const key = refKey(ref);
    if (key !== this.imageKey) {
      this.imageKey = key;
      this.loadImage(ref);
    }
    const model = this.modelName();
    if (model !== this.model) {
      this.model = model;
      this.requestPreview();
    }
  }

  loadImage(ref) {
    this.overlays.clear();
    this.maskInfo = [];
    if (!ref || !ref.filename) {
      this.image = null;
      this.render();
      return;
    }
    const img = new Image();
    img.onload = () => {
      if (this.imageKey !== refKey(ref)) return;
      if (this.image?.naturalWidth !== img.naturalWidth || this.image?.naturalHeight !== img.naturalHeight) {
        this.view = newView(); // another size: start fitted
      }
      this.image = img;
      this.imageRef = ref;
      if (this.state.width !== img.naturalWidth || this.state.height !== img.naturalHeight) {
        const had = this.state.objects.some((o) => !isEmptyObject(o));
        rescaleState(this.state, img.naturalWidth, img.naturalHeight);
        if (had) this.commit(false, false);
      }
      this.root.dataset.imageWidth = String(img.naturalWidth);
      this.root.dataset.imageHeight = String(img.naturalHeight);
      this.render();
      this.requestPreview();
    };
    img.onerror = () => {
      if (this.imageKey !== refKey(ref)) return;
      this.image = null;
      this.message = `Could not load ${ref.filename} (${ref.type}).`;
      this.render();
    };
    img.src = viewUrl(ref, Date.now());
  }

  /** The frame the node segmented in its last run (a temp PNG named by its content hash). */
  setLastOutput(ref) {
    if (refKey(ref) === refKey(this.lastOutput)) return;
    this.lastOutput = ref;
    this.poll(); // reloads only if the last output is what the editor shows (no Load Image upstream)
  }

  // --- state --------------------------------------------------------------------------------------------
  reloadFromWidget() {
    this.lastValue = String(this.pointsWidget.value ?? "");
    const { state, error } = stateFromText(this.pointsWidget.value);
    if (this.image) rescaleState(state, this.image.naturalWidth, this.image.naturalHeight);
    state.active = clamp(this.state && state.objects.length === this.state.objects.length ? this.state.active
      : state.active, 0, state.objects.length - 1);
    this.state = state;
    this.formatError = error;
    this.overlays.clear();
    this.render();
    this.requestPreview();
  }

  /** Write the points to the hidden widget (what is saved and queued) and refresh the masks. A user's
   * edit (`record`) is one undo step: the widget still holds the value from before it. */
  commit(preview = true, record = true) {
    const text = stateToText(this.state);
    this.formatError = null;
    if (this.pointsWidget.value !== text) {
      if (record) {
        this.history.begin(String(this.pointsWidget.value ?? ""));
        this.history.end(text);
      }
      this.pointsWidget.value = text;
      this.lastValue = text;
      this.node.graph?.setDirtyCanvas?.(true, false);
      notifyGraphChanged(app.canvas?.canvas);
    }
    this.render();
    if (preview) this.requestPreview();
  }

  applyHistory(kind) {
    if (this.drag || this.pointsLinked()) return;
    const value = this.history[kind](String(this.pointsWidget.value ?? ""));
    if (value === null) return;
    this.pointsWidget.value = value;
    notifyGraphChanged(app.canvas?.canvas);
    this.reloadFromWidget();
  }

  resetView() {
    this.view = newView();
    this.render();
  }

  onWheel(e) {
    e.preventDefault();
    e.stopPropagation();
    if (!this.image) return;
    const rect = this.canvas.getBoundingClientRect();
    const cx = (e.clientX - rect.left) * (this.canvas.clientWidth / rect.width);
    const cy = (e.clientY - rect.top) * (this.canvas.clientHeight / rect.height);
    zoomAt(this.view, wheelFactor(e), cx, cy, this.image.naturalWidth, this.image.naturalHeight,
      this.canvas.clientWidth, this.canvas.clientHeight);
    this.render();
  }

  /** The editor's state for tests and other extensions: image size, view, mapping, history sizes. */
  info() {
    const r = this.canvas.getBoundingClientRect();
    return { view: { ...this.view }, fit: this.fit ? { ...this.fit } : null, history: this.history.sizes,
      objects: this.state.objects.length, active: this.state.active,
      image: this.image ? [this.image.naturalWidth, this.image.naturalHeight] : null,
      canvas: { width: this.canvas.clientWidth, height: this.canvas.clientHeight, left: r.left, top: r.top,
        clientWidth: r.width, clientHeight: r.height } };
  }

  activeObject() {
    if (!this.state.objects.length) this.state.objects.push(emptyObject());
    this.state.active = clamp(this.state.active, 0, this.state.objects.length - 1);
    return this.state.objects[this.state.active];
  }

  newObject() {
    const last = this.state.objects[this.state.objects.length - 1];
    if (last && isEmptyObject(last)) {
      this.state.active = this.state.objects.length - 1;
    } else {
      this.state.objects.push(emptyObject());
      this.state.active = this.state.objects.length - 1;
    }
    this.render();
  }

  deleteObject(i) {
    this.state.objects.splice(i, 1);
    if (!this.state.objects.length) this.state.objects.push(emptyObject());
    this.state.active = clamp(this.state.active, 0, this.state.objects.length - 1);
    this.shiftOverlays();
    this.commit();
  }

  clearAll() {
    this.state.objects = [emptyObject()];
    this.state.active = 0;
    this.overlays.clear();
    this.maskInfo = [];
    this.commit();
  }

  shiftOverlays() {
    this.overlays.clear(); // indices moved; the preview that follows redraws them
  }

  // --- input ----------------------------------------------------------------------------------------
  toImage(e) {
    const rect = this.canvas.getBoundingClientRect();
    // The DOM widget is scaled with a CSS transform (canvas zoom): client px -> layout px -> image px.
    const lx = (e.clientX - rect.left) * (this.canvas.clientWidth / rect.width);
    const ly = (e.clientY - rect.top) * (this.canvas.clientHeight / rect.height);
    const fit = this.fit;
    if (!fit) return null;
    return { x: (lx - fit.x) / fit.scale, y: (ly - fit.y) / fit.scale, perPx: 1 / fit.scale };
  }

  editable() {
    if (this.pointsLinked()) {
      this.message = "The points come from a link; disconnect it to edit here.";
      this.render();
      return false;
    }
    return !!(this.image && this.fit);
  }

  canvasXY(e) {
    const rect = this.canvas.getBoundingClientRect();
    return [(e.clientX - rect.left) * (this.canvas.clientWidth / rect.width),
      (e.clientY - rect.top) * (this.canvas.clientHeight / rect.height)];
  }

  /** Keyboard focus to the editor (its keys: N, Delete, 0, Space, Ctrl+Z...; the wheel zooms it). */
  focus() {
    this.keys.focus({ preventScroll: true });
  }

  onPointerDown(e) {
    this.focus();
    e.preventDefault();
    e.stopPropagation();
    if (this.image && this.fit && (e.button === 1 || (e.button === 0 && (e.altKey || this.spaceHeld)))) {
      this.drag = { kind: "pan", last: this.canvasXY(e) };
      this.canvas.setPointerCapture(e.pointerId);
      this.canvas.style.cursor = "grabbing";
      return;
    }
    if (!this.editable()) return;
    const p = this.toImage(e);
    if (!p) return;
    const hit = hitPoint(this.state, p.x, p.y, HIT_RADIUS * p.perPx);
    if (e.button === 2) {
      if (e.shiftKey) {
        this.activeObject().box = null;
        this.commit();
      } else if (hit) {
        this.removePoint(hit);
      } else {
        this.addPoint("negative", p);
      }
      return;
    }
    if (e.button !== 0) return;
    const start = [clamp(Math.round(p.x), 0, this.state.width), clamp(Math.round(p.y), 0, this.state.height)];
    if (hit) {
      this.state.active = hit.object;
      this.drag = { kind: "point", hit, moved: false };
      this.render();
    } else if (e.shiftKey) {
      this.drag = { kind: "box", start, end: start };
    } else {
      // a click adds a positive point (on release); a drag draws the active object's box
      this.drag = { kind: "press", start, point: p, from: this.canvasXY(e) };
    }
    this.canvas.setPointerCapture(e.pointerId);
  }

  onPointerMove(e) {
    if (this.drag?.kind === "pan") {
      e.preventDefault();
      e.stopPropagation();
      const [x, y] = this.canvasXY(e);
      panBy(this.view, x - this.drag.last[0], y - this.drag.last[1], this.image.naturalWidth, this.image.naturalHeight,
        this.canvas.clientWidth, this.canvas.clientHeight);
      this.drag.last = [x, y];
      this.render();
      return;
    }
    const p = this.toImage(e);
    if (!p) return;
    if (!this.drag) {
      const hit = this.image ? hitPoint(this.state, p.x, p.y, HIT_RADIUS * p.perPx) : null;
      if (JSON.stringify(hit) !== JSON.stringify(this.hover)) {
        this.hover = hit;
        this.canvas.style.cursor = hit ? "move" : "crosshair";
        this.render();
      }
      return;
    }
    e.preventDefault();
    e.stopPropagation();
    if (this.drag.kind === "press") {
      const [x, y] = this.canvasXY(e);
      if (Math.hypot(x - this.drag.from[0], y - this.drag.from[1]) < DRAG_PX) return;
      this.drag = { kind: "box", start: this.drag.start, end: this.drag.start };
    }
    if (this.drag.kind === "point") {
      const { object, kind, index } = this.drag.hit;
      const x = clamp(Math.floor(p.x), 0, this.state.width - 1);
      const y = clamp(Math.floor(p.y), 0, this.state.height - 1);
      this.state.objects[object][kind][index] = [x, y];
      this.drag.moved = true;
    } else {
      this.drag.end = [clamp(Math.round(p.x), 0, this.state.width), clamp(Math.round(p.y), 0, this.state.height)];
    }
    this.render();
  }

  onPointerUp(e) {
    if (!this.drag) return;
    e.preventDefault();
    e.stopPropagation();
    const drag = this.drag;
    this.drag = null;
    if (this.canvas.hasPointerCapture(e.pointerId)) this.canvas.releasePointerCapture(e.pointerId);
    if (drag.kind === "pan") {
      this.canvas.style.cursor = "crosshair";
    } else if (drag.kind === "press") {
      if (e.type === "pointerup") this.addPoint("positive", drag.point);
    } else if (drag.kind === "point") {
      if (drag.moved) this.commit();
      else this.render();
    } else {
      const [x0, x1] = [Math.min(drag.start[0], drag.end[0]), Math.max(drag.start[0], drag.end[0])];
      const [y0, y1] = [Math.min(drag.start[1], drag.end[1]), Math.max(drag.start[1], drag.end[1])];
      if (x1 - x0 >= 2 && y1 - y0 >= 2) {
        this.activeObject().box = [x0, y0, x1, y1];
        this.commit();
      } else {
        this.render();
      }
    }
  }

  onKeyDown(e) {
    const key = e.key;
    const action = historyKey(e);
    if (action) {
      this.applyHistory(action);
    } else if (e.ctrlKey || e.metaKey || e.altKey) {
      return; // copy, paste, save...: the frontend's
    } else if (key === "n" || key === "N") {
      this.newObject();
    } else if ((key === "Delete" || key === "Backspace") && this.hover) {
      this.removePoint(this.hover);
      this.hover = null;
    } else if (key === "0") {
      this.resetView();
    } else if (key === " ") {
      this.spaceHeld = true;
      this.canvas.style.cursor = "grab";
    } else {
      return;
    }
    // Handled here: keep it from the graph's key bindings (Delete would remove the node).
    e.preventDefault();
    e.stopPropagation();
  }

  addPoint(kind, p) {
    const px = pixelAt(p.x, p.y, this.state.width, this.state.height);
    if (!px) return;
    this.activeObject()[kind].push(px);
    this.commit();
  }

  removePoint({ object, kind, index }) {
    this.state.objects[object][kind].splice(index, 1);
    this.state.active = object;
    this.commit();
  }

  // --- preview ----------------------------------------------------------------------------------------
  async requestPreview() {
    if (this.inflight) {
      this.again = true;
      return;
    }
    const ref = this.imageRef;
    const model = this.modelName();
    const { indices, points } = previewPayload(this.state);
    if (!this.image || !ref) {
      this.setStatus("no-image");
      return;
    }
    if (!model) {
      this.overlays.clear();
      this.setStatus("no-model", "Connect a 'Load SAM Model' node to see masks while you click.");
      return;
    }
    if (!indices.length) {
      this.overlays.clear();
      this.maskInfo = [];
      this.setStatus("ready", HELP);
      return;
    }
    this.inflight = true;
    const seq = ++this.seq;
    const stateKey = JSON.stringify(points);
    this.setStatus("loading", "Computing masks…");
    try {
      const res = await api.fetchApi(PREVIEW_ROUTE, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ image: ref, sam_model: model, points: JSON.stringify(points) }),
      });
      const data = await res.json().catch(() => ({ error: `HTTP ${res.status}` }));
      if (seq !== this.seq) return;
      if (!res.ok) {
        this.overlays.clear();
        this.maskInfo = [];
        this.setStatus("error", data.error || `HTTP ${res.status}`);
        return;
      }
      const tinted = await Promise.all(data.masks.map((m, k) => this.tint(m.png, indices[k])));
      if (seq !== this.seq || stateKey !== JSON.stringify(previewPayload(this.state).points)) {
        this.again = true; // edited meanwhile: this answer is stale
        return;
      }
      this.overlays = new Map(indices.map((objectIndex, k) => [objectIndex, tinted[k]]));
      this.maskInfo = data.masks.map((m, k) => ({ object: indices[k], area: m.area, score: m.score }));
      this.root.dataset.maskCount = String(data.masks.length);
      this.root.dataset.maskPixels = String(data.masks.reduce((s, m) => s + m.area, 0));
      this.root.dataset.embedding = data.embedding;
      const ms = data.timing_ms ? ` ${Math.round(data.timing_ms.total)} ms` : "";
      this.setStatus("ready", `${data.masks.length} mask(s),${ms} (embedding ${data.embedding}). ${HELP}`);
    } catch (err) {
      if (seq === this.seq) this.setStatus("error", `Preview failed: ${err}`);
    } finally {
      this.inflight = false;
      if (this.again) {
        this.again = false;
        this.requestPreview();
      }
    }
  }

  /** A 1-bit mask PNG as a canvas of the object's colour at the overlay alpha (transparent elsewhere). */
  async tint(pngBase64, objectIndex) {
    const img = new Image();
    img.src = `data:image/png;base64,${pngBase64}`;
    await img.decode();
    const c = document.createElement("canvas");
    c.width = img.naturalWidth;
    c.height = img.naturalHeight;
    const ctx = c.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(img, 0, 0);
    const data = ctx.getImageData(0, 0, c.width, c.height);
    const [r, g, b] = objectRgb255(objectIndex);
    const a = Math.round(OVERLAY_ALPHA * 255);
    const px = data.data;
    for (let i = 0; i < px.length; i += 4) {
      const on = px[i] > 127;
      px[i] = r;
      px[i + 1] = g;
      px[i + 2] = b;
      px[i + 3] = on ? a : 0;
    }
    ctx.putImageData(data, 0, 0);
    return c;
  }

  setStatus(status, message) {
    this.root.dataset.status = status;
    if (message !== undefined) this.message = message;
    this.render();
  }

  // --- drawing ----------------------------------------------------------------------------------------
  render() {
    const canvas = this.canvas;
    const w = canvas.clientWidth;
    const h = canvas.clientHeight;
    if (!w || !h) return;
    const dpr = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    this.renderLegend();
    if (!this.image) {
      this.fit = null;
      this.root.dataset.status = this.root.dataset.status === "error" ? "error" : "no-image";
      const text = this.imageKey
        ? (this.message || "Loading the image…")
        : "Connect a Load Image node to 'image' to click on it here, or queue the workflow once to show the image it gets.";
      this.drawMessage(ctx, w, h, text);
      this.statusEl.textContent = this.formatError
        || (this.imageKey ? text : "No image yet: connect a Load Image node to 'image', or queue the workflow once.");
      return;
    }
    const W = this.image.naturalWidth;
    const H = this.image.naturalHeight;
    const fit = viewFit(W, H, w, h, this.view);
    this.fit = fit;
    ctx.imageSmoothingEnabled = fit.scale < 1;
    ctx.drawImage(this.image, fit.x, fit.y, W * fit.scale, H * fit.scale);
    ctx.imageSmoothingEnabled = false;
    for (const [, overlay] of [...this.overlays.entries()].sort((a, b) => a[0] - b[0])) {
      ctx.drawImage(overlay, fit.x, fit.y, W * fit.scale, H * fit.scale);
    }
    const toCss = ([x, y]) => [fit.x + (x + 0.5) * fit.scale, fit.y + (y + 0.5) * fit.scale];
    this.state.objects.forEach((o, i) => {
      const active = i === this.state.active;
      if (o.box) {
        ctx.strokeStyle = objectCss(i);
        ctx.lineWidth = active ? 2 : 1;
        ctx.strokeRect(fit.x + o.box[0] * fit.scale, fit.y + o.box[1] * fit.scale,
          (o.box[2] - o.box[0]) * fit.scale, (o.box[3] - o.box[1]) * fit.scale);
      }
      o.positive.forEach((p, k) => this.drawPoint(ctx, toCss(p), i, true, this.isHover(i, "positive", k)));
      o.negative.forEach((p, k) => this.drawPoint(ctx, toCss(p), i, false, this.isHover(i, "negative", k)));
    });
    if (this.drag && this.drag.kind === "box") {
      const [x0, y0] = this.drag.start;
      const [x1, y1] = this.drag.end;
      ctx.setLineDash([4, 3]);
      ctx.strokeStyle = objectCss(this.state.active);
      ctx.strokeRect(fit.x + Math.min(x0, x1) * fit.scale, fit.y + Math.min(y0, y1) * fit.scale,
        Math.abs(x1 - x0) * fit.scale, Math.abs(y1 - y0) * fit.scale);
      ctx.setLineDash([]);
    }
    const pending = this.state.objects
      .map((o, i) => (!isEmptyObject(o) && !isSegmentable(o) ? i + 1 : 0)).filter(Boolean);
    this.statusEl.textContent = this.formatError
      || (pending.length ? `Object ${pending.join(", ")} needs a positive point (left click). ` : "")
      + (this.message || HELP);
  }

  isHover(object, kind, index) {
    const h = this.hover;
    return !!h && h.object === object && h.kind === kind && h.index === index;
  }

  drawPoint(ctx, [x, y], objectIndex, positive, hovered) {
    const r = POINT_RADIUS + (hovered ? 2 : 0);
    ctx.beginPath();
    ctx.arc(x, y, r, 0, Math.PI * 2);
    ctx.fillStyle = positive ? objectCss(objectIndex) : "rgba(20,20,20,0.85)";
    ctx.fill();
    ctx.lineWidth = 2;
    ctx.strokeStyle = positive ? "#fff" : objectCss(objectIndex);
    ctx.stroke();
    ctx.beginPath(); // + for positive, − for negative
    ctx.moveTo(x - r + 2, y);
    ctx.lineTo(x + r - 2, y);
    if (positive) {
      ctx.moveTo(x, y - r + 2);
      ctx.lineTo(x, y + r - 2);
    }
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = 1.5;
    ctx.stroke();
  }

  drawMessage(ctx, w, h, text) {
    ctx.fillStyle = "rgba(255,255,255,0.8)";
    ctx.font = "13px sans-serif";
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    const words = text.split(" ");
    const lines = [];
    let line = "";
    for (const word of words) {
      const next = line ? `${line} ${word}` : word;
      if (ctx.measureText(next).width > w - 24 && line) {
        lines.push(line);
        line = word;
      } else {
        line = next;
      }
    }
    lines.push(line);
    lines.forEach((l, i) => ctx.fillText(l, w / 2, h / 2 + (i - (lines.length - 1) / 2) * 17));
  }

  renderLegend() {
    const key = JSON.stringify([this.state.objects.map(isEmptyObject), this.state.active]);
    if (key === this.legendKey) return;
    this.legendKey = key;
    this.legend.replaceChildren();
    this.state.objects.forEach((o, i) => {
      const chip = document.createElement("span");
      chip.textContent = String(i + 1);
      chip.title = `Object ${i + 1}${i === this.state.active ? " (active)" : ""}: click to make active`;
      Object.assign(chip.style, { background: objectCss(i, i === this.state.active ? 1 : 0.45), color: "#fff",
        borderRadius: "3px", padding: "0 5px", cursor: "pointer",
        outline: i === this.state.active ? "1px solid #fff" : "none" });
      chip.addEventListener("click", (e) => {
        e.stopPropagation();
        this.state.active = i;
        this.render();
      });
      this.legend.appendChild(chip);
    });
  }
}

function setupClickToMask(node) {
  const pointsWidget = node.widgets && node.widgets.find((w) => w.name === "points");
  if (!pointsWidget) return;
  // The data widget stays (saved, sent) but takes no room: the editor edits it.
  pointsWidget.hidden = true;
  pointsWidget.computeSize = () => [0, -4];
  const editor = new SamPointEditor(node, pointsWidget);
  node.motionkitSamEditor = editor;
  const widget = node.addDOMWidget("sam_editor", "motionkit_sam_editor", editor.root, {
    serialize: false,
    hideOnZoom: false,
    getMinHeight: () => 200,
    onDraw: () => editor.poll(),
  });
  widget.serialize = false; // not in widgets_values either
  const userCallback = pointsWidget.callback;
  pointsWidget.callback = function (value) {
    userCallback?.apply(this, arguments);
    editor.reloadFromWidget();
  };
  if (node.size[0] < 360 || node.size[1] < 420) node.setSize([Math.max(node.size[0], 360), Math.max(node.size[1], 420)]);
  watch(editor);
  requestAnimationFrame(() => editor.poll());
}

let downloadsPromise = null;
function samDownloads() {
  downloadsPromise ??= api.fetchApi(MODELS_ROUTE).then((r) => (r.ok ? r.json() : { downloads: [] }))
    .then((d) => d.downloads || []).catch(() => []);
  return downloadsPromise;
}

app.registerExtension({
  name: "MotionKit.ClickToMask",
  setup() {
    // Sent by the node before it checks the points, so a failed first run still shows the image.
    api.addEventListener("motionkit.sam_image", ({ detail }) => {
      const node = detail && nodeByExecutionId(app.rootGraph ?? app.graph, detail.node);
      node?.motionkitSamEditor?.setLastOutput(detail.image);
    });
  },
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name === NODE_TYPE) {
      const onNodeCreated = nodeType.prototype.onNodeCreated;
      nodeType.prototype.onNodeCreated = function () {
        const r = onNodeCreated?.apply(this, arguments);
        setupClickToMask(this);
        return r;
      };
      const onConfigure = nodeType.prototype.onConfigure;
      nodeType.prototype.onConfigure = function () {
        const r = onConfigure?.apply(this, arguments);
        this.motionkitSamEditor?.reloadFromWidget();
        return r;
      };
      const onExecuted = nodeType.prototype.onExecuted;
      nodeType.prototype.onExecuted = function (output) {
        const r = onExecuted?.apply(this, arguments);
        const ref = output && output.motionkit_sam_image && output.motionkit_sam_image[0];
        if (ref && this.motionkitSamEditor) this.motionkitSamEditor.setLastOutput(ref);
        return r;
      };
      const onConnectionsChange = nodeType.prototype.onConnectionsChange;
      nodeType.prototype.onConnectionsChange = function () {
        const r = onConnectionsChange?.apply(this, arguments);
        if (this.motionkitSamEditor && this.graph) requestAnimationFrame(() => this.motionkitSamEditor.poll());
        return r;
      };
      const onRemoved = nodeType.prototype.onRemoved;
      nodeType.prototype.onRemoved = function () {
        this.motionkitSamEditor?.destroy();
        return onRemoved?.apply(this, arguments);
      };
    }
    if (nodeData.name === LOADER_TYPE) {
      // Download metadata the frontend's missing-models dialog reads from saved workflows.
      const onNodeCreated = nodeType.prototype.onNodeCreated;
      nodeType.prototype.onNodeCreated = function () {
        const r = onNodeCreated?.apply(this, arguments);
        samDownloads().then((downloads) => {
          this.properties ??= {};
          if (!this.properties.models && downloads.length) this.properties.models = downloads;
        });
        return r;
      };
    }
  },
});
