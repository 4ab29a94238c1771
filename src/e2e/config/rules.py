"""What each field of params.yaml accepts: RULES gives each field of each e2e.config dataclass a pydantic type
(its parsing and range) and, in words, what it expects, for e2e.config.schema's messages. A field whose rule
is a dataclass of RULES is a section of its own (train.<task>.ensemble: EnsembleParams). Imported with the
schema only, when params are read: no pydantic at `import e2e.config`; no torch (registry names are in
e2e.config.names)."""

from __future__ import annotations

from typing import Annotated

from pydantic import PlainValidator

from e2e.config import names
from e2e.config.params import (
    ConvertParams,
    DataParams,
    DatasetParams,
    DownloadParams,
    EnsembleParams,
    EvaluateParams,
    ExportParams,
    RuntimeParams,
    SplitParams,
    TrainParams,
    TuneParams,
)
from e2e.config.values import (
    BOOL,
    COUNT,
    INDICES,
    KWARGS,
    NAMES,
    SEED,
    SIZE,
    TEXT,
    Rule,
    _choice,
    _int,
    _list,
    _number,
    _optional,
    _to_bins,
    _to_space,
    _to_str,
)

RULES: dict[type, dict[str, Rule]] = {
    DataParams: {"source": (TEXT[0], "synthetic, cernbox or a directory that holds the real files"), "seed": SEED},
    DatasetParams: {"files": _optional(_list(TEXT, "a non-empty list of the registry's file names"))},
    DownloadParams: {
        "base_url": (Annotated[str, PlainValidator(_to_str)], "a URL"),
        "archive_url": (Annotated[str, PlainValidator(_to_str)], "a URL"),
        "mode": _choice(names.DOWNLOAD_MODES),
        "retries": COUNT,
        "backoff_s": _number(ge=0),
        "timeout_s": _number(gt=0),
        "chunk_mb": _number(gt=0),
    },
    ConvertParams: {
        "dtype": _choice(names.DTYPES),
        "channels": INDICES,
        "scale": _optional(_list(_number(gt=0), "a non-empty list of numbers > 0, one per channel")),
        "clip": _optional(_number(gt=0)),
        "zero_below": _number(ge=0),
        "nonfinite": _choice(names.NONFINITE),
        "batch_rows": SIZE,
    },
    SplitParams: {
        "seed": SEED,
        "val_fraction": _number(gt=0, lt=1),
        "test_fraction": _number(gt=0, lt=1),
        "target_bins": SIZE,
    },
    RuntimeParams: {
        "device": _choice(names.DEVICES, r"cuda:\d+", "cuda:<index>"),
        "amp": BOOL,
        "channels_last": BOOL,
        "tf32": BOOL,
        "compile": BOOL,
        "resident_max_gb": _number(ge=0),
        "convert_workers": COUNT,
        "threads": COUNT,
        "nproc": SIZE,
    },
    TrainParams: {
        "model": _choice(names.MODELS, names.TIMM_MODEL, "timm/<name> (any timm model)"),
        "model_kwargs": KWARGS,
        "epochs": SIZE,
        "batch_size": SIZE,
        "optimizer": _choice(names.OPTIMIZERS),
        "lr": _number(gt=0),
        "weight_decay": _number(ge=0),
        "scheduler": _choice(names.SCHEDULERS),
        "scheduler_kwargs": KWARGS,
        "grad_clip": _number(ge=0),
        "label_smoothing": _number(ge=0, lt=1),
        "augment": _list(
            _choice(names.AUGMENTATIONS), "a list of names among " + ", ".join(names.AUGMENTATIONS), empty=True
        ),
        "channels": INDICES,
        "patience": COUNT,
        "seed": SEED,
        "ensemble": (EnsembleParams, "{members: an integer >= 1, mode: " + " or ".join(names.ENSEMBLE_MODES) + "}"),
        "max_points": _optional(_int(ge=1)),
        "global_inputs": (NAMES[0], "a list of distinct names of the converted observers, e.g. [pt], or []"),
    },
    EnsembleParams: {"members": SIZE, "mode": _choice(names.ENSEMBLE_MODES)},
    EvaluateParams: {
        "batch_size": SIZE,
        "roc_points": _int(ge=2),
        "bootstrap": SIZE,
        "summary_bins": SIZE,
        "working_points": _list(
            _number(gt=0, lt=1), "a non-empty list of signal efficiencies between 0 and 1", distinct=True
        ),
        "bins": (
            Annotated[dict, PlainValidator(_to_bins)],
            "a number of bins >= 1 or a list of at least two increasing bin edges, per task and variable",
        ),
    },
    TuneParams: {
        "sampler": _choice(names.SAMPLERS),
        "seed": SEED,
        "space": (
            Annotated[dict, PlainValidator(_to_space)],
            "per params key {low, high} with optional log: true and step, or {choices: [...]}",
        ),
    },
    ExportParams: {"batch_size": SIZE, "parity_batches": SIZE, "tolerance": _number(gt=0), "opset": _int(ge=17)},
}
