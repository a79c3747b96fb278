"""The point editor's live mask route: ``POST /motionkit/sam/preview`` runs SAM's prompt encoder and mask
decoder on the cached image embedding (computing it once if missing), without queueing the graph.

Request (JSON)::

    {"image": {"filename": "photo.png", "subfolder": "", "type": "input"},   # input | temp | output
     "sam_model": "sam_vit_b_01ec64.pth",                                    # a file in models/sams
     "points": "<the node's points JSON text>"}                              # or the decoded JSON

Answer 200::

    {"version": 1, "width": W, "height": H, "embedding": "cached" | "computed", "masks_reused": n,
     "masks": [{"png": "<base64 1-bit PNG, W x H>", "score": iou, "area": pixels, "candidates": 3 | 1}],
     "timing_ms": {"load_model": .., "embedding": .., "decoder": .., "total": ..}}

Every field is validated and sized; a bad request gets 400 ``{"error": reason, "field": name}``. Images are
only read from ComfyUI's input, temp and output folders, by name: no absolute paths, no ``..``.
"""
from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import os
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import folder_paths

from ..modules.sam import MAX_POINTS_CHARS, PointsError, image_digest, parse_points
from ._sam import SAMS, CheckpointError, load_sam_model, model_downloads, run_sam

log = logging.getLogger("MotionKit")

PREVIEW_ROUTE = "/motionkit/sam/preview"
MODELS_ROUTE = "/motionkit/sam/models"
IMAGE_TYPES = ("input", "temp", "output")
MAX_BODY_BYTES = 512 * 1024
MAX_NAME_CHARS = 255
MAX_IMAGE_BYTES = 64 * 1024 * 1024
MAX_IMAGE_PIXELS = 8192 * 8192

# One worker: SAM runs off the event loop (an embedding can take seconds), one request at a time.
_WORKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="motionkit-sam")


class BadRequest(ValueError):
    def __init__(self, field: str, reason: str):
        self.field, self.reason = field, reason
        super().__init__(f"{field}: {reason}")


def _name(value, field: str, allow_slash: bool) -> str:
    if not isinstance(value, str):
        raise BadRequest(field, f"must be a string, got {type(value).__name__}.")
    if len(value) > MAX_NAME_CHARS:
        raise BadRequest(field, f"is longer than {MAX_NAME_CHARS} characters.")
    if "\x00" in value or "\\" in value or (not allow_slash and "/" in value):
        raise BadRequest(field, "contains a path separator or a NUL character.")
    parts = [p for p in value.split("/") if p]
    if value.startswith("/") or any(p in (".", "..") for p in parts) or (parts and ":" in parts[0]):
        raise BadRequest(field, "must be a plain name inside the folder (no absolute path, no '..').")
    return "/".join(parts)


def resolve_image(spec) -> str:
    """The file an ``{"filename", "subfolder", "type"}`` spec names inside input/, temp/ or output/."""
    if not isinstance(spec, dict):
        raise BadRequest("image", 'must be {"filename": .., "subfolder": .., "type": "input"|"temp"|"output"}.')
    kind = spec.get("type", "input")
    if kind not in IMAGE_TYPES:
        raise BadRequest("image.type", f"must be one of {', '.join(IMAGE_TYPES)}.")
    filename = _name(spec.get("filename"), "image.filename", allow_slash=False)
    if not filename:
        raise BadRequest("image.filename", "is empty.")
    subfolder = _name(spec.get("subfolder", "") or "", "image.subfolder", allow_slash=True)
    base = os.path.abspath(folder_paths.get_directory_by_type(kind))
    path = os.path.abspath(os.path.join(base, subfolder, filename))
    if os.path.commonpath([base, path]) != base:  # belt and braces after the name checks
        raise BadRequest("image", "resolves outside the folder.")
    if not os.path.isfile(path):
        raise BadRequest("image", f"no file '{os.path.join(subfolder, filename)}' in the {kind} folder.")
    if os.path.getsize(path) > MAX_IMAGE_BYTES:
        raise BadRequest("image", f"the file is larger than {MAX_IMAGE_BYTES // 2**20} MiB.")
    return path


