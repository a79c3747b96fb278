"""Motion-I2V stage 1 in ComfyUI: load the official FlowGen weights (UNet, sparse-trajectory ControlNet,
flow VAE, image VAE, CLIP text encoder) and predict a MOTION_FIELD from an image, a prompt, and optional
trajectories and motion brush. The networks are in modules/flowgen.py, the sampling in
modules/flowgen_pipeline.py; ComfyUI supplies the text encoder and VAEs (its own CLIP and VAE classes),
model management, the attention backend, progress and interruption."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

import comfy.diffusers_convert
import comfy.model_management as mm
import comfy.model_patcher
import comfy.sd
import comfy.utils
import folder_paths

from ..modules.flowgen import CONTROLNET_PREFIX, CheckpointLayoutError, FlowGenUNet, build_from_state_dict, strip_prefixes
from ..modules.flowgen_pipeline import (LATENT_SCALE, cross_attention_pair, ddim_sample, flow_from_decoded, frame_strides,
                                        guided, initial_noise, mask_at_latent_size, resample_track_frames, resize_image,
                                        sparse_control_images, static_region)
from ..modules.motion_field import make_motion_field
from ..modules.track_converters import sparse_flow
from ..modules.tracks import TrackInputError, TrackSet, read_tracks
from ._comfy import MotionKitInputError, load_for_compute, plain_attention, require_range

log = logging.getLogger("MotionKit")

FLOWGEN = "MOTIONI2V_FLOWGEN"
MOTION_FIELD = "MOTION_FIELD"
FOLDER = "motion_i2v"
HF_REPO = "wangfuyun/Motion-I2V"
DEFAULT_NAME = "Motion-I2V"
LOADER = "Load Motion-I2V Flow Predictor (MotionKitMotionI2VLoader)"
PREDICTOR = "Motion Field Predictor (Motion-I2V) (MotionKitMotionI2VFlowPredictor)"

# The Hugging Face repository's layout (paths below its models/ folder), as scripts/app.py reads it.
_STAGE1 = "stage1/StableDiffusion-FlowGen"
PARTS = {
    "unet": (f"{_STAGE1}/unet", ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")),
    "controlnet": (f"{_STAGE1}/controlnet", ("controlnet.safetensors", "controlnet.bin")),
    "vae_flow": (f"{_STAGE1}/vae_flow", ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")),
    "text_encoder": (f"{_STAGE1}/text_encoder", ("model.safetensors", "pytorch_model.bin")),
    "image_vae": ("stage2/StableDiffusion/vae", ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")),
}
OPTIONAL_PARTS = {"controlnet"}   # without it: no trajectory control (the text/image-only FlowGen)

# scripts/app.py l.674: the negative prompt of the official demo.
APP_NEGATIVE_PROMPT = (
    "(blur, haze, deformed iris, deformed pupils, semi-realistic, cgi, 3d, render, sketch, cartoon, drawing, "
    "anime, mutated hands and fingers:1.4), (deformed, distorted, disfigured:1.3), poorly drawn, bad anatomy, "
    "wrong anatomy, extra limb, missing limb, floating limbs, disconnected limbs, mutation, mutated, ugly, "
    "disgusting, amputation")


# --- where the files are ------------------------------------------------------------------------------

def register_model_folder() -> None:
    folder_paths.add_model_folder_path(FOLDER, os.path.join(folder_paths.models_dir, FOLDER), is_default=True)


def _roots() -> list:
    return folder_paths.get_folder_paths(FOLDER)


def _layout_root(folder: str) -> Optional[str]:
    """The directory holding stage1/ (a clone of the HF repo keeps it under models/)."""
    for root in (os.path.join(folder, "models"), folder):
        if os.path.isdir(os.path.join(root, "stage1")):
            return root
    return None


def installed_folders() -> list:
    return sorted({name for root in _roots() if os.path.isdir(root) for name in os.listdir(root)
                   if _layout_root(os.path.join(root, name))})


def model_choices() -> list:
    return installed_folders() or [DEFAULT_NAME]


def download_hint(name: str) -> str:
    target = os.path.join(_roots()[0], name)
    files = ", ".join(f"models/{sub}/{names[-1]}" for sub, names in PARTS.values())
    return (f"download the Hugging Face repository {HF_REPO} into {target} (git lfs install; git clone "
            f"https://huggingface.co/{HF_REPO} \"{target}\"), or at least these files of it, keeping their "
            f"paths under {target}: {files} (controlnet.bin only for trajectory control). .safetensors copies "
            f"with the same names are accepted too.")


def find_parts(name: str) -> dict:
    folder = next((os.path.join(r, name) for r in _roots() if os.path.isdir(os.path.join(r, name))), None)
    root = _layout_root(folder) if folder else None
    found, missing = {}, []
    for part, (sub, names) in PARTS.items():
        path = next((os.path.join(root, sub, n) for n in names if root and os.path.isfile(os.path.join(root, sub, n))), None)
        if path:
            found[part] = path
        elif part not in OPTIONAL_PARTS:
            missing.append(f"models/{sub}/{names[-1]}")
    if missing:
        where = folder or os.path.join(_roots()[0], name)
        raise MotionKitInputError(LOADER, "model_folder", f"missing Motion-I2V file(s) in {where}: {', '.join(missing)}.",
                                  download_hint(name))
    return found


def read_weights(path: str, part: str) -> dict:
    """Safe loading (safetensors, or torch.load with weights_only=True), wrapper prefixes removed."""
    try:
        sd = comfy.utils.load_torch_file(path, safe_load=True)
    except Exception as e:  # a pickle with code in it, a truncated download ...
        raise MotionKitInputError(LOADER, "model_folder", f"cannot read the {part} file {path}: {e}",
                                  f"re-download it from {HF_REPO} (only plain tensor files are loaded).")
    if not isinstance(sd, dict) or not all(torch.is_tensor(v) for v in sd.values()):
        raise MotionKitInputError(LOADER, "model_folder", f"the {part} file {path} is not a state dict of tensors.",
                                  f"use the file from {HF_REPO}.")
    return strip_prefixes(sd)


def layout_error(part: str, path: str, err: CheckpointLayoutError) -> MotionKitInputError:
    return MotionKitInputError(LOADER, "model_folder", f"{path} ({part}) does not match the official Motion-I2V "
                               f"architecture: {err}", f"use the unmodified {part} file of {HF_REPO} "
                               f"({PARTS[part][0]}) in diffusers-0.11 key names.")


# --- the ComfyUI-native parts: VAEs and text encoder --------------------------------------------------

def _count(sd: dict, prefix: str, suffix: str) -> int:
    n = 0
    while f"{prefix}{n}{suffix}" in sd:
        n += 1
    return n


def vae_config(sd: dict) -> dict:
    """ComfyUI ``AutoencoderKL`` parameters of a diffusers ``AutoencoderKL`` state dict, from its shapes."""
    skeleton = ["encoder.conv_in.weight", "encoder.conv_out.weight", "decoder.conv_in.weight", "decoder.conv_out.weight",
                "post_quant_conv.weight", "encoder.down_blocks.0.resnets.0.conv1.weight"]
    absent = [k for k in skeleton if k not in sd]
    if absent:
        raise CheckpointLayoutError("not a diffusers AutoencoderKL", missing=absent)
    ch = sd["encoder.conv_in.weight"].shape[0]
    z = sd["decoder.conv_in.weight"].shape[1]
    levels = _count(sd, "encoder.down_blocks.", ".resnets.0.conv1.weight")
    return {"embed_dim": sd["post_quant_conv.weight"].shape[1], "ddconfig": {
        "double_z": sd["encoder.conv_out.weight"].shape[0] == 2 * z, "z_channels": z, "resolution": 256,
        "in_channels": sd["encoder.conv_in.weight"].shape[1], "out_ch": sd["decoder.conv_out.weight"].shape[0],
        "ch": ch, "ch_mult": [sd[f"encoder.down_blocks.{i}.resnets.0.conv2.weight"].shape[0] // ch for i in range(levels)],
        "num_res_blocks": _count(sd, "encoder.down_blocks.0.resnets.", ".conv1.weight"),
        "attn_resolutions": [], "dropout": 0.0}}


def make_vae(sd: dict, part: str, path: str, in_channels: int) -> comfy.sd.VAE:
    """ComfyUI's VAE for a diffusers-0.11 AutoencoderKL (old ``query/key/value/proj_attn`` names or new
    ones), any in/out channel count, the layout checked against the network ComfyUI builds.

    Motion-I2V feeds both VAEs unnormalised data (images in [0, 1], flow in [0, 1]) and reads the decoder
    output raw, so ComfyUI's [-1, 1] input/output mapping is switched off on these private instances."""
    try:
        config = vae_config(sd)
    except CheckpointLayoutError as e:
        raise layout_error(part, path, e)
    if config["ddconfig"]["in_channels"] != in_channels:
        raise layout_error(part, path, CheckpointLayoutError(
            f"it takes {config['ddconfig']['in_channels']} input channels, Motion-I2V's {part} takes {in_channels}"))
    converted = comfy.diffusers_convert.convert_vae_state_dict(sd)
    vae = comfy.sd.VAE(sd=converted, config={"params": config})
    expected = vae.first_stage_model.state_dict()
    missing = sorted(k for k in expected if k not in converted)
    unexpected = sorted(k for k in converted if k not in expected)
    if missing or unexpected:
        raise layout_error(part, path, CheckpointLayoutError("ComfyUI's AutoencoderKL", missing, unexpected))
    vae.latent_channels = config["ddconfig"]["z_channels"]
    vae.output_channels = config["ddconfig"]["out_ch"]
    vae.process_input = lambda x: x
    vae.process_output = lambda x: x
    return vae


