"""Click to mask with SAM: the SAM loader, the Click-to-Mask node, and (on import) the editor's preview route.

Click to Mask's UI output (what the frontend hands to ``onExecuted`` and to ``executed`` listeners):

* ``motionkit_sam_image``: ``[{"filename", "subfolder", "type"}]``, the frame it segmented (temp PNG);
* ``motionkit_sam``: ``[{"width", "height", "embedding_cached", "scores", "editor_objects"}]`` (objects
  ``0..editor_objects-1`` are the editor's, the rest come from the linked SAM3-format inputs);
* ``motionkit_masks``: ``[{"version": 1, "width", "height", "image": <the frame's ref>,
  "masks": [{"filename", "subfolder", "type", "object"}]}]``, one plain mask PNG per object (grey, 255
  inside), so downstream editors (the arrow editor of Arrows to Trajectories) show these masks before
  they have run themselves.
"""
from __future__ import annotations

import torch

import comfy.model_management as mm
import comfy.utils
import folder_paths

from ..modules.sam import (MAX_OBJECTS, POINTS_FORMAT, PointsError, Prompts, coords_string, draw_masks, image_digest,
                           image_to_uint8, linked_objects, object_box, parse_points)
from . import sam_preview
from ._comfy import MotionKitInputError
from ._sam import (SAMS, CheckpointError, SAMModel, checkpoint_path, load_sam_model, masks_tensor,
                   register_model_folders, run_sam, save_editor_image, save_mask_images)

LOADER = "Load SAM Model (MotionKitSAMLoader)"
NODE = "Click to Mask (SAM) (MotionKitClickToMask)"
SAM_TYPE = "MOTIONKIT_SAM"

register_model_folders()
sam_preview.register_routes()


class MotionKitSAMLoader:
    DESCRIPTION = (
        "Loads a Segment Anything (SAM v1) checkpoint from models/sams (or models/sam): the official "
        "sam_vit_b_01ec64.pth, sam_vit_l_0b3195.pth or sam_vit_h_4b8939.pth, or a safetensors conversion. "
        "The ViT size is read from the file's tensor shapes, so any SAM ViT of this architecture loads. "
        "Files are read safely (safetensors, or torch.load with weights_only). The model is handed to "
        "ComfyUI's model management, which moves it to the GPU when used and offloads it with other models.")
    CATEGORY = "MotionKit"
    RETURN_TYPES = (SAM_TYPE,)
    RETURN_NAMES = ("sam_model",)
    OUTPUT_TOOLTIPS = ("The SAM model, for Click to Mask (SAM).",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model_name": (folder_paths.get_filename_list(SAMS), {
                "tooltip": "A SAM checkpoint in models/sams. ViT-B (sam_vit_b_01ec64.pth, 375 MB) is the fastest; "
                           "ViT-H is the most accurate."}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, model_name):
        # Replaces the generic "value not in list" with where to download the file and where to put it.
        try:
            checkpoint_path(model_name)
        except CheckpointError as e:
            return str(MotionKitInputError(LOADER, "model_name", e.problem, e.fix))
        return True

    def load(self, model_name):
        try:
            return (load_sam_model(model_name),)
        except CheckpointError as e:
            raise MotionKitInputError(LOADER, "model_name", e.problem, e.fix) from None


def require_sam(value) -> SAMModel:
    if not isinstance(value, SAMModel):
        raise MotionKitInputError(NODE, "sam_model", f"expected MotionKit's SAM model, got {type(value).__name__}.",
                                  "connect the output of 'Load SAM Model'.")
    return value


def first_frame(image) -> torch.Tensor:
    """Frame 0 of an IMAGE batch (B, H, W, C), RGB."""
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[0] < 1 or image.shape[-1] < 3:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise MotionKitInputError(NODE, "image", f"expected an IMAGE batch (B, H, W, 3), got {shape}.",
                                  "connect an IMAGE output, e.g. from Load Image.")
    if min(image.shape[1], image.shape[2]) < 1:
        raise MotionKitInputError(NODE, "image", f"the image is {image.shape[2]}x{image.shape[1]} pixels.",
                                  "connect a non-empty image.")
    return image[0, :, :, :3]


EDITOR_IMAGE_EVENT = "motionkit.sam_image"
MASKS_UI_KEY = "motionkit_masks"
MASKS_UI_VERSION = 1


def show_in_editor(unique_id, image_ref: dict) -> None:
    """Tell the node's editor (web/js/click_to_mask.js) which frame the node is segmenting."""
    try:
        from server import PromptServer
        server = PromptServer.instance
    except (ImportError, AttributeError):
        return
    if unique_id is not None:
        server.send_sync(EDITOR_IMAGE_EVENT, {"node": str(unique_id), "image": image_ref})


