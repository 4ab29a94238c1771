"""The published ResNets of the reference solutions, with the reference module names kept so that
`print(model)` can be compared line by line with the printouts in ../shared/references/."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    """Two 3x3 convs and an identity (or 1x1 strided conv) shortcut, as printed in both references."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


def _stage(in_planes: int, planes: int, stride: int, blocks: int = 2) -> nn.Sequential:
    layers = [BasicBlock(in_planes, planes, stride)]
    layers += [BasicBlock(planes, planes) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def _halve(n: int) -> int:
    """Output length of a kernel-3, stride-2, padding-1 conv or pool."""
    return (n - 1) // 2 + 1


class ResNet15(nn.Module):
    """Electron/photon ResNet-15 (electron_photon_resnet15.md): 3x3 stride-1 stem, three stages of two
    BasicBlocks with widths w-2w-4w (16-32-64), global average pool, one linear layer.

    The stem keeps stride 1 because the 32x32 crops are already tight around the shower; the global
    pool makes the model independent of image_size (the reference's avg_pool(8) on 8x8 is the same)."""

    def __init__(self, in_channels: int, num_outputs: int, image_size: Sequence[int], *, width: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.layer1 = _stage(width, width, 1)
        self.layer2 = _stage(width, 2 * width, 2)
        self.layer3 = _stage(2 * width, 4 * width, 2)
        self.linear = nn.Linear(4 * width, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


class ResNet18Mass(nn.Module):
    """Jet-mass CustomResNet18 (jet_mass_resnet18.md): 3x3 stride-1 stem, maxpool 3/2, three stages of
    two BasicBlocks (w-2w-4w, strides 1-2-2), then flatten into an MLP head fc1..fcN.

    The reference flattens instead of pooling, so the head sees where the energy sits in the jet
    image (the mass is a two-prong opening angle); fc1.in_features follows image_size: 4w*16*16 =
    65536 for w=64 on 125x125."""

    def __init__(
        self,
        in_channels: int,
        num_outputs: int,
        image_size: Sequence[int],
        *,
        width: int = 64,
        hidden: Sequence[int] = (512, 256, 128),
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = _stage(width, width, 1)
        self.layer2 = _stage(width, 2 * width, 2)
        self.layer3 = _stage(2 * width, 4 * width, 2)
        # maxpool, layer2 and layer3 each halve the map (125 -> 63 -> 32 -> 16)
        h, w = (_halve(_halve(_halve(n))) for n in image_size)
        sizes = [4 * width * h * w, *hidden, num_outputs]
        self.num_fc = len(sizes) - 1
        for i in range(self.num_fc):
            self.add_module(f"fc{i + 1}", nn.Linear(sizes[i], sizes[i + 1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        out = self.layer3(self.layer2(self.layer1(out))).flatten(1)
        for i in range(1, self.num_fc + 1):
            out = getattr(self, f"fc{i}")(out)
            if i < self.num_fc:
                out = F.relu(out)
        return out
