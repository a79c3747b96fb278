"""The point editor in the real ComfyUI frontend (headless Debian Chromium, Playwright) against a real ComfyUI
server with MotionKit: load the example workflow, click on the image in the node, see SamPredictor's mask
drawn over it, edit points (negative, new object, drag, delete), queue, find the saved mask, and reload the
page to find the points and masks again. Also: a box drawn by dragging, ten objects (more than the palette),
undo/redo, zoom and pan (clicks land on the pixel under the mouse), the points surviving copy-paste of the
node, a workflow tab switch and save/reopen, and the image letterboxed into the node at any size. Runs on the
frontend of the session's lane (MOTIONKIT_FRONTEND: the host's own, or the newest in the classic canvas or
with Nodes 2.0; see motionkit_testing/frontends.py)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from motionkit_testing.browser import (CHROMIUM, CHROMIUM_ARGS, copy_paste_node, dismiss_overlays, load_issues,
                                      node_screen_rect, open_app, playwright_and_chromium, resize_node,
                                      save_and_reopen, switch_tab_and_back, wait_for_app, wait_until_persisted)
from motionkit_testing.comfy_session import PACK_DIRNAME
from motionkit_testing.pack import pack_module
from motionkit_testing.tiny_sam import (SAM_TEST_IMAGE, TINY_SAM_PTH, build_sam, ensure_tiny_sam, load_uint8,
                                        predictor_masks)

pytestmark = [pytest.mark.server, pytest.mark.slow, pytest.mark.browser]

msam = pack_module("sam")
REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / "example_workflows" / "click_to_mask.json"


@pytest.fixture(scope="module")
def reference_sam(server, base_dir):
    ensure_tiny_sam(base_dir)
    sam = build_sam(seed=None)
    sam.load_state_dict(torch.load(base_dir / "models" / "sams" / TINY_SAM_PTH, weights_only=True))
    return sam.eval()


@pytest.fixture(scope="module")
def page(server, reference_sam):
    sync_api = playwright_and_chromium()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield open_app(browser, server, "MotionKitClickToMask")
        browser.close()


def our_errors(pg) -> list:
    return [e for e in pg.motionkit_errors if any(f in e for f in ("click_to_mask.js", "sam_points.js", "editor_live.js"))]


EDITOR = "window.app.graph._nodes.find(n => n.type === 'MotionKitClickToMask').motionkitSamEditor"
IMAGE_SHOWN = f"() => {EDITOR}.root.dataset.imageWidth === '96' && {EDITOR}.root.dataset.status === 'ready'"


def editor_state(pg) -> dict:
    return pg.evaluate(f"""() => {{ const e = {EDITOR}; return {{
        status: e.root.dataset.status, maskCount: +(e.root.dataset.maskCount || 0),
        maskPixels: +(e.root.dataset.maskPixels || -1), text: e.statusEl.textContent,
        points: e.pointsWidget.value, inflight: e.inflight, seq: e.seq }}; }}""")


def wait_for_masks(pg, count: int, points: str | None = None, timeout: float = 30.0) -> dict:
    """Until the editor shows ``count`` masks for its current points (no request in flight)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        s = editor_state(pg)
        if s["status"] == "ready" and not s["inflight"] and s["maskCount"] == count and \
                (points is None or s["points"] == points):
            return s
        if s["status"] == "error":
            raise AssertionError(f"the editor shows an error: {s['text']}")
        pg.wait_for_timeout(100)
    raise AssertionError(f"no {count} mask(s) in {timeout}s: {editor_state(pg)}")


def client_xy(pg, x: float, y: float) -> tuple:
    """Page coordinates of the centre of image pixel (x, y) inside the node's canvas."""
    return tuple(pg.evaluate(f"""([x, y]) => {{
        const e = {EDITOR}; const c = e.canvas; const r = c.getBoundingClientRect();
        const s = r.width / c.clientWidth;
        return [r.left + (e.fit.x + (x + 0.5) * e.fit.scale) * s, r.top + (e.fit.y + (y + 0.5) * e.fit.scale) * s];
    }}""", [x, y]))


