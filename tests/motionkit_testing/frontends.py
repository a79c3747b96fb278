"""Frontend lanes for the browser tests: which ComfyUI frontend the test server serves, and how.

``MOTIONKIT_FRONTEND`` picks the lane of one pytest run (one server and base directory per session):

* ``host`` (default): the frontend pinned by the host's own requirements (``comfyui-frontend-package`` in
  its venv), classic LiteGraph canvas;
* ``<version>`` (e.g. ``1.58.1``): that frontend package from the cache folder
  ``${MOTIONKIT_CACHE:-${XDG_CACHE_HOME:-~/.cache}/motionkit}/frontends/<version>`` (``scripts/setup_env.sh``
  installs the newest one there), served with ``--front-end-root``, classic canvas;
* ``<version>-nodes2`` / ``host-nodes2``: the same with Nodes 2.0 (``Comfy.VueNodes.Enabled``).

The settings are written to the base directory's user settings file (``user/default/comfy.settings.json``),
which the frontend reads from ``/settings`` before it builds the page: Nodes 2.0 on or off, the first-visit
template browser / tutorial marked as done, and LiteGraph's canvas navigation. A lane whose frontend is not installed fails the
browser tests with the command that installs it (``MOTIONKIT_SKIP_BROWSER_TESTS=1`` skips them).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

ENV = "MOTIONKIT_FRONTEND"
NEWEST = "1.58.1"   # scripts/setup_env.sh installs this one (MOTIONKIT_FRONTEND_VERSION there)


def cache_dir() -> Path:
    if os.environ.get("MOTIONKIT_CACHE"):
        return Path(os.environ["MOTIONKIT_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "motionkit"


@dataclass(frozen=True)
class Lane:
    name: str
    version: str | None     # None: the host's pinned frontend
    nodes2: bool

    @property
    def static(self) -> Path | None:
        """The frontend's static folder (``--front-end-root``), None for the host's own frontend."""
        if self.version is None:
            return None
        return cache_dir() / "frontends" / self.version / "comfyui_frontend_package" / "static"

    def missing(self) -> str | None:
        """Why this lane cannot run (its frontend is not installed), else None."""
        if self.static is None or (self.static / "index.html").is_file():
            return None
        return (f"comfyui-frontend-package {self.version} in {self.static.parent.parent} for the frontend lane "
                f"{self.name!r} ({ENV}): run `MOTIONKIT_FRONTEND_VERSION={self.version} bash "
                f"scripts/setup_env.sh` (or `uv pip install --no-deps --target {self.static.parent.parent} "
                f"comfyui-frontend-package=={self.version}`)")

    def server_args(self) -> tuple:
        return () if self.static is None or self.missing() else ("--front-end-root", str(self.static))

    def settings(self) -> dict:
        return {"Comfy.TutorialCompleted": True,        # no first-visit template browser / getting started
                "Comfy.VueNodes.Enabled": self.nodes2,
                # LiteGraph's own canvas navigation, stored: frontend 1.27 applies a navigation mode while its
                # settings register and raises on the not-yet-registered mouse settings it sets ("reading
                # 'id'") unless they already hold these values
                "Comfy.Canvas.NavigationMode": "legacy", "Comfy.Canvas.LeftMouseClickBehavior": "panning",
                "Comfy.Canvas.MouseWheelScroll": "zoom"}


def lane(name: str | None = None) -> Lane:
    name = (name if name is not None else os.environ.get(ENV, "")).strip() or "host"
    m = re.fullmatch(r"(host|\d+\.\d+\.\d+)(-nodes2)?", name)
    if not m:
        raise ValueError(f"{ENV}={name!r}: expected host, <version> or <version>-nodes2 (e.g. {NEWEST}-nodes2)")
    return Lane(name, None if m.group(1) == "host" else m.group(1), bool(m.group(2)))


def write_user_settings(base: Path, ln: Lane) -> Path:
    """The lane's settings merged into ``<base>/user/default/comfy.settings.json`` (before the page loads)."""
    path = base / "user" / "default" / "comfy.settings.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    current = json.loads(path.read_text()) if path.is_file() else {}
    path.write_text(json.dumps({**current, **ln.settings()}, indent=2))
    return path
