"""Guards of what the committed params promise (issue 22): no setting in params.yaml or a preset that weakens a
guarantee of the pipeline, the jet-mass model built on the channels params.yaml names, and the tune command
optimising the validation metric in the task's direction. Expectations come from params.yaml as written
(yaml.safe_load) and from hand-written tables, never from what the code derived."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from torch import nn

from e2e.config import parse_params
from e2e.evaluation.headline import headline
from e2e.models.wrappers import wrap_single
from e2e.runtime.batches import Converted
from e2e.stages import train
from e2e.tasks import get_task
from e2e.tune import search, trial

ROOT = Path(__file__).resolve().parents[2]
WRITTEN = yaml.safe_load((ROOT / "params.yaml").read_text())
PRESETS = sorted((ROOT / "presets").glob("*.yaml"))
TASKS = ("electron_photon", "quark_gluon", "jet_mass")


def merged(base: dict, over: dict) -> dict:
    """`over` applied on `base` key by key, as `dvc exp run -S` applies a preset's keys."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = merged(out.get(key) or {}, value) if isinstance(value, dict) and value else value
    return out


@pytest.mark.parametrize("preset", [None, *PRESETS], ids=lambda p: "params.yaml" if p is None else p.name)
def test_the_committed_params_keep_every_guarantee(preset):
    """Guards against: a committed setting that weakens a guarantee while every test still passes, e.g.
    `export.tolerance: 0.1` (an ONNX graph 10 % off would ship). params.yaml alone, and with each preset
    (`make full`) on top:
    - export.tolerance at most 1e-4 (the parity docs/deployment.md promises);
    - runtime.tf32 false: GPU predictions agree with the CPU's and with the ONNX graph (TF32 is ~1e-3 off);
    - evaluate.bootstrap at least 1000 resamples for the 95 % intervals of metrics.json;
    - convert.<dataset>.nonfinite `error`: a NaN in the real files stops the conversion instead of being zeroed;
    - tune.<task>.space tunes train.<task> keys only: a trial that changed the split, the evaluation or the
      export would not be comparable with the others (another test set, other metrics)."""
    raw = WRITTEN if preset is None else merged(WRITTEN, yaml.safe_load(preset.read_text()) or {})
    assert 0 < raw["export"]["tolerance"] <= 1e-4, raw["export"]
    assert raw["runtime"]["tf32"] is False, raw["runtime"]
    assert raw["evaluate"]["bootstrap"] >= 1000, raw["evaluate"]
    assert {ds: c["nonfinite"] for ds, c in raw["convert"].items()} == dict.fromkeys(TASKS, "error")
    for task, study in raw["tune"].items():
        outside = [k for k in study["space"] if not k.startswith(f"train.{task}.")]
        assert not outside, (task, outside)
    parsed = parse_params(raw)  # and the values the stages read are these
    assert parsed.export.tolerance == raw["export"]["tolerance"] and parsed.runtime.tf32 is False


def converted_stub(n_channels: int) -> Converted:
    """A Converted dataset of `n_channels` 125x125 channels with nothing on disk: what model_spec reads."""
    data = Converted.__new__(Converted)
    data.images = type("Images", (), {"image_shape": (n_channels, 125, 125)})()
    data.meta = {"channel_names": [f"c{i}" for i in range(n_channels)]}
    return data


def test_the_jet_mass_model_sees_the_channels_params_yaml_names():
    """Guards against: training silently using every converted channel (all 8 for jet mass) instead of
    train.jet_mass.channels (the reference's 4): every later check reads the checkpoint the bug wrote. The
    expectation is params.yaml as written; the network built from the spec must take that many channels."""
    written = WRITTEN["train"]["jet_mass"]["channels"]
    assert written == [0, 1, 2, 3] and len(WRITTEN["convert"]["jet_mass"]["channels"]) == 8
    tp = parse_params(WRITTEN).train["jet_mass"]
    spec = train.model_spec(get_task("jet_mass"), converted_stub(8), tp)
    assert (spec.in_channels, list(spec.channels or [])) == (len(written), written)
    assert spec.channel_names == [f"c{i}" for i in written]
    first = next(m for m in wrap_single(spec).modules() if isinstance(m, nn.Conv2d))
    assert first.in_channels == len(written)


@pytest.mark.parametrize("task", TASKS)
def test_tune_optimises_the_validation_metric_in_the_tasks_direction(tmp_path, task):
    """Guards against: the tune command selecting trials on the test metric (test-set leakage into the
    hyperparameters), or maximising a mass MAE. The objective column must hold the validation split's value
    of evaluate's results (val and test made different here), and the study's direction is written out."""
    t = get_task(task)
    m = t.primary_metric
    results = {
        "val": {m: 0.61, f"{m}_ci_lo": 0.5, f"{m}_ci_hi": 0.7, "resolution": 0.1, "response": 1.0},
        "test": {m: 0.47, f"{m}_ci_lo": 0.4, f"{m}_ci_hi": 0.5, "resolution": 0.2, "response": 1.1},
    }
    results["test"].update({f"rejection_at_{wp}": 3.0 for wp in (50, 80)})
    objective, reported = trial.columns(task)
    shown = {objective.file: {"data": headline(t, results, (0.5, 0.8))}}
    assert objective.read(shown) == 0.61 and reported.read(shown) == 0.47
    study, _ = search.open_study("s", str(tmp_path / "j.journal"), tmp_path, task)
    expected = {"electron_photon": "maximize", "quark_gluon": "maximize", "jet_mass": "minimize"}[task]
    assert study.direction.name.lower() == expected
