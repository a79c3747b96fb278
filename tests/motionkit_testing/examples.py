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


# --- Click to Mask + Arrows to Trajectories -> core Wan ATI (WanTrackToVideo) ------------------------------
# Models and sampler settings of core's Wan ATI template (comfyui_workflow_templates video_wan_ati.json).
WAN_ATI_UNET = {"name": "Wan2_1-I2V-ATI-14B_fp8_e4m3fn.safetensors", "directory": "diffusion_models",
                "url": "https://huggingface.co/Kijai/WanVideo_comfy/resolve/main/Wan2_1-I2V-ATI-14B_fp8_e4m3fn.safetensors"}
WAN_UMT5 = {"name": "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "directory": "text_encoders",
            "url": "https://huggingface.co/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files/"
                   "text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors?download=true"}
WAN_VAE = {"name": "wan_2.1_vae.safetensors", "directory": "vae",
           "url": "https://huggingface.co/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files/vae/"
                  "wan_2.1_vae.safetensors"}
WAN_CLIP_VISION = {"name": "clip_vision_h.safetensors", "directory": "clip_vision",
                   "url": "https://huggingface.co/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files/"
                          "clip_vision/clip_vision_h.safetensors"}
# The video size: the still is scaled (centre crop) to it, so the tracks are pixels of the frame Wan uses.
WAN_SIZE = (832, 480)
WAN_LENGTH = 81           # video frames
WAN_TRACK_FRAMES = 121    # core WanTrackToVideo reads 121 points per track (ATI's clip) and resamples them
# The orange ball (512x512, centre (154, 287), radius 67) after ImageScale to 832x480 with centre crop
# (rows 108..404 kept, scaled by 1.625 x 1.622): centre (250, 290), radius about 108.
WAN_POINTS = json.dumps({"version": 1, "width": 832, "height": 480,
                         "objects": [{"positive": [[250, 290]], "negative": [], "box": None}]})
# Arrows JSON version 2: the ball moves in frames 8..112 with ease-in-out, passing its bend at frame 60;
# eight background anchors around the border hold the camera still.
_BORDER = [[24, 24], [416, 24], [808, 24], [24, 240], [808, 240], [24, 456], [416, 456], [808, 456]]
WAN_ARROWS = json.dumps({"version": 2, "width": 832, "height": 480,
                         "arrows": [{"object": 0, "points": [[250, 290], [420, 190, 60], [600, 230]],
                                     "start_frame": 8, "end_frame": 112, "easing": "ease-in-out",
                                     "visible": "always"}],
                         "anchors": [{"object": None, "point": p} for p in _BORDER]})
WAN_POSITIVE = ("An orange ball flies in an arc across a clear blue sky above a teal hill, smooth natural motion, "
                "the camera stays still.")
WAN_NEGATIVE = ("static, frozen frame, blurry, low quality, jpeg artifacts, distorted, deformed, extra objects, "
                "camera shake, flicker, text, watermark")

WAN_NOTE = """## Click to Mask + Arrows -> core Wan ATI (WanTrackToVideo)

**Models** (those of core's Wan ATI template; the frontend offers the downloads):
- `Wan2_1-I2V-ATI-14B_fp8_e4m3fn.safetensors` in `models/diffusion_models/`
- `umt5_xxl_fp8_e4m3fn_scaled.safetensors` in `models/text_encoders/`
- `wan_2.1_vae.safetensors` in `models/vae/`, `clip_vision_h.safetensors` in `models/clip_vision/`
- SAM `sam_vit_b_01ec64.pth` in `models/sams/`

1. *Load Image*, scaled to **832x480**, the size WanTrackToVideo makes: the tracks are pixels of this frame.
2. **Click to Mask (SAM):** click the object; one mask per object.
3. **Arrows to Trajectories** at **121 frames** (core reads 121 points per track, ATI's clip, and resamples them to the 81 video frames). Here the ball moves in frames 8-112 (ease-in-out) and passes its bend at frame 60; eight background anchors around the border hold the camera.
4. **Tracks to Coordinates** -> WanTrackToVideo `tracks`. Sampler settings as the core template (shift 8, uni_pc, 20 steps, cfg 3).

On a ComfyUI with the Wan-Move nodes (newer than v0.3.64): connect the `tracks` output (TRACKS) straight to core *WanMoveTrackToVideo* (Arrows at num_frames = length, 81) with a Wan-Move model.
"""


