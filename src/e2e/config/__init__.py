"""params.yaml: its dataclasses, its schema and value rules, the allowed names, and every path a stage uses.

The names below are re-exported because every stage's params pass through load_params and the schema:
the whole package is every stage's dep in dvc.yaml, so a change to a rule reruns what it could change."""

from e2e.config.load import load_params, parse_params
from e2e.config.params import (
    ConvertParams,
    DataParams,
    DatasetParams,
    DownloadParams,
    EnsembleParams,
    EvaluateParams,
    ExportParams,
    Params,
    RuntimeParams,
    SplitParams,
    TrainParams,
    TuneParams,
)
from e2e.config.paths import Paths

__all__ = [
    "ConvertParams",
    "DataParams",
    "DatasetParams",
    "DownloadParams",
    "EnsembleParams",
    "EvaluateParams",
    "ExportParams",
    "Params",
    "Paths",
    "RuntimeParams",
    "SplitParams",
    "TrainParams",
    "TuneParams",
    "load_params",
    "parse_params",
]
