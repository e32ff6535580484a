"""Read an offline W&B run back: the run-*.wandb file's protobuf records (wandb_internal_pb2.Record).

The file is W&B's LevelDB-style log (header ``:W&B`` + magic + version, 32 KiB blocks of
checksummed chunks); wandb 0.31 ships no Python reader for it, so these few lines split the
chunks and wandb's own protobuf classes decode each record.
"""
from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

from wandb.proto import wandb_internal_pb2 as pb

_HEADER, _BLOCK, _CHUNK = 7, 32 * 1024, 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def records(path: Path) -> list[pb.Record]:
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", path
    out, pending, pos = [], b"", _HEADER
    while pos + _CHUNK <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _CHUNK:  # the block's tail is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + _CHUNK])
        chunk = data[pos + _CHUNK:pos + _CHUNK + length]
        pos += _CHUNK + length
        if kind == 0 and length == 0:
            continue
        pending = chunk if kind in (_FULL, _FIRST) else pending + chunk
        if kind in (_FULL, _LAST):
            record = pb.Record()
            record.ParseFromString(pending)
            out.append(record)
    return out


def _value(item) -> object:
    return json.loads(item.value_json)


def _items(items) -> dict:
    """Items to a dict; nested keys (a logged table's fields) become nested dicts."""
    out: dict = {}
    for item in items:
        *parents, last = list(item.nested_key) or [item.key]
        node = out
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = _value(item)
    return out


@dataclass
class OfflineRun:
    """What one offline run recorded: identity, config, history rows, summary, artifacts."""

    folder: Path
    name: str = ""
    group: str = ""
    job_type: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)  # define_metric: name -> step metric
    artifacts: list[str] = field(default_factory=list)
    exit_code: int | None = None


def finished_records(folder: Path, wait_s: float = 20.0) -> list[pb.Record]:
    """The records once the run's exit record is on disk: wandb-core flushes the file a moment
    after ``run.finish()`` returns."""
    deadline = time.monotonic() + wait_s
    while True:
        found = records(next(folder.glob("run-*.wandb")))
        if any(r.WhichOneof("record_type") == "exit" for r in found) or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def read_run(folder: Path) -> OfflineRun:
    run = OfflineRun(folder)
    for r in finished_records(folder):
        kind = r.WhichOneof("record_type")
        if kind == "run":  # later run records update only some fields
            run.name, run.group = r.run.display_name or run.name, r.run.run_group or run.group
            run.job_type, run.tags = r.run.job_type or run.job_type, list(r.run.tags) or run.tags
            run.config |= _items(r.run.config.update)
        elif kind == "config":
            run.config |= _items(r.config.update)
        elif kind == "history":
            run.history.append(_items(r.history.item))
        elif kind == "summary":
            run.summary |= _items(r.summary.update)
        elif kind == "metric":
            run.metrics[r.metric.name or r.metric.glob_name] = r.metric.step_metric
        elif kind == "artifact":
            run.artifacts.append(r.artifact.name)
        elif kind == "exit":
            run.exit_code = r.exit.exit_code
    return run


def read_runs(log_dir: Path) -> list[OfflineRun]:
    return [read_run(f) for f in sorted((Path(log_dir) / "wandb").glob("offline-run-*"))]
