"""The threads of `e2e tune`: each asks the Optuna study for a trial, runs it as one `dvc exp run`
(e2e.tune.trial) and tells the study how it ended, so the study's counts stay true through a crash, a
failed trial or Ctrl-C."""

from __future__ import annotations

import os
import socket
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from e2e.tasks import TASKS
from e2e.tune.report import progress
from e2e.tune.space import set_arg, suggest
from e2e.tune.trial import Outcome, Slot, push, run_trial

if TYPE_CHECKING:
    import optuna

    from e2e.config import TuneParams
    from e2e.tune.space import Dim


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
                log = self.root / "tune" / "logs" / f"{name}.log"
                outcome = run_trial(self.root, self.task, name, sets=sets, slot=slot, log_path=log)
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
