"""Click to Mask and core SAM3's prompt formats, through the real ComfyUI executor on the tiny SAM: linked
``positive_coords`` / ``negative_coords`` (KJNodes pixel strings) add one object and each linked
``BOUNDING_BOX`` one object, after the editor's objects, each equal to segment-anything's SamPredictor for
that prompt; the appended outputs carry the first object's points and every object's box in those formats;
the inputs and outputs are appended only (saved workflows keep loading). On a host with core SAM3 (v0.33.0),
core SAM3 Detect reads MotionKit's outputs (run with a stand-in SAM3 model that records its prompts), core
Bounding Box feeds MotionKit's input and core Draw BBoxes takes MotionKit's boxes."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from motionkit_testing.comfy_session import WorkflowError
from motionkit_testing.tiny_sam import (SAM_TEST_IMAGE, SAM_TEST_IMAGE_SIZE, TINY_SAM_PTH, build_sam, click_prompt,
                                        ensure_tiny_sam, load_uint8, points_json, predictor_masks)

W, H = SAM_TEST_IMAGE_SIZE
CLICK = "Click to Mask (SAM) (MotionKitClickToMask)"


class TestValue:
    """Test-only node: emits ``value`` (JSON) as ``kind``, standing in for another pack's STRING/BOUNDING_BOX."""
    FUNCTION = "emit"
    CATEGORY = "testing"

    def emit(self, value):
        return (json.loads(value),)


def value_node(kind: str):
    return type(f"TestValue_{kind}", (TestValue,), {
        "RETURN_TYPES": (kind,),
        "INPUT_TYPES": classmethod(lambda cls: {"required": {"value": ("STRING", {"default": "null"})}})})


@pytest.fixture(scope="module")
def sam_files(comfy, base_dir):
    return ensure_tiny_sam(base_dir)


@pytest.fixture(scope="module")
def reference_sam(sam_files, base_dir):
    sam = build_sam(seed=None)
    sam.load_state_dict(torch.load(base_dir / "models" / "sams" / TINY_SAM_PTH, weights_only=True))
    return sam.eval()


@pytest.fixture
def value_nodes(comfy, monkeypatch):
    import nodes
    for kind in ("STRING", "BOUNDING_BOX"):
        monkeypatch.setitem(nodes.NODE_CLASS_MAPPINGS, f"MotionKitTestValue{kind}", value_node(kind))


def linked_prompt(points: str, **linked) -> dict:
    """click_prompt with test nodes feeding ``positive_coords`` / ``negative_coords`` / ``bboxes`` (JSON-able
    values), and sinks for the appended outputs."""
    p = click_prompt(points, prefix="sam3_fmt")
    for name, value in linked.items():
        kind = "BOUNDING_BOX" if name == "bboxes" else "STRING"
        text = json.dumps(value if kind == "BOUNDING_BOX" else json.dumps(value) if not isinstance(value, str) else value)
        p[f"in_{name}"] = {"class_type": f"MotionKitTestValue{kind}", "inputs": {"value": text}}
        p["ctm"]["inputs"][name] = [f"in_{name}", 0]
    for slot, name in ((3, "positive_coords"), (4, "negative_coords"), (5, "bboxes")):
        p[f"out_{name}"] = {"class_type": "PreviewAny", "inputs": {"source": ["ctm", slot]}}
    return p


def kj(points) -> list:
    return [{"x": x, "y": y} for x, y in points]


def run_masks(comfy, prompt) -> np.ndarray:
    comfy.run(prompt)
    return comfy.output("ctm", 0).cpu().numpy() > 0.5


def expected(reference_sam, base_dir, objects) -> list:
    image = load_uint8(base_dir / "input" / SAM_TEST_IMAGE)
    return [m for m, _, _ in predictor_masks(reference_sam, image, objects)]


# --- public API: appended only -----------------------------------------------------------------------

