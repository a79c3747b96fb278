"""MotionKit's test harness: real ComfyUI sessions, tiny random models, workflow helpers. Not shipped."""
