// MotionKit: the arrow editor on "Arrows to Trajectories (TrackGo)" (MotionKitArrowsToTracks).
//
// A DOM widget (never serialised) draws the image, the object masks tinted per object, the arrows and
// their frame ticks. The arrows themselves live in the node's hidden STRING widget `arrows` (JSON v1, see
// modules/arrows.py), so they are saved in the workflow and sent in API prompts. The widget is written
// only when the user edits, so loading a workflow never changes it.
//
// Image and masks, the latest of:
// - the node's own UI output `motionkit_arrows` (PNG files in ComfyUI's temp folder, written by each
//   run), which arrives in onExecuted;
// - the last output of the node wired into `masks`, when it sends `motionkit_masks` (Click to Mask does:
//   its frame and one plain mask PNG per object, see nodes/click_to_mask.py). ComfyUI's `executed`
//   event carries it; it is kept on that node, so the editor also finds it when wired up later. This
//   shows the masks as soon as Click to Mask has run, before this node has run itself;
// - before any run, the image of an upstream Load Image node (no masks).
// Coordinates are pixels of that image. The editor checks its sources by polling (editor_live.js), not
// from LiteGraph's draw callbacks, which Nodes 2.0 never calls.
import { nodeByExecutionId, notifyGraphChanged, unwatch, watch } from "./editor_live.js";
import {
  CAMERA, clampPoint, emptyDocument, frameTicks, hitTest, objectColor, objectRgb, parseDocument, pathLength,
  rescaleDocument, reverseArrow, serializeDocument, setArrow,
} from "./arrow_geometry.js";

const { app } = window.comfyAPI.app;
const { api } = window.comfyAPI.api;

const NODE_TYPE = "MotionKitArrowsToTracks";
const UI_KEY = "motionkit_arrows";
const MASKS_UI_KEY = "motionkit_masks";         // UI output of a masks node (Click to Mask)
const MASKS_OUTPUT = "motionkitMasksOutput";    // where that output is kept on the masks node
const MIN_HEIGHT = 240;
const HANDLE = 6; // css px: vertex handle radius and hit tolerance
const HELP = "Drag to draw the selected object's arrow. Drag a point to bend it, the line to move it; " +
  "double-click a segment to add a point, right-click a point to remove it; R reverses, Del deletes.";

function viewUrl(ref) {
  const q = new URLSearchParams({ filename: ref.filename, subfolder: ref.subfolder || "", type: ref.type || "temp" });
  return api.apiURL(`/view?${q}&rand=${Math.random()}`);
}

// Which file an image shows, ignoring cache-busting query parameters.
function imageKey(src) {
  try {
    const q = new URL(src, window.location.href).searchParams;
    return q.has("filename") ? `${q.get("type")}/${q.get("subfolder")}/${q.get("filename")}` : src;
  } catch {
    return src;
  }
}

// A plain mask image (grey, 255 inside) as a canvas in the object's colour, opaque inside the mask:
// drawn like the tinted mask PNGs of this node's own run.
function tintMask(img, object) {
  const canvas = document.createElement("canvas");
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(img, 0, 0);
  const data = ctx.getImageData(0, 0, canvas.width, canvas.height);
  const px = data.data;
  const [r, g, b] = objectRgb(object);
  for (let i = 0; i < px.length; i += 4) {
    px[i + 3] = px[i] >= 128 ? 255 : 0;
    px[i] = r; px[i + 1] = g; px[i + 2] = b;
  }
  ctx.putImageData(data, 0, 0);
  return canvas;
}

function loadImage(src) {
  return new Promise((resolve) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => resolve(null);
    img.src = src;
  });
}

