"""results/table1_minilm/: the committed member records regenerate every committed report but the mask IoU."""
from __future__ import annotations

import json

import pytest

from conftest import ROOT, run_script

STUDY = ROOT / "results" / "table1_minilm"
TASKS = sorted(p.parent.name for p in STUDY.glob("*/study.json"))
# made from the masks, which are not committed (figure4_*.png) or drawn by matplotlib (*.png)
NOT_FROM_RECORDS = ("figure", "sparsity")
COMPARED = ("table1.md", "table2.md", "summary.csv", "combinations.csv", "diversity.csv", "groups.csv")


def test_the_study_has_committed_reports():
    assert TASKS, f"no report under {STUDY}: run make table1_minilm (or its report stage) and commit it"


@pytest.mark.parametrize("task", TASKS)
def test_evaluate_on_the_committed_records_regenerates_the_committed_reports(task, tmp_path):
    study = json.loads((STUDY / task / "study.json").read_text())
    res = run_script("evaluate.py", *study["evaluate_overrides"], f"paths.store_dir={STUDY / 'store'}",
                     f"ensemble.report_dir={tmp_path / 'report'}", "ensemble.iou_members=0")
    assert res.returncode == 0, res.stderr[-2000:]
    committed = STUDY / task
    for name in COMPARED:
        if not (committed / name).is_file():
            continue
        ours, theirs = (tmp_path / "report" / name).read_text(), (committed / name).read_text()
        if name in ("table2.md", "diversity.csv"):  # their mask-IoU cells need the masks
            ours, theirs = _without_iou(ours), _without_iou(theirs)
        assert ours == theirs, f"{name} differs from the committed one"
    members = (tmp_path / "report" / "members.csv").read_text().splitlines()
    assert members == (committed / "members.csv").read_text().splitlines()


def _without_iou(text: str) -> str:
    """The text without its mask-IoU column (a Markdown table's or a CSV's), which needs the masks."""
    out, drop = [], None
    for line in text.splitlines():
        sep = "|" if line.startswith("|") else ","
        cells = line.split(sep)
        if any("iou" in c.lower() for c in cells):
            drop = [i for i, c in enumerate(cells) if "iou" in c.lower()]
        elif not line.strip() or (sep == "|" and not line.startswith("|")):
            drop = None if sep == "|" else drop
        if drop and len(cells) > max(drop):
            cells = [c for i, c in enumerate(cells) if i not in drop]
        out.append(sep.join(cells))
    return "\n".join(out)
