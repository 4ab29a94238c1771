"""The training tests' params (electron_photon, a tiny resnet15, two epochs on the CPU) and repo-like roots that
hold the real-format e/gamma files converted and split, ready for `train`: test_train, test_ddp, test_ensemble,
test_engine and test_gpu start from them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from e2e.config import Paths, parse_params
from e2e.stages import convert, split

# training's behaviour does not depend on the file layouts: the project's own files only ([shared] would repeat it)
OWN = pytest.mark.parametrize("formats_dir", ["own"], indirect=True)
RAW = {
    "split": {"seed": 3, "val_fraction": 0.25, "test_fraction": 0.25},
    "runtime": {"device": "cpu", "threads": 1},
    "train": {
        "electron_photon": {
            "model": "resnet15",
            "model_kwargs": {"width": 4},
            "epochs": 2,
            "batch_size": 16,
            "augment": ["flip_eta", "flip_phi"],
            "label_smoothing": 0.05,
        }
    },
}


def prepared_root(root: Path, raw: dict, formats: Path) -> Path:
    """A repo-like root holding the real-format e/gamma files of `formats` (the formats_dir fixture: the
    project's own files, and ../shared/formats where present), converted and split."""
    shutil.copytree(formats / "electron_photon", root / "data" / "raw" / "electron_photon")
    params = parse_params(raw)
    convert.main(params, "electron_photon", Paths(root))
    split.main(params, "electron_photon", Paths(root))
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    return root


def raw_with(**train_overrides) -> dict:
    raw = json.loads(json.dumps(RAW))
    raw["train"]["electron_photon"].update(train_overrides)
    return raw