class ArrowEditor {
  constructor(node) {
    this.node = node;
    this.selected = -1;
    this.object = 0;          // object of newly drawn arrows: a mask index or CAMERA
    this.maskCount = 0;       // from the last run
    this.runSize = null;      // [W, H] of the last run's masks
    this.background = null;   // HTMLImageElement
    this.backgroundSrc = null;
    this.masks = [];          // [{object, image}]: images or canvases, tinted
    this.runTracks = null;    // {object, start, end} of the last run
    this.runSeq = 0;          // the latest run shown wins over slower image loads of earlier ones
    this.shownMasksOutput = null; // the upstream masks node's output last shown
    this.drag = null;
    this.drawnState = "";

    this.arrowsWidget = node.widgets.find((w) => w.name === "arrows");
    this.arrowsWidget.hidden = true; // the editor is its UI; the value stays a normal STRING widget
    this.arrowsWidget.computeSize = () => [0, -4];

    this.root = document.createElement("div");
    Object.assign(this.root.style, { display: "flex", flexDirection: "column", gap: "4px", width: "100%",
      height: "100%", boxSizing: "border-box", font: "12px sans-serif", color: "#ddd" });
    this.root.motionkitEditor = this; // for tests and other extensions; no global state

    const bar = document.createElement("div");
    Object.assign(bar.style, { display: "flex", gap: "4px", alignItems: "center", flexWrap: "wrap" });
    this.select = document.createElement("select");
    this.select.title = "Object of the next arrow you draw";
    this.select.addEventListener("change", () => {
      this.object = this.select.value === CAMERA ? CAMERA : Number(this.select.value);
      this.draw();
    });
    bar.append(this.select,
      this.button("Reverse", "Reverse the selected arrow (R)", () => this.reverseSelected()),
      this.button("Delete", "Delete the selected arrow (Del)", () => this.deleteSelected()),
      this.button("Clear", "Delete all arrows", () => this.edit((doc) => { doc.arrows = []; this.selected = -1; })));
    this.status = document.createElement("div");
    Object.assign(this.status.style, { fontSize: "11px", opacity: "0.8", minHeight: "14px" });

    this.canvas = document.createElement("canvas");
    this.canvas.tabIndex = 0;
    // flex-basis 0: the canvas's bitmap size (set in draw) must never feed back into the layout
    Object.assign(this.canvas.style, { flex: "1 1 0px", width: "100%", height: "0px", minHeight: "0", display: "block",
      outline: "none", cursor: "crosshair", borderRadius: "4px" });
    this.root.append(bar, this.canvas, this.status);

    for (const [type, fn] of [["pointerdown", this.onPointerDown], ["pointermove", this.onPointerMove],
      ["pointerup", this.onPointerUp], ["pointercancel", this.onPointerUp], ["dblclick", this.onDoubleClick],
      ["contextmenu", this.onContextMenu], ["keydown", this.onKeyDown]]) {
      this.canvas.addEventListener(type, fn.bind(this));
    }
    // drawing in the next frame, not inside the observer callback, avoids ResizeObserver loop errors
    this.resizeObserver = new ResizeObserver(() => requestAnimationFrame(() => this.draw()));
    this.resizeObserver.observe(this.canvas);

    this.widget = node.addDOMWidget("arrow_editor", "motionkit_arrow_editor", this.root, {
      serialize: false, hideOnZoom: false, getMinHeight: () => MIN_HEIGHT,
    });
    this.widget.serialize = false; // keep it out of widgets_values (options.serialize keeps it out of prompts)
    this.refreshObjects();
    watch(this);
  }

  button(label, title, onClick) {
    const b = document.createElement("button");
    b.textContent = label;
    b.title = title;
    Object.assign(b.style, { font: "inherit", padding: "1px 6px", cursor: "pointer" });
    b.addEventListener("click", (e) => { e.stopPropagation(); onClick(); this.canvas.focus(); });
    return b;
  }

  // --- state -------------------------------------------------------------------------------------------

  widgetValue(name, fallback) {
    const w = this.node.widgets?.find((x) => x.name === name);
    return w ? w.value : fallback;
  }

  isLinked() {
    const input = this.node.inputs?.find((i) => i.name === "arrows");
    return input?.link != null;
  }

  readDocument() {
    return parseDocument(String(this.arrowsWidget.value ?? ""));
  }

  // The image the editor works in: the last run's masks, else the upstream image, else the document.
  imageSize(doc) {
    if (this.runSize) return this.runSize;
    if (this.background) return [this.background.naturalWidth, this.background.naturalHeight];
    if (doc) return [doc.width, doc.height];
    return [512, 512];
  }

