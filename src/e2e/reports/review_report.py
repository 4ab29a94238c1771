"""The Markdown of `make review`: what a reviewer reads first, then the details.

Per task whose results changed: its headline metrics (base, workspace, change, and the paired-bootstrap
verdict of the primary metric), its params that changed, at most MAX_KEY_PLOTS key plots. Then the params
shared by all tasks (once), then under Details every metric that changed and links to the other plots.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from e2e.evaluation.headline import SHORT
from e2e.reports.review import Paired, Results, verdict
from e2e.tasks import TASKS, Task

MAX_KEY_PLOTS = 6  # per task: what a reviewer takes in at a glance (the limit)
# per kind of task, the plots a reviewer looks at first, in this order, at most MAX_KEY_PLOTS; ids are
# dvc.yaml's plot ids after `metrics/<task>/`, matched from the start ({metric}: the task's primary metric);
# one plot per entry
KEY_PLOTS = {
    "classification": (
        "train/plots/metrics/train/val/loss",
        "train/plots/metrics/val/{metric}.tsv",
        "eval/plots/custom/roc.json",
        "eval/plots/custom/rejection.json",
        "eval/plots/custom/score_distribution.json",
        "eval/plots/custom/rejection_vs_",
    ),
    "regression": (
        "train/plots/metrics/train/val/loss",
        "train/plots/metrics/val/{metric}.tsv",
        "eval/plots/custom/pred_vs_true.json",
        "eval/plots/custom/residuals.json",
        "eval/plots/custom/resolution_vs_true_mass.json",
        "eval/plots/custom/response_vs_",
    ),
}
LABELS = {
    "test_auc": "test ROC-AUC",
    "val_auc": "validation ROC-AUC of the best epoch",
    "oracle_auc": "oracle ROC-AUC (true likelihood ratio)",
    "members_auc": "mean member's test ROC-AUC",
    "test_mae": "test MAE [GeV]",
    "val_mae": "validation MAE [GeV] of the best epoch",
    "resolution": "test resolution (68 % half-width of (pred - true)/true)",
    "response": "test response (median pred/true)",
    "members_mae": "mean member's test MAE [GeV]",
}
Plot = tuple[str, str]  # (title, path relative to the report)


@dataclass(frozen=True)
class TaskSection:
    task: Task
    base: Results
    head: Results
    paired: Paired
    params: dict[str, tuple] = field(default_factory=dict)  # key -> (base value, workspace value)
    key_plots: list[Plot] = field(default_factory=list)
    other_plots: list[Plot] = field(default_factory=list)


def fmt(value: object) -> str:
    if value is None:
        return "-"  # JSON null: an infinite rejection (no background passes) or a missing value
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def change(base: object, head: object) -> str:
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (base, head)):
        return ""
    diff = float(head) - float(base)  # type: ignore[arg-type]  # both numbers, checked above
    return f"{diff:+.3g}" if math.isfinite(diff) else ""


def primary(task: Task) -> str:
    """The headline name of the task's test metric, the one the verdict is on."""
    return f"test_{SHORT[task.primary_metric]}"


def label(name: str) -> str:
    if name.startswith("rej") and name[3:].isdigit():
        return f"test rejection 1/FPR at {name[3:]} % signal efficiency"
    return LABELS.get(name, name)


