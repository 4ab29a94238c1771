"""params.yaml is checked by type and range when it is read, before any stage touches data: each mistake is
one `error:` line naming the key, the value and what is expected, and the checks change no accepted value."""

from __future__ import annotations

import copy
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from e2e import config
from e2e.config import load_params, parse_params
from e2e.config import names as config_names
from e2e.config import schema as config_schema
from e2e.config.rules import RULES
from e2e.errors import E2EError

from support.pipeline_repo import set_param

ROOT = Path(__file__).resolve().parents[2]
BASE = yaml.safe_load((ROOT / "params.yaml").read_text())


def edited(dotted: str, yaml_value: str) -> dict:
    """params.yaml with `dotted` set to `yaml_value` as PyYAML reads it (`1e-4` is a string to PyYAML)."""
    raw = copy.deepcopy(BASE)
    set_param(raw, dotted, yaml.safe_load(f"v: {yaml_value}")["v"])
    return raw


# dotted key, its value as written in params.yaml, fragments the one-line error must contain
BAD = {
    "epochs_ten": ("train.quark_gluon.epochs", "ten", ["train.quark_gluon.epochs: 'ten'", "integer >= 1"]),
    "epochs_fraction": ("train.quark_gluon.epochs", "2.5", ["train.quark_gluon.epochs: 2.5", "integer"]),
    "epochs_bool": ("train.quark_gluon.epochs", "true", ["train.quark_gluon.epochs: true", "integer"]),
    "batch_size_0": ("train.quark_gluon.batch_size", "0", ["train.quark_gluon.batch_size: 0", ">= 1"]),
    "device_gpu": ("runtime.device", "gpu", ["runtime.device: 'gpu'", "auto, cpu, cuda, cuda:<index>"]),
    "device_cuda_x": ("runtime.device", "cuda:x", ["runtime.device: 'cuda:x'", "cuda:<index>"]),
    "smoothing_regression": (
        "train.jet_mass.label_smoothing",
        "0.1",
        ["train.jet_mass.label_smoothing: 0.1", "regression task jet_mass"],
    ),
    "smoothing_1": ("train.quark_gluon.label_smoothing", "1.0", ["train.quark_gluon.label_smoothing: 1.0", "< 1"]),
    "lr_negative": ("train.quark_gluon.lr", "-1e-3", ["train.quark_gluon.lr: '-1e-3' is out of range", "> 0"]),
    "lr_word": ("train.quark_gluon.lr", "abc", ["train.quark_gluon.lr: 'abc' is not a number"]),
    "lr_nan": ("train.quark_gluon.lr", ".nan", ["train.quark_gluon.lr: NaN", "finite"]),
    "val_fraction_1.5": ("split.val_fraction", "1.5", ["split.val_fraction: 1.5", "> 0 and < 1"]),
    "fractions_sum": (
        "split.val_fraction",
        "0.85",
        ["split.val_fraction + split.test_fraction: 0.85 + 0.2", "below 1"],
    ),
    "test_fraction_0": ("split.test_fraction", "0", ["split.test_fraction: 0", "> 0 and < 1"]),
    "optimizer": ("train.quark_gluon.optimizer", "adamx", ["train.quark_gluon.optimizer: 'adamx'", "adam, adamw, sgd"]),
    "scheduler": ("train.quark_gluon.scheduler", "linear", ["train.quark_gluon.scheduler: 'linear'", "onecycle"]),
    "model": ("train.quark_gluon.model", "resnet99", ["train.quark_gluon.model: 'resnet99'", "lenet5"]),
    "augment": (
        "train.quark_gluon.augment",
        "[flip_eta, flip_x]",
        ["train.quark_gluon.augment[1]: 'flip_x'", "flip_eta, flip_phi, roll_phi"],
    ),
    "augment_not_list": ("train.quark_gluon.augment", "flip_eta", ["train.quark_gluon.augment: 'flip_eta'", "list"]),
    "amp_maybe": ("runtime.amp", "maybe", ["runtime.amp: 'maybe'", "true or false"]),
    "dtype": ("convert.quark_gluon.dtype", "bfloat16", ["convert.quark_gluon.dtype: 'bfloat16'", "float16, float32"]),
    "scale_length": (
        "convert.quark_gluon.scale",
        "[1.0, 1.0]",
        ["convert.quark_gluon.scale: expected 3 values", "found 2: [1.0, 1.0]"],
    ),
    "scale_negative": ("convert.quark_gluon.scale", "[1.0, -1.0, 1.0]", ["convert.quark_gluon.scale[1]: -1.0", "> 0"]),
    "nonfinite": ("convert.jet_mass.nonfinite", "nan", ["convert.jet_mass.nonfinite: 'nan'", "error, zero"]),
    "clip_0": ("convert.jet_mass.clip", "0", ["convert.jet_mass.clip: 0", "> 0, or null"]),
    "channels_negative": (
        "convert.quark_gluon.channels",
        "[0, -1, 2]",
        ["convert.quark_gluon.channels[1]: -1", ">= 0"],
    ),
    "channels_repeated": ("train.jet_mass.channels", "[0, 0]", ["train.jet_mass.channels: [0, 0] repeats an index"]),
    "channels_beyond": (
        "train.jet_mass.channels",
        "[0, 8]",
        ["train.jet_mass.channels: [0, 8] has index 8", "convert.jet_mass.channels"],
    ),
    "roc_points_1": ("evaluate.roc_points", "1", ["evaluate.roc_points: 1", ">= 2"]),
    "bootstrap_0": ("evaluate.bootstrap", "0", ["evaluate.bootstrap: 0", ">= 1"]),
    "summary_bins_0": ("evaluate.summary_bins", "0", ["evaluate.summary_bins: 0", ">= 1"]),
    "nproc_0": ("runtime.nproc", "0", ["runtime.nproc: 0", ">= 1"]),
    "threads_negative": ("runtime.threads", "-1", ["runtime.threads: -1", ">= 0"]),
    "workers_fraction": ("runtime.convert_workers", "1.5", ["runtime.convert_workers: 1.5", "integer"]),
    "resident_negative": ("runtime.resident_max_gb", "-1", ["runtime.resident_max_gb: -1", ">= 0"]),
    "source_empty": ("data.source", "''", ["data.source: ''", "synthetic, cernbox or a directory"]),
    "source_number": ("data.source", "5", ["data.source: 5 is not a string"]),
    "retries_negative": ("download.retries", "-1", ["download.retries: -1", ">= 0"]),
    "timeout_0": ("download.timeout_s", "0", ["download.timeout_s: 0", "> 0"]),
    "files_not_list": (
        "datasets.jet_mass.files",
        "top_gun_opendata_0.parquet",
        ["datasets.jet_mass.files: 'top_gun_opendata_0.parquet' is not a list"],
    ),
    "model_kwargs_null": ("train.quark_gluon.model_kwargs", "null", ["train.quark_gluon.model_kwargs: null"]),
    "unknown_key": ("train.quark_gluon.lrr", "0.1", ["unknown key(s) ['lrr'] in train.quark_gluon; expected some of"]),
    "unknown_task": ("train.quark_gloun", "{model: lenet5}", ["unknown key(s) ['quark_gloun'] in train"]),
    "unknown_section": ("trian", "{}", ["unknown key(s) ['trian'] at the top level"]),
    "ensemble_members_0": (
        "train.quark_gluon.ensemble.members",
        "0",
        ["train.quark_gluon.ensemble.members: 0 is out of range", ">= 1"],
    ),
    "ensemble_mode": (
        "train.quark_gluon.ensemble.mode",
        "bagging",
        ["train.quark_gluon.ensemble.mode: 'bagging'", "seeds"],
    ),
    "ensemble_unknown_key": (
        "train.quark_gluon.ensemble.member",
        "2",
        ["unknown key(s) ['member'] in train.quark_gluon.ensemble; expected some of ['members', 'mode']"],
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_value_is_one_line_naming_key_value_and_expectation(case):
    dotted, value, fragments = BAD[case]
    with pytest.raises(E2EError) as info:
        parse_params(edited(dotted, value))
    message = str(info.value)
    assert message.startswith("params.yaml: ") and "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize(
    "dotted, value, expected",
    [
        ("train.quark_gluon.lr", "1e-4", 1e-4),  # a string to PyYAML
        ("train.quark_gluon.lr", "'0.5'", 0.5),
        ("train.quark_gluon.epochs", "'10'", 10),
        ("runtime.device", "cuda:1", "cuda:1"),
        ("download.timeout_s", "60", 60),  # an int where a float is expected stays an int: asdict does not change
    ],
)
def test_good_value_is_accepted_as_a_number_of_the_right_type(dotted, value, expected):
    params = parse_params(edited(dotted, value))
    node = params
    for key in dotted.split("."):
        node = node[key] if isinstance(node, dict) else getattr(node, key)
    assert node == expected and type(node) is type(expected)


def test_missing_required_key():
    raw = edited("train.quark_gluon.lr", "0.1")
    del raw["train"]["quark_gluon"]["model"]
    with pytest.raises(E2EError, match=r"^params.yaml: train.quark_gluon.model: missing \(expected one of .*lenet5"):
        parse_params(raw)


def legacy(raw: dict) -> config.Params:
    """Params built as before the checks (lists to tuples, nothing converted), for the asdict comparison."""

    def build(cls, section):
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in (section or {}).items()}
        if cls is config.TrainParams and "ensemble" in values:  # a dict before EnsembleParams
            values["ensemble"] = config.EnsembleParams(**values["ensemble"])
        return cls(**values)

    def each(cls, name):
        return {k: build(cls, v) for k, v in (raw.get(name) or {}).items()}

    return config.Params(
        data=build(config.DataParams, raw.get("data")),
        datasets=each(config.DatasetParams, "datasets"),
        download=build(config.DownloadParams, raw.get("download")),
        synthetic=dict(raw.get("synthetic") or {}),
        convert=each(config.ConvertParams, "convert"),
        split=build(config.SplitParams, raw.get("split")),
        runtime=build(config.RuntimeParams, raw.get("runtime")),
        train=each(config.TrainParams, "train"),
        evaluate=build(config.EvaluateParams, raw.get("evaluate")),
        export=build(config.ExportParams, raw.get("export")),
        tune=each(config.TuneParams, "tune"),
    )


