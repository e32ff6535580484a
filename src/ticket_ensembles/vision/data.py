"""Image tasks: sklearn's 8x8 digits (offline) and CIFAR-10/100 from the hub, plus OoD sets.

Pixels are kept as uint8 [N, C, H, W]; every access scales to [0, 1] and normalises with
the task's mean/std; the training set also takes a random crop after zero padding and,
where the task allows, a horizontal flip (torch's RNG, seeded by the trainer).
``data.image_preprocessing=freetickets`` takes the reference loaders' values instead
(sparselearning/utils.py: CIFAR-10 std 0.2023/0.1994/0.2010 and reflect padding).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..data import TaskData
from ..errors import UserError
from ..tasks import TASKS, ImageSource, TaskSpec

_DIGITS_TRAIN = 1437  # sklearn's digits in file order: the first 1,437 train, the last 360 test
_SVHN = ImageSource("ufldl-stanford/svhn", 3, 32, (), (), 0, False, image_key="image")
# Out-of-distribution sets by config name (data.ood): (source, hub config, split).
OOD_SETS: dict[str, tuple[ImageSource | None, str | None, str]] = {
    "svhn": (_SVHN, "cropped_digits", "test"),
    "cifar10": (TASKS["cifar10"].image, None, "test"),
    "cifar100": (TASKS["cifar100"].image, None, "test"),
    "photos": (None, None, "test"),  # 8x8 grey patches of sklearn's two sample photos (digits)
}
# data.image_preprocessing=freetickets: (std, crop padding mode) of VITA-Group/FreeTickets'
# sparselearning/utils.py (CIFAR-10 lines 92-98, CIFAR-100 lines 30-35); digits has no reference.
REFERENCE_PREPROCESSING = {
    "cifar10": ((0.2023, 0.1994, 0.2010), "reflect"),
    "cifar100": ((0.2673342858792401, 0.2564384629170883, 0.27615047132568404), "constant"),
}
PREPROCESSING = ("standard", "freetickets")


class ImageDataset(torch.utils.data.Dataset):
    """Items ``{"pixel_values": float [C,H,W], "labels": int}``; ``ds["labels"]`` gives all labels."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, source: ImageSource, augment: bool,
                 pad_mode: str = "constant"):
        self.images = torch.as_tensor(images, dtype=torch.uint8)
        self.label_array = np.asarray(labels, dtype=np.int64)
        self.source, self.augment, self.pad_mode = source, augment, pad_mode
        self._mean = torch.tensor(source.mean).view(-1, 1, 1)
        self._std = torch.tensor(source.std).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.label_array)

    def __getitem__(self, key):
        if isinstance(key, str):  # column access, as on a `datasets.Dataset`
            if key != "labels":
                raise KeyError(key)
            return self.label_array
        x = self.images[key].float() / 255.0
        if self.augment:
            x = self._random_crop_flip(x)
        return {"pixel_values": (x - self._mean) / self._std, "labels": int(self.label_array[key])}

    def _random_crop_flip(self, x: torch.Tensor) -> torch.Tensor:
        pad = self.source.crop_padding
        if pad:
            h, w = x.shape[-2:]
            x = F.pad(x, (pad, pad, pad, pad), mode=self.pad_mode)
            top, left = torch.randint(0, 2 * pad + 1, (2,)).tolist()
            x = x[:, top:top + h, left:left + w]
        if self.source.hflip and torch.rand(()) < 0.5:
            x = torch.flip(x, dims=(-1,))
        return x

    def select(self, indices) -> "ImageDataset":
        """A subset (bagging), like `datasets.Dataset.select`."""
        idx = np.asarray(list(indices), dtype=np.int64)
        return ImageDataset(self.images[idx].numpy(), self.label_array[idx], self.source, self.augment,
                            self.pad_mode)


def preprocessing(task: TaskSpec, cfg) -> tuple[ImageSource, str]:
    """The task's image source with data.image_preprocessing applied, and the crop padding mode."""
    kind = cfg.data.get("image_preprocessing", "standard")
    if kind not in PREPROCESSING:
        raise UserError(f"unknown data.image_preprocessing={kind!r}: use {' or '.join(PREPROCESSING)}")
    if kind == "standard" or task.name not in REFERENCE_PREPROCESSING:
        return task.image, "constant"
    std, pad_mode = REFERENCE_PREPROCESSING[task.name]
    return dataclasses.replace(task.image, std=std), pad_mode


def split_validation(images: np.ndarray, labels: np.ndarray, fraction: float):
    """Train and validation rows: the last `fraction` in file order (the reference's DatasetSplitter)."""
    if not 0.0 <= fraction < 1.0:
        raise UserError(f"data.validation_fraction={fraction} is outside [0, 1): use e.g. 0.1 (the reference)")
    end = int(math.floor((1.0 - fraction) * len(labels)))
    if fraction and not 0 < end < len(labels):
        raise UserError(f"data.validation_fraction={fraction} of {len(labels)} training rows leaves an empty "
                        "train or validation set: use more rows or another fraction")
    return (images[:end], labels[:end]), (images[end:], labels[end:])


