"""The editor's preview route on a real ComfyUI HTTP server: masks equal SamPredictor's, the embedding is
computed once and shared with the node, every bad field gets a 400 with a reason, and no path leaves
ComfyUI's input/temp/output folders."""
from __future__ import annotations

import base64
import io
import json
import urllib.request

import numpy as np
import pytest
import torch
from PIL import Image

from motionkit_testing.tiny_sam import (SAM_TEST_IMAGE, TINY_SAM_PTH, TINY_SAM_SAFETENSORS, build_sam, click_prompt,
                                        ensure_tiny_sam, load_uint8, points_json, predictor_masks,
                                        write_sam_test_image)

pytestmark = pytest.mark.server
ROUTE = "/motionkit/sam/preview"


@pytest.fixture(scope="module")
def sam_server(server, base_dir):
    ensure_tiny_sam(base_dir)
    return server


@pytest.fixture(scope="module")
def reference_sam(sam_server, base_dir):
    sam = build_sam(seed=None)
    sam.load_state_dict(torch.load(base_dir / "models" / "sams" / TINY_SAM_PTH, weights_only=True))
    return sam.eval()


def body(points, filename=SAM_TEST_IMAGE, type_="input", subfolder="", model=TINY_SAM_PTH):
    return {"image": {"filename": filename, "subfolder": subfolder, "type": type_}, "sam_model": model,
            "points": points}


def decode(png_b64: str) -> np.ndarray:
    with Image.open(io.BytesIO(base64.b64decode(png_b64))) as im:
        return np.array(im.convert("L")) > 127


def fresh_image(base_dir, name: str, seed: int) -> np.ndarray:
    """The SAM test image with a few random pixels: content no other test has embedded."""
    path = base_dir / "input" / name
    write_sam_test_image(path)
    pixels = np.array(Image.open(path))
    pixels[:3, :3] = np.random.default_rng(seed).integers(0, 255, (3, 3, 3))
    Image.fromarray(pixels).save(path)
    return pixels


def test_preview_masks_equal_sam_predictor_and_the_second_click_is_cached(sam_server, base_dir, reference_sam):
    pixels = fresh_image(base_dir, "motionkit_route_a.png", 11)
    clicks = [[{"positive": [[28, 32]]}],
              [{"positive": [[28, 32]], "negative": [[70, 30]]}, {"positive": [[69, 28]], "box": [55, 5, 85, 50]}]]
    answers = []
    for objects in clicks:
        status, out = sam_server.post(ROUTE, body(points_json(objects), filename="motionkit_route_a.png"))
        assert status == 200, out
        answers.append(out)
        assert (out["version"], out["width"], out["height"]) == (1, 96, 64)
        expected = predictor_masks(reference_sam, pixels, objects)
        assert len(out["masks"]) == len(objects)
        for got, (want, candidates, scores) in zip(out["masks"], expected):
            assert np.array_equal(decode(got["png"]), want)
            assert got["area"] == int(want.sum()) and got["candidates"] == len(candidates)
            assert got["score"] == pytest.approx(float(np.max(scores) if len(candidates) == 3 else scores[0]), abs=1e-6)
    assert [a["embedding"] for a in answers] == ["computed", "cached"]
    assert all(a["timing_ms"]["total"] > 0 for a in answers)


def test_a_click_on_one_object_decodes_only_that_object(sam_server, base_dir, reference_sam):
    pixels = fresh_image(base_dir, "motionkit_route_c.png", 13)
    fixed = [{"positive": [[28, 32]]}, {"positive": [[69, 28]], "negative": [[69, 5]]}]
    reused = []
    for click in ([[10, 50]], [[12, 50]], [[12, 52]]):  # the user keeps editing the third object
        objects = fixed + [{"positive": click}]
        status, out = sam_server.post(ROUTE, body(points_json(objects), filename="motionkit_route_c.png"))
        assert status == 200, out
        reused.append(out["masks_reused"])
        for got, (want, _, _) in zip(out["masks"], predictor_masks(reference_sam, pixels, objects)):
            assert np.array_equal(decode(got["png"]), want)
    assert reused == [0, 2, 2]