def canvas_rgb(pg, x: int, y: int) -> np.ndarray:
    """The editor canvas's colour at the centre of image pixel (x, y)."""
    return np.array(pg.evaluate(f"""([x, y]) => {{
        const e = {EDITOR}; const dpr = e.canvas.width / e.canvas.clientWidth;
        const cx = (e.fit.x + (x + 0.5) * e.fit.scale) * dpr, cy = (e.fit.y + (y + 0.5) * e.fit.scale) * dpr;
        const px = e.canvas.getContext('2d').getImageData(Math.floor(cx), Math.floor(cy), 1, 1).data;
        return Array.from(px).slice(0, 3);
    }}""", [x, y]), dtype=np.float64)


def queue_from_page(pg, server, timeout: float = 120.0) -> dict:
    """Queue the page's graph (as the Run button does) and wait for its history entry."""
    before = set(server.get("/history"))
    pg.evaluate("async () => { await window.app.queuePrompt(0, 1); }")
    deadline = time.time() + timeout
    while time.time() < deadline:
        for pid, e in server.get("/history").items():
            if pid not in before and e.get("status", {}).get("completed") is not None:
                return e
        time.sleep(0.3)
    raise AssertionError(f"the queued prompt did not finish in {timeout}s")


def objects_of(points_text: str) -> list:
    data = json.loads(points_text)
    assert data["version"] == 1 and (data["width"], data["height"]) == (96, 64)
    return data["objects"]


def pixel_away_from(mask: np.ndarray, value: bool, points: list, min_dist: float = 4.0) -> tuple:
    ys, xs = np.nonzero(mask == value)
    for x, y in zip(xs, ys):
        if all((x - px) ** 2 + (y - py) ** 2 > min_dist ** 2 for px, py in points):
            return int(x), int(y)
    raise AssertionError("no pixel to sample")


def choose_test_image_and_sam(page) -> None:
    """Point the workflow's Load Image at the test image and its SAM loader at the tiny test SAM, at zoom 1."""
    page.evaluate(f"""() => {{
        const g = window.app.graph;
        const set = (w, v) => {{ w.value = v; w.callback?.(v); }};
        set(g._nodes.find(n => n.type === 'LoadImage').widgets.find(w => w.name === 'image'), '{SAM_TEST_IMAGE}');
        set(g._nodes.find(n => n.type === 'MotionKitSAMLoader').widgets[0], '{TINY_SAM_PTH}');
        window.app.canvas.ds.scale = 1; window.app.canvas.ds.offset = [0, 0];
        window.app.canvas.deselectAll?.(); window.app.canvas.setDirty(true, true);
    }}""")


