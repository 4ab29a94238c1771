"""Any model of the timm library by name (`train.<task>.model: timm/<name>`), and the registry's ImageNet
classics (resnet18, resnet34, mobilenet_v3_small, efficientnet_b0, densenet121) built through it.

Never pretrained: ImageNet weights know nothing of calorimeter deposits, and a training stage must not
download. The model is timm.create_model(name, pretrained=False, in_chans=C, num_classes=N, **model_kwargs)
with random initialisation; the keywords that would load weights are refused.

Small images (min side < 64, e.g. the 32x32 e/gamma crops): ImageNet stems downsample 4x (ResNet's stride-2
conv + max pool, ConvNeXt's 4x4 patchify) or 2x (EfficientNet, MobileNet, MobileViT), which leaves a 32x32
input a 1x1 map or nothing before the last stage. As the CIFAR variants of these networks do, the stem's
first conv becomes a 3x3 stride-1 conv and a stem pool becomes Identity (adapt_stem). Patch-embedding
transformers (ViT, DeiT, Swin, ...) keep their stem: they are built for the image size (img_size), and
their token grid is image_size / patch_size (patch_size is a model_kwarg).

timm is imported inside the functions: `import e2e.models` must not pay for it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from functools import partial
from types import ModuleType
from typing import Any

from torch import nn

PREFIX = "timm/"
SMALL_SIDE = 64  # images with a shorter side than this get the small-image stem
# create_model keywords that would load weights (from the hub or a file); pretrained=False is fixed
REFUSED = frozenset({"pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "checkpoint_path", "cache_dir"})

# registry name -> timm name, for the families timm provides (shufflenet_v2 and squeezenet it does not)
CLASSICS = {
    "resnet18": "resnet18",
    "resnet34": "resnet34",
    "mobilenet_v3_small": "mobilenetv3_small_100",
    "efficientnet_b0": "efficientnet_b0",
    "densenet121": "densenet121",
}


def build_timm(
    name: str,
    in_channels: int,
    num_outputs: int,
    image_size: Sequence[int],
    *,
    small_input: bool | None = None,
    **kwargs: Any,
) -> nn.Module:
    """timm model `name` (without the timm/ prefix) with C inputs and N raw outputs, never pretrained.

    small_input forces (True) or forbids (False) the small-image stem; None decides by image_size."""
    import timm

    if not timm.is_model(name):
        raise KeyError(
            f"unknown model {PREFIX + name!r}: {name!r} is not a timm {timm.__version__} model; {_suggest(timm, name)}"
        )
    refused = sorted(REFUSED & set(kwargs))
    if refused:
        raise TypeError(f"{PREFIX}{name}: model_kwargs {refused} refused: timm models are never pretrained here")
    model = _create(
        timm, name, in_channels=in_channels, num_outputs=num_outputs, image_size=tuple(image_size), kwargs=kwargs
    )
    small = min(image_size) < SMALL_SIDE if small_input is None else small_input
    if small and not hasattr(model, "patch_embed"):
        adapt_stem(model)
    return model


def classic(registry_name: str) -> partial[nn.Module]:
    """The registry's constructor for registry_name: build_timm of its timm name."""
    return partial(build_timm, CLASSICS[registry_name])


def _create(
    timm: ModuleType,
    name: str,
    *,
    in_channels: int,
    num_outputs: int,
    image_size: tuple[int, ...],
    kwargs: dict[str, Any],
) -> nn.Module:
    """img_size=image_size where the model takes it (ViTs fix their position embedding to it), else without."""
    args = dict(pretrained=False, in_chans=in_channels, num_classes=num_outputs)
    if "img_size" not in kwargs:
        try:
            return timm.create_model(name, **args, img_size=image_size, **kwargs)
        except TypeError as exc:  # CNNs refuse img_size before building anything; other errors are the user's
            if "img_size" not in str(exc):
                raise
    return timm.create_model(name, **args, **kwargs)


def _suggest(timm: ModuleType, name: str) -> str:
    """A few timm names close to `name`, from the family its leading letters name."""
    family = m.group(0) if (m := re.match(r"[a-z]*", name.lower())) else ""  # always a match, maybe empty
    pool = timm.list_models(f"{family}*") if family else []
    close = difflib.get_close_matches(name.lower(), pool or timm.list_models(), n=5, cutoff=0.5)
    if not close:
        return "see timm.list_models('<pattern>*')"
    return "close: " + ", ".join(PREFIX + c for c in close)


def first_conv_name(model: nn.Module) -> str:
    """The stem's first conv: timm's pretrained_cfg names it; else the first Conv2d in module order."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    first = cfg.get("first_conv")
    if isinstance(first, (list, tuple)):
        first = first[0] if first else None
    if first and isinstance(_get(model, first), nn.Conv2d):
        return first
    return next(n for n, m in model.named_modules() if isinstance(m, nn.Conv2d))


def adapt_stem(model: nn.Module) -> list[str]:
    """Stride-1 3x3 first conv, stem pool -> Identity; returns the names of the replaced modules.

    The stem pool is a max/avg pool with stride > 1 met after the first conv and before any strided conv
    (ResNet's maxpool, DenseNet's pool0); where a strided conv comes first (EfficientNet, MobileNet,
    MobileViT, ConvNeXt) the stem has no pool."""
    first = first_conv_name(model)
    changed = []
    old = model.get_submodule(first)
    if isinstance(old, nn.Conv2d) and max(_pair(old.stride)) > 1:  # a Conv2d: first_conv_name found it
        _set(model, first, _stride1_conv(old))
        changed.append(first)
    pool = _stem_pool(model, first)
    if pool is not None:
        _set(model, pool, nn.Identity())
        changed.append(pool)
    return changed


def _stem_pool(model: nn.Module, first: str) -> str | None:
    seen_first = False
    for name, module in model.named_modules():
        if name == first:
            seen_first = True
        elif not seen_first:
            continue
        elif isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)) and max(_pair(module.stride)) > 1:
            return name
        elif isinstance(module, nn.Conv2d) and max(_pair(module.stride)) > 1:
            return None
    return None


def _stride1_conv(old: nn.Conv2d) -> nn.Conv2d:
    """A fresh 3x3 stride-1 conv with old's channels: keeps H x W (a 7x7 or 4x4 kernel buys nothing at 32x32)."""
    conv = nn.Conv2d(old.in_channels, old.out_channels, 3, 1, 1, groups=old.groups, bias=old.bias is not None)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


def _pair(value: int | tuple[int, ...] | list[int]) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (list, tuple)) else (value, value)


def _get(model: nn.Module, dotted: str) -> nn.Module | None:
    try:
        return model.get_submodule(dotted)
    except AttributeError:
        return None


def _set(model: nn.Module, dotted: str, module: nn.Module) -> None:
    parent, _, leaf = dotted.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)
