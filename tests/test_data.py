"""GLUE loading on the real files: official row counts, format quirks, bad input."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from ticket_ensembles.data import bagging_subset, load_glue_dir, load_glue_hub, load_raw_glue
from ticket_ensembles.errors import UserError
from ticket_ensembles.tasks import get_task

OFFICIAL = {"mrpc": (3668, 408), "stsb": (5749, 1500), "cola": (8551, 1043), "rte": (2490, 277),
            "sst2": (67349, 872), "wnli": (635, 71)}


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_real_glue_loads_with_official_row_counts(glue_dir, name):
    ds = load_glue_dir(get_task(name), glue_dir)
    assert (len(ds["train"]), len(ds["validation"])) == OFFICIAL[name]
    labels = np.asarray(ds["train"]["label"])
    if name == "stsb":
        assert labels.min() == 0.0 and labels.max() == 5.0
    else:
        assert set(np.unique(labels)) == {0, 1}


def test_label_balance_matches_published_statistics(glue_dir):
    counts = {n: np.bincount(load_glue_dir(get_task(n), glue_dir)["train"]["label"]) for n in ("mrpc", "cola", "rte")}
    assert counts["mrpc"].tolist() == [1194, 2474]
    assert counts["cola"].tolist() == [2528, 6023]
    assert counts["rte"].tolist() == [1249, 1241]  # entailment=0, not_entailment=1, as on the hub


def test_mrpc_bom_header_is_skipped_and_first_row_exact(glue_dir):
    ds = load_glue_dir(get_task("mrpc"), glue_dir)["train"]
    assert ds[0]["sentence1"].startswith("Amrozi accused his brother")
    assert ds[0]["label"] == 1
    assert not any("Quality" in s for s in ds["sentence1"][:3])


def test_cola_has_no_header_and_keeps_its_last_row_without_newline(glue_dir):
    ds = load_glue_dir(get_task("cola"), glue_dir)
    assert ds["train"][0]["sentence"] == "Our friends won't buy this analysis, let alone the next one we propose."
    last = (glue_dir / "CoLA" / "dev.tsv").read_text(encoding="utf-8").split("\n")[-1]
    assert last and ds["validation"][-1]["sentence"] == last.split("\t")[3]


def test_stray_quotes_are_text_not_quoting(glue_dir):
    ds = load_glue_dir(get_task("rte"), glue_dir)["train"]
    assert ds[50]["sentence1"].startswith('"Instead of action on crime')  # file line 52
    assert sum(s.startswith('"') for s in ds["sentence1"]) > 50
    assert len(ds) == 2490  # a quote-aware reader would merge rows across tabs and newlines


def test_qnli_dev_only_folder_reports_the_missing_train_file(glue_dir):
    with pytest.raises(UserError, match=r"QNLI/train.tsv not found.*standard layout"):
        load_glue_dir(get_task("qnli"), glue_dir)


def test_missing_glue_dir_names_path_and_layout(tmp_path):
    with pytest.raises(UserError, match=r"nowhere/MRPC/train.tsv not found.*glue_data/MRPC/train.tsv"):
        load_glue_dir(get_task("mrpc"), tmp_path / "nowhere")


def _copy_task(glue_dir: Path, tmp_path: Path, folder: str) -> Path:
    shutil.copytree(glue_dir / folder, tmp_path / folder)
    return tmp_path / folder


def test_malformed_row_reports_file_and_line(glue_dir, tmp_path):
    d = _copy_task(glue_dir, tmp_path, "RTE")
    lines = (d / "dev.tsv").read_text().split("\n")
    lines[5] = "5\tonly two columns"
    (d / "dev.tsv").write_text("\n".join(lines))
    with pytest.raises(UserError, match=r"RTE/dev.tsv:6: expected at least 4 tab-separated columns"):
        load_glue_dir(get_task("rte"), tmp_path)


@pytest.mark.parametrize("bad,match", [("7", r"MRPC/dev.tsv:3: label 7 is outside task 'mrpc'"),
                                       ("yes", r"MRPC/dev.tsv:3: label 'yes' is not an integer")])
def test_bad_label_is_a_clear_error(glue_dir, tmp_path, bad, match):
    d = _copy_task(glue_dir, tmp_path, "MRPC")
    lines = (d / "dev.tsv").read_text(encoding="utf-8-sig").split("\n")
    lines[2] = bad + lines[2][1:]
    (d / "dev.tsv").write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(UserError, match=match):
        load_glue_dir(get_task("mrpc"), tmp_path)


def test_hub_code_path_through_a_local_copy_of_the_hub_repo(glue_dir, tmp_path):
    """`load_dataset("nyu-mll/glue", task)` is the default; a local repo copy exercises the same call."""
    task = get_task("rte")
    local = load_glue_dir(task, glue_dir)
    repo = tmp_path / "glue_repo"
    (repo / "rte").mkdir(parents=True)
    for split, ds in local.items():
        ds.to_parquet(repo / "rte" / f"{split}-00000-of-00001.parquet")
    (repo / "README.md").write_text(
        "---\nconfigs:\n- config_name: rte\n  data_files:\n"
        "  - split: train\n    path: rte/train-*\n  - split: validation\n    path: rte/validation-*\n---\n")
    hub = load_raw_glue(task, None, str(repo))
    assert hub["validation"]["sentence1"] == local["validation"]["sentence1"]
    assert hub["train"]["label"] == local["train"]["label"]


def test_unreachable_hub_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match=r"could not load GLUE task 'mrpc'.*GLUE_DIR"):
        load_glue_hub(get_task("mrpc"), str(tmp_path / "no-such-repo"))


def test_bagging_subset_is_90_percent_without_replacement_and_seeded():
    a, b, c = bagging_subset(3668, 0.9, 0), bagging_subset(3668, 0.9, 0), bagging_subset(3668, 0.9, 1)
    assert len(a) == round(0.9 * 3668) and len(np.unique(a)) == len(a)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