  // Arrows in image pixels for display and hit tests (the document may be in another size).
  displayDocument() {
    const { doc } = this.readDocument();
    if (!doc) return null;
    const [w, h] = this.imageSize(doc);
    return doc.width === w && doc.height === h ? doc : rescaleDocument(doc, w, h);
  }

  // Apply a user edit in image pixels and write the widget.
  edit(change) {
    if (this.isLinked()) return;
    const [w, h] = this.imageSize(this.readDocument().doc);
    const doc = this.displayDocument() || emptyDocument(w, h);
    change(doc);
    this.arrowsWidget.value = serializeDocument(doc);
    this.arrowsWidget.callback?.(this.arrowsWidget.value);
    this.node.setDirtyCanvas?.(true, true);
    if (!this.drag) notifyGraphChanged(app.canvas?.canvas); // a drag tells it once, when it ends
    this.refreshObjects();
    this.draw();
  }

  reverseSelected() {
    if (this.selected < 0) return;
    this.edit((doc) => { if (doc.arrows[this.selected]) reverseArrow(doc.arrows[this.selected]); });
  }

  deleteSelected() {
    if (this.selected < 0) return;
    const index = this.selected;
    this.selected = -1;
    this.edit((doc) => doc.arrows.splice(index, 1));
  }

  refreshObjects() {
    const doc = this.readDocument().doc;
    const fromArrows = doc ? Math.max(0, ...doc.arrows.map((a) => (a.object === CAMERA ? 0 : a.object + 1))) : 0;
    const count = Math.max(this.maskCount, fromArrows, 1);
    const options = [...Array(count).keys()].map(String).concat([CAMERA]);
    const current = this.select.value || String(this.object);
    if (this.select.options.length !== options.length) {
      this.select.replaceChildren(...options.map((value) => {
        const o = document.createElement("option");
        o.value = value;
        o.textContent = value === CAMERA ? "Camera (whole image)" : `Object ${value}`;
        o.style.color = objectColor(value === CAMERA ? CAMERA : Number(value));
        return o;
      }));
    }
    this.select.value = options.includes(current) ? current : "0";
    this.object = this.select.value === CAMERA ? CAMERA : Number(this.select.value);
  }

  onExecuted(output) {
    const run = output?.[UI_KEY]?.[0];
    if (!run) return;
    this.showRun("run", run, run.background, run.tracks, false);
  }

  // The node wired into `masks` (through legacy Reroute nodes).
  masksSource() {
    const slot = this.node.inputs?.findIndex((i) => i.name === "masks") ?? -1;
    let source = slot >= 0 ? this.node.getInputNode?.(slot) : null;
    for (let hops = 0; source?.type === "Reroute" && hops < 32; hops++) source = source.getInputNode?.(0);
    return source ?? null;
  }

  // The masks node's last output (Click to Mask's `motionkit_masks`), once per output.
  watchUpstreamMasks() {
    const out = this.masksSource()?.[MASKS_OUTPUT];
    if (!out || out === this.shownMasksOutput) return;
    this.shownMasksOutput = out;
    this.showRun("upstream-run", out, out.image, null, true);
  }

  // Show a run's image and masks ({width, height, masks: [{filename, subfolder, type, object}]}).
  async showRun(source, run, background, tracks, tint) {
    const seq = ++this.runSeq;
    const masks = Array.isArray(run.masks) ? run.masks : [];
    const [bg, ...images] = await Promise.all([
      background ? loadImage(viewUrl(background)) : Promise.resolve(null),
      ...masks.map((m) => loadImage(viewUrl(m))),
    ]);
    if (seq !== this.runSeq) return; // a later run (or another upstream image) came first
    this.runSize = [run.width, run.height];
    this.maskCount = masks.length;
    this.runTracks = tracks;
    if (bg) { this.background = bg; this.backgroundSrc = source; }
    this.masks = images.map((image, i) => {
      const object = masks[i].object ?? i;
      return { object, image: image && tint ? tintMask(image, object) : image };
    }).filter((m) => m.image);
    this.refreshObjects();
    this.draw();
  }

