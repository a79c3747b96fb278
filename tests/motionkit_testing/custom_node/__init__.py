"""MotionKit's TEST HARNESS as a ComfyUI custom node (like ComfyUI's own tests/execution/testing_nodes).

Loaded only by the tests, benchmarks and the demo (when no real SVD checkpoint exists). It registers the
tiny random test models with ComfyUI's model detection and adds test-only nodes: one that behaves like
another pack replacing whole attention modules (``foreign.py``), and one that hands TRACKS back whole to the
browser tests (``tracks_probe.py``).
"""
import importlib.util
import sys
from pathlib import Path


def _harness_module(name: str):
    """``motionkit_testing.<name>`` (the test process already imported it; the server loads it by path)."""
    full = f"motionkit_testing.{name}"
    if full not in sys.modules:
        spec = importlib.util.spec_from_file_location(full, Path(__file__).resolve().parent.parent / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[full] = module
        spec.loader.exec_module(module)
    return sys.modules[full]


_harness_module("tiny_models").register_tiny_models()
_harness_module("tiny_sd15").register_tiny_sd15()
_harness_module("tiny_puppet_master").register_tiny_puppet_master()

NODE_CLASS_MAPPINGS = {"MotionKitTestForeignAttention": _harness_module("foreign").MotionKitTestForeignAttention,
                       "MotionKitTestTracksProbe": _harness_module("tracks_probe").MotionKitTestTracksProbe}
NODE_DISPLAY_NAME_MAPPINGS = {"MotionKitTestForeignAttention": "Foreign Attention Replacement (MotionKit TEST HARNESS)",
                              "MotionKitTestTracksProbe": "Tracks Probe (MotionKit TEST HARNESS)"}
