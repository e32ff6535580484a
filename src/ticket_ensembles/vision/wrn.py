"""Wide ResNet (Zagoruyko & Komodakis 2016), the FreeTickets image model, trained from scratch.

``forward(pixel_values, labels=None)`` returns an HF ``SequenceClassifierOutput`` (``.loss``,
``.logits``), so the one training loop and ``predict`` serve it like a GLUE model.
"""
from __future__ import annotations

import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from ..errors import UserError
from ..tasks import TaskSpec


class WideBasicBlock(nn.Module):
    """Pre-activation block: BN-ReLU-conv3x3-BN-ReLU-(dropout)-conv3x3, 1x1 conv shortcut when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int, dropout: float):
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(c_in), nn.BatchNorm2d(c_out)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.dropout = nn.Dropout(dropout)
        same = c_in == c_out and stride == 1
        self.shortcut = None if same else nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = torch.relu(self.bn1(x))
        out = self.conv1(pre)
        out = self.conv2(self.dropout(torch.relu(self.bn2(out))))
        # the projection shortcut sees the pre-activated input, as in the original WRN code
        return out + (x if self.shortcut is None else self.shortcut(pre))


class WideResNet(nn.Module):
    """WRN-depth-width: 3 groups of (depth - 4) / 6 blocks at 16k, 32k, 64k channels."""

    def __init__(self, depth: int, width: int, num_classes: int, in_channels: int = 3, dropout: float = 0.0):
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise UserError(f"WRN depth {depth} is not 6n + 4 (n >= 1): use e.g. 10, 16, 22 or 28")
        if width < 1:
            raise UserError(f"WRN width {width} must be a positive integer")
        n = (depth - 4) // 6
        widths = [16, 16 * width, 32 * width, 64 * width]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        blocks = []
        for group, stride in zip(range(3), (1, 2, 2)):
            for i in range(n):
                c_in = widths[group] if i == 0 else widths[group + 1]
                blocks.append(WideBasicBlock(c_in, widths[group + 1], stride if i == 0 else 1, dropout))
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(widths[3])
        self.fc = nn.Linear(widths[3], num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None) -> SequenceClassifierOutput:
        h = self.blocks(self.conv1(pixel_values))
        h = torch.relu(self.bn(h)).mean(dim=(2, 3))  # global average pooling: any input size
        logits = self.fc(h)
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


def load_image_model(model_cfg, task: TaskSpec, seed: int) -> nn.Module:
    """A freshly initialised image model for `task`; the seed sets every initial weight."""
    if model_cfg.kind != "wrn":
        raise UserError(f"task {task.name!r} is an image task but model {model_cfg.name!r} is a "
                        f"{model_cfg.kind!r}: use an image model such as model=wrn16_2 or model=wrn28_10")
    torch.manual_seed(seed)
    return WideResNet(int(model_cfg.depth), int(model_cfg.width), task.num_labels,
                      in_channels=task.image.channels, dropout=float(model_cfg.dropout))
