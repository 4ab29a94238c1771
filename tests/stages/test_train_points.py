"""A point model through train, evaluate and export on the e/gamma real-layout files (the stages' own paths):
the checkpoint's spec says it takes points, evaluate predicts every val and test row, export's graph takes
points, features and mask and matches PyTorch."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from e2e.config import Paths, parse_params
from e2e.inference.onnx_model import session
from e2e.stages import evaluate, export, train

from support.training_roots import OWN, prepared_root, raw_with


@OWN
@pytest.mark.slow
def test_a_point_model_trains_evaluates_and_exports(tmp_path, formats_dir):
    raw = raw_with(model="gnn", model_kwargs={"dim": 16, "layers": 1}, augment=[], max_points=64)
    root = prepared_root(tmp_path, raw, formats_dir)
    params, paths = parse_params(raw), Paths(root)
    train.main(params, "electron_photon", paths)
    spec = torch.load(root / "models/electron_photon/model.pt", weights_only=True)["spec"]
    assert spec["points"] is True and spec["max_points"] == 64 and spec["energy_channels"] == [0]
    assert "global_inputs" not in spec  # None is omitted, as members is
    evaluate.main(params, "electron_photon", paths)
    df = pd.read_parquet(root / "metrics/electron_photon/eval/predictions.parquet")
    assert df["prediction"].between(0, 1).all() and len(df) > 0
    export.main(params, "electron_photon", paths)
    ort = session((root / "models/electron_photon/model.onnx").read_bytes())
    assert [i.name for i in ort.get_inputs()] == ["points", "features", "mask"]
    inputs = json.loads(ort.get_modelmeta().custom_metadata_map["inputs"])
    assert inputs["max_points"] == 64 and inputs["energy_channels"] == ["energy"]