  // Before the first run: the image of an upstream Load Image node (or any node showing an image).
  // After a run, a different upstream image (the user picked another file) replaces the stale run data.
  // The upstream image: a Load Image-style node's file (read from its widget, so it works while that node
  // is off screen and its preview is not loaded), else whatever image the node shows.
  upstreamImage() {
    const slot = this.node.inputs?.findIndex((i) => i.name === "image");
    const upstream = slot >= 0 ? this.node.getInputNode?.(slot) : null;
    const widget = upstream?.widgets?.find((w) => w.name === "image" && typeof w.value === "string" && w.value);
    if (widget) {
      let name = widget.value, type = "input";
      const annotated = name.match(/^(.*) \[(input|output|temp)\]$/);
      if (annotated) [, name, type] = annotated;
      const cut = name.lastIndexOf("/");
      const ref = { filename: name.slice(cut + 1), subfolder: cut >= 0 ? name.slice(0, cut) : "", type };
      return { key: `${type}/${ref.subfolder}/${ref.filename}`, src: viewUrl(ref) };
    }
    const img = upstream?.imgs?.[0];
    return img?.src ? { key: imageKey(img.src), src: img.src } : null;
  }

  async watchUpstreamImage() {
    const ref = this.upstreamImage();
    if (!ref || ref.key === this.upstreamSrc || ref.key === this.loadingKey) return;
    this.loadingKey = ref.key; // one request per file, also when it fails
    const img = await loadImage(ref.src);
    if (!img || this.upstreamImage()?.key !== ref.key) return;
    const first = this.upstreamSrc === undefined;
    this.upstreamSrc = ref.key;
    const fromRun = this.backgroundSrc === "run" || this.backgroundSrc === "upstream-run";
    if (fromRun && first) return; // the run's image is this one
    this.runSeq++; // a run still loading is stale now
    this.background = img;
    this.backgroundSrc = "upstream";
    this.runSize = null;
    this.runTracks = null;
    this.masks = [];
    this.draw();
  }

  // --- geometry between client, canvas and image pixels -------------------------------------------------

  fit(doc) {
    const [w, h] = this.imageSize(doc);
    const cw = this.canvas.clientWidth, ch = this.canvas.clientHeight;
    const s = Math.max(1e-6, Math.min(cw / w, ch / h));
    return { w, h, s, ox: (cw - w * s) / 2, oy: (ch - h * s) / 2 };
  }

  clientToImage(e) {
    const rect = this.canvas.getBoundingClientRect();
    const f = this.fit(this.readDocument().doc);
    const x = (e.clientX - rect.left) * (this.canvas.clientWidth / rect.width);
    const y = (e.clientY - rect.top) * (this.canvas.clientHeight / rect.height);
    return [(x - f.ox) / f.s, (y - f.oy) / f.s];
  }

  imageToClient(x, y) {
    const rect = this.canvas.getBoundingClientRect();
    const f = this.fit(this.readDocument().doc);
    return { x: rect.left + (f.ox + x * f.s) * (rect.width / this.canvas.clientWidth),
      y: rect.top + (f.oy + y * f.s) * (rect.height / this.canvas.clientHeight) };
  }

  state() {
    const { doc, problem } = this.readDocument();
    return { size: this.imageSize(doc), background: this.backgroundSrc, masks: this.masks.length,
      maskCount: this.maskCount, doc, problem, selected: this.selected, object: this.object,
      linked: this.isLinked(), ticks: this.ticks() };
  }

  ticks() {
    const doc = this.displayDocument();
    const frames = Number(this.widgetValue("num_frames", 14)), easing = this.widgetValue("easing", "linear");
    return doc ? doc.arrows.map((a) => frameTicks(a.points, frames, easing)) : [];
  }

  // --- pointer and keys ----------------------------------------------------------------------------------

  tolerance() {
    return HANDLE / this.fit(this.readDocument().doc).s;
  }

