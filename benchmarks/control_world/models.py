"""The Control World's video model, trained here on world clips and cached in the user cache (never committed).

- **VAE**: ComfyUI's TAESD layout (``first_stage_model.taesd_*``, detected by ComfyUI's stock VAE code),
  trained on world frames (random crops; the network is fully convolutional) to reconstruct them.
- **UNet**: ComfyUI's own SVD ``UNetModel`` at the harness's ``WORLD`` size (tests/motionkit_testing/
  tiny_models.py registers it with ComfyUI's detection), trained with SVD's objective (EDM, v-prediction,
  ``ln sigma ~ N(0.7, 1.6^2)``, loss weight ``(sigma^2 + 1) / sigma^2`` on x0) and conditioned on frame 0
  exactly as SVD is: ComfyUI's ``SVD_img2vid_Conditioning`` (frame-0 latent concatenated to every frame's
  input, the frame's CLIP-vision embedding as cross-attention context, fps / motion bucket / augmentation
  as ``y``) and the model's own ``extra_conds``.
- **CLIP vision**: the harness's tiny random encoder, frozen (its embedding of frame 0 is one more, fixed
  view of the first frame).

The checkpoint is a single SVD-layout file that ComfyUI's *Image Only Checkpoint Loader* loads. Fine-tunes of it
(``finetuned_checkpoint``: more steps with a patch such as All-to-First on, or the same steps without) are files
of the same layout.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from . import world

P_MEAN, P_STD = 0.7, 1.6   # SVD's training noise levels
SD_LATENT_SCALE = 0.18215  # SVD's latent format (ComfyUI multiplies VAE latents by it)


@dataclass(frozen=True)
class TrainPlan:
    vae_steps: int = 3000
    vae_batch: int = 8
    vae_crop: int = 32
    vae_lr: float = 1.5e-3
    unet_steps: int = 20000
    unet_batch: int = 2           # clips per step
    unet_lr: float = 3e-4
    pool: int = 384               # pre-encoded training clips
    seed: int = 0
    world: world.WorldSpec = world.WorldSpec()

    def key(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def vae_key(self) -> str:
        fields = {k: v for k, v in asdict(self).items() if k.startswith("vae_") or k in ("seed", "world")}
        return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:12]


def cache_dir() -> Path:
    """``$MOTIONKIT_CONTROL_WORLD_CACHE``, else ``control_world`` in MotionKit's user cache folder."""
    if os.environ.get("MOTIONKIT_CONTROL_WORLD_CACHE"):
        return Path(os.environ["MOTIONKIT_CONTROL_WORLD_CACHE"]).expanduser()
    base = os.environ.get("MOTIONKIT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "motionkit")
    return Path(base) / "control_world"


def training_seed(plan: TrainPlan, index: int) -> int:
    """Training clips use seeds from 10**9 up: the evaluation's ``--seed`` draws below that never meet them."""
    return 10 ** 9 + plan.seed * 10 ** 6 + index


# --- VAE ---------------------------------------------------------------------------------------------

def _init_(taesd: torch.nn.Module, seed: int) -> None:
    """He initialisation for the ReLU convolutions, each residual block's last convolution at zero (every
    block starts as its skip path), zero biases, identity latent scale and shift."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(taesd.named_parameters(), key=lambda kv: kv[0]):
            if p.ndim > 1:
                p.copy_(torch.randn(p.shape, generator=g) * math.sqrt(2.0 / p[0].numel()))
            elif name.endswith("vae_scale"):
                p.fill_(1.0)
            else:
                p.zero_()
        for module in taesd.modules():
            if type(module).__name__ == "Block":
                module.conv[-1].weight.zero_()


def _sprite_crop(rng: np.random.Generator, clip: "world.Clip", t: int, crop: int) -> np.ndarray:
    """A crop on the latent grid, around a sprite three times out of four (a random place otherwise)."""
    size = clip.spec.size
    if rng.random() < 0.75:
        cx, cy = clip.centers[t, int(rng.integers(len(clip.kinds)))] + rng.normal(0, crop / 6, size=2)
        x, y = (np.clip(np.array([cx, cy]) - crop / 2, 0, size - crop) // 8 * 8).astype(int)
    else:
        x, y = rng.integers(0, size - crop + 1, size=2) // 8 * 8
    return clip.frames[t, y:y + crop, x:x + crop]


def train_vae(plan: TrainPlan, log: Callable[[str], None] = print) -> dict:
    """A TAESD (ComfyUI's class) trained to reconstruct world frames; its state dict."""
    import comfy.taesd.taesd
    taesd = comfy.taesd.taesd.TAESD(latent_channels=4)
    _init_(taesd, plan.seed)
    params = list(taesd.taesd_encoder.parameters()) + list(taesd.taesd_decoder.parameters())
    opt = torch.optim.Adam(params, lr=plan.vae_lr)
    rng = np.random.default_rng(plan.seed + 17)
    crop = plan.vae_crop
    tick = time.perf_counter()
    for step in range(plan.vae_steps):
        batch = []
        for _ in range(plan.vae_batch):
            clip = world.make_clip(training_seed(plan, int(rng.integers(10 ** 6))), plan.world)
            batch.append(_sprite_crop(rng, clip, int(rng.integers(len(clip.frames))), crop))
        pixels = torch.from_numpy(np.stack(batch)).movedim(-1, 1)
        latent = taesd.taesd_encoder(pixels)
        recon = taesd.taesd_decoder(latent)
        loss = (recon - pixels).abs().mean() + ((recon - pixels) ** 2).mean()
        for group in opt.param_groups:
            group["lr"] = plan.vae_lr * min(1.0, (step + 1) / 100)   # warm-up
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % 100 == 0 or step == plan.vae_steps - 1:
            log(f"[control world] VAE step {step + 1}/{plan.vae_steps} loss {loss.item():.4f} "
                f"({time.perf_counter() - tick:.0f} s)")
    # Scale and centre the latents as SD's VAE scale factor does: ComfyUI's TAESD divides the encoder's output
    # by vae_scale and adds vae_shift (the decoder undoes both), and SVD multiplies latents by 0.18215; so
    # the diffusion model sees world latents with mean 0 and standard deviation 1, as EDM assumes.
    with torch.no_grad():
        frames = np.concatenate([world.make_clip(training_seed(plan, 9 * 10 ** 5 + i), plan.world).frames
                                 for i in range(16)])
        raw = taesd.taesd_encoder(torch.from_numpy(frames).movedim(-1, 1))
        taesd.vae_scale.fill_(float(raw.std()) * SD_LATENT_SCALE)
        taesd.vae_shift.fill_(-float(raw.mean()) / float(taesd.vae_scale))
        log(f"[control world] VAE latent scale {float(taesd.vae_scale):.5f}, shift {float(taesd.vae_shift):.4f}")
    return {k: v.detach().contiguous() for k, v in taesd.state_dict().items()}


# --- checkpoint ----------------------------------------------------------------------------------------

def write_checkpoint(path: Path, unet_sd: dict, vae_sd: dict, clip_sd: dict, meta: dict) -> Path:
    from safetensors.torch import save_file
    from motionkit_testing.tiny_models import CLIP_PREFIX
    sd = {f"model.diffusion_model.{k}": v.detach().float().contiguous() for k, v in unet_sd.items()}
    sd.update({f"first_stage_model.{k}": v.detach().float().contiguous() for k, v in vae_sd.items()})
    sd.update({f"{CLIP_PREFIX}{k}": v.detach().float().contiguous() for k, v in clip_sd.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    save_file(sd, str(tmp), metadata={"motionkit_control_world": json.dumps(meta)})
    os.replace(tmp, path)
    return path


# --- UNet ----------------------------------------------------------------------------------------------

def svd_conditioning(model, clip_vision, vae, frames: torch.Tensor, fps: int = 6, motion_bucket: int = 127) -> tuple:
    """``(x0, conds)`` of one clip as SVD trains: ComfyUI's SVD_img2vid_Conditioning on frame 0 and the model's
    extra_conds; x0 = the clip's latents in model space."""
    from comfy_extras.nodes_video_model import SVD_img2vid_Conditioning
    count, height, width = frames.shape[:3]
    with torch.no_grad():
        positive, _, _ = SVD_img2vid_Conditioning().encode(clip_vision, frames[:1], vae, width, height, count,
                                                           motion_bucket, fps, 0.0)
        x0 = model.model.process_latent_in(vae.encode(frames)).float()
        pooled, extra = positive[0]
        made = model.model.extra_conds(noise=x0, cross_attn=pooled, device=x0.device, **extra)
        conds = {k: c.process_cond(batch_size=count, area=None).concat([]) for k, c in made.items()}
    return x0, conds


def _batch(items: list) -> tuple:
    x0 = torch.cat([x for x, _ in items])
    conds = {}
    for key, value in items[0][1].items():
        conds[key] = torch.cat([c[key] for _, c in items]) if torch.is_tensor(value) else value
    return x0, conds


def train_unet(model, clip_vision, vae, plan: TrainPlan, log: Callable[[str], None] = print, start: int = 0) -> dict:
    """Train the checkpoint's UNet (in place, through ComfyUI's model object) on world clips; its state dict.
    ``start``: the steps the UNet has already had (a shorter cached run of the same plan that this one
    continues; fresh optimizer state, the warm-up again, and a random stream of its own)."""
    log(f"[control world] encoding {plan.pool} training clips")
    pool = [svd_conditioning(model, clip_vision, vae,
                             torch.from_numpy(world.make_clip(training_seed(plan, 10 ** 5 + i), plan.world).frames))
            for i in range(plan.pool)]
    unet = model.model.diffusion_model
    unet.train().requires_grad_(True)
    opt = torch.optim.AdamW(unet.parameters(), lr=plan.unet_lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(plan.seed + 29 + start)
    frames = plan.world.frames
    tick = time.perf_counter()
    with torch.inference_mode(False), torch.enable_grad():
        for step in range(start, plan.unet_steps):
            pick = torch.randint(len(pool), (plan.unet_batch,), generator=g).tolist()
            x0, conds = _batch([pool[i] for i in pick])
            sigma = torch.exp(P_MEAN + P_STD * torch.randn(plan.unet_batch, generator=g)).repeat_interleave(frames)
            noise = torch.randn(x0.shape, generator=g)
            lr = plan.unet_lr * min(1.0, (step - start + 1) / 200)      # short warm-up
            for group in opt.param_groups:
                group["lr"] = lr
            pred = model.model.apply_model(x0 + sigma.view(-1, 1, 1, 1) * noise, sigma, **conds,
                                           transformer_options={"cond_or_uncond": [0] * plan.unet_batch})
            weight = ((sigma ** 2 + 1) / sigma ** 2).view(-1, 1, 1, 1)
            loss = (weight * (pred.float() - x0) ** 2).mean()
            if not math.isfinite(loss.item()):
                raise RuntimeError(f"world UNet training diverged at step {step + 1} (loss {loss.item()})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
            opt.step()
            if (step - start) % 100 == 0 or step == plan.unet_steps - 1:
                log(f"[control world] UNet step {step + 1}/{plan.unet_steps} loss {loss.item():.4f} "
                    f"({time.perf_counter() - tick:.0f} s)")
    unet.eval().requires_grad_(False)
    return {k: v.detach().contiguous() for k, v in unet.state_dict().items()}


def finetuned_checkpoint(plan: TrainPlan, steps: int, tag: str, checkpoints_dir: Path,
                         patch: Optional[Callable] = None, log: Callable[[str], None] = print) -> tuple[str, dict]:
    """The trained world model, trained ``steps`` more UNet steps with ``patch`` (a function from ComfyUI's model
    object to a patched clone, e.g. the pack's All-to-First Attention node) on at every step, as Puppet-Master
    trains its UNet with all-to-first attention; ``patch=None`` is the control: the same batches, noise levels
    and noise (the same random stream) without it. Cached as ``..._ft{steps}_{tag}``; its file name in
    ``checkpoints_dir`` (linked from the cache) and its training report."""
    from safetensors.torch import load_file
    base, _ = world_checkpoint(plan, checkpoints_dir, log)
    name = f"motionkit_control_world_{plan.key()}_ft{steps}_{tag}.safetensors"
    cached = cache_dir() / name
    if not cached.is_file():
        import comfy.sd
        from motionkit_testing.tiny_models import CLIP_PREFIX
        log(f"[control world] fine-tuning {base} for {steps} more UNet steps ({tag})")
        model, _, vae, clip_vision = comfy.sd.load_checkpoint_guess_config(
            str(cache_dir() / base), output_vae=True, output_clip=False, output_clipvision=True)
        trained = patch(model) if patch is not None else model
        trained.patch_model()   # applies the clone's object patches (the patch's forwards) to the network
        tick = time.perf_counter()
        try:
            unet_sd = train_unet(trained, clip_vision, vae, replace(plan, unet_steps=plan.unet_steps + steps), log,
                                 start=plan.unet_steps)
        finally:
            trained.unpatch_model()
        report = {"fine_tuned_from": base, "base_unet_steps": plan.unet_steps, "steps": steps, "tag": tag,
                  "patched": patch is not None, "unet_minutes": (time.perf_counter() - tick) / 60,
                  "threads": torch.get_num_threads()}
        rest = load_file(str(cache_dir() / base))
        vae_sd = {k[len("first_stage_model."):]: v for k, v in rest.items() if k.startswith("first_stage_model.")}
        clip_sd = {k[len(CLIP_PREFIX):]: v for k, v in rest.items() if k.startswith(CLIP_PREFIX)}
        write_checkpoint(cached, unet_sd, vae_sd, clip_sd, report)
        cached.with_suffix(".json").write_text(json.dumps(report, indent=1))
        log(f"[control world] fine-tuned in {report['unet_minutes']:.1f} min: {cached}")
    return link_into(checkpoints_dir, cached), read_report(cached)


def link_into(folder: Path, cached: Path) -> str:
    """``cached`` linked into a ComfyUI model ``folder`` under its own name (unless that name is already there);
    the name."""
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / cached.name).exists():
        (folder / cached.name).symlink_to(cached)
    return cached.name


def read_report(path: Path) -> dict:
    """The JSON report cached beside ``path`` (the same name with ``.json``), or {} when there is none."""
    report = path.with_suffix(".json")
    return json.loads(report.read_text()) if report.is_file() else {}


def cached_vae(plan: TrainPlan, log: Callable[[str], None] = print) -> tuple[dict, float]:
    """The trained VAE's state dict (trained and cached on the first call) and the minutes it took."""
    from safetensors.torch import load_file, save_file
    path = cache_dir() / f"vae_{plan.vae_key()}.safetensors"
    if path.is_file():
        return load_file(str(path)), float(read_report(path).get("minutes", 0.0))
    tick = time.perf_counter()
    sd = train_vae(plan, log)
    minutes = (time.perf_counter() - tick) / 60
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(path))
    path.with_suffix(".json").write_text(json.dumps({"minutes": minutes, "steps": plan.vae_steps}))
    return sd, minutes


def world_file_name(plan: TrainPlan) -> str:
    """The cached world checkpoint's file name (its training report is the same name with ``.json``)."""
    return f"motionkit_control_world_{plan.key()}.safetensors"


def world_key(file_name: str) -> str:
    """The plan key in a world checkpoint's file name (the inverse of world_file_name)."""
    return file_name[len("motionkit_control_world_"):-len(".safetensors")]


def shorter_run(plan: TrainPlan) -> Optional[tuple]:
    """``(unet_steps, file, report)`` of the longest cached world model trained with this plan but fewer UNet
    steps (which a longer plan continues instead of starting over), or None."""
    mine = json.loads(json.dumps(asdict(plan), default=str))
    mine.pop("unet_steps")
    best = None
    for report_path in cache_dir().glob("motionkit_control_world_*.json"):
        try:
            report = json.loads(report_path.read_text())
            other = dict(report["plan"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        steps = other.pop("unet_steps", None)
        weights = report_path.with_suffix(".safetensors")
        if (other == mine and isinstance(steps, int) and steps < plan.unet_steps and weights.is_file()
                and (best is None or steps > best[0])):
            best = (steps, weights, report)
    return best


def world_checkpoint(plan: TrainPlan, checkpoints_dir: Path, log: Callable[[str], None] = print) -> tuple[str, dict]:
    """The trained world checkpoint's file name in ``checkpoints_dir`` (linked from the cache; trained on the
    first call, which takes minutes) and its training report."""
    from motionkit_testing import tiny_models as tm
    name = world_file_name(plan)
    cached = cache_dir() / name
    report_path = cached.with_suffix(".json")
    if not cached.is_file():
        report = {"plan": json.loads(json.dumps(asdict(plan), default=str))}
        vae_sd, report["vae_minutes"] = cached_vae(plan, log)
        clip_sd = tm.build_clip_vision_sd(tm.WORLD, seed=plan.seed + 2)
        unet_sd = tm.build_unet(tm.WORLD, seed=plan.seed).state_dict()
        shorter = shorter_run(plan)
        start = 0
        if shorter is not None:
            from safetensors.torch import load_file
            prefix = "model.diffusion_model."
            unet_sd = {k[len(prefix):]: v for k, v in load_file(str(shorter[1])).items() if k.startswith(prefix)}
            start = shorter[0]
            report["continued_from"] = {"file": shorter[1].name, "unet_steps": start,
                                        "unet_minutes": shorter[2].get("unet_minutes")}
            log(f"[control world] continuing {shorter[1].name} ({start} UNet steps) to {plan.unet_steps} steps")
        stage = cache_dir() / f"stage_{name}"
        write_checkpoint(stage, unet_sd, vae_sd, clip_sd, {"stage": "untrained UNet"})
        import comfy.sd
        model, _, vae, clip_vision = comfy.sd.load_checkpoint_guess_config(
            str(stage), output_vae=True, output_clip=False, output_clipvision=True)
        tick = time.perf_counter()
        unet_sd = train_unet(model, clip_vision, vae, plan, log, start)
        report["unet_minutes"] = (time.perf_counter() - tick) / 60
        report["threads"] = torch.get_num_threads()
        write_checkpoint(cached, unet_sd, vae_sd, clip_sd, report)
        stage.unlink(missing_ok=True)
        report_path.write_text(json.dumps(report, indent=1))
        log(f"[control world] trained in {report['vae_minutes'] + report['unet_minutes']:.1f} min: {cached}")
    return link_into(checkpoints_dir, cached), read_report(cached)