def load_image_uint8(path: str) -> np.ndarray:
    """First frame as uint8 RGB, decoded the way core LoadImage decodes it (EXIF rotation, 'I' mode)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            if img.size[0] * img.size[1] > MAX_IMAGE_PIXELS:
                raise BadRequest("image", f"{img.size[0]}x{img.size[1]} is more than {MAX_IMAGE_PIXELS} pixels.")
            img.seek(0)
            frame = ImageOps.exif_transpose(img)
            if frame.mode == "I":
                frame = frame.point(lambda v: v * (1 / 255))
            return np.array(frame.convert("RGB"))
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
        raise BadRequest("image", f"is not an image that can be read ({type(e).__name__}).") from None


_IMAGE_IDS: OrderedDict = OrderedDict()  # (path, size, mtime_ns) -> (content digest, width, height)
_IMAGE_IDS_MAX = 64


def _image_identity(path: str) -> tuple:
    """``(digest, width, height, pixels)`` of an image file. Files seen before (same path, size and
    modification time) are not decoded again: on a click whose embedding is cached, the pixels are never
    needed, and ``pixels()`` decodes the file only if they are."""
    stat = os.stat(path)
    file_key = (path, stat.st_size, stat.st_mtime_ns)
    known = _IMAGE_IDS.get(file_key)
    if known is not None:
        _IMAGE_IDS.move_to_end(file_key)
        return (*known, lambda: load_image_uint8(path))
    image = load_image_uint8(path)
    known = (image_digest(image), image.shape[1], image.shape[0])
    _IMAGE_IDS[file_key] = known
    while len(_IMAGE_IDS) > _IMAGE_IDS_MAX:
        _IMAGE_IDS.popitem(last=False)
    return (*known, lambda: image)


def mask_png_base64(mask: np.ndarray) -> str:
    """A bool (H, W) mask as a 1-bit PNG, base64."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(mask, dtype=bool)).save(buf, format="PNG", optimize=False)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def preview(body, load_model: bool = True) -> dict:
    """Validate a preview request and compute its masks (runs in the worker thread)."""
    t0 = time.perf_counter()
    if not isinstance(body, dict):
        raise BadRequest("body", "must be a JSON object.")
    path = resolve_image(body.get("image"))
    name = body.get("sam_model")
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_CHARS:
        raise BadRequest("sam_model", "must be the file name of a SAM checkpoint in models/sams.")
    if name not in folder_paths.get_filename_list(SAMS):
        raise BadRequest("sam_model", f"'{name}' is not in the sams model folders.")
    points = body.get("points")
    if not isinstance(points, (str, dict, list)):
        raise BadRequest("points", "must be the points JSON (text or object).")
    if isinstance(points, str) and len(points) > MAX_POINTS_CHARS:
        raise BadRequest("points", f"is longer than {MAX_POINTS_CHARS} characters.")
    digest, width, height, pixels = _image_identity(path)
    try:
        prompts = parse_points(points, (width, height))
    except PointsError as e:
        raise BadRequest("points", f"{e.problem} {e.fix}") from None
    try:
        model = load_sam_model(name)
    except CheckpointError as e:
        raise BadRequest("sam_model", f"{e.problem} {e.fix}") from None
    run = run_sam(model, digest, pixels, prompts, load_model=load_model)
    masks = [m.mask.numpy() for m in run.masks]
    return {
        "version": 1, "width": width, "height": height,
        "embedding": "cached" if run.embedding_cached else "computed", "masks_reused": run.masks_reused,
        "masks": [{"png": mask_png_base64(m), "score": r.score, "area": int(m.sum()), "candidates": r.candidates}
                  for m, r in zip(masks, run.masks)],
        "timing_ms": {"load_model": round(run.load_ms, 2), "embedding": round(run.embedding_ms, 2),
                      "decoder": round(run.decoder_ms, 2),
                      "total": round((time.perf_counter() - t0) * 1e3, 2)},
    }


def _queue_idle(server) -> bool:
    """Move SAM to the GPU through model management only when no prompt runs: loading models from this
    thread while the executor samples could evict the models it is using."""
    try:
        return server.prompt_queue.get_tasks_remaining() == 0
    except AttributeError:
        return True


async def _read_body(stream, limit: int):
    """The whole body, or None past ``limit`` bytes. ``StreamReader.read(n)`` returns whatever has
    arrived so far, so a body split over several TCP chunks must be read until EOF."""
    chunks, size = [], 0
    while True:
        chunk = await stream.read(limit + 1 - size)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return None


def register_routes() -> bool:
    """Add the routes to the running PromptServer (once, even if the pack is imported twice)."""
    try:
        from aiohttp import web
        from server import PromptServer
        server = PromptServer.instance
    except (ImportError, AttributeError):
        return False
    if getattr(server, "_motionkit_sam_routes", False):
        return False
    server._motionkit_sam_routes = True

    def bad(field: str, reason: str, status: int = 400):
        return web.json_response({"error": reason, "field": field}, status=status)

    @server.routes.post(PREVIEW_ROUTE)
    async def preview_handler(request):
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return bad("body", f"is larger than {MAX_BODY_BYTES} bytes.")
        raw = await _read_body(request.content, MAX_BODY_BYTES)
        if raw is None:
            return bad("body", f"is larger than {MAX_BODY_BYTES} bytes.")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return bad("body", "is not JSON.")
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(_WORKER, preview, body, _queue_idle(server))
        except BadRequest as e:
            return bad(e.field, e.reason)
        except Exception as e:  # a real failure: report it, keep the server up
            log.exception("MotionKit SAM preview failed")
            return bad("server", f"{type(e).__name__}: {e}", status=500)
        return web.json_response(result)

    @server.routes.get(MODELS_ROUTE)
    async def models_handler(request):
        return web.json_response({"version": 1, "folder": SAMS, "files": folder_paths.get_filename_list(SAMS),
                                  "downloads": model_downloads()})

    return True
