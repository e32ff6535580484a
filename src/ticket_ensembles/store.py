"""The member store: the one contract between training and evaluation.

Layout: ``<store_dir>/<task>/<model>/<method>/<member>/`` where ``<member>`` is
``seed_<s>`` (one member per run) or ``seed_<s>_ticket_<t>`` (EDST: several per run).
A member folder holds ``predictions.npz`` (``predictions_<split>.npz`` for further eval
splits), ``metrics.json``, ``config.yaml``, ``run.json``, optionally ``mask.npz``, and
the marker ``COMPLETE``, written last. A member is built in a hidden temporary folder
and renamed into place, so a reader never sees half a member.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .errors import UserError

COMPLETE_MARKER = "COMPLETE"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=+-]*$")
_MEMBER = re.compile(r"^seed_(\d+)(?:_ticket_(\d+))?$")
_LEFTOVER = re.compile(r"^\.(seed_\d+(?:_ticket_\d+)?)\.(partial|old)-[0-9a-f]+$")  # a killed builder's folders


class StoreError(UserError):
    """A problem with the member store that the user can fix (message says how)."""


def safe_name(value: str, what: str) -> str:
    """Refuse a store path component that could escape the store (``..``, ``/``)."""
    value = str(value)
    if not _SAFE_NAME.match(value) or ".." in value:
        raise StoreError(f"{what} {value!r} is not a safe folder name: use letters, digits, '_', '-', '.' only")
    return value


def member_name(seed: int, ticket: int | None = None) -> str:
    return f"seed_{seed}" if ticket is None else f"seed_{seed}_ticket_{ticket}"


def parse_member_name(name: str) -> tuple[int, int | None] | None:
    """``seed_3_ticket_1`` -> (3, 1); None if the folder is not a member."""
    m = _MEMBER.match(name)
    if not m:
        return None
    return int(m.group(1)), (int(m.group(2)) if m.group(2) is not None else None)


def model_folder(model_cfg) -> str:
    """A model's store folder: its name, plus ``_L<n>`` when truncated to n layers."""
    layers = getattr(model_cfg, "num_layers", None)
    return model_cfg.name if layers is None else f"{model_cfg.name}_L{layers}"


def method_dir(store_dir: str | Path, task: str, model: str, method: str) -> Path:
    return Path(store_dir) / safe_name(task, "task") / safe_name(model, "model") / safe_name(method, "method")


def member_dir(store_dir: str | Path, task: str, model: str, method: str, seed: int,
               ticket: int | None = None) -> Path:
    return method_dir(store_dir, task, model, method) / member_name(seed, ticket)


def is_complete(path: str | Path) -> bool:
    return (Path(path) / COMPLETE_MARKER).is_file()