class MotionKitClickToMask:
    DESCRIPTION = (
        "Segments objects in the first frame of 'image' with SAM from clicked points. In the node, left-click "
        "the object (positive point), right-click the background (negative point), press N or 'New object' "
        "for another object; drag points to move them, right-click a point to delete it. The mask of each "
        "object is shown while you click (the image embedding is computed once and cached, then each click "
        "runs only SAM's small decoder). Per object the mask is exactly segment-anything's SamPredictor: one "
        "point without a box asks for three masks and keeps the highest predicted IoU, otherwise one mask. "
        "The 'points' text is " + POINTS_FORMAT + " in pixels of that W x H image; a KJNodes Points Editor "
        "coordinate string ([{\"x\":..,\"y\":..}]) is read as one object of positive points. Core SAM3's "
        "formats: linked positive_coords/negative_coords (KJNodes pixel strings) add one object and each linked "
        "BOUNDING_BOX adds one object, after the editor's objects; the appended outputs give the first object's "
        "points and every object's box in those formats, for core SAM3 Detect.")
    CATEGORY = "MotionKit"
    RETURN_TYPES = ("MASK", "MASK", "IMAGE", "STRING", "STRING", "BOUNDING_BOX")
    RETURN_NAMES = ("masks", "mask", "preview", "positive_coords", "negative_coords", "bboxes")
    OUTPUT_TOOLTIPS = (
        "One mask per object, in object order.", "The union of all objects' masks.",
        "The masks drawn over the image (each object in its editor colour).",
        "The first object's positive points as core SAM3 Detect and KJNodes take them ([{\"x\":..,\"y\":..}, ...], "
        "pixels). SAM3 reads all points as one object, so only the first object's are given; 'bboxes' has every "
        "object.",
        "The first object's negative points, in the same format.",
        "One box per object, in object order, as core SAM3 Detect emits them ([[{\"x\",\"y\",\"width\",\"height\"}, "
        "...]] integer pixels, one list for the one frame): the bounding box of the object's mask (of its prompt "
        "where the mask is empty).")
    FUNCTION = "segment"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "sam_model": (SAM_TYPE, {"tooltip": "From 'Load SAM Model'."}),
            "image": ("IMAGE", {"tooltip": "The image to segment; of a batch, the first frame is used."}),
            "points": ("STRING", {
                "default": "", "multiline": False, "dynamicPrompts": False,
                "tooltip": "Written by the point editor in the node. JSON: " + POINTS_FORMAT
                           + ", or a KJNodes Points Editor coordinate string."}),
        }, "optional": {
            # Appended inputs (sockets only, no widgets: saved widget values keep their order). BOUNDING_BOX is
            # core's type name on hosts that define it (v0.33.0); older hosts load the node the same way, with a
            # socket that only nodes emitting BOUNDING_BOX connect to.
            "positive_coords": ("STRING", {
                "forceInput": True,
                "tooltip": "Linked only: positive points as core SAM3 Detect takes them (KJNodes Points Editor "
                           "format [{\"x\":..,\"y\":..}, ...], pixels of the image). With negative_coords they add "
                           "ONE object, after the editor's objects (the editor's points stay; with no editor "
                           "points, it is object 0)."}),
            "negative_coords": ("STRING", {
                "forceInput": True,
                "tooltip": "Linked only: negative points of that same object (needs positive_coords), same format."}),
            "bboxes": ("BOUNDING_BOX", {
                "forceInput": True,
                "tooltip": "Linked only: core BOUNDING_BOX ({x, y, width, height} pixels, a list of them, or one "
                           "list per frame: the first frame's). Each box adds one object, segmented from the box "
                           "alone, after the editor's objects and the linked points' object; boxes are clipped to "
                           "the image."}),
        }, "hidden": {"unique_id": "UNIQUE_ID"}}

    def segment(self, sam_model, image, points, unique_id=None, positive_coords=None, negative_coords=None,
                bboxes=None):
        model = require_sam(sam_model)
        frame = first_frame(image)
        height, width = int(frame.shape[0]), int(frame.shape[1])
        pixels = image_to_uint8(frame)
        digest = image_digest(pixels)
        # The editor gets the frame before the points are checked: when the image does not come straight
        # from a Load Image node, the first run (with no points yet) is how the user gets to see it.
        editor_image = save_editor_image(pixels, digest)
        show_in_editor(unique_id, editor_image)
        try:
            linked = linked_objects(positive_coords, negative_coords, bboxes, (width, height))
            editor = parse_points(points, (width, height), allow_empty=bool(linked))
        except PointsError as e:
            raise MotionKitInputError(NODE, e.input_name, e.problem, e.fix) from None
        prompts = Prompts(editor.objects + linked, width, height)
        if len(prompts.objects) > MAX_OBJECTS:
            raise MotionKitInputError(NODE, "points", f"{len(prompts.objects)} objects ({len(editor.objects)} from "
                                      f"the editor, {len(linked)} linked); at most {MAX_OBJECTS} are accepted.",
                                      "use fewer objects or boxes.")
        progress = comfy.utils.ProgressBar(1 + len(prompts.objects), node_id=unique_id)

        def step():
            mm.throw_exception_if_processing_interrupted()
            progress.update(1)

        run = run_sam(model, digest, lambda: pixels, prompts, on_step=step)
        masks = masks_tensor(run.masks, height, width)
        union = masks.amax(dim=0, keepdim=True)
        preview = draw_masks(frame.to(masks.device, torch.float32), masks)[None].clamp(0, 1)
        ui = {
            # The exact frame, for the editor when the image does not come straight from a Load Image node.
            "motionkit_sam_image": [editor_image],
            "motionkit_sam": [{"width": width, "height": height, "embedding_cached": run.embedding_cached,
                               "scores": [m.score for m in run.masks],
                               # appended: objects 0..editor_objects-1 are the editor's, the rest linked
                               "editor_objects": len(editor.objects)}],
            # Each object's mask for downstream editors (appended key; the keys above are unchanged).
            MASKS_UI_KEY: [{"version": MASKS_UI_VERSION, "width": width, "height": height, "image": editor_image,
                            "masks": save_mask_images(masks)}],
        }
        first = prompts.objects[0]
        boxes = [object_box(m.mask.numpy(), obj) for m, obj in zip(run.masks, prompts.objects)]
        return {"ui": ui, "result": (masks, union, preview, coords_string(first.positive),
                                     coords_string(first.negative), [boxes])}


NODE_CLASS_MAPPINGS = {
    "MotionKitSAMLoader": MotionKitSAMLoader,
    "MotionKitClickToMask": MotionKitClickToMask,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "MotionKitSAMLoader": "Load SAM Model",
    "MotionKitClickToMask": "Click to Mask (SAM)",
}
