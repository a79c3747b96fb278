"""Synthetic inputs made at run time (nothing binary is committed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def write_test_image(path: Path, size=(64, 64)) -> Path:
    """A still with a gradient background and a bright disc: an 'object' for the tools to move."""
    from PIL import Image
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx / w, yy / h, 0.5 + 0 * xx], -1)
    disc = (xx - w * 0.35) ** 2 + (yy - h * 0.5) ** 2 < (min(h, w) * 0.18) ** 2
    img[disc] = [1.0, 0.9, 0.2]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((img * 255).astype(np.uint8)).save(path)
    return Path(path)
