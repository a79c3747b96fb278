#!/usr/bin/env python3
"""Screenshots of MotionKit's two in-node editors for the README: ``docs/arrow_editor.png`` and
``docs/click_to_mask.png``.

It starts the pinned ComfyUI with MotionKit through the test harness (a temporary base directory, the tiny
random test SAM, the synthetic example image of the browser tests), opens the frontend in headless Debian
Chromium (Playwright), builds each editor's graph, edits with the mouse and the editors' own controls as a
user does, and writes palette PNGs (under 200 KB each). Run it from the checkout with a venv that has the
test extra (playwright):

    .venv/bin/python scripts/screenshots.py [--out docs] [--frontend host|1.58.1|1.58.1-nodes2]

* Arrow editor: Load Image -> core Convert Image to Mask (blue) -> Threshold Mask -> Invert Mask (the ball,
  the only thing with little blue) -> Arrows to Trajectories, queued once so the editor shows the ball's mask
  and its control points; then a bent arrow timed in the timing row (frames 2 to 11, ease-in-out, the bend
  reached at frame 6), a "stay" pin on the ball and "hold camera" pins around the border.
* Click to Mask: the example image, two objects (a click and a background click; a box drawn by dragging),
  with the masks the editor's live preview returns. The test SAM is a tiny network with random weights, so
  its masks are noise-like: the screenshot shows the editor, not SAM's quality (``--sam`` takes a real
  checkpoint instead).
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

MAX_BYTES = 200_000


def save_png(png: bytes, path: Path) -> int:
    """The screenshot as a palette PNG (quantised to at most 256 colours, fewer if it is still too big)."""
    from PIL import Image
    image = Image.open(io.BytesIO(png)).convert("RGB")
    for colours in (256, 128, 64):
        out = io.BytesIO()
        image.quantize(colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(out, "PNG", optimize=True)
        if out.tell() <= MAX_BYTES:
            break
    path.write_bytes(out.getvalue())
    return out.tell()


def node_clip(page, node_id, margin: int = 6) -> dict:
    from motionkit_testing.browser import node_screen_rect
    r = node_screen_rect(page, node_id)
    return {"x": r["left"] - margin, "y": r["top"] - margin, "width": r["right"] - r["left"] + 2 * margin,
            "height": r["bottom"] - r["top"] + 2 * margin}


PARK = (1150, 520)   # where the mouse rests for a screenshot: empty canvas, no hover effects


def place(page, node_id, x: float = 140, y: float = 150) -> None:
    """Canvas zoom 1, the node's top-left corner (title included) at page position (x, y)."""
    page.evaluate(f"""([x, y]) => {{ const n = app.graph.getNodeById({node_id}), c = app.canvas.canvas.getBoundingClientRect();
        app.canvas.ds.scale = 1; app.canvas.ds.offset = [x - c.left - n.pos[0], y - c.top - n.pos[1] + LiteGraph.NODE_TITLE_HEIGHT];
        app.canvas.setDirty(true, true); }}""", [x, y])
    page.wait_for_timeout(300)


def client(page, editor: str, x: float, y: float) -> tuple:
    p = page.evaluate(f"([x, y]) => {editor}.imageToClient(x, y)", [x, y])
    return p["x"], p["y"]


def arrow_editor(page, server, out: Path) -> int:
    from motionkit_testing.browser import dismiss_overlays
    from motionkit_testing.trajectory_example import EXAMPLE_IMAGE
    node_id = page.evaluate("""(image) => {
        const g = app.graph; g.clear();
        const add = (type, pos, size) => { const n = LiteGraph.createNode(type); g.add(n); n.pos = pos; if (size) n.setSize(size); return n; };
        const load = add('LoadImage', [20, 40]);
        load.widgets.find(w => w.name === 'image').value = image;
        const toMask = add('ImageToMask', [20, 420]);
        toMask.widgets.find(w => w.name === 'channel').value = 'blue';
        const threshold = add('ThresholdMask', [20, 520]);
        threshold.widgets.find(w => w.name === 'value').value = 0.4;
        const invert = add('InvertMask', [20, 620]);
        const arrows = add('MotionKitArrowsToTracks', [380, 40], [460, 680]);
        load.connect(0, toMask, 0); toMask.connect(0, threshold, 0); threshold.connect(0, invert, 0);
        invert.connect(0, arrows, arrows.findInputSlot('masks')); load.connect(0, arrows, arrows.findInputSlot('image'));
        arrows.widgets.find(w => w.name === 'easing').value = 'ease-in-out';
        return String(arrows.id); }""", EXAMPLE_IMAGE)
    place(page, node_id)
    editor = f"app.graph.getNodeById({node_id}).motionkitArrowEditor"
    page.wait_for_function(f"() => {editor}.state().background === 'upstream'", timeout=60_000)
    # one run: the node shows its masks and control points
    page.evaluate("() => app.queuePrompt(0, 1)")
    page.wait_for_function(f"() => {editor}.state().background === 'run' && {editor}.state().masks === 1", timeout=120_000)
    dismiss_overlays(page)

    def drag(a, b):
        page.mouse.move(*client(page, editor, *a))
        page.mouse.down()
        page.mouse.move(*client(page, editor, *b), steps=10)
        page.mouse.up()

    drag((150, 290), (420, 200))                    # the ball's arrow
    drag((285, 245), (300, 120))                    # its midpoint handle: a bend (selected)
    page.evaluate(f"() => {{ document.querySelectorAll('[data-motionkit-target]').forEach(e => delete e.dataset.motionkitTarget); {editor}.root.dataset.motionkitTarget = '1'; }}")
    field = lambda name: page.locator(f"[data-motionkit-target='1'] [data-motionkit='{name}']")  # noqa: E731
    for name, value in (("start-frame", "2"), ("end-frame", "11"), ("point-frame", "6")):
        field(name).fill(value)
        field(name).press("Enter")
    field("easing").select_option("ease-in-out")
    field("stay").click()
    page.mouse.click(*client(page, editor, 120, 320))   # a pin on the ball
    field("stay").click()
    field("hold-camera").click()
    page.mouse.click(*client(page, editor, 300, 120))   # the bend point selected again: the timing row shows it
    page.mouse.move(*PARK)
    page.wait_for_timeout(500)
    return save_png(page.screenshot(clip=node_clip(page, node_id)), out / "arrow_editor.png")


