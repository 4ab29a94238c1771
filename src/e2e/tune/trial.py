"""One trial of `e2e tune` as a real DVC experiment: `dvc exp run --temp -n <name> -S ...` in a subprocess
from the repository root, its metrics read back from the experiment's commit, optionally pushed.

`--temp` runs each experiment in its own copy under .dvc/tmp/exps, so the workspace is never modified and
several run side by side. Their starts must not overlap, though: DVC stashes an experiment into a stash ref
shared by every `--temp` run (it assumes a queue of length 0 or 1), then pops the newest entry after
releasing the repository lock; two overlapping starts could pop each other's entry, or fail on DVC's
lock of that ref. So a start holds a file lock until DVC prints that it reproduces this experiment, and
DVC is asked to wait for its repository lock rather than fail after 3 s (`--wait-for-lock`).
"""

from __future__ import annotations

import collections
import fcntl
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from e2e.errors import E2EError
from e2e.evaluation.headline import keys as headline_keys
from e2e.tasks import get_task
from e2e.tune.space import differences

STARTED = "Reproducing experiment '"  # DVC's first line once it has taken its stash entry
START_LOCK = Path(".dvc") / "tmp" / "e2e-tune-start.lock"


@dataclass(frozen=True)
class Slot:
    """What one of the parallel jobs gets of the machine: its environment and its extra `-S` settings."""

    env: dict[str, str]
    sets: tuple[str, ...] = ()
    label: str = ""


@dataclass
class Outcome:
    value: float | None = None  # the objective (validation), None when the trial failed
    test: float | None = None  # the test metric, recorded for the report only
    error: str | None = None
    seconds: float = 0.0
    ref: str | None = None  # refs/exps/.../<name>, once the experiment exists
    baseline: str | None = None  # the commit it ran from
    changed: dict[str, str] | None = None  # params key -> "committed -> trial", where they differ


def visible_gpus() -> list[str]:
    """The GPUs a job may be given: CUDA_VISIBLE_DEVICES's entries where set, else `nvidia-smi -L`'s
    (torch-free: importing torch to count them would cost seconds)."""
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        return [d.strip() for d in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if d.strip() not in ("", "-1")]
    try:
        proc = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    gpus = [line for line in proc.stdout.splitlines() if line.startswith("GPU ")] if proc.returncode == 0 else []
    return [str(i) for i in range(len(gpus))]


def slots(jobs: int, gpus: list[str], cores: int) -> list[Slot]:
    """One GPU per job when there are enough, else each job's share of the CPU cores: runtime.threads
    (a hardware knob no stage lists among its params, so it changes no result) and OMP_NUM_THREADS."""
    if jobs == 1:
        return [Slot({})]
    if len(gpus) >= jobs:
        return [Slot({"CUDA_VISIBLE_DEVICES": g}, (), f"GPU {g}") for g in gpus[:jobs]]
    threads = max(1, cores // jobs)
    return [
        Slot({"OMP_NUM_THREADS": str(threads)}, (f"runtime.threads={threads}",), f"{threads} CPU thread(s)")
        for _ in range(jobs)
    ]


class StartLock:
    """An exclusive flock on .dvc/tmp/e2e-tune-start.lock: each holder opens the file itself, so it also
    excludes the other threads of this process, and other `e2e tune` processes in the same repository."""

    def __init__(self, root: Path) -> None:
        path = root / START_LOCK
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a")
        fcntl.flock(self._file, fcntl.LOCK_EX)

    def release(self) -> None:
        if not self._file.closed:
            self._file.close()  # closing drops the flock


def trial_env(slot: Slot) -> dict[str, str]:
    # the stage commands call `python`: this interpreter's (the venv's), even when it is not activated;
    # unbuffered, so DVC's start line comes through the pipe at once
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, "PATH": path, "PYTHONUNBUFFERED": "1", **slot.env}


def dvc(*args: str) -> list[str]:
    return [sys.executable, "-m", "dvc", "--wait-for-lock", *args]


def run_experiment(root: Path, name: str, sets: list[str], slot: Slot, log_path: Path) -> str | None:
    """Run the experiment to its end, its output in `log_path`; None, or the line that says why it failed."""
    # the slot's settings first: of two -S for one key DVC keeps the last, and a fixed override wins
    cmd = dvc("exp", "run", "--temp", "-n", name, *[a for s in [*slot.sets, *sets] for a in ("-S", s)])
    tail: collections.deque[str] = collections.deque(maxlen=200)
    lock = StartLock(root)
    try:
        with open(log_path, "w", buffering=1) as log:  # line by line: readable while it runs
            log.write(" ".join(cmd[1:]) + "\n")
            proc = subprocess.Popen(
                cmd,
                cwd=root,
                env=trial_env(slot),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
            )
            assert proc.stdout is not None  # stdout=PIPE: always a pipe
            for line in proc.stdout:
                log.write(line)
                tail.append(line.rstrip())
                if line.startswith(STARTED):
                    lock.release()
            rc = proc.wait()
    finally:
        lock.release()
    return None if rc == 0 else error_line(list(tail), rc)


def error_line(lines: list[str], rc: int) -> str:
    """The most telling line of a failed run: the stage's own `error:` line (e2e.cli), else DVC's
    `ERROR:`, else the last line (a traceback's exception)."""
    lines = [x.strip() for x in lines if x.strip()]
    for prefix in ("error: ", "ERROR: "):
        found = [x for x in lines if x.startswith(prefix)]
        if found:
            return found[-1]
    return lines[-1] if lines else f"dvc exp run exited with {rc} and printed nothing"