def merged(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = merged(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


@pytest.mark.parametrize("preset", [None, "full"])
def test_checks_change_no_value_so_fingerprints_stay(preset):
    """train and convert hash dataclasses.asdict of their params (resumable checkpoints, converted parts)."""
    raw = merged(BASE, yaml.safe_load((ROOT / "presets" / f"{preset}.yaml").read_text()) if preset else {})
    new, old = parse_params(raw), legacy(raw)
    assert new == old and repr(new) == repr(old)
    for task in new.train:
        assert json.dumps(dataclasses.asdict(new.train[task]), sort_keys=True, default=str) == json.dumps(
            dataclasses.asdict(old.train[task]), sort_keys=True, default=str
        )
    assert json.dumps(dataclasses.asdict(new), sort_keys=True, default=str) == json.dumps(
        dataclasses.asdict(old), sort_keys=True, default=str
    )


def test_every_params_dataclass_has_a_rule_per_field():
    classes = {
        c
        for c in vars(config).values()
        if isinstance(c, type)
        and dataclasses.is_dataclass(c)
        and c.__name__.endswith("Params")
        and c is not config.Params
    }
    assert classes == set(RULES)
    for cls in classes:
        config_schema._model(cls)  # raises when RULES and the fields disagree


def test_names_match_the_registries():
    from e2e.models import MODELS, POINT_MODELS
    from e2e.sources.registry import DATASETS
    from e2e.tasks import TASKS
    from e2e.training.augment import AUGMENTATIONS
    from e2e.training.optimizers import OPTIMIZERS, SCHEDULERS

    assert sorted(config_names.MODELS) == sorted(MODELS), "add the model's name to e2e/config/names.py"
    assert sorted(config_names.POINT_MODELS) == sorted(POINT_MODELS), "and a point model's to its POINT_MODELS"
    assert sorted(config_names.OPTIMIZERS) == sorted(OPTIMIZERS)
    assert sorted(config_names.SCHEDULERS) == sorted(SCHEDULERS)
    assert sorted(config_names.AUGMENTATIONS) == sorted(AUGMENTATIONS)
    assert config_names.TASK_KINDS == {t.name: t.kind for t in TASKS.values()}
    assert all(t.dataset == t.name for t in TASKS.values()) and sorted(config_names.DATASETS) == sorted(DATASETS)
    # the names a jet-level input may not take: every raw name of the task's target, and the converted one
    assert config_names.TARGETS == {t.name: (*DATASETS[t.dataset].target_keys, "target") for t in TASKS.values()}


# through the real CLI: `error:` and one line on stderr, exit 2, no traceback, before any data is read
# (the root holds no data at all, so reading any would fail with another message)
CLI_CASES = ["epochs_ten", "device_gpu", "smoothing_regression", "unknown_key"]


@pytest.mark.parametrize("case", CLI_CASES)
def test_cli_refuses_bad_params_in_one_line_before_reading_data(tmp_path, case):
    dotted, value, fragments = BAD[case]
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(edited(dotted, value), sort_keys=False))
    root = tmp_path / "empty"
    root.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "e2e", "--params", str(params), "--root", str(root), "train", "quark_gluon"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(f"error: {params}: "), proc.stderr
    assert "Traceback" not in proc.stderr and all(f in proc.stderr for f in fragments), proc.stderr
    assert list(root.iterdir()) == []


def test_reading_params_imports_no_torch(tmp_path):
    code = (
        "import sys; from e2e.config import load_params; load_params(sys.argv[1]); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code, str(ROOT / "params.yaml")], check=True, timeout=120)


def test_load_params_names_the_file(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("runtime:\n  nproc: 0\n")
    with pytest.raises(E2EError, match=rf"^{path}: runtime.nproc: 0 is out of range"):
        load_params(path)


def test_first_line_of_an_empty_message_is_said_not_raised():
    """Regression: four one-line errors took `str(exc).splitlines()[0]`, an IndexError on an empty message."""
    from e2e.errors import first_line

    assert first_line(ValueError("")) == "(no message)"
    assert first_line("\n  first\nsecond\n") == "first" and first_line("a\nb\n", last=True) == "b"
    assert first_line("x" * 500, limit=10) == "x" * 10


# (train.<task> edits, fragments of the one-line error): the point models' fields (issue 21)
POINT_FIELDS = {
    "target_as_input": (
        {"model": "gnn", "global_inputs": ["pt", "m"]},
        ["train.jet_mass.global_inputs: 'm'", "target"],
    ),
    "latent_as_input": ({"model": "gnn", "global_inputs": ["truth_m"]}, ["'truth_m' is the target"]),
    "augment_points": ({"model": "particlenet", "augment": ["flip_eta"]}, ['augment: ["flip_eta"] transforms images']),
    "cap_0": ({"model": "gnn", "max_points": 0}, ["train.jet_mass.max_points: 0", ">= 1"]),
    "inputs_repeated": ({"model": "gnn", "global_inputs": ["pt", "pt"]}, ['global_inputs: ["pt", "pt"] repeats']),
}


@pytest.mark.parametrize("case", list(POINT_FIELDS))
def test_point_fields_are_refused_in_one_line(case):
    edits, fragments = POINT_FIELDS[case]
    raw = copy.deepcopy(BASE)
    raw["train"]["jet_mass"].update(edits)
    with pytest.raises(E2EError) as info:
        parse_params(raw)
    message = str(info.value)
    assert message.startswith("params.yaml: ") and "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message


def test_an_image_models_fingerprint_ignores_the_point_fields():
    """The resume fingerprint of an image model hashes what it hashed before max_points and global_inputs
    existed (e2e.training.resume.hashed_params): an interrupted run resumes across the upgrade."""
    from e2e.training.resume import hashed_params

    tp = parse_params(copy.deepcopy(BASE)).train["jet_mass"]
    before = {k: v for k, v in dataclasses.asdict(tp).items() if k not in ("max_points", "global_inputs")}
    assert hashed_params(tp) == before
    point = dataclasses.replace(tp, model="gnn", global_inputs=("pt",))
    assert hashed_params(point)["max_points"] == tp.max_points and hashed_params(point)["global_inputs"] == ("pt",)
