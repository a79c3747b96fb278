"""Control World plumbing (benchmarks/control_world): the generator's ground truth, the colour tracker on
videos made by construction, the ObjMC arithmetic, and the ground-truth arrows requested through the real
Arrows to Trajectories node. Learned quality is measured by benchmarks/control_world/evaluate.py, not here."""
from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def world_module(name: str):
    package = "motionkit_control_world"
    if package not in sys.modules:
        spec = importlib.util.spec_from_file_location(package, REPO / "benchmarks" / "control_world" / "__init__.py",
                                                      submodule_search_locations=[str(REPO / "benchmarks" / "control_world")])
        sys.modules[package] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[package])
    return importlib.import_module(f"{package}.{name}")


world = world_module("world")
measure = world_module("measure")


@pytest.mark.parametrize("seed", range(6))
def test_clips_are_seeded_and_their_ground_truth_is_consistent(seed):
    a, b = world.make_clip(seed), world.make_clip(seed)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.centers, b.centers)
    assert not np.array_equal(a.frames, world.make_clip(seed + 100).frames)
    t, k = a.centers.shape[:2]
    assert a.frames.shape == (t, 64, 64, 3) and a.masks.shape == (k, 64, 64) and 1 <= k <= 3
    for j in range(k):
        # frame 0 shows sprite j's colour exactly where its mask is (no other sprite overlaps it)
        inside = a.masks[j] > 0.5
        colour_err = np.abs(a.frames[0][inside] - a.colors[j]).max(-1)
        assert np.median(colour_err) < 1e-6
        # constant speed along the path: equal steps along a straight path, and the path's ends are reached
        assert np.allclose(a.centers[0, j], a.paths[j][0]) and np.allclose(a.centers[-1, j], a.paths[j][-1])
        if a.kinds[j] == "straight":
            steps = np.linalg.norm(np.diff(a.centers[:, j], axis=0), axis=1)
            assert np.allclose(steps, steps[0])
        if a.kinds[j] == "still":
            assert np.array_equal(a.centers[:, j], np.repeat(a.centers[:1, j], t, 0))
    # the ground-truth tracks move rigidly with their sprite
    path, ids = world.ground_truth_tracks(a)
    for n, j in enumerate(ids):
        assert np.allclose(path[:, n] - path[0, n], a.centers[:, j] - a.centers[0, j])


def test_the_tracker_recovers_sprites_of_a_video_made_by_construction():
    clip = world.make_clip(11, sprites=3)
    requested = measure.requested_positions(clip)
    got = measure.measure(clip.frames, clip, requested)
    assert got["objmc"] < 0.5 and got["lost"] == 0.0 and got["background"] == 0.0 and got["appearance"] < 0.2
    # the same video with every sprite shifted 3 px to the right: ObjMC = 3 px (to anti-aliasing), speed kept
    shifted = world.Clip(**{**clip.__dict__})
    frames = np.repeat(clip.background[None], clip.frames.shape[0], 0)
    for ti in range(frames.shape[0]):
        for j in range(len(clip.kinds)):
            cover = world.sprite_mask(clip.shapes[j], clip.centers[ti, j] + [3.0, 0.0], clip.radii[j], 64)[..., None]
            frames[ti] = frames[ti] * (1 - cover) + clip.colors[j] * cover
    off = measure.measure(frames, clip, requested)
    assert abs(off["objmc"] - 3.0) < 0.5, off
    assert abs(off["speed"] - got["speed"]) < 0.3
    # a sprite that vanishes is lost and costs its worst case, never less than any real miss
    gone = clip.frames.copy()
    gone[1:] = clip.background
    lost = measure.measure(gone, clip, requested)
    assert lost["lost"] > 0.8 and lost["objmc"] > 30 and lost["appearance"] == 1.0


