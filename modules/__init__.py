"""MotionKit algorithms as plain torch/numpy. Nothing here imports ComfyUI."""