def click_to_mask(page, server, out: Path, sam: str | None = None) -> int:
    import json
    from motionkit_testing.browser import load_issues
    from motionkit_testing.tiny_sam import TINY_SAM_PTH
    from motionkit_testing.trajectory_example import EXAMPLE_IMAGE
    sam = sam or TINY_SAM_PTH
    wf = json.loads((REPO / "example_workflows" / "click_to_mask.json").read_text())
    page.evaluate("async (wf) => { await app.loadGraphData(wf); }", wf)
    load_issues(page)
    node_id = page.evaluate(f"""() => {{
        const g = app.graph, set = (w, v) => {{ w.value = v; w.callback?.(v); }};
        set(g._nodes.find(n => n.type === 'LoadImage').widgets.find(w => w.name === 'image'), '{EXAMPLE_IMAGE}');
        set(g._nodes.find(n => n.type === 'MotionKitSAMLoader').widgets[0], '{sam}');
        const node = g._nodes.find(n => n.type === 'MotionKitClickToMask');
        node.setSize([460, 600]); return String(node.id); }}""")
    place(page, node_id)
    editor = f"app.graph.getNodeById({node_id}).motionkitSamEditor"
    page.wait_for_function(f"() => {editor}.root.dataset.imageWidth === '512' && {editor}.root.dataset.status === 'ready'",
                           timeout=60_000)

    def at(x, y):
        return page.evaluate(f"""([x, y]) => {{ const e = {editor}; const r = e.canvas.getBoundingClientRect();
            const s = r.width / e.canvas.clientWidth;
            return [r.left + (e.fit.x + (x + 0.5) * e.fit.scale) * s, r.top + (e.fit.y + (y + 0.5) * e.fit.scale) * s]; }}""", [x, y])

    page.mouse.click(*at(150, 285))                       # object 1: the ball
    page.mouse.click(*at(260, 420), button="right")        # and not the hill
    page.keyboard.press("n")                               # object 2: a box drawn by dragging
    page.mouse.move(*at(300, 330))
    page.mouse.down()
    page.mouse.move(*at(470, 470), steps=8)
    page.mouse.up()
    page.wait_for_function(f"() => {editor}.root.dataset.maskCount === '2' && {editor}.root.dataset.status === 'ready'",
                           timeout=60_000)
    page.mouse.move(*PARK)
    page.wait_for_timeout(500)
    return save_png(page.screenshot(clip=node_clip(page, node_id)), out / "click_to_mask.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs")
    parser.add_argument("--sam", type=Path, default=None,
                        help="a real SAM checkpoint (e.g. sam_vit_b_01ec64.pth) for Click to Mask's masks; default: "
                             "the tiny random test SAM")
    parser.add_argument("--frontend", default=os.environ.get("MOTIONKIT_FRONTEND", "host"),
                        help="frontend lane (tests/motionkit_testing/frontends.py): host, 1.58.1, 1.58.1-nodes2")
    args = parser.parse_args()
    os.environ["MOTIONKIT_FRONTEND"] = args.frontend

    from motionkit_testing import comfy_session as cs
    from motionkit_testing import frontends
    from motionkit_testing.browser import CHROMIUM, CHROMIUM_ARGS, open_app, playwright_and_chromium
    from motionkit_testing.tiny_sam import ensure_tiny_sam
    from motionkit_testing.trajectory_example import EXAMPLE_IMAGE, write_example_image

    args.out.mkdir(parents=True, exist_ok=True)
    lane = frontends.lane()
    with tempfile.TemporaryDirectory(prefix="motionkit-screenshots-") as tmp:
        base = cs.make_base_dir(Path(tmp))
        write_example_image(base / "input" / EXAMPLE_IMAGE)
        ensure_tiny_sam(base)
        if args.sam:
            (base / "models" / "sams" / args.sam.name).symlink_to(args.sam.resolve())
        frontends.write_user_settings(base, lane)
        server = cs.ComfyServer(base, cs.comfyui_path(), extra_args=lane.server_args())
        try:
            sync_api = playwright_and_chromium()
            with sync_api.sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = open_app(browser, server, "MotionKitArrowsToTracks", viewport={"width": 1200, "height": 950})
                size = arrow_editor(page, server, args.out)
                print(f"{args.out / 'arrow_editor.png'}: {size} bytes")
                size = click_to_mask(page, server, args.out, args.sam.name if args.sam else None)
                print(f"{args.out / 'click_to_mask.png'}: {size} bytes")
                if page.motionkit_errors:
                    raise SystemExit(f"the page raised errors: {page.motionkit_errors}")
                browser.close()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
