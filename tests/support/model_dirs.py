"""Model directories as `train` writes them (model.pt, preprocessing.json) and, through the `export` stage,
model.onnx, built on the files in the real layouts with non-trivial preprocessing: test_predict, test_export and
test_evaluate run on them.

Each model sees a subset of the converted channels, in another order, so that predict must compose both
selections; `reference` is what the model gives on the converted (training-format) images.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from e2e.config import Paths, TrainParams, parse_params
from e2e.models.wrappers import wrap_from_spec
from e2e.runtime.batches import Converted, global_values
from e2e.runtime.stats import channel_stats
from e2e.sources.registry import DATASETS
from e2e.stages import convert, export, train
from e2e.store.checkpoints import load_checkpoint, save_checkpoint
from e2e.tasks import get_task

SMALL = {
    "electron_photon": ("resnet15", {"width": 4}),
    "quark_gluon": ("lenet5", {}),
    "jet_mass": ("resnet18_mass", {"width": 2}),
}
# non-trivial preprocessing: a mismatch between convert and predict would change the outputs
CONVERT = {
    "electron_photon": {"channels": [1, 0], "scale": [2.0, 0.5], "clip": 3.0, "zero_below": 0.01},
    "quark_gluon": {"channels": [2, 0], "scale": [3.0, 0.5], "clip": 2.0},
    "jet_mass": {"channels": [0, 3, 1], "scale": [1.0, 2.0, 0.1], "clip": 1.0},
}
# the model sees a subset of the converted channels, in another order: predict must compose both selections
MODEL_CHANNELS = {"electron_photon": None, "quark_gluon": [1, 0], "jet_mass": [2, 0]}
TASKS = ("electron_photon", "quark_gluon", "jet_mass")
EXPORT_PARAMS = parse_params({"export": {"batch_size": 4, "parity_batches": 2}})
TOLERANCE = EXPORT_PARAMS.export.tolerance


def make_model_dir(
    root: Path, task: str, out: Path, model: tuple | None = None, members: int = 1, **train_options
) -> tuple[Path, Converted]:
    """Convert the raw files, then write model.pt and preprocessing.json as `train` does; with members > 1
    an ensemble of differently initialised members, as `train.<task>.ensemble` joins them; `train_options`:
    more TrainParams fields (a point model's max_points, global_inputs)."""
    params = parse_params(
        {
            "convert": {task: CONVERT[task]},
            "runtime": {"convert_workers": 1},
            "datasets": {"jet_mass": {"files": [DATASETS["jet_mass"].files[0].name]}},
        }
    )
    convert.main(params, task, Paths(root))
    data = Converted(root / "data" / "converted" / task)
    name, kwargs = model or SMALL[task]
    tp = TrainParams(model=name, model_kwargs=kwargs, channels=MODEL_CHANNELS[task], **train_options)
    spec = train.model_spec(get_task(task), data, tp)
    spec = spec if members == 1 else dataclasses.replace(spec, members=members)
    torch.manual_seed(0)
    net = wrap_from_spec(spec)
    idx = np.arange(len(data.target))
    for member in net.members if members > 1 else [net]:
        member.set_stats(
            *channel_stats(data.images, idx, data.channels(spec.channels)),
            *((0.0, 1.0) if task != "jet_mass" else (250.0, 100.0)),
        )
        if spec.global_inputs:  # non-trivial moments: they must survive the checkpoint, the export and predict
            values = global_values(data, spec.global_inputs, "test")
            member.set_global_stats(values.mean(0) + 1.0, values.std(0) * 2 + 0.5)
    out.mkdir(parents=True)
    save_checkpoint(out / "model.pt", net.eval(), spec, epoch=0, metrics={})
    (out / "preprocessing.json").write_text(json.dumps(train.preprocessing(data, data.channels(spec.channels))))
    return out / "model.pt", data


def exported(
    root: Path, task: str, model: tuple | None = None, members: int = 1, **train_options
) -> tuple[Path, Converted]:
    """models/<task>/ with model.pt, preprocessing.json and model.onnx, under the repo-like `root`."""
    model_path, data = make_model_dir(root, task, root / "models" / task, model, members, **train_options)
    export.export_dir(task, model_path.parent, data, np.arange(len(data.target)), params=EXPORT_PARAMS, root=root)
    return model_path, data


def reference(model_path: Path, data: Converted, members: bool = False) -> np.ndarray:
    """The model on the converted (training-format) images; with members, each member's predictions (N, K)."""
    model, spec, _ = load_checkpoint(model_path)
    x = torch.from_numpy(data.images[np.arange(len(data.target))][:, data.channels(spec.channels)])
    with torch.inference_mode():
        return model.decode_members(model(x)).numpy() if members else model.decode(model(x)).numpy()
