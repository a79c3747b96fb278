"""Click to mask with Segment Anything (SAM ViT-B/L/H), as plain torch/numpy around the ``segment-anything``
package's own modeling code.

Follow-Your-Click gets its object mask from SAM clicks (Inpaint-Anything's ``sam_segment``); MotionKit does
the same inside ComfyUI. What lives here:

* **Config inference.** The ViT width, depth, heads, windowed and global blocks, window size, image and patch
  size, and the prompt-encoder / mask-decoder sizes are read from the checkpoint's tensor shapes, so the
  official ``sam_vit_{b,l,h}`` files and any SAM ViT of the same architecture (the tiny test one) load.
  Only the decoder's head count is not visible in shapes; every SAM v1 checkpoint uses 8.
* **Prompts.** MotionKit's versioned points JSON (and KJNodes Points Editor strings) parsed and validated
  against the image size, with errors that say what to fix; core SAM3's prompt formats (coordinate strings,
  ``BOUNDING_BOX``) read and written.
* **Prediction.** Exactly ``SamPredictor``'s arithmetic, split so that the image embedding is computed once
  (``compute_embedding``) and each click only runs the prompt encoder and mask decoder (``predict_object``).
  Mask rule: one point and no box asks for three masks and keeps the highest predicted IoU (SAM's advice for
  ambiguous prompts); anything else asks for one mask.
* **Caches** (LRU): the image embedding per model identity and image content hash, and each object's
  mask per prompt; and the mask overlay drawing.

Nothing here imports ComfyUI.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import partial
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer
from segment_anything.utils.transforms import ResizeLongestSide

# SAM's image normalisation (non-persistent buffers: never in a checkpoint).
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)
# The mask decoder's attention head count cannot be read from weight shapes; all SAM v1 models use 8.
DECODER_HEADS = 8
# SAM's ViT LayerNorms use eps 1e-6 (``build_sam._build_sam``); not stored in checkpoints either.
ENCODER_NORM_EPS = 1e-6

OFFICIAL_CHECKPOINTS = {
    "sam_vit_b_01ec64.pth": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
    "sam_vit_l_0b3195.pth": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
    "sam_vit_h_4b8939.pth": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
}
_VARIANTS = {(768, 12): "vit_b", (1024, 24): "vit_l", (1280, 32): "vit_h"}

PATCH_KEY = "image_encoder.patch_embed.proj.weight"


class NotSamCheckpoint(ValueError):
    """The file is not a SAM ViT checkpoint (or not one this architecture can load)."""


# --- checkpoint -> config ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SamConfig:
    img_size: int
    patch_size: int
    in_chans: int
    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float
    qkv_bias: bool
    use_abs_pos: bool
    window_size: int
    global_attn_indexes: tuple
    prompt_embed_dim: int
    mask_in_chans: int
    decoder_depth: int
    decoder_mlp_dim: int
    decoder_downsample_rate: int
    num_multimask_outputs: int
    iou_head_depth: int
    iou_head_hidden_dim: int

    @property
    def grid(self) -> int:
        """Side of the image embedding in tokens (64 for the official models)."""
        return self.img_size // self.patch_size

    @property
    def variant(self) -> str:
        return _VARIANTS.get((self.embed_dim, self.depth), f"vit_{self.embed_dim}x{self.depth}")


def _count(sd: dict, prefix: str) -> int:
    """Number of consecutive ``prefix{i}.`` entries (blocks, layers)."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    found = {int(m.group(1)) for k in sd for m in [pattern.match(k)] if m}
    n = 0
    while n in found:
        n += 1
    return n


def _shape(sd: dict, key: str) -> tuple:
    if key not in sd:
        raise NotSamCheckpoint(f"missing tensor '{key}'")
    return tuple(sd[key].shape)