def click_to_mask_wan_tracks_spec() -> list[dict]:
    """Load Image -> 832x480 -> Click to Mask -> Arrows to Trajectories (121 frames) -> Tracks to Coordinates ->
    core WanTrackToVideo (ATI) with the core template's loaders -> KSampler -> VAEDecode -> SaveWEBM."""
    width, height = WAN_SIZE
    return [
        {"id": 1, "type": "LoadImage", "pos": (0, 0), "size": (320, 380), "inputs": {"image": "motionkit_arrows_example.png"}},
        {"id": 2, "type": "ImageScale", "pos": (0, 440), "size": (320, 130), "inputs": {
            "image": ref(1), "upscale_method": "lanczos", "width": width, "height": height, "crop": "center"}},
        {"id": 3, "type": "MotionKitSAMLoader", "pos": (0, 620), "size": (320, 60), "properties": {"models": [SAM_B]},
         "inputs": {"model_name": SAM_B["name"]}},
        {"id": 4, "type": "MotionKitClickToMask", "pos": (360, 0), "size": (460, 420), "inputs": {
            "sam_model": ref(3), "image": ref(2), "points": WAN_POINTS}},
        {"id": 5, "type": "MotionKitArrowsToTracks", "pos": (860, 0), "size": (480, 520), "inputs": {
            "masks": ref(4, 0), "image": ref(2), "arrows": WAN_ARROWS, "num_frames": WAN_TRACK_FRAMES,
            "points_per_object": 8, "seed": 0, "easing": "linear"}},
        {"id": 6, "type": "MotionKitTracksToCoordinates", "pos": (1380, 0), "size": (300, 60), "inputs": {
            "tracks": ref(5, 0)}},
        {"id": 7, "type": "UNETLoader", "pos": (360, 480), "size": (420, 90), "properties": {"models": [WAN_ATI_UNET]},
         "inputs": {"unet_name": WAN_ATI_UNET["name"], "weight_dtype": "fp8_e4m3fn"}},
        {"id": 8, "type": "ModelSamplingSD3", "pos": (360, 620), "size": (320, 60), "inputs": {
            "model": ref(7), "shift": 8.0}},
        {"id": 9, "type": "CLIPLoader", "pos": (0, 740), "size": (320, 110), "properties": {"models": [WAN_UMT5]},
         "inputs": {"clip_name": WAN_UMT5["name"], "type": "wan", "device": "default"}},
        {"id": 10, "type": "CLIPTextEncode", "pos": (360, 740), "size": (420, 160), "inputs": {
            "clip": ref(9), "text": WAN_POSITIVE}},
        {"id": 11, "type": "CLIPTextEncode", "pos": (360, 940), "size": (420, 160), "inputs": {
            "clip": ref(9), "text": WAN_NEGATIVE}},
        {"id": 12, "type": "VAELoader", "pos": (0, 900), "size": (320, 60), "properties": {"models": [WAN_VAE]},
         "inputs": {"vae_name": WAN_VAE["name"]}},
        {"id": 13, "type": "CLIPVisionLoader", "pos": (0, 1010), "size": (320, 60),
         "properties": {"models": [WAN_CLIP_VISION]}, "inputs": {"clip_name": WAN_CLIP_VISION["name"]}},
        {"id": 14, "type": "CLIPVisionEncode", "pos": (360, 1140), "size": (320, 80), "inputs": {
            "clip_vision": ref(13), "image": ref(2), "crop": "none"}},
        {"id": 15, "type": "WanTrackToVideo", "pos": (860, 580), "size": (340, 330), "inputs": {
            "positive": ref(10), "negative": ref(11), "vae": ref(12), "tracks": ref(6), "width": width,
            "height": height, "length": WAN_LENGTH, "batch_size": 1, "temperature": 220.0, "topk": 10,
            "start_image": ref(2), "clip_vision_output": ref(14)}},
        {"id": 16, "type": "KSampler", "pos": (1240, 580), "size": (320, 270), "inputs": {
            "model": ref(8), "seed": 42, "steps": 20, "cfg": 3.0, "sampler_name": "uni_pc", "scheduler": "simple",
            "positive": ref(15, 0), "negative": ref(15, 1), "latent_image": ref(15, 2), "denoise": 1.0}},
        {"id": 17, "type": "VAEDecode", "pos": (1600, 580), "size": (220, 50), "inputs": {
            "samples": ref(16), "vae": ref(12)}},
        {"id": 18, "type": "SaveWEBM", "pos": (1600, 680), "size": (360, 420), "inputs": {
            "images": ref(17), "filename_prefix": "video/MotionKit_wan_tracks", **WEBM, "fps": 16.0}},
        {"id": 19, "type": "MarkdownNote", "pos": (1380, -560), "size": (560, 520), "widgets_values": [WAN_NOTE]},
    ]


