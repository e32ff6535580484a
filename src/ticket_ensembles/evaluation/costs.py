"""Training and inference cost of members and ensembles, relative to ONE dense model.

Reads only a member's ``run.json`` (never torch): every member records analytic FLOPs
(``flops``, see sparse/flops.py): sparse members (FreeTickets) at their layer densities,
every other member densely (RunContext.write_member), each against one dense finetune.
A member written before members recorded FLOPs is counted as one dense finetune (1, 1);
a member without ``run.json`` has an unknown cost (NaN). An ensemble costs the sum of its
members; an EDST member carries its run's cost divided by the run's tickets, so the
tickets of one run sum to that run.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from ..store import StoreError

COST_COLUMNS = ("train_flops_rel_dense", "inference_flops_rel_dense")


def member_cost(folder: str | Path) -> dict[str, float]:
    """``{"train_rel_dense", "inference_rel_dense"}`` of one member folder."""
    path = Path(folder) / "run.json"
    if not path.exists():
        return {"train_rel_dense": math.nan, "inference_rel_dense": math.nan}
    try:
        facts = json.loads(path.read_text())
        flops = facts.get("flops")
        if not flops:
            return {"train_rel_dense": 1.0, "inference_rel_dense": 1.0}
        return {"train_rel_dense": float(flops["train_member_rel_dense"]),
                "inference_rel_dense": float(flops["inference_rel_dense"])}
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
        raise StoreError(f"{path} is unreadable ({type(e).__name__}): re-train this member") from None


def ensemble_cost(folders: Sequence[str | Path]) -> dict[str, float]:
    """Sum of the members' costs: training FLOPs and inference FLOPs per example, in dense models."""
    costs = [member_cost(f) for f in folders]
    return {key: sum(c[key] for c in costs) for key in ("train_rel_dense", "inference_rel_dense")}
