"""The one training loop every method uses, and batched prediction.

Methods change what is trained (subset, mask, penalty, sparse schedule) through ``hooks``,
never by copying this loop. Hooks may define:
  wrap_optimizer(optimizer) -> object with .step()   e.g. mask enforcement, prune-and-regrow
  extra_loss(model, lr_scale) -> Tensor | None        e.g. an L1 penalty decayed like the lr
  after_step(model, step) -> None
"""
from __future__ import annotations

import functools
import logging
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .data import example_lengths
from .errors import UserError

log = logging.getLogger(__name__)


@dataclass
class FinetuneResult:
    steps: int
    wall_time: float
    final_lr: float
    mean_loss: float
    lr_trace: list[float] = field(default_factory=list)  # lr after every scheduler step


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"trainer.device={name!r} is not a device: use auto, cpu, cuda or cuda:<n>") from None
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise UserError(f"trainer.device={name!r} but this machine has {torch.cuda.device_count()} CUDA GPU(s): "
                        "use trainer.device=auto or cpu")
    return device


def same_device(a: torch.device, b: torch.device) -> bool:
    """``cuda`` and ``cuda:0`` are the same device here (an unindexed device is the current one)."""
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


def to_device(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model.to(device)`` unless every parameter and buffer is there already (a move of a model that is in
    place is no move: hooks and optimizer state keep their tensors on any backend)."""
    tensors = [*model.parameters(), *model.buffers()]
    if any(not same_device(t.device, device) for t in tensors):
        model.to(device)
    return model


@functools.cache
def native_bf16(device_type: str) -> bool:
    """Does this hardware run bf16 matmuls natively? Asked once per process."""
    if device_type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device_type == "cpu":  # AVX-512 bf16 / AMX; on plain AVX2 bf16 is emulated, ~40x slower than fp32
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


@functools.cache
def native_fp16(device_type: str) -> bool:
    """Does this hardware run fp16 matmuls natively? Every CUDA GPU the suite runs on does (V100 on);
    a CPU only with AMX-FP16 / AVX512-FP16."""
    if device_type == "cuda":
        return True
    if device_type == "cpu":
        return bool(torch.ops.mkldnn._is_mkldnn_fp16_supported())
    return False


_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_warned_emulated: set[str] = set()


def resolve_precision(device: torch.device, precision) -> str:
    """The precision actually used. ``auto``: bf16 where the hardware does bf16 natively, else fp16 on a
    CUDA GPU (V100, T4: fp16 with loss scaling), else fp32."""
    name = getattr(precision, "value", precision)
    if name == "auto":
        if native_bf16(device.type):
            return "bf16"
        return "fp16" if device.type == "cuda" else "fp32"
    native = {"bf16": native_bf16, "fp16": native_fp16}.get(name)
    if native is not None and not native(device.type) and name not in _warned_emulated:
        _warned_emulated.add(name)
        log.warning("trainer.precision=%s on a %s without native %s: it is emulated and much slower than "
                    "fp32; use trainer.precision=auto or fp32", name, device.type.upper(), name)
    return name


def run_precision(cfg) -> str:
    """The precision a run with trainer config ``cfg`` uses on this machine (run.json, the log)."""
    return resolve_precision(resolve_device(cfg.device), cfg.precision)


_noted_cpu_tf32 = False


def apply_tf32(device: torch.device, cfg) -> bool:
    """Set TF32 for fp32 matmuls and convolutions on a CUDA device as ``trainer.tf32`` says (default off:
    true fp32, the papers' precision; torch's own default leaves cuDNN convolutions in TF32). Returns
    whether TF32 is on for this device; a CPU has none."""
    global _noted_cpu_tf32
    on = bool(getattr(cfg, "tf32", False))
    if device.type != "cuda":
        if on and not _noted_cpu_tf32:
            _noted_cpu_tf32 = True
            log.info("trainer.tf32=true has no effect on a %s (TF32 is a CUDA GPU's, Ampere and later)",
                     device.type.upper())
        return False
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on
    torch.set_float32_matmul_precision("high" if on else "highest")
    return on


@functools.cache
def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), else the platform's word for it."""
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_facts(cfg) -> dict:
    """Where a run with trainer config ``cfg`` computes, for run.json: device, its name, capability, TF32."""
    device = resolve_device(cfg.device)
    tf32 = apply_tf32(device, cfg)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return {"device": f"cuda:{index}", "device_name": torch.cuda.get_device_name(index),
                "capability": ".".join(map(str, torch.cuda.get_device_capability(index))), "tf32": tf32}
    return {"device": device.type, "device_name": cpu_name() if device.type == "cpu" else device.type,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "tf32": tf32}


def autocast(device: torch.device, precision: str):
    """bf16 or fp16 autocast on CPU or GPU; fp32 runs without autocast. ``precision`` may be auto."""
    dtype = _AUTOCAST_DTYPES.get(resolve_precision(device, precision))
    return torch.autocast(device_type=device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


def usable_cpus() -> int:
    """The CPUs this process may run on (a SLURM job's allocation, not the node's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def loader_settings(train_ds, cfg, device: torch.device) -> dict:
    """DataLoader options that only move work off the training loop's critical path.

    On CUDA: pinned host memory (with ``non_blocking`` copies in the loop) and, for image tasks (per-sample
    augmentation in ``__getitem__``), min(4, usable CPUs / 2) worker processes. ``trainer.num_workers`` (null: that choice) sets the
    workers anywhere. 0 workers (every CPU default) is today's loop exactly; with workers the augmentation
    draws from each worker's RNG (seeded from the run's shuffle generator, so still fixed by the seed)
    instead of the main process's, which shifts the augmentation and dropout streams."""
    workers = getattr(cfg, "num_workers", None)
    if workers is None:
        augmented = bool(getattr(train_ds, "augment", False))  # vision.ImageDataset's per-sample crops and flips
        workers = min(4, max(1, usable_cpus() // 2)) if device.type == "cuda" and augmented else 0
    if workers < 0:
        raise UserError(f"trainer.num_workers={workers} must be 0 or more, or null (workers for image tasks on a "
                        "GPU only)")
    out = {"pin_memory": device.type == "cuda"}
    if workers:
        out["num_workers"] = int(workers)
    return out


def build_optimizer(model: torch.nn.Module, cfg) -> torch.optim.Optimizer:
    """AdamW (biases and norm weights without decay, as in BERT) or SGD with momentum;
    ``decay_all_parameters`` decays every parameter (FreeTickets' reference optimizer)."""
    decay, no_decay = [], []
    decay_all = bool(getattr(cfg, "decay_all_parameters", False))
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 and not decay_all else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=False)
    # fused: one kernel for all parameters (transformers' Trainer defaults to it too)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.adam_betas), eps=cfg.adam_eps, fused=True)


def build_scheduler(optimizer, cfg, total_steps: int):
    """Linear warmup then linear decay that reaches exactly 0 after the last step of this finetune
    (default); or constant, cosine to 0, or multistep (x lr_gamma at fractions lr_milestones)."""
    from transformers import (get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup,
                              get_linear_schedule_with_warmup)

    warmup = int(cfg.warmup_ratio * total_steps)
    kind = getattr(cfg, "lr_schedule", "linear")
    if kind == "linear":
        return get_linear_schedule_with_warmup(optimizer, warmup, total_steps)
    if kind == "cosine":
        return get_cosine_schedule_with_warmup(optimizer, warmup, total_steps)
    if kind == "constant":
        return get_constant_schedule_with_warmup(optimizer, warmup)
    if kind == "multistep":  # FreeTickets' image schedule: MultiStepLR at 1/2 and 3/4 of training
        milestones = [round(f * total_steps) for f in cfg.lr_milestones]
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: cfg.lr_gamma ** sum(step >= m for m in milestones))
    raise UserError(f"unknown trainer.lr_schedule {kind!r}: use linear, cosine, constant or multistep")


def train_loader(train_ds, cfg, seed: int, collate_fn, generator: torch.Generator | None = None,
                 **loader_options) -> DataLoader:
    """Random batches (the papers'), or with ``group_by_length`` batches of similar length: transformers'
    LengthGroupedSampler forms them (shuffle, then sort within mega-batches of 50 batches), and their
    order is then shuffled, the batch holding the longest example kept first (``LengthGroupedBatches``). Either way the seed
    (or ``generator``, a stream that runs on across EDST phases) fixes the order. ``loader_options``: see
    :func:`loader_settings` (they change no batch)."""
    generator = torch.Generator().manual_seed(seed) if generator is None else generator
    if not getattr(cfg, "group_by_length", False):
        return DataLoader(train_ds, batch_size=cfg.batch_size, shuffle=True, generator=generator,
                          collate_fn=collate_fn, **loader_options)
    lengths = example_lengths(train_ds)
    if lengths is None:
        raise UserError("trainer.group_by_length=true needs a text task (token sequences): "
                        "set trainer.group_by_length=false for this task")
    return DataLoader(train_ds, batch_sampler=LengthGroupedBatches(cfg.batch_size, lengths, generator),
                      collate_fn=collate_fn, **loader_options)


class LengthGroupedBatches(torch.utils.data.Sampler):
    """Batches of similar length in a random order. transformers' ``LengthGroupedSampler`` alone
    serves each mega-batch sorted longest to shortest, and on MRPC length goes with the label (79%
    positive among the longest fifth of pairs, 58% among the shortest): one epoch at lr 2e-4 then
    left the seeds at or near the majority class, 6.3 points below random batches (docs/measurements.md). Shuffling the batches keeps its
    padding and removes that drift; the batch holding the longest example still comes first, so memory
    runs out at once if it is going to."""

    def __init__(self, batch_size: int, lengths: list[int], generator: torch.Generator):
        from transformers.trainer_pt_utils import LengthGroupedSampler

        self.batch_size, self.generator = batch_size, generator
        self.sampler = LengthGroupedSampler(batch_size, lengths=lengths, generator=generator)

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.batch_size)

    def __iter__(self):
        order = list(self.sampler)  # mega-batches are whole batches, so batches are consecutive runs
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        rest = (1 + torch.randperm(len(batches) - 1, generator=self.generator)).tolist()
        yield from (batches[i] for i in [0, *rest])  # the sampler put the longest example in batch 0