  onPointerDown(e) {
    e.stopPropagation();
    this.canvas.focus();
    if (e.button !== 0 || this.isLinked()) return;
    e.preventDefault();
    const p = this.clientToImage(e);
    const doc = this.displayDocument() || emptyDocument(...this.imageSize(null));
    const hit = hitTest(doc, p, this.tolerance(), this.selected);
    if (hit?.kind === "vertex") {
      this.selected = hit.arrow;
      this.drag = { kind: "vertex", arrow: hit.arrow, index: hit.index };
    } else if (hit?.kind === "midpoint") {
      this.selected = hit.arrow;
      this.edit((d) => {
        const pts = d.arrows[hit.arrow].points;
        pts.splice(hit.index + 1, 0, [(pts[hit.index][0] + pts[hit.index + 1][0]) / 2, (pts[hit.index][1] + pts[hit.index + 1][1]) / 2]);
      });
      this.drag = { kind: "vertex", arrow: hit.arrow, index: hit.index + 1 };
    } else if (hit?.kind === "segment") {
      this.selected = hit.arrow;
      this.drag = { kind: "move", arrow: hit.arrow, last: p };
    } else {
      const [w, h] = this.imageSize(doc);
      if (p[0] < 0 || p[1] < 0 || p[0] > w || p[1] > h) { this.selected = -1; this.draw(); return; }
      let index = -1;
      this.edit((d) => { index = setArrow(d, this.object, [p, p.slice()]); });
      this.selected = index;
      this.drag = { kind: "new", arrow: index, index: 1 };
    }
    this.canvas.setPointerCapture(e.pointerId);
    this.draw();
  }

  onPointerMove(e) {
    if (!this.drag) {
      const doc = this.displayDocument();
      const hit = doc && hitTest(doc, this.clientToImage(e), this.tolerance(), this.selected);
      this.canvas.style.cursor = this.isLinked() ? "not-allowed" : hit ? (hit.kind === "segment" ? "move" : "pointer") : "crosshair";
      return;
    }
    e.stopPropagation();
    const p = this.clientToImage(e);
    const drag = this.drag;
    this.edit((doc) => {
      const arrow = doc.arrows[drag.arrow];
      if (!arrow) return;
      if (drag.kind === "move") {
        // keep the whole arrow inside the image
        let dx = p[0] - drag.last[0], dy = p[1] - drag.last[1];
        for (const [x, y] of arrow.points) {
          dx = Math.max(-x, Math.min(doc.width - x, dx));
          dy = Math.max(-y, Math.min(doc.height - y, dy));
        }
        arrow.points = arrow.points.map(([x, y]) => [x + dx, y + dy]);
        drag.last = [drag.last[0] + dx, drag.last[1] + dy];
      } else {
        arrow.points[drag.index] = clampPoint(p, doc.width, doc.height);
      }
    });
  }

  onPointerUp(e) {
    if (!this.drag) return;
    e.stopPropagation();
    const drag = this.drag;
    this.drag = null;
    if (this.canvas.hasPointerCapture(e.pointerId)) this.canvas.releasePointerCapture(e.pointerId);
    const doc = this.displayDocument();
    const arrow = doc?.arrows[drag.arrow];
    if (drag.kind === "new" && arrow && pathLength(arrow.points) * this.fit(doc).s < 3) {
      this.selected = -1; // a click, not a drag: no arrow
      this.edit((d) => d.arrows.splice(drag.arrow, 1));
    } else {
      notifyGraphChanged(app.canvas?.canvas);
    }
    this.draw();
  }

  onDoubleClick(e) {
    e.stopPropagation();
    e.preventDefault();
    if (this.isLinked()) return;
    const p = this.clientToImage(e);
    const doc = this.displayDocument();
    const hit = doc && hitTest(doc, p, this.tolerance(), this.selected);
    if (hit?.kind !== "segment") return;
    this.selected = hit.arrow;
    this.edit((d) => d.arrows[hit.arrow].points.splice(hit.index + 1, 0, p));
  }

  onContextMenu(e) {
    e.preventDefault();
    e.stopPropagation();
    if (this.isLinked()) return;
    const doc = this.displayDocument();
    const hit = doc && hitTest(doc, this.clientToImage(e), this.tolerance(), this.selected);
    if (hit?.kind === "vertex" && doc.arrows[hit.arrow].points.length > 2) {
      this.selected = hit.arrow;
      this.edit((d) => d.arrows[hit.arrow].points.splice(hit.index, 1));
    }
  }

