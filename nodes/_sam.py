"""SAM runtime shared by the Click-to-Mask node and its preview route: the ``sams`` model folder, loading a
checkpoint into ComfyUI's model management, and running SAM (one lock, one embedding cache) so a click in
the editor and a queued run reuse the same image embedding."""
from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

import comfy.model_management as mm
import comfy.model_patcher
import folder_paths

from ..modules.sam import (OFFICIAL_CHECKPOINTS, LRUCache, Prompts, SamConfig, compute_embedding,
                           embedding_memory_bytes, load_state_dict_file, predict_object,
                           sam_from_state_dict)
from ._comfy import load_for_compute

log = logging.getLogger("MotionKit")

SAMS = "sams"
SAM_EXTENSIONS = {".pth", ".pt", ".bin", ".safetensors", ".sft"}
DEFAULT_CHECKPOINT = "sam_vit_b_01ec64.pth"


def register_model_folders() -> None:
    """``models/sams`` (first: where downloads go) and ``models/sam``, plus any ``sam`` folder a user
    configured in extra_model_paths.yaml, all listed under the ``sams`` folder name."""
    folder_paths.add_model_folder_path(SAMS, os.path.join(folder_paths.models_dir, "sams"), is_default=True)
    folder_paths.add_model_folder_path(SAMS, os.path.join(folder_paths.models_dir, "sam"))
    if "sam" in folder_paths.folder_names_and_paths:
        for path in folder_paths.get_folder_paths("sam"):
            folder_paths.add_model_folder_path(SAMS, path)
    # A folder created by add_model_folder_path accepts every file; list only weight files.
    paths, extensions = folder_paths.folder_names_and_paths[SAMS]
    folder_paths.folder_names_and_paths[SAMS] = (paths, set(extensions) | SAM_EXTENSIONS)


def sam_folders() -> list:
    return folder_paths.get_folder_paths(SAMS)


def download_hint(name: str) -> str:
    """Where to get a checkpoint and where to put it."""
    target = sam_folders()[0]
    if name in OFFICIAL_CHECKPOINTS:
        return f"download {OFFICIAL_CHECKPOINTS[name]} and put it in {target}"
    urls = ", ".join(OFFICIAL_CHECKPOINTS.values())
    return (f"put the checkpoint in {target} (the official SAM files are {urls}; "
            f"ViT-B, {DEFAULT_CHECKPOINT}, is the smallest)")


def model_downloads() -> list:
    """The frontend's model-download metadata (``properties.models`` on loader nodes)."""
    return [{"name": name, "url": url, "directory": SAMS} for name, url in OFFICIAL_CHECKPOINTS.items()]


class SamContainer(torch.nn.Module):
    """segment-anything's ``Sam`` plus what ComfyUI's ModelPatcher writes on a model: a plain ``device``
    attribute (``Sam.device`` is a read-only property)."""

    def __init__(self, sam: torch.nn.Module):
        super().__init__()
        self.sam = sam
        self.device = torch.device("cpu")


@dataclass(eq=False)
class SAMModel:
    """What MotionKit's Load SAM Model node outputs (socket type ``MOTIONKIT_SAM``)."""
    patcher: comfy.model_patcher.ModelPatcher
    config: SamConfig
    key: str        # identity of the weights (resolved path, size, mtime): the embedding cache key
    name: str

    @property
    def sam(self):
        return self.patcher.model.sam


class CheckpointError(ValueError):
    """A SAM checkpoint that is missing or cannot be used: ``problem`` and ``fix`` for the user."""

    def __init__(self, problem: str, fix: str):
        self.problem, self.fix = problem, fix
        super().__init__(f"{problem} Fix: {fix}")


_LOADED: OrderedDict = OrderedDict()   # name -> SAMModel: the editor's route and the node share one model
_KEEP_LOADED = 2
_LOADED_LOCK = threading.Lock()


def checkpoint_path(name: str) -> str:
    if not isinstance(name, str) or not name:
        raise CheckpointError("no SAM checkpoint selected.", download_hint(DEFAULT_CHECKPOINT) + ", then press R.")
    path = folder_paths.get_full_path(SAMS, name)
    if path is None:
        raise CheckpointError(f"SAM checkpoint '{name}' was not found in {', '.join(sam_folders())}.",
                              download_hint(name) + ", then refresh (R) and pick it.")
    return path


def load_sam_model(name: str) -> SAMModel:
    """The SAM checkpoint ``name`` from the ``sams`` folders, as a ModelPatcher-managed model (cached per file)."""
    path = checkpoint_path(name)
    stat = os.stat(path)
    key = f"{os.path.realpath(path)}:{stat.st_size}:{stat.st_mtime_ns}"
    with _LOADED_LOCK:
        cached = _LOADED.get(name)
        if cached is not None and cached.key == key:
            _LOADED.move_to_end(name)
            return cached
    try:
        sd = load_state_dict_file(path)
    except Exception as e:  # safetensors/pickle/zip errors: whatever it is, it is not a loadable SAM file
        raise CheckpointError(f"'{name}' could not be read as a tensor file ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200] if str(e) else 'no details'}).",
                              "use an official SAM ViT checkpoint (.pth) or its safetensors conversion; "
                              + download_hint(DEFAULT_CHECKPOINT) + ".") from e
    try:
        sam, config = sam_from_state_dict(sd)
    except ValueError as e:
        raise CheckpointError(f"'{name}' is not a SAM ViT checkpoint: {e}.",
                              "use sam_vit_b/l/h (SAM 2, MobileSAM, HQ-SAM and EfficientSAM are different "
                              "architectures); " + download_hint(DEFAULT_CHECKPOINT) + ".") from e
    patcher = comfy.model_patcher.ModelPatcher(SamContainer(sam), load_device=mm.get_torch_device(),
                                               offload_device=mm.unet_offload_device())
    model = SAMModel(patcher, config, key, name)
    log.info("MotionKit: loaded SAM %s (%s, %d px input) from %s", config.variant, name, config.img_size, path)
    with _LOADED_LOCK:
        _LOADED[name] = model
        while len(_LOADED) > _KEEP_LOADED:
            _LOADED.popitem(last=False)
    return model


