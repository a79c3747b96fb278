"""The SD1.5 example workflows (Still-Moving with a style LoRA; Motion-I2V stage 2) as compact specs, written to
``example_workflows/`` in UI format with :func:`ui_builder.build_workflow` and a diagram thumbnail each.

Regenerate (after an input of a node changed) with::

    cd tests && ../.venv/bin/python -m motionkit_testing.sd15_examples

It starts the pinned ComfyUI with MotionKit on a temporary base directory to read ``/object_info`` and
writes these and the specs of ``examples.py`` (whose thumbnails are drawn by hand). Any supported host
gives the same files (``tests/test_sd15_examples.py`` checks it on each).
"""
from __future__ import annotations

import json
from pathlib import Path

from .examples import WEBM
from .ui_builder import build_workflow, ref

REPO = Path(__file__).resolve().parents[2]
SD15 = {"name": "v1-5-pruned-emaonly-fp16.safetensors", "directory": "checkpoints",
        "url": "https://huggingface.co/Comfy-Org/stable-diffusion-v1-5-archive/resolve/main/v1-5-pruned-emaonly-fp16.safetensors"}
MM_V2 = {"name": "mm_sd_v15_v2.ckpt", "directory": "animatediff_models",
         "url": "https://huggingface.co/guoyww/animatediff/resolve/main/mm_sd_v15_v2.ckpt"}
MOTION_BLOCK = {"name": "motion_block.bin", "directory": "animatediff_models",
                "url": "https://huggingface.co/wangfuyun/Motion-I2V/resolve/main/models/stage2/Motion_Module/motion_block.bin"}