  onKeyDown(e) {
    if (e.key === "Delete" || e.key === "Backspace") {
      this.deleteSelected();
    } else if (e.key === "r" || e.key === "R") {
      this.reverseSelected();
    } else {
      return;
    }
    e.preventDefault();
    e.stopPropagation(); // never let the graph delete the node
  }

  // --- drawing ---------------------------------------------------------------------------------------------

  /** Called by the editor timer (and when the node is drawn): picks up a new upstream image or masks
   * output and redraws when the arrows, frames or easing changed. */
  poll() {
    this.redrawIfChanged();
  }

  redrawIfChanged() {
    const key = `${this.widgetValue("num_frames")}|${this.widgetValue("easing")}|${this.arrowsWidget.value}|${this.isLinked()}`;
    this.watchUpstreamImage();
    this.watchUpstreamMasks();
    if (key !== this.drawnState) this.draw();
  }

  draw() {
    const canvas = this.canvas;
    const cw = canvas.clientWidth, ch = canvas.clientHeight;
    if (!cw || !ch) return;
    this.drawnState = `${this.widgetValue("num_frames")}|${this.widgetValue("easing")}|${this.arrowsWidget.value}|${this.isLinked()}`;
    const dpr = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(cw * dpr) || canvas.height !== Math.round(ch * dpr)) {
      canvas.width = Math.round(cw * dpr);
      canvas.height = Math.round(ch * dpr);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = "#161616";
    ctx.fillRect(0, 0, cw, ch);

    const { doc: raw, problem } = this.readDocument();
    const doc = this.displayDocument();
    const f = this.fit(raw);
    const toCanvas = ([x, y]) => [f.ox + x * f.s, f.oy + y * f.s];
    if (this.background) {
      ctx.drawImage(this.background, f.ox, f.oy, f.w * f.s, f.h * f.s);
    } else {
      ctx.fillStyle = "#2a2a2a";
      ctx.fillRect(f.ox, f.oy, f.w * f.s, f.h * f.s);
    }
    for (const m of this.masks) {
      ctx.globalAlpha = m.object === this.object ? 0.6 : 0.35;
      ctx.drawImage(m.image, f.ox, f.oy, f.w * f.s, f.h * f.s);
    }
    ctx.globalAlpha = 1;

    // Control points of the last run (where k-means put each object's tracks).
    if (this.runTracks && this.runSize && this.runSize[0] === f.w && this.runSize[1] === f.h) {
      this.runTracks.start.forEach((p, i) => {
        const [x, y] = toCanvas(p);
        ctx.beginPath();
        ctx.arc(x, y, 2.5, 0, 2 * Math.PI);
        ctx.fillStyle = objectColor(this.runTracks.object[i] < 0 ? CAMERA : this.runTracks.object[i]);
        ctx.strokeStyle = "#000";
        ctx.lineWidth = 1;
        ctx.fill();
        ctx.stroke();
      });
    }

    const frames = Number(this.widgetValue("num_frames", 14)), easing = this.widgetValue("easing", "linear");
    (doc?.arrows || []).forEach((arrow, i) => this.drawArrow(ctx, arrow, i === this.selected, toCanvas, frames, easing));

    this.status.textContent = this.isLinked() ? "Arrows come from the linked input; unlink it to draw."
      : problem ? `${problem}. Drawing replaces it.` : !this.background ? `Queue once to see the image and masks. ${HELP}` : HELP;
  }

