// MotionKit: the arrow editor on "Arrows to Trajectories (TrackGo)" (MotionKitArrowsToTracks).
//
// A DOM widget (never serialised) draws the image, the object masks tinted per object, the arrows with their
// frame ticks and the anchors (points that stay still). The data lives in the node's hidden STRING widget
// `arrows` (arrows JSON, see modules/arrows.py and arrow_geometry.js: version 1 while no version-2 key is used,
// else version 2), so it is saved in the workflow, sent in API prompts, copied with the node (Ctrl+C/Ctrl+V),
// kept across workflow tabs and page reloads. The widget is written only when the user edits, so loading a
// workflow never changes it. Zoom, pan and the undo history are the editor's own and are not saved.
//
// Editing: drag to draw the selected object's arrow; drag a point to bend it, the line to move it; double-click
// a segment (or drag its midpoint handle) to add a point, right-click a point to remove it. The timing row of
// the selected arrow sets its start and end frame, its easing, its visibility (always, or only within its
// frames: pop-in/pop-out) and the frame the selected point is reached on. "Stay" (S) pins points of the
// selected object (or of the background, with "Camera / background") that must not move; "Hold camera" pins
// the background around the border. Undo/redo: buttons, Ctrl+Z, Ctrl+Shift+Z / Ctrl+Y. Zoom: the wheel (after a
// click in the editor); pan: Alt+drag, Space+drag or the middle button; "Fit" (0) resets the view.
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
  BACKGROUND, CAMERA, EASINGS, anchorObject, arrowFrames, arrowTiming, arrowVisibility, clampPoint, emptyDocument,
  hitTest, holdCameraPoints, objectColor, objectRgb, parseDocument, pathLength, pointFrameRange, rangeLimits,
  rescaleDocument, reverseArrow, serializeDocument, setArrow,
} from "./arrow_geometry.js";
import { History, historyKey, keyboardTarget, newView, panBy, viewFit, wheelFactor, zoomAt } from "./editor_view.js";

const { app } = window.comfyAPI.app;
const { api } = window.comfyAPI.api;

const NODE_TYPE = "MotionKitArrowsToTracks";
const UI_KEY = "motionkit_arrows";
const MASKS_UI_KEY = "motionkit_masks";         // UI output of a masks node (Click to Mask)
const MASKS_OUTPUT = "motionkitMasksOutput";    // where that output is kept on the masks node
const MIN_HEIGHT = 280;
const HANDLE = 6; // css px: vertex handle radius and hit tolerance
const HELP = "Drag: draw the object's arrow · drag a point: bend · drag the line: move · dbl-click: add point · " +
  "right-click: remove point · S: stay points · wheel: zoom · Alt+drag: pan · Ctrl+Z: undo";
const STAY_HELP = "Stay: click to pin a point of the selected object (Camera / background: the background) " +
  "that stays still · drag a pin to move it · right-click or Del removes it · Esc: back to arrows";

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

// A pin stays on the image's pixels: 0 <= x < width, 0 <= y < height (the node refuses x = width).
function clampAnchor([x, y], width, height) {
  return [Math.max(0, Math.min(width - 0.01, x)), Math.max(0, Math.min(height - 0.01, y))];
}

function element(tag, style = {}, props = {}) {
  const el = document.createElement(tag);
  Object.assign(el.style, style);
  Object.assign(el, props);
  return el;
}

const CONTROL_STYLE = { font: "inherit", padding: "1px 4px", maxWidth: "100%" };

