"""FreeTickets' own image setting: Wide ResNets trained from scratch on digits / CIFAR."""
from .data import ImageDataset, load_image_task, load_ood_set
from .wrn import WideResNet, load_image_model

__all__ = ["ImageDataset", "load_image_task", "load_ood_set", "WideResNet", "load_image_model"]
