"""Every saved example workflow (``example_workflows/*.json``) loads and runs.

Generic on purpose: a workflow added later by another feature is exercised the same way. Each one is
converted to an API prompt with the real server's ``/object_info`` (``ui_format.ui_to_api``), pointed at
the tiny random SVD checkpoint (and the other tiny stand-ins in ``TINY_WEIGHTS``), shrunk to 64x64 /
4 frames / 2 steps (``adapt_to_tiny_models``), given stand-ins for interactive inputs it saves empty
(``USER_INPUT_STAND_INS``), POSTed to the real ComfyUI HTTP server; every file it reports must exist,
and each video must decode to 4 frames of 64x64. A workflow is skipped only when it uses a node listed
in ``NEEDS_WEIGHTS`` (weights the harness cannot build), with the reason shown.

The browser test loads each workflow into the real ComfyUI frontend (headless Chromium; the frontend of the
session's lane, see ``motionkit_testing/frontends.py``), checks that it reports nothing but missing models
(each offered with its download URL) and missing input files, and that the frontend's own ``graphToPrompt``
gives the same prompt as ``ui_to_api``, also for a variant with the MotionKit nodes bypassed, a Reroute and
a seed PrimitiveNode.
"""
from __future__ import annotations

import json
import urllib.request
from collections import deque
from pathlib import Path

import pytest

from motionkit_testing.browser import CHROMIUM, CHROMIUM_ARGS, load_issues, open_app, playwright_and_chromium
from motionkit_testing.comfy_session import PACK_DIRNAME
from motionkit_testing.ui_format import FRONTEND_ONLY, MUTED, BYPASSED, ui_to_api, widget_problems
from motionkit_testing.workflows import TINY_RUN, adapt_to_tiny_models, load_workflow

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((REPO / "example_workflows").glob("*.json"))
IDS = [p.stem for p in WORKFLOWS]
FRAMES, SIZE = TINY_RUN["video_frames"], (TINY_RUN["width"], TINY_RUN["height"])
TEST_IMAGE = "motionkit_test.png"  # written into input/ by the tiny_ckpt fixture
VIDEO_SUFFIXES = {".mp4", ".webm", ".mov", ".mkv", ".webp", ".gif"}

# Node types whose weights the test harness cannot build: a workflow using one is skipped with this reason.
# Add a MotionKit loader here only while no tiny stand-in exists for its weights.
NEEDS_WEIGHTS = {
    "CheckpointLoaderSimple": "needs an image-model checkpoint, motion modules and LoRAs: the SD1.5 example "
                              "workflows run on the tiny SD1.5 harness in tests/test_sd15_examples.py",
    "UNETLoader": "needs a diffusion_models/ file; the harness builds single-file SVD checkpoints only",
    "CLIPLoader": "needs a text encoder; the harness builds none",
    "DualCLIPLoader": "needs text encoders; the harness builds none",
    "CLIPVisionLoader": "needs a clip_vision/ file; the harness embeds CLIP vision in the SVD checkpoint only",
    "VAELoader": "needs a vae/ file; the harness embeds a TAESD VAE in the SVD checkpoint only",
    "LoraLoader": "needs a LoRA file; tiny LoRAs exist for the SD1.5 harness only (tests/test_sd15_examples.py)",
    "LoraLoaderModelOnly": "needs a LoRA file; tiny LoRAs exist for the SD1.5 harness only (tests/test_sd15_examples.py)",
    "ControlNetLoader": "needs a ControlNet file; the harness builds none",
    "UpscaleModelLoader": "needs an upscale model; the harness builds none",
}


def _tiny_sam(base_dir: Path) -> str:
    from motionkit_testing.tiny_sam import ensure_tiny_sam
    return ensure_tiny_sam(base_dir)["pth"]


def _tiny_puppet_master(base_dir: Path) -> str:
    from motionkit_testing.tiny_puppet_master import ensure_tiny_puppet_master
    return ensure_tiny_puppet_master(base_dir)


# Loader nodes whose weights the harness builds as tiny seeded random stand-ins:
# node type -> (the input naming the file, a writer that puts the tiny file in place and returns its name).
TINY_WEIGHTS = {
    "MotionKitSAMLoader": ("model_name", _tiny_sam),
    "MotionKitPuppetMasterLoader": ("unet_name", _tiny_puppet_master),
}

