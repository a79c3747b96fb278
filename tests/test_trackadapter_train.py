"""The TrackAdapter trainer on the tiny SVD: the combined loss goes down on a fixed batch, the saved file loads
through the loader node and reproduces the trainer's outputs exactly, a resumed run equals an unbroken one,
the clip format is validated, and the command line runs."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from motionkit_testing.pack import pack_module
from motionkit_testing.svd import load_tiny
from motionkit_testing.trackadapter import moving_disc_clip, node_module, trainer_module

REPO = Path(__file__).resolve().parents[1]
TINY = {"encoder_channels": (4, 8, 8), "feature_channels": 8}


@pytest.fixture(scope="module")
def clips_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    moving_disc_clip(folder / "disc_a.safetensors", shift=3.0, seed=0)
    moving_disc_clip(folder / "disc_b.safetensors", shift=-2.0, seed=1)
    return folder


@pytest.fixture(scope="module")
def tiny(comfy, tiny_ckpt):
    return load_tiny(tiny_ckpt)


def read_clips(folder):
    reader = pack_module("trackadapter_clips").read_clip
    return [reader(p) for p in sorted(folder.glob("*.safetensors"))]


def apply_model_output(model, adapter, clip, lambda_bg=0.4, tau=0.1):
    """x0 prediction of the model patched with ``adapter`` (the node's path), on a fixed noisy input."""
    mod = node_module()
    run = mod.TrackRun(clip.tracks, adapter)
    patched = mod.patch_model(model, run, lambda_bg, tau, 1.0, 0.0, 1.0)
    import comfy.model_management
    comfy.model_management.load_models_gpu([patched], force_full_load=True)
    gen = torch.Generator().manual_seed(5)
    x = clip.x0 + 2.0 * torch.randn(clip.x0.shape, generator=gen)
    sigma = torch.full((x.shape[0],), 2.0)
    with torch.no_grad():
        return patched.model.apply_model(x, sigma, **clip.conds, transformer_options={"cond_or_uncond": [0]})


@pytest.mark.slow
def test_trainer_lowers_the_loss_and_its_file_reproduces_its_outputs(tiny, clips_dir, base_dir):
    model, clip_vision, vae = tiny
    trainer = trainer_module()
    out = base_dir / "models" / "trackadapter" / "trained_tiny.safetensors"
    settings = trainer.TrainSettings(steps=30, learning_rate=3e-3, fixed_batch=True, save_every=30, seed=2, **TINY)
    log = []
    result = trainer.train(model, clip_vision, vae, read_clips(clips_dir)[:1], settings, out=out, log=log.append)
    losses = [h["loss"] for h in result.history]
    attention = [h["attention"] for h in result.history]
    diffusion = [h["diffusion"] for h in result.history]
    print(f"\n[trackadapter trainer] combined loss {losses[0]:.5f} -> {losses[-1]:.5f} over 30 steps "
          f"(diffusion {diffusion[0]:.5f} -> {diffusion[-1]:.5f}, attention {attention[0]:.5f} -> {attention[-1]:.5f})")
    assert len(losses) == 30 and all(np.isfinite(losses))
    # A fixed batch makes the loss a deterministic function of the weights: any drop is the optimiser's.
    # The random tiny UNet's diffusion error is mostly out of the adapter's reach; the attention term is not.
    assert losses[-1] < losses[0] - 1e-3 and all(b <= a + 1e-6 for a, b in zip(losses, losses[1:])), losses
    assert diffusion[-1] < diffusion[0] and attention[-1] < 0.1 * attention[0]
    assert any("step 30/30" in line for line in log) and out.is_file()

    (loaded,) = __import__("nodes").NODE_CLASS_MAPPINGS["MotionKitTrackAdapterLoader"]().load(out.name)
    trained = result.adapter
    assert loaded.config == trained.config and loaded.config.layers == tuple(node_module().layer_specs(model))
    for (k, a), (k2, b) in zip(trained.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    clip = trainer.encode_clip(model, clip_vision, vae, read_clips(clips_dir)[0])
    mine = apply_model_output(model, trained, clip)
    theirs = apply_model_output(model, loaded, clip)
    assert torch.equal(mine, theirs)
    fresh = trainer.new_adapter(model, settings).eval().requires_grad_(False)
    assert (apply_model_output(model, fresh, clip) - mine).abs().max() > 1e-4    # training changed the outputs
    # the trainer's own objective (soft threshold) on the fixed batch: reproduced exactly by the loaded weights,
    # and after the 30th update it is lower still
    _, sigma, noise = trainer.step_draw(settings, 0, [clip])
    after = trainer_loss(model, trained, clip, sigma, noise, settings)
    assert all(torch.equal(x, y) for x, y in zip(after, trainer_loss(model, loaded, clip, sigma, noise, settings)))
    print(f"[trackadapter trainer] after the 30th update: combined {float(after[0]):.5f}, diffusion "
          f"{float(after[1]):.5f}, attention {float(after[2]):.6f}")
    assert float(after[0]) < losses[-1]


def trainer_loss(model, adapter, clip, sigma, noise, settings):
    """The trainer's ``(L, L_diff, L_attn)`` for ``adapter`` on one clip, noise level and noise."""
    import comfy.model_management
    mod = node_module()
    run = mod.TrackRun(clip.tracks, adapter)
    patched = mod.patch_model(model, run, 1.0, settings.tau, 1.0, 0.0, 1.0)
    comfy.model_management.load_models_gpu([patched], force_full_load=True)
    with torch.no_grad():
        return trainer_module().losses(patched, run, clip, sigma, noise, settings)


@pytest.mark.slow
def test_command_line_trains_and_resumes_exactly_like_an_unbroken_run(tiny, clips_dir, tmp_path, comfy_path, tiny_ckpt,
                                                                      capsys):
    """The CLI (in this process: the tiny test shapes are registered here) writes weights and a checkpoint;
    --resume continues from it, and the result equals an unbroken in-process run bit for bit."""
    spec = importlib.util.spec_from_file_location("train_trackadapter_cli", REPO / "scripts" / "train_trackadapter.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    out = tmp_path / "cli.safetensors"
    common = ["--checkpoint", tiny_ckpt, "--clips", str(clips_dir), "--out", str(out), "--device", "cpu",
              "--comfyui", str(comfy_path), "--encoder-channels", "4,8,8", "--feature-channels", "8", "--lr", "1e-3",
              "--seed", "3", "--save-every", "1"]
    assert cli.main(common + ["--steps", "1"]) == 0
    first = capsys.readouterr().out
    assert "step 1/1 loss" in first and out.is_file() and (tmp_path / "cli.safetensors.train.pt").is_file()
    assert cli.main(common + ["--steps", "2", "--resume"]) == 0
    second = capsys.readouterr().out
    assert "resumed from" in second and "at step 1" in second and "step 2/2 loss" in second and "step 1/2" not in second
    state = torch.load(str(tmp_path / "cli.safetensors.train.pt"), weights_only=True)
    assert state["step"] == 2 and state["format"] == "motionkit.trackadapter_checkpoint"

    model, clip_vision, vae = tiny
    trainer = trainer_module()
    settings = trainer.TrainSettings(steps=2, learning_rate=1e-3, seed=3, save_every=100, **TINY)
    unbroken = trainer.train(model, clip_vision, vae, read_clips(clips_dir), settings, log=lambda m: None).adapter
    resumed = pack_module("trackadapter").load_adapter(str(out))
    for (k, a), b in zip(unbroken.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    assert json.loads(resumed.config.to_json()) == json.loads(unbroken.config.to_json())


def test_clip_files_are_validated(tmp_path):
    clips = pack_module("trackadapter_clips")
    good = moving_disc_clip(tmp_path / "good.safetensors")
    clip = clips.read_clip(good)
    assert clip.frames.shape == (4, 64, 64, 3) and clip.tracks.path.shape == (4, 9, 2)
    assert clip.masks.shape == (1, 64, 64)
    assert clip.tracks.width == 64 and (clip.fps, clip.motion_bucket_id) == (6, 127)
    from safetensors.torch import load_file, save_file
    tensors = load_file(str(good))
    meta = {"format": clips.CLIP_FORMAT, "format_version": "1"}
    bad = {
        "version": ({**tensors}, {**meta, "format_version": "3"}, "format_version '3'"),
        "format": ({**tensors}, {"format": "video"}, "metadata 'format' is 'video'"),
        "missing": ({k: v for k, v in tensors.items() if k != "masks"}, meta, r"missing tensors \['masks'\]"),
        "ids": ({**tensors, "object_ids": torch.full((9,), 2)}, meta,
                r"'object_ids' must hold one id per track in \[-1, 0\]"),
        "frames": ({**tensors, "track_path": tensors["track_path"][:3]}, meta,
                   r"'track_path' is \[3, 9, 2\]; expected \[4"),
    }
    for name, (t, m, message) in bad.items():
        save_file(t, str(tmp_path / f"{name}.safetensors"), metadata=m)
        with pytest.raises(ValueError, match=message):
            clips.read_clip(tmp_path / f"{name}.safetensors")
