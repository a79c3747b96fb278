"""Headless Chromium for the widget tests: Debian's ``chromium`` driven by Playwright's Python client, on
the frontend of the run's lane (``frontends.py``: the host's own, or a newer one, classic or Nodes 2.0).

A missing browser, or a lane whose frontend is not installed, fails the tests (the suite must not pass by
silently leaving the widgets untested); ``MOTIONKIT_SKIP_BROWSER_TESTS=1`` is the explicit way to skip
them on a machine without Chromium.

The helpers deal with each frontend's own UI by looking at what is there: the 1.2x frontends open
PrimeVue dialogs (``.p-dialog``: template browser, "Missing Models", execution errors); 1.48 and later
show an "issues found" overlay whose details (missing models with their download URL, missing media)
open in the right-side panel."""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from . import frontends

CHROMIUM = os.environ.get("MOTIONKIT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def playwright_and_chromium():
    """The ``playwright.sync_api`` module, once Chromium and the lane's frontend are known to be there
    (else fail or skip)."""
    skip = os.environ.get("MOTIONKIT_SKIP_BROWSER_TESTS") == "1"
    missing = []
    try:
        from playwright import sync_api
    except ImportError:
        sync_api, missing = None, ["the playwright Python package (the test extra)"]
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).is_file():
        missing.append(f"Chromium at {CHROMIUM} (Debian: apt-get install chromium; or set MOTIONKIT_CHROMIUM)")
    lane_missing = frontends.lane().missing()
    if lane_missing:
        missing.append(lane_missing)
    if missing:
        message = "browser tests need " + " and ".join(missing)
        if skip:
            pytest.skip(message)
        pytest.fail(message + ". Set MOTIONKIT_SKIP_BROWSER_TESTS=1 to skip them explicitly.", pytrace=False)
    return sync_api


# --- the page ---------------------------------------------------------------------------------------

def open_app(browser, server, node_type: str, viewport: dict | None = None):
    """A new page on the server's frontend, once the app is up and ``node_type`` is registered; overlays
    (first-visit dialogs, the default workflow's issues) are closed. ``page.motionkit_errors`` collects
    the page's uncaught errors."""
    page = browser.new_page(viewport=viewport or {"width": 1400, "height": 900})
    page.motionkit_errors = []
    page.on("pageerror", lambda e: page.motionkit_errors.append(f"{e}\n{e.stack}"))
    page.goto(server.url)
    wait_for_app(page, node_type)
    return page


def wait_for_app(page, node_type: str) -> None:
    """After a (re)load: the app and ``node_type`` are there, the frontend is the lane's, overlays closed."""
    page.wait_for_function("(t) => window.app && window.app.graph && window.LiteGraph && "
                           "LiteGraph.registered_node_types[t]", arg=node_type, timeout=120_000)
    lane = frontends.lane()
    info = page.evaluate("""() => ({version: window.__COMFYUI_FRONTEND_VERSION__ ?? null,
        nodes2: !!(window.app.extensionManager?.setting?.get?.('Comfy.VueNodes.Enabled')
                   ?? window.app.ui.settings.getSettingValue('Comfy.VueNodes.Enabled'))})""")
    if lane.version is not None:
        assert info["version"] == lane.version, f"lane {lane.name} serves frontend {info['version']}"
    assert info["nodes2"] == lane.nodes2, f"lane {lane.name}: Nodes 2.0 is {'on' if info['nodes2'] else 'off'}"
    page.wait_for_timeout(1000)
    dismiss_overlays(page)


def wait_until_persisted(page, fragment: str, timeout: float = 15.0) -> None:
    """Until the frontend has stored the open workflow with ``fragment`` in it (web storage, where every
    frontend keeps it for a page reload; 1.48+ writes it at most every 512 ms, so a reload right after an
    edit loses the edit, for a user as for a test)."""
    page.wait_for_function("""(fragment) => [localStorage, sessionStorage].some(s =>
        Object.keys(s).some(k => (s.getItem(k) || '').includes(fragment)))""", arg=fragment, timeout=timeout * 1000)


OVERLAYS_OPEN = """() => {
    const shown = (e) => !!(e.offsetWidth || e.offsetHeight || e.getClientRects().length);
    return [...document.querySelectorAll('.p-dialog, [role=dialog], [data-testid=error-overlay], .p-toast-message')]
        .filter(shown).map(e => (e.innerText || '').trim().slice(0, 300));
}"""