def test_points_may_be_sent_decoded_and_safetensors_models_work(sam_server, base_dir, reference_sam):
    objects = [{"positive": [[16, 40]]}]
    status, out = sam_server.post(ROUTE, body(json.loads(points_json(objects)), model=TINY_SAM_SAFETENSORS))
    assert status == 200, out
    (want, _, _), = predictor_masks(reference_sam, load_uint8(base_dir / "input" / SAM_TEST_IMAGE), objects)
    assert np.array_equal(decode(out["masks"][0]["png"]), want)


def test_the_node_and_the_route_share_the_embedding(sam_server, base_dir):
    """A queued run embeds the image; the editor's next click on the same image is answered from the cache.
    The node also saves the frame it segmented to temp/, which the route reads back losslessly."""
    fresh_image(base_dir, "motionkit_route_b.png", 12)
    entry = sam_server.run(click_prompt(points_json([{"positive": [[28, 32]]}]), image="motionkit_route_b.png",
                                        prefix="route_share"))
    info = entry["outputs"]["ctm"]
    assert info["motionkit_sam"][0]["embedding_cached"] is False
    click = points_json([{"positive": [[30, 30]]}])
    status, out = sam_server.post(ROUTE, body(click, filename="motionkit_route_b.png"))
    assert status == 200 and out["embedding"] == "cached", out
    frame = info["motionkit_sam_image"][0]
    assert frame["type"] == "temp"
    status, out = sam_server.post(ROUTE, body(points_json([{"positive": [[30, 31]]}]), filename=frame["filename"],
                                              subfolder=frame["subfolder"], type_="temp"))
    assert status == 200 and out["embedding"] == "cached", out


