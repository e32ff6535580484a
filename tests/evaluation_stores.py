"""Hand-built member stores for the evaluation tests (written with the store's own writer)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ticket_ensembles import store
from ticket_ensembles.maskio import save_mask


def write_member(store_dir: Path, method: str, seed: int, logits, labels, *, task: str = "mrpc",
                 model: str = "tiny", ticket: int | None = None, extra: dict | None = None,
                 mask: dict | None = None, run: dict | None = None) -> Path:
    """One complete member; ``extra`` maps further prediction files to (logits, labels); ``run`` is run.json."""
    final = store.member_dir(store_dir, task, model, method, seed, ticket)
    with store.building_member(final) as tmp:
        store.write_predictions(tmp, "predictions.npz", logits, labels)
        for filename, (more_logits, more_labels) in (extra or {}).items():
            store.write_predictions(tmp, filename, more_logits, more_labels)
        if mask is not None:
            save_mask(tmp / "mask.npz", mask)
        if run is not None:
            store.write_json(tmp / "run.json", run)
    return final


def noisy_logits(rng: np.random.Generator, labels: np.ndarray, noise: float, num_classes: int = 2) -> np.ndarray:
    """Logits that favour the true class by 1, plus Gaussian noise: members err independently."""
    logits = rng.normal(0.0, noise, (len(labels), num_classes))
    logits[np.arange(len(labels)), labels] += 1.0
    return logits


def build_methods(store_dir: Path, methods: dict[str, float], seeds, labels: np.ndarray, *, seed: int = 0,
                  task: str = "mrpc", model: str = "tiny", masked: tuple[str, ...] = ()) -> None:
    """Members of several methods; ``methods`` maps a method to its noise level; ``masked`` get mask.npz."""
    rng = np.random.default_rng(seed)
    for method, noise in methods.items():
        for s in seeds:
            mask = {"layer.weight": rng.random((8, 6)) > 0.3, "other.weight": rng.random(10) > 0.3}
            write_member(store_dir, method, s, noisy_logits(rng, labels, noise), labels, task=task, model=model,
                         mask=mask if method in masked else None)