def dismiss_overlays(page, rounds: int = 6) -> None:
    """Close what covers the canvas, whichever frontend: PrimeVue dialogs and toasts, other modal dialogs
    (Escape), the 1.48+ issues overlay and the right-side panel it opens."""
    for _ in range(rounds):
        close_side_panel(page)
        if not page.evaluate(OVERLAYS_OPEN):
            return
        page.evaluate("""() => {
            for (const b of document.querySelectorAll('[data-testid=error-overlay-dismiss], '
                    + '.p-dialog .p-dialog-close-button, .p-toast-message .p-toast-close-button')) b.click();
        }""")
        page.keyboard.press("Escape")
        page.wait_for_timeout(400)
    open_ = page.evaluate(OVERLAYS_OPEN)
    if open_:
        raise AssertionError(f"an overlay stays open over the canvas: {open_}")


def close_side_panel(page) -> None:
    page.evaluate("""() => {
        const panel = document.querySelector('[data-testid=properties-panel]');
        if (!panel || !(panel.offsetWidth || panel.offsetHeight)) return;
        const toggle = [...document.querySelectorAll('button')]
            .find(b => b.getAttribute('aria-label') === 'Toggle properties panel');
        toggle?.click();
    }""")


def load_issues(page, timeout: float = 8.0) -> dict:
    """What the frontend reports after a workflow load, in its own UI:
    ``{"ui": "dialog" | "issues" | None, "texts": [...], "groups": [...], "models": {name: {...}}}``.

    Frontend 1.2x opens dialogs (``texts``; a "Missing Models" one lists name and URL of each model);
    1.48+ shows an "issues found" overlay whose details list ``groups`` (``missing-model``,
    ``missing-media``, ``missing-node``...) and, per missing model, its folder and whether the URL is
    offered (a "Copy URL" button). Leaves the overlays closed."""
    deadline = time.time() + timeout
    result = {"ui": None, "texts": [], "groups": [], "models": {}}
    while time.time() < deadline:
        state = page.evaluate("""() => ({
            dialogs: [...document.querySelectorAll('.p-dialog')].map(d => d.innerText),
            overlay: !!document.querySelector('[data-testid=error-overlay-see-errors]')})""")
        if state["dialogs"]:
            page.wait_for_timeout(500)   # the dialog fills in
            texts = page.evaluate("() => [...document.querySelectorAll('.p-dialog')].map(d => d.innerText)")
            result.update(ui="dialog", texts=texts)
            for text in texts:
                if not text.startswith("Missing Models"):
                    continue
                model = None   # rows: "<folder> / <file>", then its actions ("Download", "Copy URL")
                for line in (x.strip() for x in text.splitlines()):
                    if " / " in line:
                        directory, name = line.split(" / ", 1)
                        model = result["models"].setdefault(name, {"directory": directory, "url": False})
                    elif model is not None and (line in ("Copy URL", "Download") or line.startswith("Download (")):
                        model["url"] = True
            break
        if state["overlay"]:
            page.locator("[data-testid=error-overlay-see-errors]").first.click()
            page.wait_for_selector("[data-testid=properties-panel]", timeout=10_000)
            page.wait_for_timeout(800)
            details = page.evaluate("""() => {
                const panel = document.querySelector('[data-testid=properties-panel]');
                const groups = [...panel.querySelectorAll('[data-testid^=error-group-]')]
                    .map(g => g.dataset.testid.replace('error-group-', ''))
                    .filter(g => g !== 'display-message');
                const models = {};
                const group = panel.querySelector('[data-testid=error-group-missing-model]');
                for (const b of group ? group.querySelectorAll('button[title]') : []) {
                    if (b.title === 'Copy URL' || !b.title) continue;
                    const row = b.closest('span')?.parentElement;
                    const url = !!row?.querySelector('button[aria-label="Copy URL"]');
                    const folder = row?.querySelector(':scope > span:last-child')?.innerText ?? null;
                    models[b.title] = {directory: folder, url};
                }
                return {groups, models, text: panel.innerText};
            }""")
            result.update(ui="issues", texts=[details["text"]], groups=details["groups"], models=details["models"])
            break
        page.wait_for_timeout(200)
    dismiss_overlays(page)
    return result


# --- what a user does to a node and its workflow: copy-paste, tabs, save and reopen, resize ---------------

def node_by_id_js(node_id) -> str:
    return f"app.graph.getNodeById({json.dumps(str(node_id))}) ?? app.graph.getNodeById({json.dumps(int(node_id))})"


