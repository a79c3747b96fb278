"""Specs of example workflows written with ui_builder (regenerate with ``write_examples``)."""
from __future__ import annotations

import json
from pathlib import Path

from .ui_builder import build_workflow, ref

SVD_XT = {"name": "svd_xt.safetensors", "directory": "checkpoints",
          "url": "https://huggingface.co/stabilityai/stable-video-diffusion-img2vid-xt/resolve/main/svd_xt.safetensors?download=true"}
SAM_B = {"name": "sam_vit_b_01ec64.pth", "directory": "sams",
         "url": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"}
# Videos are written by core SaveWEBM (VP9): its widgets are the same on every supported host, unlike
# CreateVideo (bit_depth appended on v0.33.0) + SaveVideo (codec a dynamic combo there).
WEBM = {"codec": "vp9", "crf": 24.0}

# The trajectory example's still (orange ball, 512x512) scaled and centre-cropped to 1024x576: the ball
# centre (0.30, 0.56) of 512 px lands at (307, 349) and its radius is about 133 px.
POINTS = json.dumps({"version": 1, "width": 1024, "height": 576,
                     "objects": [{"positive": [[307, 349]], "negative": [], "box": None}]})
ARROWS = json.dumps({"version": 1, "width": 1024, "height": 576,
                     "arrows": [{"object": 0, "points": [[307, 349], [520, 250], [720, 300]]}]})

NOTE = """## Motion-I2V on SVD: arrows -> motion field -> motion-augmented temporal attention

**Models:** `svd_xt.safetensors` in `models/checkpoints/`, SAM `sam_vit_b_01ec64.pth` in `models/sams/`.

1. *Load Image*, scaled to the video size (1024x576).
2. **Click to Mask (SAM):** click the object (left = object, right = background); one mask per object.
3. **Arrows to Trajectories:** queue once so the editor shows the image and masks, then drag an arrow for each object (25 frames for SVD-XT).
4. **Trajectories to Motion Field:** the training-free predictor fits each object's tracks (affine with 3+ tracks) into a dense flow from frame 0 to every frame; *Visualize Motion Field* shows it (colours) and the image warped by it before you sample.
5. **Motion-Augmented Temporal Attention:** in every SVD temporal attention, frame 0's features are warped by the field and interleaved with the frames (Motion-I2V stage 2, no new weights). `strength` blends with the original attention.
"""


def motion_i2v_svd_spec() -> list[dict]:
    return [
        {"id": 1, "type": "LoadImage", "pos": (0, 0), "size": (300, 320), "inputs": {"image": "motionkit_arrows_example.png"}},
        {"id": 2, "type": "ImageScale", "pos": (0, 380), "inputs": {
            "image": ref(1), "upscale_method": "lanczos", "width": 1024, "height": 576, "crop": "center"}},
        {"id": 3, "type": "MotionKitSAMLoader", "pos": (340, 0), "properties": {"models": [SAM_B]},
         "inputs": {"model_name": SAM_B["name"]}},
        {"id": 4, "type": "MotionKitClickToMask", "pos": (340, 140), "size": (420, 420), "inputs": {
            "sam_model": ref(3), "image": ref(2), "points": POINTS}},
        {"id": 5, "type": "MotionKitArrowsToTracks", "pos": (800, 0), "size": (440, 560), "inputs": {
            "masks": ref(4, 0), "image": ref(2), "arrows": ARROWS, "num_frames": 25, "points_per_object": 8,
            "seed": 0, "easing": "ease-in-out"}},
        {"id": 6, "type": "MotionKitTracksToMotionField", "pos": (1280, 0), "inputs": {
            "tracks": ref(5, 0), "masks": ref(4, 0), "boundary_softness": 4.0}},
        {"id": 7, "type": "MotionKitVisualizeMotionField", "pos": (1280, 180), "inputs": {
            "motion_field": ref(6), "image": ref(2), "max_magnitude": 0.0}},
        {"id": 8, "type": "PreviewImage", "pos": (1280, 360), "size": (320, 260), "inputs": {"images": ref(7, 1)}},
        {"id": 9, "type": "ImageOnlyCheckpointLoader", "pos": (0, 560), "properties": {"models": [SVD_XT]},
         "inputs": {"ckpt_name": SVD_XT["name"]}},
        {"id": 10, "type": "SVD_img2vid_Conditioning", "pos": (340, 620), "inputs": {
            "clip_vision": ref(9, 1), "init_image": ref(2), "vae": ref(9, 2), "width": 1024, "height": 576,
            "video_frames": 25, "motion_bucket_id": 127, "fps": 6, "augmentation_level": 0.0}},
        {"id": 11, "type": "VideoLinearCFGGuidance", "pos": (340, 900), "inputs": {"model": ref(9, 0), "min_cfg": 1.0}},
        {"id": 12, "type": "MotionKitMotionAugmentedAttention", "pos": (800, 620), "inputs": {
            "model": ref(11), "motion_field": ref(6), "strength": 1.0, "start_percent": 0.0, "end_percent": 1.0}},
        {"id": 13, "type": "KSampler", "pos": (1280, 640), "size": (320, 270), "inputs": {
            "model": ref(12), "seed": 42, "steps": 20, "cfg": 2.5, "sampler_name": "euler", "scheduler": "karras",
            "positive": ref(10, 0), "negative": ref(10, 1), "latent_image": ref(10, 2), "denoise": 1.0}},
        {"id": 14, "type": "VAEDecode", "pos": (1640, 640), "inputs": {"samples": ref(13), "vae": ref(9, 2)}},
        {"id": 15, "type": "SaveWEBM", "pos": (1640, 760), "size": (320, 360), "inputs": {
            "images": ref(14), "filename_prefix": "video/MotionKit_motion_i2v", **WEBM, "fps": 8.0}},
        {"id": 16, "type": "MarkdownNote", "pos": (1640, 0), "size": (420, 520), "widgets_values": [NOTE]},
    ]


# The arrows example: the orange ball of trajectory_example (512x512, centre (0.30, 0.56) -> (154, 287)),
# clicked at its centre; the arrow starts there and bends up and to the right.
ARROWS_EXAMPLE_SIZE = 512
ARROWS_EXAMPLE_POINTS = json.dumps({"version": 1, "width": 512, "height": 512,
                                    "objects": [{"positive": [[154, 287]], "negative": [], "box": None}]})
ARROWS_EXAMPLE_ARROWS = json.dumps({"version": 1, "width": 512, "height": 512,
                                    "arrows": [{"object": 0, "points": [[154, 287], [262, 150], [380, 205]]}]})

ARROWS_NOTE = """## Arrows to Trajectories (TrackGo)

**Model:** SAM `sam_vit_b_01ec64.pth` in `models/sams/` (ViT-L and ViT-H work too).

1. *Load Image*: your still.
2. **Click to Mask (SAM):** click the object (left = object, right = background; **N** = next object). One mask per object, object *i* is mask *i* of the arrows.
3. **Arrows to Trajectories:** once Click to Mask has run (queue once), its editor shows the image with each object's mask tinted in the object's colour. Pick an object and drag from where it starts to where it should end. Drag a point to bend the arrow or the line to move it; double-click a segment to add a point, right-click a point to remove it; *R* reverses, *Delete* removes it. Pick *Camera* to move the whole image. The white ticks show where the object is at each frame for the chosen easing.
4. **Visualize Tracks** draws the trajectories (one colour per object) and *Save WEBM* writes them as a video. Feed `tracks` to the trajectory toolkit (Track Maps, Drags, Sparse Flow) for the video models.
"""


def arrows_to_trajectories_spec() -> list[dict]:
    """Image -> Click to Mask -> Arrows to Trajectories -> Visualize Tracks -> save as video (WEBM)."""
    return [
        {"id": 1, "type": "LoadImage", "pos": (0, 0), "size": (320, 380), "inputs": {"image": "motionkit_arrows_example.png"}},
        {"id": 2, "type": "MotionKitSAMLoader", "pos": (0, 440), "size": (320, 60), "properties": {"models": [SAM_B]},
         "inputs": {"model_name": SAM_B["name"]}},
        {"id": 3, "type": "MotionKitClickToMask", "pos": (360, 0), "size": (420, 460), "inputs": {
            "sam_model": ref(2), "image": ref(1), "points": ARROWS_EXAMPLE_POINTS}},
        {"id": 4, "type": "MotionKitArrowsToTracks", "pos": (820, 0), "size": (440, 640), "inputs": {
            "masks": ref(3, 0), "image": ref(1), "arrows": ARROWS_EXAMPLE_ARROWS, "num_frames": 14,
            "points_per_object": 8, "seed": 0, "easing": "ease-in-out"}},
        {"id": 5, "type": "MotionKitVisualizeTracks", "pos": (1300, 0), "size": (300, 110), "inputs": {
            "tracks": ref(4, 0), "image": ref(1), "line_width": 3, "point_radius": 5}},
        {"id": 6, "type": "SaveWEBM", "pos": (1300, 160), "size": (360, 440), "inputs": {
            "images": ref(5), "filename_prefix": "video/MotionKit_arrows", **WEBM, "fps": 7.0}},
        {"id": 7, "type": "MarkdownNote", "pos": (0, 560), "size": (780, 330), "widgets_values": [ARROWS_NOTE]},
    ]


EXAMPLES = {"svd_motion_augmented": motion_i2v_svd_spec, "arrows_to_trajectories": arrows_to_trajectories_spec}


def write_examples(object_info: dict, directory: Path, names=None) -> list[Path]:
    written = []
    for name in names or EXAMPLES:
        path = directory / f"{name}.json"
        path.write_text(json.dumps(build_workflow(EXAMPLES[name](), object_info), indent=2) + "\n")
        written.append(path)
    return written
