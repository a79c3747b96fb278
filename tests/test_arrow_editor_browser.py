"""The arrow editor in the real ComfyUI frontend (headless Debian Chromium via Playwright, against a real
ComfyUI server): load the example workflow (Click to Mask on the tiny random SAM in place of ViT-B), queue
it so the editor shows the image and the mask, draw an arrow with the mouse on the node's canvas, queue
again, and find tracks whose end displacement is the drawn arrow. The editor also shows Click to Mask's
masks when only Click to Mask has run. Also: editing (bend, reverse, delete), what is saved and sent, and
that the editor's geometry and colours are the Python ones; before any run it follows the upstream Load
Image, and a page reload keeps the arrows. Runs on the frontend of the session's lane (MOTIONKIT_FRONTEND:
the host's own, or the newest in the classic canvas or with Nodes 2.0). Screenshots of failures go to a
temporary folder named in the error."""
from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import numpy as np
import pytest

from motionkit_testing.browser import (CHROMIUM, CHROMIUM_ARGS, dismiss_overlays, open_app, playwright_and_chromium,
                                      wait_for_app, wait_until_persisted)
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
drawing = pack_module("track_drawing")


@pytest.fixture(scope="module")
def page(server, base_dir, tmp_path_factory):
    sync_api = playwright_and_chromium()
    write_example_image(base_dir / "input" / EXAMPLE_IMAGE)
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
        page.evaluate(f"() => {EDITOR}.canvas.focus()")
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
