"""What `make review` compares: each task's results at two revisions, and whether the change is real.

A task's results are the files evaluate and train write under `metrics/<task>/` (HEADLINE, PREDICTIONS,
METRICS). A task changed when any of them differs. Its verdict is a paired bootstrap of head - base of
the primary metric over the same test events (joined on `row`, the event's index in the converted
dataset), so that what both revisions share, the events' difficulty, cancels out.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from e2e.errors import E2EError
from e2e.evaluation.metrics import paired_difference_interval
from e2e.tasks import Task

Reader = Callable[[str], "bytes | None"]  # repository path -> that revision's bytes, None where it has none
HEADLINE, PREDICTIONS = "eval/headline.json", "eval/predictions.parquet"
METRICS = ("eval/metrics.json", "train/metrics.json")


@dataclass(frozen=True)
class Results:
    """One revision's results of one task; None or empty where the revision has no such file."""

    headline: dict | None  # the task's block of headline.json: {name: value}
    predictions: pd.DataFrame | None
    metrics: dict[str, object]  # "<file>: <flattened key>" -> value, from both metrics.json files

    @property
    def exists(self) -> bool:
        return self.headline is not None or self.predictions is not None or bool(self.metrics)


@dataclass(frozen=True)
class Paired:
    """The paired bootstrap of head - base of the primary metric; `why` says why there is none."""

    n: int = 0
    lo: float = float("nan")
    hi: float = float("nan")
    why: str = ""


def revision_reader(rev: str | None, root: Path = Path(".")) -> Reader:
    """Reader of a git revision's files (git-tracked or DVC outputs), or of the workspace for rev None."""
    if rev is None:
        return lambda path: (root / path).read_bytes() if (root / path).is_file() else None
    from dvc.api import DVCFileSystem
    from dvc_data.index.index import DataIndexError

    fs = DVCFileSystem(str(root), rev=rev)

    def read(path: str) -> bytes | None:
        try:  # a DVC output of rev (or its directory object) that is neither in the cache nor in a remote
            return fs.read_bytes(path) if fs.exists(path) else None
        except (FileNotFoundError, DataIndexError):
            raise E2EError(
                f"{path} of {rev} is not in the DVC cache or remote: fetch {rev}'s results first "
                f"(`scripts/pr_review.sh {rev}` does, or `git checkout {rev} && dvc pull`)"
            ) from None

    return read


def flatten(values: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def read_results(task: Task, read: Reader) -> Results:
    def path(name: str) -> str:
        return f"metrics/{task.name}/{name}"

    top, table = read(path(HEADLINE)), read(path(PREDICTIONS))
    metrics: dict[str, object] = {}
    for name in METRICS:
        raw = read(path(name))
        if raw is not None:
            metrics.update({f"{name}: {k}": v for k, v in flatten(json.loads(raw)).items()})
    return Results(
        headline=None if top is None else json.loads(top).get(task.tag),
        predictions=None if table is None else pd.read_parquet(io.BytesIO(table)),
        metrics=metrics,
    )


def changed(base: Results, head: Results) -> bool:
    if base.headline != head.headline or base.metrics != head.metrics:
        return True
    if base.predictions is None or head.predictions is None:
        return base.predictions is not head.predictions
    return not base.predictions.equals(head.predictions)


def split_events(df: pd.DataFrame, split: str) -> pd.DataFrame:
    return df[df["split"] == split].set_index("row").sort_index()


def paired(task: Task, base: Results, head: Results, *, n_boot: int, seed: int = 0) -> Paired:
    """Paired bootstrap of head - base of the task's primary metric on the test events both share."""
    for name, results in (("base", base), ("head", head)):
        if results.predictions is None:
            return Paired(why=f"not paired: the {name} has no predictions.parquet")
    b, h = split_events(base.predictions, "test"), split_events(head.predictions, "test")
    if not b.index.equals(h.index):
        return Paired(
            why=f"not paired: the test events differ ({len(b)} at base, {len(h)} at head, "
            f"{len(b.index.intersection(h.index))} shared)"
        )
    truth = b["truth"].to_numpy(np.float64)
    if not np.array_equal(truth, h["truth"].to_numpy(np.float64)):
        return Paired(why="not paired: the test events' truth differs")
    lo, hi = paired_difference_interval(
        task.primary_metric,
        truth,
        b["prediction"].to_numpy(np.float64),
        h["prediction"].to_numpy(np.float64),
        n_boot=n_boot,
        seed=seed,
    )
    return Paired(n=len(truth), lo=lo, hi=hi)


def verdict(task: Task, result: Paired) -> str:
    if result.why:
        return result.why
    if not (np.isfinite(result.lo) and np.isfinite(result.hi)):  # e.g. one class only: no AUC
        return "no interval: the metric is undefined on these events"
    if result.lo <= 0 <= result.hi:
        return "within noise"
    return "significant: " + ("better" if (result.lo > 0) == task.higher_is_better else "worse")
