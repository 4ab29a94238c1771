"""Type and range checks of params.yaml, run by e2e.config.parse_params before any stage reads data.

Each field is checked by its rule in e2e.config.rules.RULES; a mistake becomes one line naming the key, the
value and what the rule expects:
    params.yaml: train.quark_gluon.lr: 'abc' is not a number (expected a number > 0)
Numbers may come as YAML strings (PyYAML reads `lr: 1e-4` as a string); an int stays an int and a float
a float, so dataclasses.asdict of the params, which train and convert hash, is what it was before.
Only the keys present are validated: the dataclass defaults fill in the rest. A section of its own
(train.<task>.ensemble) is checked as one with its key in the message:
`train.quark_gluon.ensemble.members: 0 is out of range (...)`. Imported by parse_params only, so
`import e2e.config` stays free of pydantic.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NoReturn

from pydantic import BaseModel, ConfigDict, ValidationError, create_model
from pydantic_core import ErrorDetails

from e2e.config import names
from e2e.config.params import (
    ConvertParams,
    DataParams,
    DatasetParams,
    DownloadParams,
    EvaluateParams,
    ExportParams,
    Params,
    RuntimeParams,
    SplitParams,
    TrainParams,
    TuneParams,
)
from e2e.config.rules import RULES
from e2e.config.values import PROBLEMS, show
from e2e.errors import E2EError


def _nested(cls: type) -> dict[str, type]:
    """The fields of `cls` that are sections of their own: their rule's type is a dataclass of RULES."""
    return {n: t for n, (t, _) in RULES[cls].items() if isinstance(t, type) and dataclasses.is_dataclass(t)}


@functools.cache
def _model(cls: type) -> type[BaseModel]:
    """The pydantic model of dataclass `cls` less its nested sections: RULES' types, unknown keys forbidden,
    required as in `cls`."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if set(fields) != set(RULES[cls]):
        raise RuntimeError(
            f"e2e.config.rules.RULES[{cls.__name__}] does not match its fields: {sorted(set(fields) ^ set(RULES[cls]))}"
        )
    required = {n for n, f in fields.items() if f.default is f.default_factory is dataclasses.MISSING}
    nested = _nested(cls)
    types: dict[str, Any] = {n: (RULES[cls][n][0], ... if n in required else None) for n in fields if n not in nested}
    return create_model(f"{cls.__name__}Schema", __config__=ConfigDict(extra="forbid"), **types)


def _message(errors: list[ErrorDetails], cls: type, where: str, source: str) -> str:
    unknown = sorted(str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden")
    if unknown:
        known = sorted(f.name for f in dataclasses.fields(cls))
        return f"{source}: unknown key(s) {unknown} in {where}; expected some of {known}"
    e = errors[0]
    field, rest = e["loc"][0], e["loc"][1:]
    key = f"{where}.{field}" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in rest if p != "[key]")
    expected = RULES[cls][str(field)][1]
    if e["type"] == "missing":
        return f"{source}: {key}: missing (expected {expected})"
    problem = e["ctx"]["problem"] if e["type"] == "e2e" else PROBLEMS.get(e["type"], e["msg"])
    return f"{source}: {key}: {show(e['input'])} {problem} (expected {expected})"


def _section(cls: type, raw: Any, where: str, source: str) -> Any:
    """The dataclass `cls` from the mapping `raw` (null: all defaults), or E2EError for its first mistake;
    its nested sections after its own fields, each under its key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        keys = sorted(f.name for f in dataclasses.fields(cls))
        raise E2EError(f"{source}: {where}: {show(raw)} is not a mapping (expected some of the keys {keys})")
    nested = _nested(cls)
    try:
        model = _model(cls).model_validate({k: v for k, v in raw.items() if k not in nested})
    except ValidationError as exc:
        raise E2EError(_message(exc.errors(), cls, where, source)) from None
    values = {k: getattr(model, k) for k in model.model_fields_set}
    values |= {k: _section(sub, raw[k], f"{where}.{k}", source) for k, sub in nested.items() if k in raw}
    return cls(**values)


