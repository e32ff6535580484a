"""The papers' published figures, printed beside ours when the setting matches (METHODS.md)."""
from __future__ import annotations

# (single, ens., diff.) at k = 5, in percent: accuracy for MRPC, Pearson for STS-B.
_TABLE1 = {
    "mrpc": {"baseline": (83.48, 84.34, 0.86), "bagging": (82.87, 84.19, 1.32), "base_lt": (83.84, 84.98, 1.14),
             "active_lt": (83.22, 84.60, 1.38), "random_lt": (83.53, 85.05, 1.52)},
    "stsb": {"baseline": (88.35, 89.04, 0.69), "bagging": (88.17, 88.84, 0.68), "base_lt": (88.37, 89.16, 0.79),
             "active_lt": (88.39, 89.32, 0.94), "random_lt": (88.49, 89.35, 0.86)},
    # footnote: SST-2 at 20% pruning, two methods only
    "sst2": {"baseline": (91.38, 91.93, 0.55), "random_lt": (91.09, 91.90, 0.81)},
}
_TABLE3 = {
    "mrpc": {"baseline": (87.77, 88.47, 0.70), "bagging": (87.64, 88.12, 0.49), "base_lt": (87.72, 88.25, 0.53),
             "active_lt": (87.39, 88.51, 1.12), "random_lt": (87.86, 89.26, 1.40)},
    "stsb": {"baseline": (89.52, 90.00, 0.48), "bagging": (89.34, 89.91, 0.54), "base_lt": (89.71, 90.07, 0.36),
             "active_lt": (88.46, 89.50, 1.04), "random_lt": (88.41, 89.39, 0.98)},
}
# Table 2, MRPC, bert-base-uncased: Q, ratio errors, negative double fault, disagreement, correlation.
TABLE2_MRPC = {"baseline": (0.96, 0.72, -0.12, 0.09, 0.69), "base_lt": (0.93, 1.00, -0.11, 0.10, 0.62),
               "active_lt": (0.94, 0.94, -0.11, 0.11, 0.62), "random_lt": (0.94, 0.94, -0.11, 0.10, 0.63)}

PAPER_METHOD_ORDER = ("baseline", "bagging", "base_lt", "active_lt", "random_lt")


def paper_table1(task: str, model: str) -> tuple[str, dict[str, tuple[float, float, float]]] | None:
    """(caption, {method: (single, ens., diff.)}) of the matching published table, else None."""
    if model == "bert_base_uncased" and task in _TABLE1:
        note = " (SST-2 footnote, 20% pruning)" if task == "sst2" else ""
        return f"Kobayashi et al. 2022, Table 1{note}", _TABLE1[task]
    if model == "roberta_base" and task in _TABLE3:
        return "Kobayashi et al. 2022, Table 3", _TABLE3[task]
    return None


def paper_table2(task: str, model: str) -> dict[str, tuple[float, ...]] | None:
    return TABLE2_MRPC if (task, model) == ("mrpc", "bert_base_uncased") else None


def display_name(method: str) -> str:
    """The paper's spelling: base_lt -> BASE-LT."""
    return method.upper().replace("_", "-")


def method_order(methods: list[str]) -> list[str]:
    """The paper's row order first, then any other method alphabetically."""
    known = [m for m in PAPER_METHOD_ORDER if m in methods]
    return known + sorted(m for m in methods if m not in PAPER_METHOD_ORDER)
