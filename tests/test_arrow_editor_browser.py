"""The arrow editor in the real ComfyUI frontend (headless Debian Chromium via Playwright, against a real
ComfyUI server): load the example workflow, queue it so the editor shows the image and the mask, draw an
arrow with the mouse on the node's canvas, queue again, and find tracks whose end displacement is the drawn
arrow. Also: editing (bend, reverse, delete), what is saved and sent, and that the editor's geometry and
colours are the Python ones. Screenshots of failures go to a temporary folder named in the error."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from motionkit_testing.comfy_session import PACK_DIRNAME
from motionkit_testing.pack import pack_module
from motionkit_testing.trajectory_example import EXAMPLE_IMAGE, EXAMPLE_SIZE, write_example_image
from motionkit_testing.workflows import load_workflow

pytestmark = [pytest.mark.server, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "example_workflows" / "arrows_to_trajectories.json"
CHROMIUM = os.environ.get("MOTIONKIT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
NODE_TYPE = "MotionKitArrowsToTracks"
EDITOR = f"app.graph._nodes.find(n => n.type === '{NODE_TYPE}').motionkitArrowEditor"
arrows_mod = pack_module("arrows")
drawing = pack_module("track_drawing")


def post_json(url: str, body) -> None:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=30).read()


@pytest.fixture(scope="module")
def page(server, base_dir, tmp_path_factory):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not (shutil.which(CHROMIUM) or Path(CHROMIUM).is_file()):
        pytest.skip(f"no Chromium at {CHROMIUM} (set MOTIONKIT_CHROMIUM)")
    write_example_image(base_dir / "input" / EXAMPLE_IMAGE)
    post_json(f"{server.url}/settings", {"Comfy.TutorialCompleted": True})  # no first-run template dialog
    shots = tmp_path_factory.mktemp("arrow_editor_screenshots")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        pg = browser.new_page(viewport={"width": 1600, "height": 1000})
        pg.motionkit_shots = shots
        pg.motionkit_errors = []
        pg.on("pageerror", lambda e: pg.motionkit_errors.append(str(e)))
        pg.goto(server.url)
        pg.wait_for_function(f"() => window.app && app.graph && LiteGraph.registered_node_types['{NODE_TYPE}']",
                             timeout=120_000)
        pg.keyboard.press("Escape")
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


def show_node(page):
    """Load the example, put the arrows node at 100% zoom in view, and wait for its editor to lay out."""
    page.evaluate("""async (wf) => {
        await app.loadGraphData(wf);
        const node = app.graph._nodes.find(n => n.type === '%s');
        app.canvas.ds.scale = 1;
        app.canvas.ds.offset = [-node.pos[0] + 120, -node.pos[1] + 60];
        app.canvas.setDirty(true, true);
    }""" % NODE_TYPE, load_workflow(EXAMPLE))
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


def editor_state(page) -> dict:
    return page.evaluate(f"() => {EDITOR}.state()")


def arrows_value(page) -> str:
    return page.evaluate(f"() => app.graph._nodes.find(n => n.type === '{NODE_TYPE}').widgets"
                         ".find(w => w.name === 'arrows').value")


def test_draw_an_arrow_queue_and_get_its_tracks(page, server):
    with screenshot_on_failure(page, "draw_and_queue"):
        show_node(page)
        wf_node = next(n for n in load_workflow(EXAMPLE)["nodes"] if n["type"] == NODE_TYPE)
        assert arrows_value(page) == wf_node["widgets_values"][0]  # loading never rewrites the arrows
        node_id = str(wf_node["id"])

        # First run: the node's UI output brings the image and the mask into the editor.
        queue_and_wait(page, server)
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
        # the control points start on the ball (the mask the core nodes made from the blue channel)
        from motionkit_testing.trajectory_example import example_ball_mask
        ball = example_ball_mask()
        for x, y in np.array(ui["tracks"]["start"])[objects == 0]:
            assert ball[int(y), int(x)]

        # Saved workflow: the arrows are in widgets_values, the editor canvas is not.
        saved = page.evaluate(f"() => app.graph.serialize().nodes.find(n => n.type === '{NODE_TYPE}')")
        assert saved["widgets_values"] == [arrows_value(page), 14, 8, 0, "fixed", "ease-in-out"]

        # Another file in Load Image: the editor shows it at once and drops the stale mask; the arrows
        # stay as they are until the user edits them.
        value = arrows_value(page)
        page.evaluate("""() => { const n = app.graph._nodes.find(n => n.type === 'LoadImage');
            const w = n.widgets.find(w => w.name === 'image'); w.value = 'motionkit_test.png'; w.callback?.(w.value); }""")
        page.wait_for_function(f"""() => {{ app.canvas.setDirty(true, true); const s = {EDITOR}.state();
            return s.background === 'upstream' && s.masks === 0; }}""", timeout=30_000)
        assert editor_state(page)["size"] == [64, 64] and arrows_value(page) == value


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
