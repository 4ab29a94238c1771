"""Plain CNNs and MLPs of the reference solutions: LeNet-5 and VGG-12 (quark_gluon_lenet5.md,
overview_resnet15_vgg12_lenet5.md) and the survey's MLP and multi-kernel CNN
(model_survey_auc_tables.md). Flattened sizes are computed from image_size, never hard-coded."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _mlp_head(sizes: Sequence[int], dropout: float) -> list[nn.Module]:
    """Linear layers through `sizes`, ReLU + dropout between them, nothing after the last one."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers += [nn.ReLU(inplace=True), nn.Dropout(dropout)]
    return layers


def _check_positive(name: str, image_size: Sequence[int], h: int, w: int) -> None:
    if h < 1 or w < 1:
        raise ValueError(f"{name}: image_size {tuple(image_size)} is too small (feature map {h}x{w})")


class LeNet5(nn.Module):
    """Quark/gluon LeNet-5 (quark_gluon_lenet5.md): two valid 5x5 convs, each followed by a 2x2 max
    pool, dropout, then fc 120 -> 84 -> out; fc1.in_features = 16*28*28 = 12544 on 125x125."""

    def __init__(
        self,
        in_channels: int,
        num_outputs: int,
        image_size: Sequence[int],
        *,
        dropout: Sequence[float] = (0.25, 0.5),
        channels: Sequence[int] = (6, 16),
    ) -> None:
        super().__init__()
        c1, c2 = channels
        self.conv1 = nn.Conv2d(in_channels, c1, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(c1, c2, 5)
        self.dropout1 = nn.Dropout(dropout[0])
        h, w = (((n - 4) // 2 - 4) // 2 for n in image_size)
        _check_positive("lenet5", image_size, h, w)
        self.fc1 = nn.Linear(c2 * h * w, 120)
        self.dropout2 = nn.Dropout(dropout[1])
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = self.dropout1(x).flatten(1)
        x = self.dropout2(F.relu(self.fc1(x)))
        return self.fc3(F.relu(self.fc2(x)))


class VGG12(nn.Module):
    """Quark/gluon VGG-12 (overview_resnet15_vgg12_lenet5.md; its linked write-up prints it): nine 3x3
    convs in blocks w,w | 2w,2w | 4w,4w,4w | 8w,8w, a 2x2 max pool after each block, then fc
    4096 -> 512 -> out with dropout 0.5. On 125x125 the valid convs leave 8w*3*3 = 4608 features.

    padding=None keeps the reference's unpadded convs when the map survives them and pads by 1
    otherwise: valid convs shrink 32x32 crops to nothing before the last block."""

    _BLOCKS = ((1, 1), (2, 2), (4, 4, 4), (8, 8))

    def __init__(
        self,
        in_channels: int,
        num_outputs: int,
        image_size: Sequence[int],
        *,
        width: int = 64,
        hidden: Sequence[int] = (4096, 512),
        dropout: float = 0.5,
        padding: int | None = None,
    ) -> None:
        super().__init__()
        if padding is None:
            padding = 0 if min(self._spatial(image_size, 0)) >= 1 else 1
        h, w = self._spatial(image_size, padding)
        _check_positive("vgg12", image_size, h, w)
        layers: list[nn.Module] = []
        c_in = in_channels
        for block in self._BLOCKS:
            for mult in block:
                layers += [nn.Conv2d(c_in, mult * width, 3, padding=padding), nn.ReLU(inplace=True)]
                c_in = mult * width
            layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(*_mlp_head([c_in * h * w, *hidden, num_outputs], dropout))

    @classmethod
    def _spatial(cls, image_size: Sequence[int], padding: int) -> tuple[int, int]:
        def out(n: int) -> int:
            for block in cls._BLOCKS:
                n = (n - len(block) * (2 - 2 * padding)) // 2
            return n

        h, w = (out(n) for n in image_size)
        return h, w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class MLP(nn.Module):
    """The survey's 'basic MLP' baseline (AUC 0.765 on e/gamma): every pixel of every channel is an input."""

    def __init__(
        self,
        in_channels: int,
        num_outputs: int,
        image_size: Sequence[int],
        *,
        hidden: Sequence[int] = (256, 128),
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        n_in = in_channels * image_size[0] * image_size[1]
        self.net = nn.Sequential(nn.Flatten(), *_mlp_head([n_in, *hidden, num_outputs], dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MultiKernelBlock(nn.Module):
    """Parallel convs of several kernel sizes, concatenated along channels, then BN, activation and a
    2x2 max pool. Showers and jets have structure at 1-5 pixel scales at once (survey's CNN 5/7/8)."""

    def __init__(self, in_channels: int, branch_channels: int, kernel_sizes: Sequence[int], activation: str) -> None:
        super().__init__()
        # Explicit zero padding: PyTorch's padding="same" copies the input (and warns) for even kernels;
        # the odd pixel goes right/bottom, as "same" does.
        self.branches = nn.ModuleList(
            nn.Sequential(
                nn.ZeroPad2d(((k - 1) // 2, k // 2, (k - 1) // 2, k // 2)),
                nn.Conv2d(in_channels, branch_channels, k, bias=False),
            )
            for k in kernel_sizes
        )
        out_channels = branch_channels * len(kernel_sizes)
        self.bn = nn.BatchNorm2d(out_channels)
        if activation not in ("relu", "prelu"):
            raise ValueError(f"multikernel_cnn: activation must be 'relu' or 'prelu', got {activation!r}")
        self.act = nn.PReLU(out_channels) if activation == "prelu" else nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([branch(x) for branch in self.branches], dim=1)
        return self.pool(self.act(self.bn(x)))


class MultiKernelCNN(nn.Module):
    """The survey's best single CNN (kernel sizes [1,2,2,3,3,5,5], AUC 0.81-0.816 on e/gamma): stacked
    multi-kernel blocks, an adaptive pool to pool_to x pool_to (identity on 32x32 after two blocks,
    keeps the head small on 125x125), then an MLP head."""

    def __init__(
        self,
        in_channels: int,
        num_outputs: int,
        image_size: Sequence[int],
        *,
        kernel_sizes: Sequence[int] = (1, 2, 2, 3, 3, 5, 5),
        branch_channels: int = 8,
        blocks: int = 2,
        hidden: Sequence[int] = (128,),
        dropout: float = 0.3,
        activation: str = "relu",
        pool_to: int = 8,
    ) -> None:
        super().__init__()
        width = branch_channels * len(kernel_sizes)
        self.features = nn.Sequential(
            *(
                MultiKernelBlock(in_channels if i == 0 else width, branch_channels, kernel_sizes, activation)
                for i in range(blocks)
            )
        )
        h, w = (n // 2**blocks for n in image_size)
        _check_positive("multikernel_cnn", image_size, h, w)
        self.pool = nn.AdaptiveAvgPool2d(pool_to)
        self.head = nn.Sequential(*_mlp_head([width * pool_to * pool_to, *hidden, num_outputs], dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)).flatten(1))