def write_json(path: str | Path, obj) -> None:
    """Write JSON atomically: a temporary file in the same folder, then rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=_json_default)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def save_npz(path: str | Path, **arrays: np.ndarray) -> None:
    """np.savez atomically (temporary file, then rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def write_predictions(folder: str | Path, filename: str, logits: np.ndarray, labels: np.ndarray) -> None:
    """Predictions of one eval split: logits float32 [N, C] ([N] for regression), labels [N]."""
    logits = np.asarray(logits, dtype=np.float32)
    labels = np.asarray(labels)
    if logits.shape[0] != labels.shape[0]:
        raise ValueError(f"{logits.shape[0]} logits rows but {labels.shape[0]} labels")
    save_npz(Path(folder) / filename, logits=logits, labels=labels)


def read_predictions(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Load (logits, labels) without pickle; a damaged file raises StoreError naming it."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            logits, labels = z["logits"], z["labels"]
    except FileNotFoundError:
        raise StoreError(f"{path} is missing: re-run training for this member (overwrite=true)") from None
    except Exception as e:  # truncated zip, missing key, object arrays
        raise StoreError(f"{path} is unreadable ({type(e).__name__}: {e}): delete the member folder and re-train it") from None
    if logits.shape[0] != labels.shape[0]:
        raise StoreError(f"{path} has {logits.shape[0]} logits rows but {labels.shape[0]} labels: re-train this member")
    if not np.all(np.isfinite(logits)):
        raise StoreError(f"{path} holds NaN or inf logits: the member diverged; re-train it (overwrite=true) or delete it")
    return logits, labels


@contextlib.contextmanager
def building_member(final_dir: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder to fill; on success mark it complete and move it into place.

    On any exception the temporary folder is removed and an existing member is untouched.
    """
    final_dir = Path(final_dir)
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = final_dir.with_name(f".{final_dir.name}.partial-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        yield tmp
        (tmp / COMPLETE_MARKER).write_text("complete\n")
        _move_into_place(tmp, final_dir, overwrite)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def member_lock(final_dir: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on one member while building it, so two workers never build it twice.

    Lock files live in ``<method_dir>/.locks/``; the lock is released when the process dies.
    """
    final_dir = Path(final_dir)
    lock_dir = final_dir.parent / ".locks"
    try:
        lock_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # paths.store_dir is a file, or not writable
        raise StoreError(f"cannot write to the store at {final_dir.parent} ({e.strerror}): "
                         "paths.store_dir must be a writable folder") from None
    with open(lock_dir / f"{final_dir.name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            tidy_after_crash(final_dir)
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def tidy_after_crash(final_dir: str | Path) -> None:
    """Clear what a killed builder of this member's seed left behind; call it under member_lock.

    Every builder of a seed's members holds that lock, so a temporary folder seen here is a dead
    process's. A complete member moved aside by an overwrite that was killed before the new
    member replaced it is put back (the rerun then overwrites it properly).
    """
    final_dir = Path(final_dir)
    seed = parse_member_name(final_dir.name)
    if seed is None or not final_dir.parent.is_dir():
        return
    for path in sorted(final_dir.parent.iterdir()):
        m = _LEFTOVER.match(path.name)
        if not m or parse_member_name(m.group(1))[0] != seed[0]:
            continue
        member = path.with_name(m.group(1))
        if m.group(2) == "old" and is_complete(path) and not member.exists():
            os.replace(path, member)
        else:
            shutil.rmtree(path, ignore_errors=True)


def _move_into_place(tmp: Path, final_dir: Path, overwrite: bool) -> None:
    old = None
    if final_dir.exists():
        if is_complete(final_dir) and not overwrite:
            raise StoreError(f"{final_dir} already holds a complete member: pass overwrite=true to replace it")
        old = final_dir.with_name(f".{final_dir.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(final_dir, old)
    os.replace(tmp, final_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def read_run_facts(folder: str | Path) -> dict | None:
    """A member's run.json, or None when it is missing or unreadable."""
    try:
        facts = json.loads((Path(folder) / "run.json").read_text())
    except (OSError, ValueError):
        return None
    return facts if isinstance(facts, dict) else None


def member_settings_of(folder: str | Path) -> dict | None:
    """The settings a member recorded (fingerprint.member_settings), None if written before they were."""
    facts = read_run_facts(folder)
    settings = None if facts is None else facts.get("settings")
    return settings if isinstance(settings, dict) else None


def list_members(store_dir: str | Path, task: str, model: str) -> dict[str, dict[str, Path]]:
    """Complete members per method: ``{method: {member_name: folder}}``, sorted by seed, ticket."""
    root = Path(store_dir) / task / model
    out: dict[str, dict[str, Path]] = {}
    if not root.is_dir():
        return out
    for mdir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        members = [p for p in mdir.iterdir() if p.is_dir() and parse_member_name(p.name) and is_complete(p)]
        members.sort(key=lambda p: tuple(-1 if v is None else v for v in parse_member_name(p.name)))
        if members:
            out[mdir.name] = {p.name: p for p in members}
    return out