def test_click_shows_the_mask_then_queue_saves_it(page, server, base_dir, reference_sam):
    wf = json.loads(WORKFLOW.read_text())
    node_id = {n["type"]: str(n["id"]) for n in wf["nodes"]}
    image = load_uint8(base_dir / "input" / SAM_TEST_IMAGE)

    # JS and Python agree on the colours and the format
    js = page.evaluate(f"""async () => {{
        const m = await import('/extensions/{PACK_DIRNAME}/js/sam_points.js');
        const st = m.emptyState(); st.width = 96; st.height = 64;
        st.objects = [{{positive: [[3, 4]], negative: [[5, 6]], box: null}}, m.emptyObject(),
                      {{positive: [], negative: [], box: [1, 2, 30, 40]}}];
        return {{palette: m.PALETTE, alpha: m.OVERLAY_ALPHA, text: m.stateToText(st)}}; }}""")
    assert js["palette"] == [list(c) for c in msam.PALETTE] and js["alpha"] == msam.OVERLAY_ALPHA
    parsed = msam.parse_points(js["text"], (96, 64))  # the empty object is not written
    assert [(o.positive, o.negative, o.box) for o in parsed.objects] == [
        (((3.0, 4.0),), ((5.0, 6.0),), None), ((), (), (1.0, 2.0, 30.0, 40.0))]

    # Load the example workflow as saved, then pick the test image and the tiny SAM, as a user would.
    page.evaluate("async (wf) => { await window.app.loadGraphData(wf); }", wf)
    # the frontend offers the example's SAM checkpoint for download (the loader's properties.models), in
    # its "Missing Models" dialog (1.2x) or its issues panel (1.48+)
    issues = load_issues(page)
    assert issues["models"].get("sam_vit_b_01ec64.pth", {}).get("url"), issues
    # before any run the editor follows Load Image: example.png is not in input/, then the test image is
    page.wait_for_function(f"() => {EDITOR}.statusEl.textContent.includes('Could not load example.png')",
                           timeout=30_000)
    assert editor_state(page)["status"] in ("no-image", "ready", "no-model")
    choose_test_image_and_sam(page)
    page.wait_for_function(IMAGE_SHOWN, timeout=30_000)
    assert editor_state(page)["points"] == ""

    # 1. left click on the disc: one object, one positive point
    page.mouse.click(*client_xy(page, 28, 32))
    try:
        s = wait_for_masks(page, 1)
    except AssertionError:
        page.screenshot(path="/tmp/motionkit_click_to_mask_failure.png")
        raise
    objs = objects_of(s["points"])
    assert objs == [{"positive": [[28, 32]], "negative": [], "box": None}]
    (want, _, _), = predictor_masks(reference_sam, image, objs)
    assert s["maskPixels"] == int(want.sum())
    # the overlay on the canvas is the mask: object colour blended at 50% inside, the image outside
    color = np.round(np.array(msam.PALETTE[0]) * 255)
    alpha = round(msam.OVERLAY_ALPHA * 255) / 255
    xin, yin = pixel_away_from(want, True, [(28, 32)])
    np.testing.assert_allclose(canvas_rgb(page, xin, yin), image[yin, xin] * (1 - alpha) + color * alpha, atol=2.5)
    xout, yout = pixel_away_from(want, False, [(28, 32)])
    np.testing.assert_allclose(canvas_rgb(page, xout, yout), image[yout, xout], atol=1.5)

    # 2. right click: a negative point for the same object
    page.mouse.click(*client_xy(page, 70, 30), button="right")
    page.wait_for_function(f"() => {EDITOR}.pointsWidget.value.includes('[70,30]')", timeout=10_000)
    s = wait_for_masks(page, 1)
    objs = objects_of(s["points"])
    assert objs == [{"positive": [[28, 32]], "negative": [[70, 30]], "box": None}]
    (want, _, _), = predictor_masks(reference_sam, image, objs)
    assert s["maskPixels"] == int(want.sum())

    # 3. N starts a second object; its click gives a second mask
    page.keyboard.press("n")
    page.mouse.click(*client_xy(page, 69, 28))
    s = wait_for_masks(page, 2)
    objs = objects_of(s["points"])
    assert len(objs) == 2 and objs[1] == {"positive": [[69, 28]], "negative": [], "box": None}

    # 4. drag object 1's positive point to (16, 40); 5. right-click the negative point to delete it
    page.mouse.move(*client_xy(page, 28, 32))
    page.mouse.down()
    page.mouse.move(*client_xy(page, 20, 36), steps=4)
    page.mouse.move(*client_xy(page, 16, 40), steps=4)
    page.mouse.up()
    page.wait_for_function(f"() => {EDITOR}.pointsWidget.value.includes('[16,40]')", timeout=10_000)
    page.mouse.click(*client_xy(page, 70, 30), button="right")  # right click on a point deletes it
    page.wait_for_function(f"() => !{EDITOR}.pointsWidget.value.includes('[70,30]')", timeout=10_000)
    s = wait_for_masks(page, 2)
    objs = objects_of(s["points"])
    assert objs == [{"positive": [[16, 40]], "negative": [], "box": None},
                    {"positive": [[69, 28]], "negative": [], "box": None}]
    expected = predictor_masks(reference_sam, image, objs)
    assert s["maskPixels"] == sum(int(m.sum()) for m, _, _ in expected)

    # The points are saved in the workflow and sent in the prompt; the canvas widget is not.
    out = page.evaluate("""async () => {
        const node = window.app.graph._nodes.find(n => n.type === 'MotionKitClickToMask');
        const saved = window.app.graph.serialize().nodes.find(n => String(n.id) === String(node.id));
        const prompt = (await window.app.graphToPrompt()).output[String(node.id)];
        return {saved: saved.widgets_values, inputs: prompt.inputs}; }""")
    assert out["saved"] == [s["points"]]
    assert sorted(out["inputs"]) == ["image", "points", "sam_model"] and out["inputs"]["points"] == s["points"]

    # Queue from the page; the saved mask is the union of SamPredictor's masks for these points.
    entry = queue_from_page(page, server)
    assert entry["status"]["status_str"] == "success", entry
    (info,) = entry["outputs"][node_id["SaveImage"]]["images"]
    saved = np.array(Image.open(base_dir / "output" / info["subfolder"] / info["filename"]))[..., 0] == 255
    assert np.array_equal(saved, np.logical_or.reduce([m for m, _, _ in expected]))
    # the segmented frame is handed back to the editor
    assert entry["outputs"][node_id["MotionKitClickToMask"]]["motionkit_sam_image"][0]["type"] == "temp"
    assert not our_errors(page), our_errors(page)

    # Reload the page: the frontend restores the workflow, and the editor shows the image, the points and
    # their masks again, without a run.
    wait_until_persisted(page, "[[16,40]]")  # the dragged point, only in the edited points
    page.reload()
    wait_for_app(page, "MotionKitClickToMask")
    page.wait_for_function(IMAGE_SHOWN, timeout=30_000)
    s2 = wait_for_masks(page, 2, points=s["points"])
    assert s2["maskPixels"] == s["maskPixels"]
    assert not our_errors(page), our_errors(page)