  drawArrow(ctx, arrow, selected, toCanvas, frames, easing) {
    const color = objectColor(arrow.object);
    const pts = arrow.points.map(toCanvas);
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.strokeStyle = "rgba(0,0,0,0.6)";
    ctx.lineWidth = selected ? 6 : 5;
    ctx.beginPath();
    pts.forEach(([x, y], j) => (j ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
    ctx.stroke();
    ctx.strokeStyle = color;
    ctx.lineWidth = selected ? 3 : 2;
    ctx.stroke();

    // arrowhead along the last non-degenerate segment
    const tip = pts[pts.length - 1];
    let k = pts.length - 2;
    while (k > 0 && Math.hypot(tip[0] - pts[k][0], tip[1] - pts[k][1]) < 1e-6) k--;
    const ang = Math.atan2(tip[1] - pts[k][1], tip[0] - pts[k][0]);
    ctx.fillStyle = color;
    ctx.beginPath();
    ctx.moveTo(tip[0], tip[1]);
    for (const da of [2.6, -2.6]) ctx.lineTo(tip[0] + 11 * Math.cos(ang + da), tip[1] + 11 * Math.sin(ang + da));
    ctx.closePath();
    ctx.fill();

    // frame ticks: where the object is at each frame for this easing
    for (const p of frameTicks(arrow.points, frames, easing).slice(1, -1)) {
      const [x, y] = toCanvas(p);
      ctx.beginPath();
      ctx.arc(x, y, 2.2, 0, 2 * Math.PI);
      ctx.fillStyle = "#fff";
      ctx.strokeStyle = color;
      ctx.lineWidth = 1;
      ctx.fill();
      ctx.stroke();
    }

    const [sx, sy] = pts[0];
    ctx.font = "bold 11px sans-serif";
    ctx.fillStyle = color;
    ctx.fillText(arrow.object === CAMERA ? "camera" : String(arrow.object), sx + 6, sy - 6);

    if (!selected) return;
    pts.forEach(([x, y]) => {
      ctx.beginPath();
      ctx.arc(x, y, HANDLE - 1, 0, 2 * Math.PI);
      ctx.fillStyle = "#fff";
      ctx.strokeStyle = color;
      ctx.lineWidth = 2;
      ctx.fill();
      ctx.stroke();
    });
    for (let j = 0; j < pts.length - 1; j++) {
      ctx.beginPath();
      ctx.arc((pts[j][0] + pts[j + 1][0]) / 2, (pts[j][1] + pts[j + 1][1]) / 2, HANDLE - 2.5, 0, 2 * Math.PI);
      ctx.strokeStyle = "#fff";
      ctx.lineWidth = 1.5;
      ctx.stroke();
    }
  }

  remove() {
    unwatch(this);
    this.resizeObserver.disconnect();
  }
}

app.registerExtension({
  name: "MotionKit.ArrowEditor",
  setup() {
    // Any node's output that carries masks for the editor (Click to Mask): keep it on that node and tell
    // the arrow editors, also those not drawn right now (off screen, collapsed).
    api.addEventListener("executed", ({ detail }) => {
      const out = detail?.output?.[MASKS_UI_KEY]?.[0];
      const graph = app.rootGraph ?? app.graph;
      if (!out || !graph) return;
      const node = nodeByExecutionId(graph, detail.display_node || detail.node);
      if (!node) return;
      node[MASKS_OUTPUT] = out;
      for (const n of node.graph?._nodes ?? []) n.motionkitArrowEditor?.watchUpstreamMasks();
    });
  },
  beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name !== NODE_TYPE) return;
    const chain = (name, fn) => {
      const previous = nodeType.prototype[name];
      nodeType.prototype[name] = function (...args) {
        const result = previous?.apply(this, args);
        fn.apply(this, args);
        return result;
      };
    };
    chain("onNodeCreated", function () {
      this.motionkitArrowEditor = new ArrowEditor(this);
      // New nodes keep their seed: the points should not jump between runs while arrows are drawn.
      const control = this.widgets.find((w) => w.name === "control_after_generate");
      if (control) control.value = "fixed";
      this.setSize([Math.max(this.size[0], 380), Math.max(this.size[1], 560)]);
    });
    chain("onExecuted", function (output) { this.motionkitArrowEditor?.onExecuted(output); });
    chain("onConfigure", function () { this.motionkitArrowEditor?.refreshObjects(); this.motionkitArrowEditor?.draw(); });
    chain("onConnectionsChange", function () {
      this.motionkitArrowEditor?.watchUpstreamMasks();
      this.motionkitArrowEditor?.draw();
    });
    chain("onDrawForeground", function () { this.motionkitArrowEditor?.redrawIfChanged(); });
    chain("onRemoved", function () { this.motionkitArrowEditor?.remove(); });
  },
});
