"""GPU-only checks (skipped without CUDA; run on a lent GPU machine): the fast path really is used."""
import json

import pytest
import torch

from e2e import train
from e2e.config import Paths, parse_params
from e2e.data import Converted, SparseBatches, make_batches

from test_train import RAW, prepared_root

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def gpu_raw(**runtime):
    raw = json.loads(json.dumps(RAW))
    raw["runtime"] = {"device": "cuda", "amp": True, "channels_last": True, **runtime}
    return raw


def test_training_set_is_resident_on_the_gpu(tmp_path, formats_dir):
    raw = gpu_raw()
    root = prepared_root(tmp_path, raw, formats_dir)
    params = parse_params(raw)
    data = Converted(root / "data" / "converted" / "electron_photon")
    batches = make_batches(data, list(range(100)), [0, 1], 16, torch.device("cuda"), True, 0, params.runtime)
    assert isinstance(batches, SparseBatches) and batches.values.is_cuda and batches.values.dtype == torch.float16
    x, y = next(iter(batches))
    assert x.is_cuda and x.shape == (16, 2, 32, 32) and y.is_cuda


@pytest.mark.parametrize("compile_", [False, True])
def test_bf16_channels_last_training_on_gpu(tmp_path, formats_dir, compile_):
    raw = gpu_raw(compile=compile_)
    root = prepared_root(tmp_path, raw, formats_dir)
    train.main(parse_params(raw), "electron_photon", Paths(root))
    summary = json.loads((root / "metrics/electron_photon/train/metrics.json").read_text())
    assert summary["best_val_roc_auc"] == summary["best_val_roc_auc"]  # finite, not NaN
    ckpt = torch.load(root / "models/electron_photon/model.pt", weights_only=True)
    assert all(v.device.type == "cpu" for v in ckpt["state_dict"].values())
