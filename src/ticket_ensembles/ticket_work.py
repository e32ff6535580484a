"""Bookkeeping for lottery-ticket members: resumable pruning rounds and active_lt chains.

``<method_dir>/.work/seed_<s>/round_<r>.npz`` is the mask after pruning round r: the only
state a round needs, since every round restarts from θ_s ⊙ m. ``fingerprint.txt`` names
the settings the rounds were made with; other settings start afresh. The folder goes once
the member is complete.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from pathlib import Path

import torch
from omegaconf import DictConfig

from . import pruning, store
from .fingerprint import digest, member_settings

log = logging.getLogger(__name__)
WORK = ".work"
_ROUND = re.compile(r"^round_(\d+)\.npz$")
ROUNDS_SAVED = 0  # by this process: a SLURM job's progress (jobs.requeue_only_with_progress)


def chain_predecessors(seed: int, group_size: int) -> list[int]:
    """Earlier seeds of ``seed``'s chain: its group (``group_size`` consecutive seeds), in order."""
    if group_size < 1:
        raise pruning.PruningError(f"method.group_size={group_size} must be at least 1")
    return list(range(seed - seed % group_size, seed))


def fingerprint(cfg: DictConfig, *extra: str) -> str:
    """A digest of the settings that shape a member's masks (fingerprint.member_settings, the same
    settings a complete member records) plus e.g. the digests of predecessor masks."""
    return digest(member_settings(cfg), *extra)


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


class RoundWork:
    """The round masks of one member in progress."""

    def __init__(self, method_dir: Path, seed: int, digest: str):
        self.folder = Path(method_dir) / WORK / store.member_name(seed)
        self.digest = digest

    def resume(self, params: dict[str, torch.Tensor]) -> tuple[int, pruning.Masks] | None:
        """(last completed round, its mask) if earlier rounds with the same settings exist."""
        stamp = self.folder / "fingerprint.txt"
        if not stamp.is_file() or stamp.read_text().strip() != self.digest:
            if self.folder.exists():
                log.info("discarding %s: made with other settings", self.folder)
            self.clear()
            return None
        rounds = sorted(int(m.group(1)) for p in self.folder.iterdir() if (m := _ROUND.match(p.name)))
        if not rounds:
            return None
        try:
            return rounds[-1], pruning.load_masks(self.folder / f"round_{rounds[-1]}.npz", params)
        except store.StoreError as e:
            log.warning("ignoring unusable round mask (%s); starting the member afresh", e)
            self.clear()
            return None

    def save(self, round_no: int, masks: pruning.Masks, costs: dict | None = None) -> None:
        """The mask after ``round_no``; ``costs``: the member's training so far (counted across requeues)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "fingerprint.txt").write_text(self.digest + "\n")
        if costs is not None:  # before the mask: a round whose mask exists has its costs
            store.write_json(self.folder / f"round_{round_no}.json", costs)
        pruning.save_masks(self.folder / f"round_{round_no}.npz", masks)
        global ROUNDS_SAVED
        ROUNDS_SAVED += 1

    def costs(self, round_no: int) -> dict:
        """What :meth:`save` recorded with round ``round_no`` ({} for rounds saved without it)."""
        try:
            return json.loads((self.folder / f"round_{round_no}.json").read_text())
        except (OSError, ValueError):
            return {}

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
