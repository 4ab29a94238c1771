"""The architecture registry: every image model trains a step on both image geometries of the project, and
the reference models have the layer sizes printed in ../shared/references/. The point models, fed points
rather than images, have their own tests (tests/unit/test_point_models.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from e2e.models import MODELS, POINT_MODELS, build_model

# Small widths keep the parametrised test fast on a 2-core CPU; models not listed run at defaults.
SMALL_KWARGS: dict[str, dict] = {
    "resnet15": {"width": 4},
    "lenet5": {"dropout": [0.25, 0.5], "channels": [3, 4]},
    "vgg12": {"width": 4, "hidden": [32, 16]},
    "resnet18_mass": {"width": 4, "hidden": [32, 16, 8]},
    "mlp": {"hidden": [16]},
    "multikernel_cnn": {"branch_channels": 2, "hidden": [8], "activation": "prelu"},
    "convnext_small": {"dims": [8, 16, 32], "depths": [1, 1, 1]},
    "vit_small": {"dim": 16, "depth": 1, "heads": 2},
    "densenet121": {"growth_rate": 4},  # timm's: 2 * growth_rate stem channels
    "shufflenet_v2": {"width_mult": 0.5},
    "squeezenet": {"version": "1_1"},
}
IMAGE_MODELS = sorted(set(MODELS) - set(POINT_MODELS))
GEOMETRIES = [(2, (32, 32)), (3, (125, 125))]  # e/gamma crops; quark/gluon jets


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_small_kwargs_name_registered_models():
    assert set(SMALL_KWARGS) <= set(IMAGE_MODELS)


def test_point_models_are_told_apart():
    """The pipeline feeds POINT_MODELS points: they, and only they, say so on their classes."""
    assert POINT_MODELS and set(POINT_MODELS) < set(MODELS)
    assert all(getattr(MODELS[name], "takes_points", False) for name in POINT_MODELS)
    assert not any(getattr(MODELS[name], "takes_points", False) for name in IMAGE_MODELS)


@pytest.mark.parametrize("channels,image_size", GEOMETRIES, ids=["2x32x32", "3x125x125"])
@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_forward_backward(name, channels, image_size):
    torch.manual_seed(0)
    model = build_model(name, channels, 3, image_size, **SMALL_KWARGS.get(name, {}))
    out = model(torch.rand(2, channels, *image_size))
    assert out.shape == (2, 3)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_eval_is_deterministic_and_outputs_are_raw(name):
    """Eval mode switches off dropout/stochastic depth; outputs are logits, not probabilities.

    squeezenet once ended in torchvision's ReLU, so its 'logits' could never be negative."""
    torch.manual_seed(0)
    model = build_model(name, 2, 16, (32, 32), **SMALL_KWARGS.get(name, {})).eval()
    x = torch.rand(4, 2, 32, 32)
    with torch.no_grad():
        first, second = model(x), model(x)
    assert torch.equal(first, second)
    assert first.min() < 0, "outputs must be raw (no ReLU/sigmoid/softmax at the end)"


VARIANTS = [
    ("vit_small", {"dim": 16, "depth": 1, "heads": 2, "pool": "mean", "patch_size": 5}),
    ("vgg12", {"width": 2, "hidden": [8], "padding": 1}),
    ("multikernel_cnn", {"branch_channels": 2, "kernel_sizes": [2, 4], "blocks": 3, "pool_to": 2}),
    ("squeezenet", {}),
    ("resnet18", {"small_input": True}),
]


@pytest.mark.parametrize("name,kwargs", VARIANTS, ids=[name for name, _ in VARIANTS])
def test_kwarg_variants(name, kwargs):
    model = build_model(name, 3, 1, (125, 125), **kwargs)
    assert model(torch.rand(2, 3, 125, 125)).shape == (2, 1)


def test_build_model_accepts_list_image_size_and_8_channels():
    model = build_model("resnet18_mass", 8, 1, [125, 125], width=2, hidden=[4])
    assert model(torch.rand(2, 8, 125, 125)).shape == (2, 1)