class ArrowEditor {
  constructor(node) {
    this.node = node;
    this.selected = -1;       // arrow index
    this.selectedVertex = -1; // point index in the selected arrow
    this.selectedAnchor = -1; // anchor index
    this.tool = "arrow";      // "arrow" | "stay"
    this.object = 0;          // object of newly drawn arrows and pins: a mask index or CAMERA
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
    this.view = newView();
    this.history = new History();
    this.spaceHeld = false;
    this.notice = "";         // a one-off message (a refused frame) until the next edit

    this.arrowsWidget = node.widgets.find((w) => w.name === "arrows");
    this.arrowsWidget.hidden = true; // the editor is its UI; the value stays a normal STRING widget
    this.arrowsWidget.computeSize = () => [0, -4];
    this.lastValue = this.value();

    this.root = element("div", { display: "flex", flexDirection: "column", gap: "3px", width: "100%", position: "relative",
      height: "100%", boxSizing: "border-box", font: "12px sans-serif", color: "#ddd", minHeight: "0" });
    this.root.dataset.motionkitEditor = "arrows";
    // Nodes 2.0 forwards wheel events to the graph unless a focused element inside this one captures them
    this.root.dataset.captureWheel = "true";
    this.root.motionkitEditor = this; // for tests and other extensions; no global state

    this.buildToolbar();
    this.buildTimingBar();
    this.status = element("div", { fontSize: "11px", opacity: "0.8", minHeight: "14px", whiteSpace: "nowrap",
      overflow: "hidden", textOverflow: "ellipsis" });

    this.canvas = element("canvas", { flex: "1 1 0px", width: "100%", height: "0px", minHeight: "0", display: "block",
      outline: "none", cursor: "crosshair", borderRadius: "4px", touchAction: "none" });
    // flex-basis 0: the canvas's bitmap size (set in draw) must never feed back into the layout
    this.keys = keyboardTarget("Arrow editor");
    this.root.append(this.keys, this.bar, this.timingBar, this.canvas, this.status);

    for (const [type, fn] of [["pointerdown", this.onPointerDown], ["pointermove", this.onPointerMove],
      ["pointerup", this.onPointerUp], ["pointercancel", this.onPointerUp], ["dblclick", this.onDoubleClick],
      ["contextmenu", this.onContextMenu]]) {
      this.canvas.addEventListener(type, fn.bind(this));
    }
    this.canvas.addEventListener("wheel", this.onWheel.bind(this), { passive: false });
    this.keys.addEventListener("keydown", this.onKeyDown.bind(this));
    this.keys.addEventListener("keyup", this.onKeyUp.bind(this));
    this.keys.addEventListener("blur", () => { this.spaceHeld = false; });
    // Keep the editor's interactions away from the graph behind it (no node drag, no graph menu or zoom);
    // keys typed into the timing fields never reach the graph's shortcuts.
    for (const type of ["pointerdown", "mousedown", "wheel", "dblclick", "contextmenu"]) {
      this.root.addEventListener(type, (e) => e.stopPropagation());
    }
    this.root.addEventListener("keydown", (e) => { if (e.target !== this.keys) e.stopPropagation(); });
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

  // --- DOM ---------------------------------------------------------------------------------------------

  button(label, title, onClick, name) {
    const b = element("button", { ...CONTROL_STYLE, padding: "1px 6px", cursor: "pointer" },
      { textContent: label, title });
    b.dataset.motionkit = name;
    b.addEventListener("click", (e) => { e.stopPropagation(); onClick(); this.focus(); });
    return b;
  }

  buildToolbar() {
    this.bar = element("div", { display: "flex", gap: "3px", alignItems: "center", flexWrap: "wrap" });
    this.select = element("select", CONTROL_STYLE, { title: "Object of the next arrow you draw and the next pin" });
    this.select.dataset.motionkit = "object";
    this.select.addEventListener("change", () => {
      this.object = this.select.value === CAMERA ? CAMERA : Number(this.select.value);
      this.draw();
    });
    this.stayButton = this.button("Stay", "Pin points that stay still (S): of the selected object, or of the " +
      "background with Camera / background", () => this.setTool(this.tool === "stay" ? "arrow" : "stay"), "stay");
    this.bar.append(this.select, this.stayButton,
      this.button("Hold camera", "Pin the background around the border (8 points): the camera stays still",
        () => this.holdCamera(), "hold-camera"),
      this.button("Undo", "Undo (Ctrl+Z)", () => this.applyHistory("undo"), "undo"),
      this.button("Redo", "Redo (Ctrl+Shift+Z, Ctrl+Y)", () => this.applyHistory("redo"), "redo"),
      this.button("Reverse", "Reverse the selected arrow (R)", () => this.reverseSelected(), "reverse"),
      this.button("Delete", "Delete the selected arrow or pin (Del)", () => this.deleteSelected(), "delete"),
      this.button("Clear", "Delete all arrows and pins", () => this.edit((doc) => {
        doc.arrows = []; doc.anchors = []; this.select_(-1);
      }), "clear"),
      this.button("Fit", "Fit the image in the editor (0)", () => this.resetView(), "fit"));
  }

  buildTimingBar() {
    // Always laid out (disabled while no arrow is selected), so selecting an arrow never moves the canvas.
    this.timingBar = element("div", { display: "flex", gap: "3px", alignItems: "center", flexWrap: "wrap" });
    const label = (text) => element("span", { opacity: "0.85" }, { textContent: text });
    const number = (name, title) => {
      const input = element("input", { ...CONTROL_STYLE, width: "3.4em" }, { type: "number", min: "0", step: "1", title });
      input.dataset.motionkit = name;
      input.addEventListener("change", () => this.onTimingInput(name, input.value));
      input.addEventListener("keydown", (e) => { if (e.key === "Enter") input.blur(); });
      return input;
    };
    this.startInput = number("start-frame", "Frame the arrow's motion starts on (still before it)");
    this.endInput = number("end-frame", "Frame the arrow's motion ends on (still after it)");
    this.easingSelect = element("select", { ...CONTROL_STYLE, width: "9.5em" }, { title: "Speed along this arrow " +
      "(node: the node's easing input)" });
    this.easingSelect.dataset.motionkit = "easing";
    this.easingSelect.addEventListener("change", () => this.onTimingInput("easing", this.easingSelect.value));
    this.visibleSelect = element("select", { ...CONTROL_STYLE, width: "6.5em" }, { title: "Visibility of the object's tracks (TRACKS " +
      "track_visibility): always, or only from the start to the end frame (pop-in / pop-out)" });
    this.visibleSelect.dataset.motionkit = "visible";
    for (const [value, text] of [["always", "always"], ["range", "in range"]]) {
      this.visibleSelect.append(element("option", {}, { value, textContent: text }));
    }
    this.visibleSelect.addEventListener("change", () => this.onTimingInput("visible", this.visibleSelect.value));
    this.pointLabel = label("point at");
    this.pointInput = number("point-frame", "Frame the selected point is reached on (empty: by arc length)");
    this.pointInput.placeholder = "auto";
    this.pointBox = element("span", { display: "inline-flex", gap: "3px", alignItems: "center" });
    this.pointBox.append(this.pointLabel, this.pointInput);
    this.timingBar.append(label("frames"), this.startInput, label("to"), this.endInput, this.easingSelect,
      this.visibleSelect, this.pointBox);
    this.timingControls = [this.startInput, this.endInput, this.easingSelect, this.visibleSelect, this.pointInput];
  }

  // --- state -------------------------------------------------------------------------------------------

  widgetValue(name, fallback) {
    const w = this.node.widgets?.find((x) => x.name === name);
    return w ? w.value : fallback;
  }

  numFrames() {
    const n = Number(this.widgetValue("num_frames", 14));
    return Number.isInteger(n) && n >= 1 ? n : 14;
  }

  nodeEasing() {
    const e = this.widgetValue("easing", "linear");
    return EASINGS[e] ? e : "linear";
  }

  value() {
    return String(this.arrowsWidget.value ?? "");
  }

  isLinked() {
    const input = this.node.inputs?.find((i) => i.name === "arrows");
    return input?.link != null;
  }

  readDocument() {
    return parseDocument(this.value());
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

  writeValue(text) {
    this.arrowsWidget.value = text;
    this.arrowsWidget.callback?.(this.arrowsWidget.value);
    this.lastValue = this.value();
    this.node.setDirtyCanvas?.(true, true);
  }

  // Apply a user edit in image pixels and write the widget. A drag is one undo step: its history entry is
  // opened when it starts and closed when it ends.
  edit(change) {
    if (this.isLinked()) return;
    const [w, h] = this.imageSize(this.readDocument().doc);
    const doc = this.displayDocument() || emptyDocument(w, h);
    if (!this.drag) this.history.begin(this.value());
    change(doc);
    this.notice = "";
    this.writeValue(serializeDocument(doc));
    if (!this.drag) this.endAction(); // a drag tells the change tracker once, when it ends
    this.refreshObjects();
    this.draw();
  }

  endAction() {
    if (this.history.end(this.value())) notifyGraphChanged(app.canvas?.canvas);
  }

  applyHistory(kind) {
    if (this.isLinked() || this.drag) return;
    const value = this.history[kind](this.value());
    if (value === null) return;
    this.writeValue(value);
    notifyGraphChanged(app.canvas?.canvas);
    this.fixSelection();
    this.refreshObjects();
    this.draw();
  }

  select_(arrow, vertex = -1, anchor = -1) {
    this.selected = arrow;
    this.selectedVertex = arrow >= 0 ? vertex : -1;
    this.selectedAnchor = anchor;
  }

  fixSelection() {
    const doc = this.readDocument().doc;
    if (!doc || this.selected >= doc.arrows.length) this.select_(-1);
    else if (this.selected >= 0 && this.selectedVertex >= doc.arrows[this.selected].points.length) this.selectedVertex = -1;
    if (!doc || this.selectedAnchor >= (doc.anchors?.length ?? 0)) this.selectedAnchor = -1;
  }

  setTool(tool) {
    this.tool = tool;
    this.stayButton.style.outline = tool === "stay" ? "2px solid #4af" : "none";
    this.stayButton.setAttribute("aria-pressed", String(tool === "stay"));
    this.draw();
  }

  reverseSelected() {
    if (this.selected < 0) return;
    const frames = this.numFrames();
    this.edit((doc) => { if (doc.arrows[this.selected]) reverseArrow(doc.arrows[this.selected], frames); });
    if (this.selectedVertex >= 0) {
      const n = this.displayDocument()?.arrows[this.selected]?.points.length ?? 0;
      this.selectedVertex = n - 1 - this.selectedVertex;
    }
  }

  deleteSelected() {
    if (this.selectedAnchor >= 0) {
      const index = this.selectedAnchor;
      this.selectedAnchor = -1;
      this.edit((doc) => doc.anchors?.splice(index, 1));
      return;
    }
    if (this.selected < 0) return;
    const index = this.selected;
    this.select_(-1);
    this.edit((doc) => doc.arrows.splice(index, 1));
  }

  holdCamera() {
    this.edit((doc) => {
      doc.anchors = doc.anchors || [];
      for (const p of holdCameraPoints(doc.width, doc.height)) {
        const there = doc.anchors.some((a) => a.object === BACKGROUND && Math.hypot(a.point[0] - p[0], a.point[1] - p[1]) < 0.5);
        if (!there) doc.anchors.push({ object: BACKGROUND, point: p });
      }
    });
  }

  // A timing field of the selected arrow changed (`raw`: the field's text).
  onTimingInput(name, raw) {
    const doc = this.displayDocument();
    const arrow = doc?.arrows[this.selected];
    if (!arrow || this.isLinked()) return;
    const frames = this.numFrames(), last = frames - 1;
    const timing = arrowTiming(arrow, frames, this.nodeEasing());
    const [startMax, endMin] = rangeLimits(arrow);
    const n = raw === "" ? null : Math.round(Number(raw));
    if (raw !== "" && !Number.isFinite(n) && name !== "easing" && name !== "visible") { this.draw(true); return; }
    let update;
    if (name === "start-frame") {
      const v = n === null ? 0 : Math.max(0, Math.min(n, timing.end - 1, startMax ?? Infinity));
      update = (a) => { if (v === 0) delete a.start_frame; else a.start_frame = v; };
    } else if (name === "end-frame") {
      const v = n === null ? last : Math.min(last, Math.max(n, timing.start + 1, endMin ?? -Infinity));
      update = (a) => { if (v === last) delete a.end_frame; else a.end_frame = v; };
    } else if (name === "easing") {
      update = (a) => { if (raw && EASINGS[raw]) a.easing = raw; else delete a.easing; };
    } else if (name === "visible") {
      update = (a) => { if (raw === "range") a.visible = "range"; else delete a.visible; };
    } else if (name === "point-frame") {
      const j = this.selectedVertex;
      const range = pointFrameRange(arrow, j, frames);
      if (n !== null && (!range || n < range[0] || n > range[1])) {
        this.notice = range ? `Point ${j}: a frame from ${range[0]} to ${range[1]} (between its neighbours' frames).`
          : `Point ${j} has no free frame between its neighbours.`;
        this.draw(true);
        return;
      }
      update = (a) => {
        const p = a.points[j];
        if (!p) return;
        a.points[j] = n === null ? [p[0], p[1]] : [p[0], p[1], n];
      };
    } else {
      return;
    }
    const index = this.selected;
    this.edit((d) => { if (d.arrows[index]) update(d.arrows[index]); });
    this.draw(true);
  }

  refreshObjects() {
    const doc = this.readDocument().doc;
    const used = doc ? [...doc.arrows.map((a) => a.object), ...(doc.anchors || []).map((a) => a.object)] : [];
    const fromDoc = Math.max(0, ...used.map((o) => (Number.isInteger(o) ? o + 1 : 0)));
    const count = Math.max(this.maskCount, fromDoc, 1);
    const options = [...Array(count).keys()].map(String).concat([CAMERA]);
    const current = this.select.value || String(this.object);
    if (this.select.options.length !== options.length) {
      this.select.replaceChildren(...options.map((value) => {
        const o = document.createElement("option");
        o.value = value;
        o.textContent = value === CAMERA ? "Camera / background" : `Object ${value}`;
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
    return this.inputNode("masks");
  }

  // The node wired into input `name`, through legacy Reroute nodes; null while the node is in no graph (it is
  // being removed, or a graph is being cleared: LiteGraph then throws).
  inputNode(name) {
    if (!this.node.graph) return null;
    try {
      const slot = this.node.inputs?.findIndex((i) => i.name === name) ?? -1;
      let source = slot >= 0 ? this.node.getInputNode?.(slot) : null;
      for (let hops = 0; source?.type === "Reroute" && hops < 32; hops++) source = source.getInputNode?.(0);
      return source ?? null;
    } catch {
      return null;
    }
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
    this.setImageSize([run.width, run.height]);
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

  // Another image size: the view starts fitted again.
  setImageSize(size) {
    const [w, h] = this.imageSize(this.readDocument().doc);
    if (size[0] !== w || size[1] !== h) this.view = newView();
  }

  // Before the first run: the image of an upstream Load Image node (or any node showing an image).
  // After a run, a different upstream image (the user picked another file) replaces the stale run data.
  // The upstream image: a Load Image-style node's file (read from its widget, so it works while that node
  // is off screen and its preview is not loaded), else whatever image the node shows.
  upstreamImage() {
    const upstream = this.inputNode("image");
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
    this.setImageSize([img.naturalWidth, img.naturalHeight]);
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
    const f = viewFit(w, h, this.canvas.clientWidth || 1, this.canvas.clientHeight || 1, this.view);
    return { w, h, s: f.scale, ox: f.x, oy: f.y, fitScale: f.fitScale };
  }

  // Client (page) px -> canvas layout px (the DOM widget may be scaled with a CSS transform: canvas zoom).
  clientToCanvas(e) {
    const rect = this.canvas.getBoundingClientRect();
    return [(e.clientX - rect.left) * (this.canvas.clientWidth / rect.width),
      (e.clientY - rect.top) * (this.canvas.clientHeight / rect.height)];
  }

  clientToImage(e) {
    const f = this.fit(this.readDocument().doc);
    const [x, y] = this.clientToCanvas(e);
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
    const f = this.fit(doc);
    const rect = this.canvas.getBoundingClientRect();
    return { size: this.imageSize(doc), background: this.backgroundSrc, masks: this.masks.length,
      maskCount: this.maskCount, doc, problem, selected: this.selected, selectedVertex: this.selectedVertex,
      selectedAnchor: this.selectedAnchor, object: this.object, tool: this.tool, linked: this.isLinked(),
      ticks: this.ticks(), visibility: this.visibilities(), view: { ...this.view },
      history: this.history.sizes, numFrames: this.numFrames(), notice: this.notice,
      timingBar: !this.startInput.disabled, pointFrame: !this.pointInput.disabled,
      canvas: { width: this.canvas.clientWidth, height: this.canvas.clientHeight, left: rect.left, top: rect.top,
        clientWidth: rect.width, clientHeight: rect.height },
      imageRect: { x: f.ox, y: f.oy, width: f.w * f.s, height: f.h * f.s, scale: f.s, fitScale: f.fitScale } };
  }

  // Each arrow's point at each frame (image pixels), as drawn.
  ticks() {
    const doc = this.displayDocument();
    return doc ? doc.arrows.map((a) => arrowFrames(a, this.numFrames(), this.nodeEasing())) : [];
  }

  visibilities() {
    const doc = this.displayDocument();
    return doc ? doc.arrows.map((a) => arrowVisibility(a, this.numFrames())) : [];
  }

  resetView() {
    this.view = newView();
    this.draw();
  }

  /** Keyboard focus to the editor (its keys: Delete, R, S, Esc, 0, Space, Ctrl+Z...; the wheel zooms it). */
  focus() {
    this.keys.focus({ preventScroll: true });
  }

  // --- pointer and keys ----------------------------------------------------------------------------------

  tolerance() {
    return HANDLE / this.fit(this.readDocument().doc).s;
  }

  onWheel(e) {
    e.preventDefault();
    e.stopPropagation();
    const [w, h] = this.imageSize(this.readDocument().doc);
    const [cx, cy] = this.clientToCanvas(e);
    zoomAt(this.view, wheelFactor(e), cx, cy, w, h, this.canvas.clientWidth, this.canvas.clientHeight);
    this.draw();
  }

  onPointerDown(e) {
    e.stopPropagation();
    this.focus();
    if (e.button === 1 || (e.button === 0 && (e.altKey || this.spaceHeld))) {
      e.preventDefault();
      this.drag = { kind: "pan", last: this.clientToCanvas(e) };
      this.canvas.setPointerCapture(e.pointerId);
      this.canvas.style.cursor = "grabbing";
      return;
    }
    if (e.button !== 0 || this.isLinked()) return;
    e.preventDefault();
    const p = this.clientToImage(e);
    const doc = this.displayDocument() || emptyDocument(...this.imageSize(null));
    const hit = hitTest(doc, p, this.tolerance(), this.selected);
    const [w, h] = this.imageSize(doc);
    const inside = p[0] >= 0 && p[1] >= 0 && p[0] <= w && p[1] <= h;
    if (!hit && !inside) { this.select_(-1); this.draw(); return; }
    this.history.begin(this.value());
    if (hit?.kind === "anchor") {
      this.select_(-1, -1, hit.anchor);
      this.drag = { kind: "anchor", anchor: hit.anchor };
    } else if (hit?.kind === "vertex") {
      this.select_(hit.arrow, hit.index);
      this.drag = { kind: "vertex", arrow: hit.arrow, index: hit.index };
    } else if (hit?.kind === "midpoint") {
      this.select_(hit.arrow, hit.index + 1);
      this.drag = { kind: "vertex", arrow: hit.arrow, index: hit.index + 1 };
      this.edit((d) => {
        const pts = d.arrows[hit.arrow].points;
        pts.splice(hit.index + 1, 0, [(pts[hit.index][0] + pts[hit.index + 1][0]) / 2, (pts[hit.index][1] + pts[hit.index + 1][1]) / 2]);
      });
    } else if (hit?.kind === "segment") {
      this.select_(hit.arrow);
      this.drag = { kind: "move", arrow: hit.arrow, last: p };
    } else if (this.tool === "stay") {
      const object = this.object === CAMERA ? BACKGROUND : anchorObject(this.object);
      this.drag = { kind: "anchor", anchor: -1 };
      this.edit((d) => {
        d.anchors = d.anchors || [];
        d.anchors.push({ object, point: clampAnchor(p, d.width, d.height) });
        this.drag.anchor = d.anchors.length - 1;
      });
      this.select_(-1, -1, this.drag.anchor);
    } else {
      // the arrow (which replaces the object's arrow) is made once the pointer moves: a click changes nothing
      this.drag = { kind: "new", arrow: -1, index: 1, start: p, before: this.value() };
    }
    this.canvas.setPointerCapture(e.pointerId);
    this.draw();
  }

  onPointerMove(e) {
    if (!this.drag) {
      const doc = this.displayDocument();
      const hit = doc && hitTest(doc, this.clientToImage(e), this.tolerance(), this.selected);
      this.canvas.style.cursor = this.isLinked() ? "not-allowed" : e.altKey || this.spaceHeld ? "grab"
        : hit ? (hit.kind === "segment" ? "move" : "pointer") : "crosshair";
      return;
    }
    e.stopPropagation();
    const drag = this.drag;
    if (drag.kind === "pan") {
      const [x, y] = this.clientToCanvas(e);
      const [w, h] = this.imageSize(this.readDocument().doc);
      panBy(this.view, x - drag.last[0], y - drag.last[1], w, h, this.canvas.clientWidth, this.canvas.clientHeight);
      drag.last = [x, y];
      this.draw();
      return;
    }
    const p = this.clientToImage(e);
    if (drag.kind === "new" && drag.arrow < 0) {
      if (Math.hypot(p[0] - drag.start[0], p[1] - drag.start[1]) * this.fit(this.readDocument().doc).s < 3) return;
      this.edit((d) => { drag.arrow = setArrow(d, this.object, [drag.start, drag.start.slice()]); });
      this.select_(drag.arrow);
    }
    this.edit((doc) => {
      if (drag.kind === "anchor") {
        const anchor = doc.anchors?.[drag.anchor];
        if (anchor) anchor.point = clampAnchor(p, doc.width, doc.height);
        return;
      }
      const arrow = doc.arrows[drag.arrow];
      if (!arrow) return;
      if (drag.kind === "move") {
        // keep the whole arrow inside the image
        let dx = p[0] - drag.last[0], dy = p[1] - drag.last[1];
        for (const [x, y] of arrow.points) {
          dx = Math.max(-x, Math.min(doc.width - x, dx));
          dy = Math.max(-y, Math.min(doc.height - y, dy));
        }
        arrow.points = arrow.points.map(([x, y, ...f]) => [x + dx, y + dy, ...f]);
        drag.last = [drag.last[0] + dx, drag.last[1] + dy];
      } else {
        arrow.points[drag.index] = [...clampPoint(p, doc.width, doc.height), ...arrow.points[drag.index].slice(2)];
      }
    });
  }

  onPointerUp(e) {
    if (!this.drag) return;
    e.stopPropagation();
    const drag = this.drag;
    if (this.canvas.hasPointerCapture(e.pointerId)) this.canvas.releasePointerCapture(e.pointerId);
    if (drag.kind === "pan") {
      this.drag = null;
      this.canvas.style.cursor = "crosshair";
      return;
    }
    const doc = this.displayDocument();
    const arrow = doc?.arrows[drag.arrow];
    if (drag.kind === "new" && (!arrow || pathLength(arrow.points) * this.fit(doc).s < 3)) {
      this.select_(-1); // a click, not a drag: no arrow, and the object's arrow stays as it was
      if (this.value() !== drag.before) this.writeValue(drag.before);
    }
    this.drag = null;
    this.endAction();
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
    this.select_(hit.arrow, hit.index + 1);
    this.edit((d) => d.arrows[hit.arrow].points.splice(hit.index + 1, 0, p));
  }

  onContextMenu(e) {
    e.preventDefault();
    e.stopPropagation();
    if (this.isLinked()) return;
    const doc = this.displayDocument();
    const hit = doc && hitTest(doc, this.clientToImage(e), this.tolerance(), this.selected);
    if (hit?.kind === "anchor") {
      this.selectedAnchor = -1;
      this.edit((d) => d.anchors.splice(hit.anchor, 1));
    } else if (hit?.kind === "vertex" && doc.arrows[hit.arrow].points.length > 2) {
      this.select_(hit.arrow);
      this.edit((d) => d.arrows[hit.arrow].points.splice(hit.index, 1));
    }
  }

  onKeyDown(e) {
    const action = historyKey(e);
    if (action) {
      this.applyHistory(action);
    } else if (e.ctrlKey || e.metaKey || e.altKey) {
      return; // copy, paste, save...: the frontend's
    } else if (e.key === "Delete" || e.key === "Backspace") {
      this.deleteSelected();
    } else if (e.key === "r" || e.key === "R") {
      this.reverseSelected();
    } else if (e.key === "s" || e.key === "S") {
      this.setTool(this.tool === "stay" ? "arrow" : "stay");
    } else if (e.key === "Escape") {
      this.select_(-1);
      this.setTool("arrow");
    } else if (e.key === "0") {
      this.resetView();
    } else if (e.key === " ") {
      this.spaceHeld = true;
      this.canvas.style.cursor = "grab";
    } else {
      return;
    }
    e.preventDefault();
    e.stopPropagation(); // never let the graph delete the node or pan
  }

  onKeyUp(e) {
    if (e.key !== " ") return;
    this.spaceHeld = false;
    this.canvas.style.cursor = "crosshair";
    e.stopPropagation();
  }

  // --- drawing ---------------------------------------------------------------------------------------------

  /** Called by the editor timer (and when the node is drawn): picks up a new upstream image or masks
   * output, notices a value changed from outside (undo in the graph, a paste), and redraws when the arrows,
   * frames or easing changed. */
  poll() {
    if (!this.drag && this.value() !== this.lastValue) {
      this.lastValue = this.value();
      this.history.clear(); // the editor's history no longer leads to this value
      this.fixSelection();
      this.refreshObjects();
    }
    this.redrawIfChanged();
  }

  drawKey() {
    return `${this.widgetValue("num_frames")}|${this.widgetValue("easing")}|${this.value()}|${this.isLinked()}`;
  }

  redrawIfChanged() {
    this.watchUpstreamImage();
    this.watchUpstreamMasks();
    if (this.drawKey() !== this.drawnState) this.draw();
  }

  // The timing row shows the selected arrow's timing (fields being typed into are left alone unless forced).
  syncTimingBar(doc, force = false) {
    const arrow = this.isLinked() ? null : doc?.arrows[this.selected];
    const easingOptions = [["", `node (${this.nodeEasing()})`], ...Object.keys(EASINGS).map((k) => [k, k])];
    if (this.easingSelect.dataset.key !== easingOptions[0][1]) {
      this.easingSelect.replaceChildren(...easingOptions.map(([value, textContent]) => element("option", {}, { value, textContent })));
      this.easingSelect.dataset.key = easingOptions[0][1];
    }
    this.timingBar.style.opacity = arrow ? "1" : "0.45";
    this.timingBar.title = arrow ? "" : "Select an arrow to time it";
    if (!arrow) {
      for (const c of this.timingControls) {
        c.disabled = true;
        if (c.tagName === "INPUT") c.value = "";
      }
      return;
    }
    for (const c of this.timingControls) c.disabled = false;
    const frames = this.numFrames(), last = frames - 1;
    const timing = arrowTiming(arrow, frames, this.nodeEasing());
    const set = (input, value) => { if (force || document.activeElement !== input) input.value = value; };
    this.startInput.max = String(last);
    this.endInput.max = String(last);
    set(this.startInput, String(timing.start));
    set(this.endInput, String(timing.end));
    set(this.easingSelect, EASINGS[arrow.easing] ? arrow.easing : "");
    set(this.visibleSelect, timing.visible);
    const j = this.selectedVertex;
    const inner = j > 0 && j < arrow.points.length - 1;
    this.pointInput.disabled = !inner;
    if (!inner) {
      this.pointLabel.title = "Select a point between the arrow's ends (click it) to give it a frame";
      this.pointInput.value = "";
    } else {
      const range = pointFrameRange(arrow, j, frames);
      this.pointLabel.title = `Point ${j} of the selected arrow`;
      this.pointInput.min = range ? String(range[0]) : "";
      this.pointInput.max = range ? String(range[1]) : "";
      this.pointInput.disabled = !range && !Number.isInteger(arrow.points[j][2]);
      set(this.pointInput, Number.isInteger(arrow.points[j][2]) ? String(arrow.points[j][2]) : "");
    }
  }

  draw(forceFields = false) {
    const canvas = this.canvas;
    const cw = canvas.clientWidth, ch = canvas.clientHeight;
    const { doc: raw, problem } = this.readDocument();
    const doc = this.displayDocument();
    this.fixSelection();
    this.syncTimingBar(doc, forceFields);
    if (!cw || !ch) return;
    this.drawnState = this.drawKey();
    const dpr = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(cw * dpr) || canvas.height !== Math.round(ch * dpr)) {
      canvas.width = Math.round(cw * dpr);
      canvas.height = Math.round(ch * dpr);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = "#161616";
    ctx.fillRect(0, 0, cw, ch);

    const f = this.fit(raw);
    const toCanvas = ([x, y]) => [f.ox + x * f.s, f.oy + y * f.s];
    ctx.imageSmoothingEnabled = f.s < 2; // zoomed in: the pixels as they are
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
    ctx.imageSmoothingEnabled = true;

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

    const frames = this.numFrames(), easing = this.nodeEasing();
    (doc?.arrows || []).forEach((arrow, i) => this.drawArrow(ctx, arrow, i === this.selected, toCanvas, frames, easing));
    (doc?.anchors || []).forEach((anchor, i) => this.drawAnchor(ctx, anchor, i === this.selectedAnchor, toCanvas));

    const late = (doc?.arrows || []).filter((a) => [a.start_frame, a.end_frame, ...a.points.map((p) => p[2])]
      .some((v) => Number.isInteger(v) && v > frames - 1));
    const contradiction = (doc?.arrows || []).some((a) => a.object === CAMERA) &&
      (doc?.anchors || []).some((a) => a.object === BACKGROUND);
    this.status.textContent = this.isLinked() ? "Arrows come from the linked input; unlink it to draw."
      : problem ? `${problem}. Drawing replaces it.`
        : this.notice ? this.notice
          : contradiction ? "A camera arrow moves the background that background pins hold still: delete one of them."
          : late.length ? `An arrow's frames go past num_frames (${frames}): shown clamped to frame ${frames - 1}.`
            : this.tool === "stay" ? STAY_HELP
              : !this.background ? `Queue once to see the image and masks. ${HELP}` : HELP;
    this.status.title = this.status.textContent;
  }

  drawAnchor(ctx, anchor, selected, toCanvas) {
    const [x, y] = toCanvas(anchor.point);
    const color = objectColor(anchor.object === BACKGROUND ? CAMERA : anchor.object);
    ctx.lineWidth = 2;
    ctx.strokeStyle = "rgba(0,0,0,0.75)";
    ctx.beginPath();
    ctx.rect(x - 5, y - 5, 10, 10);
    ctx.stroke();
    ctx.fillStyle = color;
    ctx.fill();
    ctx.beginPath(); // a cross: it does not move
    ctx.moveTo(x - 3, y - 3); ctx.lineTo(x + 3, y + 3);
    ctx.moveTo(x + 3, y - 3); ctx.lineTo(x - 3, y + 3);
    ctx.strokeStyle = "#000";
    ctx.lineWidth = 1.5;
    ctx.stroke();
    if (selected) {
      ctx.beginPath();
      ctx.arc(x, y, HANDLE + 4, 0, 2 * Math.PI);
      ctx.strokeStyle = "#fff";
      ctx.lineWidth = 2;
      ctx.stroke();
    }
  }

  drawArrow(ctx, arrow, selected, toCanvas, frames, easing) {
    const color = objectColor(arrow.object);
    const pts = arrow.points.map(toCanvas);
    const timing = arrowTiming(arrow, frames, easing);
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.strokeStyle = "rgba(0,0,0,0.6)";
    ctx.lineWidth = selected ? 6 : 5;
    ctx.beginPath();
    pts.forEach(([x, y], j) => (j ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
    ctx.stroke();
    ctx.strokeStyle = color;
    ctx.lineWidth = selected ? 3 : 2;
    if (timing.visible === "range") ctx.setLineDash([7, 4]); // pops in and out
    ctx.stroke();
    ctx.setLineDash([]);

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

    // frame ticks: where the object is at each frame while it moves
    const positions = arrowFrames(arrow, frames, easing);
    for (let t = timing.start + 1; t < timing.end; t++) {
      const [x, y] = toCanvas(positions[t]);
      ctx.beginPath();
      ctx.arc(x, y, 2.2, 0, 2 * Math.PI);
      ctx.fillStyle = "#fff";
      ctx.strokeStyle = color;
      ctx.lineWidth = 1;
      ctx.fill();
      ctx.stroke();
    }

    // label: object, and the frames when they are not the whole video
    const [sx, sy] = pts[0];
    const range = timing.start > 0 || timing.end < frames - 1 ? ` f${timing.start}-${timing.end}` : "";
    const own = EASINGS[arrow.easing] ? ` ${arrow.easing}` : "";
    ctx.font = "bold 11px sans-serif";
    ctx.fillStyle = color;
    ctx.strokeStyle = "rgba(0,0,0,0.7)";
    ctx.lineWidth = 3;
    const text = `${arrow.object === CAMERA ? "camera" : String(arrow.object)}${range}${own}`;
    ctx.strokeText(text, sx + 6, sy - 6);
    ctx.fillText(text, sx + 6, sy - 6);

    // points that carry their own frame: a square with the frame
    ctx.font = "10px sans-serif";
    arrow.points.forEach((p, j) => {
      if (!Number.isInteger(p[2]) || j === 0 || j === arrow.points.length - 1) return;
      const [x, y] = pts[j];
      ctx.fillStyle = color;
      ctx.fillRect(x - 4, y - 4, 8, 8);
      ctx.strokeStyle = "#000";
      ctx.lineWidth = 1;
      ctx.strokeRect(x - 4, y - 4, 8, 8);
      ctx.strokeStyle = "rgba(0,0,0,0.7)";
      ctx.lineWidth = 3;
      ctx.strokeText(`f${p[2]}`, x + 6, y + 12);
      ctx.fillStyle = "#fff";
      ctx.fillText(`f${p[2]}`, x + 6, y + 12);
    });

    if (!selected) return;
    pts.forEach(([x, y], j) => {
      ctx.beginPath();
      ctx.arc(x, y, j === this.selectedVertex ? HANDLE + 1 : HANDLE - 1, 0, 2 * Math.PI);
      ctx.fillStyle = j === this.selectedVertex ? color : "#fff";
      ctx.strokeStyle = j === this.selectedVertex ? "#fff" : color;
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
      this.setSize([Math.max(this.size[0], 420), Math.max(this.size[1], 600)]);
    });
    chain("onExecuted", function (output) { this.motionkitArrowEditor?.onExecuted(output); });
    chain("onConfigure", function () { this.motionkitArrowEditor?.poll(); this.motionkitArrowEditor?.draw(); });
    chain("onConnectionsChange", function () {
      this.motionkitArrowEditor?.watchUpstreamMasks();
      this.motionkitArrowEditor?.draw();
    });
    chain("onDrawForeground", function () { this.motionkitArrowEditor?.redrawIfChanged(); });
    chain("onRemoved", function () { this.motionkitArrowEditor?.remove(); });
  },
});