def strip_prefix(sd: dict) -> dict:
    """Drop a wrapper prefix (``model.``, ``sam.``...) in front of SAM's own key names."""
    anchor = next((k for k in sd if isinstance(k, str) and k.endswith(PATCH_KEY)), None)
    if anchor is None:
        raise NotSamCheckpoint(f"no '{PATCH_KEY}' tensor (SAM ViT image encoder)")
    prefix = anchor[: -len(PATCH_KEY)]
    if not prefix:
        return sd
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def infer_sam_config(sd: dict) -> SamConfig:
    """Read a SAM ViT configuration from tensor shapes alone (``sd`` has SAM's own key names)."""
    embed_dim, in_chans, patch, patch_w = _shape(sd, PATCH_KEY)
    if patch != patch_w:
        raise NotSamCheckpoint(f"non-square patch embedding {patch}x{patch_w}")
    depth = _count(sd, "image_encoder.blocks.")
    if depth == 0:
        raise NotSamCheckpoint("no image_encoder.blocks")
    use_abs_pos = "image_encoder.pos_embed" in sd
    if not use_abs_pos:
        raise NotSamCheckpoint("no image_encoder.pos_embed (SAM's ViT has an absolute position embedding)")
    _, grid_h, grid_w, _ = _shape(sd, "image_encoder.pos_embed")
    if grid_h != grid_w:
        raise NotSamCheckpoint(f"non-square position embedding {grid_h}x{grid_w}")
    grid = grid_h
    # Relative-position tables hold 2*size-1 rows of head_dim: global blocks span the whole grid,
    # windowed blocks one window. (A window as large as the grid is the same computation as global
    # attention: one window, no padding, same table, so either reading builds an identical model.)
    head_dim = None
    global_idx, windows = [], set()
    for i in range(depth):
        rows, hd = _shape(sd, f"image_encoder.blocks.{i}.attn.rel_pos_h")
        if head_dim is None:
            head_dim = hd
        elif hd != head_dim:
            raise NotSamCheckpoint(f"block {i} has head dim {hd}, block 0 has {head_dim}")
        size = (rows + 1) // 2
        if rows != 2 * size - 1:
            raise NotSamCheckpoint(f"block {i}: relative position table of even length {rows}")
        if size == grid:
            global_idx.append(i)
        else:
            windows.add(size)
    if len(windows) > 1:
        raise NotSamCheckpoint(f"windowed blocks use different window sizes {sorted(windows)}")
    if embed_dim % head_dim:
        raise NotSamCheckpoint(f"embed dim {embed_dim} is not a multiple of head dim {head_dim}")
    mlp_dim = _shape(sd, "image_encoder.blocks.0.mlp.lin1.weight")[0]
    mlp_ratio = mlp_dim / embed_dim
    if int(embed_dim * mlp_ratio) != mlp_dim:  # Block builds int(dim * ratio): guard float rounding
        mlp_ratio = (mlp_dim + 0.5) / embed_dim
    out_chans = _shape(sd, "image_encoder.neck.0.weight")[0]

    prompt_dim = _shape(sd, "prompt_encoder.point_embeddings.0.weight")[1]
    if prompt_dim != out_chans:
        raise NotSamCheckpoint(f"prompt embedding width {prompt_dim} != image embedding width {out_chans}")
    mask_in_chans = _shape(sd, "prompt_encoder.mask_downscaling.3.weight")[0]
    transformer_dim = _shape(sd, "mask_decoder.iou_token.weight")[1]
    if transformer_dim != prompt_dim:
        raise NotSamCheckpoint(f"mask decoder width {transformer_dim} != prompt width {prompt_dim}")
    internal = _shape(sd, "mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight")[0]
    if transformer_dim % internal:
        raise NotSamCheckpoint(f"decoder cross-attention width {internal} does not divide {transformer_dim}")
    return SamConfig(
        img_size=grid * patch, patch_size=patch, in_chans=in_chans, embed_dim=embed_dim, depth=depth,
        num_heads=embed_dim // head_dim, mlp_ratio=mlp_ratio,
        qkv_bias="image_encoder.blocks.0.attn.qkv.bias" in sd, use_abs_pos=use_abs_pos,
        window_size=windows.pop() if windows else 0, global_attn_indexes=tuple(global_idx),
        prompt_embed_dim=prompt_dim, mask_in_chans=mask_in_chans,
        decoder_depth=_count(sd, "mask_decoder.transformer.layers."),
        decoder_mlp_dim=_shape(sd, "mask_decoder.transformer.layers.0.mlp.lin1.weight")[0],
        decoder_downsample_rate=transformer_dim // internal,
        num_multimask_outputs=_shape(sd, "mask_decoder.mask_tokens.weight")[0] - 1,
        iou_head_depth=_count(sd, "mask_decoder.iou_prediction_head.layers."),
        iou_head_hidden_dim=_shape(sd, "mask_decoder.iou_prediction_head.layers.0.weight")[0],
    )