def copy_paste_node(page, node_id, at: tuple = (1250, 820)) -> str:
    """Select the node, press Ctrl+C, move the mouse to ``at`` (empty canvas) and press Ctrl+V, as a user
    does (with the graph canvas focused and no text selected, else the frontend copies text, not nodes);
    returns the pasted node's id."""
    before = set(page.evaluate("() => app.graph._nodes.map(n => String(n.id))"))
    page.keyboard.press("Escape")
    page.evaluate(f"""() => {{ getSelection().removeAllRanges(); app.canvas.deselectAll?.();
        app.canvas.selectNode({node_by_id_js(node_id)}); app.canvas.canvas.focus(); }}""")
    page.mouse.move(*at)
    page.keyboard.press("Control+c")
    page.keyboard.press("Control+v")
    page.wait_for_function("(n) => app.graph._nodes.length > n", arg=len(before), timeout=10_000)
    new = set(page.evaluate("() => app.graph._nodes.map(n => String(n.id))")) - before
    assert len(new) == 1, f"pasting made {len(new)} nodes"
    return next(iter(new))


def switch_tab_and_back(page) -> dict:
    """Open a new blank workflow in another tab, then go back to this workflow's tab (the frontend keeps the
    workflow of an inactive tab as JSON and loads it again: every node is created anew). Returns the
    workflow paths ``{"first", "other"}``."""
    first = page.evaluate("() => app.extensionManager.workflow.activeWorkflow.path")
    page.evaluate("() => app.extensionManager.command.execute('Comfy.NewBlankWorkflow')")
    page.wait_for_function("(p) => app.extensionManager.workflow.activeWorkflow?.path !== p", arg=first, timeout=10_000)
    other = page.evaluate("() => app.extensionManager.workflow.activeWorkflow.path")
    assert page.evaluate("() => app.graph._nodes.length") == 0
    for _ in range(page.evaluate("() => app.extensionManager.workflow.openWorkflows.length")):
        page.evaluate("() => app.extensionManager.command.execute('Workspace.PreviousOpenedWorkflow')")
        page.wait_for_function("(p) => app.extensionManager.workflow.activeWorkflow?.path !== p", arg=other,
                               timeout=10_000)
        if page.evaluate("() => app.extensionManager.workflow.activeWorkflow.path") == first:
            break
        other = page.evaluate("() => app.extensionManager.workflow.activeWorkflow.path")
    assert page.evaluate("() => app.extensionManager.workflow.activeWorkflow.path") == first
    page.wait_for_timeout(500)
    dismiss_overlays(page)
    return {"first": first, "other": other}


def save_and_reopen(page, name: str) -> dict:
    """The workflow as the frontend saves it (``graphToPrompt().workflow``, what Save and Export write), then
    opened again as a file (``app.handleFile``, as Open and drag-and-drop do) in a new tab. Returns the saved
    workflow."""
    saved = page.evaluate("async () => JSON.parse(JSON.stringify((await app.graphToPrompt()).workflow))")
    page.evaluate("() => app.extensionManager.command.execute('Comfy.NewBlankWorkflow')")
    page.wait_for_function("() => app.graph._nodes.length === 0", timeout=10_000)
    page.evaluate("""async ([wf, name]) => {
        await app.handleFile(new File([JSON.stringify(wf)], name, {type: 'application/json'})); }""", [saved, name])
    page.wait_for_function("(n) => app.graph._nodes.length === n", arg=len(saved["nodes"]), timeout=10_000)
    page.wait_for_timeout(500)
    dismiss_overlays(page)
    return saved


def resize_node(page, node_id, width: float, height: float) -> None:
    """Give the node this size (LiteGraph units; at canvas zoom 1 these are CSS pixels)."""
    page.evaluate(f"""([w, h]) => {{ const n = {node_by_id_js(node_id)}; n.setSize([w, h]);
        app.canvas.setDirty(true, true); app.graph.setDirtyCanvas?.(true, true); }}""", [width, height])


def node_screen_rect(page, node_id) -> dict:
    """The node's box on the page in CSS pixels (title included): the Vue node element with Nodes 2.0, else
    from LiteGraph's position, size and canvas transform."""
    return page.evaluate(f"""() => {{
        const n = {node_by_id_js(node_id)};
        const el = document.querySelector(`[data-node-id="${{n.id}}"]`);
        if (el) {{ const r = el.getBoundingClientRect(); return {{left: r.left, top: r.top, right: r.right, bottom: r.bottom}}; }}
        const ds = app.canvas.ds, c = app.canvas.canvas.getBoundingClientRect(), title = LiteGraph.NODE_TITLE_HEIGHT;
        const left = c.left + (n.pos[0] + ds.offset[0]) * ds.scale, top = c.top + (n.pos[1] - title + ds.offset[1]) * ds.scale;
        return {{left, top, right: left + n.size[0] * ds.scale, bottom: top + (n.size[1] + title) * ds.scale}};
    }}""")
