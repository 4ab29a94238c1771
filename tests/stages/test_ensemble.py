"""Ensembles (`train.<task>.ensemble`): members trained apart, predicting together as the mean of their
probabilities, with their spread as a per-event uncertainty, through train, evaluate, predict (both backends)
and export."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from e2e.config import EnsembleParams, Paths, TrainParams, parse_params
from e2e.inference import predict
from e2e.inference.onnx_model import OnnxModel, worst_difference
from e2e.models.wrappers import Ensemble
from e2e.runtime.batches import Converted
from e2e.stages import evaluate, export, train
from e2e.store.checkpoints import load_checkpoint
from e2e.training.ensemble import member_rows

from support.training_roots import prepared_root

OWN = pytest.mark.parametrize("formats_dir", ["own"], indirect=True)
EG = "electron_photon"


def raw_params(mode: str) -> dict:
    return {
        "split": {"seed": 3, "val_fraction": 0.25, "test_fraction": 0.25},
        "runtime": {"device": "cpu", "threads": 1},
        "train": {
            EG: {
                "model": "resnet15",
                "model_kwargs": {"width": 4},
                "epochs": 2,
                "batch_size": 16,
                "ensemble": {"members": 2, "mode": mode},
            }
        },
        "evaluate": {"bootstrap": 20},
        "export": {"batch_size": 8, "parity_batches": 1},
    }


@pytest.mark.parametrize("mode", ["seeds", "subsets"])
def test_member_rows(mode):
    train_idx = np.arange(100, 150)
    tp = TrainParams(model="mlp", seed=7, ensemble=EnsembleParams(members=3, mode=mode))
    members = member_rows(train_idx, tp)
    assert [seed for seed, _ in members] == [7, 8, 9]
    rows = [r for _, r in members]
    if mode == "seeds":
        assert all(np.array_equal(r, train_idx) for r in rows)
    else:  # disjoint, equal shares that together are the training split
        assert sorted(len(r) for r in rows) == [16, 17, 17]
        assert np.array_equal(np.sort(np.concatenate(rows)), train_idx)


@OWN
@pytest.mark.parametrize("mode", ["seeds", "subsets"])
def test_an_ensemble_trains_evaluates_predicts_and_exports_as_the_mean_of_its_members(tmp_path, formats_dir, mode):
    raw = raw_params(mode)
    root = prepared_root(tmp_path, raw, formats_dir)
    params, paths = parse_params(raw), Paths(root)
    train.main(params, EG, paths)
    model, spec, _ = load_checkpoint(root / "models" / EG / "model.pt")
    assert isinstance(model, Ensemble) and len(model.members) == 2 and spec.ensemble_mode == mode
    summary = json.loads((root / "metrics" / EG / "train" / "metrics.json").read_text())
    assert set(summary["members"]) == {"1", "2"}
    assert (root / "metrics" / EG / "train" / "plots" / "metrics" / "member2" / "val" / "roc_auc.tsv").is_file()

    evaluate.main(params, EG, paths)
    df = pd.read_parquet(root / "metrics" / EG / "eval" / "predictions.parquet")
    data = Converted(root / "data" / "converted" / EG)
    x = torch.from_numpy(data.images[df["row"].to_numpy()])
    with torch.inference_mode():
        each = np.stack([m.decode(m(x)).numpy() for m in model.members], axis=1)
    np.testing.assert_allclose(df["prediction"], each.mean(axis=1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(df["uncertainty"], each.std(axis=1), rtol=1e-4, atol=1e-6)
    assert not np.allclose(each[:, 0], each[:, 1])  # the members differ, so the mean is not either one
    test = json.loads((root / "metrics" / EG / "eval" / "metrics.json").read_text())["test"]
    assert test["member_mean"]["roc_auc"] == pytest.approx(
        np.mean(
            [
                evaluate.metrics.roc_auc(df.loc[df.split == "test", "truth"].to_numpy(), each[df.split == "test", k])
                for k in range(2)
            ]
        )
    )

    export.main(params, EG, paths)
    onnx_out = OnnxModel(root / "models" / EG / "model.onnx")(x.numpy())
    assert worst_difference(onnx_out, each.mean(axis=1)) <= 1e-4

    files = [root / "data" / "raw" / EG / s["file"] for s in data.meta["sources"]]  # the converter's order
    with torch.inference_mode():
        everything = torch.from_numpy(data.images[np.arange(len(data.target))])
        mean = np.mean([m.decode(m(everything)).numpy() for m in model.members], axis=0)
    for backend, name in (("torch", "model.pt"), ("onnx", "model.onnx")):
        predict.main(EG, files, tmp_path / "p.parquet", root / "models" / EG / name, device_name="cpu", backend=backend)
        predicted = pd.read_parquet(tmp_path / "p.parquet")
        assert worst_difference(predicted["prediction"], mean) <= 1e-4, backend
        # predict's ensemble columns are evaluate's, event by event (`row` indexes the converted data, predict's order)
        same = predicted.iloc[df["row"].to_numpy()]
        for column in ("prediction", "uncertainty", "prediction_member1", "prediction_member2"):
            assert worst_difference(same[column], df[column]) <= 1e-4, (backend, column)
