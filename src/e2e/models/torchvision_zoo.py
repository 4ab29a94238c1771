"""torchvision's ShuffleNetV2 and SqueezeNet, the two families quark_gluon_lenet5.md tried that timm lacks
(its MobileNet, EfficientNet, DenseNet and the survey's ResNet-18/34 come from timm_zoo), adapted to detector
images: any number of input channels, num_outputs raw outputs, random initialisation (weights=None:
ImageNet weights know nothing of calorimeter deposits, and nothing is ever downloaded).

Small inputs (min side < 64, e.g. the 32x32 e/gamma crops) get a 3x3 stride-1 first conv, and ShuffleNet
loses its stem max pool, as the CIFAR variants of these networks do: the ImageNet stem would shrink 32x32
to 8x8 before the first block. torchvision is imported inside each constructor, never at import time."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

# ShuffleNetV2 channel tables of torchvision's shufflenet_v2_x{0_5,1_0,1_5,2_0} builders
_SHUFFLE_CHANNELS = {
    0.5: [24, 48, 96, 192, 1024],
    1.0: [24, 116, 232, 464, 1024],
    1.5: [24, 176, 352, 704, 1024],
    2.0: [24, 244, 488, 976, 2048],
}


def _is_small(image_size: Sequence[int], small_input: bool | None) -> bool:
    return min(image_size) < 64 if small_input is None else small_input


def _pair(size: tuple[int, ...]) -> tuple[int, int]:
    """A Conv2d's kernel_size, stride or padding: always a pair, though torch annotates it as a tuple of any length."""
    h, w = size
    return h, w


def _stem_conv(old: nn.Conv2d, in_channels: int, small: bool) -> nn.Conv2d:
    """A fresh first conv with in_channels inputs; 3x3 stride 1 for small images, else the original shape."""
    kernel: int | tuple[int, int]
    stride: int | tuple[int, int]
    padding: int | str | tuple[int, int]
    if small:
        kernel, stride, padding = 3, 1, 1
    else:  # padding may be a string ("same", "valid") that Conv2d takes as it is
        kernel, stride = _pair(old.kernel_size), _pair(old.stride)
        padding = old.padding if isinstance(old.padding, str) else _pair(old.padding)
    conv = nn.Conv2d(in_channels, old.out_channels, kernel, stride, padding, bias=old.bias is not None)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


def shufflenet_v2(
    in_channels: int,
    num_outputs: int,
    image_size: Sequence[int],
    *,
    width_mult: float = 1.0,
    small_input: bool | None = None,
) -> nn.Module:
    """ShuffleNetV2 with stage repeats (4, 8, 4); width_mult picks one of torchvision's x0.5-x2.0 tables."""
    from torchvision import models

    if width_mult not in _SHUFFLE_CHANNELS:
        choices = sorted(_SHUFFLE_CHANNELS)
        raise ValueError(f"shufflenet_v2: width_mult must be one of {choices}, got {width_mult}")
    net = models.ShuffleNetV2([4, 8, 4], _SHUFFLE_CHANNELS[width_mult], num_classes=num_outputs)
    small = _is_small(image_size, small_input)
    net.conv1[0] = _stem_conv(net.conv1[0], in_channels, small)
    if small:
        net.maxpool = nn.Identity()
    return net


def squeezenet(
    in_channels: int,
    num_outputs: int,
    image_size: Sequence[int],
    *,
    version: str = "1_0",
    dropout: float = 0.5,
    small_input: bool | None = None,
) -> nn.Module:
    from torchvision import models

    net = models.SqueezeNet(version, num_classes=num_outputs, dropout=dropout)
    net.features[0] = _stem_conv(net.features[0], in_channels, _is_small(image_size, small_input))
    # torchvision ends the classifier with a ReLU before the pool: logits and regressed values must be
    # free to go negative, so it goes.
    net.classifier[2] = nn.Identity()
    return net
