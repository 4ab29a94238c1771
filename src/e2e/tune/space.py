"""`e2e tune`'s search space: params.yaml `tune.<task>.space` checked against params.yaml itself, turned into
Optuna suggestions and into the `-S key=value` arguments of `dvc exp run`. No Optuna import here: the trial
object is only called."""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from typing import Any

from e2e.errors import E2EError

SCALARS = (type(None), bool, int, float, str)  # what Optuna's suggest_categorical stores as it is
ABSENT = object()  # a key that one of two params trees lacks


@dataclass(frozen=True)
class Dim:
    """One searched key: an int or float range (suggest_int / suggest_float), or categorical choices."""

    key: str
    kind: str  # "int" | "float" | "choices"
    low: float = 0
    high: float = 0
    log: bool = False
    step: float | None = None
    choices: tuple = ()

    def endpoints(self) -> list:
        """The values whose validity stands for the whole dimension: both ends of a range, every choice."""
        return list(self.choices) if self.kind == "choices" else [self.low, self.high]


def _number(value: Any) -> int | float:
    # e2e.config.schema accepted these already; YAML reads `1e-4` as a string, so it is converted here
    return float(value) if isinstance(value, str) else value


def to_dim(key: str, spec: dict) -> Dim:
    if "choices" in spec:
        return Dim(key, "choices", choices=tuple(spec["choices"]))
    low, high = _number(spec["low"]), _number(spec["high"])
    step = _number(spec["step"]) if "step" in spec else None
    ints = all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high, step) if v is not None)
    return Dim(key, "int" if ints else "float", low, high, bool(spec.get("log")), step)


def lookup(raw: dict, key: str) -> tuple[bool, Any]:
    """(found, value) of dotted `key` in the params tree `raw`."""
    node: Any = raw
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def assign(raw: dict, key: str, value: Any) -> dict:
    """A copy of `raw` with dotted `key` set to `value` (the key exists: checked before)."""
    out = copy.deepcopy(raw)
    *parents, last = key.split(".")
    node = out
    for part in parents:
        node = node[part]
    node[last] = value
    return out


def check_key(raw: dict, key: str, where: str, source: str) -> None:
    """`key` names a value of `raw` (not a section, not the tune section), else one E2EError."""
    found, current = lookup(raw, key)
    if key.split(".")[0] == "tune":
        raise E2EError(f"{where}: the tune section is read by no stage (expected a key of another section)")
    if not found:
        raise E2EError(
            f"{where}: {key!r} is not a key of {source} (expected a dotted key such as "
            f"train.<task>.lr, as `dvc exp run -S` takes it)"
        )
    if isinstance(current, dict):
        raise E2EError(f"{where}: {key!r} is a section, not a value")


def check_value(raw: dict, key: str, value: Any, where: str, source: str) -> dict:
    """`raw` with `key` set to `value`, once the params schema accepts it there; else one E2EError."""
    from e2e.config import parse_params

    if isinstance(value, dict):  # `dvc exp run -S key={...}` merges a mapping into the committed one
        raise E2EError(
            f"{where}: the value {value!r} is a mapping (expected a number, string or list; "
            f"set a mapping's keys one by one)"
        )
    changed = assign(raw, key, value)
    try:
        parse_params(changed, source)
        set_arg(key, value)  # a value `dvc exp run -S` can be given: refused here, not in every trial
    except E2EError as exc:
        message = str(exc).removeprefix(f"{source}: ").removeprefix("tune: ")
        raise E2EError(f"{where}: the value {value!r} is refused: {message}") from None
    return changed


def load_space(raw: dict, task: str, space: dict, source: str = "params.yaml") -> list[Dim]:
    """The dimensions of `tune.<task>.space`, each key an existing params key and each end or choice a value
    params.yaml accepts there; else one E2EError naming the key, before any trial runs."""
    if not space:
        raise E2EError(f"{source} tune.{task}.space: empty or missing (expected params keys to search)")
    dims = []
    for key, spec in space.items():
        where = f"{source} tune.{task}.space.{key}"
        check_key(raw, key, where, source)
        dim = to_dim(key, spec)
        if dim.log and dim.step is not None:  # Optuna samples a log scale continuously: no grid on it
            raise E2EError(f"{where}: log: true and step together (expected one of them)")
        for value in dim.endpoints():
            check_value(raw, key, value, where, source)
        dims.append(dim)
    return dims