def make_text_encoder(sd: dict, path: str) -> comfy.sd.CLIP:
    """SD1.5's CLIP ViT-L text encoder (Hugging Face ``CLIPTextModel`` keys) through ComfyUI's SD1 CLIP
    and tokenizer; width, depth and MLP size come from the shapes (12 heads of 64 for ViT-L)."""
    token = "text_model.embeddings.token_embedding.weight"
    skeleton = [token, "text_model.embeddings.position_embedding.weight", "text_model.encoder.layers.0.mlp.fc1.weight",
                "text_model.final_layer_norm.weight"]
    absent = [k for k in skeleton if k not in sd]
    if absent:
        raise layout_error("text_encoder", path, CheckpointLayoutError("not a Hugging Face CLIPTextModel", missing=absent))
    hidden = sd[token].shape[1]
    overrides = {"hidden_size": hidden, "num_hidden_layers": _count(sd, "text_model.encoder.layers.", ".mlp.fc1.weight"),
                 "intermediate_size": sd["text_model.encoder.layers.0.mlp.fc1.weight"].shape[0],
                 "num_attention_heads": max(1, hidden // 64), "vocab_size": sd[token].shape[0],
                 "max_position_embeddings": sd["text_model.embeddings.position_embedding.weight"].shape[0],
                 "projection_dim": hidden}
    sd = {k: v for k, v in sd.items() if k != "text_model.embeddings.position_ids"}   # a buffer older exports carry
    sd.setdefault("text_projection.weight", torch.eye(hidden))   # CLIPTextModel has none; only the pooled output uses it
    clip = comfy.sd.load_text_encoder_state_dicts([sd], embedding_directory=folder_paths.get_folder_paths("embeddings"),
                                                  clip_type=comfy.sd.CLIPType.STABLE_DIFFUSION,
                                                  # ComfyUI's long-CLIP check rebuilds clip_l_model_config
                                                  # from model_config, so give the shapes under both names.
                                                  model_options={"model_config": dict(overrides),
                                                                 "clip_l_model_config": overrides})
    expected = clip.cond_stage_model.clip_l.transformer.state_dict()
    missing = sorted(k for k in expected if k not in sd)
    unexpected = sorted(k for k in sd if k not in expected)
    if missing or unexpected:
        raise layout_error("text_encoder", path, CheckpointLayoutError("ComfyUI's CLIP text model", missing, unexpected))
    return clip


# --- the loader -----------------------------------------------------------------------------------------

@dataclass(eq=False)
class FlowGenModel:
    """What the loader outputs (socket type ``MOTIONI2V_FLOWGEN``)."""
    patcher: comfy.model_patcher.ModelPatcher     # FlowGenUNet, with its ControlNet attached when present
    clip: comfy.sd.CLIP
    image_vae: comfy.sd.VAE
    flow_vae: comfy.sd.VAE
    dtype: torch.dtype
    name: str

    @property
    def unet(self) -> FlowGenUNet:
        return self.patcher.model

    @property
    def has_controlnet(self) -> bool:
        return self.unet.controlnet is not None

    @property
    def max_frames(self) -> int:
        return self.unet.config.motion_max_len + 1   # the position encoding covers the future frames


WEIGHT_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def control_state_dict(sd: dict) -> dict:
    """controlnet.bin is loaded into the UNet (``unet.load_state_dict``), so its keys carry ``controlnet.``."""
    if sd and all(k.startswith(CONTROLNET_PREFIX) for k in sd):
        return {k[len(CONTROLNET_PREFIX):]: v for k, v in sd.items()}
    return sd


def require_model_folder(name) -> dict:
    """The parts of Motion-I2V folder ``name``, one of :func:`model_choices` (a plain folder name under a
    motion_i2v folder, never a path); else an error with the download hint."""
    if name not in model_choices():
        plain = isinstance(name, str) and name.strip() not in ("", ".", "..") and os.path.basename(name) == name
        found = installed_folders()
        raise MotionKitInputError(
            LOADER, "model_folder", f"{name!r} is not a Motion-I2V folder in {_roots()} (found: "
            f"{', '.join(found) if found else 'none'}).",
            ("choose one of those (press R to refresh the list), or " if found else "")
            + download_hint(name if plain else DEFAULT_NAME))
    return find_parts(name)


class MotionKitMotionI2VLoader:
    DESCRIPTION = (
        "Loads Motion-I2V's stage-1 motion-field predictor (wangfuyun/Motion-I2V on Hugging Face): the FlowGen "
        "UNet (8 input channels, per-frame stride embedding, AnimateDiff-v2 motion modules), the sparse-trajectory "
        "ControlNet, the flow VAE, SD1.5's image VAE and CLIP text encoder, in their official diffusers-0.11 "
        "files. Put a clone of the repository in ComfyUI/models/motion_i2v/<name>/ (git clone "
        "https://huggingface.co/wangfuyun/Motion-I2V); the files used are models/stage1/StableDiffusion-FlowGen/"
        "{unet/diffusion_pytorch_model.bin, controlnet/controlnet.bin, vae_flow/diffusion_pytorch_model.bin, "
        "text_encoder/pytorch_model.bin} and models/stage2/StableDiffusion/vae/diffusion_pytorch_model.bin "
        "(.safetensors copies accepted). Files are loaded safely (tensors only) and checked key by key against "
        "the official architecture.")
    CATEGORY = "MotionKit"
    RETURN_TYPES = (FLOWGEN,)
    RETURN_NAMES = ("flow_model",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model_folder": (model_choices(), {"tooltip": "A folder under ComfyUI/models/motion_i2v/ holding the "
                                               "Hugging Face repository wangfuyun/Motion-I2V."}),
            "weight_dtype": (["default", "fp16", "bf16", "fp32"], {
                "tooltip": "Weights of the UNet and ControlNet; default = what ComfyUI picks for this device."}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, model_folder=None):
        # Taking model_folder makes ComfyUI skip its own "Value not in list" check for it, so a folder name
        # that is not found (another machine's workflow, a renamed clone) gets the download hint instead.
        if model_folder is None:   # linked from another node: checked when the node runs
            return True
        try:
            require_model_folder(model_folder)
        except MotionKitInputError as e:
            return str(e)
        return True

    def load(self, model_folder, weight_dtype="default"):
        parts = require_model_folder(model_folder)
        unet_sd = read_weights(parts["unet"], "unet")
        # The official load is strict=False into a UNet that may already carry a ControlNet: a copy of the
        # ControlNet inside the UNet file is superseded by controlnet.bin, so it is not an error.
        unet_sd = {k: v for k, v in unet_sd.items() if not k.startswith(CONTROLNET_PREFIX)}
        control_sd = control_state_dict(read_weights(parts["controlnet"], "controlnet")) if "controlnet" in parts else None
        if control_sd is None:
            log.info("MotionKit: no Motion-I2V ControlNet in %s; trajectory control is unavailable.", model_folder)
        params = sum(v.numel() for v in unet_sd.values()) + sum(v.numel() for v in (control_sd or {}).values())
        load_device = mm.get_torch_device()
        dtype = WEIGHT_DTYPES.get(weight_dtype) or mm.unet_dtype(
            device=load_device, model_params=params, supported_dtypes=[torch.float16, torch.bfloat16, torch.float32])
        try:
            unet = build_from_state_dict(unet_sd, control_sd, dtype, "FlowGen UNet")
        except CheckpointLayoutError as e:
            raise layout_error(e.part or "unet", parts[e.part or "unet"], e)
        del unet_sd, control_sd
        unet.attention = plain_attention       # ComfyUI's configured backend
        patcher = comfy.model_patcher.ModelPatcher(unet, load_device=load_device, offload_device=mm.unet_offload_device())
        clip = make_text_encoder(read_weights(parts["text_encoder"], "text_encoder"), parts["text_encoder"])
        image_vae = make_vae(read_weights(parts["image_vae"], "image_vae"), "image_vae", parts["image_vae"], 3)
        flow_vae = make_vae(read_weights(parts["vae_flow"], "vae_flow"), "vae_flow", parts["vae_flow"], 2)
        return (FlowGenModel(patcher, clip, image_vae, flow_vae, dtype, model_folder),)