def load_image_task(task: TaskSpec, cfg) -> TaskData:
    """Train, validation and eval sets of an image task, limited by data.max_*_samples, and data.ood."""
    src, pad_mode = preprocessing(task, cfg)
    splits = _digits_splits() if src.hub_id is None else _hub_splits(src, None, ("train", *task.eval_splits))
    data_cfg = cfg.data
    fraction = float(data_cfg.get("validation_fraction") or 0.0)
    train_rows, val_rows = split_validation(*_limit(*splits["train"], data_cfg.max_train_samples), fraction)
    train = ImageDataset(*train_rows, src, augment=True, pad_mode=pad_mode)
    validation = ImageDataset(*val_rows, src, augment=False) if fraction else None
    evals = {s: ImageDataset(*_limit(*splits[s], data_cfg.max_eval_samples), src, augment=False)
             for s in task.eval_splits}
    return TaskData(train=train, evals=evals, collate_fn=None, ood=load_ood_set(task, cfg, src),
                    validation=validation)


def load_ood_set(task: TaskSpec, cfg, source: ImageSource | None = None) -> tuple[str, ImageDataset] | None:
    """The out-of-distribution set named by data.ood, normalised like `task`'s images (`source`)."""
    name = cfg.data.ood
    if not name:
        return None
    if name not in OOD_SETS or name == task.name:
        choices = ", ".join(n for n in OOD_SETS if n != task.name)
        raise UserError(f"unknown out-of-distribution set data.ood={name!r} for task {task.name!r}: use one of {choices}")
    source, hub_config, split = OOD_SETS[name]
    images, _ = _photo_patches(task.image.size) if source is None else _hub_splits(source, hub_config, (split,))[split]
    images = _match_channels(images, task.image.channels, task.image.size)
    images, labels = _limit(images, np.full(len(images), -1), cfg.data.max_eval_samples)
    return name, ImageDataset(images, labels, source or task.image, augment=False)


def _limit(images: np.ndarray, labels: np.ndarray, n: int | None) -> tuple[np.ndarray, np.ndarray]:
    return (images, labels) if n is None or n >= len(labels) else (images[:n], labels[:n])


def _digits_splits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # 0..16 -> 0..255
    target = digits.target.astype(np.int64)
    return {"train": (images[:_DIGITS_TRAIN], target[:_DIGITS_TRAIN]),
            "test": (images[_DIGITS_TRAIN:], target[_DIGITS_TRAIN:])}


def _hub_splits(src: ImageSource, hub_config: str | None, splits) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The real hub path: ``load_dataset(hub_id)``, PIL images -> uint8 [N, C, H, W]."""
    from datasets import load_dataset

    try:
        ds = load_dataset(src.hub_id, hub_config)
    except Exception as e:
        raise UserError(f"could not load {src.hub_id!r} from the Hugging Face hub ({type(e).__name__}): "
                        "connect to the hub or its cache, or use the offline task=digits") from None
    out = {}
    for split in splits:
        if split not in ds:
            raise UserError(f"{src.hub_id!r} has no split {split!r}: point the task at a copy with one")
        part = ds[split]
        images = np.stack([_to_array(im) for im in part[src.image_key]])
        out[split] = (images, np.asarray(part[src.label_key], dtype=np.int64))
    return out


def _to_array(image: Any) -> np.ndarray:
    arr = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image, dtype=np.uint8)
    return arr.transpose(2, 0, 1) if arr.ndim == 3 else arr[None]


def _match_channels(images: np.ndarray, channels: int, size: int) -> np.ndarray:
    """OoD pictures in the in-distribution format (channel count and size)."""
    x = torch.as_tensor(images).float()
    if x.shape[1] != channels:
        x = x.mean(dim=1, keepdim=True).expand(-1, channels, -1, -1) if channels in (1, 3) else x
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="area")
    return x.round().clamp(0, 255).to(torch.uint8).numpy()


def _photo_patches(size: int, count: int = 360, scale: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """`count` grey patches (area-downscaled by `scale`) at fixed random places of sklearn's
    two bundled photos: natural images, a domain the digits model never saw (offline OoD)."""
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(0)  # a fixed set, the same for every run
    photos = [torch.from_numpy(np.array(p, dtype=np.float32)).mean(-1)[None, None] for p in load_sample_images().images]
    small = [F.avg_pool2d(p, scale)[0, 0] for p in photos]
    patches = []
    for i in range(count):
        img = small[i % len(small)]
        top, left = rng.integers(0, img.shape[0] - size), rng.integers(0, img.shape[1] - size)
        patches.append(img[top:top + size, left:left + size])
    images = torch.stack(patches)[:, None].round().to(torch.uint8).numpy()
    return images, np.full(count, -1)
