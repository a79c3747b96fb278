"""The arrow editor in the real ComfyUI frontend (headless Debian Chromium via Playwright, against a real
ComfyUI server): load the example workflow (Click to Mask on the tiny random SAM in place of ViT-B), queue
it so the editor shows the image and the mask, draw an arrow with the mouse on the node's canvas, queue
again, and find tracks whose end displacement is the drawn arrow. The editor also shows Click to Mask's
masks when only Click to Mask has run. Also: editing (bend, reverse, delete), what is saved and sent, and
that the editor's geometry and colours are the Python ones; before any run it follows the upstream Load
Image, and a page reload keeps the arrows. Arrows JSON version 2 from the editor: an arrow timed in the
timing row (start/end frame, its own easing, visibility, a point's frame), "stay" and "hold camera" anchors,
queued through the server and the TRACKS checked number by number (still before and after the range, the
easing curve between keys, the point reached at its frame, anchors exactly still); undo/redo, delete, zoom
and pan; the data surviving copy-paste of the node, a workflow tab switch, save and reopen, and a page
reload; the canvas fitting the node at any size with the image's aspect ratio. Runs on the frontend of the
session's lane (MOTIONKIT_FRONTEND: the host's own, or the newest in the classic canvas or with Nodes 2.0).
Screenshots of failures go to a temporary folder named in the error."""
from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import numpy as np
import pytest

from motionkit_testing.browser import (CHROMIUM, CHROMIUM_ARGS, copy_paste_node, dismiss_overlays, node_screen_rect,
                                      open_app, playwright_and_chromium, resize_node, save_and_reopen,
                                      switch_tab_and_back, wait_for_app, wait_until_persisted)
from motionkit_testing.comfy_session import PACK_DIRNAME
from motionkit_testing.pack import pack_module
from motionkit_testing.tiny_sam import TINY_SAM_PTH, ensure_tiny_sam
from motionkit_testing.trajectory_example import EXAMPLE_IMAGE, EXAMPLE_SIZE, write_example_image
from motionkit_testing.workflows import load_workflow

pytestmark = [pytest.mark.server, pytest.mark.slow, pytest.mark.browser]

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "example_workflows" / "arrows_to_trajectories.json"
NODE_TYPE = "MotionKitArrowsToTracks"
EDITOR = f"app.graph._nodes.find(n => n.type === '{NODE_TYPE}').motionkitArrowEditor"
arrows_mod = pack_module("arrows")
tracks_mod = pack_module("tracks")
drawing = pack_module("track_drawing")


WIDE_IMAGE, WIDE_SIZE = "motionkit_wide.png", (320, 180)   # another aspect ratio than the example's