def _named(raw: Any, where: str, source: str) -> dict[str, Any]:
    """A section with one entry per dataset or task, e.g. `train`: its names must be known ones."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise E2EError(
            f"{source}: {where}: {show(raw)} is not a mapping (expected one entry per dataset or "
            f"task among {list(names.DATASETS)})"
        )
    unknown = sorted(str(k) for k in set(raw) - set(names.DATASETS))
    if unknown:
        raise E2EError(f"{source}: unknown key(s) {unknown} in {where}; expected some of {sorted(names.DATASETS)}")
    return raw


def _synthetic(raw: Any, source: str) -> dict[str, dict]:
    for name, cfg in _named(raw, "synthetic", source).items():
        if not isinstance(cfg, dict):
            raise E2EError(
                f"{source}: synthetic.{name}: {show(cfg)} is not a mapping (expected the generator's "
                f"sizes, e.g. n_jets: 3000)"
            )
    return dict(raw or {})


def _across(p: Params, source: str) -> None:
    """Rules that join several keys, once each key is valid on its own."""

    def fail(message: str) -> NoReturn:
        raise E2EError(f"{source}: {message}")

    s = p.split
    if s.val_fraction + s.test_fraction >= 1:
        fail(
            f"split.val_fraction + split.test_fraction: {s.val_fraction} + {s.test_fraction} leaves no rows to "
            f"train on (expected a sum below 1)"
        )
    for ds, c in p.convert.items():
        if c.scale is not None and c.channels is not None and len(c.scale) != len(c.channels):
            fail(
                f"convert.{ds}.scale: expected {len(c.channels)} values, one per channel of convert.{ds}.channels "
                f"{show(c.channels)}; found {len(c.scale)}: {show(c.scale)}"
            )
    for task, tp in p.train.items():
        kind = names.TASK_KINDS[task]
        if tp.label_smoothing and kind != "classification":
            fail(
                f"train.{task}.label_smoothing: {show(tp.label_smoothing)} makes no sense for the {kind} task "
                f"{task} (expected 0: smoothing pulls classification targets towards 0.5)"
            )
        stored = p.convert[task].channels if task in p.convert else None  # each task reads its namesake dataset
        if tp.channels is not None and stored is not None and max(tp.channels) >= len(stored):
            fail(
                f"train.{task}.channels: {show(tp.channels)} has index {max(tp.channels)}, beyond the "
                f"{len(stored)} channels of convert.{task}.channels (expected distinct indices below {len(stored)})"
            )
        _point_fields(task, tp, fail)


def _point_fields(task: str, tp: TrainParams, fail) -> None:
    """global_inputs never the target nor a generator latent; point models take no image augmentation."""
    points = tp.model in names.POINT_MODELS
    leaks = [g for g in tp.global_inputs if g in names.TARGETS[task] or g.startswith("truth_")]
    if leaks:
        fail(
            f"train.{task}.global_inputs: {leaks[0]!r} is the target of {task} or derived from it "
            f"(expected jet-level observers such as pt)"
        )
    if tp.augment and points:
        fail(
            f"train.{task}.augment: {show(tp.augment)} transforms images; the point model {tp.model} takes none "
            f"(expected [])"
        )


def check(raw: Any, source: str = "params.yaml") -> Params:
    """params.yaml's content as Params, every value checked; E2EError (one line) at the first mistake."""
    sections = [f.name for f in dataclasses.fields(Params)]
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise E2EError(f"{source}: {show(raw)} is not a mapping (expected the sections {sections})")
    unknown = sorted(str(k) for k in set(raw) - set(sections))
    if unknown:
        raise E2EError(f"{source}: unknown key(s) {unknown} at the top level; expected some of {sorted(sections)}")

    def each(cls: type, section: str) -> dict[str, Any]:
        return {
            k: _section(cls, v, f"{section}.{k}", source) for k, v in _named(raw.get(section), section, source).items()
        }

    params = Params(
        data=_section(DataParams, raw.get("data"), "data", source),
        datasets=each(DatasetParams, "datasets"),
        download=_section(DownloadParams, raw.get("download"), "download", source),
        synthetic=_synthetic(raw.get("synthetic"), source),
        convert=each(ConvertParams, "convert"),
        split=_section(SplitParams, raw.get("split"), "split", source),
        runtime=_section(RuntimeParams, raw.get("runtime"), "runtime", source),
        train=each(TrainParams, "train"),
        evaluate=_section(EvaluateParams, raw.get("evaluate"), "evaluate", source),
        export=_section(ExportParams, raw.get("export"), "export", source),
        tune=each(TuneParams, "tune"),
    )
    _across(params, source)
    return params
