#!/usr/bin/env python3
"""Find or fetch the ComfyUI that MotionKit's tests and demo run against; print its path.

Order of preference:
  1. ``$COMFYUI_PATH`` if set (used as is; a warning is printed when it is not the pinned commit);
  2. the ComfyUI whose ``custom_nodes/`` holds this pack;
  3. a clone of the pinned commit in the user cache folder
     ``${MOTIONKIT_CACHE:-${XDG_CACHE_HOME:-~/.cache}/motionkit}/ComfyUI``, cloned from
     ``$COMFYUI_GIT_URL`` (default: GitHub) when missing.

Only the standard library is used, so it runs before any environment exists.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PINNED_COMMIT = "a125cd84b054a57729b5eecab930ca9408719832"  # ComfyUI v0.3.64
DEFAULT_URL = "https://github.com/Comfy-Org/ComfyUI.git"
PACK_ROOT = Path(__file__).resolve().parent.parent


def log(msg: str) -> None:
    print(f"[get_comfyui] {msg}", file=sys.stderr)


def cache_dir() -> Path:
    if os.environ.get("MOTIONKIT_CACHE"):
        return Path(os.environ["MOTIONKIT_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "motionkit"


def is_comfyui(path: Path) -> bool:
    return (path / "comfy" / "model_patcher.py").is_file() and (path / "main.py").is_file()


def git(*args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, check=check, capture_output=True, text=True)


def head_commit(path: Path) -> str | None:
    try:
        return git("rev-parse", "HEAD", cwd=path).stdout.strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None


def missing_blobs(repo: Path, commit: str) -> list[str]:
    """Paths whose blobs a partial mirror lacks (large files some mirrors leave out)."""
    listing = git("ls-tree", "-r", commit, cwd=repo).stdout.splitlines()
    entries = [line.split("\t", 1) for line in listing]
    shas = "\n".join(meta.split()[2] for meta, _ in entries) + "\n"
    probe = subprocess.run(["git", "cat-file", "--batch-check"], cwd=repo, input=shas,
                           capture_output=True, text=True, check=True).stdout.splitlines()
    return [path for (_, path), line in zip(entries, probe) if line.endswith(" missing")]


def clone_pinned(target: Path, url: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".partial")
    if tmp.exists():
        subprocess.run(["rm", "-rf", str(tmp)], check=True)
    log(f"cloning ComfyUI from {url} into {target}")
    git("clone", "--no-checkout", "--quiet", url, str(tmp))
    missing = missing_blobs(tmp, PINNED_COMMIT)
    if missing:
        # A mirror without some large blobs (tokenizer files of unrelated text encoders) is still
        # usable for SVD/SD1.5: check out everything else and say what was left out.
        log("the source lacks these files; they are left out of the checkout: " + ", ".join(missing))
        git("sparse-checkout", "set", "--no-cone", "/*", *[f"!/{p}" for p in missing], cwd=tmp)
    git("-c", "advice.detachedHead=false", "checkout", "--quiet", PINNED_COMMIT, cwd=tmp, check=not missing)
    if head_commit(tmp) != PINNED_COMMIT or not is_comfyui(tmp):
        raise SystemExit(f"[get_comfyui] checkout of {PINNED_COMMIT} in {tmp} failed")
    tmp.rename(target)


def find_comfyui() -> Path:
    env = os.environ.get("COMFYUI_PATH")
    if env:
        path = Path(env).expanduser().resolve()
        if not is_comfyui(path):
            raise SystemExit(f"[get_comfyui] COMFYUI_PATH={env} is not a ComfyUI checkout (no comfy/model_patcher.py)")
        commit = head_commit(path)
        if commit != PINNED_COMMIT:
            log(f"warning: {path} is at {commit or 'an unknown commit'}, MotionKit is tested at {PINNED_COMMIT}")
        return path
    host = PACK_ROOT.parent.parent
    if PACK_ROOT.parent.name == "custom_nodes" and is_comfyui(host):
        return host
    target = cache_dir() / "ComfyUI"
    if is_comfyui(target) and head_commit(target) == PINNED_COMMIT:
        return target
    if target.exists():
        raise SystemExit(f"[get_comfyui] {target} exists but is not ComfyUI at {PINNED_COMMIT}; "
                         "remove it or set COMFYUI_PATH")
    clone_pinned(target, os.environ.get("COMFYUI_GIT_URL", DEFAULT_URL))
    return target


if __name__ == "__main__":
    print(find_comfyui())