# --- the predictor --------------------------------------------------------------------------------------

def tracks_to_sparse(tracks, num_frames: int, width: int, height: int, image_size: tuple, radius: int):
    """TRACKS -> Motion-I2V sparse flow ``[F-1, H, W, 2]`` (pixels) and mask ``[F-1, H, W]`` at the output
    size. Tracks without an image size are taken to be in pixels of the input image."""
    try:
        ts = read_tracks(tracks)
        if ts.width is None:
            ts = TrackSet(ts.path, ts.visible, ts.object, *image_size)
        ts = ts.sized(width, height)
        path = resample_track_frames(ts.path, num_frames)
        ts = TrackSet(path, np.ones(path.shape[:2], dtype=bool), ts.object, width, height)
        sparse = sparse_flow(ts, radius)
    except TrackInputError as e:
        raise MotionKitInputError(PREDICTOR, e.input_name if e.input_name != "width" else "tracks", e.problem, e.fix)
    return sparse["flow"], sparse["mask"]


def require_flow_model(model) -> FlowGenModel:
    if not isinstance(model, FlowGenModel):
        raise MotionKitInputError(PREDICTOR, "flow_model", f"expected a {FLOWGEN}, got {type(model).__name__}.",
                                  "connect the output of 'Load Motion-I2V Flow Predictor'.")
    return model