def test_before_an_image_the_node_says_what_is_needed(page):
    out = page.evaluate("""async () => {
        const node = LiteGraph.createNode('MotionKitClickToMask');
        node.pos = [40, 700];
        window.app.graph.add(node);
        await new Promise(r => setTimeout(r, 800));
        const e = node.motionkitSamEditor;
        e.poll(); e.render();
        const r = {status: e.root.dataset.status, text: e.statusEl.textContent,
                   points: node.widgets.find(w => w.name === 'points'),
                   widgets: node.widgets.map(w => [w.name, w.hidden === true, w.serialize !== false,
                                                   !(w.options && w.options.serialize === false)])};
        r.points = r.points.computeSize()[1];
        window.app.graph.remove(node);
        const loader = LiteGraph.createNode('MotionKitSAMLoader');
        window.app.graph.add(loader);
        await new Promise(r => setTimeout(r, 800));
        r.loaderModels = loader.properties.models;
        window.app.graph.remove(loader);
        return r; }""")
    assert out["status"] == "no-image" and "connect a Load Image node" in out["text"], out["text"]
    # the data widget takes no room, is saved and sent; the editor widget is neither saved nor sent
    assert out["widgets"] == [["points", True, True, True], ["sam_editor", False, False, False]]
    assert out["points"] == -4
    # a new loader node carries the download metadata the missing-models dialog reads from saved workflows
    assert {"name": "sam_vit_b_01ec64.pth", "directory": "sams",
            "url": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"} in out["loaderModels"]
    assert not our_errors(page), our_errors(page)


def test_without_a_load_image_upstream_the_first_run_shows_the_frame(page, server, base_dir, reference_sam):
    """Load Image -> Image Flip -> Click to Mask: the editor cannot show the file, so it asks for a run; the
    run fails for want of points but hands the editor the flipped frame, on which the clicks then work."""
    flipped = np.ascontiguousarray(load_uint8(base_dir / "input" / SAM_TEST_IMAGE)[::-1])
    page.evaluate(f"""async () => {{
        const g = window.app.graph; g.clear();
        const add = (type, pos) => {{ const n = LiteGraph.createNode(type); g.add(n); n.pos = pos; return n; }};
        const img = add('LoadImage', [20, 20]);
        img.widgets.find(w => w.name === 'image').value = '{SAM_TEST_IMAGE}';
        const flip = add('ImageFlip', [20, 420]);
        flip.widgets.find(w => w.name === 'flip_method').value = 'x-axis: vertically';
        const sam = add('MotionKitSAMLoader', [20, 560]);
        sam.widgets[0].value = '{TINY_SAM_PTH}';
        const ctm = add('MotionKitClickToMask', [380, 20]);
        const m2i = add('MaskToImage', [900, 20]);
        const save = add('SaveImage', [900, 120]);
        save.widgets.find(w => w.name === 'filename_prefix').value = 'motionkit_browser/flipped';
        img.connect(0, flip, 0); flip.connect(0, ctm, ctm.findInputSlot('image'));
        sam.connect(0, ctm, ctm.findInputSlot('sam_model'));
        ctm.connect(1, m2i, 0); m2i.connect(0, save, 0);
        window.app.canvas.ds.scale = 1; window.app.canvas.ds.offset = [0, 0];
        g.setDirtyCanvas(true, true);
        await new Promise(r => setTimeout(r, 800)); }}""")
    s = editor_state(page)
    assert s["status"] == "no-image" and "queue the workflow once" in s["text"], s

    failed = queue_from_page(page, server)
    assert failed["status"]["status_str"] == "error"
    error = next(m[1] for m in failed["status"]["messages"] if m[0] == "execution_error")
    assert error["node_type"] == "MotionKitClickToMask" and "there are no points yet" in error["exception_message"]
    page.wait_for_function(IMAGE_SHOWN, timeout=30_000)
    dismiss_overlays(page)  # the frontend's execution-error dialog (1.2x) or issues overlay (1.48+)

    page.mouse.click(*client_xy(page, 28, 32))
    s = wait_for_masks(page, 1)
    objs = objects_of(s["points"])
    assert objs == [{"positive": [[28, 32]], "negative": [], "box": None}]
    (want, _, _), = predictor_masks(reference_sam, flipped, objs)
    assert s["maskPixels"] == int(want.sum())

    entry = queue_from_page(page, server)
    assert entry["status"]["status_str"] == "success", entry
    save_id = page.evaluate("() => String(window.app.graph._nodes.find(n => n.type === 'SaveImage').id)")
    (info,) = entry["outputs"][save_id]["images"]
    saved = np.array(Image.open(base_dir / "output" / info["subfolder"] / info["filename"]))[..., 0] == 255
    assert np.array_equal(saved, want)
    assert not our_errors(page), our_errors(page)



# --- boxes, many objects, history, view, persistence, sizing ------------------------------------------------

def setup_example(pg) -> str:
    """The example workflow with the test image and the tiny SAM picked, at canvas zoom 1; the Click to Mask
    node's id once the image is shown."""
    wf = json.loads(WORKFLOW.read_text())
    pg.evaluate("async (wf) => { await window.app.loadGraphData(wf); }", wf)
    load_issues(pg)
    choose_test_image_and_sam(pg)
    pg.wait_for_function(IMAGE_SHOWN, timeout=30_000)
    dismiss_overlays(pg)
    return pg.evaluate("() => String(window.app.graph._nodes.find(n => n.type === 'MotionKitClickToMask').id)")


def info(pg, node_id=None) -> dict:
    editor = EDITOR if node_id is None else f"window.app.graph.getNodeById({node_id}).motionkitSamEditor"
    return pg.evaluate(f"() => {editor}.info()")


def points_of(pg, node_id) -> str:
    return pg.evaluate(f"() => window.app.graph.getNodeById({node_id}).widgets.find(w => w.name === 'points').value")


def editor_button(pg, name: str):
    pg.evaluate(f"""() => {{ document.querySelectorAll('[data-motionkit-target]').forEach(e => delete e.dataset.motionkitTarget);
        {EDITOR}.root.dataset.motionkitTarget = '1'; }}""")
    return pg.locator(f"[data-motionkit-target='1'] [data-motionkit='{name}']")


def test_a_box_by_dragging_and_ten_objects(page, server, base_dir, reference_sam):
    """Dragging on the image draws the active object's box (SAM's box prompt); N and a click start each of ten
    objects, more than the palette's eight colours: ten masks, SamPredictor's, in colours that cycle; undo and
    redo step through them."""
    image = load_uint8(base_dir / "input" / SAM_TEST_IMAGE)
    setup_example(page)
    a, b = client_xy(page, 10, 14), client_xy(page, 46, 50)
    page.mouse.move(*a)
    page.mouse.down()
    page.mouse.move(*b, steps=8)
    page.mouse.up()
    s = wait_for_masks(page, 1)
    (obj,) = objects_of(s["points"])
    assert obj["positive"] == [] and obj["negative"] == []
    np.testing.assert_allclose(obj["box"], [10.5, 14.5, 46.5, 50.5], atol=1.01)   # pixel centres, rounded
    (want, _, _), = predictor_masks(reference_sam, image, [obj])
    assert s["maskPixels"] == int(want.sum())

    clicks = [(x, y) for y in (6, 58) for x in (8, 30, 52, 74, 90)][:9]
    for x, y in clicks:
        page.keyboard.press("n")
        page.mouse.click(*client_xy(page, x, y))
    s = wait_for_masks(page, 10)
    objs = objects_of(s["points"])
    assert len(objs) == 10 and [o["positive"] for o in objs[1:]] == [[[x, y]] for x, y in clicks]
    expected = predictor_masks(reference_sam, image, objs)
    assert s["maskPixels"] == sum(int(m.sum()) for m, _, _ in expected)
    chips = page.evaluate(f"""() => [...{EDITOR}.legend.children].map(c => [c.textContent,
        c.style.background.match(/\\d+/g).slice(0, 3).map(Number)])""")
    assert [c[0] for c in chips] == [str(i + 1) for i in range(10)]
    assert [c[1] for c in chips] == [[int(np.floor(v * 255 + 0.5)) for v in msam.PALETTE[i % len(msam.PALETTE)]]
                                     for i in range(10)]   # Math.round, the palette cycling

    editor_button(page, "undo").click()
    s = wait_for_masks(page, 9)
    assert objects_of(s["points"]) == objs[:9]
    page.keyboard.press("Control+Shift+z")
    s = wait_for_masks(page, 10)
    assert objects_of(s["points"]) == objs
    for _ in range(10):
        page.keyboard.press("Control+z")
    s = editor_state(page)
    assert s["points"] == "" and info(page)["history"] == {"undo": 0, "redo": 10}
    page.keyboard.press("Control+y")
    s = wait_for_masks(page, 1)
    assert objects_of(s["points"]) == objs[:1]
    assert not our_errors(page), our_errors(page)


def test_zoom_and_pan_then_a_click_lands_on_its_pixel(page, server):
    """The wheel zooms the editor about the cursor (not the graph), Alt+drag pans (no point added), a click in
    the zoomed view lands on the pixel under the mouse, Fit restores the fitted view."""
    setup_example(page)
    graph_scale = page.evaluate("() => app.canvas.ds.scale")
    page.evaluate(f"() => {EDITOR}.focus()")
    page.mouse.move(*client_xy(page, 60, 20))
    page.mouse.wheel(0, -400)
    page.wait_for_function(f"() => {EDITOR}.info().view.zoom > 1.5", timeout=5000)
    page.mouse.wheel(0, -400)
    page.wait_for_function(f"() => {EDITOR}.info().view.zoom > 3", timeout=5000)
    assert page.evaluate("() => app.canvas.ds.scale") == graph_scale
    i = info(page)
    assert abs(i["fit"]["scale"] - i["fit"]["fitScale"] * i["view"]["zoom"]) < 1e-9
    page.mouse.click(*client_xy(page, 63, 23))
    s = wait_for_masks(page, 1)
    assert objects_of(s["points"]) == [{"positive": [[63, 23]], "negative": [], "box": None}]
    x, y = client_xy(page, 57, 19)   # (what stays in view around the zoom's centre)
    page.keyboard.down("Alt")
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x - 30, y + 20, steps=5)
    page.mouse.up()
    page.keyboard.up("Alt")
    x2, y2 = client_xy(page, 57, 19)
    assert abs(x2 - x + 30) < 1 and abs(y2 - y - 20) < 1
    assert objects_of(editor_state(page)["points"]) == [{"positive": [[63, 23]], "negative": [], "box": None}]
    page.mouse.click(*client_xy(page, 58, 25), button="right")
    page.wait_for_function(f"() => {EDITOR}.pointsWidget.value.includes('[58,25]')", timeout=10_000)
    s = wait_for_masks(page, 1)
    assert objects_of(s["points"])[0]["negative"] == [[58, 25]]
    editor_button(page, "fit").click()
    assert info(page)["view"] == {"zoom": 1, "panX": 0, "panY": 0}
    assert not our_errors(page), our_errors(page)


