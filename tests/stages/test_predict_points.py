"""`e2e predict` with a point model, and with an image model given jet-level inputs, on raw files in the real
layouts: both backends agree (export's parity), and the torch backend gives what the model gives on the
converted data through training's own batches (e2e.runtime.points.batches_for), so predict's numpy points
(e2e.inference.inputs) are the ones training built from the sparse entries."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from e2e.config import RuntimeParams
from e2e.errors import E2EError
from e2e.inference import predict
from e2e.inference.inputs import InputLayout
from e2e.inference.onnx_model import worst_difference
from e2e.runtime.forward import predict as forward
from e2e.runtime.points import batches_for
from e2e.store.checkpoints import load_checkpoint

from support.model_dirs import TOLERANCE, exported

# one point model per task; jet mass with the jet pT as a jet-level input, as the public GNN
POINT_CASES = {
    "electron_photon": (("particle_transformer", {"dim": 16, "layers": 1, "heads": 2}), {"max_points": 12}),
    "quark_gluon": (("particlenet", {}), {"max_points": 20}),
    "jet_mass": (("gnn", {"dim": 16, "layers": 1}), {"max_points": None, "global_inputs": ("pt",)}),
}


def on_converted(model_path, data) -> np.ndarray:
    """The model on every converted row through the batches training and evaluate use."""
    model, spec, _ = load_checkpoint(model_path)
    rows = np.arange(len(data.target))
    options = {"batch_size": 4, "device": torch.device("cpu"), "shuffle": False, "seed": 0}
    batches = batches_for(spec, data, rows, runtime=RuntimeParams(device="cpu"), **options)
    raw, _ = forward(model, batches, torch.device("cpu"))
    return model.decode(raw).numpy()


def both_backends(raw_root, tmp_path, task, data, model_path):
    files = [raw_root / "data" / "raw" / task / s["file"] for s in data.meta["sources"]]
    got = {}
    for backend in ("torch", "onnx"):
        out = tmp_path / f"{backend}.parquet"
        model = model_path.parent / predict.BACKENDS[backend][1]
        predict.main(task, files, out, model, batch_rows=3, device_name="cpu", backend=backend)
        frame = pq.read_table(out).to_pandas()
        # the prediction and each member's; the uncertainty (their spread, a difference of near-equal masses)
        # amplifies float32 rounding and is checked against the members in test_predict
        got[backend] = frame[[c for c in frame if c.startswith("prediction")]].to_numpy()
    return got


@pytest.mark.slow
@pytest.mark.parametrize("task", list(POINT_CASES))
def test_predict_with_a_point_model_matches_training_batches_on_both_backends(raw_root, tmp_path, task):
    model, options = POINT_CASES[task]
    # an ensemble of two on jet mass: the members' outputs through export and both backends
    model_path, data = exported(raw_root, task, model, members=2 if task == "jet_mass" else 1, **options)
    got = both_backends(raw_root, tmp_path, task, data, model_path)
    want = on_converted(model_path, data)
    np.testing.assert_allclose(got["torch"][:, 0], want, rtol=1e-5, atol=1e-5)
    assert worst_difference(got["onnx"], got["torch"]) <= TOLERANCE  # every member's prediction too
    assert np.ptp(want) > 0  # the predictions depend on the event: a constant would pass the comparisons


@pytest.mark.slow
@pytest.mark.parametrize("members", [1, 2])
def test_an_image_model_with_a_jet_level_input_predicts_on_both_backends(raw_root, tmp_path, members):
    model_path, data = exported(raw_root, "jet_mass", members=members, global_inputs=("pt",))
    got = both_backends(raw_root, tmp_path, "jet_mass", data, model_path)
    assert got["torch"].shape[1] == (1 if members == 1 else 1 + members)  # the prediction, each member's
    np.testing.assert_allclose(got["torch"][:, 0], on_converted(model_path, data), rtol=1e-5, atol=1e-5)
    assert worst_difference(got["onnx"], got["torch"]) <= TOLERANCE


def test_a_file_without_the_models_jet_level_input_is_one_clear_error():
    layout = InputLayout(global_inputs=("pt",))
    with pytest.raises(E2EError, match=r"^f.parquet rows 0-2: the model takes jet-level input 'pt', which the file"):
        layout.build(np.zeros((2, 1, 4, 4), np.float32), {"m0": np.ones(2)}, "f.parquet rows 0-2")
