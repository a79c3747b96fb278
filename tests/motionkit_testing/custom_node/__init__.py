"""MotionKit's TEST HARNESS as a ComfyUI custom node (like ComfyUI's own tests/execution/testing_nodes).

Loaded only by the tests, benchmarks and the demo (when no real SVD checkpoint exists). It registers the
tiny random test models with ComfyUI's model detection and adds no nodes.
"""
import importlib.util
import sys
from pathlib import Path

_NAME = "motionkit_testing.tiny_models"
if _NAME in sys.modules:
    _tiny = sys.modules[_NAME]
else:
    _spec = importlib.util.spec_from_file_location(_NAME, Path(__file__).resolve().parent.parent / "tiny_models.py")
    _tiny = importlib.util.module_from_spec(_spec)
    sys.modules[_NAME] = _tiny
    _spec.loader.exec_module(_tiny)
_tiny.register_tiny_models()

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}