# The official pipeline's tokenizer (SD1.5's, ``model_max_length`` 77; ComfyUI's copy of the same
# vocabulary says 8192, so the window is given explicitly).
TEXT_WINDOW = 77


def literal_token_ids(clip: comfy.sd.CLIP, text: str) -> list:
    """Token ids of ``text`` as the official ``_encode_prompt`` makes them: the Hugging Face CLIP tokenizer
    on the literal text (no ComfyUI emphasis ``(word:1.4)``, no ``embedding:`` names), one window of 77
    with start and end tokens, truncated to fit, padded with the tokenizer's pad token."""
    sd_tokenizer = getattr(clip.tokenizer, clip.tokenizer.clip)          # comfy.sd1_clip.SDTokenizer (clip_l)
    hf = sd_tokenizer.tokenizer                                          # transformers.CLIPTokenizer
    ids = [int(i) for i in hf(text, padding="max_length", max_length=TEXT_WINDOW, truncation=True)["input_ids"]]
    full = hf(text)["input_ids"]
    if len(full) > TEXT_WINDOW:
        log.warning("MotionKit: Motion-I2V reads 77 CLIP tokens (as the official pipeline); this part of the "
                    "prompt is cut off: %r", hf.decode(full[TEXT_WINDOW - 1:-1]))
    return ids


