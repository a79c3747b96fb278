"""ComfyUI-facing node classes, one file per capability. Imported relatively by the pack's __init__."""