def test_the_api_prefix_and_the_models_listing(sam_server):
    status, out = sam_server.post("/api" + ROUTE, body(points_json([{"positive": [[28, 32]]}])))
    assert status == 200 and len(out["masks"]) == 1
    models = sam_server.get("/api/motionkit/sam/models")
    assert models["version"] == 1 and TINY_SAM_PTH in models["files"] and TINY_SAM_SAFETENSORS in models["files"]
    assert {"name": "sam_vit_b_01ec64.pth", "directory": "sams",
            "url": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"} in models["downloads"]


def raw_post(server, payload: bytes):
    req = urllib.request.Request(server.url + ROUTE, data=payload, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


GOOD = points_json([{"positive": [[28, 32]]}])


@pytest.mark.parametrize("request_body, field, reason", [
    ([], "body", "must be a JSON object"),
    ({"sam_model": TINY_SAM_PTH, "points": GOOD}, "image", "must be {"),
    (body(GOOD, type_="models"), "image.type", "must be one of input, temp, output"),
    (body(GOOD, filename="../motionkit_secret.png"), "image.filename", "path separator"),
    (body(GOOD, filename=".."), "image.filename", "no '..'"),
    (body(GOOD, filename="/etc/passwd"), "image.filename", "path separator"),
    (body(GOOD, filename="..\\motionkit_secret.png"), "image.filename", "path separator"),
    (body(GOOD, filename="motionkit_secret.png", subfolder=".."), "image.subfolder", "no '..'"),
    (body(GOOD, filename="motionkit_secret.png", subfolder="a/../../"), "image.subfolder", "no '..'"),
    (body(GOOD, filename="passwd", subfolder="/etc"), "image.subfolder", "no absolute path"),
    (body(GOOD, filename="x" * 300 + ".png"), "image.filename", "longer than 255"),
    (body(GOOD, filename=7), "image.filename", "must be a string"),
    (body(GOOD, filename="no_such_image.png"), "image", "no file 'no_such_image.png' in the input folder"),
    (body(GOOD, filename="motionkit_not_an_image.png"), "image", "is not an image"),
    (body(GOOD, filename="motionkit_huge.png"), "image", "more than 67108864 pixels"),
    (body(GOOD, model="no_such_sam.pth"), "sam_model", "not in the sams model folders"),
    (body(GOOD, model="../checkpoints/motionkit_tiny_svd.safetensors"), "sam_model", "not in the sams model folders"),
    (body(GOOD, model=None), "sam_model", "must be the file name"),
    (body(GOOD, model="motionkit_route_not_sam.safetensors"), "sam_model", "is not a SAM ViT checkpoint"),
    (body(None), "points", "must be the points JSON"),
    (body("{oops"), "points", "not valid JSON"),
    (body(points_json([{"positive": [[96, 10]]}])), "points", "outside the 96x64 image"),
    (body(points_json([{"positive": [], "negative": [[9, 9]]}])), "points", "has no positive point"),
    (body(points_json([{"positive": [[9, 9]]}], width=64, height=64)), "points", "placed on a 64x64 image"),
    (body(json.dumps({"version": 3, "width": 96, "height": 64, "objects": []})), "points",
     "unknown points format version 3"),
    (body(points_json([{"positive": [[1, 1]]}] * 40)), "points", "40 objects"),
    (body("[" + ",".join(['{"x":1,"y":1}'] * 16000) + "]"), "points", "longer than"),
])
def test_bad_requests_get_400_with_a_reason(request_body, field, reason, sam_server, base_dir):
    from safetensors.torch import save_file

    (base_dir / "motionkit_secret.png").write_bytes((base_dir / "input" / SAM_TEST_IMAGE).read_bytes())
    (base_dir / "input" / "motionkit_not_an_image.png").write_text("not a png")
    huge = base_dir / "input" / "motionkit_huge.png"
    if not huge.exists():
        Image.new("L", (9000, 9000)).save(huge)  # 81 Mpixel, a few kB: refused from the header alone
    save_file({"x": torch.zeros(2)}, str(base_dir / "models" / "sams" / "motionkit_route_not_sam.safetensors"))
    status, out = sam_server.post(ROUTE, request_body)
    assert status == 400, out
    assert out["field"] == field and reason in out["error"], out


def test_malformed_and_oversized_bodies_get_400(sam_server):
    status, out = raw_post(sam_server, b"{not json")
    assert status == 400 and out["field"] == "body" and "not JSON" in out["error"]
    status, out = raw_post(sam_server, b'{"points": "' + b"x" * (600 * 1024) + b'"}')
    assert status == 400 and out["field"] == "body" and "larger than" in out["error"]


def test_a_body_that_arrives_in_pieces_is_read_whole(sam_server):
    """aiohttp hands over whatever bytes have arrived; the route must wait for the rest of the body.
    The body is sent in two TCP writes with a pause between, as a slow or busy network delivers it."""
    import socket
    import time
    from urllib.parse import urlsplit

    payload = json.dumps(body(points_json([{"positive": [[28, 32]]}]))).encode()
    payload = payload[:-1] + b" " * 200_000 + b"}"  # large enough to span many TCP segments
    url = urlsplit(sam_server.url)
    head = (f"POST {ROUTE} HTTP/1.1\r\nHost: {url.hostname}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection((url.hostname, url.port), timeout=60) as sock:
        sock.sendall(head + payload[:1000])
        time.sleep(0.5)
        sock.sendall(payload[1000:])
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    status_line, _, rest = reply.partition(b"\r\n")
    out = json.loads(rest.partition(b"\r\n\r\n")[2])
    assert b" 200 " in status_line, (status_line, out)
    assert len(out["masks"]) == 1


def test_no_request_reads_outside_the_image_folders(sam_server, base_dir):
    """A real image one level above input/ cannot be reached by any spelling; the same file inside
    input/ can (so the refusals are about the path, not the file)."""
    secret = base_dir / "motionkit_secret.png"
    secret.write_bytes((base_dir / "input" / SAM_TEST_IMAGE).read_bytes())
    spellings = [("../motionkit_secret.png", ""), ("motionkit_secret.png", ".."), ("motionkit_secret.png", "../"),
                 ("motionkit_secret.png", "./.."), ("motionkit_secret.png", str(base_dir)),
                 ("motionkit_secret.png", "input/../.."), ("..%2Fmotionkit_secret.png", "")]
    for filename, subfolder in spellings:
        for kind in ("input", "temp", "output"):
            status, out = sam_server.post(ROUTE, body(GOOD, filename=filename, subfolder=subfolder, type_=kind))
            assert status == 400, (filename, subfolder, kind, out)
    (base_dir / "input" / "motionkit_secret.png").write_bytes(secret.read_bytes())
    status, out = sam_server.post(ROUTE, body(GOOD, filename="motionkit_secret.png"))
    assert status == 200, out
