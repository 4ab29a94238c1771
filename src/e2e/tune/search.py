"""`e2e tune <task>`: an Optuna study whose every trial is a real DVC experiment (e2e.tune.trial), listed by
`dvc exp show`, reproducible and comparable with `dvc plots diff`. The search space is params.yaml
`tune.<task>` (e2e.tune.space); the objective is the validation metric of the best epoch, never a test one.

The study lives in Optuna storage (a journal file by default, or any URL), so a rerun continues it and
workers in other clones, on other machines, join it. Optuna is imported only here, when tuning.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from e2e.errors import E2EError, first_line
from e2e.tasks import TASKS
from e2e.tune.report import report
from e2e.tune.runner import Runner
from e2e.tune.space import load_fixed, load_space, set_arg
from e2e.tune.trial import git, slots, visible_gpus

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage

    from e2e.config import TuneParams

STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # `<study>-<n>` must be a valid experiment name


def main(
    task: str,
    *,
    params_path: Path,
    root: Path,
    trials: int,
    jobs: int = 1,
    study_name: str | None = None,
    storage: str | None = None,
    push_to: str | None = None,
    overrides: Sequence[str] = (),
) -> None:
    """Run trials until the study has `trials` finished ones (complete or failed), `jobs` at a time, each
    with the searched params and the fixed `overrides` (`key=value`, as `dvc exp run -S` takes them)."""
    if trials < 1 or jobs < 1:
        raise E2EError(f"tune: --trials {trials} and --jobs {jobs}: expected both >= 1")
    study_name = study_name or task
    if not STUDY_NAME.fullmatch(study_name):
        raise E2EError(f"tune: --study {study_name!r}: expected letters, digits, '.', '_' or '-'")
    raw, tune = read_params(params_path, task)
    fixed, raw = load_fixed(raw, list(overrides), task, tune.space, str(params_path))
    dims = load_space(raw, task, tune.space, str(params_path))  # each value checked with the fixed ones set
    fixed_sets = [set_arg(k, v) for k, v in fixed.items()]
    if not (root / ".dvc").is_dir() or git(root, "rev-parse", "HEAD") is None:
        raise E2EError(f"tune: {root.resolve()}: not the root of a DVC repository with a commit")
    study, where = open_study(study_name, storage, root, task)
    record_fixed(study, fixed_sets, where)
    jobs_slots = slots(jobs, visible_gpus(), len(os.sched_getaffinity(0)))
    runner = Runner(study, dims, tune, task, root, trials=trials, push_to=push_to, fixed=fixed_sets)
    abandoned = runner.fail_abandoned()
    print(
        f"study '{study_name}' in {where}: {runner.finished()} finished trial(s)"
        f"{f' ({abandoned} abandoned by an earlier run, now failed)' if abandoned else ''}, running up to {trials} "
        f"with {jobs} job(s){' on ' + ', '.join(s.label for s in jobs_slots) if jobs > 1 else ''}"
        f"{', fixed: ' + ' '.join(fixed_sets) if fixed_sets else ''}",
        flush=True,
    )
    runner.run(jobs_slots)
    report(study, runner, where)


def read_params(path: Path, task: str) -> tuple[Any, TuneParams]:
    from e2e.config import load_params

    params = load_params(path)  # every value checked, the tune section included
    if task not in params.tune:
        raise E2EError(f"{path} tune.{task}: missing (expected sampler, seed and space)")
    return yaml.safe_load(path.read_text()), params.tune[task]


def open_study(name: str, storage: str | None, root: Path, task: str) -> tuple[optuna.Study, str]:
    """The study, created or continued: in `storage` (an Optuna URL such as sqlite:///tune.db or
    postgresql://..., or a journal file path), by default the journal file tune/<task>.journal."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial is printed here instead
    logs = root / "tune" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    ignore = root / "tune" / ".gitignore"
    if not ignore.exists():  # git must never see the journal: DVC stashes tracked changes at each start
        ignore.write_text("# e2e tune: study journals and trial logs, never committed\n*\n")
    backend: str | BaseStorage
    if storage and "://" in storage:
        backend, where = storage, storage
    else:
        path = Path(storage) if storage else root / "tune" / f"{task}.journal"
        path.parent.mkdir(parents=True, exist_ok=True)
        backend, where = JournalStorage(JournalFileBackend(str(path))), str(path)
    direction: Literal["maximize", "minimize"] = "maximize" if TASKS[task].higher_is_better else "minimize"
    try:
        study = optuna.create_study(study_name=name, storage=backend, direction=direction, load_if_exists=True)
    except Exception as exc:  # a database that cannot be reached, a URL Optuna does not know
        raise E2EError(f"tune: --storage {where}: {first_line(exc) if str(exc) else type(exc).__name__}") from None
    if study.direction.name.lower() != direction:
        raise E2EError(
            f"tune: study '{name}' in {where} has direction {study.direction.name.lower()}, but "
            f"{task}'s objective, the validation {TASKS[task].primary_metric}, needs {direction}"
        )
    return study, where


def record_fixed(study: optuna.Study, sets: list[str], where: str) -> None:
    """The fixed overrides belong to the study: its first run records them, and a run with others (here or
    on another worker) is refused, as its trials would not be comparable with the study's."""
    if "fixed" not in study.user_attrs and not study.get_trials(deepcopy=False):
        study.set_user_attr("fixed", sorted(sets))
    recorded = study.user_attrs.get("fixed", [])  # read back: of two workers starting together, one wins
    if recorded != sorted(sets):  # no record with trials: begun before fixed overrides existed, so none
        raise E2EError(
            f"tune: study '{study.study_name}' in {where} runs every trial with {shown(recorded)}, "
            f"this run gives {shown(sorted(sets))}: give the same, or another --study"
        )


def shown(sets: list[str]) -> str:
    return " ".join(f"-S {a}" for a in sets) or "no -S"