def test_inputs_and_outputs_are_appended_and_add_no_widget(comfy):
    import nodes
    cls = nodes.NODE_CLASS_MAPPINGS["MotionKitClickToMask"]
    spec = cls.INPUT_TYPES()
    assert list(spec["required"]) == ["sam_model", "image", "points"]
    assert list(spec["optional"]) == ["positive_coords", "negative_coords", "bboxes"]
    assert [spec["optional"][n][0] for n in spec["optional"]] == ["STRING", "STRING", "BOUNDING_BOX"]
    assert all(spec["optional"][n][1]["forceInput"] for n in spec["optional"])   # sockets: widgets_values unchanged
    assert cls.RETURN_TYPES == ("MASK", "MASK", "IMAGE", "STRING", "STRING", "BOUNDING_BOX")
    assert cls.RETURN_NAMES == ("masks", "mask", "preview", "positive_coords", "negative_coords", "bboxes")
    assert len(cls.OUTPUT_TOOLTIPS) == len(cls.RETURN_TYPES)
    assert "after the editor's objects" in spec["optional"]["positive_coords"][1]["tooltip"]


# --- linked inputs -------------------------------------------------------------------------------------

def test_linked_coords_add_one_object_after_the_editors(comfy, base_dir, sam_files, reference_sam, value_nodes):
    editor = [{"positive": [[69, 28]]}]
    linked = {"positive": [[28, 32], [30, 20]], "negative": [[70, 30]]}
    masks = run_masks(comfy, linked_prompt(points_json(editor), positive_coords=kj(linked["positive"]),
                                           negative_coords=kj(linked["negative"])))
    want = expected(reference_sam, base_dir, editor + [linked])
    assert len(masks) == 2
    for got, ref in zip(masks, want):
        assert 0 < ref.sum() < ref.size and np.array_equal(got, ref)
    # with no editor points (empty widget, or a document without objects) the linked object is object 0
    for points in ("", points_json([])):
        masks = run_masks(comfy, linked_prompt(points, positive_coords=kj(linked["positive"]),
                                               negative_coords=kj(linked["negative"])))
        assert len(masks) == 1 and np.array_equal(masks[0], want[1])
    # single quotes and integer / float pixels, as KJNodes writes them
    masks = run_masks(comfy, linked_prompt("", positive_coords="[{'x': 28, 'y': 32.0}]"))
    assert np.array_equal(masks[0], expected(reference_sam, base_dir, [{"positive": [[28, 32]]}])[0])


@pytest.mark.parametrize("shape", ["dict", "list", "per frame", "beyond the image"])
def test_linked_boxes_add_one_object_each(shape, comfy, base_dir, sam_files, reference_sam, value_nodes):
    a = {"x": 10, "y": 10, "width": 40, "height": 45}
    b = {"x": 55, "y": 5, "width": 30, "height": 45, "score": 0.9}   # extra keys (SAM3 Detect's score) ignored
    bboxes = {"dict": a, "list": [a, b], "per frame": [[a, b], [b]],
              "beyond the image": [{"x": -5.5, "y": 40, "width": 40, "height": 40}]}[shape]
    boxes = {"dict": [[10, 10, 50, 55]], "list": [[10, 10, 50, 55], [55, 5, 85, 50]],
             "per frame": [[10, 10, 50, 55], [55, 5, 85, 50]], "beyond the image": [[0, 40, 34.5, H]]}[shape]
    editor = [{"positive": [[5, 60]]}]
    masks = run_masks(comfy, linked_prompt(points_json(editor), positive_coords=kj([[28, 32]]), bboxes=bboxes))
    want = expected(reference_sam, base_dir, editor + [{"positive": [[28, 32]]}] + [{"box": bx} for bx in boxes])
    assert len(masks) == len(want) == 2 + len(boxes)
    for got, ref in zip(masks, want):
        assert np.array_equal(got, ref)


