// MotionKit: what the in-node editors (Click to Mask, Arrows to Trajectories) share to stay current on
// every frontend, the classic LiteGraph canvas and Nodes 2.0 (Vue nodes) alike.
//
// Nodes 2.0 never calls LiteGraph's draw callbacks (a DOM widget's onDraw, a node's onDrawForeground), and
// the classic canvas calls them only for nodes on screen. So the editors do not rely on them: one timer
// calls each live editor's cheap `poll()` (it compares the upstream Load Image file, the linked nodes and
// the widget values with what it shows, and reloads only on a change). The editors also poll at once on
// the events they get (connections, configure).
//
// Edits made in an editor's own canvas are not LiteGraph interactions (and the editors cancel the pointer
// events' compatibility mouse events), so the frontend's change tracker (unsaved mark, undo, the workflow it
// keeps across page reloads) is told with LiteGraph's own before/after-change event, which every frontend
// version listens for.
//
// Node ids: the server sends execution ids as strings ("12", or "5:12" inside a subgraph); the live graph
// holds numbers in the classic canvas and may hold strings with Nodes 2.0, so ids are compared as strings.

export const POLL_MS = 250;

const editors = new Set();
let timer = null;

function tick() {
  for (const editor of editors) {
    if (!editor.node?.graph) continue; // not (yet) in a graph
    try {
      editor.poll();
    } catch (err) {
      console.error("[MotionKit] editor refresh failed", err);
    }
  }
}

/** Keep `editor.poll()` running until `unwatch(editor)` (the node's onRemoved). */
export function watch(editor) {
  editors.add(editor);
  timer ??= setInterval(tick, POLL_MS);
}

export function unwatch(editor) {
  editors.delete(editor);
  if (!editors.size && timer !== null) {
    clearInterval(timer);
    timer = null;
  }
}

/** Tell the frontend's change tracker that the graph changed (after an edit in an editor). */
export function notifyGraphChanged(canvasElement) {
  const target = canvasElement ?? document;
  for (const subType of ["before-change", "after-change"]) {
    target.dispatchEvent(new CustomEvent("litegraph:canvas", { bubbles: true, detail: { subType } }));
  }
}

/** The node of an execution id ("12", 12, or "5:12" for node 12 inside subgraph node 5) in `graph`. */
export function nodeByExecutionId(graph, id) {
  if (!graph || id == null) return null;
  const path = String(id).split(":");
  let node = null;
  for (const part of path) {
    if (!graph) return null;
    node = graph.getNodeById(part) ?? (/^-?\d+$/.test(part) ? graph.getNodeById(Number(part)) : null);
    if (!node) return null;
    graph = node.subgraph;
  }
  return node;
}
