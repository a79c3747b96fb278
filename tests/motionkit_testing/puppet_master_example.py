"""The Puppet-Master example workflow (``example_workflows/svd_puppet_master.json``) and its diagram thumbnail,
written with ui_builder. Regenerate (after an input of a node changed) with::

    cd tests && ../.venv/bin/python -m motionkit_testing.puppet_master_example

It starts the pinned ComfyUI with MotionKit on a temporary base directory to read ``/object_info``.
"""
from __future__ import annotations

import json
from pathlib import Path

from .examples import SAM_B, WEBM
from .trajectory_example import EXAMPLE_IMAGE, example_pixels
from .ui_builder import build_workflow, ref

REPO = Path(__file__).resolve().parents[2]
NAME = "svd_puppet_master"

# Puppet-Master's UNet: the HF Space rayli/Puppet-Master holds it as ckpts/model.safetensors (6.7 GB, fp32);
# there is no model repository (../shared/research/papers.md §4.1). The URL is the Hub's resolve path for a
# Space file.
PUPPET_MASTER = {"name": "model.safetensors", "directory": "puppet_master",
                 "url": "https://huggingface.co/spaces/rayli/Puppet-Master/resolve/main/ckpts/model.safetensors"}
# CLIP vision and VAE come from the 14-frame SVD checkpoint, as the Space takes them from
# stable-video-diffusion-img2vid.
SVD_14 = {"name": "svd.safetensors", "directory": "checkpoints",
          "url": "https://huggingface.co/stabilityai/stable-video-diffusion-img2vid/resolve/main/svd.safetensors?download=true"}

# The orange ball of the arrows example (512x512, centre (154, 287)), dragged up and to the right.
POINTS = json.dumps({"version": 1, "width": 512, "height": 512,
                     "objects": [{"positive": [[154, 287]], "negative": [], "box": None}]})
ARROWS = json.dumps({"version": 1, "width": 512, "height": 512,
                     "arrows": [{"object": 0, "points": [[154, 287], [330, 170]]}]})

NOTE = """## Puppet-Master: drag an object, get part-level motion (SVD, 256x256, 14 frames)

**Models:**
- `model.safetensors` (6.7 GB) from the Hugging Face Space [rayli/Puppet-Master](https://huggingface.co/spaces/rayli/Puppet-Master), file `ckpts/model.safetensors`, into `models/puppet_master/` (`models/diffusion_models/` works too).
- `svd.safetensors` (14-frame SVD, stabilityai/stable-video-diffusion-img2vid, accept its licence) into `models/checkpoints/`: only its CLIP vision and VAE are used.
- SAM `sam_vit_b_01ec64.pth` in `models/sams/`.

1. *Load Image*: best a single object on a plain (white) background, as Puppet-Master was trained.
2. **Click to Mask (SAM):** click the object; one mask per object.
3. **Arrows to Trajectories:** queue once, then drag from the part to move to where it should go (14 frames).
4. **Puppet-Master Drags:** one drag per object (its farthest-moving track), at most 5; `drags_info` says which were kept. The uncond half gets zero drags.
5. **SVD conditioning** at **256x256, 14 frames, augmentation 0** (Puppet-Master's training size; fps and motion bucket do nothing). Draw the arrows on the image you condition on: drags are placed in its centre square.
6. *VideoLinearCFGGuidance* (min 1) and *KSampler* (euler, karras, 50 steps, cfg 5) as the official demo.

All-to-first attention is built into the loaded model; an All-to-First node after the loader replaces it.
"""