@pytest.mark.parametrize("name, value, problem", [
    ("positive_coords", "[{\"x\": 120, \"y\": 10}]", "point 0 (120, 10) is outside the 96x64 image"),
    ("positive_coords", "[{\"x\": 0.3, \"y\": 0.4}]", "look normalized"),
    ("positive_coords", "[[1, 2]]", "item 0 is [1, 2], not {\"x\": .., \"y\": ..}"),
    ("positive_coords", "{not json", "not valid JSON"),
    ("negative_coords", "[{\"x\": 10, \"y\": 10}]", "negative points alone select nothing"),
    ("bboxes", {"x": 200, "y": 0, "width": 10, "height": 10}, "box 0 (x 200, y 0, width 10, height 10) is empty or outside"),
    ("bboxes", [{"x": 1, "y": 2}], "box 0 is {'x': 1, 'y': 2}, not"),
])
def test_bad_linked_values_name_their_input(name, value, problem, comfy, sam_files, value_nodes):
    p = linked_prompt("", **{name: value})
    with pytest.raises(WorkflowError) as excinfo:
        comfy.run(p)
    details = excinfo.value.details
    assert details["exception_type"].endswith("MotionKitInputError"), details
    message = details["exception_message"]
    assert message.startswith(f"[MotionKit] {CLICK}, input '{name}':"), message
    assert problem in message and "Fix:" in message, message


def test_no_points_and_nothing_linked_is_still_refused(comfy, sam_files, value_nodes):
    with pytest.raises(WorkflowError) as excinfo:
        comfy.run(linked_prompt(""))
    assert "input 'points': there are no points yet" in excinfo.value.details["exception_message"]


# --- outputs in SAM3's formats -------------------------------------------------------------------------

def test_outputs_give_the_first_objects_points_and_every_objects_box(comfy, base_dir, sam_files, value_nodes):
    editor = [{"positive": [[28, 32], [30.5, 20]], "negative": [[70, 30]]}, {"positive": [[69, 28]]},
              {"positive": [], "box": [0, 40, 30, 64]}]
    history = comfy.run(linked_prompt(points_json(editor)))
    masks = comfy.output("ctm", 0).cpu().numpy() > 0.5
    positive, negative, bboxes = (comfy.output("ctm", slot) for slot in (3, 4, 5))
    assert json.loads(positive) == [{"x": 28, "y": 32}, {"x": 30.5, "y": 20}]
    assert json.loads(negative) == [{"x": 70, "y": 30}]
    assert history["outputs"]["out_positive_coords"]["text"][0] == positive
    assert isinstance(bboxes, list) and len(bboxes) == 1 and len(bboxes[0]) == 3   # one frame, one box per object
    for mask, box in zip(masks, bboxes[0]):
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        assert box == {"x": int(cols[0]), "y": int(rows[0]), "width": int(cols[-1] - cols[0] + 1),
                       "height": int(rows[-1] - rows[0] + 1)}
        assert all(type(v) is int for v in box.values())
    # the outputs fed back as linked inputs (editor emptied) give the same first object
    again = run_masks(comfy, linked_prompt("", positive_coords=positive, negative_coords=negative))
    assert np.array_equal(again[0], masks[0])


def test_an_empty_masks_box_is_its_prompts(comfy, sam_files):
    from motionkit_testing.pack import pack_module
    sam = pack_module("sam")
    empty = np.zeros((H, W), bool)
    assert sam.object_box(empty, sam.ObjectPrompt(box=(1.5, 2, 10, 20.2))) == {"x": 1, "y": 2, "width": 9, "height": 19}
    assert sam.object_box(empty, sam.ObjectPrompt(positive=((3.5, 4), (7, 9.9)))) == \
        {"x": 3, "y": 4, "width": 5, "height": 6}
    assert sam.coords_string([(1.0, 2.5), (3.0004, 4), (5.12345, 6)]) == \
        '[{"x": 1, "y": 2.5}, {"x": 3, "y": 4}, {"x": 5.123, "y": 6}]'


# --- core SAM3 nodes (hosts that have them) -----------------------------------------------------------

