"""base_lt / active_lt / random_lt end to end: real MiniLM cut to one layer, 32 real MRPC rows."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import ROOT, TINY, compose_cfg, entry_python, run_script
from ticket_ensembles import maskio, pruning, store
from ticket_ensembles.errors import UserError
from ticket_ensembles.methods.base import RunContext
from ticket_ensembles.models import load_model
from ticket_ensembles.run import train
from ticket_ensembles.tasks import get_task

# two steps per finetune; AdamW weight decay on, so decoupled decay must not revive pruned weights
LT = [*TINY, "data.max_train_samples=32", "trainer.weight_decay=0.01", "method.epochs_per_round=1"]
ONE_STEP = ["trainer.epochs=0.5", "method.epochs_per_round=0.5"]  # where the schedule is not under test


def lt_cfg(glue_dir, root, method, seed, *extra):
    return compose_cfg("train", [*LT, f"data.glue_dir={glue_dir}", f"paths.root_dir={root}",
                                 f"method={method}", f"seed={seed}", *extra])


def method_dir(root, method):
    return root / "store" / "mrpc" / "minilm_l6_L1" / method


class Spy:
    """Records every finetune a method runs (and, if asked, the weights it starts from)."""

    def __init__(self, monkeypatch, keep_weights=False):
        self.calls, self.written = [], {}
        finetune, write_member = RunContext.finetune, RunContext.write_member

        def spy_finetune(ctx, model, **kw):
            entry = pruning.snapshot(model) if keep_weights else None
            result = finetune(ctx, model, **kw)
            hooks = kw["hooks"]
            self.calls.append({"seed": ctx.seed, "desc": kw["desc"], "entry": entry, "masks": hooks.masks,
                               "coef": hooks.coefficients, "result": result})
            return result

        def spy_write(ctx, model, **kw):
            self.written[ctx.seed] = pruning.snapshot(model) if keep_weights else None
            return write_member(ctx, model, **kw)

        monkeypatch.setattr(RunContext, "finetune", spy_finetune)
        monkeypatch.setattr(RunContext, "write_member", spy_write)

    def of(self, seed):
        return [c for c in self.calls if c["seed"] == seed]


@pytest.fixture(scope="module")
def base_run(glue_dir, tmp_path_factory):
    """One base_lt member built with every finetune's starting weights recorded."""
    root = tmp_path_factory.mktemp("base_lt")
    with pytest.MonkeyPatch.context() as mp:
        spy = Spy(mp, keep_weights=True)
        cfg = lt_cfg(glue_dir, root, "base_lt", 0)
        [member] = train(cfg)
    return cfg, member, spy


def test_each_round_prunes_ten_percent_of_the_original_count(base_run):
    cfg, member, _ = base_run
    facts = json.loads((member / "run.json").read_text())
    total = facts["prunable_weights"]
    assert [r["pruned_weights"] for r in facts["rounds"]] == [round(f * total) for f in (0.1, 0.2, 0.3)]
    masks = maskio.load_mask(member / "mask.npz")
    assert sum(int((~m).sum()) for m in masks.values()) == round(0.3 * total)


def test_every_finetune_starts_from_theta_s_times_the_current_mask(base_run):
    cfg, _, spy = base_run
    theta = pruning.snapshot(load_model(cfg.model, get_task("mrpc"), 0))
    calls = spy.of(0)
    assert [c["desc"] for c in calls] == ["seed 0 round 1", "seed 0 round 2", "seed 0 round 3", "seed 0 final"]
    assert calls[0]["masks"] is None  # nothing pruned yet
    for call in calls:
        masks = call["masks"] or {}
        for name, value in theta.items():  # the task head too: every weight is rewound
            expected = value * masks[name] if name in masks else value
            assert torch.equal(call["entry"][name], expected), (call["desc"], name)


def test_masks_grow_only_and_cover_prunable_matrices_only(base_run):
    _, member, spy = base_run
    after1, after2, final = (c["masks"] for c in spy.of(0)[1:])
    prunable = set(pruning.select_prunable(load_model(base_run[0].model, get_task("mrpc"), 0)))
    assert set(final) == prunable
    for earlier, later in [(after1, after2), (after2, final)]:  # pruned weights never regrow
        assert all(torch.equal(earlier[n] & later[n], later[n]) for n in final)
    assert pruning.masks_equal(final, {k: torch.from_numpy(v) for k, v in maskio.load_mask(member / "mask.npz").items()})