def test_objmc_arithmetic():
    req = np.zeros((3, 2, 2))
    got = req.copy()
    got[1, 0] = [3.0, 4.0]       # 5 px off
    got[2, 1] = [np.nan, np.nan]  # lost: counts the farthest corner from (0, 0) in a 10 x 20 image
    assert measure.objmc(got, req, 10, 20) == pytest.approx((5 + 0 + 0 + np.hypot(10, 20)) / 4)
    # frame 0 never counts
    got[0] = 100.0
    assert measure.objmc(got, req, 10, 20) == pytest.approx((5 + np.hypot(10, 20)) / 4)
    # over the tracked sprite-frames only: the lost one is left out, not counted as the worst case
    assert measure.objmc_tracked(got, req) == pytest.approx(5 / 3)
    assert np.isnan(measure.objmc_tracked(np.full_like(req, np.nan), req))


@pytest.mark.parametrize("seed", [1, 5, 9])
def test_ground_truth_arrows_through_the_real_node_give_the_ground_truth_motion(comfy, seed):
    """Each moving sprite's arrow (the path polyline), fed to Arrows to Trajectories with the ground-truth
    masks and linear easing, moves every track of that sprite exactly as the sprite moves; still sprites are
    pinned."""
    import nodes
    clip = world.make_clip(seed)
    masks = torch.from_numpy(clip.masks)
    frames = clip.frames.shape[0]
    tracks, _ = nodes.NODE_CLASS_MAPPINGS["MotionKitArrowsToTracks"]().build(
        masks, clip.arrows_json, frames, 4, 0, "linear")["result"]
    path = tracks["track_path"].numpy().astype(np.float64)
    objects = tracks["motionkit"]["object"].numpy()
    assert path.shape[0] == frames and set(objects.tolist()) == set(range(len(clip.kinds)))
    for n, j in enumerate(objects):
        moved = path[:, n] - path[0, n]
        np.testing.assert_allclose(moved, clip.centers[:, j] - clip.centers[0, j], atol=2e-3)
        assert clip.masks[j][int(path[0, n, 1]), int(path[0, n, 0])] > 0.5
    assert json.loads(clip.arrows_json)["version"] == 1


