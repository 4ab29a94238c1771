"""What `e2e tune` prints: one line per finished trial, and the summary of the study with the best trial,
what applying it changes in params.yaml, and the commands that apply and compare the trials."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

from e2e.errors import E2EError
from e2e.tasks import TASKS
from e2e.tune.space import show_params
from e2e.tune.trial import Outcome, columns, has_experiment

if TYPE_CHECKING:
    from e2e.tune.runner import Runner


def objective_name(task: str) -> str:
    return ".".join(columns(task)[0].keys)  # e.g. qg.val_auc, as `dvc exp show` names the column


def progress(runner: Runner, trial, values: dict, out: Outcome, push_error: str | None) -> str:
    """One line per finished trial (no progress bar: the output is often a log or a pipe)."""
    head = f"[{runner.finished()}/{runner.trials}] trial {trial.number} {trial.user_attrs['experiment']}"
    if out.error is not None:
        return f"{head} FAILED after {out.seconds:.0f}s: {out.error} (log: tune/logs/{head.split()[-1]}.log)"
    m = runner.metric
    test = f"{out.test:.4g}" if isinstance(out.test, (int, float)) else "-"
    best = runner.study.best_trial
    line = (
        f"{head} {out.seconds:.0f}s: {objective_name(runner.task)} {out.value:.4g} (test {m} {test})  "
        f"{show_params(values)}  "
        f"| best: trial {best.number} {best.value:.4g}"
    )
    return line + (f"  | push to {runner.push_to} failed: {push_error}" if push_error else "")


def report(study, runner: Runner, where: str) -> None:
    """The best trial: number, value, params, experiment, test metric, and the commands that apply it and
    compare the trials."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    count = {s: sum(t.state == s for t in trials) for s in (TrialState.COMPLETE, TrialState.FAIL, TrialState.RUNNING)}
    print(
        f"\nstudy '{study.study_name}' ({where}): {len(trials)} trial(s), {count[TrialState.COMPLETE]} complete, "
        f"{count[TrialState.FAIL]} failed, {count[TrialState.RUNNING]} running"
    )
    if not count[TrialState.COMPLETE]:
        last = next((t.user_attrs.get("error") for t in reversed(trials) if t.state == TrialState.FAIL), None)
        raise E2EError(
            f"tune: study '{study.study_name}': no trial completed (last error: {last}); the logs are in tune/logs/"
        )
    best, m = study.best_trial, runner.metric
    name, test = best.user_attrs.get("experiment"), best.user_attrs.get(f"test_{m}")
    print(
        f"best trial {best.number}: {objective_name(runner.task)} {best.value:.6g} (validation, "
        f"{'higher' if TASKS[runner.task].higher_is_better else 'lower'} is better); test {m} "
        f"{test if test is None else f'{test:.6g}'} (reported, never used to choose)"
    )
    searched = best.user_attrs.get("set", [])
    print(f"  searched:   {' '.join(searched)}")
    if study.user_attrs.get("fixed"):
        print(f"  fixed:      {' '.join(study.user_attrs['fixed'])}  (every trial)")
    local = has_experiment(runner.root, name)
    print(f"  experiment: {name}" + ("" if local else f" (run by {best.user_attrs.get('worker')})"))
    print_apply(best, name, local)
    order = "desc" if TASKS[runner.task].higher_is_better else "asc"
    print(
        f"compare:      dvc exp show --only-changed --sort-by {columns(runner.task)[0].sort_by()} --sort-order {order}"
    )


def print_apply(best, name: str, local: bool) -> None:
    """The command that applies the best trial, and every params.yaml value that it changes: the fixed
    overrides too, so the searched params alone get a command of their own."""
    changed = best.user_attrs.get("changed") or {}  # none recorded by an e2e tune before this one
    if changed:
        print(f"  differs from params.yaml at {best.user_attrs['baseline'][:7]} (the commit it ran from):")
        for key, change in changed.items():
            print(f"    {key}: {change}")
    if local:
        print(f"apply it:     dvc exp apply {name}")
    elif best.user_attrs.get("pushed"):
        print(f"apply it:     dvc exp pull {best.user_attrs['pushed']} {name} && dvc exp apply {name}")
    else:
        print(f"apply it:     dvc exp apply {name}  (in {best.user_attrs.get('worker')}, where it ran)")
    if any(key not in best.params for key in changed):  # best.params: the searched keys
        sets = " ".join(f"-S {shlex.quote(a)}" for a in best.user_attrs.get("set", []))
        print(
            f"  (it brings every change above; the searched params alone, from the committed params.yaml: "
            f"dvc exp run {sets})"
        )
