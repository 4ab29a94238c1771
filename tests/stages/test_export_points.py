"""The point models export through the stage's own path (e2e.stages.export.export_model) with parity 1e-4:
inputs points, features, mask (and globals), batch and point axes dynamic; the standardisation of the
features (padded slots left zero) and of the jet-level inputs inside the graph."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from e2e.config import ExportParams
from e2e.inference.onnx_model import session
from e2e.models import POINT_MODELS
from e2e.models.wrappers import ModelSpec, wrap_from_spec
from e2e.runtime.points import PointBatch
from e2e.stages import export
from e2e.store.sparse import SparseImages

from support.images import dense_images
from support.points import to_points_of

META = {"task": '"jet_mass"', "output": '"jet mass"'}


def point_batches(globals_: int) -> list[tuple[PointBatch, None]]:
    """Two batches of different point counts from dense images' non-zero pixels, features far from
    standardised (x 50), and random jet-level inputs."""
    x = dense_images(n=20, shape=(3, 16, 16), seed=2)[:10] * 50
    images, rng, out = SparseImages.from_dense(x), np.random.default_rng(0), []
    for rows in (np.arange(6), np.arange(6, 10)):
        batch = to_points_of(images, rows, [0, 1, 2], [1, 2], max_points=40)
        g = torch.from_numpy(rng.normal(300, 50, (len(rows), globals_)).astype(np.float32)) if globals_ else None
        out.append((batch._replace(globals_=g), None))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("globals_", [0, 1], ids=["points", "points+globals"])
@pytest.mark.parametrize("name", POINT_MODELS)
def test_point_models_export_with_parity(name, globals_):
    torch.manual_seed(0)
    spec = ModelSpec(
        model=name,
        model_kwargs={},
        in_channels=3,
        image_size=[16, 16],
        num_outputs=1,
        classification=False,
        task="jet_mass",
        points=True,
        max_points=40,
        energy_channels=[1, 2],
        global_inputs=["pt"] if globals_ else None,
    )
    model = wrap_from_spec(spec).eval()
    model.set_stats([20.0, 10.0, 5.0], [30.0, 20.0, 10.0], 150.0, 40.0)
    if globals_:
        model.set_global_stats([300.0], [50.0])
    batches = point_batches(globals_)
    graph, worst, n = export.export_model(model, batches, output="mass", meta=META, ep=ExportParams(), where=name)
    assert n == 10 and worst <= ExportParams().tolerance
    names = [i.name for i in session(graph).get_inputs()]
    assert names == ["points", "features", "mask"] + (["globals"] if globals_ else [])
    assert session(graph).get_inputs()[1].shape[:2] == ["batch", "points"]


def test_padded_slots_stay_zero_after_standardisation():
    spec = ModelSpec(
        model="gnn",
        model_kwargs={},
        in_channels=3,
        image_size=[16, 16],
        num_outputs=1,
        classification=True,
        points=True,
    )
    model = wrap_from_spec(spec)
    model.set_stats([1.0, 2.0, 3.0], [2.0, 2.0, 2.0])
    seen = {}
    model.net.forward = lambda p, f, m, *g: seen.update(p=p, f=f) or f.sum((1, 2))[:, None]
    batch, _ = point_batches(0)[0]
    model(batch)
    mask = batch.mask[..., None]
    assert torch.equal(seen["p"], batch.points)  # positions untouched
    assert not seen["f"].masked_select(~mask).any()
    torch.testing.assert_close(seen["f"], torch.where(mask, (batch.features - torch.tensor([1.0, 2, 3])) / 2, 0))