SAM_B = {"name": "sam_vit_b_01ec64.pth", "directory": "sams",
         "url": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"}
NEGATIVE = "worst quality, low quality, blurry, watermark, text"

STILL_MOVING_NOTE = """## SD1.5 video in your LoRA's style: motion module + Still-Moving adapters

**Models:** an SD1.5 checkpoint in `models/checkpoints/`, your style LoRA in `models/loras/`, AnimateDiff's `mm_sd_v15_v2.ckpt` in `models/animatediff_models/` (the folder AnimateDiff-Evolved uses), and a Still-Moving adapter file in `models/still_moving/`.

1. **Load Motion Module** turns SD1.5 (+ LoRA) into a video model: the latent batch (16 here) is the frames.
2. **Still-Moving Adapters**: `spatial_strength` applies the spatial adapters trained for your LoRA (they fix the style's features inside the video model); `motion_alpha` 0 removes the motion adapter, negative values add motion, 1 freezes the video.
3. The adapter file comes from **Train Motion Adapter** (once per base model + motion module) and **Train Spatial Adapters** (once per LoRA), or `scripts/train_still_moving.py`; both write `models/still_moving/<name>.safetensors`.

Everything is merged into the weights: sampling costs the same as without adapters. The nodes stack in any order with LoRA loaders.
"""

MOTION_I2V_NOTE = """## Motion-I2V stage 2 on SD1.5: image + motion field + motion_block.bin

**Models:** an SD1.5 checkpoint (Motion-I2V used Realistic Vision) in `models/checkpoints/`, Motion-I2V's `motion_block.bin` in `models/animatediff_models/`, SAM `sam_vit_b_01ec64.pth` in `models/sams/`.

1. *Load Image*, scaled to the video size (512x320, as Motion-I2V).
2. **Click to Mask (SAM)**, then **Arrows to Trajectories**: queue once so the editor shows the image, drag an arrow per object (16 frames).
3. **Trajectories to Motion Field** makes the dense flow from frame 0 (training-free; Motion-I2V's stage 1 predicts it with a diffusion model).
4. **Load Motion Module** reads `motion_block.bin` (AnimateDiff v2 layout); **Motion-Augmented Temporal Attention** warps frame 0's features by the field and interleaves them with the frames in every motion-module attention, with the position encoding over the interleaved positions (so at most 16 frames).
5. **First-Frame Video Latent** keeps frame 0 on the image while the other frames are sampled.
"""


def still_moving_spec() -> list:
    return [
        {"id": 1, "type": "CheckpointLoaderSimple", "pos": (0, 0), "size": (320, 100),
         "inputs": {"ckpt_name": SD15["name"]}, "properties": {"models": [SD15]}},
        {"id": 2, "type": "LoraLoaderModelOnly", "pos": (360, 0), "size": (320, 90),
         "inputs": {"model": ref(1, 0), "lora_name": "my_style_lora.safetensors", "strength_model": 0.8}},
        {"id": 3, "type": "MotionKitLoadMotionModule", "pos": (720, 0), "size": (340, 80),
         "inputs": {"model": ref(2, 0), "motion_module": MM_V2["name"]}, "properties": {"models": [MM_V2]}},
        {"id": 4, "type": "MotionKitStillMovingAdapter", "pos": (1100, 0), "size": (340, 130),
         "inputs": {"model": ref(3, 0), "adapter": "my_style_still_moving.safetensors", "motion_alpha": 0.0,
                    "spatial_strength": 1.0}},
        {"id": 5, "type": "CLIPTextEncode", "pos": (360, 160), "size": (400, 140),
         "inputs": {"clip": ref(1, 1), "text": "a red fox walking through a snowy forest, in my style"}},
        {"id": 6, "type": "CLIPTextEncode", "pos": (360, 340), "size": (400, 120),
         "inputs": {"clip": ref(1, 1), "text": NEGATIVE}},
        {"id": 7, "type": "EmptyLatentImage", "pos": (800, 340), "size": (300, 110),
         "inputs": {"width": 512, "height": 512, "batch_size": 16}},
        {"id": 8, "type": "KSampler", "pos": (1140, 180), "size": (320, 260),
         "inputs": {"model": ref(4, 0), "positive": ref(5, 0), "negative": ref(6, 0), "latent_image": ref(7, 0),
                    "seed": 42, "steps": 20, "cfg": 7.5, "sampler_name": "euler_ancestral", "scheduler": "normal",
                    "denoise": 1.0}},
        {"id": 9, "type": "VAEDecode", "pos": (1500, 180), "size": (220, 50),
         "inputs": {"samples": ref(8, 0), "vae": ref(1, 2)}},
        {"id": 10, "type": "SaveWEBM", "pos": (1800, 180), "size": (360, 420),
         "inputs": {"images": ref(9, 0), "filename_prefix": "video/MotionKit_still_moving", **WEBM, "fps": 8.0}},
        {"id": 11, "type": "MarkdownNote", "pos": (0, 160), "size": (340, 420), "widgets_values": [STILL_MOVING_NOTE]},
    ]


def motion_i2v_spec() -> list:
    w, h, frames = 512, 320, 16
    points = json.dumps({"version": 1, "width": w, "height": h,
                         "objects": [{"positive": [[154, 194]], "negative": [], "box": None}]})
    arrows = json.dumps({"version": 1, "width": w, "height": h,
                         "arrows": [{"object": 0, "points": [[154, 194], [260, 140], [360, 166]]}]})
    return [
        {"id": 1, "type": "LoadImage", "pos": (0, 0), "size": (300, 320), "inputs": {"image": "motionkit_arrows_example.png"}},
        {"id": 2, "type": "ImageScale", "pos": (340, 0), "size": (300, 130),
         "inputs": {"image": ref(1, 0), "upscale_method": "lanczos", "width": w, "height": h, "crop": "center"}},
        {"id": 3, "type": "MotionKitSAMLoader", "pos": (340, 170), "size": (300, 60),
         "inputs": {"model_name": SAM_B["name"]}, "properties": {"models": [SAM_B]}},
        {"id": 4, "type": "MotionKitClickToMask", "pos": (680, 0), "size": (420, 420),
         "inputs": {"sam_model": ref(3, 0), "image": ref(2, 0), "points": points}},
        {"id": 5, "type": "MotionKitArrowsToTracks", "pos": (1140, 0), "size": (420, 460),
         "inputs": {"masks": ref(4, 0), "image": ref(2, 0), "arrows": arrows, "num_frames": frames,
                    "points_per_object": 8, "seed": 0, "easing": "ease-in-out"}},
        {"id": 6, "type": "MotionKitTracksToMotionField", "pos": (1600, 0), "size": (320, 80),
         "inputs": {"tracks": ref(5, 0), "masks": ref(4, 0), "boundary_softness": 4.0}},
        {"id": 7, "type": "MotionKitVisualizeMotionField", "pos": (1600, 120), "size": (320, 100),
         "inputs": {"motion_field": ref(6, 0), "image": ref(2, 0), "max_magnitude": 0.0}},
        {"id": 8, "type": "PreviewImage", "pos": (1960, 0), "size": (300, 300), "inputs": {"images": ref(7, 1)}},
        {"id": 9, "type": "CheckpointLoaderSimple", "pos": (0, 520), "size": (320, 100),
         "inputs": {"ckpt_name": SD15["name"]}, "properties": {"models": [SD15]}},
        {"id": 10, "type": "MotionKitLoadMotionModule", "pos": (360, 520), "size": (340, 80),
         "inputs": {"model": ref(9, 0), "motion_module": MOTION_BLOCK["name"]}, "properties": {"models": [MOTION_BLOCK]}},
        {"id": 11, "type": "MotionKitMotionAugmentedAttention", "pos": (740, 520), "size": (340, 150),
         "inputs": {"model": ref(10, 0), "motion_field": ref(6, 0), "strength": 1.0, "start_percent": 0.0,
                    "end_percent": 1.0}},
        {"id": 12, "type": "MotionKitFirstFrameLatent", "pos": (740, 720), "size": (320, 150),
         "inputs": {"vae": ref(9, 2), "image": ref(2, 0), "width": w, "height": h, "video_frames": frames}},
        {"id": 13, "type": "CLIPTextEncode", "pos": (360, 660), "size": (340, 120),
         "inputs": {"clip": ref(9, 1), "text": "an orange ball bouncing over a green hill, blue sky, photo"}},
        {"id": 14, "type": "CLIPTextEncode", "pos": (360, 820), "size": (340, 110), "inputs": {"clip": ref(9, 1), "text": NEGATIVE}},
        {"id": 15, "type": "KSampler", "pos": (1120, 520), "size": (320, 260),
         "inputs": {"model": ref(11, 0), "positive": ref(13, 0), "negative": ref(14, 0), "latent_image": ref(12, 0),
                    "seed": 42, "steps": 25, "cfg": 7.0, "sampler_name": "ddim", "scheduler": "ddim_uniform",
                    "denoise": 1.0}},
        {"id": 16, "type": "VAEDecode", "pos": (1480, 520), "size": (220, 50), "inputs": {"samples": ref(15, 0), "vae": ref(9, 2)}},
        {"id": 17, "type": "SaveWEBM", "pos": (1780, 520), "size": (360, 420),
         "inputs": {"images": ref(16, 0), "filename_prefix": "video/MotionKit_motion_i2v_sd15", **WEBM, "fps": 8.0}},
        {"id": 18, "type": "MarkdownNote", "pos": (0, 960), "size": (700, 360), "widgets_values": [MOTION_I2V_NOTE]},
    ]


EXAMPLES = {"sd15_still_moving": still_moving_spec, "sd15_motion_i2v_stage2": motion_i2v_spec}


# --- thumbnails: diagrams, not model output ---------------------------------------------------------------

def _font(size: int, bold: bool = False):
    from PIL import ImageFont
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    try:
        return ImageFont.truetype(f"/usr/share/fonts/truetype/dejavu/{name}", size)
    except OSError:
        return ImageFont.load_default()


def _boxes(draw, labels: list, y: int, highlight: set, x0: int = 30, width: int = 128, gap: int = 22):
    for i, label in enumerate(labels):
        x = x0 + i * (width + gap)
        hot = label in highlight
        draw.rounded_rectangle([x, y, x + width, y + 50], 8, fill=(36, 84, 78) if hot else (44, 46, 54),
                               outline=(120, 230, 210) if hot else (110, 112, 120), width=2)
        draw.text((x + width / 2, y + 25), label, fill=(240, 240, 240), font=_font(15), anchor="mm")
        if i:
            draw.polygon([(x - gap + 4, y + 19), (x - 6, y + 25), (x - gap + 4, y + 31)], fill=(200, 200, 200))


def thumbnail(name: str, path: Path) -> None:
    from PIL import Image, ImageDraw
    img = Image.new("RGB", (800, 560), (24, 25, 30))
    d = ImageDraw.Draw(img)
    if name == "sd15_still_moving":
        d.text((30, 26), "SD1.5 video: style LoRA + motion module + Still-Moving", fill=(245, 245, 245), font=_font(26))
        d.text((30, 66), "MotionKit  |  Still-Moving (arXiv 2407.08674)  |  diagram, not model output",
               fill=(150, 160, 175), font=_font(15))
        for i in range(5):   # frames: a styled fox moving right
            x = 40 + i * 148
            d.rounded_rectangle([x, 120, x + 128, 210], 8, fill=(58, 64, 92), outline=(130, 130, 150), width=2)
            cx = x + 30 + i * 14
            d.ellipse([cx, 150, cx + 40, 185], fill=(232, 120, 50))
            d.text((x + 64, 225), f"frame {i if i < 4 else 'T-1'}", fill=(200, 200, 200), font=_font(14), anchor="mm")
        d.text((30, 262), "temporal attention q/k/v:  W + alpha * up @ down   (motion adapter; alpha 1 = frozen,",
               fill=(250, 210, 90), font=_font(15))
        d.text((30, 286), "0 = off, < 0 = more motion)", fill=(250, 210, 90), font=_font(15))
        d.text((30, 316), "spatial attention out:  (I + s * up @ down)(W + LoRA)   (spatial adapters, after the LoRA)",
               fill=(120, 230, 210), font=_font(15))
        _boxes(d, ["SD1.5", "style LoRA", "Motion Module", "Still-Moving", "KSampler"], 380,
               {"Motion Module", "Still-Moving"})
        d.text((30, 470), "merged into the weights: no cost per step; adapters from Train Motion Adapter /",
               fill=(170, 170, 180), font=_font(15))
        d.text((30, 494), "Train Spatial Adapters (or scripts/train_still_moving.py)", fill=(170, 170, 180), font=_font(15))
    else:
        d.text((30, 26), "Motion-I2V stage 2 on SD1.5", fill=(245, 245, 245), font=_font(26))
        d.text((30, 66), "MotionKit  |  Motion-I2V (arXiv 2401.15977)  |  diagram, not model output",
               fill=(150, 160, 175), font=_font(15))
        labels = ["h0", "w1", "h1", "w2", "h2", "w3", "h3"]
        for i, label in enumerate(labels):
            x = 40 + i * 104
            warped = label.startswith("w")
            d.rounded_rectangle([x, 130, x + 84, 200], 8, fill=(36, 84, 78) if warped else (58, 64, 92),
                                outline=(120, 230, 210) if warped else (130, 130, 150), width=2)
            d.text((x + 42, 165), label, fill=(240, 240, 240), font=_font(20), anchor="mm")
            d.text((x + 42, 218), f"pos {i}", fill=(190, 190, 190), font=_font(13), anchor="mm")
        d.text((30, 250), "w_t = frame 0's features forward-splatted by the motion field; queries from h_t only,",
               fill=(250, 210, 90), font=_font(15))
        d.text((30, 274), "keys/values from the whole sequence, position encoding over the 2T-1 positions",
               fill=(250, 210, 90), font=_font(15))
        _boxes(d, ["Click+Arrows", "Motion Field", "motion_block", "Augmented", "KSampler"], 330,
               {"Motion Field", "Augmented"})
        d.text((30, 420), "First-Frame Video Latent keeps frame 0 on the input image; no new weights:",
               fill=(170, 170, 180), font=_font(15))
        d.text((30, 444), "the motion module's own q/k/v/out attend over the interleaved sequence.",
               fill=(170, 170, 180), font=_font(15))
    img.save(path, "JPEG", quality=90)


def write_examples(object_info: dict, folder: Path = REPO / "example_workflows") -> list:
    written = []
    for name, spec in EXAMPLES.items():
        wf = build_workflow(spec(), object_info)
        (folder / f"{name}.json").write_text(json.dumps(wf, indent=1) + "\n")
        thumbnail(name, folder / f"{name}.jpg")
        written.append(folder / f"{name}.json")
    return written


def main() -> None:
    import tempfile
    from . import comfy_session as cs
    base = cs.make_base_dir(Path(tempfile.mkdtemp(prefix="motionkit-examples-")))
    server = cs.ComfyServer(base, cs.comfyui_path())
    try:
        from . import examples
        object_info = server.get("/object_info")
        for path in write_examples(object_info) + examples.write_examples(object_info, REPO / "example_workflows"):
            print(path)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
