"""No setting is silently ignored: a composed config holds only keys its schemas know.

Struct mode refuses an unknown key in a plain override (``trainer.lrr=1e-5``), but Hydra adds an
appended one (``+trainer.lrr=1e-5``, ``++trainer.lrr=...``) with ``force_add``, past struct mode by
design: the run would train at ``trainer.lr`` and store the stray key in config.yaml. So the
entry points check the composed config against the schemas (config.py): before a run or a sweep
starts (the ``known_keys`` Hydra callback in conf/train.yaml and conf/evaluate.yaml), and again in
each job, which is the only place a swept ``+key=a,b`` arrives. Free-form settings (a ``dict``
in a schema, e.g. ``method.refinement_trainer``) take any key: that is what ``+`` is still for.
"""
from __future__ import annotations

import dataclasses
import difflib

from omegaconf import DictConfig, OmegaConf

from .errors import UserError

HYDRA = "hydra"  # Hydra's own settings (launcher, sweeper, ...) are validated by Hydra and its plugins


def unknown_keys(cfg: DictConfig) -> list[str]:
    """Keys of ``cfg`` that the schema of the node holding them does not define (dotted, in order)."""
    out: list[str] = []

    def walk(node: DictConfig, prefix: str) -> None:
        schema = OmegaConf.get_type(node)
        fields = {f.name for f in dataclasses.fields(schema)} if dataclasses.is_dataclass(schema) else None
        for key in node.keys():
            name = f"{prefix}{key}"
            if not prefix and key == HYDRA:
                continue
            child = node._get_node(key)
            if fields is not None and key not in fields:
                out.extend(_leaves(child, name))
                continue
            if isinstance(child, DictConfig) and not (child._is_none() or child._is_missing()
                                                      or child._is_interpolation()):
                walk(child, name + ".")

    walk(cfg, "")
    return out


def _leaves(node, name: str) -> list[str]:
    """``trainer`` appended as ``+trainer.lr=1e-3`` -> ["trainer.lr"]: the keys as the user typed them."""
    if isinstance(node, DictConfig) and not (node._is_none() or node._is_missing()) and len(node):
        return [leaf for key in node.keys() for leaf in _leaves(node._get_node(key), f"{name}.{key}")]
    return [name]


def unknown_keys_message(cfg: DictConfig, keys: list[str]) -> str:
    """One sentence: which keys, the nearest real key of each, and what to do."""
    shown = []
    for key in keys:
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(cfg, parent, default=None) if parent else cfg
        schema = OmegaConf.get_type(node) if isinstance(node, DictConfig) else None
        names = [f.name for f in dataclasses.fields(schema)] if dataclasses.is_dataclass(schema) else []
        near = difflib.get_close_matches(leaf, names, n=1)
        shown.append(f"{key} (did you mean {parent + '.' if parent else ''}{near[0]}?)" if near else key)
    what, it = ("setting", "it") if len(keys) == 1 else ("settings", "them")
    return (f"unknown {what} {', '.join(shown)}: no schema defines {it}, so the run would ignore {it}; remove "
            f"{it}, or set an existing key without '+' (a '+' adds only to free-form settings such as "
            "method.refinement_trainer)")


def check_known_keys(cfg: DictConfig) -> None:
    """Raise a UserError if ``cfg`` holds a key its schemas do not define."""
    keys = unknown_keys(cfg)
    if keys:
        raise UserError(unknown_keys_message(cfg, keys))
