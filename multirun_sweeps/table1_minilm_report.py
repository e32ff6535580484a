"""make table1_minilm's own bookkeeping and report (multirun_sweeps/table1_minilm.sh); not part of the package.

restore  copy the member records committed under results/table1_minilm/store/ into the working
         store, so a rerun on a fresh machine trains only what is missing (an active_lt chain only
         when all its seeds are committed: its later seeds need the earlier seeds' masks)
report   evaluate.py over the complete seeds 0..n-1 of every method with at least 3 of them (2 while
         fewer than two methods have 3), n the fewest they have, so every row has the same seeds (an
         --optional row -- TABLE1_MINILM_MATCHED's, TABLE1_MINILM_P20's -- joins only once it has those n seeds); the
         tables' k is 5 from 7 seeds on, n - 2 below; then per-round ticket scores
         (rounds.csv, sparsity.png), the study's wall time and machine (study.json), and the member
         records copied under <out>/store/ so that evaluate.py regenerates the reports from the
         repository alone (tests/test_table1_minilm.py checks it)
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

MODEL = "minilm_l6"
RECORD_FILES = ("metrics.json", "run.json", "config.yaml", "COMPLETE")  # plus predictions*.npz

# the floor on every member (MRPC dev accuracy; STS-B dev Pearson): members below it are listed
FLOOR = {"mrpc": 72.0, "stsb": 80.0}


def member_dirs(store: Path, task: str, method: str) -> dict[int, Path]:
    root = store / task / MODEL / method
    out = {}
    if root.is_dir():
        for p in root.glob("seed_*"):
            if p.is_dir() and (p / "COMPLETE").is_file() and p.name[5:].isdigit():
                out[int(p.name[5:])] = p
    return out


def copy_record(src: Path, dest: Path) -> None:
    """A member's records (no weights, no mask), written to a temporary folder and renamed into place."""
    tmp = dest.with_name(f".{dest.name}.partial-copy")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in [*sorted(src.glob("predictions*.npz")), *sorted(src.glob("ood_*.npz"))]:
        shutil.copy2(f, tmp / f.name)
    for name in RECORD_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, tmp / name)
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)


def restore(args) -> None:
    committed, store = Path(args.committed), Path(args.store)
    root = committed / args.task / MODEL
    if not root.is_dir():
        print(f"restore: nothing committed under {root}")
        return
    copied = 0
    for mdir in sorted(p for p in root.iterdir() if p.is_dir()):
        members = member_dirs(committed, args.task, mdir.name)
        if mdir.name == "active_lt" and set(range(args.seeds)) - set(members):
            print(f"restore: active_lt has {len(members)} of {args.seeds} seeds committed: its chain is built again")
            continue
        for seed, src in sorted(members.items()):
            dest = store / args.task / MODEL / mdir.name / src.name
            if not (dest / "COMPLETE").is_file():
                copy_record(src, dest)
                copied += 1
    print(f"restore: {copied} committed member(s) copied into {store / args.task / MODEL}")


def complete_prefix(members: dict[int, Path]) -> int:
    n = 0
    while n in members:
        n += 1
    return n


def round_rows(store: Path, task: str, methods: list[str], seeds: int) -> pd.DataFrame:
    """One row per (method, seed, stage): the dev scores along the way and of the member."""
    rows = []
    for method in methods:
        for seed, folder in sorted(member_dirs(store, task, method).items()):
            if seed >= seeds:
                continue
            run = json.loads((folder / "run.json").read_text())
            metrics = json.loads((folder / "metrics.json").read_text())
            for r in run.get("rounds", []):
                dev = r.get("dev") or {}
                rows.append({"method": method, "seed": seed, "stage": f"round {r['round']}",
                             "sparsity": round(100 * r.get("sparsity_trained", 0.0), 1), "steps": r.get("steps"),
                             **{k: v for k, v in dev.items() if "/" not in k}})
            final = {k: v for k, v in metrics.items() if not k.startswith("sparsity")}
            rows.append({"method": method, "seed": seed, "stage": "member",
                         "sparsity": round(100 * metrics.get("sparsity", 0.0), 1),
                         "steps": run.get("optimizer_steps"), **final})
    return pd.DataFrame(rows)


