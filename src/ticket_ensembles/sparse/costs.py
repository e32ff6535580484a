"""Training and inference cost of members and ensembles, relative to ONE dense model.

Reads only a member's ``run.json``: sparse members (FreeTickets) carry analytic FLOPs
(``flops``, see sparse/flops.py); a member without them is a dense finetune and costs
exactly one dense model to train and to run. An ensemble costs the sum of its members
(an EDST member carries its run's cost divided by the run's tickets, so the tickets of
one run sum to that run). evaluate.py puts these beside accuracy, NLL and ECE.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from ..store import StoreError


def member_cost(folder: str | Path) -> dict[str, float]:
    """``{"train_rel_dense", "inference_rel_dense"}`` of one member folder."""
    path = Path(folder) / "run.json"
    try:
        facts = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise StoreError(f"{path} is unreadable ({type(e).__name__}): re-train this member") from None
    flops = facts.get("flops")
    if not flops:
        return {"train_rel_dense": 1.0, "inference_rel_dense": 1.0}
    return {"train_rel_dense": float(flops["train_member_rel_dense"]),
            "inference_rel_dense": float(flops["inference_rel_dense"])}


def ensemble_cost(folders: Sequence[str | Path]) -> dict[str, float]:
    """Sum of the members' costs: training FLOPs and inference FLOPs per example, in dense models."""
    costs = [member_cost(f) for f in folders]
    return {key: sum(c[key] for c in costs) for key in ("train_rel_dense", "inference_rel_dense")}
