"""A real single-node SLURM cluster for these tests (scripts/slurm_cluster.sh), and how to launch on it.

Not part of `make test` (which runs tests/ only): `make test-slurm` runs this folder. It needs
root and apt-get (Debian/Ubuntu); where they are missing the session stops with one line saying
so and exit code 1 (never a skip).
"""
from __future__ import annotations

import fcntl
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "slurm_cluster.sh"
CLUSTER_DIR = Path(os.environ.get("SLURM_TEST_DIR", "/tmp/ticket-slurm"))

# the suite's own test settings (tests/conftest.py), loaded under another name than this conftest
_spec = importlib.util.spec_from_file_location("suite_conftest", ROOT / "tests" / "conftest.py")
suite = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(suite)
TINY, compose_cfg = suite.TINY, suite.compose_cfg

SMALL = [*TINY, "data.max_train_samples=32", "trainer.num_threads=1"]
# CPU jobs of one core each; the node offers 8 (more than it has: most test jobs wait on locks)
LAUNCHER = ["hydra/launcher=submitit_slurm", "hydra.launcher.gpus_per_node=0", "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.mem_gb=1"]


def _script(*args: str, env: dict | None = None) -> None:
    res = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=900,
                         env={**os.environ, **(env or {})})
    if res.returncode != 0:
        lines = [line for line in res.stderr.splitlines() if line.strip()] or [f"exit code {res.returncode}"]
        # one line for the whole session, not one per test: without a cluster no test can run
        pytest.exit(f"SLURM test cluster: {SCRIPT.name} {' '.join(args)}: {lines[-1]}", returncode=1)


def restart_cluster(accounting: bool) -> None:
    _script("start", *([] if accounting else ["--no-accounting"]), env={"SLURM_NODE_CPUS": "8"})


@pytest.fixture(scope="session")
def cluster():
    """Install (once) and start the cluster; stop afterwards the daemons this session started."""
    if os.geteuid() != 0:
        pytest.exit("the SLURM tests need root (they install and start slurmctld, slurmd, slurmdbd, munged and "
                    "MariaDB): run make test-slurm as root", returncode=1)
    was_up = (CLUSTER_DIR / "run" / "slurmctld.pid").is_file()
    _script("install")
    restart_cluster(accounting=True)
    os.environ["SLURM_CONF"] = str(CLUSTER_DIR / "etc" / "slurm.conf")
    yield CLUSTER_DIR
    if not was_up:
        _script("stop")


@pytest.fixture(scope="session")
def glue_dir() -> Path:
    return suite.find_glue_dir()


def train_args(glue_dir: Path, root: Path, *overrides: str, settings: list[str] = SMALL) -> list[str]:
    return [sys.executable, str(ROOT / "train.py"), "-m", *LAUNCHER, *settings, f"data.glue_dir={glue_dir}",
            f"paths.root_dir={root}", *overrides]


def launch(glue_dir: Path, root: Path, *overrides: str, settings: list[str] = SMALL) -> subprocess.Popen:
    """`python train.py -m hydra/launcher=submitit_slurm ...` as a user runs it (in the background)."""
    return subprocess.Popen(train_args(glue_dir, root, *overrides, settings=settings), cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def job_folders(root: Path) -> list[Path]:
    """The submitit folders (one per SLURM job) of every sweep under ``root``."""
    return sorted(p.parent for p in (root / "logs" / "multiruns").glob("*/*/.submitit/*/*_submitted.pkl"))


def job_log(folder: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in sorted(folder.glob("*_log.*")))


def starts(folder: Path) -> int:
    """How many times SLURM started this job (submitit logs each start)."""
    return sum("Starting with JobEnvironment" in line for line in job_log(folder).splitlines()
               if line.startswith("submitit INFO"))


def wait_until(condition, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the sweep ended (exit {proc.returncode}) before {what}: {err[-1500:]}")
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


class HeldLock:
    """Hold a member's store lock (as a worker building it would) until release()."""

    def __init__(self, method_dir: Path, member: str):
        (method_dir / ".locks").mkdir(parents=True, exist_ok=True)
        self.handle = open(method_dir / ".locks" / f"{member}.lock", "a")
        fcntl.flock(self.handle, fcntl.LOCK_EX)

    def release(self) -> None:
        if not self.handle.closed:
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()
