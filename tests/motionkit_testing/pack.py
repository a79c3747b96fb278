"""Import the pack's ``modules/`` (plain torch/numpy, no ComfyUI) directly, whatever the checkout's folder
is called: it is loaded as the package ``motionkit_modules``."""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_PACKAGE = "motionkit_modules"


def pack_module(name: str):
    """``pack_module("motion_field")`` is the pack's ``modules/motion_field.py``."""
    if _PACKAGE not in sys.modules:
        spec = importlib.util.spec_from_file_location(_PACKAGE, REPO / "modules" / "__init__.py",
                                                      submodule_search_locations=[str(REPO / "modules")])
        package = importlib.util.module_from_spec(spec)
        sys.modules[_PACKAGE] = package
        spec.loader.exec_module(package)
    return importlib.import_module(f"{_PACKAGE}.{name}")