def git(root: Path, *args: str) -> str | None:
    proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def exp_ref(baseline: str, name: str) -> str:
    """The ref DVC gives experiment `name` of commit `baseline` (unique, where a bare name may be ambiguous
    across commits)."""
    return f"refs/exps/{baseline[:2]}/{baseline[2:]}/{name}"


def has_experiment(root: Path, name: str) -> bool:
    """Whether this repository holds an experiment `name` (of any commit)."""
    refs = git(root, "for-each-ref", "--format=%(refname)", "refs/exps") or ""
    return any(r.endswith(f"/{name}") for r in refs.splitlines())


@dataclass(frozen=True)
class Column:
    """A metric of `dvc exp show`: its metrics file and its key path in that file."""

    file: str
    keys: tuple[str, ...]

    def sort_by(self) -> str:
        """`--sort-by` of `dvc exp show`: `file:key`, as a bare key is ambiguous across the tasks' files."""
        return f"{self.file}:{'.'.join(self.keys)}"

    def read(self, metrics: dict[str, Any]) -> Any:
        """Its value (any JSON value) in `dvc exp show --json`'s metrics of one revision, None where absent."""
        value = metrics.get(self.file, {}).get("data", {})
        for key in self.keys:
            value = value.get(key) if isinstance(value, dict) else None
        return value


def columns(task: str) -> tuple[Column, Column]:
    """(the objective: the best model's validation metric, the reported test metric): their keys in the
    task's headline.json (e2e.evaluation.headline), the one metrics file of the task that dvc.yaml lists,
    so `dvc exp show` has it."""
    path, keys = f"metrics/{task}/eval/headline.json", headline_keys(get_task(task))
    return Column(path, tuple(keys["val"].split("."))), Column(path, tuple(keys["test"].split(".")))


def read_metrics(root: Path, rev: str, task: str) -> tuple[float, float | None]:
    """(validation, test) metric of commit `rev`, through DVC: the metrics files are DVC outputs,
    in the cache rather than in git. `--rev <commit> -n 1` reads that one commit, not every experiment."""
    proc = subprocess.run(
        dvc("exp", "show", "--json", "--no-fetch", "--rev", rev, "-n", "1"),
        cwd=root,
        capture_output=True,
        text=True,
        env=trial_env(Slot({})),
    )
    try:
        rows = json.loads(proc.stdout)
        metrics = next(r for r in rows if r["rev"] == rev)["data"]["metrics"]
    except (ValueError, StopIteration, KeyError, TypeError):
        raise E2EError(
            f"dvc exp show --rev {rev[:7]}: no metrics ({error_line(proc.stderr.splitlines(), 1)})"
        ) from None
    objective, test = columns(task)
    value = objective.read(metrics)
    if not isinstance(value, (int, float)):
        raise E2EError(f"{objective.file} of {rev[:7]}: no number {'.'.join(objective.keys)}")
    return float(value), test.read(metrics)


def changed_params(root: Path, baseline: str, rev: str) -> dict[str, str]:
    """Every params.yaml value in which commit `rev` differs from `baseline`: what `dvc exp apply` brings.
    Read as DVC reads it (ruamel.yaml, YAML 1.2), not with PyYAML: DVC writes 1e-05, a string in YAML 1.1."""
    from ruamel.yaml import YAML

    before, after = (git(root, "show", f"{r}:params.yaml") for r in (baseline, rev))
    if before is None or after is None:
        raise E2EError(f"git show {baseline[:7]}:params.yaml / {rev[:7]}:params.yaml: not readable")
    return differences(YAML(typ="safe").load(before) or {}, YAML(typ="safe").load(after) or {})


def run_trial(root: Path, task: str, name: str, *, sets: list[str], slot: Slot, log_path: Path) -> Outcome:
    """Experiment `name` (`dvc exp run -n name` with `sets`, output to `log_path`) and what it scored."""
    start = time.monotonic()
    baseline = git(root, "rev-parse", "HEAD")
    error = run_experiment(root, name, sets, slot, log_path)
    out = Outcome(error=error)
    if error is None:
        try:
            # no HEAD: `dvc exp run` would have failed first, so this guards only a repository changed under us
            if baseline is None:
                raise E2EError("git rev-parse HEAD: no commit to find the experiment of")
            ref = exp_ref(baseline, name)
            sha = git(root, "rev-parse", "--verify", "-q", ref)
            if sha is None:
                raise E2EError(f"dvc exp run succeeded but left no experiment {ref}")
            out.ref, out.baseline = ref, baseline
            out.value, out.test = read_metrics(root, sha, task)
            out.changed = changed_params(root, baseline, sha)
        except E2EError as exc:
            out.error = str(exc)
    out.seconds = time.monotonic() - start
    return out


def push(root: Path, remote: str, ref: str) -> str | None:
    """`dvc exp push <remote> <ref>`: the experiment's commit to the git remote, its outputs to the DVC
    remote; None, or the line that says why it failed."""
    proc = subprocess.run(
        dvc("exp", "push", remote, ref), cwd=root, capture_output=True, text=True, env=trial_env(Slot({}))
    )
    return None if proc.returncode == 0 else error_line((proc.stdout + proc.stderr).splitlines(), proc.returncode)
