"""Shared fixtures: the real GLUE files, a tiny real pretrained model, composed configs."""
from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from ticket_ensembles.config import register_configs

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one pytest-xdist worker per core: one thread each, here and in the
    # scripts the tests start, so two workers do not fight over two cores.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
BASE_ENV = dict(os.environ)  # what the fork server imports under (tests/forkserver.py)
_fork_server: dict = {}

# The tiny-but-real setting: MiniLM-L6 cut to 1 layer, 64 MRPC rows, one epoch.
TINY = [
    "model=minilm_l6", "model.num_layers=1", "data.max_train_samples=64", "data.max_eval_samples=64",
    "trainer.epochs=1", "trainer.max_length=64", "trainer.progress=false", "trainer.batch_size=16",
]


def find_glue_dir() -> Path:
    """GLUE_DIR, else ../shared/data/glue beside the repo; a clear failure if neither holds data."""
    candidate = Path(os.environ.get("GLUE_DIR") or ROOT.parent / "shared" / "data" / "glue")
    if not (candidate / "MRPC" / "train.tsv").is_file():
        pytest.fail(f"real GLUE data not found at {candidate}: set GLUE_DIR to the glue_data folder "
                    "(../shared/data/glue in this project); these tests do not skip without it")
    return candidate


@pytest.fixture(scope="session")
def glue_dir() -> Path:
    return find_glue_dir()


def compose_cfg(config_name: str, overrides: list[str]) -> DictConfig:
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name, overrides=overrides)


@pytest.fixture
def make_cfg(tmp_path, glue_dir):
    """Compose conf/train.yaml with the tiny setting, a store under tmp_path, and overrides."""

    def make(*overrides: str, root: Path | None = None) -> DictConfig:
        base = [*TINY, f"data.glue_dir={glue_dir}", f"paths.root_dir={root or tmp_path}"]
        return compose_cfg("train", [*base, *overrides])

    return make


def entry_python() -> str:
    """The interpreter for the entry-point runs the tests start: `tests/forkpython`, which forks each run of
    a script from a server that has already imported torch, transformers, ... (tests/forkserver.py: about
    5 s saved per run), started once per pytest worker; the real interpreter when TE_TEST_FORK=0."""
    if os.environ.get("TE_TEST_FORK", "1") == "0":
        return sys.executable
    if not _fork_server:
        folder = Path(tempfile.mkdtemp(prefix="te-fork-"))
        log = open(folder / "server.log", "w")  # noqa: SIM115 - the server's, for as long as it runs
        proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "forkserver.py"), "serve", str(folder / "sock")],
                                env=BASE_ENV, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        atexit.register(lambda: (proc.kill(), proc.wait(), log.close(), shutil.rmtree(folder, ignore_errors=True)))
        _fork_server.update(proc=proc, sock=folder / "sock")
        os.environ.update(TE_FORKSERVER=str(folder / "sock"), TE_TEST_PYTHON=sys.executable)
    deadline = time.monotonic() + 300
    while not _fork_server["sock"].exists():  # the socket appears once the imports are done
        if _fork_server["proc"].poll() is not None or time.monotonic() > deadline:
            os.environ.pop("TE_FORKSERVER", None)  # no server: every run takes the real interpreter
            break
        time.sleep(0.05)
    return str(ROOT / "tests" / "forkpython")


def run_script(script: str, *args: str, cwd: Path = ROOT, env: dict | None = None, timeout: float = 600):
    """Run a root entry point (train.py, evaluate.py) as a user would: its own process, argv, cwd, env."""
    python = entry_python()
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([python, str(ROOT / script), *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