@pytest.fixture(scope="module")
def page(server, base_dir, tmp_path_factory):
    sync_api = playwright_and_chromium()
    write_example_image(base_dir / "input" / EXAMPLE_IMAGE)
    from PIL import Image
    yy, xx = np.mgrid[0:WIDE_SIZE[1], 0:WIDE_SIZE[0]]
    Image.fromarray(np.stack([xx * 255 // WIDE_SIZE[0], yy * 255 // WIDE_SIZE[1], 128 + 0 * xx], -1).astype(np.uint8)
                    ).save(base_dir / "input" / WIDE_IMAGE)
    ensure_tiny_sam(base_dir)
    shots = tmp_path_factory.mktemp("arrow_editor_screenshots")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        pg = open_app(browser, server, NODE_TYPE, viewport={"width": 1600, "height": 1000})
        pg.motionkit_shots = shots
        yield pg
        browser.close()


@contextlib.contextmanager
def screenshot_on_failure(page, name: str):
    """Screenshot on failure; and the page must raise no error while the test acts on it."""
    errors_before = len(page.motionkit_errors)
    try:
        yield
        assert page.motionkit_errors[errors_before:] == [], "the page raised errors"
    except BaseException as e:
        path = page.motionkit_shots / f"{name}.png"
        with contextlib.suppress(Exception):
            page.screenshot(path=str(path))
        raise AssertionError(f"{e}\n(screenshot: {path}; page errors: {page.motionkit_errors[-5:]})") from e


def history_ids(server) -> set[str]:
    return set(server.get("/history"))


def queue_and_wait(page, server, timeout: float = 120.0) -> dict:
    """Press the frontend's own queue (app.queuePrompt, what the Run button calls); the new history entry."""
    before = history_ids(server)
    page.evaluate("() => app.queuePrompt(0, 1)")
    deadline = time.time() + timeout
    while time.time() < deadline:
        new = history_ids(server) - before
        if new:
            entry = server.get(f"/history/{next(iter(new))}")[next(iter(new))]
            if entry.get("status", {}).get("completed") is not None:
                assert entry["status"]["status_str"] == "success", entry["status"]
                return entry
        time.sleep(0.3)
    raise TimeoutError("the queued workflow did not finish")


def example_on_the_tiny_sam() -> dict:
    """The example workflow as saved, its SAM loader pointed at the tiny random SAM (as a user picks the
    model they have), so loading opens no missing-model dialog over the canvas."""
    wf = load_workflow(EXAMPLE)
    loader = next(n for n in wf["nodes"] if n["type"] == "MotionKitSAMLoader")
    assert loader["widgets_values"] == ["sam_vit_b_01ec64.pth"]
    loader["widgets_values"] = [TINY_SAM_PTH]
    loader["properties"].pop("models", None)
    return wf


def show_node(page):
    """Load the example, put the arrows node at 100% zoom in view, and wait for its editor to lay out."""
    page.evaluate("""async (wf) => {
        await app.loadGraphData(wf);
        const node = app.graph._nodes.find(n => n.type === '%s');
        app.canvas.ds.scale = 1;
        app.canvas.ds.offset = [-node.pos[0] + 120, -node.pos[1] + 60];
        app.canvas.setDirty(true, true);
    }""" % NODE_TYPE, example_on_the_tiny_sam())
    dismiss_overlays(page)
    wait_for_editor_layout(page)


def wait_for_editor_layout(page):
    page.wait_for_function(f"""() => {{
        const ed = {EDITOR};
        if (!ed) return false;
        const r = ed.canvas.getBoundingClientRect();
        return r.width > 200 && r.height > 200 && r.left >= 0 && r.bottom <= window.innerHeight;
    }}""", timeout=30_000)


def drag(page, start, end, steps=12):
    a = page.evaluate(f"([x, y]) => {EDITOR}.imageToClient(x, y)", list(start))
    b = page.evaluate(f"([x, y]) => {EDITOR}.imageToClient(x, y)", list(end))
    page.mouse.move(a["x"], a["y"])
    page.mouse.down()
    page.mouse.move(b["x"], b["y"], steps=steps)
    page.mouse.up()
    return a, b


def node_ids(page) -> dict:
    return page.evaluate("() => Object.fromEntries(app.graph._nodes.map(n => [n.type, String(n.id)]))")


def mask_png(base_dir: Path, ref: dict, channel: int = 0) -> np.ndarray:
    """A mask PNG a node listed in its UI output, as booleans (``channel`` 3: an RGBA mask's alpha)."""
    from PIL import Image
    with Image.open(base_dir / ref["type"] / ref["subfolder"] / ref["filename"]) as im:
        pixels = np.array(im)
    return (pixels if pixels.ndim == 2 else pixels[..., channel]) > 127


def editor_state(page) -> dict:
    return page.evaluate(f"() => {EDITOR}.state()")


def arrows_value(page) -> str:
    return page.evaluate(f"() => app.graph._nodes.find(n => n.type === '{NODE_TYPE}').widgets"
                         ".find(w => w.name === 'arrows').value")


def test_draw_an_arrow_queue_and_get_its_tracks(page, server, base_dir):
    with screenshot_on_failure(page, "draw_and_queue"):
        show_node(page)
        wf_node = next(n for n in load_workflow(EXAMPLE)["nodes"] if n["type"] == NODE_TYPE)
        assert arrows_value(page) == wf_node["widgets_values"][0]  # loading never rewrites the arrows
        node_id = str(wf_node["id"])

        # First run: the node's UI output brings the image and the mask into the editor.
        first = queue_and_wait(page, server)
        ctm_id = node_ids(page)["MotionKitClickToMask"]
        sam_mask = mask_png(base_dir, first["outputs"][ctm_id]["motionkit_masks"][0]["masks"][0])
        assert sam_mask.any()
        page.wait_for_function(f"() => {EDITOR}.state().masks === 1 && {EDITOR}.state().background === 'run'",
                               timeout=30_000)
        state = editor_state(page)
        assert state["size"] == [EXAMPLE_SIZE, EXAMPLE_SIZE] and state["maskCount"] == 1 and not state["linked"]

        # Draw object 0's arrow with the mouse: from the ball to the upper right (starting off the
        # example's arrow, whose points would otherwise be grabbed and moved).
        start, end = (140.0, 305.0), (420.0, 110.0)
        drag(page, start, end)
        doc = json.loads(arrows_value(page))
        assert doc["version"] == 1 and (doc["width"], doc["height"]) == (EXAMPLE_SIZE, EXAMPLE_SIZE)
        assert len(doc["arrows"]) == 1 and doc["arrows"][0]["object"] == 0   # it replaced the example's arrow
        drawn = np.array(doc["arrows"][0]["points"])
        assert drawn.shape == (2, 2)
        # mouse positions are whole CSS pixels: the arrow lands within a pixel of where it was aimed
        np.testing.assert_allclose(drawn, [start, end], atol=1.5)

        # Second run: the tracks of object 0 end displaced by the drawn arrow.
        entry = queue_and_wait(page, server)
        assert entry["prompt"][2][node_id]["inputs"]["arrows"] == arrows_value(page)  # sent in the API prompt
        ui = entry["outputs"][node_id]["motionkit_arrows"][0]
        objects = np.array(ui["tracks"]["object"])
        moved = np.array(ui["tracks"]["end"]) - np.array(ui["tracks"]["start"])
        assert (objects == 0).sum() == 8
        np.testing.assert_allclose(moved[objects == 0], np.broadcast_to(drawn[-1] - drawn[0], (8, 2)), atol=2e-3)
        np.testing.assert_allclose(moved[objects == 0][0], np.subtract(end, start), atol=1.5)
        # the control points start inside Click to Mask's mask, which is the mask the node moved
        assert np.array_equal(mask_png(base_dir, ui["masks"][0], channel=3), sam_mask)
        for x, y in np.array(ui["tracks"]["start"])[objects == 0]:
            assert sam_mask[int(y), int(x)]

        # Saved workflow: the arrows are in widgets_values, the editor canvas is not.
        saved = page.evaluate(f"() => app.graph.serialize().nodes.find(n => n.type === '{NODE_TYPE}')")
        assert saved["widgets_values"] == [arrows_value(page), 14, 8, 0, "fixed", "ease-in-out"]

        # Another file in Load Image: the editor shows it at once and drops the stale mask; the arrows
        # stay as they are until the user edits them.
        value = arrows_value(page)
        set_load_image(page, "motionkit_test.png")
        page.wait_for_function(f"""() => {{ const s = {EDITOR}.state();
            return s.background === 'upstream' && s.masks === 0 && s.size[0] === 64; }}""", timeout=30_000)
        assert editor_state(page)["size"] == [64, 64] and arrows_value(page) == value


def set_load_image(page, name: str) -> None:
    """Pick another file in Load Image, as its combo does (value, then the widget's callback)."""
    page.evaluate("""(name) => { const n = app.graph._nodes.find(n => n.type === 'LoadImage');
        const w = n.widgets.find(w => w.name === 'image'); w.value = name; w.callback?.(w.value); }""", name)


UPSTREAM_SHOWN = (f"(size) => {{ const s = {EDITOR}.state(); return s.background === 'upstream' && "
                  "s.size[0] === size && s.masks === 0; }")


def test_before_a_run_the_editor_follows_load_image_and_keeps_arrows_over_a_reload(page, server):
    """No run yet: the editor shows the upstream Load Image's file as soon as the workflow is loaded and
    follows another pick; an arrow drawn with the mouse is in the hidden widget, saved and sent, and is
    there again after the page is reloaded (the frontend restores the workflow), over the same image."""
    with screenshot_on_failure(page, "upstream_and_reload"):
        show_node(page)
        page.wait_for_function(UPSTREAM_SHOWN, arg=EXAMPLE_SIZE, timeout=30_000)
        set_load_image(page, "motionkit_test.png")
        page.wait_for_function(UPSTREAM_SHOWN, arg=64, timeout=30_000)
        set_load_image(page, EXAMPLE_IMAGE)
        page.wait_for_function(UPSTREAM_SHOWN, arg=EXAMPLE_SIZE, timeout=30_000)

        start, end = (60.0, 440.0), (300.0, 380.0)
        drag(page, start, end)
        value = arrows_value(page)
        doc = json.loads(value)
        assert [a["object"] for a in doc["arrows"]] == [0]
        np.testing.assert_allclose(doc["arrows"][0]["points"], [start, end], atol=1.5)
        out = page.evaluate(f"""async () => {{
            const node = app.graph._nodes.find(n => n.type === '{NODE_TYPE}');
            const saved = app.graph.serialize().nodes.find(n => String(n.id) === String(node.id));
            const sent = (await app.graphToPrompt()).output[String(node.id)].inputs;
            return {{saved: saved.widgets_values[0], sent: sent.arrows}}; }}""")
        assert out == {"saved": value, "sent": value}

        wait_until_persisted(page, json.dumps(doc["arrows"][0]["points"], separators=(",", ":")))
        page.reload()
        wait_for_app(page, NODE_TYPE)
        page.wait_for_function(UPSTREAM_SHOWN, arg=EXAMPLE_SIZE, timeout=30_000)
        assert arrows_value(page) == value
        assert editor_state(page)["doc"]["arrows"] == doc["arrows"]


SHOWS_CLICK_TO_MASK = (f"() => {{ const s = {EDITOR}.state(); "
                       "return s.background === 'upstream-run' && s.masks === 1; }")


def run_click_to_mask_only(page, server) -> dict:
    """The page's own prompt cut down to Click to Mask and what feeds it, plus a preview of its output,
    queued for the page's client (so the page receives the nodes' ``executed`` events); the arrows node is
    not in it. Returns the history entry."""
    ids = node_ids(page)
    prompt, client_id = page.evaluate(
        "async () => [(await app.graphToPrompt()).output, window.comfyAPI.api.api.clientId]")
    assert client_id
    ctm = ids["MotionKitClickToMask"]
    keep = {ids["LoadImage"], ids["MotionKitSAMLoader"], ctm}
    prompt = {i: {"class_type": n["class_type"], "inputs": n["inputs"]} for i, n in prompt.items() if i in keep}
    prompt["ctm_preview"] = {"class_type": "PreviewImage", "inputs": {"images": [ctm, 2]}}
    status, body = server.post("/prompt", {"prompt": prompt, "client_id": client_id})
    assert status == 200, body
    deadline = time.time() + 120
    while time.time() < deadline:
        entry = server.get(f"/history/{body['prompt_id']}").get(body["prompt_id"])
        if entry and entry.get("status", {}).get("completed") is not None:
            assert entry["status"]["status_str"] == "success", entry["status"]
            assert ids["MotionKitArrowsToTracks"] not in entry["outputs"]   # the arrows node did not run
            return entry
        time.sleep(0.3)
    raise TimeoutError("the Click to Mask prompt did not finish")


def move_click(page, click: list) -> None:
    """Click to Mask's click moved (as a user drags the point), so its next run is not served from cache
    (a cached node sends no output to the page)."""
    page.evaluate("""(click) => {
        const node = app.graph._nodes.find(n => n.type === 'MotionKitClickToMask');
        const w = node.widgets.find(w => w.name === 'points');
        const doc = JSON.parse(w.value); doc.objects[0].positive = [click];
        w.value = JSON.stringify(doc); w.callback?.(w.value); }""", click)


def editor_mask(page) -> dict:
    """The editor's first mask layer: its object, size, where it is opaque and its colours."""
    return page.evaluate(f"""() => {{
        const m = {EDITOR}.masks[0];
        const w = m.image.naturalWidth || m.image.width, h = m.image.naturalHeight || m.image.height;
        const c = document.createElement('canvas'); c.width = w; c.height = h;
        const ctx = c.getContext('2d'); ctx.drawImage(m.image, 0, 0);
        const d = ctx.getImageData(0, 0, w, h).data;
        let opaque = ''; const colours = new Set();
        for (let i = 0; i < d.length; i += 4) {{
            opaque += d[i + 3] > 127 ? '1' : '0';
            if (d[i + 3] > 127) colours.add([d[i], d[i + 1], d[i + 2]].join(','));
        }}
        return {{object: m.object, width: w, height: h, opaque, colours: [...colours]}};
    }}""")


def canvas_rgb(page, x: float, y: float) -> np.ndarray:
    """The editor canvas's colour at the centre of image pixel (x, y)."""
    return np.array(page.evaluate(f"""([x, y]) => {{
        const ed = {EDITOR}; const f = ed.fit(ed.readDocument().doc);
        const dpr = ed.canvas.width / ed.canvas.clientWidth;
        const px = ed.canvas.getContext('2d').getImageData(Math.floor((f.ox + (x + 0.5) * f.s) * dpr),
                                                           Math.floor((f.oy + (y + 0.5) * f.s) * dpr), 1, 1).data;
        return Array.from(px).slice(0, 3);
    }}""", [x, y]), dtype=np.float64)


def quiet_pixel(region: np.ndarray, arrow: np.ndarray, margin: int = 8, clearance: float = 24.0) -> tuple:
    """A pixel ``margin`` pixels deep inside ``region`` and ``clearance`` pixels away from the drawn arrow."""
    padded = np.pad(region, margin, constant_values=False)
    inner = np.lib.stride_tricks.sliding_window_view(padded, (2 * margin + 1,) * 2).all(axis=(-2, -1))
    yy, xx = np.mgrid[0:region.shape[0], 0:region.shape[1]] + 0.5
    dist = np.full(region.shape, np.inf)
    for (ax, ay), (bx, by) in zip(arrow[:-1], arrow[1:]):
        length2 = max((bx - ax) ** 2 + (by - ay) ** 2, 1e-9)
        t = np.clip(((xx - ax) * (bx - ax) + (yy - ay) * (by - ay)) / length2, 0, 1)
        dist = np.minimum(dist, np.hypot(xx - (ax + t * (bx - ax)), yy - (ay + t * (by - ay))))
    ys, xs = np.nonzero(inner & (dist > clearance))
    assert len(xs), "no pixel deep inside the region and away from the arrow"
    cy, cx = np.argwhere(region).mean(axis=0)
    i = int(np.argmin((xs - cx) ** 2 + (ys - cy) ** 2))
    return int(xs[i]), int(ys[i])


def test_the_editor_shows_click_to_mask_masks_before_its_own_run(page, server, base_dir):
    """Click to Mask runs without the arrows node: the editor shows Click to Mask's frame with its mask
    tinted in object 0's colour (from Click to Mask's `executed` output), although the arrows node never
    ran; a masks node wired in later is picked up from its last output; nothing of it is saved."""
    with screenshot_on_failure(page, "upstream_masks"):
        show_node(page)
        page.wait_for_function(UPSTREAM_SHOWN, arg=EXAMPLE_SIZE, timeout=30_000)
        assert editor_state(page)["masks"] == 0 and editor_state(page)["maskCount"] == 0
        ctm = node_ids(page)["MotionKitClickToMask"]

        move_click(page, [153, 288])
        entry = run_click_to_mask_only(page, server)
        assert json.loads(entry["prompt"][2][ctm]["inputs"]["points"])["objects"][0]["positive"] == [[153, 288]]
        masks_ui = entry["outputs"][ctm]["motionkit_masks"][0]
        assert masks_ui["version"] == 1 and (masks_ui["width"], masks_ui["height"]) == (EXAMPLE_SIZE, EXAMPLE_SIZE)
        sam_mask = mask_png(base_dir, masks_ui["masks"][0])
        assert sam_mask.any()
        page.wait_for_function(SHOWS_CLICK_TO_MASK, timeout=30_000)
        s = editor_state(page)
        assert s["size"] == [EXAMPLE_SIZE, EXAMPLE_SIZE] and s["maskCount"] == 1
        # the editor's mask layer is Click to Mask's mask, in object 0's colour
        layer = editor_mask(page)
        assert layer["object"] == 0 and (layer["width"], layer["height"]) == (EXAMPLE_SIZE, EXAMPLE_SIZE)
        opaque = np.frombuffer(layer["opaque"].encode(), np.uint8).reshape(EXAMPLE_SIZE, EXAMPLE_SIZE) == ord("1")
        assert np.array_equal(opaque, sam_mask)
        assert layer["colours"] == [",".join(map(str, drawing.PALETTE[0]))]
        # and the canvas shows it: the frame tinted inside the mask (object 0 selected: 60%), plain outside
        from PIL import Image
        frame_ref = masks_ui["image"]
        with Image.open(base_dir / frame_ref["type"] / frame_ref["subfolder"] / frame_ref["filename"]) as im:
            frame = np.array(im.convert("RGB"), dtype=np.float64)
        arrow = np.array(json.loads(arrows_value(page))["arrows"][0]["points"], float)
        for inside in (True, False):
            x, y = quiet_pixel(sam_mask == inside, arrow)
            expected = frame[y, x] * 0.4 + np.array(drawing.PALETTE[0]) * 0.6 if inside else frame[y, x]
            np.testing.assert_allclose(canvas_rgb(page, x, y), expected, atol=12)

        # Not saved: the arrows stay the only saved state of the node, and only they are sent.
        saved = page.evaluate(f"() => app.graph.serialize().nodes.find(n => n.type === '{NODE_TYPE}')")
        assert saved["widgets_values"] == [arrows_value(page), 14, 8, 0, "fixed", "ease-in-out"]
        sent = page.evaluate(f"""async () => (await app.graphToPrompt()).output[
            String(app.graph._nodes.find(n => n.type === '{NODE_TYPE}').id)].inputs""")
        assert sorted(sent) == ["arrows", "easing", "image", "masks", "num_frames", "points_per_object", "seed"]

        # A fresh graph with `masks` unlinked: Click to Mask's run is not shown until it is wired in.
        show_node(page)
        page.evaluate(f"""() => {{ const a = app.graph._nodes.find(n => n.type === '{NODE_TYPE}');
            a.disconnectInput(a.findInputSlot('masks')); }}""")
        move_click(page, [155, 286])
        entry = run_click_to_mask_only(page, server)
        assert json.loads(entry["prompt"][2][ctm]["inputs"]["points"])["objects"][0]["positive"] == [[155, 286]]
        page.wait_for_timeout(1000)
        assert editor_state(page)["masks"] == 0 and editor_state(page)["background"] == "upstream"
        page.evaluate(f"""() => {{ const a = app.graph._nodes.find(n => n.type === '{NODE_TYPE}');
            const c = app.graph._nodes.find(n => n.type === 'MotionKitClickToMask');
            c.connect(0, a, a.findInputSlot('masks')); }}""")
        page.wait_for_function(SHOWS_CLICK_TO_MASK, timeout=30_000)


def test_bend_reverse_and_delete(page, server):
    with screenshot_on_failure(page, "edit"):
        show_node(page)
        drag(page, (100.0, 400.0), (400.0, 400.0))
        pts = json.loads(arrows_value(page))["arrows"][0]["points"]
        # drag the midpoint handle up: a bend point is inserted there
        mid = ((pts[0][0] + pts[1][0]) / 2, (pts[0][1] + pts[1][1]) / 2)
        drag(page, mid, (mid[0], 250.0))
        bent = json.loads(arrows_value(page))["arrows"][0]["points"]
        assert len(bent) == 3 and bent[0] == pts[0] and bent[2] == pts[1]
        np.testing.assert_allclose(bent[1], [mid[0], 250.0], atol=1.5)
        # frame ticks: the editor's ticks are the Python displacements along the bent arrow
        ticks = np.array(editor_state(page)["ticks"][0])
        expected = np.array(bent[0]) + arrows_mod.displacements(np.array(bent), 14, "ease-in-out")
        np.testing.assert_allclose(ticks, expected, atol=1e-6)
        # drag the whole arrow by its line
        on_line = (np.array(bent[0]) * 0.75 + np.array(bent[1]) * 0.25).tolist()  # not on a handle
        drag(page, on_line, (on_line[0] + 20, on_line[1] + 10))
        moved = np.array(json.loads(arrows_value(page))["arrows"][0]["points"])
        np.testing.assert_allclose(moved - np.array(bent), np.broadcast_to([20, 10], (3, 2)), atol=1.5)
        # Reverse button, then the Delete key on the focused canvas (the node itself stays)
        page.get_by_role("button", name="Reverse").click()
        reversed_pts = np.array(json.loads(arrows_value(page))["arrows"][0]["points"])
        assert np.array_equal(reversed_pts, moved[::-1])
        page.evaluate(f"() => {EDITOR}.focus()")
        page.keyboard.press("Delete")
        assert json.loads(arrows_value(page))["arrows"] == []
        assert page.evaluate(f"() => app.graph._nodes.some(n => n.type === '{NODE_TYPE}')")
        # a plain click is not an arrow
        a = page.evaluate(f"() => {EDITOR}.imageToClient(200, 200)")
        page.mouse.click(a["x"], a["y"])
        assert json.loads(arrows_value(page))["arrows"] == []


def test_the_editor_uses_the_python_geometry_and_colours(page, server):
    with screenshot_on_failure(page, "geometry"):
        rng = np.random.default_rng(0)
        cases = [(rng.uniform(0, 300, size=(int(rng.integers(2, 6)), 2)).round(2).tolist(), int(rng.integers(2, 30)), e)
                 for e in ("linear", "ease-in", "ease-out", "ease-in-out") for _ in range(3)]
        cases.append(([[5.0, 5.0], [5.0, 5.0]], 4, "linear"))                          # zero length
        cases.append(([[0.0, 0.0], [10.0, 0.0], [10.0, 0.0], [10.0, 10.0]], 5, "linear"))  # repeated point
        js = page.evaluate(f"""async (cases) => {{
            const g = await import('/extensions/{PACK_DIRNAME}/js/arrow_geometry.js');
            return {{ticks: cases.map(([pts, n, e]) => g.frameTicks(pts, n, e)), palette: g.PALETTE,
                     camera: g.CAMERA_COLOR}};
        }}""", cases)
        for (pts, frames, easing), ticks in zip(cases, js["ticks"]):
            expected = np.array(pts[0]) + arrows_mod.displacements(np.array(pts), frames, easing)
            np.testing.assert_allclose(np.array(ticks), expected, atol=1e-9)
        assert [tuple(c) for c in js["palette"]] == list(drawing.PALETTE)
        assert tuple(js["camera"]) == drawing.CAMERA_COLOR



# --- arrows JSON version 2, history, view, persistence, sizing ------------------------------------------

NODE_ID = "4"   # the arrows node of the example workflow
PROBE = "MotionKitTestTracksProbe"


def editor_js(node_id=None) -> str:
    if node_id is None:
        return EDITOR
    return f"(app.graph.getNodeById({json.dumps(str(node_id))}) ?? app.graph.getNodeById({int(node_id)})).motionkitArrowEditor"


def control(page, name: str, node_id=None):
    """A control of the (node's) arrow editor: its toolbar buttons and timing fields (data-motionkit names)."""
    page.evaluate(f"""() => {{ document.querySelectorAll('[data-motionkit-target]').forEach(e => delete e.dataset.motionkitTarget);
        {editor_js(node_id)}.root.dataset.motionkitTarget = '1'; }}""")
    return page.locator(f"[data-motionkit-target='1'] [data-motionkit='{name}']")


def click_image(page, x: float, y: float, **kwargs) -> None:
    a = page.evaluate(f"([x, y]) => {EDITOR}.imageToClient(x, y)", [x, y])
    page.mouse.click(a["x"], a["y"], **kwargs)


def set_field(page, name: str, value: str) -> None:
    """Type into a timing field and commit it with Enter, as a user does."""
    field = control(page, name)
    field.fill(value)
    field.press("Enter")


def focus_editor(page) -> None:
    page.evaluate(f"() => {EDITOR}.focus()")


def arrows_value_of(page, node_id) -> str:
    return page.evaluate(f"() => {editor_js(node_id)}.value()")


def add_probe(page) -> str:
    """A test-only output node on the arrows node's TRACKS output; it hands the tracks back whole."""
    return page.evaluate(f"""() => {{ const a = app.graph._nodes.find(n => n.type === '{NODE_TYPE}');
        const p = LiteGraph.createNode('{PROBE}'); p.pos = [a.pos[0], a.pos[1] + a.size[1] + 80]; app.graph.add(p);
        a.connect(0, p, 0); return String(p.id); }}""")


HOLD_CAMERA = [[25.6, 25.6], [256, 25.6], [486.4, 25.6], [25.6, 256], [486.4, 256], [25.6, 486.4], [256, 486.4],
               [486.4, 486.4]]   # 8 points inset 5% of 512 around the border


def test_timing_and_anchors_drawn_in_the_editor_give_exact_tracks(page, server):
    """Draw and bend an arrow, time it in the timing row (frames 2 to 10, ease-in, visible in range, the bend
    point reached at frame 6), pin a point of the ball ("Stay") and the background ("Hold camera"); the widget
    holds arrows JSON version 2; the editor's frame ticks are the Python timing model; queued from the page,
    the TRACKS are exactly still before frame 2 and after frame 10, follow ease-in between the keys, reach
    the bend point at frame 6, are visible only in 2..10, and the anchors are exactly still."""
    with screenshot_on_failure(page, "timing_anchors"):
        show_node(page)
        page.wait_for_function(UPSTREAM_SHOWN, arg=EXAMPLE_SIZE, timeout=30_000)
        # object 0's arrow, then a bend: the midpoint handle dragged down (that point is selected)
        drag(page, (120.0, 330.0), (320.0, 330.0))
        drag(page, (220.0, 330.0), (220.0, 400.0))
        assert editor_state(page)["selectedVertex"] == 1 and editor_state(page)["pointFrame"]
        set_field(page, "start-frame", "2")
        set_field(page, "end-frame", "10")
        control(page, "easing").select_option("ease-in")
        control(page, "visible").select_option("range")
        set_field(page, "point-frame", "6")
        # a frame outside the bend point's neighbours is refused, and says why
        set_field(page, "point-frame", "11")
        assert "from 3 to 9" in editor_state(page)["notice"]
        control(page, "stay").click()
        click_image(page, 180.0, 260.0)          # on the ball (object 0)
        control(page, "hold-camera").click()

        value = arrows_value(page)
        doc = json.loads(value)
        assert doc["version"] == 2 and (doc["width"], doc["height"]) == (EXAMPLE_SIZE, EXAMPLE_SIZE)
        (arrow,) = doc["arrows"]
        assert {k: arrow[k] for k in ("object", "start_frame", "end_frame", "easing", "visible")} == {
            "object": 0, "start_frame": 2, "end_frame": 10, "easing": "ease-in", "visible": "range"}
        points = arrow["points"]
        assert [len(p) for p in points] == [2, 3, 2] and points[1][2] == 6
        np.testing.assert_allclose([p[:2] for p in points], [[120, 330], [220, 400], [320, 330]], atol=1.5)
        anchors = doc["anchors"]
        assert [a["object"] for a in anchors] == [0] + [None] * 8
        np.testing.assert_allclose(anchors[0]["point"], [180, 260], atol=1.5)
        np.testing.assert_allclose([a["point"] for a in anchors[1:]], HOLD_CAMERA, atol=0.006)

        # the editor draws the Python timing model
        motion = arrows_mod.parse_motion(value, 1, EXAMPLE_SIZE, EXAMPLE_SIZE, num_frames=14)
        moved, visible = arrows_mod.arrow_motion(motion.arrows[0], 14, "ease-in-out")
        state = editor_state(page)
        np.testing.assert_allclose(state["ticks"][0], np.array(points[0]) + moved, atol=1e-9)
        assert state["visibility"][0] == visible.tolist()

        # queued from the page: the TRACKS, number by number
        probe = add_probe(page)
        entry = queue_and_wait(page, server)
        assert entry["prompt"][2][NODE_ID]["inputs"]["arrows"] == value
        out = entry["outputs"][probe]["motionkit_test_tracks"][0]
        path, shown, objects = np.array(out["path"]), np.array(out["visibility"]), np.array(out["object"])
        assert path.shape == (14, 8 + 9, 2) and objects.tolist() == [0] * 8 + [0] + [-1] * 8
        ball = path[:, :8]
        assert (ball[:3] == ball[0]).all() and (ball[10:] == ball[10]).all()   # still, bit for bit
        assert not (ball[3] == ball[2]).any() and not (ball[9] == ball[10]).all()   # and moving in between
        disp = ball - ball[0]
        np.testing.assert_allclose(disp, np.broadcast_to(moved[:, None], disp.shape), atol=1e-4)
        seg1, seg2 = np.subtract(points[1][:2], points[0]), np.subtract(points[2], points[1][:2])
        np.testing.assert_allclose(disp[6], np.broadcast_to(seg1, (8, 2)), atol=1e-4)     # the bend at frame 6
        np.testing.assert_allclose(disp[10], np.broadcast_to(seg1 + seg2, (8, 2)), atol=1e-4)
        # ease-in within each key segment: the share of the segment covered at frame t is u^2
        for t in range(2, 11):
            first = t <= 6
            u = (t - 2) / 4 if first else (t - 6) / 4
            seg, base = (seg1, 0.0) if first else (seg2, seg1)
            covered = ((disp[t] - base) @ seg) / (seg @ seg)
            np.testing.assert_allclose(covered, u * u, atol=2e-6)
        # visible in frames 2..10 only (and, as always, only while inside the image: the tiny random SAM's
        # mask is not the ball, so some control points start far right and leave the image)
        in_range = np.array([2 <= t <= 10 for t in range(14)])[:, None]
        inside = tracks_mod.inside_image(ball, EXAMPLE_SIZE, EXAMPLE_SIZE)
        assert (shown[:, :8] == (in_range & inside)).all() and shown[2:11, :8].any()
        # anchors: exactly still at their points, visible throughout
        pins = path[:, 8:]
        assert (pins == pins[0]).all() and shown[:, 8:].all()
        np.testing.assert_array_equal(pins[0], np.float32([a["point"] for a in anchors]))


def test_undo_redo_and_delete(page, server):
    """Ctrl+Z / Ctrl+Shift+Z / Ctrl+Y and the Undo / Redo buttons restore exactly what was saved, one step per
    drag or click; Delete removes the selected pin, never the node; a value written from outside (a graph-level
    change) starts a new history."""
    with screenshot_on_failure(page, "undo"):
        show_node(page)
        page.wait_for_function(UPSTREAM_SHOWN, arg=EXAMPLE_SIZE, timeout=30_000)
        v0 = arrows_value(page)
        drag(page, (120.0, 330.0), (320.0, 330.0))
        v1 = arrows_value(page)
        control(page, "stay").click()
        click_image(page, 420.0, 120.0)
        v2 = arrows_value(page)
        assert json.loads(v1)["version"] == 1 and json.loads(v2)["version"] == 2 and v1 != v0
        assert editor_state(page)["history"] == {"undo": 2, "redo": 0}
        focus_editor(page)
        page.keyboard.press("Control+z")
        assert arrows_value(page) == v1
        page.keyboard.press("Control+z")
        assert arrows_value(page) == v0                   # the example's own text, character for character
        page.keyboard.press("Control+Shift+z")
        assert arrows_value(page) == v1
        control(page, "redo").click()
        assert arrows_value(page) == v2
        page.keyboard.press("Control+y")                  # nothing left to redo
        assert arrows_value(page) == v2 and editor_state(page)["history"] == {"undo": 2, "redo": 0}
        # select the pin and delete it with the key; undo brings it back
        click_image(page, 420.0, 120.0)
        assert editor_state(page)["selectedAnchor"] == 0
        page.keyboard.press("Delete")
        assert json.loads(arrows_value(page)) == json.loads(v1)
        assert page.evaluate(f"() => app.graph._nodes.some(n => n.type === '{NODE_TYPE}')")
        control(page, "undo").click()
        assert arrows_value(page) == v2
        # a right click removes a pin too
        click_image(page, 420.0, 120.0, button="right")
        assert "anchors" not in json.loads(arrows_value(page))
        # written from outside: the history starts anew
        page.evaluate(f"""(v) => {{ const w = app.graph._nodes.find(n => n.type === '{NODE_TYPE}').widgets
            .find(w => w.name === 'arrows'); w.value = v; }}""", v0)
        page.wait_for_function(f"() => {EDITOR}.state().history.undo === 0", timeout=5000)
        focus_editor(page)
        page.keyboard.press("Control+z")
        assert arrows_value(page) == v0


def test_zoom_and_pan(page, server):
    """The wheel zooms the editor (not the graph) about the cursor, Alt+drag pans, drawing while zoomed lands
    on the image pixels under the mouse, Fit restores the fitted view; none of it is an edit."""
    with screenshot_on_failure(page, "zoom"):
        show_node(page)
        page.wait_for_function(UPSTREAM_SHOWN, arg=EXAMPLE_SIZE, timeout=30_000)
        value = arrows_value(page)
        graph_scale = page.evaluate("() => app.canvas.ds.scale")
        click_image(page, 400.0, 420.0)                   # a click in the editor (focus), no edit
        assert arrows_value(page) == value
        under = page.evaluate(f"() => {EDITOR}.imageToClient(300, 200)")
        page.mouse.move(under["x"], under["y"])
        page.mouse.wheel(0, -400)
        page.wait_for_function(f"() => {EDITOR}.state().view.zoom > 1.5", timeout=5000)
        assert page.evaluate("() => app.canvas.ds.scale") == graph_scale   # the graph did not zoom
        still = page.evaluate(f"() => {EDITOR}.imageToClient(300, 200)")
        # (the mouse sits on whole device pixels, up to half a pixel off the point: the zoom scales that)
        assert abs(still["x"] - under["x"]) < 1.2 and abs(still["y"] - under["y"]) < 1.2
        zoom = editor_state(page)["view"]["zoom"]
        np.testing.assert_allclose(editor_state(page)["imageRect"]["scale"],
                                   editor_state(page)["imageRect"]["fitScale"] * zoom, rtol=1e-9)
        # draw while zoomed: the points are the image pixels under the mouse
        start, end = (270.0, 180.0), (330.0, 230.0)
        drag(page, start, end)
        doc = json.loads(arrows_value(page))
        np.testing.assert_allclose(doc["arrows"][0]["points"], [start, end],
                                   atol=1.0 / editor_state(page)["imageRect"]["scale"])
        value = arrows_value(page)
        # Alt+drag pans by the mouse's movement
        a = page.evaluate(f"() => {EDITOR}.imageToClient(200, 300)")
        page.keyboard.down("Alt")
        page.mouse.move(a["x"], a["y"])
        page.mouse.down()
        page.mouse.move(a["x"] + 40, a["y"] + 30, steps=6)
        page.mouse.up()
        page.keyboard.up("Alt")
        b = page.evaluate(f"() => {EDITOR}.imageToClient(200, 300)")
        assert abs(b["x"] - a["x"] - 40) < 1 and abs(b["y"] - a["y"] - 30) < 1
        assert arrows_value(page) == value
        control(page, "fit").click()
        assert editor_state(page)["view"] == {"zoom": 1, "panX": 0, "panY": 0}


def assert_same_editor_data(page, node_id, value: str, upstream: bool = True) -> None:
    """The node's hidden widget holds `value` and its editor shows that document (over the Load Image file,
    when the node is wired to it)."""
    assert arrows_value_of(page, node_id) == value
    if upstream:
        page.wait_for_function(f"() => {editor_js(node_id)}.state().background === 'upstream'", timeout=30_000)
    state = page.evaluate(f"() => {editor_js(node_id)}.state()")
    doc = json.loads(value)
    assert state["doc"]["arrows"] == doc["arrows"] and state["doc"]["anchors"] == doc["anchors"]
    assert state["size"] == [EXAMPLE_SIZE, EXAMPLE_SIZE]


def test_the_data_survives_copy_paste_tab_switch_save_reopen_and_reload(page, server):
    """A timed arrow and hold-camera pins: a pasted copy of the node has them (and edits to the copy leave the
    original alone); going to another workflow tab and back keeps them; the workflow saved and opened again
    as a file has them; a page reload restores them. (Zoom, pan and the undo history are not saved.)"""
    with screenshot_on_failure(page, "persistence"):
        show_node(page)
        page.wait_for_function(UPSTREAM_SHOWN, arg=EXAMPLE_SIZE, timeout=30_000)
        drag(page, (120.0, 330.0), (320.0, 330.0))
        set_field(page, "start-frame", "3")
        control(page, "hold-camera").click()
        value = arrows_value(page)
        assert json.loads(value)["version"] == 2 and json.loads(value)["arrows"][0]["start_frame"] == 3

        copy = copy_paste_node(page, NODE_ID)
        assert_same_editor_data(page, copy, value, upstream=False)   # pasted without its links
        page.evaluate(f"() => {editor_js(copy)}.root.querySelector('[data-motionkit=clear]').click()")
        assert json.loads(arrows_value_of(page, copy))["arrows"] == [] and arrows_value_of(page, NODE_ID) == value

        switch_tab_and_back(page)
        assert_same_editor_data(page, NODE_ID, value)
        assert json.loads(arrows_value_of(page, copy))["arrows"] == []

        saved = save_and_reopen(page, "motionkit_arrows_saved.json")
        assert next(n for n in saved["nodes"] if str(n["id"]) == NODE_ID)["widgets_values"][0] == value
        assert_same_editor_data(page, NODE_ID, value)

        wait_until_persisted(page, json.dumps(json.loads(value)["arrows"][0]["points"], separators=(",", ":")))
        page.reload()
        wait_for_app(page, NODE_TYPE)
        assert_same_editor_data(page, NODE_ID, value)
        state = editor_state(page)
        assert state["view"] == {"zoom": 1, "panX": 0, "panY": 0} and state["history"] == {"undo": 0, "redo": 0}


def test_the_canvas_fits_the_node_at_any_size_keeping_the_aspect_ratio(page, server):
    """A 320x180 image in nodes resized wide, tall, small and large: the editor's canvas stays inside the node
    and fills its width, the image keeps 16:9 and is letterboxed (touching two opposite sides), and a drawn
    arrow lands on the image pixels under the mouse at every size."""
    with screenshot_on_failure(page, "sizing"):
        show_node(page)
        set_load_image(page, WIDE_IMAGE)
        page.wait_for_function(UPSTREAM_SHOWN, arg=WIDE_SIZE[0], timeout=30_000)
        heights = []
        for width, height in [(440, 640), (900, 620), (400, 980), (620, 430), (1100, 820)]:
            resize_node(page, NODE_ID, width, height)
            page.wait_for_function(f"""([w, h]) => {{ const s = {EDITOR}.state();
                return Math.abs(s.canvas.width - s.imageRect.width) < 0.5 || Math.abs(s.canvas.height - s.imageRect.height) < 0.5; }}""",
                                   arg=[width, height], timeout=5000)
            page.wait_for_timeout(300)
            state, node = editor_state(page), node_screen_rect(page, NODE_ID)
            c, img = state["canvas"], state["imageRect"]
            assert node["left"] - 1 <= c["left"] and c["left"] + c["clientWidth"] <= node["right"] + 1, (c, node)
            assert node["top"] - 1 <= c["top"] and c["top"] + c["clientHeight"] <= node["bottom"] + 1, (c, node)
            assert c["width"] >= width - 40, (c, width)
            assert abs(img["width"] / img["height"] - WIDE_SIZE[0] / WIDE_SIZE[1]) < 1e-9
            assert img["x"] >= -0.01 and img["y"] >= -0.01
            assert img["x"] + img["width"] <= c["width"] + 0.01 and img["y"] + img["height"] <= c["height"] + 0.01
            fills_width = abs(img["width"] - c["width"]) < 0.01 and abs(img["x"]) < 0.01
            fills_height = abs(img["height"] - c["height"]) < 0.01 and abs(img["y"]) < 0.01
            assert fills_width or fills_height, (img, c)
            np.testing.assert_allclose([img["x"] * 2 + img["width"], img["y"] * 2 + img["height"]],
                                       [c["width"], c["height"]], atol=0.01)   # centred
            heights.append(c["height"])
            control(page, "clear").click()
            start, end = (40.0, 150.0), (280.0, 40.0)
            drag(page, start, end)
            doc = json.loads(arrows_value(page))
            assert (doc["width"], doc["height"]) == WIDE_SIZE
            np.testing.assert_allclose(doc["arrows"][0]["points"], [start, end], atol=1.5 / img["scale"] + 0.01)
        assert heights[2] > heights[1] and heights[4] > heights[3]   # a taller node, a taller canvas



def test_the_editor_timing_model_and_format_are_the_python_ones(page, server):
    """Random version-2 arrows (start/end frames, own easing, timed points, visibility): the editor's
    per-frame points and visibility are modules/arrows.py's arrow_motion; what the editor writes parses in
    Python to the same arrows and anchors; without version-2 keys it writes version 1."""
    with screenshot_on_failure(page, "timing_model"):
        rng = np.random.default_rng(1)
        cases = []
        for k in range(40):
            frames = int(rng.integers(3, 30))
            n = int(rng.integers(2, 6))
            pts = rng.uniform(0, 300, size=(n, 2)).round(2).tolist()
            start = int(rng.integers(0, frames - 1))
            end = int(rng.integers(start + 1, frames))
            arrow = {"object": k % 3, "points": pts}
            if k % 4:
                arrow.update(start_frame=start, end_frame=end)
            else:
                start, end = 0, frames - 1
            if k % 3:
                arrow["easing"] = ["linear", "ease-in", "ease-out", "ease-in-out"][k % 4]
            if k % 2:
                arrow["visible"] = "range"
            free = list(range(start + 1, end))           # timed inner points: increasing frames inside the range
            inner = sorted(rng.choice(free, size=min(len(free), n - 2), replace=False).tolist()) if free else []
            for j, f in zip(range(1, n - 1), inner):
                if rng.random() < 0.7:
                    pts[j].append(int(f))
            cases.append((arrow, frames, ["linear", "ease-in", "ease-out", "ease-in-out"][k % 4 - 1]))
        js = page.evaluate(f"""async (cases) => {{
            const g = await import('/extensions/{PACK_DIRNAME}/js/arrow_geometry.js');
            return cases.map(([a, n, e]) => [g.arrowFrames(a, n, e), g.arrowVisibility(a, n)]); }}""", cases)
        for (arrow, frames, easing), (ticks, shown) in zip(cases, js):
            doc = json.dumps({"version": 2, "width": 300, "height": 300, "arrows": [{**arrow, "object": 0}]})
            (parsed,) = arrows_mod.parse_motion(doc, 1, 300, 300, num_frames=frames).arrows
            moved, visible = arrows_mod.arrow_motion(parsed, frames, easing)
            np.testing.assert_allclose(ticks, np.array(arrow["points"][0][:2]) + moved, atol=1e-9, err_msg=str(arrow))
            assert shown == visible.tolist(), arrow

        docs = page.evaluate(f"""async () => {{
            const g = await import('/extensions/{PACK_DIRNAME}/js/arrow_geometry.js');
            const v2 = {{version: 1, width: 512, height: 288, note: 'kept', arrows: [
                {{object: 0, points: [[10.004, 20], [100, 50, 4], [200, 90]], start_frame: 1, end_frame: 9,
                  easing: 'ease-out', visible: 'range', extra: 1}},
                {{object: 1, points: [[5, 5], [50, 5]]}}],
                anchors: [{{object: 1, point: [30, 40]}}, {{object: null, point: [500, 280]}}]}};
            const v1 = {{version: 1, width: 512, height: 288, arrows: [{{object: 1, points: [[1, 2], [3, 4]]}}]}};
            const hold = {{version: 1, width: 512, height: 288, arrows: [], anchors: g.holdCameraPoints(512, 288)
                .map(p => ({{object: null, point: p}}))}};
            const untimed = {{version: 2, width: 10, height: 10, arrows: [{{object: 0, points: [[0, 0], [5, 5, null], [9, 9]]}}]}};
            return [g.serializeDocument(v2), g.serializeDocument(v1), g.serializeDocument(hold),
                    g.parseDocument(g.serializeDocument(v2)).doc, g.parseDocument(JSON.stringify(untimed)).doc]; }}""")
        v2, v1, hold, reparsed, untimed = docs
        assert untimed["arrows"][0]["points"] == [[0, 0], [5, 5], [9, 9]]   # a null frame is no frame, as in Python
        data = json.loads(v2)
        assert data["version"] == 2 and data["note"] == "kept" and data["arrows"][0]["extra"] == 1
        assert data["arrows"][0]["points"] == [[10.0, 20], [100, 50, 4], [200, 90]]
        motion = arrows_mod.parse_motion(v2, 2, 512, 288, num_frames=10)
        a0 = motion.arrows[0]
        assert (a0.start_frame, a0.end_frame, a0.easing, a0.visible, a0.point_frames) == (1, 9, "ease-out", "range",
                                                                                         (None, 4, None))
        assert [a.object for a in motion.anchors] == [1, -1]
        assert reparsed["arrows"][0]["points"] == data["arrows"][0]["points"] and reparsed["anchors"][1]["object"] is None
        assert json.loads(v1) == {"version": 1, "width": 512, "height": 288, "arrows": [{"object": 1, "points": [[1, 2], [3, 4]]}]}
        held = arrows_mod.parse_motion(hold, 1, 512, 288)
        np.testing.assert_allclose([a.point for a in held.anchors],
                                   [[x * 512, y * 288] for y in (0.05, 0.5, 0.95) for x in (0.05, 0.5, 0.95)
                                    if (x, y) != (0.5, 0.5)], atol=0.006)