def test_pruned_weights_are_exactly_zero_after_the_final_finetune(base_run):
    cfg, _, spy = base_run
    final_masks, weights = spy.of(0)[-1]["masks"], spy.written[0]
    theta = pruning.snapshot(load_model(cfg.model, get_task("mrpc"), 0))
    for name, mask in final_masks.items():
        assert torch.count_nonzero(weights[name][~mask]) == 0
        assert torch.count_nonzero(weights[name][mask]) == mask.sum()  # survivors were not pruned
    for name in set(theta) - set(final_masks):  # non-prunable tensors gain no zeros
        assert torch.count_nonzero(weights[name]) >= torch.count_nonzero(theta[name]) - 1, name


def test_lr_reaches_zero_at_the_end_of_every_round(base_run):
    _, member, spy = base_run
    for call in spy.of(0):
        trace = call["result"].lr_trace
        assert trace[-1] == 0.0 and all(a > b for a, b in zip(trace, trace[1:]))
    facts = json.loads((member / "run.json").read_text())
    assert [r["final_lr"] for r in facts["rounds"]] == [0.0] * 3 and facts["final_lr"] == 0.0


def test_ticket_member_is_a_valid_store_member(base_run):
    _, member, _ = base_run
    assert store.is_complete(member)
    assert list(store.list_members(member.parents[3], "mrpc", "minilm_l6_L1")["base_lt"]) == ["seed_0"]
    logits, labels = store.read_predictions(member / "predictions.npz")
    assert logits.shape == (len(labels), 2)
    metrics = json.loads((member / "metrics.json").read_text())
    assert metrics["sparsity"] == pytest.approx(0.3, abs=1e-6) and "accuracy" in metrics
    per_matrix = {k: v for k, v in metrics.items() if k.startswith("sparsity/")}
    assert len(per_matrix) == 7 and len(set(per_matrix.values())) > 1  # global ranking, not per layer
    assert not (member.parent / ".work" / "seed_0").exists()  # round masks go once complete


def test_random_lt_penalises_a_seeded_bernoulli_mask_in_the_rounds_only(glue_dir, tmp_path, monkeypatch):
    spy = Spy(monkeypatch)
    for seed in (0, 1):
        train(lt_cfg(glue_dir, tmp_path, "random_lt", seed, *ONE_STEP))
    coefs = []
    for seed in (0, 1):
        calls = spy.of(seed)
        assert calls[-1]["coef"] is None  # the final finetune has no penalty
        coef = calls[0]["coef"]
        assert all(c["coef"] is coef for c in calls[:3])
        zeros = sum(int((v == 0).sum()) for v in coef.values()) / pruning.count_total(coef)
        assert zeros == pytest.approx(0.3, abs=0.005)
        coefs.append(coef)
    assert not pruning.masks_equal(coefs[0], coefs[1])
    masks = [maskio.load_mask(method_dir(tmp_path, "random_lt") / f"seed_{s}" / "mask.npz") for s in (0, 1)]
    assert maskio.mask_iou(*masks) < 1.0


def test_active_lt_builds_missing_predecessors_and_averages_their_masks(glue_dir, tmp_path, monkeypatch):
    spy = Spy(monkeypatch)
    group = ["method.group_size=3", *ONE_STEP]  # chains 0-2, 3-5, ...
    [member] = train(lt_cfg(glue_dir, tmp_path, "active_lt", 5, *group))  # seeds 3 and 4 are missing
    mdir = member.parent
    assert sorted(store.list_members(tmp_path / "store", "mrpc", "minilm_l6_L1")["active_lt"]) == \
        ["seed_3", "seed_4", "seed_5"]  # the other group's seeds are not its chain
    assert [c["seed"] for c in spy.calls] == [3] * 4 + [4] * 4 + [5] * 4  # built in chain order
    m3, m4 = (maskio.load_mask(mdir / f"seed_{s}" / "mask.npz") for s in (3, 4))
    assert spy.of(3)[0]["coef"] is None  # the first seed of a chain has no penalty
    for name, coef in spy.of(4)[0]["coef"].items():
        assert np.array_equal(coef.numpy(), m3[name].astype(np.float32))
    for name, coef in spy.of(5)[0]["coef"].items():
        np.testing.assert_allclose(coef.numpy(), (m3[name].astype(np.float32) + m4[name]) / 2)
    assert json.loads((member / "run.json").read_text())["chain_predecessors"] == [3, 4]
    with pytest.raises(UserError, match=r"seed_3 \(seed 3, an earlier member"):
        train(lt_cfg(glue_dir, tmp_path, "active_lt", 4, *group, "method.l1_tau=0.5", "overwrite=true"))
    with pytest.raises(UserError, match=r"seed_3 \(seed 3, an earlier member"):  # nor another L1 mode
        train(lt_cfg(glue_dir, tmp_path, "active_lt", 4, *group, "method.l1_mode=decoupled", "overwrite=true"))