# Inputs a user fills in interactively (a saved workflow may leave them empty): node type -> {input: the
# stand-in used when the saved value is empty}. The click lands on the disc of the test image.
USER_INPUT_STAND_INS = {
    "MotionKitClickToMask": {"points": json.dumps({"version": 1, "width": SIZE[0], "height": SIZE[1], "objects": [
        {"positive": [[round(0.35 * SIZE[0]), SIZE[1] // 2]], "negative": [], "box": None}]})},
}



def test_the_svd_all_to_first_example_exists():
    wf = load_workflow(REPO / "example_workflows" / "svd_all_to_first.json")
    types = [n["type"] for n in wf["nodes"]]
    for core in ("ImageOnlyCheckpointLoader", "LoadImage", "SVD_img2vid_Conditioning", "VideoLinearCFGGuidance",
                 "MotionKitAllToFirstAttention", "KSampler", "VAEDecode", "SaveWEBM"):
        assert types.count(core) == 1, f"{core} appears {types.count(core)} times"
    loader = next(n for n in wf["nodes"] if n["type"] == "ImageOnlyCheckpointLoader")
    assert loader["widgets_values"] == ["svd_xt.safetensors"]
    assert loader["properties"]["models"] == [{
        "name": "svd_xt.safetensors", "directory": "checkpoints",
        "url": "https://huggingface.co/stabilityai/stable-video-diffusion-img2vid-xt/resolve/main/"
               "svd_xt.safetensors?download=true"}]
    assert wf["version"] == 0.4


MODEL_SUFFIXES = (".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".onnx")
# Files a user makes or brings, with no public download: the frontend lists them as missing, without a URL.
USER_FILES = {"my_style_lora.safetensors": "the user's own style LoRA",
              "my_style_still_moving.safetensors": "adapters written by Train Motion / Train Spatial Adapters"}


@pytest.mark.parametrize("path", WORKFLOWS, ids=IDS)
def test_every_model_file_carries_download_metadata(path):
    """Each model file a workflow names (a widget value with a model suffix, as the frontend's missing-model
    scan finds them) is declared in its node's ``properties.models`` with the file's https URL and the
    models/ folder, which the frontend (1.2x dialog, 1.48+ issues panel) offers for download."""
    from urllib.parse import urlparse
    wf = load_workflow(path)
    for node in (n for n in wf["nodes"] if n["type"] not in FRONTEND_ONLY):
        values = node.get("widgets_values") or []
        declared = {m["name"]: m for m in node.get("properties", {}).get("models", [])}
        for value in (values.values() if isinstance(values, dict) else values):
            if not (isinstance(value, str) and value.lower().endswith(MODEL_SUFFIXES)) or value in USER_FILES:
                continue
            model = declared.get(value)
            where = f"{path.name}: node {node['id']} ({node['type']}) names {value}"
            assert model, f"{where} without download metadata (properties.models)"
            assert model.get("directory") and urlparse(model.get("url", "")).scheme == "https", (where, model)
            assert urlparse(model["url"]).path.endswith("/" + value), (where, model["url"])


@pytest.fixture(scope="module")
def object_info(server) -> dict:
    return server.get("/object_info")


def _skip_reason(wf: dict) -> str | None:
    needs = sorted({n["type"] for n in wf["nodes"] if n["type"] in NEEDS_WEIGHTS and n.get("mode", 0) == 0})
    return "; ".join(f"{t}: {NEEDS_WEIGHTS[t]}" for t in needs) or None


@pytest.mark.server
@pytest.mark.parametrize("path", WORKFLOWS, ids=IDS)
def test_saved_widget_values_match_the_declared_inputs(path, object_info):
    """A saved workflow must load onto today's nodes: per node, the number, order, types and ranges of
    ``widgets_values`` match the inputs the node declares (MotionKit's input order is public API)."""
    wf = load_workflow(path)
    nodes = [n for n in wf["nodes"] if n["type"] not in FRONTEND_ONLY]
    unknown = sorted({n["type"] for n in nodes} - set(object_info))
    assert not unknown, f"{path.name} uses node types this ComfyUI + MotionKit does not register: {unknown}"
    problems = [p for n in nodes for p in widget_problems(n, object_info[n["type"]])]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", WORKFLOWS, ids=IDS)
def test_each_workflow_has_a_thumbnail(path):
    from PIL import Image
    thumb = path.with_suffix(".jpg")
    assert thumb.is_file(), f"the template browser shows {thumb.name} as the thumbnail; it is missing"
    with Image.open(thumb) as im:
        assert im.format == "JPEG" and 200 <= im.width <= 1600 and 150 <= im.height <= 1600, (im.format, im.size)


@pytest.mark.server
def test_the_server_offers_the_workflows_as_templates(server):
    listed = server.get("/workflow_templates").get(PACK_DIRNAME, [])
    assert sorted(listed) == IDS
    for path in WORKFLOWS:
        served = server.get(f"/api/workflow_templates/{PACK_DIRNAME}/{path.name}")
        assert served == load_workflow(path)
        with urllib.request.urlopen(f"{server.url}/api/workflow_templates/{PACK_DIRNAME}/{path.stem}.jpg") as r:
            assert r.read() == path.with_suffix(".jpg").read_bytes()


def _feeds_an_output(prompt: dict, object_info: dict) -> set[str]:
    """The prompt's nodes that some output node depends on (the executor runs only these)."""
    todo = deque(i for i, n in prompt.items() if object_info[n["class_type"]].get("output_node"))
    seen = set(todo)
    while todo:
        for value in prompt[todo.popleft()]["inputs"].values():
            if isinstance(value, list) and len(value) == 2 and str(value[0]) not in seen:
                seen.add(str(value[0]))
                todo.append(str(value[0]))
    return seen


def _saved_files(entry: dict, base_dir: Path) -> list[Path]:
    """The files a run reported in its history (saved outputs and temporary previews)."""
    return [base_dir / f.get("type", "output") / f.get("subfolder", "") / f["filename"]
            for out in entry["outputs"].values() for items in out.values() if isinstance(items, list)
            for f in items if isinstance(f, dict) and "filename" in f and f.get("type", "output") in ("output", "temp")]


def _decode(path: Path) -> tuple[int, tuple[int, int]]:
    """``(frame count, (width, height))`` of a saved video, decoded frame by frame."""
    if path.suffix.lower() in (".webp", ".gif"):
        from PIL import Image
        with Image.open(path) as im:
            return getattr(im, "n_frames", 1), im.size
    import av
    with av.open(str(path)) as container:
        frames = [(f.width, f.height) for f in container.decode(video=0)]
    assert len(set(frames)) <= 1, f"frame sizes vary in {path}: {set(frames)}"
    return len(frames), (frames[0] if frames else (0, 0))


@pytest.mark.server
@pytest.mark.slow
@pytest.mark.parametrize("path", WORKFLOWS, ids=IDS)
def test_workflow_runs_on_the_tiny_models_through_http(path, server, base_dir, tiny_ckpt, tiny_motion_i2v,
                                                       object_info):
    wf = load_workflow(path)
    reason = _skip_reason(wf)
    if reason:
        pytest.skip(reason)
    prompt = ui_to_api(wf, object_info)
    active = [n for n in wf["nodes"] if n["type"] not in FRONTEND_ONLY and n.get("mode", 0) not in (MUTED, BYPASSED)]
    assert sorted(prompt) == sorted(str(n["id"]) for n in active)
    dangling = sorted(set(prompt) - _feeds_an_output(prompt, object_info))
    assert not dangling, f"nodes {[(i, prompt[i]['class_type']) for i in dangling]} feed no output node"

    tiny = adapt_to_tiny_models(prompt, tiny_ckpt, image=TEST_IMAGE)
    for node in tiny.values():
        if node["class_type"] in TINY_WEIGHTS:
            name, write = TINY_WEIGHTS[node["class_type"]]
            node["inputs"][name] = write(base_dir)
        for name, stand_in in USER_INPUT_STAND_INS.get(node["class_type"], {}).items():
            if node["inputs"].get(name) in ("", None):
                node["inputs"][name] = stand_in
        if "filename_prefix" in node["inputs"]:
            node["inputs"]["filename_prefix"] = f"example_workflows/{path.stem}"
    entry = server.run(tiny)

    files = _saved_files(entry, base_dir)
    assert files, f"the run saved nothing: {entry['outputs']}"
    for file in files:
        assert file.is_file() and file.stat().st_size > 0, file
        if file.suffix.lower() in VIDEO_SUFFIXES:
            assert _decode(file) == (FRAMES, SIZE), f"{file.name} decodes to {_decode(file)}"
        else:
            from PIL import Image
            with Image.open(file) as im:
                im.load()
    saves_video = any(n["type"] in ("SaveVideo", "SaveWEBM", "SaveAnimatedWEBP", "SaveAnimatedPNG")
                      for n in wf["nodes"] if n.get("mode", 0) == 0)
    assert not saves_video or any(f.suffix.lower() in VIDEO_SUFFIXES for f in files), "no video was written"


# --- the real frontend ------------------------------------------------------------------------------

# errors the page raises while the workflow loads or the variant is built (window.motionkitErrors)
_LISTEN = """
    window.motionkitOnError ??= (e) => window.motionkitErrors.push(String(e.message || e.reason || e));
    window.addEventListener('error', window.motionkitOnError);
    window.addEventListener('unhandledrejection', window.motionkitOnError);"""
_UNLISTEN = """
    window.removeEventListener('error', window.motionkitOnError);
    window.removeEventListener('unhandledrejection', window.motionkitOnError);"""

_LOAD = """async (wf) => {
    window.motionkitErrors = [];""" + _LISTEN + """
    await window.app.loadGraphData(wf);
    await new Promise(r => setTimeout(r, 1000));
    const g = window.app.graph;
    const result = {types: g._nodes.map(n => n.type), saved: g.serialize(),
                    prompt: (await window.app.graphToPrompt()).output};""" + _UNLISTEN + """
    return result;
}"""

_VARIANT = """async () => {""" + _LISTEN + """
    // A variant built by the frontend itself: MotionKit nodes bypassed, a legacy Reroute on the first
    // link, and a PrimitiveNode driving the first 'seed' widget.
    const g = window.app.graph, result = {};
    for (const n of g._nodes) if (n.type.startsWith('MotionKit')) n.mode = 4;
    const link = (g.links instanceof Map ? [...g.links.values()] : Object.values(g.links))[0];
    if (link) {
        const reroute = LiteGraph.createNode('Reroute');
        g.add(reroute);
        const origin = g.getNodeById(link.origin_id), target = g.getNodeById(link.target_id);
        const [oslot, tslot] = [link.origin_slot, link.target_slot];
        origin.connect(oslot, reroute, 0);
        reroute.connect(0, target, tslot);
    }
    const seeded = g._nodes.find(n => n.mode !== 4 && (n.inputs || []).some(i => i.name === 'seed' && i.widget));
    if (seeded) {
        const primitive = LiteGraph.createNode('PrimitiveNode');
        g.add(primitive);
        primitive.connect(0, seeded, seeded.inputs.findIndex(i => i.name === 'seed'));
        primitive.widgets[0].value = 1234567;
    }
    result.variant_prompt = (await window.app.graphToPrompt()).output;
    result.variant_saved = g.serialize();
    result.variant_has_primitive = !!seeded;
    result.errors = window.motionkitErrors;""" + _UNLISTEN + """
    return result;
}"""


def _without_meta(prompt: dict) -> dict:
    return {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in prompt.items()}


@pytest.fixture(scope="module")
def frontend_page(server):
    # the lane's user settings (tutorial done: no first-visit template browser) are written by the server fixture
    sync_api = playwright_and_chromium()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield open_app(browser, server, "MotionKitAllToFirstAttention")
        browser.close()


@pytest.mark.server
@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.parametrize("path", WORKFLOWS, ids=IDS)
def test_frontend_loads_the_workflow_and_agrees_with_ui_to_api(path, frontend_page, server, object_info):
    wf = load_workflow(path)
    res = frontend_page.evaluate(_LOAD, wf)
    assert sorted(res["types"]) == sorted(n["type"] for n in wf["nodes"])
    assert any(t.startswith("MotionKit") for t in res["types"])

    # Loading reports only missing models and input files (in the frontend's "Missing Models" dialog or
    # its issues panel), and offers each declared model that is not installed with its download URL.
    issues = load_issues(frontend_page)
    if issues["ui"] == "dialog":
        for text in issues["texts"]:
            assert text.startswith("Missing Models"), f"unexpected dialog on load: {text[:300]}"
    assert set(issues["groups"]) <= {"missing-model", "missing-media"}, issues["texts"]
    for model in (m for n in wf["nodes"] for m in n.get("properties", {}).get("models", [])):
        if model["name"] not in server.get(f"/models/{model['directory']}"):
            offered = issues["models"].get(model["name"])
            assert offered and offered["url"], \
                f"the frontend does not offer to download {model['directory']}/{model['name']}: {issues}"
            assert offered.get("directory") in (None, model["directory"]), (model, offered)
    res.update(frontend_page.evaluate(_VARIANT))
    assert not res["errors"], f"the frontend raised while loading {path.name}: {res['errors']}"

    # Loaded as saved: re-saving changes no widget value, and both convert to the frontend's prompt.
    assert ui_to_api(res["saved"], object_info) == ui_to_api(wf, object_info)
    assert ui_to_api(wf, object_info) == _without_meta(res["prompt"])
    assert ui_to_api(res["variant_saved"], object_info) == _without_meta(res["variant_prompt"])
    variant_types = [n["type"] for n in res["variant_saved"]["nodes"]]
    assert "Reroute" in variant_types
    assert ("PrimitiveNode" in variant_types) == res["variant_has_primitive"]
    mk_nodes = [str(n["id"]) for n in wf["nodes"] if n["type"].startswith("MotionKit")]
    assert not set(mk_nodes) & set(res["variant_prompt"]), "bypassed MotionKit nodes were still sent"
    sources = {str(v[0]) for n in res["variant_prompt"].values() for v in n["inputs"].values() if isinstance(v, list)}
    assert sources <= set(res["variant_prompt"]), "the frontend's variant prompt links to nodes it did not send"
    if res["variant_has_primitive"]:
        assert any(n["inputs"].get("seed") == 1234567 for n in res["variant_prompt"].values())
