"""A tiny SAM (segment-anything's own classes at tiny widths) with seeded random weights, built at test
time and saved as a ``.pth`` state dict and as safetensors; never committed. TEST HARNESS ONLY.

The tiny encoder keeps SAM's structure: windowed blocks (window 3, which does not divide the 8x8 token
grid, so window padding runs) and global blocks, relative positions, a neck. The decoder is SAM's with a
32-wide transformer and SAM's 8 heads (the one size that is not in the weight shapes).
"""
from __future__ import annotations

import json
import math
from functools import partial
from pathlib import Path

import numpy as np
import torch

TINY_SAM_PTH = "motionkit_tiny_sam.pth"
TINY_SAM_SAFETENSORS = "motionkit_tiny_sam.safetensors"
SAM_TEST_IMAGE = "motionkit_sam_test.png"
SAM_TEST_IMAGE_SIZE = (96, 64)  # (width, height): not square, so SAM's resize and padding matter

TINY_SAM = dict(img_size=64, patch_size=8, embed_dim=32, depth=4, num_heads=2, global_attn_indexes=(1, 3),
                window_size=3, prompt_embed_dim=32, mask_in_chans=8, decoder_mlp_dim=64, iou_hidden=32)
# A ViT-B-sized prompt encoder and mask decoder (what every SAM v1 model has) on a small image encoder
# that still produces the official 64x64x256 embedding from a 1024 px input: for click-latency benchmarks.
VITB_DECODER = dict(img_size=1024, patch_size=16, embed_dim=64, depth=2, num_heads=2, global_attn_indexes=(1,),
                    window_size=14, prompt_embed_dim=256, mask_in_chans=16, decoder_mlp_dim=2048, iou_hidden=256)


def build_sam(spec: dict = TINY_SAM, seed: int | None = 2):
    """A segment-anything ``Sam`` of ``spec``'s sizes; with ``seed``, every tensor gets seeded random values."""
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    grid = spec["img_size"] // spec["patch_size"]
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=spec["depth"], embed_dim=spec["embed_dim"], img_size=spec["img_size"], mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=spec["num_heads"],
            patch_size=spec["patch_size"], qkv_bias=True, use_rel_pos=True,
            global_attn_indexes=spec["global_attn_indexes"], window_size=spec["window_size"],
            out_chans=spec["prompt_embed_dim"]),
        prompt_encoder=PromptEncoder(
            embed_dim=spec["prompt_embed_dim"], image_embedding_size=(grid, grid),
            input_image_size=(spec["img_size"], spec["img_size"]), mask_in_chans=spec["mask_in_chans"]),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=spec["prompt_embed_dim"],
                                          mlp_dim=spec["decoder_mlp_dim"], num_heads=8),
            transformer_dim=spec["prompt_embed_dim"], iou_head_depth=3, iou_head_hidden_dim=spec["iou_hidden"]),
        pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375],
    )
    if seed is not None:
        random_init_(sam, seed)
    return sam.eval()


@torch.no_grad()
def random_init_(module: torch.nn.Module, seed: int) -> None:
    """Seeded values for every tensor, including the ones SAM initialises to zero (relative and absolute
    position tables), so that a wrong table size or a wrong block layout changes the masks."""
    gen = torch.Generator().manual_seed(seed)
    for name, t in sorted([*module.named_parameters(), *module.named_buffers()], key=lambda kv: kv[0]):
        if name.startswith("pixel_"):
            continue
        if t.ndim >= 2 and "rel_pos" not in name and "pos_embed" not in name and "gaussian" not in name:
            t.copy_(torch.randn(t.shape, generator=gen) / math.sqrt(t[0].numel()))
        elif name.endswith("weight") and ("norm" in name or t.ndim == 1):
            t.copy_(1.0 + 0.1 * torch.randn(t.shape, generator=gen))
        else:
            t.copy_(0.3 * torch.randn(t.shape, generator=gen))