def test_an_interrupted_member_resumes_after_its_last_round(glue_dir, tmp_path, monkeypatch, base_run):
    finetune = RunContext.finetune

    def crash_in_round_2(ctx, model, **kw):
        if kw["desc"].endswith("round 2"):
            raise KeyboardInterrupt
        return finetune(ctx, model, **kw)

    monkeypatch.setattr(RunContext, "finetune", crash_in_round_2)
    with pytest.raises(KeyboardInterrupt):
        train(lt_cfg(glue_dir, tmp_path, "base_lt", 0))
    work = method_dir(tmp_path, "base_lt") / ".work" / "seed_0"
    assert sorted(p.name for p in work.glob("round_*.npz")) == ["round_1.npz"]
    costs = json.loads((work / "round_1.json").read_text())
    assert costs["wall_time_s"] > 0
    (work / "round_1.json").write_text(json.dumps(costs | {"wall_time_s": 1000.0}))  # a long first allocation
    monkeypatch.setattr(RunContext, "finetune", finetune)
    spy = Spy(monkeypatch)
    [member] = train(lt_cfg(glue_dir, tmp_path, "base_lt", 0))
    assert [c["desc"] for c in spy.calls] == ["seed 0 round 2", "seed 0 round 3", "seed 0 final"]
    facts = json.loads((member / "run.json").read_text())
    assert facts["resumed_after_round"] == 1
    assert 1000.0 < facts["wall_time_s"] < 1000.0 + 600  # wall time counts the first allocation too
    uninterrupted = base_run[1] / "mask.npz"  # same settings, same seed: the same ticket
    assert maskio.mask_iou(maskio.load_mask(member / "mask.npz"), maskio.load_mask(uninterrupted)) == 1.0


@pytest.mark.slow
def test_cli_multirun_builds_active_lt_chains_per_group(glue_dir, tmp_path):
    args = [*LT, f"data.glue_dir={glue_dir}", f"paths.root_dir={tmp_path}", "method=active_lt",
            "method.group_size=2", "seed=range(3)", *ONE_STEP]
    done = run_script("train.py", "-m", *args)
    assert done.returncode == 0, done.stderr[-3000:]
    mdir = method_dir(tmp_path, "active_lt")
    chains = [json.loads((mdir / f"seed_{s}" / "run.json").read_text())["chain_predecessors"] for s in range(3)]
    assert chains == [[], [0], []]  # seed 2 starts the second group's chain


@pytest.mark.parametrize("override, message", [
    ("method.prune_step=0.5", "must satisfy 0 < prune_step <= prune_ratio < 1"),
    ("method.group_size=0", "group_size=0 must be at least 1"),
    ("method.l1_tau=-1", "l1_tau=-1.0 must be a number >= 0"),
    ("method.l1_tau=20", "far above l1_mode=loss's scale"),
    ("method.l1_mode=decoupled method.l1_tau=1e-4", "moves no mask: use a tau of order 1"),
    ("method.l1_mode=decoupled method.l1_tau=5 trainer.lr=1e-2", "keep tau x lr <= 0.01"),
])
def test_bad_pruning_settings_stop_before_anything_loads(glue_dir, tmp_path, override, message):
    with pytest.raises(UserError, match=message):
        train(lt_cfg(glue_dir, tmp_path, "active_lt", 0, *override.split()))
    assert not (tmp_path / "store").exists()