def test_unknown_name_lists_choices():
    with pytest.raises(KeyError) as err:
        build_model("resnet99", 2, 1, (32, 32))
    message = str(err.value)
    assert "resnet99" in message
    assert ", ".join(sorted(MODELS)) in message


@pytest.mark.parametrize("name", sorted(MODELS))
def test_unknown_kwarg_raises_type_error(name):
    with pytest.raises(TypeError):
        build_model(name, 2, 1, (32, 32), no_such_knob=1)


def test_resnet15_matches_reference_printout():
    """electron_photon_resnet15.md: 2 -> 16-32-64, 1x1 strided shortcuts, Linear(64, 1)."""
    model = build_model("resnet15", 2, 1, (32, 32))
    assert model.conv1.weight.shape == (16, 2, 3, 3)
    assert model.conv1.stride == (1, 1)
    assert model.layer1[1].conv2.weight.shape == (16, 16, 3, 3)
    assert model.layer2[0].conv1.stride == (2, 2)
    assert model.layer2[0].shortcut[0].weight.shape == (32, 16, 1, 1)
    assert len(model.layer2[1].shortcut) == 0
    assert model.layer3[0].shortcut[0].weight.shape == (64, 32, 1, 1)
    assert model.linear.weight.shape == (1, 64)
    # summed from the printout: stem 320, layer1 9,344, layer2 33,088, layer3 131,712, linear 65
    assert n_params(model) == 174_529


def test_lenet5_reference_sizes():
    """quark_gluon_lenet5.md: Linear(in_features=12544, 120) on 3x125x125."""
    model = build_model("lenet5", 3, 2, (125, 125))
    assert model.fc1.in_features == 12544
    assert (model.fc1.out_features, model.fc2.out_features, model.fc3.out_features) == (120, 84, 2)
    assert (model.dropout1.p, model.dropout2.p) == (0.25, 0.5)
    assert build_model("lenet5", 2, 1, (32, 32)).fc1.in_features == 16 * 5 * 5


def test_vgg12_reference_sizes():
    """The VGG-12 write-up linked from overview_resnet15_vgg12_lenet5.md: 9 convs, Linear(4608, 4096)."""
    model = build_model("vgg12", 3, 2, (125, 125), width=8, hidden=[16, 8])
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert len(convs) == 9 and all(c.padding == (0, 0) for c in convs)
    assert model.classifier[0].in_features == 8 * 8 * 3 * 3  # 4608 at the reference width 64


def test_resnet18_mass_reference_sizes():
    """jet_mass_resnet18.md: 4 channels, width 64, fc1 Linear(65536, 512) -> 256 -> 128 -> 1."""
    model = build_model("resnet18_mass", 4, 1, (125, 125), width=64)
    assert model.conv1.weight.shape == (64, 4, 3, 3)
    assert model.layer3[0].conv1.weight.shape == (256, 128, 3, 3)
    assert model.fc1.in_features == 65536
    assert [model.fc2.in_features, model.fc3.in_features, model.fc4.in_features] == [512, 256, 128]
    assert model.fc4.out_features == 1


def test_convnext_small_is_about_half_a_million_parameters():
    assert 0.4e6 < n_params(build_model("convnext_small", 2, 1, (32, 32))) < 0.7e6


def test_classic_models_adapt_stem_to_image_size():
    """resnet18 is timm's, its stem adapted to 32x32 (tests/unit/test_timm.py checks every family)."""
    small = build_model("resnet18", 2, 1, (32, 32))
    large = build_model("resnet18", 3, 1, (125, 125))
    assert small.conv1.stride == (1, 1) and isinstance(small.maxpool, nn.Identity)
    assert large.conv1.stride == (2, 2) and isinstance(large.maxpool, nn.MaxPool2d)
    assert large.conv1.in_channels == 3
