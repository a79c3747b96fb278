"""Puppet-Master checkpoints in the official layout (diffusers names, 1664 keys) with seeded random weights,
written at test time (never committed). TEST HARNESS ONLY.

* ``PM_TINY``: the official structure (4 levels, 2 res blocks per level, 15 drag sites, 5 drags, 16 spatial
  transformers) at width 32 and a 64-wide context (the tiny SVD checkpoint's CLIP vision width), so its CLIP
  vision and VAE come from the tiny SVD checkpoint, as the real model's come from ``svd.safetensors``.
* ``MID`` (from ``tiny_models``) for the CPU benchmark, ``FULL_SVD`` for the full-size checks.

ComfyUI detects the real size as its stock SVD img2vid; :func:`register_tiny_puppet_master` registers the tiny
shape with the running ComfyUI's model detection, as ``tiny_models.register_tiny_models`` does for the tiny SVD
(the test-only custom node calls it in the server process).

The base UNet is ComfyUI's own SVD ``UNetModel`` with random weights, renamed to diffusers keys with the pack's
key map; the drag modules are random (conv_out included, so drags change the output).
"""
from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import torch

# absolute: the test-only custom node loads this file by path in the server process, after tiny_models
from motionkit_testing.tiny_models import FULL_SVD, MID, SVDSpec, random_init_



class LayoutSpec(SVDSpec):
    """An :class:`SVDSpec` whose UNet has SVD's real output layout. ``SVDSpec.unet_config`` lists
    ``transformer_depth_output`` in block order, but ComfyUI's ``UNetModel`` pops it from the end, so its 4-level
    builds put the output attention at the lowest level (``output_blocks.0-2``) instead of ``output_blocks.3-11``;
    the official checkpoint (and ComfyUI's detection of the real SVD) has the latter."""

    def unet_config(self) -> dict:
        cfg = super().unet_config()
        levels = len(self.channel_mult)
        attn_levels = levels if levels < 4 else levels - 1
        cfg["transformer_depth_output"] = [1 if i < attn_levels else 0 for i in range(levels)
                                           for _ in range(self.num_res_blocks + 1)]
        return cfg


PM_TINY = LayoutSpec("pm_tiny", model_channels=32, channel_mult=(1, 2, 4, 4), num_res_blocks=2, context_dim=64,
                     head_channels=16)
# MID's and FULL_SVD's sizes (the tests' registrations of "mid" and ComfyUI's SVD detect them) with SVD's real layout
PM_MID = LayoutSpec(**{**MID.__dict__})
PM_FULL = LayoutSpec(**{**FULL_SVD.__dict__})
EMBEDDER = {"pm_tiny": (16, 32, 32), "mid": (48, 64, 64), "svd": (256, 320, 320)}
POS_DIM = 64
NUM_DRAGS = 5
TINY_FILE = "motionkit_tiny_puppet_master.safetensors"
DATA = Path(__file__).resolve().parents[1] / "data"
MANIFEST = DATA / "puppet_master_unet_manifest.json.gz"
KEY_MAP = DATA / "puppet_master_unet_to_comfy.json.gz"


def pack_module(name: str):
    from motionkit_testing.pack import pack_module as load
    return load(name)


def pm():
    return pack_module("puppet_master")


def manifest() -> dict:
    """``key -> shape`` of the official checkpoint (``../shared/research/manifests/puppet_master_unet.json``)."""
    with gzip.open(MANIFEST, "rt") as f:
        return {k: tuple(v) for k, v in json.load(f).items()}


def key_map() -> dict:
    with gzip.open(KEY_MAP, "rt") as f:
        return json.load(f)


def drag_config(spec: SVDSpec):
    """The drag modules' configuration of a Puppet-Master UNet with this SVD spec."""
    mod = pm()
    levels, layers = len(spec.channel_mult), spec.num_res_blocks
    sites = []
    for b in range(levels - 1):
        for j in range(layers):
            sites.append(mod.DragSite("down", b, j, spec.model_channels * spec.channel_mult[b],
                                      mod.drag_site_path("down", b, j, layers)))
    for b in range(1, levels):
        for j in range(layers + 1):
            sites.append(mod.DragSite("up", b, j, spec.model_channels * spec.channel_mult[levels - 1 - b],
                                      mod.drag_site_path("up", b, j, layers)))
    return mod.DragConfig(NUM_DRAGS, EMBEDDER[spec.name], POS_DIM, spec.context_dim, layers, tuple(sites))


def build_adapter(spec: SVDSpec, seed: int = 11, device="cpu", scale: float = 1.0):
    """The drag modules with seeded random weights (every layer, conv_out too), or uninitialised on meta."""
    with torch.device("meta"):
        adapter = pm().DragAdapter(drag_config(spec))
    if str(device) == "meta":
        return adapter
    adapter = adapter.to_empty(device=device)
    random_init_(adapter, seed)
    if scale != 1.0:
        with torch.no_grad():
            for p in adapter.parameters():
                p.mul_(scale)
    return adapter