def save_sam(sam, directory: Path, pth: str = TINY_SAM_PTH, safetensors: str | None = TINY_SAM_SAFETENSORS) -> list:
    """The model's state dict as a ``.pth`` (as Meta ships SAM) and optionally as safetensors."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().clone().contiguous() for k, v in sam.state_dict().items()}
    torch.save(sd, directory / pth)
    names = [pth]
    if safetensors:
        save_file(sd, str(directory / safetensors))
        names.append(safetensors)
    return names


def write_sam_test_image(path: Path, size=SAM_TEST_IMAGE_SIZE) -> Path:
    """A non-square synthetic photo: a gradient, a disc and a bar (objects to click on)."""
    from PIL import Image

    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([0.2 + 0.5 * xx / w, 0.3 + 0.4 * yy / h, 0.6 + 0 * xx], -1)
    img[(xx - 0.3 * w) ** 2 + (yy - 0.5 * h) ** 2 < (0.22 * h) ** 2] = [0.95, 0.85, 0.1]
    img[(abs(xx - 0.72 * w) < 0.1 * w) & (abs(yy - 0.45 * h) < 0.3 * h)] = [0.8, 0.1, 0.2]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((img * 255).round().astype(np.uint8)).save(path)
    return path


def ensure_tiny_sam(base_dir: Path) -> dict:
    """Write the tiny SAM (both formats) into ``models/sams`` and the SAM test image into ``input/``."""
    sams = base_dir / "models" / "sams"
    if not (sams / TINY_SAM_PTH).exists() or not (sams / TINY_SAM_SAFETENSORS).exists():
        save_sam(build_sam(), sams)
    image = base_dir / "input" / SAM_TEST_IMAGE
    if not image.exists():
        write_sam_test_image(image)
    return {"pth": TINY_SAM_PTH, "safetensors": TINY_SAM_SAFETENSORS, "image": SAM_TEST_IMAGE}


def load_uint8(path: Path) -> np.ndarray:
    from PIL import Image
    with Image.open(path) as im:
        return np.array(im.convert("RGB"))


def predictor_masks(sam, image: np.ndarray, objects: list) -> list:
    """What segment-anything's ``SamPredictor`` gives for each object of a MotionKit points dict:
    three masks and the best predicted IoU for one point without a box, else one mask.
    Returns ``[(mask (H, W) bool, all candidate masks, scores)]``."""
    from segment_anything import SamPredictor

    predictor = SamPredictor(sam)
    predictor.set_image(image)
    out = []
    for obj in objects:
        pos, neg, box = obj.get("positive", []), obj.get("negative", []), obj.get("box")
        coords = np.array(pos + neg, dtype=np.float64) if pos + neg else None
        labels = np.array([1] * len(pos) + [0] * len(neg)) if pos + neg else None
        multimask = len(pos) + len(neg) == 1 and box is None
        masks, scores, _ = predictor.predict(point_coords=coords, point_labels=labels,
                                             box=None if box is None else np.array(box, dtype=np.float64),
                                             multimask_output=multimask)
        best = int(np.argmax(scores)) if multimask else 0
        out.append((masks[best], masks, scores))
    return out


def points_json(objects, width=SAM_TEST_IMAGE_SIZE[0], height=SAM_TEST_IMAGE_SIZE[1]) -> str:
    return json.dumps({"version": 1, "width": width, "height": height,
                       "objects": [{"positive": o.get("positive", []), "negative": o.get("negative", []),
                                    "box": o.get("box")} for o in objects]})


def click_prompt(points: str, model: str = TINY_SAM_PTH, image: str = SAM_TEST_IMAGE, prefix: str = "sam") -> dict:
    """LoadImage -> Load SAM Model -> Click to Mask -> (masks, mask, preview) saved as PNGs by core nodes."""
    return {
        "img": {"class_type": "LoadImage", "inputs": {"image": image}},
        "sam": {"class_type": "MotionKitSAMLoader", "inputs": {"model_name": model}},
        "ctm": {"class_type": "MotionKitClickToMask", "inputs": {
            "sam_model": ["sam", 0], "image": ["img", 0], "points": points}},
        "m2i": {"class_type": "MaskToImage", "inputs": {"mask": ["ctm", 0]}},
        "u2i": {"class_type": "MaskToImage", "inputs": {"mask": ["ctm", 1]}},
        "save_masks": {"class_type": "SaveImage", "inputs": {"images": ["m2i", 0],
                                                            "filename_prefix": f"{prefix}/masks"}},
        "save_union": {"class_type": "SaveImage", "inputs": {"images": ["u2i", 0],
                                                            "filename_prefix": f"{prefix}/union"}},
        "save_preview": {"class_type": "SaveImage", "inputs": {"images": ["ctm", 2],
                                                              "filename_prefix": f"{prefix}/preview"}},
    }