def sparsity_figure(rows: pd.DataFrame, metric: str, path: Path, title: str) -> None:
    """Single-ticket dev score against sparsity (mean ± std over seeds), BASELINE as a band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    base = rows[(rows.method == "baseline") & (rows.stage == "member")][metric]
    if len(base):
        m, s = base.mean(), base.std(ddof=1) if len(base) > 1 else 0.0
        ax.axhspan(m - s, m + s, color="0.85", label=f"BASELINE member (n={len(base)}), mean ± std")
        ax.axhline(m, color="0.4", lw=1)
    tickets = rows[rows.method.str.contains("_lt")]
    for i, (method, g) in enumerate(sorted(tickets.groupby("method"), key=lambda kv: kv[0])):
        stats = g.groupby("sparsity")[metric].agg(["mean", "std", "count"]).reset_index()
        ax.errorbar(stats.sparsity + 0.4 * (i - 1.5), stats["mean"], yerr=stats["std"].fillna(0), marker="o",
                    capsize=3, label=f"{method.upper().replace('_', '-')} (n={int(stats['count'].max())})")
    ends = sorted({f"{v:g}" for v in tickets[tickets.stage == "member"].sparsity}, key=float)  # the members'
    ax.set_xlabel(f"ticket sparsity (%): its pruning rounds, then the member at {' or '.join(ends)} %")
    ax.set_ylabel(f"dev {metric}" + (" (%)" if metric in ("accuracy", "f1") else " (×100)"))
    ax.set_title(title, fontsize=10)
    ax.set_xticks([0, 10, 20, 30])
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(args, extra: list[str]) -> None:
    store, out = Path(args.store), Path(args.out)
    required = args.methods.split(",")
    optional = [m for m in (args.optional.split(",") if args.optional else []) if m not in required]
    methods = required + optional
    present = {m: member_dirs(store, args.task, m) for m in methods}
    ready = {m: min(complete_prefix(d), args.seeds) for m, d in present.items()}
    # the records of every complete member, even before there is a table: evaluate.py regenerates the
    # report from the repository alone, and a rerun on a fresh machine (restore) trains only what is missing
    committed = out / "store"
    for m in methods:
        for seed, folder in present[m].items():
            if seed < args.seeds:
                copy_record(folder, committed / args.task / MODEL / m / f"seed_{seed}")
    # every row on the same seeds 0..n-1: a partial report takes every method with at least 3 complete
    # seeds (2 while fewer than two methods have 3) on the seeds they all have -- dense and ticket rows
    # side by side rather than the most seeds of two rows; once the study is complete, all of them
    # an optional row (TABLE1_MINILM_MATCHED, TABLE1_MINILM_P20) joins once it has those seeds too; it never shortens the others
    for floor in (3, 2):
        counts = [ready[m] for m in required if ready[m] >= floor]
        if len(counts) >= 2:
            break
    else:
        print(f"report: fewer than two methods have two complete seeds under {store / args.task / MODEL} yet; "
              f"the records of the complete members are in {committed}/")
        return
    n = min(counts)
    included = [m for m in methods if ready[m] >= n]
    print("report: complete seeds per method: " + ", ".join(f"{m} {ready[m]}" for m in methods)
          + f"; evaluating seeds 0-{n - 1} of " + ", ".join(included))
    report_dir = out / args.task
    settings = [f"task={args.task}", f"model={MODEL}", f"ensemble.methods=[{','.join(included)}]",
                f"ensemble.groups=[[{','.join(map(str, range(n)))}]]", f"ensemble.max_size={min(5, n)}",
                # the tables' k: the paper's 5 from 7 seeds on (8 seeds: 56 subsets); a partial report of
                # fewer seeds takes n - 2 (5 seeds: k = 3, 10 subsets), so its t-tests have subsets to test
                f"ensemble.table_size={min(5, max(2, n - 2))}",
                f"ensemble.iou_members={min(5, n)}", f"ensemble.min_score={FLOOR[args.task]}",
                "experiment_name=table1_minilm", *extra]
    cmd = [args.python, "evaluate.py", *settings, f"paths.store_dir={store}", f"ensemble.report_dir={report_dir}"]
    print("+ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    rows = round_rows(store, args.task, methods, args.seeds)
    rows.to_csv(report_dir / "rounds.csv", index=False, float_format="%.4f")
    metric = "accuracy" if args.task != "stsb" else "pearson"
    if metric in rows:
        sparsity_figure(rows, metric, report_dir / "sparsity.png",
                        f"{args.task.upper()}, all-MiniLM-L6-v2: a ticket's dev {metric} along IMP")
    facts = [json.loads((d / "run.json").read_text()) for m in methods for d in present[m].values()]
    study = {"evaluate_overrides": settings, "members": len(facts), "members_evaluated": n * len(included), "seeds_evaluated": n,
             "methods_evaluated": included, "complete_seeds": ready,
             "member_wall_time_s_sum": round(sum(f.get("wall_time_s", 0.0) for f in facts), 1),
             "optimizer_steps_sum": int(sum(f.get("optimizer_steps", 0) for f in facts)),
             "devices": sorted({f"{f.get('device_name', '?')} ({f.get('cpu_capability', '?')})" for f in facts}),
             "precisions": sorted({f.get("precision", "?") for f in facts})}
    (report_dir / "study.json").write_text(json.dumps(study, indent=2, sort_keys=True) + "\n")
    print(f"report: {report_dir}/ (table1.md, rounds.csv, sparsity.png, study.json); records in {committed}/")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("restore")
    r.add_argument("--committed", required=True)
    r.add_argument("--store", required=True)
    r.add_argument("--task", required=True)
    r.add_argument("--seeds", type=int, required=True)
    q = sub.add_parser("report")
    q.add_argument("--store", required=True)
    q.add_argument("--task", required=True)
    q.add_argument("--seeds", type=int, required=True)
    q.add_argument("--methods", required=True)
    q.add_argument("--optional", default="", help="rows evaluated only once they have the required rows' seeds")
    q.add_argument("--out", required=True)
    q.add_argument("--python", default=sys.executable)
    args, extra = p.parse_known_args(argv)
    if args.command == "restore":
        restore(args)
    else:
        report(args, extra)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