@pytest.mark.slow
def test_parallel_active_lt_runs_build_a_shared_predecessor_once(glue_dir, tmp_path):
    """Seeds 1 and 2 start together; both need seed 0: one builds it, the other waits for it."""
    args = [*LT, *ONE_STEP, f"data.glue_dir={glue_dir}", f"paths.root_dir={tmp_path}", "method=active_lt",
            "trainer.num_threads=1"]
    procs = [subprocess.Popen([entry_python(), str(ROOT / "train.py"), *args, f"seed={s}"], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for s in (1, 2)]
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    text = "\n".join(outputs)
    assert text.count("needs seed 0 of its chain first: building it now") == 1
    assert "needs seed 1 of its chain first" not in text  # seed 1's own run built it; seed 2 waited
    mdir = method_dir(tmp_path, "active_lt")
    assert json.loads((mdir / "seed_2" / "run.json").read_text())["chain_predecessors"] == [0, 1]
    assert all(store.is_complete(mdir / f"seed_{s}") for s in (0, 1, 2))


def test_decoupled_shrink_runs_after_each_pruning_step_with_that_steps_lr(glue_dir, tmp_path, monkeypatch):
    from ticket_ensembles.masking import SoftThreshold

    spy, lrs, shrink = Spy(monkeypatch), [], SoftThreshold.__call__
    monkeypatch.setattr(SoftThreshold, "__call__", lambda self, lr: (lrs.append((self.tau, lr)), shrink(self, lr)))
    [member] = train(lt_cfg(glue_dir, tmp_path, "random_lt", 0, "method.l1_mode=decoupled"))
    calls = spy.of(0)
    expected = []
    for call in calls[:3]:  # the lr each step used: the peak, then the schedule after each earlier step
        expected += [(4.0, lr) for lr in [2e-5, *call["result"].lr_trace[:-1]]]
    assert lrs == expected and len(lrs) == 6 and lrs[1][1] < lrs[0][1]  # decays with the lr; none in the final
    rounds = json.loads((member / "run.json").read_text())["rounds"]  # how far each round's shrink reached
    assert [r["l1_push"] for r in rounds] == pytest.approx([4.0 * (a[1] + b[1]) for a, b in zip(lrs[::2], lrs[1::2])])
    assert all(0.0 <= r["l1_zeroed"] < 0.05 for r in rounds)  # a gentle push: no warning (the next test)
    config = (member / "config.yaml").read_text()
    assert "l1_mode: decoupled" in config and "l1_tau: 4.0" in config  # null became the mode's default


def test_a_decoupled_round_that_empties_the_penalised_weights_says_so_and_which_tau_would_not(glue_dir, tmp_path,
                                                                                             caplog, monkeypatch):
    spy = Spy(monkeypatch)
    with caplog.at_level("WARNING", logger="ticket_ensembles.methods.lottery"):
        # 8 steps in one round at tau x lr = 1e-2: a push of ~4.5e-2, above most |w| of the pretrained matrices
        [member] = train(lt_cfg(glue_dir, tmp_path, "random_lt", 0, "method.l1_mode=decoupled", "method.l1_tau=5",
                                "trainer.lr=2e-3", "method.epochs_per_round=4", "method.prune_step=0.3"))
    [r] = json.loads((member / "run.json").read_text())["rounds"]
    assert r["l1_push"] == pytest.approx(5 * sum([2e-3, *spy.calls[0]["result"].lr_trace[:-1]]))
    assert r["l1_zeroed"] > 0.5
    [warning] = [rec.getMessage() for rec in caplog.records if rec.levelname == "WARNING"]
    assert warning.startswith("seed 0 round 1: ") and f"left {100 * r['l1_zeroed']:.0f} % " in warning
    assert f"method.l1_tau={0.012 / (r['l1_push'] / 5):.2g} gives" in warning  # the push the default aims at
    from ticket_ensembles.masking import MaskedTraining
    with MaskedTraining({}, None) as hooks:  # no penalty (base_lt, the final finetune): nothing to record
        assert hooks.l1_facts() == {}


def test_decoupled_moves_the_mask_where_loss_at_the_same_tau_barely_does(glue_dir, tmp_path):
    fast = ["trainer.lr=5e-4"]  # 2 steps per round: a push near the pruning threshold needs a high lr
    base, loss, decoupled = (
        maskio.load_mask(train(lt_cfg(glue_dir, tmp_path / name, method, 0, *fast, *extra))[0] / "mask.npz")
        for name, method, extra in [("b", "base_lt", []), ("l", "random_lt", ["method.l1_tau=10"]),
                                    ("d", "random_lt", ["method.l1_tau=10", "method.l1_mode=decoupled"])])
    moved_by_loss, moved_by_decoupled = 1 - maskio.mask_iou(base, loss), 1 - maskio.mask_iou(base, decoupled)
    assert moved_by_loss < 0.02 and moved_by_decoupled > 5 * moved_by_loss, (moved_by_loss, moved_by_decoupled)


def test_l1_mode_and_resolved_tau_are_in_the_resume_fingerprint(glue_dir, tmp_path):
    from ticket_ensembles.methods.lottery import LotteryTicket
    from ticket_ensembles.ticket_work import fingerprint

    def digest(*extra):
        cfg = lt_cfg(glue_dir, tmp_path, "random_lt", 0, *extra)
        LotteryTicket(cfg)  # resolves l1_tau=null to the mode's default
        return fingerprint(cfg)

    assert digest() == digest("method.l1_tau=1e-4") != digest("method.l1_mode=decoupled")
    assert digest("method.l1_mode=decoupled") == digest("method.l1_mode=decoupled", "method.l1_tau=4")
    assert digest("method.l1_mode=decoupled", "method.l1_tau=8") != digest("method.l1_mode=decoupled")


def test_make_mechanism_sweeps_compose_and_the_report_comes_last():
    from test_sweeps import dry_run, sweep_jobs

    commands = dry_run("mechanism")
    assert [c[1] for c in commands[-1:]] == ["-m"] and commands[-1][2] == "ticket_ensembles.evaluation.mechanism"
    jobs = []
    for cmd in [c for c in commands[:-1] if Path(c[1]).name != "evaluate.py"]:  # evaluate: stores present
        overrides = [o for o in cmd[3:] if o != "experiment=mechanism"]
        assert Path(cmd[1]).name == "train.py" and "experiment=mechanism" in cmd
        jobs += sweep_jobs("mechanism", *overrides)
    settings = {(dict(o.split("=", 1) for o in job).get("method.l1_mode", "loss"),
                 dict(o.split("=", 1) for o in job).get("method.l1_tau")) for job in jobs}
    assert {("decoupled", None), ("loss", None), ("decoupled", "2"), ("decoupled", "8")} <= settings
    for job in jobs[:3] + jobs[-3:]:
        cfg = compose_cfg("train", ["experiment=mechanism", *job])
        assert cfg.trainer.precision == "fp32" and cfg.model.num_layers == 2 and cfg.method.group_size == 5


def test_mechanism_report_on_a_hand_built_store(tmp_path):
    from ticket_ensembles.evaluation import mechanism

    full = {"w": np.ones((4, 5), bool)}
    for final, setting, method, seed, pruned in [
            ("0.02", "loss_tau0.0001", "base_lt", 0, [0, 1]), ("0.02", "loss_tau0.0001", "base_lt", 1, [0, 1]),
            ("1.0", "decoupled_tau4.0", "random_lt", 0, [0, 1]), ("0.02", "decoupled_tau4.0", "random_lt", 1, [2, 3])]:
        folder = tmp_path / "store" / setting / "mrpc" / "m" / method / f"seed_{seed}"
        folder.mkdir(parents=True)
        mask = {"w": full["w"].copy()}
        mask["w"].flat[pruned] = False
        maskio.save_mask(folder / "mask.npz", mask)
        (folder / "config.yaml").write_text(
            f"trainer: {{epochs: {final}, lr: 0.0002, lr_schedule: linear, warmup_ratio: 0.0}}\n")
        (folder / "run.json").write_text(json.dumps({"rounds": [{"steps": 29}]}))
        (folder / "metrics.json").write_text(json.dumps({"accuracy": 70.0 + seed}))
        (folder / "COMPLETE").write_text("")
    # the report stage of mechanism.sh shows base_lt in the other settings' stores by a link: not counted twice
    (tmp_path / "store" / "decoupled_tau4.0" / "mrpc" / "m" / "base_lt").symlink_to(
        tmp_path / "store" / "loss_tau0.0001" / "mrpc" / "m" / "base_lt")
    mechanism.main([str(tmp_path / "store"), str(tmp_path / "out")])
    ious = pd.read_csv(tmp_path / "out" / "iou_vs_tau.csv").set_index("method")
    assert ious.loc["base_lt", "mean_iou"] == 1.0
    assert ious.loc["random_lt", "mean_iou"] == pytest.approx(16 / 20)  # 18 kept each, 16 shared, 20 in the union
    assert ious.loc["random_lt", "push_per_round"] == pytest.approx(4.0 * 2e-4 * 30 / 2)
    accuracy = pd.read_csv(tmp_path / "out" / "accuracy.csv")
    assert accuracy[accuracy.final_epochs == 1.0].accuracy_mean.tolist() == [70.0]  # seed 0's stage only
    assert len(accuracy[accuracy.method == "base_lt"]) == 1
    assert (tmp_path / "out" / "figure4_decoupled_tau4.png").stat().st_size > 0