def finetune(model: torch.nn.Module, train_ds, cfg, seed: int, *, collate_fn: Callable | None = None,
             hooks: Any = None, epochs: float | None = None, logger: Any = None, desc: str = "finetune",
             on_epoch_end: Callable[[int], None] | None = None,
             data_generator: torch.Generator | None = None) -> FinetuneResult:
    """Train ``model`` in place for ``epochs`` (default ``cfg.epochs``) and return run facts.

    ``hooks`` must be made from the model on its device (RunContext.load_model): a mask or optimizer
    wrapper made before a move would stay behind. ``data_generator``: the shuffle draws from it and
    torch's global RNG (augmentation, dropout) is not reseeded, so consecutive calls continue one data
    stream (EDST phases).

    fp16 runs under a GradScaler: a step whose gradients overflow is skipped as a whole (the hooks'
    wrapped ``step()`` is not called, so no mask update, L1 shrink or topology update happens), the
    scale shrinks, and the lr schedule still advances by one batch. Gradients are unscaled before
    clipping. The loss is summed on the device and read once, at the end (W&B reads it at its log
    interval): no per-step host sync on a GPU."""
    device = resolve_device(cfg.device)
    epochs = cfg.epochs if epochs is None else epochs
    if cfg.batch_size < 1 or not epochs > 0:
        raise UserError(f"trainer.batch_size={cfg.batch_size} and the epochs of this finetune ({epochs}) must be "
                        "positive: fix trainer.batch_size / trainer.epochs (or the method's epochs)")
    if hooks is not None and any(not same_device(p.device, device) for p in model.parameters()):
        raise RuntimeError(f"finetune got hooks made from a model that is not on {device}: move the model first "
                           "(RunContext.load_model does), then derive masks and engines from it")
    to_device(model, device).train()
    apply_tf32(device, cfg)
    precision = resolve_precision(device, cfg.precision)
    options = loader_settings(train_ds, cfg, device)
    loader = train_loader(train_ds, cfg, seed, collate_fn, data_generator, **options)
    total = max(1, math.ceil(epochs * len(loader)))
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, total)
    stepper = hooks.wrap_optimizer(optimizer) if hasattr(hooks, "wrap_optimizer") else optimizer
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    extra_loss = getattr(hooks, "extra_loss", None)
    after_step = getattr(hooks, "after_step", None)
    if data_generator is None:
        torch.manual_seed(seed)  # dropout noise comes from the seed too
    non_blocking = options["pin_memory"]
    # float64 on the device: the same sum, bit for bit, as adding each loss.item() to a Python float
    loss_sum = torch.zeros((), dtype=torch.float32 if device.type == "mps" else torch.float64, device=device)
    start, step, lr_trace = time.perf_counter(), 0, []
    bar = tqdm(total=total, desc=desc, leave=False, disable=not cfg.progress, dynamic_ncols=True)
    for epoch in range(math.ceil(epochs)):
        for batch in loader:
            batch = {k: v.to(device, non_blocking=non_blocking) for k, v in batch.items()}
            with autocast(device, precision):
                loss = model(**batch).loss
            if extra_loss is not None:
                penalty = extra_loss(model, scheduler.get_last_lr()[0] / cfg.lr)
                if penalty is not None:
                    loss = loss + penalty
            scaler.scale(loss).backward()
            grad_norm = None
            if cfg.max_grad_norm:
                scaler.unscale_(stepper)  # clip the true gradients (fp16); nothing to do otherwise
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            scaler.step(stepper)  # fp16: skipped when a gradient is inf/NaN
            scaler.update()
            _scheduler_step(scheduler, scaler.is_enabled())
            stepper.zero_grad(set_to_none=True)
            step += 1
            if after_step is not None:
                after_step(model, step)
            loss_sum += loss.detach()
            lr_trace.append(scheduler.get_last_lr()[0])
            bar.update(1)
            if logger is not None:  # W&B on (loggers.RunLogger): train/* and dev evaluations when due
                logger.after_step(step, total, loss=loss, lr=lr_trace[-1], epoch=step / len(loader),
                                  grad_norm=grad_norm)
            if step >= total:
                break
        if on_epoch_end is not None and step < total:
            on_epoch_end(epoch + 1)
        if step >= total:
            break
    bar.close()
    return FinetuneResult(step, time.perf_counter() - start, lr_trace[-1], loss_sum.item() / step, lr_trace)