def _font(size: int):
    from PIL import ImageFont
    try:
        return ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default()


def wan_thumbnail(path: Path) -> None:
    """A diagram (not model output): the scaled still with the saved arrow and anchors, and the node chain."""
    import numpy as np
    from PIL import Image, ImageDraw
    from .trajectory_example import example_pixels

    img = Image.new("RGB", (800, 560), (24, 25, 30))
    d = ImageDraw.Draw(img)
    d.text((30, 24), "Click to Mask + Arrows -> core Wan ATI", fill=(245, 245, 245), font=_font(26))
    d.text((30, 62), "MotionKit  |  WanTrackToVideo (ATI), 832x480, 81 frames  |  diagram, not model output",
           fill=(150, 160, 175), font=_font(15))
    still = Image.fromarray((example_pixels(512) * 255).round().astype(np.uint8))
    still = still.crop((0, 108, 512, 404)).resize((416, 240), Image.LANCZOS)   # 832x480 at half size
    img.paste(still, (30, 100))
    doc = json.loads(WAN_ARROWS)
    pts = [(30 + x / 2, 100 + y / 2) for x, y, *_ in doc["arrows"][0]["points"]]
    d.line(pts, fill=(250, 250, 250), width=4, joint="curve")
    (xa, ya), (xb, yb) = pts[-2], pts[-1]
    d.polygon([(xb, yb), (xb - 15, yb - 8), (xb - 11, yb + 8)], fill=(250, 250, 250))
    d.ellipse([pts[0][0] - 6, pts[0][1] - 6, pts[0][0] + 6, pts[0][1] + 6], fill=(255, 80, 60))
    d.ellipse([pts[1][0] - 5, pts[1][1] - 5, pts[1][0] + 5, pts[1][1] + 5], outline=(250, 210, 90), width=2)
    d.text((pts[1][0] + 8, pts[1][1] - 22), "frame 60", fill=(250, 210, 90), font=_font(13))
    for a in doc["anchors"]:
        x, y = 30 + a["point"][0] / 2, 100 + a["point"][1] / 2
        d.rectangle([x - 4, y - 4, x + 4, y + 4], outline=(120, 230, 210), width=2)
    lines = [("arrow: frames 8-112, ease-in-out", (250, 210, 90)),
             ("bend reached exactly at frame 60", (250, 210, 90)),
             ("8 background anchors: hold camera", (120, 230, 210)),
             ("121 points per track (ATI clip)", (200, 200, 200)),
             ("-> 81 video frames, pixels 832x480", (200, 200, 200))]
    for i, (text, color) in enumerate(lines):
        d.text((470, 112 + 34 * i), text, fill=color, font=_font(16))
    labels = ["Click to Mask", "Arrows", "Coordinates", "WanTrack", "KSampler"]
    for i, label in enumerate(labels):
        x = 30 + i * 150
        hot = label in ("Arrows", "Coordinates")
        d.rounded_rectangle([x, 420, x + 128, 470], 8, fill=(36, 84, 78) if hot else (44, 46, 54),
                            outline=(120, 230, 210) if hot else (110, 112, 120), width=2)
        d.text((x + 64, 445), label, fill=(240, 240, 240), font=_font(15), anchor="mm")
        if i:
            d.polygon([(x - 18, 439), (x - 6, 445), (x - 18, 451)], fill=(200, 200, 200))
    d.text((30, 500), "Newer ComfyUI: TRACKS straight into core WanMoveTrackToVideo (Wan-Move)",
           fill=(170, 170, 180), font=_font(15))
    img.save(path, "JPEG", quality=90)


EXAMPLES = {"svd_motion_augmented": motion_i2v_svd_spec, "arrows_to_trajectories": arrows_to_trajectories_spec,
            "click_to_mask_wan_tracks": click_to_mask_wan_tracks_spec}
THUMBNAILS = {"click_to_mask_wan_tracks": wan_thumbnail}


def write_examples(object_info: dict, directory: Path, names=None) -> list[Path]:
    written = []
    for name in names or EXAMPLES:
        path = directory / f"{name}.json"
        path.write_text(json.dumps(build_workflow(EXAMPLES[name](), object_info), indent=2) + "\n")
        if name in THUMBNAILS:
            THUMBNAILS[name](path.with_suffix(".jpg"))
        written.append(path)
    return written
