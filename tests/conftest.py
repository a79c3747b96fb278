"""Session fixtures: the pinned ComfyUI (found or fetched by scripts/get_comfyui.py), a temporary base
directory with MotionKit linked into custom_nodes/, the tiny random models, and ComfyUI itself, in
process (real PromptServer object and PromptExecutor) and as an HTTP server."""
from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from motionkit_testing import comfy_session as cs  # noqa: E402
from motionkit_testing import frontends  # noqa: E402
from motionkit_testing.assets import write_test_image  # noqa: E402

TINY_CKPT = "motionkit_tiny_svd.safetensors"
TEST_IMAGE = "motionkit_test.png"


# Configured at import, before anything imports ComfyUI (which must see --cpu and the test base directory
# from its first import on).
COMFY_PATH = cs.comfyui_path()
BASE_DIR = cs.make_base_dir(Path(tempfile.mkdtemp(prefix="motionkit-comfy-")))
cs.configure_comfy(BASE_DIR, COMFY_PATH)


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(BASE_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def comfy_path() -> Path:
    return COMFY_PATH


@pytest.fixture(scope="session")
def base_dir() -> Path:
    return BASE_DIR


@pytest.fixture(scope="session")
def comfy(base_dir, comfy_path) -> cs.InProcessComfy:
    session = cs.InProcessComfy(base_dir, comfy_path)
    import nodes
    missing = {"MotionKitAllToFirstAttention"} - set(nodes.NODE_CLASS_MAPPINGS)
    assert not missing, f"ComfyUI did not register MotionKit's nodes: {missing}"
    return session


@pytest.fixture(scope="session")
def tiny_ckpt(comfy, base_dir) -> str:
    from motionkit_testing.tiny_models import tiny_svd_checkpoint
    tiny_svd_checkpoint(str(base_dir / "models" / "checkpoints" / TINY_CKPT))
    write_test_image(base_dir / "input" / TEST_IMAGE)
    return TINY_CKPT


@pytest.fixture(scope="session")
def frontend_lane() -> frontends.Lane:
    """The frontend the browser tests run on (``MOTIONKIT_FRONTEND``: host, 1.58.1, 1.58.1-nodes2)."""
    return frontends.lane()


@pytest.fixture(scope="session")
def server(base_dir, comfy_path, tiny_ckpt, frontend_lane):
    # the lane's settings are in the user settings file before any page loads; a lane whose frontend is
    # missing serves the host's own (its browser tests fail, saying what to install)
    frontends.write_user_settings(base_dir, frontend_lane)
    srv = cs.ComfyServer(base_dir, comfy_path, extra_args=frontend_lane.server_args())
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def tiny_sd15(comfy, base_dir) -> dict:
    """The tiny SD1.5 checkpoint, motion modules of every supported layout and a style LoRA (file names by
    role: ckpt, lora, v1, v2, motion_i2v, fyc, zero); used by the motion-module and Still-Moving tests."""
    from motionkit_testing.tiny_sd15 import write_assets
    return write_assets(base_dir)


@pytest.fixture(scope="session")
def tiny_motion_i2v(base_dir) -> str:
    """A tiny Motion-I2V stage-1 folder (the Hugging Face repository's file layout, seeded random weights)
    as models/motion_i2v/Motion-I2V, the folder name the example workflow uses; used by the Motion-I2V
    stage-1 tests and the example-workflow run."""
    from motionkit_testing.tiny_motion_i2v import tiny_parts, write_model_folder
    write_model_folder(base_dir / "models" / "motion_i2v" / "Motion-I2V", tiny_parts(seed=0))
    return "Motion-I2V"


@pytest.fixture(scope="module")
def one_thread():
    """The tiny models run faster on one thread than on two contended ones; restored afterwards."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def sd(comfy, tiny_sd15):
    """The tiny SD1.5 checkpoint loaded through ComfyUI, with its conditioning."""
    from motionkit_testing import sd15
    model, clip, vae, pos, neg = sd15.load(tiny_sd15)
    return {"model": model, "pos": pos, "neg": neg, "vae": vae, **tiny_sd15}
