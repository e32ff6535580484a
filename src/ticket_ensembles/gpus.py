"""Which device a run trains on, and one GPU per job when a multirun's jobs share a node.

``trainer.device=auto`` in a single run: the current CUDA GPU (cuda:0) when torch sees one, else the
CPU, and the run's first log lines say which and why. In a multirun, ``auto`` and ``cuda`` pick a GPU
per job (below); a device with an index (``cuda:3``) is used as it is. In a multirun whose jobs run side by side on
one node, every job would take cuda:0. So under ``hydra/launcher=joblib`` (``n_jobs`` workers) and
``submitit_local`` (every job at once) each job claims a *slot* for as long as it builds: a file lock
``<sweep dir>/.gpu_slots/slot_<s>`` (flock, released when the job ends or dies), the first free one.
Slot s uses GPU s mod G (G: the GPUs torch sees). joblib has ``n_jobs`` slots, so n_jobs = G gives each
worker its own GPU and n_jobs = 2G two workers per GPU (memory permitting); submitit_local has G slots,
one job per GPU, the others wait for a free one. The job then runs with ``trainer.device=cuda:<g>``
(``config.yaml`` records it) and ``torch.cuda.set_device(g)``.

A slot is chosen per job, not from the job number: joblib hands the next job to whichever worker
is free, so job numbers mod G would put two running jobs on one GPU as soon as jobs differ in length.
The device index is set instead of ``CUDA_VISIBLE_DEVICES`` because a joblib worker process runs
many jobs and CUDA reads that variable once per process. SLURM jobs (``submitit_slurm``) get their
own GPUs from SLURM (``gpus_per_node``) and need none of this.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

POLL_S = 5.0  # how often a job without a free slot looks again


def slot_gpu(slot: int, gpus: int) -> int:
    """The GPU of a slot: slots go round the GPUs, so n_jobs = 2G puts two on each."""
    return slot % gpus


@contextlib.contextmanager
def claim_slot(folder: str | Path, slots: int, poll_s: float = POLL_S) -> Iterator[int]:
    """Hold the first free of ``slots`` slot locks in ``folder`` for the block; wait while all are held."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    waited = False
    while True:
        for slot in range(slots):
            fd = os.open(folder / f"slot_{slot}", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            try:
                yield slot
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
            return
        if not waited:
            log.info("all %d GPU slots of this sweep are busy: waiting for one (%s)", slots, folder)
            waited = True
        time.sleep(poll_s)


def sweep_slots(hydra_cfg, gpus: int) -> int | None:
    """Slots for a job of this multirun: joblib's n_jobs (all GPUs when n_jobs < 1), submitit_local's G;
    None outside a multirun or under another launcher (one job per process or per SLURM allocation)."""
    if hydra_cfg is None or str(hydra_cfg.get("mode")) != "RunMode.MULTIRUN":
        return None
    target = str(hydra_cfg.launcher.get("_target_", ""))
    if target.endswith("JoblibLauncher"):
        n_jobs = int(hydra_cfg.launcher.get("n_jobs") or 0)
        return n_jobs if n_jobs > 0 else gpus
    if target.endswith("LocalLauncher"):  # submitit_local starts every job at once
        return gpus
    return None


def _hydra_cfg():
    try:
        from hydra.core.hydra_config import HydraConfig

        return HydraConfig.get() if HydraConfig.initialized() else None
    except Exception:  # no Hydra here (a script, a test calling train() directly)
        return None


@contextlib.contextmanager
def job_device(cfg, hydra_cfg=None) -> Iterator[None]:
    """Within the block, a multirun job with ``trainer.device=auto`` (or ``cuda``) on a node with CUDA GPUs
    holds a GPU slot and runs with ``trainer.device=cuda:<g>``; anything else (``cuda:3``, ``cpu``) runs as
    configured. Logs the device."""
    import torch

    requested = str(cfg.trainer.device)
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    hydra_cfg = _hydra_cfg() if hydra_cfg is None else hydra_cfg
    slots = sweep_slots(hydra_cfg, gpus) if requested in ("auto", "cuda") and gpus else None
    if not slots:
        log.info("device: %s", describe_device(requested))
        yield
        return
    with claim_slot(Path(str(hydra_cfg.sweep.dir)) / ".gpu_slots", slots) as slot:
        gpu = slot_gpu(slot, gpus)
        torch.cuda.set_device(gpu)
        cfg.trainer.device = f"cuda:{gpu}"
        log.info("device: %s (slot %d of this sweep's %d on %d GPU(s))", describe_device(cfg.trainer.device),
                 slot, slots, gpus)
        try:
            yield
        finally:
            cfg.trainer.device = requested


def describe_device(requested: str) -> str:
    """``cuda:1 (NVIDIA A100-SXM4-80GB)``, or ``cpu`` with why when auto found no GPU."""
    import torch

    from .trainer import resolve_device

    device = resolve_device(requested)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    if device.type != "cpu" or requested != "auto":
        return str(device)
    why = "torch sees no CUDA GPU"
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        why += " (CUDA_VISIBLE_DEVICES is empty: a launcher with gpus_per_node=0 sets that)"
    elif torch.version.cuda is None and _nvidia_gpus_present():
        why += f" (this torch {torch.__version__} is a CPU build but the machine has NVIDIA GPUs: install a CUDA build)"
    return f"cpu: trainer.device=auto and {why}, so this run trains on the CPU"


def _nvidia_gpus_present() -> bool:
    folder = Path("/proc/driver/nvidia/gpus")
    return folder.is_dir() and any(folder.iterdir())
