"""MotionKit: controllable image-to-video for ComfyUI.

Subpackages are imported relatively: ComfyUI has its own top-level ``nodes`` module, which this pack's
``nodes/`` package must never shadow.
"""
from importlib import import_module

# One module per capability under nodes/; each defines NODE_CLASS_MAPPINGS and NODE_DISPLAY_NAME_MAPPINGS.
_NODE_MODULES = (
    "all_to_first",
    "motion_field",
    "trajectories",
    "click_to_mask",
    "motion_i2v_flow",
    "trackadapter",
    "motion_modules",
    "still_moving",
    "puppet_master",
)

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}
# ComfyUI's loader always imports this file as a package. Tools that import it as a lone module (pytest
# collecting the checkout folder, whose name may not be an identifier) get no package and no nodes.
for _name in _NODE_MODULES if __package__ else ():
    _module = import_module(f".nodes.{_name}", __name__)
    NODE_CLASS_MAPPINGS.update(_module.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(_module.NODE_DISPLAY_NAME_MAPPINGS)

WEB_DIRECTORY = "./web"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
