"""A member's settings: everything that shapes its predictions, and how two members' settings differ.

A member is what its settings say. Each member's run.json records ``settings`` (flat
``group.key -> value``: task, model and depth, method, trainer, data subset; not the seed, paths,
logging, the launcher or the hardware) and ``fingerprint``, a digest of them. Training refuses to
skip, or resume, a member made with other settings, and evaluation refuses to ensemble one method's
members whose settings differ (docs/store.md). The ticket resume digest and the active_lt chain
check use the same :func:`member_settings`.

A key added to a schema after a member was written is no difference as long as the new value is
the schema's default (the default reproduces what the code did before the key existed).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from omegaconf import DictConfig, OmegaConf

# the config groups that shape a member's predictions (the seed is the member's folder)
GROUPS = ("task", "model", "method", "trainer", "data")
# keys of those groups that do not change what a member predicts
IGNORED = frozenset({
    "trainer.progress", "trainer.log_every_steps", "trainer.num_threads", "trainer.eval_batch_size",
    "trainer.device",  # the hardware is recorded (run.json's device) and flagged by evaluate.py, not refused
    "data.glue_dir", "data.hub_id",  # where the same files come from
    "method.folder",  # the store folder the member lives in
})


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists stay values."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out |= flatten(value, name)
        else:
            out[name] = value
    return out


def member_settings(cfg: DictConfig) -> dict[str, Any]:
    """The settings of a run's members: flat ``group.key -> value``, JSON-ready and sorted."""
    present = [g for g in GROUPS if g in cfg]
    tree = OmegaConf.to_container(OmegaConf.masked_copy(cfg, present), resolve=True, enum_to_str=True)
    flat = flatten(tree)
    return {k: _plain(v) for k, v in sorted(flat.items()) if k not in IGNORED}


def digest(settings: dict[str, Any], *extra: str) -> str:
    """A 16-hex digest of ``settings`` (plus e.g. the digests of an active_lt chain's masks). Keys at
    their schema default are left out, so a key added to a schema later (at the default that keeps
    the old behaviour) changes no digest: a ticket's saved rounds still resume."""
    method = settings.get("method.name")
    kept = {k: v for k, v in settings.items() if not _at_default(k, v, method)}
    text = json.dumps(kept, sort_keys=True, default=str)
    return hashlib.sha256("\n".join([text, *extra]).encode()).hexdigest()[:16]


def differences(theirs: dict[str, Any], ours: dict[str, Any], method: str | None = None) -> list[str]:
    """The keys whose values differ, sorted. A key only one side has counts when its value there is
    not the schema's default for it (``method``: the method whose schema holds method.* defaults)."""
    out = []
    for key in sorted(set(theirs) | set(ours)):
        if key in IGNORED:
            continue
        if key in theirs and key in ours:
            if not _same(theirs[key], ours[key]):
                out.append(key)
            continue
        if not _at_default(key, ours[key] if key in ours else theirs[key], method):
            out.append(key)
    return out


def describe(keys: list[str], theirs: dict[str, Any], ours: dict[str, Any], limit: int = 6) -> str:
    """``trainer.lr (2e-05 there, 0.001 here), ...`` for a one-line message."""
    parts = [f"{k} ({_show(theirs, k)} there, {_show(ours, k)} here)" for k in keys[:limit]]
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(parts) + more


def _show(settings: dict, key: str) -> str:
    return repr(settings[key]) if key in settings else "unset"


def schema_default(key: str, method: str | None = None) -> tuple[bool, Any]:
    """(True, default) of ``group.key`` in the typed schema (config.py), else (False, None)."""
    from . import config

    group, _, rest = key.partition(".")
    schemas = {"task": config.TaskConfig, "model": config.ModelConfig, "trainer": config.TrainerConfig,
               "data": config.DataConfig}
    schema = schemas.get(group)
    if group == "method":
        schema = {"baseline": config.BaselineConfig, "bagging": config.BaggingConfig,
                  "freetickets": config.FreeTicketsConfig}.get(method or "", config.LotteryConfig)
    if schema is None or "." in rest:
        return False, None
    fields = {f.name: f for f in dataclasses.fields(schema)}
    if rest not in fields:
        return False, None
    f = fields[rest]
    if f.default is not dataclasses.MISSING:
        return True, _plain(f.default)
    if f.default_factory is not dataclasses.MISSING:
        return True, _plain(f.default_factory())
    return False, None


def _at_default(key: str, value: Any, method: str | None) -> bool:
    found, default = schema_default(key, method)
    return found and _same(value, default)


def _plain(value: Any) -> Any:
    value = getattr(value, "value", value)  # enums
    if isinstance(value, tuple):
        return list(value)
    return value


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or a == b and type(a) is type(b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    return a == b
