"""The Wan bridge: ``example_workflows/click_to_mask_wan_tracks.json`` (Load Image -> 832x480 -> Click to
Mask -> Arrows to Trajectories -> Tracks to Coordinates -> core WanTrackToVideo (ATI) with the core
template's loaders) and MotionKit's TRACKS in core's Wan-Move node, without Wan weights.

The saved workflow runs through the real executor up to and including core WanTrackToVideo: what needs Wan
weights (text encoder, VAE, CLIP vision, the diffusion model and the sampler after it) is replaced by test
stand-ins (a conditioning, a VAE whose encode returns a Wan-shaped latent), the SAM loader loads the tiny SAM.
Asserted: the coordinate string core parses holds MotionKit's tracks (121 points each, pixels of the
832x480 frame), core's own resampling keeps MotionKit's pixel frame and frame timing, and the node's motion
mask is high where the tracks are in each latent frame. On hosts with Wan-Move (v0.33.0), core
WanMoveTrackToVideo takes MotionKit's TRACKS directly: its feature replacement moves each track's frame-0
latent cell to where the track is, every 4th frame, and skips frames where a track is hidden (pop-out)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from motionkit_testing import examples
from motionkit_testing.trajectory_example import EXAMPLE_IMAGE, write_example_image
from motionkit_testing.ui_format import ui_to_api
from motionkit_testing.workflows import load_workflow

REPO = Path(__file__).resolve().parents[1]
PATH = REPO / "example_workflows" / "click_to_mask_wan_tracks.json"
WIDTH, HEIGHT = examples.WAN_SIZE
NEEDS_WAN_WEIGHTS = {"UNETLoader", "ModelSamplingSD3", "CLIPLoader", "CLIPTextEncode", "VAELoader",
                     "CLIPVisionLoader", "CLIPVisionEncode", "KSampler", "VAEDecode", "SaveWEBM"}


class StubConditioning:
    """Test stand-in for CLIPTextEncode (no text encoder): an empty conditioning."""
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "make"
    CATEGORY = "testing"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    def make(self):
        return ([[torch.zeros(1, 4, 8), {}]],)


class StubWanVAE:
    """Test stand-in for the Wan 2.1 VAE: ``encode`` of a video [T, H, W, 3] returns the Wan latent shape
    [1, 16, (T - 1) // 4 + 1, H / 8, W / 8] whose frame 0 names its cell (channel 0: row, channel 1: column)
    and whose later frames are -1; it records what it was given."""
    seen: list = []

    def encode(self, pixels):
        StubWanVAE.seen.append(tuple(pixels.shape))
        frames, height, width = pixels.shape[0], pixels.shape[1], pixels.shape[2]
        latent = torch.full((1, 16, (frames - 1) // 4 + 1, height // 8, width // 8), -1.0)
        rows, cols = torch.meshgrid(torch.arange(height // 8.0), torch.arange(width // 8.0), indexing="ij")
        latent[0, 0, 0], latent[0, 1, 0] = rows, cols
        return latent


class StubVAELoader:
    RETURN_TYPES = ("VAE",)
    FUNCTION = "load"
    CATEGORY = "testing"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    def load(self):
        return (StubWanVAE(),)


class Sink:
    """An output node that takes anything, so the executor runs the nodes before it."""
    RETURN_TYPES = ()
    FUNCTION = "take"
    OUTPUT_NODE = True
    CATEGORY = "testing"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("*", {})}}

    @classmethod
    def VALIDATE_INPUTS(cls, input_types=None):
        return True

    def take(self, value):
        return {}


@pytest.fixture
def stand_ins(comfy, base_dir, monkeypatch):
    import nodes
    from motionkit_testing.tiny_sam import ensure_tiny_sam
    for name, cls in (("StubConditioning", StubConditioning), ("StubWanVAELoader", StubVAELoader), ("Sink", Sink)):
        monkeypatch.setitem(nodes.NODE_CLASS_MAPPINGS, f"MotionKitTest{name}", cls)
    write_example_image(base_dir / "input" / EXAMPLE_IMAGE)
    StubWanVAE.seen = []
    return ensure_tiny_sam(base_dir)["pth"]


def node_of(wf: dict, node_type: str) -> dict:
    (node,) = [n for n in wf["nodes"] if n["type"] == node_type]
    return node


def source(wf: dict, node_type: str, input_name: str) -> str:
    links = {link[0]: link for link in wf["links"]}
    link = next(i["link"] for i in node_of(wf, node_type)["inputs"] if i["name"] == input_name)
    return next(n["type"] for n in wf["nodes"] if n["id"] == links[link][1])


def test_the_example_is_the_core_wan_ati_pipeline():
    wf = load_workflow(PATH)
    chain = [("ImageScale", "image", "LoadImage"), ("MotionKitClickToMask", "image", "ImageScale"),
             ("MotionKitClickToMask", "sam_model", "MotionKitSAMLoader"),
             ("MotionKitArrowsToTracks", "masks", "MotionKitClickToMask"), ("MotionKitArrowsToTracks", "image", "ImageScale"),
             ("MotionKitTracksToCoordinates", "tracks", "MotionKitArrowsToTracks"),
             ("WanTrackToVideo", "tracks", "MotionKitTracksToCoordinates"), ("WanTrackToVideo", "start_image", "ImageScale"),
             ("WanTrackToVideo", "vae", "VAELoader"), ("WanTrackToVideo", "positive", "CLIPTextEncode"),
             ("WanTrackToVideo", "clip_vision_output", "CLIPVisionEncode"), ("CLIPVisionEncode", "clip_vision", "CLIPVisionLoader"),
             ("ModelSamplingSD3", "model", "UNETLoader"), ("KSampler", "model", "ModelSamplingSD3"),
             ("KSampler", "positive", "WanTrackToVideo"), ("KSampler", "latent_image", "WanTrackToVideo"),
             ("VAEDecode", "samples", "KSampler"), ("SaveWEBM", "images", "VAEDecode")]
    for node_type, input_name, expected in chain:
        assert source(wf, node_type, input_name) == expected, (node_type, input_name)
    # the tracks are pixels of the frame WanTrackToVideo makes: the still is scaled to exactly that size
    assert node_of(wf, "ImageScale")["widgets_values"] == ["lanczos", WIDTH, HEIGHT, "center"]
    assert node_of(wf, "WanTrackToVideo")["widgets_values"][1:5] == [WIDTH, HEIGHT, examples.WAN_LENGTH, 1]
    arrows = node_of(wf, "MotionKitArrowsToTracks")["widgets_values"]
    assert arrows[1] == examples.WAN_TRACK_FRAMES == 121
    doc = json.loads(arrows[0])
    assert doc["version"] == 2 and (doc["width"], doc["height"]) == (WIDTH, HEIGHT) and len(doc["anchors"]) == 8
    assert json.loads(node_of(wf, "MotionKitClickToMask")["widgets_values"][0])["width"] == WIDTH
    # the core template's models, each with its download metadata
    for node_type, model in (("UNETLoader", examples.WAN_ATI_UNET), ("CLIPLoader", examples.WAN_UMT5),
                             ("VAELoader", examples.WAN_VAE), ("CLIPVisionLoader", examples.WAN_CLIP_VISION),
                             ("MotionKitSAMLoader", examples.SAM_B)):
        node = node_of(wf, node_type)
        assert node["properties"]["models"] == [model] and node["widgets_values"][0] == model["name"]
    assert node_of(wf, "CLIPLoader")["widgets_values"][1] == "wan"
    assert node_of(wf, "KSampler")["widgets_values"][2:6] == [20, 3.0, "uni_pc", "simple"]
    assert (PATH.with_suffix(".jpg")).is_file()


def wan_prompt(object_info: dict, sam_name: str) -> tuple[dict, dict]:
    """The saved example as an API prompt, the Wan-weight nodes replaced by stand-ins; and its ids by type."""
    prompt = ui_to_api(load_workflow(PATH), object_info)
    ids = {}
    for node_id, node in list(prompt.items()):
        ids.setdefault(node["class_type"], node_id)
        if node["class_type"] in NEEDS_WAN_WEIGHTS:
            del prompt[node_id]
    prompt[ids["MotionKitSAMLoader"]]["inputs"]["model_name"] = sam_name
    prompt["cond"] = {"class_type": "MotionKitTestStubConditioning", "inputs": {}}
    prompt["vae"] = {"class_type": "MotionKitTestStubWanVAELoader", "inputs": {}}
    wan = prompt[ids["WanTrackToVideo"]]["inputs"]
    wan.update(positive=["cond", 0], negative=["cond", 0], vae=["vae", 0])
    del wan["clip_vision_output"]   # optional; its encoder needs weights
    prompt["sink"] = {"class_type": "MotionKitTestSink", "inputs": {"value": [ids["WanTrackToVideo"], 2]}}
    return prompt, ids


def latent_cell(xy, lw: int, lh: int) -> tuple[int, int]:
    """The latent cell (row, column) core's ATI grid puts a pixel position of the 832x480 frame in."""
    short = min(WIDTH, HEIGHT)
    nx, ny = (xy[0] - WIDTH / 2) / short * 2, (xy[1] - HEIGHT / 2) / short * 2
    gx = torch.linspace(-lw / min(lh, lw), lw / min(lh, lw), lw)
    gy = torch.linspace(-lh / min(lh, lw), lh / min(lh, lw), lh)
    return int((gy - ny).abs().argmin()), int((gx - nx).abs().argmin())


@pytest.mark.server
def test_the_tracks_reach_wan_track_to_video(server, comfy, stand_ins):
    from comfy_extras import nodes_wan
    prompt, ids = wan_prompt(server.get("/object_info"), stand_ins)
    comfy.run(prompt)

    tracks = comfy.output(ids["MotionKitArrowsToTracks"], 0)
    path = tracks["track_path"].double()
    objects = tracks["motionkit"]["object"].tolist()
    assert path.shape == (121, 16, 2) and objects == [0] * 8 + [-1] * 8       # the ball's tracks, then the anchors
    assert (tracks["motionkit"]["width"], tracks["motionkit"]["height"]) == (WIDTH, HEIGHT)

    # core's own parser reads MotionKit's coordinate string: one track per TRACKS track, 121 points each
    coords = comfy.output(ids["MotionKitTracksToCoordinates"], 0)
    parsed = nodes_wan.parse_json_tracks(coords)
    assert len(parsed) == 16 and all(len(t) == nodes_wan.FIXED_LENGTH == 121 for t in parsed)
    padded = np.stack([nodes_wan.pad_pts(t) for t in parsed])                 # [N, 121, 1, 3]
    np.testing.assert_allclose(padded[:, :, 0, :2], path.permute(1, 0, 2).numpy(), atol=5e-4)
    assert (padded[..., 2] == 1).all()                                          # nothing padded

    # core's resampling to the video (121 -> length frames) keeps the pixel frame and the timing
    length = examples.WAN_LENGTH
    processed = nodes_wan.process_tracks(padded, (WIDTH, HEIGHT), length - 1).double()   # [81, N, 4]
    assert processed.shape == (length, 16, 4)
    normalised = (path - torch.tensor([WIDTH / 2, HEIGHT / 2], dtype=torch.float64)) / min(WIDTH, HEIGHT) * 2
    a, b = 120 // np.gcd(120, length - 1), (length - 1) // np.gcd(120, length - 1)
    frame_of = [0] + [1 + (1 + a * (k - 1)) // b for k in range(1, length)]   # video frame -> track frame
    torch.testing.assert_close(processed[:, :, 1:3], normalised[frame_of], atol=1e-3, rtol=0)
    assert frame_of[-1] == 120
    # the bend (timed at track frame 60) and the still ends, as the video sees them
    bend = torch.tensor([420.0 - 250.0, 190.0 - 290.0], dtype=torch.float64)
    torch.testing.assert_close(path[60, :8] - path[0, :8], bend.expand(8, 2), atol=1e-4, rtol=0)
    assert torch.equal(path[:9], path[:1].expand(9, 16, 2)) and torch.equal(path[112:], path[112:113].expand(9, 16, 2))

    # the Wan node itself: the latent and conditioning shapes, and its motion mask follows the tracks
    lw, lh, lt = WIDTH // 8, HEIGHT // 8, (length - 1) // 4 + 1
    assert StubWanVAE.seen == [(length, HEIGHT, WIDTH, 3)]
    positive, negative, latent = (comfy.output(ids["WanTrackToVideo"], slot) for slot in range(3))
    assert latent["samples"].shape == (1, 16, lt, lh, lw)
    for cond in (positive, negative):
        values = cond[0][1]
        assert values["concat_latent_image"].shape == (1, 16, lt, lh, lw)
        assert values["concat_mask"].shape == (1, 4, lt, lh, lw)
    weight = 1.0 - positive[0][1]["concat_mask"][0, 0]                  # core inverts the motion weight
    checked = 0
    for j in (5, 12, lt - 1):                                            # latent frame j averages video frames 4j-3..4j
        frames = [frame_of[k] for k in range(4 * j - 3, 4 * j + 1)]
        for n in range(16):
            where = path[frames, n].mean(0)
            if not (0 <= where[0] < WIDTH and 0 <= where[1] < HEIGHT):
                continue   # (the tiny random SAM's mask is not the ball: some of its points leave the frame)
            assert weight[j][latent_cell(where, lw, lh)] > 0.5, (j, n, where)
            checked += 1
    assert checked >= 3 * 8 + 3                                            # the anchors and ball tracks
    far = weight[lt - 1].clone()
    for n in range(16):
        r, c = latent_cell(path[-1, n], lw, lh)
        far[max(r - 6, 0):r + 7, max(c - 6, 0):c + 7] = 0
    assert far.max() < 0.05                                               # and nowhere else


@pytest.mark.server
def test_wan_move_takes_motionkit_tracks(server, comfy, stand_ins):
    """Core WanMoveTrackToVideo (hosts with Wan-Move) on MotionKit's TRACKS: each visible track's frame-0
    latent cell is copied to where the track is in every 4th frame (pixels // 8 of width x height); hidden
    frames (visible "range", popping out) are skipped."""
    import nodes
    if "WanMoveTrackToVideo" not in nodes.NODE_CLASS_MAPPINGS:
        pytest.skip("this ComfyUI has no core Wan-Move nodes (they arrived after v0.3.64)")
    prompt, ids = wan_prompt(server.get("/object_info"), stand_ins)
    arrows = prompt[ids["MotionKitArrowsToTracks"]]["inputs"]
    doc = json.loads(arrows["arrows"])
    # pop-out: the ball's tracks move in frames 0..40 and are hidden after that. (Not pop-in: core takes a
    # track's features at its frame-0 position, and a track hidden at frame 0 has none; v0.33.0 then reads the
    # last latent cell.)
    doc["arrows"][0].update(start_frame=0, end_frame=40, visible="range", points=[[250, 290], [600, 230]])
    arrows.update(arrows=json.dumps(doc), num_frames=examples.WAN_LENGTH)
    del prompt[ids["WanTrackToVideo"]], prompt[ids["MotionKitTracksToCoordinates"]]
    prompt["move"] = {"class_type": "WanMoveTrackToVideo", "inputs": {
        "positive": ["cond", 0], "negative": ["cond", 0], "vae": ["vae", 0], "tracks": [ids["MotionKitArrowsToTracks"], 0],
        "strength": 1.0, "width": WIDTH, "height": HEIGHT, "length": examples.WAN_LENGTH, "batch_size": 1,
        "start_image": [ids["ImageScale"], 0]}}
    prompt["sink"]["inputs"]["value"] = ["move", 2]
    comfy.run(prompt)

    tracks = comfy.output(ids["MotionKitArrowsToTracks"], 0)
    path, visible = tracks["track_path"], tracks["track_visibility"]
    assert path.shape == (81, 16, 2) and visible.dtype == torch.bool
    positive, negative, latent = (comfy.output("move", slot) for slot in range(3))
    # (core's replace_feature writes into the encoded latent in place, so both halves carry the tracks)
    moved = positive[0][1]["concat_latent_image"][0]                      # [16, 21, 60, 104]
    assert moved.shape == negative[0][1]["concat_latent_image"][0].shape == (16, 21, HEIGHT // 8, WIDTH // 8)
    assert latent["samples"].shape == (1, 16, 21, HEIGHT // 8, WIDTH // 8)
    assert positive[0][1]["concat_mask"].shape == (1, 1, 21, HEIGHT // 8, WIDTH // 8)

    def cell(t, n):
        x, y = path[t, n].tolist()
        return int(y // 8), int(x // 8)

    sources = [cell(0, n) for n in range(16)]
    for j in range(1, 21):
        t = 4 * j
        targets = {}
        for n in range(16):
            if visible[t, n]:
                targets.setdefault(cell(t, n), set()).add(sources[n])
        for (r, c), candidates in targets.items():
            got = (int(moved[0, j, r, c]), int(moved[1, j, r, c]))
            assert got in candidates, (j, (r, c), got, candidates)
        # the ball's tracks are hidden after frame 40: nothing of theirs is written then
        ball_hidden = not visible[t, :8].any()
        assert ball_hidden == (t > 40)
        written = {(r, c) for r, c in zip(*torch.nonzero(moved[0, j] != -1, as_tuple=True)) for r, c in [(int(r), int(c))]}
        assert written == set(targets), (j, written ^ set(targets))