def meta_state_dict(spec: SVDSpec) -> dict:
    """``key -> shape`` of a Puppet-Master checkpoint of this spec (diffusers names), built on the meta device."""
    from motionkit_testing.tiny_models import build_unet
    mod = pm()
    unet = build_unet(spec, device="meta", seed=None)
    sd = {mod.diffusers_key(k, spec.num_res_blocks): tuple(v.shape) for k, v in unet.state_dict().items()
          if not k.startswith("label_emb.")}
    sd.update({k: tuple(v.shape) for k, v in build_adapter(spec, device="meta").state_dict().items()})
    return sd


def puppet_master_state_dict(spec: SVDSpec = PM_TINY, seed: int = 0, drag_seed: int = 11) -> dict:
    """Random weights in the official layout: ComfyUI's SVD UNet renamed, plus the drag modules."""
    from motionkit_testing.tiny_models import build_unet
    mod = pm()
    unet = build_unet(spec, seed=seed)
    sd = {mod.diffusers_key(k, spec.num_res_blocks): v.contiguous() for k, v in unet.state_dict().items()
          if not k.startswith("label_emb.")}
    sd.update({k: v.contiguous() for k, v in build_adapter(spec, drag_seed).state_dict().items()})
    return sd


def write_puppet_master(path, spec: SVDSpec = PM_TINY, seed: int = 0, dtype=torch.float32) -> str:
    from safetensors.torch import save_file
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: v.to(dtype) for k, v in puppet_master_state_dict(spec, seed).items()}
    save_file(sd, str(path), metadata={"motionkit_test_model": "MotionKit TINY RANDOM Puppet-Master", "spec": spec.name})
    return str(path)


def ensure_tiny_puppet_master(base_dir) -> str:
    """The tiny file in ``models/puppet_master`` of a ComfyUI base directory; returns its name (the example
    workflow test's stand-in for Load Puppet-Master)."""
    path = Path(base_dir) / "models" / "puppet_master" / TINY_FILE
    if not path.exists():
        write_puppet_master(path)
    return TINY_FILE


def write_from_svd_checkpoint(ckpt: Path, out: Path, spec: SVDSpec, dtype=None, seed: int = 11) -> None:
    """A Puppet-Master file whose base UNet is an SVD checkpoint's (renamed, streamed key by key) plus random drag
    modules (the benchmark compares the two at the same size)."""
    from safetensors import safe_open
    stream = pack_module("safetensors_stream")
    mod = pm()
    prefix = "model.diffusion_model."
    adapter = {k: v for k, v in build_adapter(spec, seed, scale=1.0).state_dict().items()}
    with safe_open(str(ckpt), "pt") as f:
        base = {mod.diffusers_key(k[len(prefix):], spec.num_res_blocks): k for k in f.keys()
                if k.startswith(prefix) and not k.startswith(prefix + "label_emb.")}
        first = f.get_slice(next(iter(base.values())))
        file_dtype = dtype or {"F16": torch.float16, "BF16": torch.bfloat16}.get(first.get_dtype(), torch.float32)
        entries = [(k, file_dtype, tuple(f.get_slice(v).get_shape())) for k, v in base.items()]
        entries += [(k, file_dtype, tuple(v.shape)) for k, v in adapter.items()]

        def make(key):
            t = adapter[key] if key in adapter else f.get_tensor(base[key])
            return t.to(file_dtype).contiguous()
        stream.write_streamed(str(out), entries, make, {"motionkit_test_model": "benchmark Puppet-Master"})


def write_full_size(out: Path, dtype=torch.float32, seed: int = 0) -> int:
    """A full-size file with every key and shape of the official manifest (6.7 GB in fp32), written tensor by
    tensor with cheap seeded values (scaled random blocks, tiled): for the loading-memory measurement."""
    stream = pack_module("safetensors_stream")
    shapes = manifest()
    gen = torch.Generator().manual_seed(seed)
    block = torch.randn(1 << 20, generator=gen)
    entries = [(k, dtype, shapes[k]) for k in sorted(shapes)]

    def make(key):
        shape = shapes[key]
        n = math.prod(shape)
        reps = -(-n // block.numel())
        fan_in = math.prod(shape[1:]) if len(shape) > 1 else 1
        values = block.repeat(reps)[:n] if reps > 1 else block[:n]
        return (values / math.sqrt(fan_in) * 0.1).to(dtype).reshape(shape)
    stream.write_streamed(str(out), entries, make, {"motionkit_test_model": "full-size Puppet-Master layout, random"})
    return sum(math.prod(s) for s in shapes.values())


# --- registration in a running ComfyUI (test harness only) -------------------------------------------

def register_tiny_puppet_master() -> None:
    """Make ComfyUI's detection accept the tiny Puppet-Master UNet's shape (an SVD img2vid). Idempotent."""
    import comfy.supported_models
    from motionkit_testing.tiny_models import _supported_model
    cls = _supported_model(PM_TINY)
    if cls.__name__ not in {m.__name__ for m in comfy.supported_models.models}:
        comfy.supported_models.models.append(cls)


__all__ = ["PM_TINY", "PM_MID", "PM_FULL", "TINY_FILE", "ensure_tiny_puppet_master", "register_tiny_puppet_master"]
