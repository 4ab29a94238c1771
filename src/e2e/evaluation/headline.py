"""The few numbers per task that `dvc exp show`, `dvc metrics diff` and `make compare` show: the headline.

evaluate writes them to `metrics/<task>/eval/headline.json`, the only metrics file dvc.yaml lists; the full
set (val and test, binned, per member) stays in `metrics.json` beside it and in train's `metrics.json`.
Keys are `<task tag>.<name>` (e.g. `qg.test_auc`), unique across tasks, so DVC names each column by the key
alone; every number is of the test split except `val_*` (the best model on the validation split).
"""

from __future__ import annotations

from e2e.evaluation.binned import rejection_key
from e2e.tasks import Task

# the short name of each primary metric in the headline keys
SHORT = {"roc_auc": "auc", "mae": "mae"}


def rejection_name(efficiency: float) -> str:
    return f"rej{int(round(100 * efficiency))}"  # background rejection 1/FPR at this signal efficiency


def headline(task: Task, results: dict, working_points) -> dict:
    """{tag: {name: value}} from evaluate's per-split results (`summarise`); JSON-safe values stay as given."""
    m, s = task.primary_metric, SHORT[task.primary_metric]
    test, val = results["test"], results["val"]
    out = {
        f"test_{s}": test[m],
        f"test_{s}_lo": test[f"{m}_ci_lo"],
        f"test_{s}_hi": test[f"{m}_ci_hi"],
        f"val_{s}": val[m],
    }
    if task.is_classification:
        out.update({rejection_name(wp): test[rejection_key(wp)] for wp in working_points})
        if "oracle_auc" in test:
            out["oracle_auc"] = test["oracle_auc"]
    else:
        out.update(resolution=test["resolution"], response=test["response"])
    if "member_mean" in test:
        out[f"members_{s}"] = test["member_mean"][m]  # beside test_<s>: what averaging the members gained
    return {task.tag: out}


def keys(task: Task) -> dict[str, str]:
    """Full `dvc exp show` names of the task's primary metric: {"test": ..., "val": ...}."""
    s = SHORT[task.primary_metric]
    return {"test": f"{task.tag}.test_{s}", "val": f"{task.tag}.val_{s}"}