def core_sam3():
    import nodes
    if "SAM3_Detect" not in nodes.NODE_CLASS_MAPPINGS:
        pytest.skip("this ComfyUI has no core SAM3 nodes (they arrived after v0.3.64)")
    import comfy_extras.nodes_sam3 as nodes_sam3
    return nodes_sam3


class RecordingSAM3:
    """A stand-in for core SAM3's MODEL: SAM3_Detect's point and box paths call forward_segment, which
    records the prompts (in SAM3's 1008 px space) and returns an empty mask."""

    def __init__(self):
        self.calls = []
        outer = self

        class Net:
            def forward_segment(self, frame, point_inputs=None, box_inputs=None, mask_inputs=None):
                outer.calls.append({"points": point_inputs, "box": box_inputs, "mask": mask_inputs})
                return torch.full((1, 1, 252, 252), -1.0)

        class Model:
            diffusion_model = Net()

            @staticmethod
            def get_dtype():
                return torch.float32

        self.model = Model()


def test_core_sam3_detect_reads_the_outputs(comfy, base_dir, sam_files, monkeypatch):
    """MotionKit's positive/negative coords and boxes, given to core SAM3 Detect's own code: the prompts it
    hands the SAM3 model are MotionKit's pixels scaled to SAM3's 1008 px input (pixel frame kept)."""
    nodes_sam3 = core_sam3()
    editor = [{"positive": [[28, 32], [30.5, 20]], "negative": [[70, 30]]}, {"positive": [[69, 28]]}]
    comfy.run(click_prompt(points_json(editor), prefix="sam3_detect"))
    positive, negative, bboxes = (comfy.output("ctm", slot) for slot in (3, 4, 5))
    image = comfy.output("img", 0)
    monkeypatch.setattr(nodes_sam3.comfy.model_management, "load_model_gpu", lambda model: None)
    model = RecordingSAM3()
    out = nodes_sam3.SAM3_Detect.execute(model, image, positive_coords=positive, negative_coords=negative,
                                         bboxes=bboxes, refine_iterations=1, individual_masks=True)
    points_call, *box_calls = model.calls
    scale = torch.tensor([1008 / W, 1008 / H])
    want = torch.tensor([[28, 32], [30.5, 20], [70, 30]], dtype=torch.float32) * scale
    torch.testing.assert_close(points_call["points"]["point_coords"][0], want)
    assert points_call["points"]["point_labels"].tolist() == [[1, 1, 0]]
    assert len(box_calls) == 2   # one per object
    for call, box in zip(box_calls, bboxes[0]):
        corners = torch.tensor([[box["x"], box["y"]], [box["x"] + box["width"], box["y"] + box["height"]]],
                               dtype=torch.float32) * scale
        torch.testing.assert_close(call["box"][0], corners, atol=1e-3, rtol=0)
    assert out[0].shape == (3, H, W)   # individual masks: the points object and one per box


def test_core_bounding_box_and_draw_bboxes_link_to_click_to_mask(comfy, base_dir, sam_files, reference_sam):
    """Through the executor: core Bounding Box -> Click to Mask 'bboxes' -> core Draw BBoxes."""
    core_sam3()
    p = click_prompt("", prefix="sam3_core_links")
    p["box"] = {"class_type": "PrimitiveBoundingBox", "inputs": {"x": 55, "y": 5, "width": 30, "height": 45}}
    p["ctm"]["inputs"]["bboxes"] = ["box", 0]
    p["draw"] = {"class_type": "DrawBBoxes", "inputs": {"bboxes": ["ctm", 5], "image": ["img", 0]}}
    p["draw_out"] = {"class_type": "PreviewImage", "inputs": {"images": ["draw", 0]}}
    comfy.run(p)
    masks = comfy.output("ctm", 0).cpu().numpy() > 0.5
    (want,) = expected(reference_sam, base_dir, [{"box": [55, 5, 85, 50]}])
    assert len(masks) == 1 and np.array_equal(masks[0], want)
    drawn = comfy.output("draw", 0)
    assert drawn.shape == (1, H, W, 3) and not torch.equal(drawn, comfy.output("img", 0))