def build_sam(config: SamConfig) -> Sam:
    """segment-anything's ``Sam`` for ``config`` (as ``build_sam._build_sam`` builds it, sizes from config)."""
    return Sam(
        image_encoder=ImageEncoderViT(
            depth=config.depth, embed_dim=config.embed_dim, img_size=config.img_size, mlp_ratio=config.mlp_ratio,
            norm_layer=partial(torch.nn.LayerNorm, eps=ENCODER_NORM_EPS), num_heads=config.num_heads,
            patch_size=config.patch_size, in_chans=config.in_chans, qkv_bias=config.qkv_bias,
            use_abs_pos=config.use_abs_pos, use_rel_pos=True, global_attn_indexes=config.global_attn_indexes,
            window_size=config.window_size, out_chans=config.prompt_embed_dim),
        prompt_encoder=PromptEncoder(
            embed_dim=config.prompt_embed_dim, image_embedding_size=(config.grid, config.grid),
            input_image_size=(config.img_size, config.img_size), mask_in_chans=config.mask_in_chans),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=config.num_multimask_outputs,
            transformer=TwoWayTransformer(
                depth=config.decoder_depth, embedding_dim=config.prompt_embed_dim, mlp_dim=config.decoder_mlp_dim,
                num_heads=DECODER_HEADS, attention_downsample_rate=config.decoder_downsample_rate),
            transformer_dim=config.prompt_embed_dim, iou_head_depth=config.iou_head_depth,
            iou_head_hidden_dim=config.iou_head_hidden_dim),
        pixel_mean=list(PIXEL_MEAN), pixel_std=list(PIXEL_STD),
    )


def sam_from_state_dict(sd: dict) -> tuple[Sam, SamConfig]:
    """Build the SAM that ``sd`` describes and load it (strictly), in float32, on the CPU."""
    sd = strip_prefix(sd)
    config = infer_sam_config(sd)
    sd = {k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()}
    # Built on the meta device, then the checkpoint tensors are assigned: no random init of 600M params.
    with torch.device("meta"):
        sam = build_sam(config)
    try:
        sam.load_state_dict(sd, strict=True, assign=True)
    except RuntimeError as e:
        raise NotSamCheckpoint(f"tensors do not match SAM {config.variant}: {str(e).splitlines()[-1][:300]}") from e
    # Non-persistent buffers are not in the file.
    sam.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(-1, 1, 1), False)
    sam.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(-1, 1, 1), False)
    left = [n for n, t in [*sam.named_parameters(), *sam.named_buffers()] if t.is_meta]
    if left:
        raise NotSamCheckpoint(f"no values for {left[:3]}")
    return sam.eval(), config


def load_state_dict_file(path: str) -> dict:
    """Tensors of a ``.safetensors`` or a pickled ``.pth`` file, loaded safely (no code execution)."""
    if path.lower().endswith((".safetensors", ".sft")):
        from safetensors.torch import load_file
        return load_file(path, device="cpu")
    sd = torch.load(path, map_location="cpu", weights_only=True)
    # Some repackagings wrap the state dict once.
    for key in ("model", "state_dict"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict) and PATCH_KEY not in sd:
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise NotSamCheckpoint("the file holds no plain dict of tensors")
    return sd


def embedding_memory_bytes(config: SamConfig, bytes_per_value: int = 4) -> int:
    """Rough peak activation memory of one image embedding: a global block's attention matrix (and its
    softmax copy and relative-position terms) dominates; used to ask ComfyUI for room before encoding."""
    tokens = config.grid * config.grid
    attention = config.num_heads * tokens * tokens * 3
    activations = tokens * config.embed_dim * 16
    return (attention + activations) * bytes_per_value


# --- prompts ----------------------------------------------------------------------------------------------

POINTS_FORMAT = ('{"version":1,"width":W,"height":H,"objects":[{"positive":[[x,y],...],'
                 '"negative":[[x,y],...],"box":[x0,y0,x1,y1] or null}]}')
MAX_POINTS_CHARS = 200_000
MAX_OBJECTS = 32
MAX_POINTS_PER_OBJECT = 64


