"""A test-only output node that hands a TRACKS value back whole, so the browser tests can check the tracks a
graph queued from the page produced, number by number: ``ui.motionkit_test_tracks = [{"path": [T][N][2],
"visibility": [T][N], "object": [N] or null, "width", "height"}]`` (float32 values as Python floats, exact)."""
from __future__ import annotations

UI_KEY = "motionkit_test_tracks"


class MotionKitTestTracksProbe:
    CATEGORY = "MotionKit/testing"
    RETURN_TYPES = ()
    FUNCTION = "probe"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"tracks": ("TRACKS",)}}

    def probe(self, tracks):
        path = tracks["track_path"]
        path = path[0] if path.ndim == 4 else path
        visible = tracks["track_visibility"]
        visible = visible[0] if visible.ndim == 3 else visible
        extras = tracks.get("motionkit") or {}
        obj = extras.get("object")
        out = {"path": path.double().tolist(), "visibility": visible.bool().tolist(),
               "object": obj.tolist() if obj is not None else None,
               "width": extras.get("width"), "height": extras.get("height")}
        return {"ui": {UI_KEY: [out]}}