def load_fixed(
    raw: dict, overrides: list[str], task: str, space: dict, source: str = "params.yaml"
) -> tuple[dict[str, Any], dict]:
    """The fixed overrides of every trial, `-S key=value` as `dvc exp run -S` reads them (Hydra's grammar),
    each an existing key, none searched, each value accepted with those before it set; and `raw` with all
    of them set (where the search space is then checked). Else one E2EError naming the override."""
    fixed: dict[str, Any] = {}
    for arg in overrides:
        key, value = parse_override(arg)
        where = f"tune: -S {arg}"
        if key in fixed:
            raise E2EError(f"{where}: {key} is set twice (expected one -S per key)")
        if key in space:
            raise E2EError(
                f"{where}: {key} is also searched ({source} tune.{task}.space): a key is either fixed or searched"
            )
        check_key(raw, key, where, source)
        raw = check_value(raw, key, value, where, source)
        fixed[key] = value
    return fixed, raw


def parse_override(arg: str) -> tuple[str, Any]:
    """(key, value) of `key=value` read by Hydra's override parser, the one `dvc exp run -S` uses."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        (override,) = OverridesParser.create().parse_overrides([arg])
    except HydraException as exc:
        raise E2EError(
            f"tune: -S {arg}: not key=value as `dvc exp run -S` reads it ({str(exc).splitlines()[0]})"
        ) from None
    if override.type.name != "CHANGE" or override.is_sweep_override() or override.package is not None:
        raise E2EError(f"tune: -S {arg}: expected key=value, one value of an existing key (no +, ~, @ or sweep)")
    return override.key_or_group, override.value()


def encode(choice: Any) -> Any:
    """Optuna stores None, bool, int, float and str choices as they are; a list or mapping as its JSON."""
    return choice if isinstance(choice, SCALARS) else json.dumps(choice, sort_keys=True)


def suggest(trial, dims: list[Dim]) -> dict[str, Any]:
    """params key -> the value that `trial` (an optuna.Trial) suggests for it."""
    values = {}
    for d in dims:
        if d.kind == "choices":
            picked = trial.suggest_categorical(d.key, [encode(c) for c in d.choices])
            values[d.key] = next(c for c in d.choices if encode(c) == picked)
        elif d.kind == "int":
            values[d.key] = trial.suggest_int(d.key, d.low, d.high, step=d.step or 1, log=d.log)
        else:
            values[d.key] = trial.suggest_float(d.key, d.low, d.high, step=d.step, log=d.log)
    return values


def set_arg(key: str, value: Any) -> str:
    """`key=value` for `dvc exp run -S`: compact JSON (strings stay quoted, so a choice "null" or "1e-4"
    stays a string), checked to read back through DVC's parser (Hydra's) as the same value."""
    if isinstance(value, float) and not math.isfinite(value):
        raise E2EError(f"tune: {key}={value} is not a finite number")
    arg = f"{key}={json.dumps(value, separators=(',', ':'))}"
    if json.dumps(parse_override(arg)[1]) != json.dumps(value):  # json tells 1 from 1.0 and true from 1
        raise E2EError(f"tune: {key}={value!r}: `dvc exp run -S` would read it as another value")
    return arg


def differences(before: dict, after: dict, prefix: str = "") -> dict[str, str]:
    """Dotted key -> "old -> new" (JSON values, "(none)" where absent) for every value that differs
    between two params trees; lists are values, mappings are walked."""
    out = {}
    for key in [*before, *(k for k in after if k not in before)]:
        old, new = before.get(key, ABSENT), after.get(key, ABSENT)
        if isinstance(old, dict) and isinstance(new, dict):
            out.update(differences(old, new, f"{prefix}{key}."))
        elif (shown := (_json(old), _json(new)))[0] != shown[1]:
            out[f"{prefix}{key}"] = f"{shown[0]} -> {shown[1]}"
    return out


def _json(value: Any) -> str:
    return "(none)" if value is ABSENT else json.dumps(value, default=str)  # default: a YAML date


def show_params(values: dict[str, Any]) -> str:
    """`key=value ...` on one line, floats to 4 significant digits, for the progress and the summary."""

    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else json.dumps(v) if not isinstance(v, str) else v

    return " ".join(f"{k}={fmt(v)}" for k, v in values.items())
