"""`e2e tune <task>`: an Optuna study whose every trial is a real DVC experiment (e2e.tune.trial), listed by
`dvc exp show`, reproducible and comparable with `dvc plots diff`. The search space is params.yaml
`tune.<task>` (e2e.tune.space); the objective is the validation metric of the best epoch, never a test one.

The study lives in Optuna storage (a journal file by default, or any URL), so a rerun continues it and
workers in other clones, on other machines, join it. Optuna is imported only here, when tuning.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from e2e.errors import E2EError, first_line
from e2e.tasks import TASKS
from e2e.tune.report import progress, report
from e2e.tune.space import load_fixed, load_space, set_arg, suggest
from e2e.tune.trial import Outcome, Slot, git, push, run_trial, slots, visible_gpus

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage

    from e2e.config import TuneParams
    from e2e.tune.space import Dim

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


def make_sampler(kind: str, seed: int) -> optuna.samplers.BaseSampler:
    import optuna

    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # constant_liar: trials still running (here or on other workers) count as bad, so parallel
    # trials are not all drawn near the same point
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


class Runner:
    """Asks and tells the study for `jobs` threads, each driving one `dvc exp run` at a time."""

    def __init__(
        self,
        study: optuna.Study,
        dims: list[Dim],
        tune: TuneParams,
        task: str,
        root: Path,
        *,
        trials: int,
        push_to: str | None,
        fixed: list[str],
    ) -> None:
        self.study, self.dims, self.tune, self.task, self.root = study, dims, tune, task, root
        self.trials, self.push_to, self.fixed = trials, push_to, fixed
        self.metric = TASKS[task].primary_metric
        self.worker = f"{socket.gethostname()}:{root.resolve()}"
        self.lock = threading.Lock()  # Optuna's ask/tell and the counts below, one thread at a time
        self.running = 0  # trials of this process not told yet
        self.stop = False

    def finished(self) -> int:
        from optuna.trial import TrialState

        return len(self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)))

    def fail_abandoned(self) -> int:
        """Tell as failed the trials left RUNNING by an `e2e tune` of this clone that has ended (killed, or
        the machine rebooted), so that the study's counts stay true; other workers' trials are theirs."""
        from optuna.trial import TrialState

        abandoned = [
            t
            for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if t.user_attrs.get("worker") == self.worker and not alive(t.user_attrs.get("pid"))
        ]
        for t in abandoned:
            self.study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
        return len(abandoned)

    def ask(self) -> tuple[optuna.Trial, dict[str, Any]] | None:
        """(trial, params key -> value), or None once the study has enough trials finished or running here."""
        with self.lock:
            if self.stop or self.finished() + self.running >= self.trials:
                return None
            trial = self.study.ask()
            # Optuna samples at suggest time, from study.sampler: seeded by the trial number, so a study is
            # reproducible and two workers started together do not draw the same values
            self.study.sampler = make_sampler(self.tune.sampler, self.tune.seed + trial.number)
            values = suggest(trial, self.dims)
            trial.set_user_attr("experiment", f"{self.study.study_name}-{trial.number}")
            trial.set_user_attr("worker", self.worker)
            trial.set_user_attr("pid", os.getpid())
            trial.set_user_attr("set", [set_arg(k, v) for k, v in values.items()])
            self.running += 1
            return trial, values

    def work(self, slot: Slot) -> None:
        while (asked := self.ask()) is not None:
            trial, values = asked
            name = trial.user_attrs["experiment"]
            outcome = Outcome(error="interrupted")
            try:
                sets = [*trial.user_attrs["set"], *self.fixed]
                outcome = run_trial(
                    self.root, self.task, self.metric, name, sets, slot, self.root / "tune" / "logs" / f"{name}.log"
                )
            except Exception as exc:  # a bug here must not leave the trial RUNNING in the study forever
                outcome = Outcome(error=f"{type(exc).__name__}: {exc}")
            finally:
                self.tell(trial, values, outcome)

    def tell(self, trial: optuna.Trial, values: dict[str, Any], out: Outcome) -> None:
        from optuna.trial import TrialState

        push_error = None
        if self.push_to and out.error is None:
            assert out.ref is not None  # run_trial sets the ref of every trial that ends without an error
            push_error = push(self.root, self.push_to, out.ref)
        with self.lock:
            self.running -= 1
            trial.set_user_attr("seconds", round(out.seconds, 1))
            if out.error is None:
                trial.set_user_attr(f"test_{self.metric}", out.test)
                trial.set_user_attr("baseline", out.baseline)
                trial.set_user_attr("changed", out.changed)
                if self.push_to:  # the remote it went to, for the summary's `dvc exp pull`
                    trial.set_user_attr("pushed", self.push_to if push_error is None else False)
                self.study.tell(trial, out.value)
            else:
                trial.set_user_attr("error", out.error)
                self.study.tell(trial, state=TrialState.FAIL)
            print(progress(self, trial, values, out, push_error), flush=True)

    def run(self, jobs_slots: list[Slot]) -> None:
        left = threading.Semaphore(0)
        for slot in jobs_slots:
            threading.Thread(target=self.work_then_signal, args=(slot, left), daemon=True).start()
        # a Semaphore, not Thread.join: a join interrupted by Ctrl-C can return at once the next time
        # (CPython), and the process would end with its trials still RUNNING in the study
        try:
            for _ in jobs_slots:
                left.acquire()
        except KeyboardInterrupt:
            self.stop = True  # the running experiments got the same SIGINT from the terminal
            print(
                f"interrupted: telling the {self.running} running trial(s) as they end "
                f"(Ctrl-C again leaves them RUNNING in the study)",
                file=sys.stderr,
                flush=True,
            )
            while self.running:
                left.acquire(timeout=1)
            raise

    def work_then_signal(self, slot: Slot, done: threading.Semaphore) -> None:
        try:
            self.work(slot)
        finally:
            done.release()


def alive(pid: int | str | None) -> bool:
    """Whether process `pid` (a trial's user attr: None where a trial has none) still runs."""
    if pid is None:  # int(None) would raise the TypeError below
        return False
    try:
        os.kill(int(pid), 0)
    except (TypeError, ValueError, ProcessLookupError):
        return False
    except PermissionError:  # someone else's process now holds that number
        return True
    return True
