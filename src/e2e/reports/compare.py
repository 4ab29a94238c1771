"""`e2e compare [--task T]` (`make compare`): the experiments on one screen, best first.

Reads `dvc exp show --csv --only-changed` and prints one table per task whose results changed (or for the
given task): its experiments, best validation metric (never the test one) first, the params that can
affect it, its headline test metric with its 95 % interval, the validation metric of the best model, and
the ensemble's mean member where there is one. `dvc exp show` keeps every column.
"""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from dataclasses import dataclass

from e2e.errors import E2EError, first_line
from e2e.evaluation.headline import SHORT
from e2e.tasks import TASKS, Task, get_task

FIXED = ("Experiment", "rev", "typ", "Created", "parent", "State", "Executor")
GAP = "  "


@dataclass(frozen=True)
class Column:
    header: str
    cells: list[str]


def exp_show_rows(extra: list[str]) -> list[dict[str, str]]:
    cmd = [sys.executable, "-m", "dvc", "exp", "show", "--csv", "--only-changed", "--force", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise E2EError(f"dvc exp show failed: {first_line(proc.stderr, last=True)}")
    text = proc.stdout[proc.stdout.find("Experiment,") :]
    return list(csv.DictReader(io.StringIO(text)))


def number(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "", "-", "!") else None
    except ValueError:
        return None


def fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def changed_tasks(columns: list[str], only: str | None) -> list[Task]:
    if only is not None:
        return [get_task(only)]
    return [t for t in TASKS.values() if any(c.startswith(f"{t.tag}.") for c in columns)]


def param_columns(columns: list[str], task: Task) -> list[str]:
    """The changed params that can affect `task`: dotted keys that are neither a headline metric nor a
    dependency path, and name no other task (train.jet_mass.lr belongs to the jet-mass table only)."""
    tags = tuple(f"{t.tag}." for t in TASKS.values())
    others = set(TASKS) - {task.name}
    return [
        c
        for c in columns
        if c not in FIXED and "/" not in c and not c.startswith(tags) and not others & set(c.split("."))
    ]


def metric_keys(task: Task) -> dict[str, str]:
    s, tag = SHORT[task.primary_metric], task.tag
    return {name: f"{tag}.{name}_{s}" for name in ("test", "val", "members")}


def differs(row: dict[str, str], baseline: dict[str, str], keys) -> bool:
    return any(row.get(k) != baseline.get(k) for k in keys)


def task_rows(rows: list[dict[str, str]], task: Task) -> list[dict[str, str]]:
    """The workspace and each baseline, each baseline followed by its experiments whose headline of `task`
    differs from it, best validation metric first."""
    key, sign = metric_keys(task)["val"], -1.0 if task.higher_is_better else 1.0
    keys = [k for k in rows[0] if k.startswith(f"{task.tag}.")]

    def order(row: dict[str, str]) -> tuple[bool, float]:
        value = number(row.get(key))
        return value is None, sign * value if value is not None else 0.0

    out: list[dict[str, str]] = []
    group: list[dict[str, str]] = []
    baseline: dict[str, str] = {}
    for row in rows + [{"typ": "end"}]:
        if row.get("typ") in ("workspace", "baseline", "end"):
            out += sorted(group, key=order)
            group = []
            out.append(row)
            baseline = row if row.get("typ") == "baseline" else baseline
        elif differs(row, baseline, keys):
            group.append(row)
    return out[:-1]


def metric_columns(task: Task, rows: list[dict[str, str]]) -> list[Column]:
    k = metric_keys(task)
    test = [
        f"{fmt(number(r.get(k['test'])))} [{fmt(number(r.get(k['test'] + '_lo')), 3)}, "
        f"{fmt(number(r.get(k['test'] + '_hi')), 3)}]"
        for r in rows
    ]
    out = [Column(f"{k['test']} [95 %]", test), Column(k["val"], [fmt(number(r.get(k["val"]))) for r in rows])]
    if any(number(r.get(k["members"])) is not None for r in rows):
        out.append(Column(k["members"], [fmt(number(r.get(k["members"]))) for r in rows]))
    return out


def render(columns: list[Column]) -> str:
    widths = [max(len(c.header), *(len(x) for x in c.cells)) for c in columns]
    lines = [GAP.join(c.header.ljust(w) for c, w in zip(columns, widths)).rstrip()]
    lines += [
        GAP.join(c.cells[i].ljust(w) for c, w in zip(columns, widths)).rstrip() for i in range(len(columns[0].cells))
    ]
    return "\n".join(lines)


def task_table(rows: list[dict[str, str]], task: Task) -> str:
    """One task's table: its experiments, the params that can affect it (train.<task>. dropped), its metrics."""
    rows = task_rows(rows, task)
    prefix = f"train.{task.name}."
    shown = [Column("Experiment", [r.get("Experiment") or r.get("rev", "") for r in rows])]
    shown += [Column(p.removeprefix(prefix), [r.get(p, "") for r in rows]) for p in param_columns(list(rows[0]), task)]
    shown += metric_columns(task, rows)
    order = "higher" if task.higher_is_better else "lower"
    return f"{task.name}: sorted by {metric_keys(task)['val']} (validation, {order} is better)\n" + render(shown)


def table(rows: list[dict[str, str]], only: str | None) -> str:
    tasks = changed_tasks(list(rows[0]) if rows else [], only)
    if not rows or not tasks:
        return "no experiment differs from its baseline in any task's headline metrics"
    return "\n\n".join(task_table(rows, task) for task in tasks) + (
        "\n\ntest metrics with their 95 % bootstrap interval; params of train.<task> without that prefix"
    )


def main(task: str | None, extra: list[str]) -> None:
    if task is not None and task not in TASKS:
        raise E2EError(f"TASK={task}: not a task; choices: {', '.join(TASKS)}")
    print(table(exp_show_rows(extra), task))