def test_points_survive_copy_paste_a_tab_switch_and_save_reopen(page, server):
    """Two objects (a point, a box): a pasted copy of the node holds them and shows them; going to another
    workflow tab and back, and saving the workflow and opening it again, keep them and their masks."""
    node = setup_example(page)
    page.mouse.click(*client_xy(page, 28, 32))
    page.keyboard.press("n")
    a, b = client_xy(page, 60, 10), client_xy(page, 85, 45)
    page.mouse.move(*a)
    page.mouse.down()
    page.mouse.move(*b, steps=6)
    page.mouse.up()
    s = wait_for_masks(page, 2)
    value = s["points"]
    assert [bool(o["box"]) for o in objects_of(value)] == [False, True]

    copy = copy_paste_node(page, node)
    assert points_of(page, copy) == value
    pasted = page.evaluate(f"() => window.app.graph.getNodeById({copy}).motionkitSamEditor.state")
    assert [[o["positive"], o["box"]] for o in pasted["objects"]] == [[o["positive"], o["box"]] for o in objects_of(value)]

    switch_tab_and_back(page)
    assert points_of(page, node) == value and points_of(page, copy) == value
    page.wait_for_function(IMAGE_SHOWN, timeout=30_000)
    assert wait_for_masks(page, 2, points=value)["maskPixels"] == s["maskPixels"]

    saved = save_and_reopen(page, "motionkit_points_saved.json")
    assert next(n for n in saved["nodes"] if str(n["id"]) == node)["widgets_values"] == [value]
    page.wait_for_function(IMAGE_SHOWN, timeout=30_000)
    assert wait_for_masks(page, 2, points=value)["maskPixels"] == s["maskPixels"]
    assert info(page)["history"] == {"undo": 0, "redo": 0}   # the history is the editor's, not saved
    assert not our_errors(page), our_errors(page)


