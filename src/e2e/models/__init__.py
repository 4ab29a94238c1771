"""The architecture registry: one plain dict name -> constructor.

Every constructor is called as `constructor(in_channels, num_outputs, image_size, **kwargs)` with the
kwargs of params.yaml `train.<task>.model_kwargs`, and returns a module mapping (B, C, H, W) floats to
(B, num_outputs) raw outputs: logits or an unnormalised regression value, never a sigmoid or softmax
(the loss applies it). Unknown kwargs raise TypeError. Names `timm/<name>` build any timm model
(timm_zoo.build_timm). Layer 0: imports only torch (torchvision and timm lazily, inside the constructors).

The point models (POINT_MODELS; their classes say `takes_points = True`) take the same constructor
arguments plus `global_inputs` (default 0), but map (points (B, P, 2), features (B, P, C), mask (B, P)
[, globals_ (B, G)]) to (B, num_outputs): an event's non-zero pixels, padded per batch (models/points.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from e2e.models import timm_zoo
from e2e.models import torchvision_zoo as tv
from e2e.models.classic import MLP, VGG12, LeNet5, MultiKernelCNN
from e2e.models.graph import GNN
from e2e.models.modern import ConvNeXtSmall, ViTSmall
from e2e.models.particlenet import ParticleNet
from e2e.models.resnet import ResNet15, ResNet18Mass
from e2e.models.transformer import ParticleTransformer

MODELS: dict[str, Callable[..., nn.Module]] = {
    # the published reference architectures (../shared/references/)
    "resnet15": ResNet15,
    "lenet5": LeNet5,
    "vgg12": VGG12,
    "resnet18_mass": ResNet18Mass,
    # the model survey (model_survey_auc_tables.md)
    "mlp": MLP,
    "multikernel_cnn": MultiKernelCNN,
    "convnext_small": ConvNeXtSmall,
    "vit_small": ViTSmall,
    # ImageNet classics, adapted to C channels and small images: timm where it has the family ...
    "resnet18": timm_zoo.classic("resnet18"),
    "resnet34": timm_zoo.classic("resnet34"),
    "mobilenet_v3_small": timm_zoo.classic("mobilenet_v3_small"),
    "efficientnet_b0": timm_zoo.classic("efficientnet_b0"),
    "densenet121": timm_zoo.classic("densenet121"),
    # ... and torchvision where timm has none
    "shufflenet_v2": tv.shufflenet_v2,
    "squeezenet": tv.squeezenet,
    # point clouds and graphs on the non-zero pixels (issue 21)
    "particlenet": ParticleNet,
    "particle_transformer": ParticleTransformer,
    "gnn": GNN,
}
# the registered models fed points rather than images
POINT_MODELS = tuple(name for name, constructor in MODELS.items() if getattr(constructor, "takes_points", False))


def takes_points(name: str) -> bool:
    """Whether model `name` (a registry or timm/ name) is fed points (B, P, ...) rather than images."""
    return name in POINT_MODELS


def build_model(name: str, in_channels: int, num_outputs: int, image_size: Sequence[int], **kwargs) -> nn.Module:
    """Build MODELS[name], or timm's model for timm/<model>; unknown names raise KeyError listing the choices."""
    if name.startswith(timm_zoo.PREFIX):
        timm_name = name[len(timm_zoo.PREFIX) :]
        return timm_zoo.build_timm(timm_name, in_channels, num_outputs, tuple(image_size), **kwargs)
    try:
        constructor = MODELS[name]
    except KeyError:
        raise KeyError(
            f"unknown model {name!r}; choices: {', '.join(sorted(MODELS))}, "
            f"or {timm_zoo.PREFIX}<name> for any timm model"
        ) from None
    return constructor(in_channels, num_outputs, tuple(image_size), **kwargs)


__all__ = ["MODELS", "POINT_MODELS", "build_model", "takes_points"]
