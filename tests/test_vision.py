"""FreeTickets' image setting: WRN, the digits/CIFAR loaders, OoD sets, learning-rate schedules."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from ticket_ensembles.errors import UserError
from ticket_ensembles.tasks import get_task
from ticket_ensembles.trainer import build_optimizer, build_scheduler
from ticket_ensembles.vision import WideResNet, load_image_model, load_image_task, load_ood_set
from ticket_ensembles.vision.data import ImageDataset, preprocessing


def _data_cfg(**data):
    return OmegaConf.create({"data": {"max_train_samples": None, "max_eval_samples": None, "ood": None, **data}})


def test_image_tasks_in_the_task_table():
    for name, classes in [("cifar10", 10), ("cifar100", 100), ("digits", 10)]:
        task = get_task(name)
        assert task.modality == "image" and task.tsv is None and task.num_labels == classes
        assert task.main_metric == "accuracy" and task.eval_splits == ("test",)
    assert get_task("cifar100").image.label_key == "fine_label"


def test_wrn_28_10_has_the_papers_parameter_count():
    n = sum(p.numel() for p in WideResNet(28, 10, 10).parameters())
    assert 36.4e6 < n < 36.6e6  # 36.5M (Zagoruyko & Komodakis 2016, Table 4)


def test_wrn_output_like_a_sequence_classifier():
    cfg = OmegaConf.create({"name": "wrn10_1", "kind": "wrn", "depth": 10, "width": 1, "dropout": 0.0})
    model = load_image_model(cfg, get_task("digits"), seed=3)
    x, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    out = model(pixel_values=x, labels=y)
    assert out.logits.shape == (4, 10) and out.loss.ndim == 0
    assert model(pixel_values=x).loss is None
    again, other = (load_image_model(cfg, get_task("digits"), seed=s) for s in (3, 4))
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters()))  # seed = init
    assert not torch.equal(again.conv1.weight, other.conv1.weight)
    with pytest.raises(UserError, match="6n"):
        WideResNet(12, 1, 10)
    with pytest.raises(UserError, match="image model"):
        load_image_model(OmegaConf.create({"name": "minilm", "kind": "transformer"}), get_task("digits"), 0)


def test_digits_split_normalisation_and_augmentation():
    data = load_image_task(get_task("digits"), _data_cfg())
    assert len(data.train) == 1437 and len(data.evals["test"]) == 360
    assert set(np.unique(data.labels("test"))) == set(range(10))
    test = torch.stack([data.evals["test"][i]["pixel_values"] for i in range(360)])
    assert abs(float(test.mean())) < 0.1 and abs(float(test.std()) - 1.0) < 0.1
    torch.manual_seed(0)
    plain = data.evals["test"][0]["pixel_values"]
    aug = data.train.select(range(1437, 1437))  # an empty subset still works
    assert len(aug) == 0
    crops = [data.train[0]["pixel_values"] for _ in range(20)]
    assert all(c.shape == (1, 8, 8) for c in crops) and plain.shape == (1, 8, 8)
    assert any(not torch.equal(crops[0], c) for c in crops[1:])  # random crops move the digit
    small = load_image_task(get_task("digits"), _data_cfg(max_train_samples=50, max_eval_samples=20))
    assert len(small.train) == 50 and len(small.labels("test")) == 20


def test_ood_sets_for_digits_and_bad_names():
    task = get_task("digits")
    name, ood = load_ood_set(task, _data_cfg(ood="photos", max_eval_samples=100))
    assert name == "photos" and len(ood) == 100 and ood[0]["pixel_values"].shape == (1, 8, 8)
    assert np.all(ood["labels"] == -1)
    assert load_ood_set(task, _data_cfg()) is None
    with pytest.raises(UserError, match="data.ood"):
        load_ood_set(task, _data_cfg(ood="mnist"))


def test_cifar_hub_path_fails_clearly_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(UserError, match="uoft-cs/cifar10"):
        load_image_task(get_task("cifar10"), _data_cfg())


@pytest.mark.parametrize("kind,expect", [
    ("multistep", [0.1] * 5 + [0.01] * 3 + [0.001] * 2),
    ("constant", [0.1] * 10),
])
def test_lr_schedules(kind, expect):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    cfg = OmegaConf.create({"lr_schedule": kind, "lr_milestones": [0.5, 0.75], "lr_gamma": 0.1, "warmup_ratio": 0.0})
    sched = build_scheduler(opt, cfg, total_steps=10)
    seen = []
    for _ in range(10):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx(expect)


def test_cosine_lr_reaches_zero_and_unknown_schedule():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    cfg = OmegaConf.create({"lr_schedule": "cosine", "warmup_ratio": 0.0})
    sched = build_scheduler(opt, cfg, total_steps=8)
    for _ in range(8):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(UserError, match="lr_schedule"):
        build_scheduler(opt, OmegaConf.create({"lr_schedule": "step", "warmup_ratio": 0.0}), 8)


def test_validation_fraction_holds_out_the_last_train_rows():
    full = load_image_task(get_task("digits"), _data_cfg())
    data = load_image_task(get_task("digits"), _data_cfg(validation_fraction=0.1))
    assert (len(data.train), len(data.validation)) == (1293, 144) and full.validation is None
    assert np.array_equal(data.validation["labels"], full.train["labels"][1293:])  # the reference's split
    assert data.train.augment and not data.validation.augment
    for bad in (1.0, -0.1):
        with pytest.raises(UserError, match="validation_fraction"):
            load_image_task(get_task("digits"), _data_cfg(validation_fraction=bad))


def test_freetickets_preprocessing_std_and_reflect_padding():
    ref = _data_cfg(image_preprocessing="freetickets")
    source, pad = preprocessing(get_task("cifar10"), ref)
    assert source.std == (0.2023, 0.1994, 0.2010) and pad == "reflect"
    assert preprocessing(get_task("cifar10"), _data_cfg()) == (get_task("cifar10").image, "constant")
    assert preprocessing(get_task("digits"), ref) == (get_task("digits").image, "constant")  # no reference
    with pytest.raises(UserError, match="image_preprocessing"):
        preprocessing(get_task("digits"), _data_cfg(image_preprocessing="imagenet"))
    white = np.full((1, 1, 8, 8), 255, dtype=np.uint8)
    torch.manual_seed(0)
    crops = {mode: torch.stack([ImageDataset(white, np.zeros(1), get_task("digits").image, True, mode)[0]["pixel_values"]
                                for _ in range(20)]) for mode in ("constant", "reflect")}
    assert crops["reflect"].unique().numel() == 1 and crops["constant"].unique().numel() == 2


def test_weight_decay_on_every_parameter_as_the_reference():
    model = WideResNet(10, 1, 10)
    cfg = OmegaConf.create({"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4})
    decay, no_decay = build_optimizer(model, cfg).param_groups
    assert no_decay["weight_decay"] == 0 and any(p.ndim == 1 for p in no_decay["params"])  # BN and biases exempt
    cfg.decay_all_parameters = True
    decay, no_decay = build_optimizer(model, cfg).param_groups
    assert len(decay["params"]) == len(list(model.parameters())) and not no_decay["params"]