def test_the_whole_pipeline_at_ci_size(tmp_path):
    """evaluate.py end to end with a handful of steps: the world VAE and UNet trained and cached, a
    TrackAdapter trained by scripts/train_trackadapter.py on world clips, every row sampled through ComfyUI's
    executor on one held-out clip, the table and, last, one JSON object with every row (plumbing only)."""
    import os
    import subprocess
    env = {**os.environ, "MOTIONKIT_CONTROL_WORLD_CACHE": str(tmp_path / "cache")}
    args = [sys.executable, str(REPO / "benchmarks" / "control_world" / "evaluate.py"), "--clips", "1", "--seed", "3",
            "--steps", "2", "--threads", "1", "--vae-steps", "2", "--unet-steps", "2", "--pool", "2",
            "--trackadapter-steps", "2", "--trackadapter-clips", "4", "--still-moving-steps", "2", "--finetune-steps", "2",
            "--strips", str(tmp_path / "strips")]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    sampled = ["no control", "TrackAdapter, trained", "TrackAdapter, trained, lambda_bg 1",
               "TrackAdapter, training-free", "Motion field + Motion-Augmented Attention", "All-to-First",
               "All-to-First + TrackAdapter, trained",
               "All-to-First + TrackAdapter, training-free", "All-to-First + Motion field + MAA",
               "Still-Moving motion adapter, alpha -1", "Still-Moving motion adapter, alpha 0",
               "Still-Moving motion adapter, alpha +1", "no control, world UNet fine-tuned further without All-to-First",
               "All-to-First, world UNet fine-tuned with All-to-First", "no control, world UNet fine-tuned with All-to-First",
               "All-to-First + TrackAdapter, trained, world UNet fine-tuned with All-to-First",
               "All-to-First + TrackAdapter, training-free, world UNet fine-tuned with All-to-First",
               "All-to-First + Motion field + MAA, world UNet fine-tuned with All-to-First"]
    assert list(result["rows"]) == (["ground-truth video (measurement floor)",
                                     "ground-truth video through the world VAE"] + sampled + ["Puppet-Master drags"])
    assert "not_run" in result["rows"]["Puppet-Master drags"]
    for name in sampled:
        row = result["rows"][name]
        assert set(row) == {"objmc", "objmc_tracked", "appearance", "background", "speed", "lost"}
        assert 0.0 <= row["lost"]["mean"] <= 1.0
    floor = result["rows"]["ground-truth video (measurement floor)"]
    assert floor["objmc"]["median"] < 0.5 and floor["lost"]["mean"] == 0.0
    assert result["training"]["world_model"]["plan"]["unet_steps"] == 2
    cached = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert any(n.startswith("motionkit_control_world_") and n.endswith("_ta2_c4.safetensors") for n in cached), cached
    assert any(n.endswith("_still_moving_2.safetensors") for n in cached), cached
    assert result["training"]["still_moving"]["steps"] == 2
    assert (tmp_path / "strips" / "clip_000.png").is_file()
    assert set(result["per_clip"]) == set(sampled) and all(len(v["objmc"]) == 1 for v in result["per_clip"].values())
    # the two fine-tunes continue the 2-step world UNet (steps 3..4) with the same random stream (batches, noise
    # levels, noise), so their first losses differ only because the All-to-First node's patch is on in one
    finetunes = result["training"]["finetunes"]
    assert {finetunes[n]["patched"] for n in ("a2f", "plain")} == {True, False}
    assert all(finetunes[n]["steps"] == 2 and finetunes[n]["base_unet_steps"] == 2 for n in finetunes)
    losses = re.findall(r"fine-tuning \S+ for 2 more UNet steps \((\w+)\).*?UNet step 3/4 loss ([\d.]+)",
                        done.stdout, re.S)
    assert [n for n, _ in losses] == ["a2f", "plain"] and losses[0][1] != losses[1][1], losses
    # a second run finds everything in the cache: nothing is trained again
    again = subprocess.run(args[:-2] + ["--train-only"], env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    training = json.loads(again.stdout.strip().splitlines()[-1])["training"]
    assert training["trackadapter"]["minutes_this_run"] == 0.0 and training["still_moving"]["minutes_this_run"] == 0.0
    assert "UNet step" not in again.stdout + again.stderr
    # a longer world model continues the cached shorter one, and its TrackAdapter continues that world model's
    # adapter (resumed at step 2, one more step), not a fresh one; --finetune-steps 0 (as the demo trains) leaves
    # out the All-to-First fine-tunes, and their rows say they were not run
    longer_args = args[:-2] + ["--rows", "fine-tuned"]
    longer_args[longer_args.index("--unet-steps") + 1] = "3"
    longer_args[longer_args.index("--trackadapter-steps") + 1] = "3"
    longer_args[longer_args.index("--finetune-steps") + 1] = "0"
    longer = subprocess.run(longer_args, env=env, capture_output=True, text=True, timeout=600)
    assert longer.returncode == 0, longer.stderr[-3000:]
    log = longer.stdout + longer.stderr
    training = json.loads(longer.stdout.strip().splitlines()[-1])["training"]
    assert training["world_model"]["continued_from"]["unet_steps"] == 2
    assert "UNet step 3/3" in log and "UNet step 1/3" not in log
    previous = training["world_model"]["continued_from"]["file"][:-len(".safetensors")]
    assert training["trackadapter"]["continued_from"] == f"{previous}_ta2_c4.safetensors"
    assert "steps 2..3" in log, log[-3000:]
    assert training["trackadapter"]["file"].endswith("_ta3_c4.safetensors")
    assert training["finetunes"] == {} and "fine-tuning" not in log
    rows = json.loads(longer.stdout.strip().splitlines()[-1])["rows"]
    assert [n for n in rows if "fine-tuned" in n] == [n for n in sampled if "fine-tuned" in n]
    assert all("--finetune-steps 0" in rows[n]["not_run"] for n in rows if "fine-tuned" in n)
