"""Bad input to the SAM nodes, through the real ComfyUI executor: each is refused with a MotionKit message
that names the node, the input and the fix (never a torch stack trace, never a silently wrong mask)."""
from __future__ import annotations

import json
import pickle

import pytest
import torch
from safetensors.torch import save_file

from motionkit_testing.tiny_sam import TINY_SAM_PTH, build_sam, click_prompt, ensure_tiny_sam, points_json
from motionkit_testing.workflows import execution_error, validation_errors

CLICK = "Click to Mask (SAM) (MotionKitClickToMask)"
LOADER = "Load SAM Model (MotionKitSAMLoader)"


@pytest.fixture(scope="module")
def sam_files(comfy, base_dir):
    return ensure_tiny_sam(base_dir)


@pytest.mark.parametrize("points, problem", [
    (points_json([{"positive": [[120, 10]]}]), "object 1 positive point 1 (120, 10) is outside the 96x64 image"),
    (points_json([{"positive": [[10, 10]]}, {"positive": [], "negative": [[20, 20]]}]),
     "object 2 has no positive point"),
    ('{"version": 1, "width": 96, "height": 64, "objects": [{"positive": [[1, 2]]}', "not valid JSON"),
    (json.dumps({"version": 2, "width": 96, "height": 64, "objects": []}), "unknown points format version 2"),
    (points_json([{"positive": [[10, 10]]}], width=128, height=128),
     "placed on a 128x128 image, but the image is 96x64"),
    ("", "there are no points yet"),
    ('[{"x": 0.3, "y": 0.4}]', "look normalized"),
])
def test_bad_points_are_refused(points, problem, comfy, sam_files):
    details = execution_error(comfy, click_prompt(points, prefix="sam_err"))
    assert details["node_type"] == "MotionKitClickToMask"
    assert details["exception_type"].endswith("MotionKitInputError")
    message = details["exception_message"]
    assert message.startswith(f"[MotionKit] {CLICK}, input 'points':"), message
    assert problem in message and "Fix:" in message, message


def test_a_missing_checkpoint_says_where_to_download_it_and_where_to_put_it(comfy, base_dir, sam_files):
    errors = validation_errors(comfy, click_prompt(points_json([{"positive": [[5, 5]]}]), model="sam_vit_b_01ec64.pth"))
    assert f"{LOADER}, input 'model_name'" in errors
    assert "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth" in errors
    assert str(base_dir / "models" / "sams") in errors
    other = validation_errors(comfy, click_prompt(points_json([{"positive": [[5, 5]]}]), model="my_sam.pth"))
    assert "sam_vit_h_4b8939.pth" in other and str(base_dir / "models" / "sams") in other


class Payload:
    def __reduce__(self):
        return (exec, ("open('MOTIONKIT_PWNED', 'w').write('x')",))


def _write_non_sam_files(sams):
    save_file({"encoder.weight": torch.zeros(4, 4)}, str(sams / "not_sam.safetensors"))
    with open(sams / "pickled_code.pth", "wb") as f:
        pickle.dump({"w": Payload()}, f)
    (sams / "text_file.pth").write_text("this is not a checkpoint")
    sd = build_sam().state_dict()
    save_file({k: v.contiguous() for k, v in sd.items() if not k.startswith("mask_decoder.")},
              str(sams / "encoder_only.safetensors"))


@pytest.mark.parametrize("name, problem", [
    ("not_sam.safetensors", "is not a SAM ViT checkpoint: no 'image_encoder.patch_embed.proj.weight'"),
    ("pickled_code.pth", "could not be read as a tensor file (UnpicklingError"),
    ("text_file.pth", "could not be read as a tensor file"),
    ("encoder_only.safetensors", "is not a SAM ViT checkpoint: missing tensor 'mask_decoder"),
])
def test_a_non_sam_file_is_refused(name, problem, comfy, base_dir, sam_files, tmp_path, monkeypatch):
    _write_non_sam_files(base_dir / "models" / "sams")
    monkeypatch.chdir(tmp_path)
    details = execution_error(comfy, click_prompt(points_json([{"positive": [[5, 5]]}]), model=name))
    assert details["node_type"] == "MotionKitSAMLoader"
    message = details["exception_message"]
    assert message.startswith(f"[MotionKit] {LOADER}, input 'model_name':"), message
    assert problem in message and "Fix:" in message, message
    assert not (tmp_path / "MOTIONKIT_PWNED").exists(), "loading ran code from the checkpoint"


def test_the_sam_folder_is_accepted_too(comfy, base_dir, sam_files):
    """A checkpoint in models/sam (singular) is listed and loads."""
    import nodes
    legacy = base_dir / "models" / "sam"
    legacy.mkdir(exist_ok=True)
    (legacy / "legacy_sam.pth").write_bytes((base_dir / "models" / "sams" / TINY_SAM_PTH).read_bytes())
    listed = nodes.NODE_CLASS_MAPPINGS["MotionKitSAMLoader"].INPUT_TYPES()["required"]["model_name"][0]
    assert "legacy_sam.pth" in listed and TINY_SAM_PTH in listed
    comfy.run(click_prompt(points_json([{"positive": [[28, 32]]}]), model="legacy_sam.pth", prefix="sam_legacy"))