def headline_table(section: TaskSection, base_name: str) -> list[str]:
    task, result = section.task, section.paired
    base, head = section.base.headline or {}, section.head.headline or {}
    names = [k for k in {**head, **base} if not k.endswith(("_lo", "_hi"))]
    first = primary(task)
    rows = [
        f"| metric | `{base_name}` | workspace | change | 95 % interval of the change | verdict |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name in sorted(names, key=lambda n: n != first):  # the verdict's metric first
        interval, word = "", ""
        if name == first:
            word = verdict(task, result)
            interval = "" if result.why else f"[{result.lo:+.3g}, {result.hi:+.3g}]"
        rows.append(
            f"| {label(name)} (`{task.tag}.{name}`) | {with_interval(base, name)} | "
            f"{with_interval(head, name)} | {change(base.get(name), head.get(name))} | {interval} | {word} |"
        )
    return rows


def with_interval(values: dict, name: str) -> str:
    """The value, and its 95 % interval where the headline has one (`<name>_lo`, `<name>_hi`)."""
    if name + "_lo" not in values:
        return fmt(values.get(name))
    return f"{fmt(values.get(name))} [{fmt(values[name + '_lo'])}, {fmt(values.get(name + '_hi'))}]"


def task_of(key: str) -> str | None:
    """The task a params key belongs to (`train.quark_gluon.lr`, `evaluate.bins.jet_mass.pt`), if any."""
    return next((part for part in key.split(".") if part in TASKS), None)


def params_by_task(diff: dict) -> dict[str | None, dict[str, tuple]]:
    """`dvc params diff --json` ({file: {key: {old, new}}}) by task (None: shared by every task)."""
    out: dict[str | None, dict[str, tuple]] = {}
    for file, keys in diff.items():
        for key, values in keys.items():
            name = key if file == "params.yaml" else f"{file}: {key}"
            out.setdefault(task_of(key), {})[name] = (values.get("old"), values.get("new"))
    return out


def params_table(params: dict[str, tuple], base_name: str) -> list[str]:
    return [
        f"| param | `{base_name}` | workspace |",
        "| --- | --- | --- |",
        *(f"| {key} | {fmt(old)} | {fmt(new)} |" for key, (old, new) in params.items()),
    ]


def split_plots(task: Task, plot_ids: list[str]) -> tuple[list[str], list[str]]:
    """(the task's key plots, one per KEY_PLOTS entry in its order; its other plots)."""
    own = [p for p in plot_ids if p.startswith(f"metrics/{task.name}/")]
    key: list[str] = []
    for pattern in KEY_PLOTS[task.kind]:
        prefix = f"metrics/{task.name}/" + pattern.format(metric=task.primary_metric)
        key += [p for p in own if p.startswith(prefix) and p not in key][:1]
    return key, [p for p in own if p not in key]


def metrics_diff_table(base: Results, head: Results, base_name: str) -> list[str]:
    keys = [k for k in {**base.metrics, **head.metrics} if base.metrics.get(k) != head.metrics.get(k)]
    rows = [f"| metric | `{base_name}` | workspace | change |", "| --- | --- | --- | --- |"]
    return rows + [
        f"| {k} | {fmt(base.metrics.get(k))} | {fmt(head.metrics.get(k))} | "
        f"{change(base.metrics.get(k), head.metrics.get(k))} |"
        for k in keys
    ]


def task_lines(section: TaskSection, base_name: str, n_boot: int) -> list[str]:
    task, result = section.task, section.paired
    how = (
        f"a paired bootstrap ({n_boot} resamples) of workspace - `{base_name}` over the same {result.n} "
        "test events; significant where its 95 % interval excludes zero"
        if not result.why
        else result.why
    )
    lines = [
        f"## {task.name}",
        "",
        f"Headline (`metrics/{task.name}/eval/headline.json`, [95 % interval]). Verdict on the "
        f"{label(primary(task))}: {how}.",
        "",
        *headline_table(section, base_name),
        "",
    ]
    lines += (
        [f"Parameters of {task.name} that changed:", "", *params_table(section.params, base_name), ""]
        if section.params
        else [f"No parameter of {task.name} changed.", ""]
    )
    lines += [f"Key plots of {task.name} (`{base_name}` and workspace on the same axes; the others under Details):", ""]
    for title, png in section.key_plots:
        alt = title.replace("[", "(").replace("]", ")")  # brackets would end Markdown's alt text early
        lines += [f"### {title}", "", f"![{alt}]({png})", ""]
    return lines


def details_lines(section: TaskSection, base_name: str) -> list[str]:
    table = metrics_diff_table(section.base, section.head, base_name)
    lines = [
        "<details>",
        f"<summary>{section.task.name}: every metric that changed ({len(table) - 2}, from "
        f"metrics/{section.task.name}/eval/metrics.json and train/metrics.json)</summary>",
        "",
        *table,
        "",
        "</details>",
        "",
    ]
    if section.other_plots:
        lines += [
            f"Other plots of {section.task.name}:",
            "",
            *(f"- [{title}]({path})" for title, path in section.other_plots),
            "",
        ]
    return lines


def compose(
    base_name: str,
    sections: list[TaskSection],
    *,
    unchanged: list[str],
    absent: list[str],
    shared_params: dict[str, tuple],
    n_boot: int,
) -> str:
    """The report; unchanged: tasks with the same results at both revisions, absent: with none at either."""
    lines = [f"# Review: workspace vs `{base_name}`", ""]
    changed_names = ", ".join(f"**{s.task.name}**" for s in sections) or "none"
    summary = f"Tasks whose results changed: {changed_names}."
    if unchanged:
        summary += f" Unchanged: {', '.join(unchanged)} (headline, predictions and metrics as at `{base_name}`)."
    if absent:
        summary += f" No results at either revision: {', '.join(absent)}."
    lines += [summary, ""]
    for section in sections:
        lines += task_lines(section, base_name, n_boot)
    if shared_params:
        lines += [
            "## Parameters of every task (or of a task whose results did not change)",
            "",
            *params_table(shared_params, base_name),
            "",
        ]
    lines += ["## Details", ""]
    for section in sections:
        lines += details_lines(section, base_name)
    lines += [f"Every plot of every task: `dvc plots diff {base_name}` and open `dvc_plots/index.html`.", ""]
    return "\n".join(lines)
