"""bench/realism_model.py says which model its figures are of.

Its figures are of whatever model.pt the workspace holds, and training is not bit-identical across CPUs
(docs/reproducibility.md): on 2026-12-03 a model that `dvc repro` trained on another machine scored the real
crops at ROC-AUC 0.669, where the model dvc.lock records scores 0.656. A report that does not say which it
measured would pass one machine's figure off as the committed model's.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SHOWN = Path("models/electron_photon/model.pt")


@pytest.fixture(scope="module")
def realism_model():
    sys.path.insert(0, str(ROOT / "bench"))  # it imports bench/realism.py
    spec = importlib.util.spec_from_file_location("realism_model", ROOT / "bench" / "realism_model.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("recorded", "says"),
    [("same", ", the one dvc.lock records"), ("other", ", NOT the one dvc.lock records"), (None, "no such output")],
)
def test_the_report_says_whether_its_model_is_the_one_dvc_lock_records(realism_model, tmp_path, recorded, says):
    model, lock = tmp_path / "model.pt", tmp_path / "dvc.lock"
    model.write_bytes(b"weights")
    md5 = {"same": hashlib.md5(b"weights").hexdigest(), "other": hashlib.md5(b"other").hexdigest()}.get(recorded)
    outs = [{"path": "models/electron_photon/preprocessing.json", "md5": "0" * 32}]
    outs += [{"path": SHOWN.as_posix(), "md5": md5}] if md5 else []
    lock.write_text(yaml.safe_dump({"stages": {"train@electron_photon": {"outs": outs}}}))
    text = realism_model.provenance(model, SHOWN, lock)
    assert says in text, text
    assert hashlib.md5(b"weights").hexdigest() in text
