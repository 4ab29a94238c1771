"""`train.<task>.model: timm/<name>`: every family the seeds and the model survey used builds, trains a step
and keeps a feature map on both image geometries, never pretrained; shufflenet_v2 and squeezenet (timm has
neither) come from torchvision under their registry names."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from e2e.models import build_model

from support.timm_families import TIMM_MODELS

GEOMETRIES = [(2, (32, 32)), (3, (125, 125))]  # e/gamma crops; quark/gluon jets

# at 32x32: (first conv, stem pool made Identity or None, first conv stride at 125x125)
STEMS = {
    "timm/mobilenetv3_small_050": ("conv_stem", None, 2),
    "timm/resnet10t": ("conv1.0", "maxpool", 2),
    "timm/efficientnet_b0": ("conv_stem", None, 2),
    "timm/densenet121": ("features.conv0", "features.pool0", 2),
    "timm/mobilevitv2_050": ("stem.conv", None, 2),
    "timm/convnext_atto": ("stem.0", None, 4),
}


def first_conv(model: nn.Module) -> nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize("channels,image_size", GEOMETRIES, ids=["2x32x32", "3x125x125"])
@pytest.mark.parametrize("name", list(TIMM_MODELS))
def test_forward_backward(name, channels, image_size):
    torch.manual_seed(0)
    model = build_model(name, channels, 1, image_size, **TIMM_MODELS[name])
    out = model(torch.rand(2, channels, *image_size))
    assert out.shape == (2, 1) and torch.isfinite(out).all()
    out.square().mean().backward()
    grad = first_conv(model).weight.grad
    assert first_conv(model).in_channels == channels
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize("name", [n for n in TIMM_MODELS if n.startswith("timm/")])
def test_32x32_keeps_a_feature_map_of_at_least_2x2(name):
    model = build_model(name, 2, 1, (32, 32), **TIMM_MODELS[name]).eval()
    with torch.no_grad():
        features = model.forward_features(torch.rand(1, 2, 32, 32))
    grid = model.patch_embed.grid_size if features.ndim == 3 else features.shape[-2:]  # ViT: (B, tokens, D)
    assert min(grid) >= 2, grid


@pytest.mark.parametrize("name", list(STEMS))
def test_stem_is_adapted_for_small_images_only(name):
    conv_name, pool_name, large_stride = STEMS[name]
    small = build_model(name, 2, 1, (32, 32), **TIMM_MODELS[name])
    large = build_model(name, 3, 1, (125, 125), **TIMM_MODELS[name])
    assert small.get_submodule(conv_name).stride == (1, 1)
    assert large.get_submodule(conv_name).stride == (large_stride, large_stride)
    if pool_name:
        assert isinstance(small.get_submodule(pool_name), nn.Identity)
        assert isinstance(large.get_submodule(pool_name), nn.MaxPool2d)


def test_vit_is_built_for_the_image_size_and_takes_patch_size():
    model = build_model("timm/vit_tiny_patch16_224", 2, 1, (32, 32), depth=1, patch_size=4)
    assert model.patch_embed.grid_size == (8, 8) and model.patch_embed.proj.stride == (4, 4)
    assert model(torch.rand(2, 2, 32, 32)).shape == (2, 1)


def test_small_input_forces_the_stem():
    model = build_model("timm/resnet10t", 3, 1, (125, 125), small_input=True)
    assert model.conv1[0].stride == (1, 1) and isinstance(model.maxpool, nn.Identity)


@pytest.mark.parametrize("name", [n for n in TIMM_MODELS if n.startswith("timm/")])
def test_unknown_kwarg_raises_type_error(name):
    with pytest.raises(TypeError, match="no_such_knob"):
        build_model(name, 2, 1, (32, 32), no_such_knob=1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"pretrained": True},
        {"checkpoint_path": "w.pth"},
        {"pretrained_cfg_overlay": {"hf_hub_id": "timm/resnet10t.a1_in1k"}},
    ],
)
def test_weights_are_never_loaded(kwargs):
    with pytest.raises(TypeError, match="never pretrained"):
        build_model("timm/resnet10t", 2, 1, (32, 32), **kwargs)


def test_unknown_timm_name_says_so_and_suggests_close_names():
    with pytest.raises(KeyError) as err:
        build_model("timm/resnet99", 2, 1, (32, 32))
    message = str(err.value)
    assert "'resnet99' is not a timm" in message and "timm/resnet18" in message


def test_registry_classics_come_from_timm():
    model = build_model("mobilenet_v3_small", 2, 1, (32, 32))
    assert model.pretrained_cfg["architecture"] == "mobilenetv3_small_100"
    assert model.conv_stem.stride == (1, 1)


def test_importing_the_registry_imports_neither_timm_nor_torchvision():
    code = "import sys, e2e.models; assert not {'timm', 'torchvision'} & set(sys.modules), 'imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
