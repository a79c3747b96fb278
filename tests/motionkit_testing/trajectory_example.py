"""Inputs for the arrows-to-trajectories tests and example: a synthetic still with one clear object (an
orange ball, which the example's Click to Mask clicks at its centre), and a two-object test card whose
boxes core mask nodes select by colour."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

EXAMPLE_IMAGE = "motionkit_arrows_example.png"   # the file example_workflows/arrows_to_trajectories.json loads
EXAMPLE_SIZE = 512
BALL_CENTER, BALL_RADIUS = (0.30, 0.56), 0.13   # fractions of the image size
TWO_OBJECTS_IMAGE = "motionkit_two_objects.png"
TWO_OBJECTS_SIZE = (48, 32)                      # width, height
RED_BOX = (4, 6, 16, 18)                          # x0, y0, x1, y1 (pixels, end exclusive)
GREEN_BOX = (28, 14, 40, 26)


def example_pixels(size: int = EXAMPLE_SIZE) -> np.ndarray:
    """An orange ball over a blue sky and a teal hill: only the ball has blue < 0.4."""
    yy, xx = (np.mgrid[0:size, 0:size] + 0.5) / size
    img = np.empty((size, size, 3))
    img[...] = np.stack([0.35 + 0.2 * yy, 0.55 + 0.2 * yy, 0.95 - 0.15 * yy], -1)          # sky
    hill = yy > 0.78 - 0.08 * np.sin(xx * 5.0)
    img[hill] = np.stack([0.15 + 0.1 * xx, 0.45 + 0.1 * yy, 0.5 + 0.0 * xx], -1)[hill]     # teal hill
    r = np.hypot(xx - BALL_CENTER[0], yy - BALL_CENTER[1])
    ball = r < BALL_RADIUS
    shade = np.clip(1.0 - 0.5 * np.hypot(xx - 0.26, yy - 0.51) / BALL_RADIUS, 0.45, 1.0)
    img[ball] = (np.stack([1.0 * shade, 0.55 * shade, 0.1 + 0.0 * shade], -1))[ball]
    return img


def write_example_image(path: Path, size: int = EXAMPLE_SIZE) -> Path:
    Image.fromarray((example_pixels(size) * 255).round().astype(np.uint8)).save(path)
    return path


def write_two_objects(path: Path) -> Path:
    """Blue background, a red box (object 0, ImageToMask red) and a green box (object 1, ImageToMask green)."""
    w, h = TWO_OBJECTS_SIZE
    img = np.zeros((h, w, 3), np.uint8)
    img[...] = (25, 50, 200)
    x0, y0, x1, y1 = RED_BOX
    img[y0:y1, x0:x1] = (250, 20, 20)
    x0, y0, x1, y1 = GREEN_BOX
    img[y0:y1, x0:x1] = (20, 250, 20)
    Image.fromarray(img).save(path)
    return path
