"""Real ComfyUI for the tests: an in-process executor and an HTTP server, both on a temporary base
directory whose ``custom_nodes/`` holds MotionKit (and the test-model harness) as links, so ComfyUI's
own custom-node loader imports the pack exactly as it does for users."""
from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HARNESS = Path(__file__).resolve().parent
PACK_DIRNAME = "ComfyUI-MotionKit"


def comfyui_path() -> Path:
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "get_comfyui.py")], check=True,
                         capture_output=True, text=True).stdout.strip()
    return Path(out)


def make_base_dir(base: Path, with_test_models: bool = True) -> Path:
    """A ComfyUI base directory (models/, input/, output/, custom_nodes/) for one test session."""
    for sub in ("models/checkpoints", "models/clip_vision", "input", "output", "temp", "user", "custom_nodes"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    links = {PACK_DIRNAME: REPO}
    if with_test_models:
        links["motionkit_testing"] = HARNESS / "custom_node"
    else:  # a reused base directory (the demo's) may hold the link from an earlier tiny-model run
        stale = base / "custom_nodes" / "motionkit_testing"
        if stale.is_symlink():
            stale.unlink()
    for name, target in links.items():
        link = base / "custom_nodes" / name
        if not link.exists():
            link.symlink_to(target, target_is_directory=True)
    return base


def configure_comfy(base: Path, comfy: Path) -> None:
    """Put ComfyUI on sys.path with CPU and base-directory settings, before anything imports it."""
    if str(comfy) in sys.path:
        sys.path.remove(str(comfy))
    sys.path.insert(0, str(comfy))  # first: ComfyUI's top-level `nodes` must win over any other
    from comfy.cli_args import args
    args.cpu = True  # must precede the first import of comfy.model_management
    args.base_directory = str(base)
    args.disable_api_nodes = True
    # main.py imports ComfyUI's top-level `utils` package before nodes.py puts comfy/ first on sys.path
    # (after which `utils` would resolve to comfy/utils.py); keep that order.
    import utils.extra_config  # noqa: F401


class InProcessComfy:
    """ComfyUI's real PromptServer object, node registry and PromptExecutor, without the HTTP listener."""

    def __init__(self, base: Path, comfy: Path):
        configure_comfy(base, comfy)
        import execution
        import folder_paths
        import nodes
        import server

        assert Path(folder_paths.base_path) == base, "ComfyUI was imported before the test base dir was set"
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.server = server.PromptServer(self.loop)
        self.loop.run_until_complete(nodes.init_extra_nodes(init_custom_nodes=True, init_api_nodes=False))
        self.executor = make_executor(execution, self.server)
        self.execution, self.nodes, self.folder_paths, self.base = execution, nodes, folder_paths, base

    def run(self, prompt: dict) -> dict:
        """Validate and execute an API-format prompt; return its history entry (raises on failure)."""
        prompt_id = str(uuid.uuid4())
        valid = self.loop.run_until_complete(self.execution.validate_prompt(prompt_id, prompt, None))
        if not valid[0]:
            raise WorkflowError("invalid prompt", {"error": valid[1], "node_errors": valid[3]})
        self.executor.execute(prompt, prompt_id, {}, valid[2])
        if not self.executor.success:
            errors = [m for m in self.executor.status_messages if m[0] == "execution_error"]
            raise WorkflowError("execution failed", errors[0][1] if errors else self.executor.status_messages)
        return self.executor.history_result

    def validate(self, prompt: dict):
        return self.loop.run_until_complete(self.execution.validate_prompt(str(uuid.uuid4()), prompt, None))

    def output(self, node_id: str, slot: int = 0):
        """The first item of output ``slot`` of node ``node_id`` from the last run (the executor's cache)."""
        return self.outputs(node_id)[slot][0]

    def outputs(self, node_id: str) -> list:
        """All output slots (each a list) of node ``node_id`` from the last run.

        The output cache changed shape across hosts: v0.3.64 stores the slot lists; later hosts store a
        ``CacheEntry(ui, outputs)``, and from about v0.30 ``HierarchicalCache.get`` is a coroutine."""
        entry = self.executor.caches.outputs.get(node_id)
        if asyncio.iscoroutine(entry):
            entry = self.loop.run_until_complete(entry)
        if entry is None:
            raise KeyError(f"node {node_id!r} has no cached outputs")
        return entry.outputs if hasattr(entry, "outputs") and hasattr(entry, "ui") else entry


def make_executor(execution, server):
    """``PromptExecutor`` with the classic cache on any host: v0.3.64 takes ``cache_size``; later hosts read
    ``cache_args["ram"]`` (and, on v0.33.0, ``["ram_inactive"]``) in every run."""
    import inspect
    params = inspect.signature(execution.PromptExecutor.__init__).parameters
    if "cache_args" in params:
        return execution.PromptExecutor(server, cache_type=execution.CacheType.CLASSIC,
                                        cache_args={"lru": 0, "ram": 0.0, "ram_inactive": 0.0})
    return execution.PromptExecutor(server, cache_type=execution.CacheType.CLASSIC)


class WorkflowError(RuntimeError):
    def __init__(self, what: str, details):
        self.details = details
        super().__init__(f"{what}: {json.dumps(details, default=str)[:4000]}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    """``python main.py --cpu --listen 127.0.0.1`` on the base directory, as a user would start it.
    ``cpu=False`` lets ComfyUI pick its device (the demo with a real checkpoint on a GPU machine)."""

    def __init__(self, base: Path, comfy: Path, port: int | None = None, python: str = sys.executable,
                 extra_args: tuple = (), cpu: bool = True):
        self.base, self.comfy, self.port = base, comfy, port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = base / "server.log"
        cmd = [python, str(comfy / "main.py"), *(["--cpu"] if cpu else []), "--listen", "127.0.0.1",
               "--port", str(self.port),
               "--base-directory", str(base), "--database-url", f"sqlite:///{base / 'user' / 'comfyui.db'}",
               "--disable-auto-launch", "--disable-api-nodes", *extra_args]
        self._log = open(self.log_path, "w")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(cmd, cwd=str(comfy), stdout=self._log, stderr=subprocess.STDOUT, env=env)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                self.get("/system_stats")
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.5)
        raise TimeoutError(f"ComfyUI did not answer within {timeout}s:\n{self.log()[-4000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=30) as r:
            return json.loads(r.read())

    def post(self, path: str, body: dict):
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def run(self, prompt: dict, timeout: float = 300.0) -> dict:
        """POST /prompt, poll /history/<id>; return the history entry (raises on error)."""
        status, body = self.post("/prompt", {"prompt": prompt, "client_id": "motionkit-tests"})
        if status != 200:
            raise WorkflowError(f"/prompt answered {status}", body)
        prompt_id = body["prompt_id"]
        deadline = time.time() + timeout
        while time.time() < deadline:
            hist = self.get(f"/history/{prompt_id}")
            if prompt_id in hist and hist[prompt_id].get("status", {}).get("completed") is not None:
                entry = hist[prompt_id]
                if entry["status"].get("status_str") != "success":
                    raise WorkflowError("execution failed", entry["status"])
                return entry
            time.sleep(0.2)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout}s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()
