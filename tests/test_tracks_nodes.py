"""Arrows to Trajectories and the trajectory toolkit inside real ComfyUI: prompts run by ComfyUI's own
executor on masks made by core mask nodes, the converters on those TRACKS and on TRACKS built by hand in
the core / KJNodes layouts, ComfyUI's own track-consuming code (WanTrackToVideo's functions in the pinned
v0.3.64) on MotionKit's tracks, the error messages, and the example workflow (Click to Mask on the tiny
SAM -> Arrows to Trajectories -> Visualize Tracks -> video) over HTTP."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from motionkit_testing.comfy_session import WorkflowError
from motionkit_testing.trajectory_example import (EXAMPLE_IMAGE, GREEN_BOX, RED_BOX, TWO_OBJECTS_IMAGE,
                                                  TWO_OBJECTS_SIZE, write_example_image, write_two_objects)
from motionkit_testing.workflows import load_workflow, ui_to_api

W, H = TWO_OBJECTS_SIZE
NODE = "Arrows to Trajectories (MotionKitArrowsToTracks)"
OBJ0_ARROW = [[10.0, 12.0], [20.0, 4.0], [30.0, 12.0]]   # bent: starts on the red box
CAMERA_ARROW = [[24.0, 16.0], [20.0, 18.0]]


@pytest.fixture(scope="module")
def images(comfy, base_dir):
    write_two_objects(base_dir / "input" / TWO_OBJECTS_IMAGE)
    write_example_image(base_dir / "input" / EXAMPLE_IMAGE)
    return base_dir / "input"


def doc(arrows, width=W, height=H, version=1):
    return json.dumps({"version": version, "width": width, "height": height,
                       "arrows": [{"object": o, "points": p} for o, p in arrows]})


def masks_prompt() -> dict:
    """LoadImage -> one mask per coloured box (core nodes) -> a MASK batch of 2 (via an IMAGE batch)."""
    return {
        "img": {"class_type": "LoadImage", "inputs": {"image": TWO_OBJECTS_IMAGE}},
        "red": {"class_type": "ImageToMask", "inputs": {"image": ["img", 0], "channel": "red"}},
        "red_t": {"class_type": "ThresholdMask", "inputs": {"mask": ["red", 0], "value": 0.5}},
        "green": {"class_type": "ImageToMask", "inputs": {"image": ["img", 0], "channel": "green"}},
        "green_t": {"class_type": "ThresholdMask", "inputs": {"mask": ["green", 0], "value": 0.5}},
        "red_i": {"class_type": "MaskToImage", "inputs": {"mask": ["red_t", 0]}},
        "green_i": {"class_type": "MaskToImage", "inputs": {"mask": ["green_t", 0]}},
        "batch": {"class_type": "ImageBatch", "inputs": {"image1": ["red_i", 0], "image2": ["green_i", 0]}},
        "masks": {"class_type": "ImageToMask", "inputs": {"image": ["batch", 0], "channel": "red"}},
    }


def arrows_prompt(arrows_text=None, *, frames=5, k=4, seed=3, easing="ease-in", image=True, masks=("masks", 0)):
    p = masks_prompt()
    p["arrows"] = {"class_type": "MotionKitArrowsToTracks", "inputs": {
        "masks": list(masks), "num_frames": frames, "points_per_object": k, "seed": seed, "easing": easing,
        "arrows": arrows_text if arrows_text is not None else doc([(0, OBJ0_ARROW), ("camera", CAMERA_ARROW)])}}
    if image:
        p["arrows"]["inputs"]["image"] = ["img", 0]
    p["preview"] = {"class_type": "PreviewImage", "inputs": {"images": ["arrows", 1]}}
    p["sink"] = {"class_type": "PreviewAny", "inputs": {"source": ["arrows", 0]}}
    return p


def output(comfy, node_id: str, slot: int = 0):
    """A node's output value in the run that just finished, from the executor's own output cache."""
    return comfy.output(node_id, slot)


def execution_error(excinfo) -> dict:
    details = excinfo.value.details
    return details if isinstance(details, dict) else {}


# --- registration ----------------------------------------------------------------------------------

def test_nodes_are_registered_with_their_public_inputs(comfy):
    import nodes
    spec = nodes.NODE_CLASS_MAPPINGS["MotionKitArrowsToTracks"].INPUT_TYPES()
    assert list(spec["required"]) == ["masks", "arrows", "num_frames", "points_per_object", "seed", "easing"]
    assert list(spec["optional"]) == ["image"]
    assert spec["required"]["num_frames"][1]["default"] == 14 and spec["required"]["num_frames"][1]["min"] == 2
    assert spec["required"]["points_per_object"][1]["default"] == 8
    assert spec["required"]["easing"][0] == ["linear", "ease-in", "ease-out", "ease-in-out"]
    assert json.loads(spec["required"]["arrows"][1]["default"])["version"] == 1
    expected = {
        "MotionKitArrowsToTracks": (("TRACKS", "IMAGE"), "Arrows to Trajectories (TrackGo)"),
        "MotionKitTracksToTrackMaps": (("IMAGE",), "Tracks to Track Maps (TrackGo)"),
        "MotionKitTracksToDrags": (("MOTIONKIT_DRAGS",), "Tracks to Drags (Puppet-Master)"),
        "MotionKitTracksToSparseFlow": (("MOTIONKIT_SPARSE_FLOW", "MASK"), "Tracks to Sparse Flow (Motion-I2V)"),
        "MotionKitVisualizeTracks": (("IMAGE",), "Visualize Tracks"),
        "MotionKitTracksToCoordinates": (("STRING",), "Tracks to Coordinates (KJNodes / WanTrackToVideo)"),
    }
    for node_id, (returns, display) in expected.items():
        cls = nodes.NODE_CLASS_MAPPINGS[node_id]
        assert cls.RETURN_TYPES == returns and cls.CATEGORY == "MotionKit" and cls.DESCRIPTION
        assert nodes.NODE_DISPLAY_NAME_MAPPINGS[node_id] == display
    for node_id in ("MotionKitTracksToTrackMaps", "MotionKitTracksToSparseFlow"):
        assert list(nodes.NODE_CLASS_MAPPINGS[node_id].INPUT_TYPES()["required"])[-2:] == ["width", "height"]


# --- Arrows to Trajectories in a prompt ---------------------------------------------------------------

def test_arrows_to_tracks_in_a_prompt(comfy, images, base_dir):
    history = comfy.run(arrows_prompt())
    tracks = output(comfy, "arrows")
    path = tracks["track_path"]
    objects = tracks["motionkit"]["object"]
    assert path.dtype == torch.float32 and tracks["track_visibility"].dtype == torch.bool
    assert tracks["motionkit"]["version"] == 1 and (tracks["motionkit"]["width"], tracks["motionkit"]["height"]) == (W, H)
    assert path.shape[0] == 5 and (objects == 0).sum() == 4 and (objects == 1).sum() == 4 and (objects == -1).sum() >= 4

    starts = path[0].numpy()
    for n in np.flatnonzero(objects.numpy() >= 0):  # control points start on their box
        x0, y0, x1, y1 = (RED_BOX, GREEN_BOX)[int(objects[n])]
        assert x0 < starts[n, 0] < x1 and y0 < starts[n, 1] < y1
    moved = (path - path[0]).numpy()
    obj0, obj1, cam = (np.flatnonzero(objects.numpy() == o) for o in (0, 1, -1))
    np.testing.assert_allclose(moved[-1, obj0], np.broadcast_to([20.0, 0.0], (4, 2)), atol=1e-4)   # end - start
    # ease-in at frame 2 of 5: fraction 0.25 of the bent path (length 2 * sqrt(164)) lies on its first leg
    leg = math.sqrt(164)
    u = 0.25 * 2 * leg / leg
    np.testing.assert_allclose(moved[2, obj0[0]], [10 * u, -8 * u], atol=1e-4)
    assert np.array_equal(moved[:, obj1], np.zeros_like(moved[:, obj1]))                             # pinned
    np.testing.assert_allclose(moved[-1, cam], np.broadcast_to([-4.0, 2.0], (len(cam), 2)), atol=1e-4)  # camera

    preview = output(comfy, "arrows", 1)
    assert preview.shape == (5, H, W, 3) and preview.dtype == torch.float32

    # the editor's UI output: sizes, the image and one tinted mask per object, the tracks' ends
    ui = history["outputs"]["arrows"]["motionkit_arrows"][0]
    assert (ui["width"], ui["height"], ui["version"]) == (W, H, 1)
    assert ui["tracks"]["object"] == objects.tolist()
    np.testing.assert_allclose(ui["tracks"]["end"], path[-1].numpy(), atol=1e-3)
    image = Image.open(base_dir / "temp" / ui["background"]["subfolder"] / ui["background"]["filename"])
    assert image.size == (W, H)
    assert [m["object"] for m in ui["masks"]] == [0, 1] and ui["masks"][0]["color"] == "#e6194b"
    alpha = np.array(Image.open(base_dir / "temp" / ui["masks"][1]["subfolder"] / ui["masks"][1]["filename"]))[..., 3]
    x0, y0, x1, y1 = GREEN_BOX
    expected = np.zeros((H, W), np.uint8)
    expected[y0:y1, x0:x1] = 255
    assert np.array_equal(alpha, expected)


def test_same_seed_same_tracks_and_a_kjnodes_coordinate_string(comfy, images):
    comfy.run(arrows_prompt())
    first = output(comfy, "arrows")["track_path"].clone()
    comfy.run(arrows_prompt(seed=3, easing="ease-in"))
    assert torch.equal(output(comfy, "arrows")["track_path"], first)
    # the same bent arrow as a KJNodes Spline Editor string (track 0 moves mask 0) with single quotes
    kj = str([[{"x": x, "y": y} for x, y in OBJ0_ARROW]])
    comfy.run(arrows_prompt(kj))
    from_kj = output(comfy, "arrows")
    assert (from_kj["motionkit"]["object"] == -1).sum() == 0  # no camera arrow in a coordinate string
    assert torch.equal(from_kj["track_path"], first[:, :8])


# --- arrows JSON version 2 and MASK batches of any layout -----------------------------------------------

def test_v2_timing_and_anchors_in_a_prompt(comfy, images):
    """Version 2 through the executor: object 0 moves only in frames 2..6, reaching its bend exactly at
    frame 4 and hidden outside its range; object 1 is pinned by an anchor; background anchors hold the
    camera (the last tracks)."""
    text = json.dumps({"version": 2, "width": W, "height": H, "arrows": [
        {"object": 0, "points": [[10, 12], [20, 4, 4], [30, 12]], "start_frame": 2, "end_frame": 6,
         "easing": "ease-out", "visible": "range"}],
        "anchors": [{"object": 1, "point": [33, 20]}, {"object": None, "point": [1, 1]},
                    {"object": None, "point": [46, 30]}]})
    comfy.run(arrows_prompt(text, frames=9, k=3, easing="linear"))
    tracks = output(comfy, "arrows")
    path, visible = tracks["track_path"].numpy(), tracks["track_visibility"].numpy()
    objects = tracks["motionkit"]["object"].tolist()
    assert path.shape == (9, 9, 2) and objects == [0, 0, 0, 1, 1, 1, 1, -1, -1]
    obj0 = path[:, :3].astype(np.float64)
    assert np.array_equal(path[:3, :3], np.broadcast_to(path[0, :3], (3, 3, 2)))       # still up to frame 2
    np.testing.assert_allclose(obj0[4] - obj0[0], np.full((3, 2), [10.0, -8.0]), atol=1e-5)   # the bend at frame 4
    assert np.array_equal(path[6:, :3], np.broadcast_to(path[6, :3], (3, 3, 2)))       # still from frame 6
    np.testing.assert_allclose(obj0[6] - obj0[0], np.full((3, 2), [20.0, 0.0]), atol=1e-5)
    assert visible[2:7, :3].all() and not visible[:2, :3].any() and not visible[7:, :3].any()
    assert np.array_equal(path[:, 6:], np.broadcast_to(np.float32([[33, 20], [1, 1], [46, 30]]), (9, 3, 2)))
    assert visible[:, 3:].all()


def arrows_node(comfy):
    import nodes
    return nodes.NODE_CLASS_MAPPINGS["MotionKitArrowsToTracks"]()


@pytest.mark.parametrize("layout", ["B,H,W float", "B,1,H,W", "bool", "half", "H,W (one object)", "soft 0..1"])
def test_any_mask_batch_layout_gives_the_same_tracks(comfy, layout):
    masks = torch.zeros(2, 20, 30)
    masks[0, 2:8, 3:12] = 1.0
    masks[1, 10:18, 15:28] = 1.0
    text = doc([(0, [[5, 5], [20, 8]])], 30, 20)
    want = arrows_node(comfy).build(masks, text, 5, 4, 0, "linear")["result"][0]["track_path"]
    given = {"B,H,W float": masks, "B,1,H,W": masks[:, None], "bool": masks > 0, "half": masks.half(),
             "H,W (one object)": masks[0], "soft 0..1": masks * 0.4 + 0.55 * (masks > 0)}[layout]
    got = arrows_node(comfy).build(given, text, 5, 4, 0, "linear")["result"][0]["track_path"]
    assert torch.equal(got, want[:, :4] if layout == "H,W (one object)" else want)


def test_an_empty_mask_batch_says_so(comfy):
    with pytest.raises(ValueError) as excinfo:
        arrows_node(comfy).build(torch.zeros(0, 20, 30), doc([], 30, 20), 5, 4, 0, "linear")
    message = str(excinfo.value)
    assert type(excinfo.value).__name__ == "MotionKitInputError" and "input 'masks'" in message
    assert "(0, 20, 30)" in message and "found nothing" in message


def test_core_sam3_masks_feed_arrows_to_trajectories(comfy, images, monkeypatch):
    """Core SAM3 Track to Mask (v0.33.0; no SAM3 weights needed: its input is tracked masks, given here by a
    test node) emits a soft [frames, H, W] MASK batch: Arrows to Trajectories takes it."""
    import nodes
    if "SAM3_TrackToMask" not in nodes.NODE_CLASS_MAPPINGS:
        pytest.skip("this ComfyUI has no core SAM3 nodes (they arrived after v0.3.64)")
    from comfy.ldm.sam3.tracker import pack_masks

    class TrackData:  # what SAM3_VideoTrack outputs: bit-packed masks [frames, objects, h, w / 8]
        RETURN_TYPES = ("SAM3_TRACK_DATA",)
        FUNCTION = "make"
        CATEGORY = "testing"

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {}}

        def make(self):
            low = torch.zeros(1, 2, H // 2, W // 2)
            low[0, 0, 4:10, 2:9] = 1.0    # object 0: the red box at half resolution
            low[0, 1, 7:13, 14:20] = 1.0  # object 1: the green box
            return ({"packed_masks": pack_masks(low), "orig_size": (H, W), "n_frames": 1},)

    monkeypatch.setitem(nodes.NODE_CLASS_MAPPINGS, "MotionKitTestSAM3TrackData", TrackData)
    p = arrows_prompt(doc([(0, [[10, 12], [20, 12]])]), masks=("sam3_mask", 0))
    p["track_data"] = {"class_type": "MotionKitTestSAM3TrackData", "inputs": {}}
    p["sam3_mask"] = {"class_type": "SAM3_TrackToMask", "inputs": {"track_data": ["track_data", 0],
                                                                    "object_indices": "0"}}
    p["mask_out"] = {"class_type": "PreviewAny", "inputs": {"source": ["sam3_mask", 0]}}
    comfy.run(p)
    sam3_mask = output(comfy, "sam3_mask")
    assert sam3_mask.shape == (1, H, W) and ((sam3_mask > 0) & (sam3_mask < 1)).any()   # soft (bilinear) edges
    tracks = output(comfy, "arrows")
    assert tracks["motionkit"]["object"].tolist() == [0, 0, 0, 0]
    x, y = tracks["track_path"][0].T.numpy()
    inside = (sam3_mask[0] > 0.5).numpy()
    assert inside[y.astype(int), x.astype(int)].all()
    np.testing.assert_allclose((tracks["track_path"][-1] - tracks["track_path"][0]).numpy(),
                               np.full((4, 2), [10.0, 0.0]), atol=1e-5)


# --- converters -----------------------------------------------------------------------------------

def test_converters_in_a_prompt(comfy, images):
    p = arrows_prompt()
    p["maps"] = {"class_type": "MotionKitTracksToTrackMaps", "inputs": {
        "tracks": ["arrows", 0], "line_width": 2, "width": 0, "height": 0}}
    p["maps_out"] = {"class_type": "PreviewImage", "inputs": {"images": ["maps", 0]}}
    p["drags"] = {"class_type": "MotionKitTracksToDrags", "inputs": {"tracks": ["arrows", 0]}}
    p["drags_out"] = {"class_type": "PreviewAny", "inputs": {"source": ["drags", 0]}}
    p["flow"] = {"class_type": "MotionKitTracksToSparseFlow", "inputs": {
        "tracks": ["arrows", 0], "radius": 3, "width": 2 * W, "height": 2 * H}}
    p["flow_out"] = {"class_type": "PreviewAny", "inputs": {"source": ["flow", 0]}}
    p["flow_mask"] = {"class_type": "MaskPreview", "inputs": {"mask": ["flow", 1]}}
    p["vis"] = {"class_type": "MotionKitVisualizeTracks", "inputs": {
        "tracks": ["arrows", 0], "line_width": 2, "point_radius": 2, "image": ["img", 0]}}
    p["vis_out"] = {"class_type": "PreviewImage", "inputs": {"images": ["vis", 0]}}
    p["coords"] = {"class_type": "MotionKitTracksToCoordinates", "inputs": {"tracks": ["arrows", 0]}}
    p["coords_out"] = {"class_type": "PreviewAny", "inputs": {"source": ["coords", 0]}}
    history = comfy.run(p)
    path = output(comfy, "arrows")["track_path"]

    maps = output(comfy, "maps")
    assert maps.shape == (5, H, W, 3)
    x, y = path[-1, 0].tolist()  # object 0's first track ends on a red (palette 0) pixel of the last map
    torch.testing.assert_close(maps[-1, int(y), int(x)], torch.tensor([230, 25, 75]) / 255.0)

    drags = output(comfy, "drags")
    assert drags["drags"].shape == (5, 2, 4) and drags["object"].tolist() == [0, 1]
    t0 = int(drags["track"][0])
    torch.testing.assert_close(drags["drags"][-1, 0], torch.cat([path[0, t0], path[-1, t0]]) / torch.tensor([W, H, W, H]))

    flow = output(comfy, "flow")
    assert flow["flow"].shape == (4, 2 * H, 2 * W, 2) and flow["radius"] == 3
    sx, sy = (path[0, t0] * 2).tolist()  # at the requested size, tracks are scaled by 2
    torch.testing.assert_close(flow["flow"][-1, int(sy), int(sx)], (path[-1, t0] - path[0, t0]) * 2)
    assert torch.equal(output(comfy, "flow", 1), flow["mask"]) and flow["mask"].shape == (4, 2 * H, 2 * W)

    assert output(comfy, "vis").shape == (5, H, W, 3)
    coords = json.loads(history["outputs"]["coords_out"]["text"][0])
    assert len(coords) == path.shape[1] and len(coords[0]) == 5
    assert coords[0][-1] == pytest.approx({"x": path[-1, 0, 0].item(), "y": path[-1, 0, 1].item()}, abs=1e-3)


def test_hand_built_core_and_kjnodes_tracks_feed_the_converters(comfy):
    """TRACKS as core GenerateTracks / KJNodes make them: no MotionKit extras, so a size is given."""
    import nodes
    mk = nodes.NODE_CLASS_MAPPINGS
    core = {"track_path": torch.tensor([[[4.5, 4.5], [20.5, 10.5]], [[8.5, 4.5], [20.5, 10.5]],
                                        [[12.5, 4.5], [20.5, 10.5]]]),
            "track_visibility": torch.ones(3, 2, dtype=torch.bool)}
    (maps,) = mk["MotionKitTracksToTrackMaps"]().convert(core, 1, 32, 16)
    assert maps.shape == (3, 16, 32, 3) and maps[2, 4, 4:13].min() > 0 and maps[2, 10, 20].max() > 0
    (drags,) = mk["MotionKitTracksToDrags"]().convert(core, 32, 16)
    assert drags["drags"].shape == (3, 2, 4)  # each core track is its own object
    torch.testing.assert_close(drags["drags"][2, 0], torch.tensor([4.5 / 32, 4.5 / 16, 12.5 / 32, 4.5 / 16]))
    flow, mask = mk["MotionKitTracksToSparseFlow"]().convert(core, 2, 32, 16)
    assert flow["flow"][1, 4, 4].tolist() == [8.0, 0.0] and mask.shape == (2, 16, 32)
    kj = {"track_path": core["track_path"][None]}  # a batch of one, no visibility
    (frames,) = mk["MotionKitVisualizeTracks"]().draw(kj, 1, 1, image=torch.zeros(1, 16, 32, 3))
    assert frames.shape == (3, 16, 32, 3) and frames[2, 4, 12].max() > 0
    # without a stored size and without width/height, the node says what to set
    with pytest.raises(ValueError) as excinfo:
        mk["MotionKitTracksToTrackMaps"]().convert(core, 1, 0, 0)
    assert type(excinfo.value).__name__ == "MotionKitInputError"
    assert str(excinfo.value).startswith("[MotionKit] Tracks to Track Maps (MotionKitTracksToTrackMaps), input 'width'")
    with pytest.raises(ValueError, match=r"input 'tracks': track_path has shape \(3,\)"):
        mk["MotionKitTracksToDrags"]().convert({"track_path": torch.zeros(3)})


def test_comfyuis_own_track_code_accepts_motionkit_tracks(comfy, images):
    """The pinned ComfyUI's WanTrackToVideo path (comfy_extras/nodes_wan.py: parse_json_tracks, pad_pts,
    process_tracks, patch_motion) on MotionKit's tracks exported as its coordinate string."""
    from comfy_extras import nodes_wan
    p = arrows_prompt(frames=nodes_wan.FIXED_LENGTH, easing="linear")
    p["coords"] = {"class_type": "MotionKitTracksToCoordinates", "inputs": {"tracks": ["arrows", 0]}}
    p["coords_out"] = {"class_type": "PreviewAny", "inputs": {"source": ["coords", 0]}}
    history = comfy.run(p)
    path = output(comfy, "arrows")["track_path"].double()

    tracks_data = nodes_wan.parse_json_tracks(history["outputs"]["coords_out"]["text"][0])
    assert len(tracks_data) == path.shape[1]
    tracks_np = np.stack([nodes_wan.pad_pts(t) for t in tracks_data])
    length, (width, height) = 81, (W, H)  # WanTrackToVideo: process_tracks(..., length - 1)
    processed = nodes_wan.process_tracks(tracks_np, (width, height), length - 1)
    assert processed.shape == (length, path.shape[1], 4)
    short = min(width, height)
    normalised = (path - torch.tensor([width / 2, height / 2], dtype=torch.float64)) / short * 2
    torch.testing.assert_close(processed[0, :, 1:3].double(), normalised[0], atol=1e-3, rtol=0)
    torch.testing.assert_close(processed[-1, :, 1:3].double(), normalised[-1], atol=1e-3, rtol=0)
    assert (processed[..., 3] == 1).all()  # every point visible

    # a latent grid with the image's aspect ratio, fine enough (48x32 cells) to resolve single tracks
    lw, lh = W, H
    latent = torch.randn(1, 16, (length - 1) // 4 + 1, lh, lw, generator=torch.Generator().manual_seed(0))
    mask, feature = nodes_wan.patch_motion([processed.unsqueeze(0)], latent, temperature=220.0, topk=2, vae_divide=(4, 16))
    assert mask.shape == (1, 4, latent.shape[2], lh, lw) and feature.shape == latent.shape
    # the motion weight of the last latent frame is high where MotionKit's tracks end, low elsewhere
    last = mask[0, 0, -1]
    grid_x = torch.linspace(-width / short, width / short, lw)
    grid_y = torch.linspace(-height / short, height / short, lh)
    for end in normalised[-1]:
        cy, cx = int((grid_y - end[1]).abs().argmin()), int((grid_x - end[0]).abs().argmin())
        assert last[cy, cx] > 0.5, (end, last[cy, cx])
    assert last.min() < 0.05  # and not everywhere


# --- errors ------------------------------------------------------------------------------------------

BAD_ARROWS = [
    (doc([(2, [[5, 5], [9, 9]])]), "arrows", "names object 2, but 'masks' holds 2"),
    (doc([(0, [[5, 5], [60, 9]])]), "arrows", "outside the 48x32 image"),
    ('{"version": 1, "width": 48, "height": 32, "arrows": [', "arrows", "not valid JSON"),
    (doc([(0, [[5, 5], [9, 9]])], version=3), "arrows", "version 3 is newer"),
    (json.dumps({"version": 2, "width": W, "height": H, "arrows": [
        {"object": 0, "points": [[5, 5], [9, 9]], "start_frame": 3, "end_frame": 2}]}), "arrows",
     "arrow 0 starts at frame 3 and ends at frame 2"),
    (json.dumps({"version": 2, "width": W, "height": H, "arrows": [
        {"object": 1, "points": [[5, 5], [7, 7, 1], [8, 8, 1], [9, 9]]}]}), "arrows",
     "arrow 0 point 2 is timed at frame 1, not after point 1 (frame 1)"),
    (json.dumps({"version": 2, "width": W, "height": H, "arrows": [],
                 "anchors": [{"object": 5, "point": [3, 3]}]}), "arrows", "anchor 0 names object 5"),
    (json.dumps({"width": 48, "height": 32, "arrows": []}), "arrows", "no integer 'version'"),
    (doc([(0, [[5, 5]])]), "arrows", "at least 2"),
    (doc([(0, [[5, 5], [9, 9]]), (0, [[6, 6], [7, 7]])]), "arrows", "both move object 0"),
    (doc([(0, [[5, 5], [9, 9]])], width=100, height=100), "arrows", "another aspect ratio"),
]


@pytest.mark.parametrize("text, input_name, problem", BAD_ARROWS, ids=[b[2][:24] for b in BAD_ARROWS])
def test_bad_arrows_are_rejected_with_a_clear_error(comfy, images, text, input_name, problem):
    with pytest.raises(WorkflowError) as excinfo:
        comfy.run(arrows_prompt(text))
    err = execution_error(excinfo)
    assert err.get("exception_type", "").endswith("MotionKitInputError"), err
    message = err["exception_message"]
    assert message.startswith(f"[MotionKit] {NODE}, input '{input_name}':") and problem in message and "Fix:" in message


def test_an_empty_mask_is_rejected(comfy, images):
    p = arrows_prompt(doc([]), image=False, masks=("empty", 0))
    p["empty"] = {"class_type": "SolidMask", "inputs": {"value": 0.0, "width": W, "height": H}}
    with pytest.raises(WorkflowError) as excinfo:
        comfy.run(p)
    message = execution_error(excinfo)["exception_message"]
    assert "input 'masks': mask 0 of 1 is empty" in message and "Fix:" in message


def test_masks_and_image_of_different_sizes_are_rejected(comfy, images):
    p = arrows_prompt(doc([]), masks=("other", 0))
    p["other"] = {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 40, "height": 32}}
    with pytest.raises(WorkflowError) as excinfo:
        comfy.run(p)
    message = execution_error(excinfo)["exception_message"]
    assert "input 'image': the image is 48x32 but the masks are 40x32" in message