class PointsError(ValueError):
    """A bad ``points`` value (or of the linked input ``input_name``): ``problem`` says what is wrong, ``fix``
    what to do."""

    def __init__(self, problem: str, fix: str, input_name: str = "points"):
        self.problem, self.fix, self.input_name = problem, fix, input_name
        super().__init__(f"{problem} Fix: {fix}")


@dataclass(frozen=True)
class ObjectPrompt:
    positive: tuple = ()
    negative: tuple = ()
    box: Optional[tuple] = None

    @property
    def multimask(self) -> bool:
        """One click is ambiguous (part, object, group): ask for three masks and keep the best."""
        return len(self.positive) + len(self.negative) == 1 and self.box is None


@dataclass(frozen=True)
class Prompts:
    objects: tuple
    width: Optional[int] = None   # None for KJNodes strings, which carry no image size
    height: Optional[int] = None
    source: str = "motionkit"


def _number(v, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise PointsError(f"{where} is {json.dumps(v)[:40]}, not a finite number.",
                          "write pixel coordinates as plain numbers.")
    return float(v)


def _point(v, where: str) -> tuple:
    if not isinstance(v, (list, tuple)) or len(v) != 2:
        raise PointsError(f"{where} is {json.dumps(v)[:60]}, not an [x, y] pair.", f"use the format {POINTS_FORMAT}.")
    return _number(v[0], f"{where}[0] (x)"), _number(v[1], f"{where}[1] (y)")


def _points(v, where: str) -> tuple:
    if v is None:
        return ()
    if not isinstance(v, list):
        raise PointsError(f"{where} is not a list of [x, y] pairs.", f"use the format {POINTS_FORMAT}.")
    return tuple(_point(p, f"{where}[{i}]") for i, p in enumerate(v))


def _size(v, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise PointsError(f"'{name}' is {json.dumps(v)[:40]}, not a positive integer.",
                          "set width and height to the pixel size of the image the points were placed on.")
    return v


def _decode(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as first:
        try:  # KJNodes tools accept single quotes too
            return json.loads(text.replace("'", '"'))
        except json.JSONDecodeError:
            raise PointsError(f"the points are not valid JSON ({first.msg} at line {first.lineno}, "
                              f"column {first.colno}).", f"use the format {POINTS_FORMAT}.") from None


def _kjnodes_object(data: list) -> ObjectPrompt:
    """A KJNodes Points Editor coordinate string: one object of positive points."""
    pts = []
    for i, p in enumerate(data):
        if not isinstance(p, dict) or "x" not in p or "y" not in p:
            raise PointsError(f"item {i} of the coordinate list is {json.dumps(p)[:60]}, not {{\"x\":..,\"y\":..}}.",
                              "pass a KJNodes Points Editor coordinate string ([{\"x\":10,\"y\":20},...]) "
                              f"or MotionKit's format {POINTS_FORMAT}.")
        pts.append((_number(p["x"], f"item {i} x"), _number(p["y"], f"item {i} y")))
    return ObjectPrompt(positive=tuple(pts))


def _motionkit_objects(data: dict) -> tuple:
    if "version" not in data:
        raise PointsError("the points JSON has no 'version'.", f"add \"version\": 1 ({POINTS_FORMAT}).")
    if isinstance(data["version"], bool) or data["version"] != 1:
        raise PointsError(f"unknown points format version {json.dumps(data['version'])[:20]}; this MotionKit "
                          "reads version 1.", "update MotionKit, or write version 1 JSON.")
    objects = data.get("objects")
    if not isinstance(objects, list):
        raise PointsError("'objects' is missing or not a list.", f"use the format {POINTS_FORMAT}.")
    out = []
    for i, obj in enumerate(objects):
        where = f"object {i + 1}"
        if not isinstance(obj, dict):
            raise PointsError(f"{where} is not an object.", f"use the format {POINTS_FORMAT}.")
        if "positive" not in obj:
            raise PointsError(f"{where} has no 'positive' list.", f"use the format {POINTS_FORMAT}.")
        box = obj.get("box")
        if box is not None:
            if not isinstance(box, list) or len(box) != 4:
                raise PointsError(f"{where} box is {json.dumps(box)[:60]}, not [x0, y0, x1, y1] or null.",
                                  f"use the format {POINTS_FORMAT}.")
            box = tuple(_number(b, f"{where} box[{j}]") for j, b in enumerate(box))
        out.append(ObjectPrompt(_points(obj["positive"], f"{where} positive"),
                                _points(obj.get("negative"), f"{where} negative"), box))
    return tuple(out)


def _check_object(obj: ObjectPrompt, i: int, width: int, height: int) -> None:
    where = f"object {i + 1}"
    if not obj.positive and obj.box is None:
        raise PointsError(f"{where} has no positive point (and no box); negative points alone select nothing.",
                          "left-click on the object to add a positive point, or delete the object.")
    if len(obj.positive) + len(obj.negative) > MAX_POINTS_PER_OBJECT:
        raise PointsError(f"{where} has {len(obj.positive) + len(obj.negative)} points; at most "
                          f"{MAX_POINTS_PER_OBJECT} are accepted.", "use fewer points per object.")
    for kind, pts in (("positive", obj.positive), ("negative", obj.negative)):
        for j, (x, y) in enumerate(pts):
            if not (0 <= x < width and 0 <= y < height):
                raise PointsError(f"{where} {kind} point {j + 1} ({x:g}, {y:g}) is outside the {width}x{height} "
                                  "image.", f"place points inside the image: 0 <= x < {width}, 0 <= y < {height}.")
    if obj.box is not None:
        x0, y0, x1, y1 = obj.box
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise PointsError(f"{where} box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) is empty or outside the "
                              f"{width}x{height} image.", f"use 0 <= x0 < x1 <= {width} and 0 <= y0 < y1 <= {height}.")


def parse_points(points, image_size: Optional[tuple] = None, allow_empty: bool = False) -> Prompts:
    """Parse and validate ``points`` (JSON text, or the decoded JSON) for an image of ``(width, height)``.

    Accepts MotionKit's version-1 JSON and a KJNodes Points Editor coordinate list (one object of positive
    points). Every object needs a positive point or a box; every point must lie on the image; MotionKit
    JSON must have been made on an image of exactly this size. With ``allow_empty`` (objects come from
    elsewhere too) no points, or no objects, give no objects instead of an error.
    """
    if isinstance(points, str):
        text = points.strip()
        if not text and allow_empty:
            return Prompts(())
        if not text:
            raise PointsError("there are no points yet.",
                              "click on the image in the node (left: object, right: background).")
        if len(text) > MAX_POINTS_CHARS:
            raise PointsError(f"the points text is {len(text)} characters long (limit {MAX_POINTS_CHARS}).",
                              "use fewer points.")
        data = _decode(text)
    else:
        data = points
    if isinstance(data, list):
        if not data:
            raise PointsError("the coordinate list is empty.", "add at least one point.")
        prompts = Prompts((_kjnodes_object(data),), source="kjnodes")
    elif isinstance(data, dict):
        prompts = Prompts(_motionkit_objects(data), _size(data.get("width"), "width"),
                          _size(data.get("height"), "height"))
    else:
        raise PointsError(f"the points are a JSON {type(data).__name__}, not an object or a list.",
                          f"use the format {POINTS_FORMAT}.")
    if not prompts.objects and allow_empty:
        return Prompts((), prompts.width, prompts.height, prompts.source)
    if not prompts.objects:
        raise PointsError("there are no objects.", "click on the image in the node to add a point.")
    if len(prompts.objects) > MAX_OBJECTS:
        raise PointsError(f"{len(prompts.objects)} objects; at most {MAX_OBJECTS} are accepted.", "use fewer objects.")
    if image_size is not None:
        width, height = image_size
        if prompts.width is not None and (prompts.width, prompts.height) != (width, height):
            raise PointsError(f"the points were placed on a {prompts.width}x{prompts.height} image, but the image "
                              f"is {width}x{height}.", "open the node's editor on this image and place the points "
                              "again (or connect the image the points were made for).")
        if prompts.source == "kjnodes":
            _reject_normalized(prompts.objects[0], width, height)
        for i, obj in enumerate(prompts.objects):
            _check_object(obj, i, width, height)
    return prompts


def _reject_normalized(obj: ObjectPrompt, width: int, height: int, input_name: str = "points") -> None:
    """KJNodes can emit 0..1 coordinates ('normalize'); read as pixels they would silently hit the corner."""
    coords = [c for p in (*obj.positive, *obj.negative) for c in p]
    if max(width, height) > 2 and coords and all(0 <= c <= 1 for c in coords) and any(c != int(c) for c in coords):
        raise PointsError("the coordinates all lie in 0..1, so they look normalized, but pixels are expected.",
                          "turn off 'normalize' in the KJNodes Points Editor.", input_name)


# --- core SAM3 formats: coordinate strings and BOUNDING_BOX ------------------------------------------------
#
# Core ``SAM3_Detect`` (ComfyUI >= 0.2x) takes ``positive_coords`` / ``negative_coords``, JSON strings
# ``[{"x": x, "y": y}, ...]`` in pixels of the image (the KJNodes Points Editor format), which it reads as
# the prompt of ONE object, and ``bboxes`` of type ``BOUNDING_BOX``: ``{"x", "y", "width", "height"}`` in
# pixels (x, y the top-left corner), a list of them (the same boxes for every frame) or a list per frame;
# each box is segmented separately. Its own ``bboxes`` output is a list per frame.

COORDS_FORMAT = '[{"x": x, "y": y}, ...] (pixels)'
BOX_FORMAT = '{"x", "y", "width", "height"} (pixels, x/y the top-left corner), or a list of them'


def parse_coords(value, input_name: str) -> tuple:
    """``((x, y), ...)`` from a KJNodes / core SAM3 coordinate string; ``None``, ``""`` and ``"[]"`` give none."""
    if value is None:
        return ()
    if not isinstance(value, str):
        raise PointsError(f"expected a STRING, got {type(value).__name__}.",
                          f"connect a coordinate string {COORDS_FORMAT}.", input_name)
    text = value.strip()
    if not text:
        return ()
    try:
        data = _decode(text)
    except PointsError as e:
        raise PointsError(e.problem, f"connect a coordinate string {COORDS_FORMAT}.", input_name) from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise PointsError(f"the coordinates are a JSON {type(data).__name__}, not a list.",
                          f"connect a coordinate string {COORDS_FORMAT}.", input_name)
    out = []
    for i, p in enumerate(data):
        if not isinstance(p, dict) or "x" not in p or "y" not in p:
            raise PointsError(f"item {i} is {json.dumps(p)[:60]}, not {{\"x\": .., \"y\": ..}}.",
                              f"connect a coordinate string {COORDS_FORMAT}.", input_name)
        try:
            out.append((_number(p["x"], f"item {i} x"), _number(p["y"], f"item {i} y")))
        except PointsError as e:
            raise PointsError(e.problem, e.fix, input_name) from None
    return tuple(out)


def parse_boxes(value, width: int, height: int, input_name: str = "bboxes") -> tuple:
    """``((x0, y0, x1, y1), ...)`` from a core ``BOUNDING_BOX`` value (a dict, a list of dicts, or a list per
    frame, of which frame 0's is used), clipped to the ``width x height`` image."""
    if value is None:
        return ()
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise PointsError(f"expected a BOUNDING_BOX ({BOX_FORMAT}), got {type(value).__name__}.",
                          "connect a BOUNDING_BOX output (e.g. core SAM3 Detect, RT-DETR, Bounding Box).", input_name)
    if value and isinstance(value[0], (list, tuple)):   # one list per frame: the first frame is segmented
        value = value[0]
    boxes = []
    for i, d in enumerate(value):
        if not isinstance(d, dict) or not all(k in d for k in ("x", "y", "width", "height")):
            raise PointsError(f"box {i} is {str(d)[:60]}, not {BOX_FORMAT}.",
                              "connect a BOUNDING_BOX output (e.g. core SAM3 Detect, RT-DETR, Bounding Box).",
                              input_name)
        try:
            x, y, w, h = (_number(d[k], f"box {i} {k}") for k in ("x", "y", "width", "height"))
        except PointsError as e:
            raise PointsError(e.problem, e.fix, input_name) from None
        x0, y0, x1, y1 = max(x, 0.0), max(y, 0.0), min(x + w, float(width)), min(y + h, float(height))
        if not (w > 0 and h > 0 and x0 < x1 and y0 < y1):
            raise PointsError(f"box {i} (x {x:g}, y {y:g}, width {w:g}, height {h:g}) is empty or outside the "
                              f"{width}x{height} image.", "connect boxes of this image (width and height > 0).",
                              input_name)
        boxes.append((x0, y0, x1, y1))
    return tuple(boxes)


def linked_objects(positive_coords, negative_coords, bboxes, image_size: tuple) -> tuple:
    """The objects given by core SAM3's formats: all ``positive_coords`` and ``negative_coords`` together are
    one object (as ``SAM3_Detect`` reads them), then one object per box."""
    width, height = image_size
    positive = parse_coords(positive_coords, "positive_coords")
    negative = parse_coords(negative_coords, "negative_coords")
    objects = []
    if negative and not positive:
        raise PointsError("negative points alone select nothing.",
                          "link positive_coords too (the points of one object), or unlink negative_coords.",
                          "negative_coords")
    if positive:
        obj = ObjectPrompt(positive, negative)
        _reject_normalized(obj, width, height, "positive_coords")
        if len(positive) + len(negative) > MAX_POINTS_PER_OBJECT:
            raise PointsError(f"{len(positive) + len(negative)} linked points; at most {MAX_POINTS_PER_OBJECT} are "
                              "accepted for one object.", "link fewer points.", "positive_coords")
        for name, pts in (("positive_coords", positive), ("negative_coords", negative)):
            for j, (x, y) in enumerate(pts):
                if not (0 <= x < width and 0 <= y < height):
                    raise PointsError(f"point {j} ({x:g}, {y:g}) is outside the {width}x{height} image.",
                                      f"link points of this image: 0 <= x < {width}, 0 <= y < {height} (pixels).",
                                      name)
        objects.append(obj)
    objects.extend(ObjectPrompt(box=box) for box in parse_boxes(bboxes, width, height))
    return tuple(objects)


def coords_string(points: Sequence) -> str:
    """Points as the KJNodes / core SAM3 coordinate string (integral values written as integers)."""
    def num(v: float):
        v = round(float(v), 3)
        return int(v) if v.is_integer() else v
    return json.dumps([{"x": num(x), "y": num(y)} for x, y in points])


def object_box(mask: np.ndarray, obj: ObjectPrompt) -> dict:
    """A core ``BOUNDING_BOX`` dict (integer pixels) for one object: the bounding box of its mask, or where the
    mask is empty, of its prompt (its box, else its positive points, one pixel each)."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if len(rows):
        x0, y0, x1, y1 = cols[0], rows[0], cols[-1] + 1, rows[-1] + 1
    elif obj.box is not None:
        x0, y0 = math.floor(obj.box[0]), math.floor(obj.box[1])
        x1, y1 = math.ceil(obj.box[2]), math.ceil(obj.box[3])
    else:
        xs, ys = [p[0] for p in obj.positive], [p[1] for p in obj.positive]
        x0, y0, x1, y1 = math.floor(min(xs)), math.floor(min(ys)), math.floor(max(xs)) + 1, math.floor(max(ys)) + 1
    return {"x": int(x0), "y": int(y0), "width": int(x1 - x0), "height": int(y1 - y0)}


# --- prediction -------------------------------------------------------------------------------------------


def image_to_uint8(frame: torch.Tensor) -> np.ndarray:
    """A ComfyUI frame (H, W, 3) in 0..1 as SAM's uint8 RGB. Rounding (not truncation) returns the exact
    bytes LoadImage read, so the node, the preview route and ``SamPredictor`` see the same image."""
    return np.clip(np.round(frame.detach().float().cpu().numpy() * 255.0), 0, 255).astype(np.uint8)


def image_digest(image: np.ndarray) -> str:
    """Content hash of a uint8 image (shape included)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(repr(image.shape).encode())
    h.update(np.ascontiguousarray(image).tobytes())
    return h.hexdigest()


@dataclass
class ImageEmbedding:
    features: torch.Tensor     # (1, C, grid, grid), kept on the CPU
    original_size: tuple       # (H, W) of the image
    input_size: tuple          # (h, w) after ResizeLongestSide, before padding


@torch.inference_mode()
def compute_embedding(sam: Sam, image: np.ndarray) -> ImageEmbedding:
    """``SamPredictor.set_image``: resize the long side to the encoder size, normalise, pad, encode."""
    device = sam.pixel_mean.device
    resized = ResizeLongestSide(sam.image_encoder.img_size).apply_image(image)
    x = torch.as_tensor(resized, device=device).permute(2, 0, 1).contiguous()[None]
    features = sam.image_encoder(sam.preprocess(x))
    return ImageEmbedding(features.cpu(), tuple(image.shape[:2]), tuple(x.shape[-2:]))


@dataclass
class ObjectMask:
    mask: torch.Tensor         # (H, W) bool
    score: float               # predicted IoU of the kept mask
    candidates: int            # 3 (multimask) or 1


@torch.inference_mode()
def predict_object(sam: Sam, embedding: ImageEmbedding, obj: ObjectPrompt) -> ObjectMask:
    """``SamPredictor.predict`` for one object on a cached embedding: prompt encoder + mask decoder only."""
    device = sam.pixel_mean.device
    transform = ResizeLongestSide(sam.image_encoder.img_size)
    points = box = None
    coords = list(obj.positive) + list(obj.negative)
    if coords:
        xy = transform.apply_coords(np.asarray(coords, dtype=np.float64), embedding.original_size)
        labels = [1] * len(obj.positive) + [0] * len(obj.negative)
        points = (torch.as_tensor(xy, dtype=torch.float, device=device)[None],
                  torch.as_tensor(labels, dtype=torch.int, device=device)[None])
    if obj.box is not None:
        xyxy = transform.apply_boxes(np.asarray(obj.box, dtype=np.float64), embedding.original_size)
        box = torch.as_tensor(xyxy, dtype=torch.float, device=device)[None]
    sparse, dense = sam.prompt_encoder(points=points, boxes=box, masks=None)
    low_res, iou = sam.mask_decoder(
        image_embeddings=embedding.features.to(device), image_pe=sam.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=obj.multimask)
    # Pick the kept candidate before upscaling: interpolation treats channels independently, so the mask is
    # the same as SamPredictor's (which upscales all three), for a third of the upscaling work.
    best = int(torch.argmax(iou[0])) if obj.multimask else 0
    logits = sam.postprocess_masks(low_res[:, best:best + 1], embedding.input_size, embedding.original_size)
    return ObjectMask((logits[0, 0] > sam.mask_threshold).cpu(), float(iou[0, best]), low_res.shape[1])


class LRUCache:
    """A small thread-safe LRU: image embeddings keyed by ``(model key, image digest)``, object masks keyed
    by ``(model key, image digest, object prompt)``. ``misses`` counts the computations."""

    def __init__(self, max_entries: int = 8):
        self.max_entries = max_entries
        self._entries: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get_or_compute(self, key: tuple, compute: Callable[[], object]) -> tuple[object, bool]:
        """The cached embedding for ``key`` (``hit=True``), or ``compute()`` stored under it."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                self.hits += 1
                return self._entries[key], True
        embedding = compute()
        with self._lock:
            self.misses += 1
            self._entries[key] = embedding
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return embedding, False

    def __contains__(self, key) -> bool:
        return key in self._entries

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


# --- drawing ----------------------------------------------------------------------------------------------

# Object colours (RGB 0..1), shared with web/js/click_to_mask.js so the node preview and the editor agree.
PALETTE = (
    (0.12, 0.56, 1.00), (1.00, 0.27, 0.27), (0.20, 0.80, 0.30), (1.00, 0.75, 0.10),
    (0.70, 0.35, 1.00), (0.00, 0.85, 0.85), (1.00, 0.45, 0.75), (0.60, 0.45, 0.25),
)
OVERLAY_ALPHA = 0.5


def draw_masks(image: torch.Tensor, masks: torch.Tensor, alpha: float = OVERLAY_ALPHA,
               palette: Sequence = PALETTE) -> torch.Tensor:
    """Masks (N, H, W) drawn over an image (H, W, 3): object i blends its palette colour at ``alpha``,
    in object order, so a later object is drawn over an earlier one where they overlap."""
    out = image.float().clone()
    for i, mask in enumerate(masks):
        color = torch.tensor(palette[i % len(palette)], dtype=out.dtype, device=out.device)
        weight = (alpha * mask.to(out.dtype))[..., None]
        out = out * (1 - weight) + color * weight
    return out