def test_the_image_fits_the_node_at_any_size(page, server):
    """Resized wide, tall, small and large, the node's canvas stays inside it and the 96x64 image keeps 3:2,
    letterboxed and centred; a click lands on the pixel under the mouse at every size."""
    node = setup_example(page)
    for k, (width, height) in enumerate([(480, 470), (900, 460), (380, 700), (600, 360)]):
        resize_node(page, node, width, height)
        page.wait_for_timeout(400)
        i, box = info(page), node_screen_rect(page, node)
        c, fit = i["canvas"], i["fit"]
        assert box["left"] - 1 <= c["left"] and c["left"] + c["clientWidth"] <= box["right"] + 1, (c, box)
        assert box["top"] - 1 <= c["top"] and c["top"] + c["clientHeight"] <= box["bottom"] + 1, (c, box)
        assert c["width"] >= width - 40
        w, h = 96 * fit["scale"], 64 * fit["scale"]
        assert abs(w - c["width"]) < 0.01 or abs(h - c["height"]) < 0.01, (fit, c)
        assert w <= c["width"] + 0.01 and h <= c["height"] + 0.01
        np.testing.assert_allclose([fit["x"] * 2 + w, fit["y"] * 2 + h], [c["width"], c["height"]], atol=0.01)
        editor_button(page, "clear").click()
        page.mouse.click(*client_xy(page, 20 + 10 * k, 30))
        s = wait_for_masks(page, 1)
        assert objects_of(s["points"]) == [{"positive": [[20 + 10 * k, 30]], "negative": [], "box": None}]
    assert not our_errors(page), our_errors(page)