# --- running SAM ------------------------------------------------------------------------------------------

SAM_LOCK = threading.RLock()           # one SAM computation at a time (executor thread or route worker)
EMBEDDINGS = LRUCache(max_entries=8)
# An object's mask per (model, image, prompt): with several objects, a click re-runs only the edited one.
# Masks are one byte per pixel; images above MASK_CACHE_PIXELS are not cached (at most 16 x 4 MB).
OBJECT_MASKS = LRUCache(max_entries=16)
MASK_CACHE_PIXELS = 4 * 1024 * 1024


@dataclass
class SamRun:
    masks: list                        # ObjectMask per object, in object order
    embedding_cached: bool
    embedding_ms: float
    decoder_ms: float
    digest: str = ""
    load_ms: float = 0.0               # model management: putting SAM on its device
    masks_reused: int = 0              # objects whose prompt (on this model and image) was decoded before


def run_sam(model: SAMModel, digest: str, pixels: Callable[[], np.ndarray], prompts: Prompts, *,
            load_model: bool = True, on_step: Optional[Callable[[], None]] = None) -> SamRun:
    """Masks for every object of ``prompts`` on the image whose content hash is ``digest``: the image
    embedding comes from the cache (computed once per model and image content, from ``pixels()``, the
    uint8 RGB image, which is only called then), and each object runs only the prompt encoder and the mask
    decoder. ``load_model`` asks ComfyUI's model management to put SAM on its device first."""
    key = (model.key, digest)
    with SAM_LOCK:
        t_load = time.perf_counter()
        if load_model:
            need = 0 if key in EMBEDDINGS else embedding_memory_bytes(model.config)
            load_for_compute([model.patcher], memory_required=need)
        sam = model.sam
        t0 = time.perf_counter()
        embedding, cached = EMBEDDINGS.get_or_compute(key, lambda: compute_embedding(sam, pixels()))
        t1 = time.perf_counter()
        if on_step is not None:
            on_step()
        masks, reused = [], 0
        cache_masks = embedding.original_size[0] * embedding.original_size[1] <= MASK_CACHE_PIXELS
        for obj in prompts.objects:
            if cache_masks:
                mask, hit = OBJECT_MASKS.get_or_compute(key + (obj,), lambda: predict_object(sam, embedding, obj))
            else:
                mask, hit = predict_object(sam, embedding, obj), False
            masks.append(mask)
            reused += hit
            if on_step is not None:
                on_step()
        t2 = time.perf_counter()
    return SamRun(masks, cached, (t1 - t0) * 1e3, (t2 - t1) * 1e3, digest, (t0 - t_load) * 1e3, reused)


def masks_tensor(masks: list, height: int, width: int) -> torch.Tensor:
    """(N, H, W) float32 0/1 masks on ComfyUI's intermediate device."""
    if not masks:
        return torch.zeros((0, height, width), dtype=torch.float32, device=mm.intermediate_device())
    return torch.stack([m.mask for m in masks]).to(mm.intermediate_device(), torch.float32)


def _save_temp_png(pixels: np.ndarray, filename: str) -> dict:
    """A temp PNG in ComfyUI's temp folder (``motionkit/``), written once: the names are content hashes."""
    from PIL import Image

    subfolder = "motionkit"
    directory = os.path.join(folder_paths.get_temp_directory(), subfolder)
    path = os.path.join(directory, filename)
    if not os.path.exists(path):
        os.makedirs(directory, exist_ok=True)
        tmp = f"{path}.{threading.get_ident()}.part"
        Image.fromarray(pixels).save(tmp, format="PNG", compress_level=1)
        os.replace(tmp, path)
    return {"filename": filename, "subfolder": subfolder, "type": "temp"}


def save_editor_image(image: np.ndarray, digest: str) -> dict:
    """The frame the node segmented, as a temp PNG named by its content hash (lossless, so the editor's
    route reads back the same bytes and hits the same cached embedding)."""
    return _save_temp_png(image, f"sam_{digest}.png")


def save_mask_images(masks: torch.Tensor) -> list[dict]:
    """One plain mask PNG per object (8-bit grey, 255 inside, 0 outside, the frame's size) in the temp
    folder, named by a hash of the mask: ``[{"filename", "subfolder", "type": "temp", "object": i}]``.
    Other editors (the arrow editor) read these from Click to Mask's UI output and tint them themselves."""
    import hashlib

    refs = []
    for i, mask in enumerate((masks > 0.5).cpu().numpy()):
        pixels = mask.astype(np.uint8) * 255
        digest = hashlib.sha1(np.asarray(pixels.shape, np.int64).tobytes() + np.packbits(mask).tobytes()).hexdigest()
        refs.append({**_save_temp_png(pixels, f"sam_mask_{digest[:24]}.png"), "object": i})
    return refs