def spec() -> list[dict]:
    return [
        {"id": 1, "type": "LoadImage", "pos": (0, 0), "size": (320, 380), "inputs": {"image": EXAMPLE_IMAGE}},
        {"id": 2, "type": "MotionKitSAMLoader", "pos": (0, 440), "size": (320, 60), "properties": {"models": [SAM_B]},
         "inputs": {"model_name": SAM_B["name"]}},
        {"id": 3, "type": "MotionKitClickToMask", "pos": (360, 0), "size": (420, 460), "inputs": {
            "sam_model": ref(2), "image": ref(1), "points": POINTS}},
        {"id": 4, "type": "MotionKitArrowsToTracks", "pos": (820, 0), "size": (440, 640), "inputs": {
            "masks": ref(3, 0), "image": ref(1), "arrows": ARROWS, "num_frames": 14, "points_per_object": 8,
            "seed": 0, "easing": "linear"}},
        {"id": 5, "type": "MotionKitPuppetMasterLoader", "pos": (360, 540), "size": (420, 60),
         "properties": {"models": [PUPPET_MASTER]}, "inputs": {"unet_name": PUPPET_MASTER["name"]}},
        {"id": 6, "type": "MotionKitPuppetMasterDrags", "pos": (1300, 0), "size": (320, 100), "inputs": {
            "model": ref(5), "tracks": ref(4, 0), "width": 0, "height": 0}},
        {"id": 7, "type": "ImageOnlyCheckpointLoader", "pos": (0, 560), "size": (320, 100),
         "properties": {"models": [SVD_14]}, "inputs": {"ckpt_name": SVD_14["name"]}},
        {"id": 8, "type": "SVD_img2vid_Conditioning", "pos": (360, 660), "size": (320, 220), "inputs": {
            "clip_vision": ref(7, 1), "init_image": ref(1), "vae": ref(7, 2), "width": 256, "height": 256,
            "video_frames": 14, "motion_bucket_id": 127, "fps": 6, "augmentation_level": 0.0}},
        {"id": 9, "type": "VideoLinearCFGGuidance", "pos": (1300, 160), "size": (320, 60), "inputs": {
            "model": ref(6, 0), "min_cfg": 1.0}},
        {"id": 10, "type": "KSampler", "pos": (1300, 280), "size": (320, 270), "inputs": {
            "model": ref(9), "seed": 42, "steps": 50, "cfg": 5.0, "sampler_name": "euler", "scheduler": "karras",
            "positive": ref(8, 0), "negative": ref(8, 1), "latent_image": ref(8, 2), "denoise": 1.0}},
        {"id": 11, "type": "VAEDecode", "pos": (1660, 280), "size": (220, 50), "inputs": {
            "samples": ref(10), "vae": ref(7, 2)}},
        {"id": 12, "type": "SaveWEBM", "pos": (1660, 380), "size": (360, 420), "inputs": {
            "images": ref(11), "filename_prefix": "video/MotionKit_puppet_master", **WEBM, "fps": 8.0}},
        {"id": 13, "type": "MarkdownNote", "pos": (1660, -420), "size": (520, 640), "widgets_values": [NOTE]},
    ]


def _font(size: int):
    from PIL import ImageFont
    try:
        return ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default()


def thumbnail(path: Path) -> None:
    """A diagram (not model output): the example still with its drag, and the node chain."""
    import numpy as np
    from PIL import Image, ImageDraw
    img = Image.new("RGB", (800, 560), (24, 25, 30))
    d = ImageDraw.Draw(img)
    d.text((30, 24), "Puppet-Master: drag-controlled SVD", fill=(245, 245, 245), font=_font(26))
    d.text((30, 62), "MotionKit  |  Puppet-Master (arXiv 2408.04631)  |  diagram, not model output",
           fill=(150, 160, 175), font=_font(15))
    still = Image.fromarray((example_pixels(256) * 255).round().astype(np.uint8))
    img.paste(still, (30, 100))
    (x0, y0), (x1, y1) = [(30 + px / 2, 100 + py / 2) for px, py in ((154, 287), (330, 170))]
    d.line([(x0, y0), (x1, y1)], fill=(250, 250, 250), width=4)
    d.polygon([(x1, y1), (x1 - 16, y1 + 2), (x1 - 5, y1 + 14)], fill=(250, 250, 250))
    d.ellipse([x0 - 6, y0 - 6, x0 + 6, y0 + 6], fill=(255, 80, 60))
    lines = [("drag = (source, target per frame), up to 5", (250, 210, 90)),
             ("FiLM: h * (1 + gamma) + beta from the drag map", (120, 230, 210)),
             ("drag tokens appended to cross-attention", (120, 230, 210)),
             ("all-to-first spatial attention (built in)", (120, 230, 210)),
             ("cond: your drags; uncond: zero drags", (200, 200, 200)),
             ("256 x 256, 14 frames, euler / karras, 50 steps, cfg 5", (200, 200, 200))]
    for i, (text, color) in enumerate(lines):
        d.text((310, 112 + 34 * i), text, fill=color, font=_font(16))
    labels = ["Click to Mask", "Arrows", "PM Drags", "SVD cond.", "KSampler"]
    for i, label in enumerate(labels):
        x = 30 + i * 150
        hot = label == "PM Drags"
        d.rounded_rectangle([x, 420, x + 128, 470], 8, fill=(36, 84, 78) if hot else (44, 46, 54),
                            outline=(120, 230, 210) if hot else (110, 112, 120), width=2)
        d.text((x + 64, 445), label, fill=(240, 240, 240), font=_font(15), anchor="mm")
        if i:
            d.polygon([(x - 18, 439), (x - 6, 445), (x - 18, 451)], fill=(200, 200, 200))
    d.text((30, 500), "Load Puppet-Master: the official model.safetensors on ComfyUI's own SVD network",
           fill=(170, 170, 180), font=_font(15))
    img.save(path, "JPEG", quality=90)


def write_example(object_info: dict, folder: Path = REPO / "example_workflows") -> Path:
    path = folder / f"{NAME}.json"
    path.write_text(json.dumps(build_workflow(spec(), object_info), indent=2) + "\n")
    thumbnail(folder / f"{NAME}.jpg")
    return path


def main() -> None:
    import tempfile
    from . import comfy_session as cs
    base = cs.make_base_dir(Path(tempfile.mkdtemp(prefix="motionkit-examples-")))
    server = cs.ComfyServer(base, cs.comfyui_path())
    try:
        print(write_example(server.get("/object_info")))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