def test_fewer_than_two_frames_is_rejected(comfy, images):
    valid, error, _, node_errors = comfy.validate(arrows_prompt(frames=1))
    assert not valid and any(e["extra_info"]["input_name"] == "num_frames" for e in node_errors["arrows"]["errors"])
    import nodes
    with pytest.raises(ValueError) as excinfo:  # called directly (API users, other nodes), not only validated
        nodes.NODE_CLASS_MAPPINGS["MotionKitArrowsToTracks"]().build(torch.ones(1, 8, 8), doc([], 8, 8), 1, 4, 0, "linear")
    assert type(excinfo.value).__name__ == "MotionKitInputError" and "input 'num_frames'" in str(excinfo.value)


# --- the example workflow, as saved, over HTTP -------------------------------------------------------

def mask_png(base_dir, ref: dict, channel: int = 0) -> np.ndarray:
    """A mask PNG a node listed in its UI output, as booleans (``channel`` 3: an RGBA mask's alpha)."""
    with Image.open(base_dir / ref["type"] / ref["subfolder"] / ref["filename"]) as im:
        pixels = np.array(im)
    return (pixels if pixels.ndim == 2 else pixels[..., channel]) > 127


@pytest.mark.server
@pytest.mark.slow
def test_the_example_workflow_runs_as_saved(server, base_dir):
    """example_workflows/arrows_to_trajectories.json through the real server: image -> Click to Mask ->
    Arrows to Trajectories -> Visualize Tracks -> a 14-frame 512x512 video. The SAM loader names the real
    ViT-B checkpoint; here it loads the tiny random SAM instead (as tests/test_example_workflows.py does),
    whose mask for the saved click is SamPredictor's. The ball's tracks start inside that mask and follow
    the saved arrow."""
    import av
    from pathlib import Path
    from motionkit_testing.tiny_sam import build_sam, ensure_tiny_sam, load_uint8, predictor_masks

    write_example_image(base_dir / "input" / EXAMPLE_IMAGE)
    tiny = ensure_tiny_sam(base_dir)
    wf = load_workflow(Path(__file__).resolve().parents[1] / "example_workflows" / "arrows_to_trajectories.json")
    assert sorted(n["type"] for n in wf["nodes"]) == sorted([
        "LoadImage", "MotionKitSAMLoader", "MotionKitClickToMask", "MotionKitArrowsToTracks",
        "MotionKitVisualizeTracks", "SaveWEBM", "MarkdownNote"])
    prompt = ui_to_api(wf, server.get("/object_info"))
    ids = {n["class_type"]: i for i, n in prompt.items()}
    # the chain: image -> Click to Mask -> Arrows to Trajectories -> Visualize Tracks -> video
    assert prompt[ids["MotionKitClickToMask"]]["inputs"]["image"] == [ids["LoadImage"], 0]
    assert prompt[ids["MotionKitClickToMask"]]["inputs"]["sam_model"] == [ids["MotionKitSAMLoader"], 0]
    assert prompt[ids["MotionKitArrowsToTracks"]]["inputs"]["masks"] == [ids["MotionKitClickToMask"], 0]
    assert prompt[ids["MotionKitArrowsToTracks"]]["inputs"]["image"] == [ids["LoadImage"], 0]
    assert prompt[ids["MotionKitVisualizeTracks"]]["inputs"]["tracks"] == [ids["MotionKitArrowsToTracks"], 0]
    assert prompt[ids["SaveWEBM"]]["inputs"]["images"] == [ids["MotionKitVisualizeTracks"], 0]
    loader = next(n for n in wf["nodes"] if n["type"] == "MotionKitSAMLoader")
    assert loader["widgets_values"] == ["sam_vit_b_01ec64.pth"]
    assert loader["properties"]["models"] == [{
        "name": "sam_vit_b_01ec64.pth", "directory": "sams",
        "url": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"}]

    points = json.loads(prompt[ids["MotionKitClickToMask"]]["inputs"]["points"])
    saved_arrow = json.loads(prompt[ids["MotionKitArrowsToTracks"]]["inputs"]["arrows"])["arrows"][0]
    (click,) = points["objects"][0]["positive"]
    assert saved_arrow["object"] == 0 and saved_arrow["points"][0] == click   # the arrow starts at the click
    prompt[ids["MotionKitSAMLoader"]]["inputs"]["model_name"] = tiny["pth"]
    entry = server.run(prompt)

    video = next(f for out in entry["outputs"].values() for f in out.get("images", []) if f["filename"].endswith(".webm"))
    with av.open(str(base_dir / "output" / video["subfolder"] / video["filename"])) as container:
        frames = [(f.width, f.height) for f in container.decode(video=0)]
    assert frames == [(512, 512)] * 14

    # Click to Mask's mask for the saved click: SamPredictor's (on the tiny SAM), non-empty, holding the click
    masks_ui = entry["outputs"][ids["MotionKitClickToMask"]]["motionkit_masks"][0]
    assert (masks_ui["width"], masks_ui["height"]) == (512, 512) and len(masks_ui["masks"]) == 1
    sam_mask = mask_png(base_dir, masks_ui["masks"][0])
    sam = build_sam(seed=None)
    sam.load_state_dict(torch.load(base_dir / "models" / "sams" / tiny["pth"], weights_only=True))
    (want, _, _), = predictor_masks(sam.eval(), load_uint8(base_dir / "input" / EXAMPLE_IMAGE), points["objects"])
    assert np.array_equal(sam_mask, want)
    assert sam_mask.any() and sam_mask[click[1], click[0]]

    arrows_id = ids["MotionKitArrowsToTracks"]
    ui = entry["outputs"][arrows_id]["motionkit_arrows"][0]
    assert np.array_equal(mask_png(base_dir, ui["masks"][0], channel=3), sam_mask)   # the mask it moved
    objects = np.array(ui["tracks"]["object"])
    assert objects.tolist() == [0] * 8   # one mask, no camera arrow
    for x, y in ui["tracks"]["start"]:
        assert sam_mask[int(y), int(x)]
    pts = np.array(saved_arrow["points"], float)
    moved = np.array(ui["tracks"]["end"]) - np.array(ui["tracks"]["start"])
    np.testing.assert_allclose(moved, np.broadcast_to(pts[-1] - pts[0], moved.shape), atol=2e-3)