def encode_text(clip: comfy.sd.CLIP, text: str) -> torch.Tensor:
    """``[1, 77, width]``: the text model's last hidden state (after the final layer norm, i.e. the
    official ``text_encoder(ids)[0]``) for the literal token window, run by ComfyUI's text encoder
    (its device, dtype and memory management). One window of weight-1 tokens is passed straight to
    ``encode_from_tokens``, which then neither re-weights nor splits nor re-pads it."""
    tokens = [(i, 1.0) for i in literal_token_ids(clip, text)]
    return clip.encode_from_tokens({clip.tokenizer.clip_name: [tokens]})


class MotionKitMotionI2VFlowPredictor:
    DESCRIPTION = (
        "Motion-I2V stage 1: predicts how every pixel of the image moves (a MOTION_FIELD: flow in pixels of "
        "width x height from frame 0 to each frame; frame 0 is zero) with the official diffusion flow predictor, "
        "as its demo samples it (DDIM, 25 steps, CFG 7, 512x320, 16 frames). Optional tracks steer it through the "
        "sparse-trajectory ControlNet: each track's start point gets a square of half-size track_radius holding "
        "its displacement at every frame. Optional brush_mask is the motion brush: paint the region that may "
        "move; everything else is held still (an empty mask lets everything move). Frame f is the motion "
        "8*f source-video frames later, as in training. Prompts are read literally, as the official pipeline "
        "reads them: one window of 77 CLIP tokens (longer text is cut off), no (word:1.4) emphasis and no "
        "embedding: names. Tracks with other frame counts are resampled over time with the app's monotone "
        "cubic (PCHIP).")
    CATEGORY = "MotionKit"
    RETURN_TYPES = (MOTION_FIELD,)
    RETURN_NAMES = ("motion_field",)
    FUNCTION = "predict"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "flow_model": (FLOWGEN, {"tooltip": "From 'Load Motion-I2V Flow Predictor'."}),
                "image": ("IMAGE", {"tooltip": "The first frame (the first image of a batch is used)."}),
                "prompt": ("STRING", {"multiline": True, "default": "",
                                      "tooltip": "What moves and how (the FlowGen UNet is text-conditioned). Read "
                                                 "literally, as the official pipeline: the first 77 CLIP tokens, "
                                                 "no (word:1.4) emphasis, no embeddings."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True}),
                "steps": ("INT", {"default": 25, "min": 1, "max": 1000, "tooltip": "DDIM steps (the app uses 25)."}),
                "cfg": ("FLOAT", {"default": 7.0, "min": 1.0, "max": 30.0, "step": 0.1,
                                  "tooltip": "Classifier-free guidance on the text (1 = none; the app uses 7)."}),
                "width": ("INT", {"default": 512, "min": 64, "max": 2048, "step": 8}),
                "height": ("INT", {"default": 320, "min": 64, "max": 2048, "step": 8}),
                "num_frames": ("INT", {"default": 16, "min": 2, "max": 33,
                                       "tooltip": "Frames of the field including frame 0 (the official stride "
                                                  "list gives 16; at most the motion modules' 32 + 1)."}),
            },
            "optional": {
                "tracks": ("TRACKS", {"tooltip": "Trajectories to follow (needs the ControlNet)."}),
                "brush_mask": ("MASK", {"tooltip": "Motion brush: 1 where things may move; the rest stays still."}),
                "negative_prompt": ("STRING", {"multiline": True, "default": APP_NEGATIVE_PROMPT}),
                "track_radius": ("INT", {"default": 8, "min": 1, "max": 512,
                                         "tooltip": "Half-size in output pixels of the square each track's motion "
                                                    "fills (the app's 'Flow Unit'; its default 64 is for single "
                                                    "clicked drags)."}),
            },
        }

    def predict(self, flow_model, image, prompt, seed, steps, cfg, width, height, num_frames, tracks=None,
                brush_mask=None, negative_prompt=APP_NEGATIVE_PROMPT, track_radius=8):
        model = require_flow_model(flow_model)
        width, height, num_frames, steps = int(width), int(height), int(num_frames), int(steps)
        cfg = require_range(PREDICTOR, "cfg", cfg, 1.0, 30.0)
        for name, value in (("width", width), ("height", height)):
            if value % 8 or value < 64:
                raise MotionKitInputError(PREDICTOR, name, f"{value} is not a multiple of 8 of at least 64.",
                                          "use a multiple of 8 (the VAE works on 8x8 pixel blocks).")
        if not 2 <= num_frames <= model.max_frames:
            raise MotionKitInputError(PREDICTOR, "num_frames", f"{num_frames} frames; this model predicts 2 to "
                                      f"{model.max_frames} (its motion modules have {model.max_frames - 1} positions).",
                                      f"use 2..{model.max_frames} (16 as in the official demo).")
        if steps < 1:
            raise MotionKitInputError(PREDICTOR, "steps", f"{steps} steps.", "use at least 1 (25 as in the app).")
        if not torch.is_tensor(image) or image.ndim != 4 or image.shape[0] < 1 or image.shape[-1] < 3:
            raise MotionKitInputError(PREDICTOR, "image", "expected an IMAGE [B, H, W, 3].", "connect an IMAGE output.")
        if brush_mask is not None and (not torch.is_tensor(brush_mask) or brush_mask.ndim not in (2, 3)):
            raise MotionKitInputError(PREDICTOR, "brush_mask", "expected a MASK [H, W] or [B, H, W].", "connect a MASK output.")
        if tracks is not None and not model.has_controlnet:
            raise MotionKitInputError(PREDICTOR, "tracks", f"the model in '{model.name}' has no ControlNet, which "
                                      "trajectory control needs.", f"add models/{PARTS['controlnet'][0]}/controlnet.bin "
                                      f"from {HF_REPO}, or disconnect tracks.")
        frames = num_frames - 1
        static = static_region(brush_mask, height, width)
        sparse_px = sparse_mask = None
        if tracks is not None:
            sparse_px, sparse_mask = tracks_to_sparse(tracks, num_frames, width, height,
                                                      (image.shape[2], image.shape[1]), int(track_radius))

        context = cross_attention_pair(encode_text(model.clip, negative_prompt or ""), encode_text(model.clip, prompt))
        first = resize_image(image[0], height, width)
        image_latent = model.image_vae.encode(first[None]) * LATENT_SCALE                  # [1, 4, h, w]
        control = None
        if model.has_controlnet:   # the app always runs it; without tracks every pixel is "unobserved"
            sparse01, mask = sparse_control_images(sparse_px, sparse_mask, static, frames)
            flow_latent = model.flow_vae.encode(sparse01.permute(0, 2, 3, 1))               # [F, 4, h, w], unscaled
            control = torch.cat([flow_latent, mask_at_latent_size(mask)], dim=1)

        latents = self.sample(model, image_latent, context, control, frames, seed, steps, cfg, height, width)
        decoded = model.flow_vae.decode(latents / LATENT_SCALE)[..., :2].permute(0, 3, 1, 2)   # [F, 2, H, W]
        return (make_motion_field(flow_from_decoded(decoded.cpu(), static)),)

    @staticmethod
    def sample(model: FlowGenModel, image_latent, context, control, frames, seed, steps, cfg, height, width):
        load_for_compute([model.patcher])
        unet, device, dtype = model.unet, model.patcher.load_device, model.dtype
        branches = 2 if cfg > 1.0 else 1          # the pipeline skips the unconditional pass at cfg 1
        context = (context if branches == 2 else context[1:]).to(device, dtype)
        image_latent = image_latent.to(device, torch.float32).expand(frames, -1, -1, -1)
        strides = torch.tensor(frame_strides(frames + 1), device=device)
        if control is not None:
            control = control.to(device, dtype).repeat(branches, 1, 1, 1)
        pbar = comfy.utils.ProgressBar(steps)

        def predict_eps(x, t):
            inp = torch.cat([image_latent, x], dim=1).repeat(branches, 1, 1, 1).to(dtype)
            eps = unet(inp, torch.tensor(t, device=device), strides, context, frames, control).float()
            return guided(*eps.chunk(2), cfg) if branches == 2 else eps

        def on_step(_):
            pbar.update(1)
            mm.throw_exception_if_processing_interrupted()

        mm.throw_exception_if_processing_interrupted()
        return ddim_sample(predict_eps, initial_noise(seed, frames, height, width).to(device), steps, on_step)


register_model_folder()

NODE_CLASS_MAPPINGS = {
    "MotionKitMotionI2VLoader": MotionKitMotionI2VLoader,
    "MotionKitMotionI2VFlowPredictor": MotionKitMotionI2VFlowPredictor,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "MotionKitMotionI2VLoader": "Load Motion-I2V Flow Predictor",
    "MotionKitMotionI2VFlowPredictor": "Motion Field Predictor (Motion-I2V)",
}
