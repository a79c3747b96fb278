#!/usr/bin/env python3
"""Find or fetch a ComfyUI host that MotionKit's tests and demo run against; print its path.

MotionKit is tested on two hosts (``--list`` prints them):

  ``v0.3.64``  commit a125cd84 (2025-10), the oldest supported ComfyUI;
  ``v0.33.0``  commit 2f35f4a0 (2026-08), the newest whole upstream release obtainable here.

The host is ``--host NAME`` (a name above, or ``oldest`` / ``newest``), else ``$MOTIONKIT_COMFY_HOST``,
else the oldest. For the chosen host, in order of preference:

  1. ``$COMFYUI_PATH_<HOST>`` (e.g. ``COMFYUI_PATH_V0_33_0``), or ``$COMFYUI_PATH`` (any host), used as
     is (a warning is printed when it is not at the host's commit);
  2. the ComfyUI whose ``custom_nodes/`` holds this pack (only when no host was asked for explicitly);
  3. a clone of the host's commit in the user cache folder
     ``${MOTIONKIT_CACHE:-${XDG_CACHE_HOME:-~/.cache}/motionkit}/<folder>`` (``ComfyUI`` for v0.3.64,
     ``ComfyUI-v0.33.0`` for v0.33.0), cloned when missing from ``$COMFYUI_GIT_URL_<HOST>``, else
     ``$COMFYUI_GIT_URL``, else GitHub (upstream carries both commits; so do forks such as
     ``yzkee/ComfyUI``).

A source that lacks some blobs (some mirrors leave out large tokenizer files) is checked out without
them, and the script says which files it left out.

Only the standard library is used, so it runs before any environment exists.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

DEFAULT_URL = "https://github.com/Comfy-Org/ComfyUI.git"
PACK_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Host:
    name: str
    commit: str
    folder: str  # in the cache folder

    @property
    def env_suffix(self) -> str:  # "v0.33.0" -> "V0_33_0"
        return self.name.upper().replace(".", "_")


HOSTS = {h.name: h for h in (
    Host("v0.3.64", "a125cd84b054a57729b5eecab930ca9408719832", "ComfyUI"),
    Host("v0.33.0", "2f35f4a08176d993cded35dac3332be4f7287f41", "ComfyUI-v0.33.0"),
)}
OLDEST, NEWEST = "v0.3.64", "v0.33.0"
PINNED_COMMIT = HOSTS[OLDEST].commit  # kept for scripts that imported it


def log(msg: str) -> None:
    print(f"[get_comfyui] {msg}", file=sys.stderr)


def host_named(name: str | None) -> Host:
    name = {"oldest": OLDEST, "newest": NEWEST, "": OLDEST, None: OLDEST}.get(name, name)
    if name not in HOSTS:
        raise SystemExit(f"[get_comfyui] unknown ComfyUI host {name!r}; use one of {', '.join(HOSTS)} "
                         "(or oldest / newest)")
    return HOSTS[name]


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


def clone_host(host: Host, target: Path, url: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".partial")
    if tmp.exists():
        subprocess.run(["rm", "-rf", str(tmp)], check=True)
    log(f"cloning ComfyUI {host.name} from {url} into {target}")
    git("clone", "--no-checkout", "--quiet", url, str(tmp))
    missing = missing_blobs(tmp, host.commit)
    if missing:
        # A mirror without some large blobs (tokenizer files of unrelated text encoders) is still
        # usable for SVD/SD1.5: check out everything else and say what was left out.
        log("the source lacks these files; they are left out of the checkout: " + ", ".join(missing))
        git("sparse-checkout", "set", "--no-cone", "/*", *[f"!/{p}" for p in missing], cwd=tmp)
    git("-c", "advice.detachedHead=false", "checkout", "--quiet", host.commit, cwd=tmp)
    if head_commit(tmp) != host.commit or not is_comfyui(tmp):
        raise SystemExit(f"[get_comfyui] checkout of {host.commit} in {tmp} failed")
    tmp.rename(target)


def find_comfyui(name: str | None = None) -> Path:
    explicit = name or os.environ.get("MOTIONKIT_COMFY_HOST")
    host = host_named(explicit)
    for var in (f"COMFYUI_PATH_{host.env_suffix}", "COMFYUI_PATH"):
        env = os.environ.get(var)
        if not env:
            continue
        path = Path(env).expanduser().resolve()
        if not is_comfyui(path):
            raise SystemExit(f"[get_comfyui] {var}={env} is not a ComfyUI checkout (no comfy/model_patcher.py)")
        commit = head_commit(path)
        if commit != host.commit:
            log(f"warning: {path} is at {commit or 'an unknown commit'}; MotionKit's {host.name} host is "
                f"{host.commit}")
        return path
    parent = PACK_ROOT.parent.parent
    if not explicit and PACK_ROOT.parent.name == "custom_nodes" and is_comfyui(parent):
        return parent
    target = cache_dir() / host.folder
    if is_comfyui(target) and head_commit(target) == host.commit:
        return target
    if target.exists():
        raise SystemExit(f"[get_comfyui] {target} exists but is not ComfyUI at {host.commit}; "
                         f"remove it or set COMFYUI_PATH_{host.env_suffix}")
    url = (os.environ.get(f"COMFYUI_GIT_URL_{host.env_suffix}") or os.environ.get("COMFYUI_GIT_URL")
           or DEFAULT_URL)
    clone_host(host, target, url)
    return target


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", help="v0.3.64, v0.33.0, oldest or newest (default: $MOTIONKIT_COMFY_HOST, "
                                       "else the oldest)")
    parser.add_argument("--list", action="store_true", help="print the host names, oldest first, and exit")
    opts = parser.parse_args()
    if opts.list:
        print("\n".join(HOSTS))
    else:
        print(find_comfyui(opts.host))