def _scheduler_step(scheduler, scaled: bool) -> None:
    """One lr-schedule step per batch. Under fp16 a first optimizer step that the scaler skipped makes
    torch warn that the schedule stepped first: expected, and the schedule follows the batches."""
    if not scaled:
        scheduler.step()
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
        scheduler.step()


def prediction_order(eval_ds, by_length: bool = True) -> np.ndarray:
    """Row order for prediction: longest first (batches of similar length pad little), or file order."""
    lengths = example_lengths(eval_ds) if by_length else None
    if lengths is None:
        return np.arange(len(eval_ds))
    return np.argsort(-np.asarray(lengths), kind="stable")


@torch.no_grad()
def predict(model: torch.nn.Module, eval_ds, cfg, collate_fn: Callable | None = None,
            by_length: bool = True) -> np.ndarray:
    """Logits in dataset (dev-file) order, float32: [N, C], or [N] for a one-output (regression) head.

    Text rows are batched by length and the logits put back in file order. Leaves torch's global RNG
    as it was."""
    device = resolve_device(cfg.device)
    to_device(model, device).eval()
    apply_tf32(device, cfg)
    order = prediction_order(eval_ds, by_length)
    # a private generator: a DataLoader draws a base seed from it per pass, and from torch's global RNG
    # without one, which would shift the dropout/augmentation stream of any training after a prediction
    loader = DataLoader(eval_ds, batch_size=cfg.eval_batch_size, sampler=order.tolist(), collate_fn=collate_fn,
                        generator=torch.Generator())
    chunks = []
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items() if k != "labels"}
        with autocast(device, cfg.precision):
            chunks.append(model(**batch).logits.float().cpu())
    model.train()
    stacked = torch.cat(chunks).numpy().astype(np.float32)
    logits = np.empty_like(stacked)
    logits[order] = stacked  # back to file order
    return logits[:, 0] if logits.ndim == 2 and logits.shape[1] == 1 else logits


def count_parameters(model: torch.nn.Module) -> dict[str, int]:
    """Trainable and nonzero parameter counts (a pruned weight is an exact zero)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return {
        "trainable_parameters": int(sum(p.numel() for p in params)),
        "nonzero_parameters": int(sum(int(torch.count_nonzero(p)) for p in params)),
    }
