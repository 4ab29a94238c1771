"""Jet-level inputs (train.<task>.global_inputs) for any model: an image model takes them after its own
output, read as an embedding (e2e.models.fusion), standardised with the training rows' moments inside the
model; image batches carry them as an ImageBatch; augmentations leave them alone; an unknown name is refused
listing the observers there are (the target's refusal: tests/unit/test_params.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from e2e.errors import E2EError
from e2e.models.wrappers import ModelSpec, wrap_from_spec
from e2e.runtime.batches import ImageBatch, global_values, make_batches
from e2e.store.sparse import SparseImages
from e2e.training.augment import make_augment

from support.images import dense_images


def spec(**kw) -> ModelSpec:
    base = dict(model="resnet15", model_kwargs={"width": 4}, in_channels=3, image_size=[16, 16], num_outputs=1)
    return ModelSpec(**(base | {"classification": False, "task": "jet_mass", "global_inputs": ["pt"]} | kw))


def test_an_image_model_uses_its_standardised_jet_level_input():
    torch.manual_seed(0)
    model = wrap_from_spec(spec()).eval()
    model.set_global_stats([300.0], [50.0])
    images = torch.from_numpy(dense_images(n=20, shape=(3, 16, 16))[:4].astype(np.float32))
    pt = torch.tensor([[250.0], [300.0], [350.0], [400.0]])
    with torch.inference_mode():
        out = model(ImageBatch(images, pt))
        assert not torch.allclose(out, model(ImageBatch(images, pt + 100.0)))  # the input is used
        # standardised inside: moments (300, 50) on pt are the identity's on (pt - 300) / 50
        model.set_global_stats([0.0], [1.0])
        torch.testing.assert_close(model(ImageBatch(images, (pt - 300.0) / 50.0)), out)
    assert spec().to_dict()["global_inputs"] == ["pt"] and "global_inputs" not in spec(global_inputs=None).to_dict()


def test_augmentations_transform_the_images_of_an_image_batch_only():
    torch.manual_seed(1)
    images = torch.from_numpy(dense_images(n=20, shape=(3, 16, 16))[:8].astype(np.float32))
    pt = torch.arange(8.0)[:, None]
    out = make_augment(["flip_eta", "flip_phi"])(ImageBatch(images, pt))
    assert isinstance(out, ImageBatch) and torch.equal(out.globals_, pt)
    assert not torch.equal(out.images, images)


def test_image_batches_carry_each_rows_jet_level_inputs():
    x = dense_images(n=20, shape=(3, 16, 16))
    data = SimpleNamespace(images=SparseImages.from_dense(x), target=np.arange(20, dtype=np.float32))
    pt = (np.arange(20, dtype=np.float32) * 10)[:, None]
    batches = make_batches(
        data,
        np.arange(2, 20, 3),
        [0, 1, 2],
        batch_size=4,
        device=torch.device("cpu"),
        shuffle=True,
        seed=5,
        runtime=SimpleNamespace(resident_max_gb=1.0, channels_last=False),
        globals_=pt,
    )
    for batch, y in batches:
        assert isinstance(batch, ImageBatch)
        torch.testing.assert_close(batch.globals_[:, 0], y * 10)  # y is the row: each row's own pt


def test_an_unknown_jet_level_input_names_the_observers_there_are():
    data = SimpleNamespace(path=Path("data/converted/jet_mass"), observers={"pt": np.ones(3), "ieta": np.ones(3)})
    with pytest.raises(E2EError, match=r"'eta' is not an observer of data/converted/jet_mass \(available: pt, ieta\)"):
        global_values(data, ["pt", "eta"], "train.jet_mass.global_inputs")
