"""The value rules of params.yaml, for e2e.config.rules: each a pydantic type that parses one value (numbers
may come as YAML strings) and refuses a bad one with a short problem, plus what it expects in words.
Imported by e2e.config.rules and e2e.config.schema only, when params are read."""

from __future__ import annotations

import json
import math
import re
import types
from collections.abc import Mapping
from typing import Annotated, Any, Optional, TypedDict, Unpack

from pydantic import AfterValidator, Field, PlainValidator
from pydantic_core import PydanticCustomError

from e2e.config import names

Rule = tuple[Any, str]  # (pydantic type, what it expects in words)
OPS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
PROBLEMS = {
    "missing": "missing",
    "too_short": "is empty",
    "tuple_type": "is not a list",
    "list_type": "is not a list",
    "dict_type": "is not a mapping",
    "string_type": "is not a string",
    **dict.fromkeys(("greater_than", "greater_than_equal", "less_than", "less_than_equal"), "is out of range"),
}


def _refuse(problem: str) -> PydanticCustomError:
    return PydanticCustomError("e2e", "{problem}", {"problem": problem})


def _to_int(v: object) -> int:
    if isinstance(v, str) and re.fullmatch(r"\s*[+-]?\d+\s*", v):
        return int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        raise _refuse("is not an integer")
    return v


def _to_number(v: object) -> float:
    if isinstance(v, str):
        try:
            v = float(v)
        except ValueError:
            raise _refuse("is not a number") from None
    elif isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _refuse("is not a number")
    if not math.isfinite(v):
        raise _refuse("is not a finite number")
    return v


def _to_bool(v: object) -> bool:
    if not isinstance(v, bool):
        raise _refuse("is not true or false")
    return v


def _to_str(v: object) -> str:
    if not isinstance(v, str):
        raise _refuse("is not a string")
    return v


def _to_text(v: object) -> str:
    text = _to_str(v)
    if not text.strip():
        raise _refuse("is empty")
    return text


def _distinct(v: tuple) -> tuple:
    if len(set(v)) != len(v):
        raise _refuse("repeats an index")
    return v


def _to_bins(v: object) -> dict[Any, Any]:
    """task -> variable -> bin edges (at least two, increasing) or a number of equal-width bins."""
    if not isinstance(v, dict) or not all(isinstance(b, dict) for b in v.values()):
        raise _refuse("is not a mapping of task -> variable -> bins")
    for task, variables in v.items():
        if task not in names.DATASETS:
            raise _refuse(f"names the unknown task {task!r}")
        for var, b in variables.items():
            edges = [_to_number(e) for e in b] if isinstance(b, list) else None
            ok = _to_int(b) >= 1 if edges is None else len(edges) >= 2 and all(a < b for a, b in zip(edges, edges[1:]))
            if not ok:
                raise _refuse(f"has {task}.{var}: {show(b)}, which is neither")
    return v


class Bounds(TypedDict, total=False):
    """The bounds a number rule may set, as pydantic's Field takes them."""

    gt: float
    ge: float
    lt: float
    le: float


def _bounds(c: Mapping[str, object]) -> str:
    return " and ".join(f"{OPS[k]} {v}" for k, v in c.items())


def _int(**c: Unpack[Bounds]) -> Rule:
    return Annotated[int, PlainValidator(_to_int), Field(**c)], f"an integer {_bounds(c)}"


def _number(**c: Unpack[Bounds]) -> Rule:
    return Annotated[float, PlainValidator(_to_number), Field(**c)], f"a number {_bounds(c)}"


def _choice(choices: tuple[str, ...], pattern: str | None = None, shown: str = "") -> Rule:
    def check(v: object) -> str:
        if not isinstance(v, str):
            raise _refuse("is not a string")
        if v not in choices and not (pattern and re.fullmatch(pattern, v)):
            raise _refuse("is unknown")
        return v

    return Annotated[str, PlainValidator(check)], "one of " + ", ".join(choices + ((shown,) if shown else ()))


def _list(item: Rule, expected: str, empty: bool = False, distinct: bool = False) -> Rule:
    # tuple[item[0], ...] spelled as the GenericAlias it builds: mypy reads a subscript as a type, and a rule's
    # pydantic type is a value here
    t: Any = Annotated[types.GenericAlias(tuple, (item[0], ...)), Field(min_length=0 if empty else 1)]
    return (Annotated[t, AfterValidator(_distinct)] if distinct else t), expected


def _optional(rule: Rule) -> Rule:
    return Optional[rule[0]], rule[1] + ", or null"  # noqa: UP045 (a runtime type for pydantic, not an annotation)


BOOL: Rule = Annotated[bool, PlainValidator(_to_bool)], "true or false"
TEXT: Rule = Annotated[str, PlainValidator(_to_text)], "a non-empty string"
KWARGS: Rule = dict[str, Any], "a mapping of keyword arguments"
SEED, SIZE, COUNT = _int(ge=0), _int(ge=1), _int(ge=0)
INDICES = _optional(_list(_int(ge=0), "a non-empty list of distinct indices >= 0", distinct=True))
NAMES = _list(TEXT, "a list of distinct names, possibly empty", empty=True, distinct=True)


def show(v: object) -> str:
    """A value as params.yaml would spell it, on one line and short."""
    try:
        s = repr(v) if isinstance(v, str) else json.dumps(v)
    except (TypeError, ValueError):
        s = repr(v)
    s = s.replace("\n", " ")
    return s if len(s) <= 80 else s[:77] + "..."


def _to_space(v: object) -> dict[Any, Any]:
    """Optuna's search space: params key (as `dvc exp run -S` takes it) -> {low, high[, log, step]} or {choices}."""
    if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(d, dict) for k, d in v.items()):
        raise _refuse("is not a mapping of params key -> {low, high} or {choices}")
    for key, d in v.items():
        if set(d) == {"choices"}:
            if not isinstance(d["choices"], list) or not d["choices"]:
                raise _refuse(f"has {key}.choices: {show(d['choices'])}, not a non-empty list")
            continue
        if not {"low", "high"} <= set(d) <= {"low", "high", "log", "step"}:
            raise _refuse(f"has {key}: {show(d)}, which is neither")
        low, high = _to_number(d["low"]), _to_number(d["high"])
        if not low < high or (d.get("log") and low <= 0) or ("step" in d and not _to_number(d["step"]) > 0):
            raise _refuse(f"has {key}: {show(d)}, whose range is empty or not positive (log) or whose step is not > 0")
    return v
