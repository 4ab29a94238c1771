"""`e2e tune`: an Optuna study whose every trial is a real DVC experiment (`dvc exp run --temp`).

The slow tests tune quark_gluon (the cheapest learner: a trial runs its train, evaluate and export) in
clones of one tiny repository, reproduced, committed and pushed once per session; each trial costs ~30 s
of CPU, so they run as few trials as show the behaviour.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from support.pipeline_repo import built_once, clone, commit, env, make_repo, restrict_to, run, start
from support.tune_study import TASK, params

TAG = "qg"  # its headline keys (e2e.tasks)
E2E = [sys.executable, "-m", "e2e", "tune", TASK]


@pytest.fixture(scope="module")
def golden(tmp_path_factory) -> Path:
    """The quark_gluon graph reproduced, committed and pushed to its default remote: a clone pulls its
    outputs, so a trial reruns only train, evaluate and export."""

    def build(repo: Path) -> None:
        make_repo(repo, params())
        restrict_to(repo, TASK)
        commit(repo, f"only the {TASK} stages")
        run(["dvc", "repro"], repo)
        commit(repo, "results")
        run(["dvc", "push"], repo)

    return built_once(tmp_path_factory, "tune-golden", build)


def worker_clone(golden: Path, name: str) -> Path:
    repo = clone(golden, golden.parent / name)  # beside it: the same ../e2e-dvc-storage remote
    run(["dvc", "pull"], repo)
    return repo


def experiments(repo: Path) -> dict[str, dict]:
    """Experiment name -> {params: train.<task> params, value: the headline's validation AUC} from
    `dvc exp show --json`."""
    proc = subprocess.run(["dvc", "exp", "show", "--json"], cwd=repo, env=env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    found = {}
    for row in json.loads(proc.stdout):
        for exp in row.get("experiments") or []:
            data = exp["revs"][0]["data"]
            found[exp["name"]] = {
                "params": data["params"]["params.yaml"]["data"]["train"][TASK],
                "value": data["metrics"][f"metrics/{TASK}/eval/headline.json"]["data"][TAG]["val_auc"],
            }
    return found


def load_study(storage: Path, name: str = TASK):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return optuna.load_study(study_name=name, storage=JournalStorage(JournalFileBackend(str(storage))))


def progress_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("[") and " trial " in line]


def add_second_task_metrics(repo: Path) -> None:
    """A second task's headline among dvc.yaml's metrics (as in the full pipeline), so the printed compare
    command runs where more than one task has metrics: a fixture of this test, not a result."""
    other = "metrics/electron_photon/eval/headline.json"
    (repo / other).parent.mkdir(parents=True)
    (repo / other).write_text(json.dumps({"eg": {"val_auc": 0.5}}))
    spec = yaml.safe_load((repo / "dvc.yaml").read_text())
    spec["metrics"].append(other)
    (repo / "dvc.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    commit(repo, "a second task's train metrics")


@pytest.mark.slow
def test_trials_are_experiments_with_the_fixed_overrides_and_a_rerun_adds_only_the_difference(golden):
    """Regression: the printed compare command `dvc exp show --sort-by best_val_roc_auc` failed with
    "Ambiguous sort column" in a repository with two tasks' metrics."""
    repo = worker_clone(golden, "single")
    add_second_task_metrics(repo)
    fixed = ["-S", f"train.{TASK}.seed=7", "-S", f"train.{TASK}.augment=[flip_eta]"]
    out = run([*E2E, "--trials", "3", "--jobs", "3", *fixed], repo)  # all three at once: the shortest wall time
    assert len(progress_lines(out)) == 3 and "FAILED" not in out, out
    exps = experiments(repo)
    assert sorted(exps) == [f"{TASK}-0", f"{TASK}-1", f"{TASK}-2"], exps
    chosen = {(e["params"]["lr"], e["params"]["batch_size"], e["params"]["weight_decay"]) for e in exps.values()}
    assert len(chosen) == 3, exps
    assert all(e["params"]["seed"] == 7 and e["params"]["augment"] == ["flip_eta"] for e in exps.values()), exps
    assert run(["git", "status", "--porcelain"], repo) == "", "the workspace must stay untouched"

    study = load_study(repo / "tune" / f"{TASK}.journal")
    assert study.user_attrs["fixed"] == [f'train.{TASK}.augment=["flip_eta"]', f"train.{TASK}.seed=7"]
    for t in study.trials:  # each experiment holds what Optuna asked for, and gave it its value
        e = exps[t.user_attrs["experiment"]]
        assert e["params"]["lr"] == pytest.approx(t.params[f"train.{TASK}.lr"], rel=1e-12)
        assert e["params"]["batch_size"] == t.params[f"train.{TASK}.batch_size"] in (16, 32, 48)
        assert t.value == pytest.approx(e["value"]) and 0 <= t.user_attrs["test_roc_auc"] <= 1
    best = study.best_trial
    assert f"best trial {best.number}: {TAG}.val_auc" in out and f"dvc exp apply {TASK}-{best.number}" in out, out
    assert f"fixed:      {' '.join(study.user_attrs['fixed'])}" in out, out
    committed = params()
    changed = {f"train.{TASK}.seed": "0 -> 7", f"train.{TASK}.augment": '[] -> ["flip_eta"]'}
    changed |= {
        key: f"{json.dumps(committed['train'][TASK][key.rsplit('.', 1)[1]])} -> {json.dumps(value)}"
        for key, value in best.params.items()
        if value != committed["train"][TASK][key.rsplit(".", 1)[1]]
    }
    threads = max(1, len(os.sched_getaffinity(0)) // 3)  # each of the 3 jobs' share of the cores
    if threads != committed["runtime"]["threads"]:
        changed["runtime.threads"] = f"{committed['runtime']['threads']} -> {threads}"
    block = out.split("differs from params.yaml at", 1)[1].split("\napply it:", 1)[0].splitlines()[1:]
    assert dict(line.strip().split(": ", 1) for line in block) == changed, out
    assert "the searched params alone" in out, out

    compare = next(line for line in out.splitlines() if line.startswith("compare:")).split(":", 1)[1]
    listed = run([*shlex.split(compare), "--no-pager"], repo)  # fails the test unless it exits 0
    assert all(f"{TASK}-{i}" in listed for i in range(3)), listed

    other = subprocess.run(
        [*E2E, "--trials", "4", "-S", f"train.{TASK}.seed=8"], cwd=repo, env=env(), capture_output=True, text=True
    )
    assert other.returncode == 2 and other.stderr.count("\n") == 1, other.stdout + other.stderr
    assert other.stderr.startswith(f"error: tune: study '{TASK}' in ") and "gives -S train." in other.stderr
    again = run([*E2E, "--trials", "4", "--jobs", "2", *fixed[2:], *fixed[:2]], repo)  # order does not matter
    assert [line.split()[:3] for line in progress_lines(again)] == [["[4/4]", "trial", "3"]], again
    assert sorted(experiments(repo)) == [f"{TASK}-{i}" for i in range(4)]
    assert len(load_study(repo / "tune" / f"{TASK}.journal").trials) == 4


@pytest.mark.slow
def test_two_workers_in_their_own_clones_share_one_study(golden, tmp_path):
    """Each worker asks while the study has fewer finished trials than --trials, counting its own running
    ones only: started together on --trials 1, each runs one, and the study ends with both."""
    journal = tmp_path / "shared.journal"
    clones = [worker_clone(golden, f"worker-{w}") for w in "ab"]
    procs = [
        start([*E2E, "--trials", "1", "--study", "pair", "--storage", str(journal), "--push"], repo) for repo in clones
    ]
    try:
        outs = [p.communicate(timeout=600)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    assert all(p.returncode == 0 for p in procs), outs

    study = load_study(journal, "pair")
    ran = [len(progress_lines(out)) for out in outs]
    assert ran == [1, 1] and len(study.trials) == sum(ran), outs
    for t in study.trials:
        repo = Path(t.user_attrs["worker"].split(":", 1)[1])
        assert repo in clones and t.state.name == "COMPLETE", t
        assert t.user_attrs["experiment"] in experiments(repo)  # in its worker's clone...
        assert t.user_attrs["pushed"] == "origin"
    pushed = run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], golden)
    assert {r.rsplit("/", 1)[1] for r in pushed.split()} >= {"pair-0", "pair-1"}, pushed  # ...and in origin


@pytest.mark.slow
def test_a_failing_trial_is_told_failed_and_the_study_goes_on(golden):
    repo = worker_clone(golden, "failing")
    (repo / "params.yaml").write_text(
        yaml.safe_dump(params({f"train.{TASK}.model_kwargs.dropout": {"choices": ["bad"]}}), sort_keys=False)
    )
    commit(repo, "a space whose every trial fails in train")
    proc = subprocess.run(
        [*E2E, "--trials", "2", "--jobs", "2"], cwd=repo, env=env(), capture_output=True, text=True, timeout=600
    )
    failed = [line for line in progress_lines(proc.stdout) if "FAILED" in line]
    assert len(failed) == 2 and all("error: " in line for line in failed), proc.stdout
    assert proc.returncode == 2 and proc.stderr.startswith("error: tune: study 'quark_gluon': no trial completed")
    study = load_study(repo / "tune" / f"{TASK}.journal")
    assert [t.state.name for t in study.trials] == ["FAIL", "FAIL"]
    assert all(t.user_attrs["error"].startswith("error: ") for t in study.trials)


@pytest.mark.parametrize(
    "space, args, message",
    [
        (
            {f"train.{TASK}.lrr": {"low": 1e-4, "high": 1e-3}},
            [],
            f"error: params.yaml tune.{TASK}.space.train.{TASK}.lrr: 'train.{TASK}.lrr' is not a key of params.yaml",
        ),
        (
            {f"train.{TASK}.batch_size": {"low": 0, "high": 64}},
            [],
            f"error: params.yaml tune.{TASK}.space.train.{TASK}.batch_size: the value 0 is refused",
        ),
        (None, ["-S", f"train.{TASK}.epochs=0"], f"error: tune: -S train.{TASK}.epochs=0: the value 0 is refused"),
    ],
)
def test_bad_input_is_one_error_line_and_nothing_runs(tmp_path, space, args, message):
    repo = make_repo(tmp_path / "repo", params(space))
    proc = subprocess.run([*E2E, "--trials", "2", *args], cwd=repo, env=env(), capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == "", proc.stdout + proc.stderr
    assert proc.stderr.startswith(message) and proc.stderr.count("\n") == 1, proc.stderr
    assert not (repo / "tune").exists() and not (repo / ".dvc" / "tmp" / "exps").exists()
    assert run(["git", "for-each-ref", "refs/exps"], repo) == ""


def test_a_study_keeps_the_fixed_overrides_of_its_first_run():
    import optuna

    from e2e.errors import E2EError
    from e2e.tune.search import record_fixed

    study = optuna.create_study()
    record_fixed(study, ["b=2", "a=1"], "memory")
    record_fixed(study, ["a=1", "b=2"], "memory")  # the same, in another order
    for other in (["a=1"], [], ["a=1", "b=3"]):
        with pytest.raises(E2EError, match=r"runs every trial with -S a=1 -S b=2, this run gives"):
            record_fixed(study, other, "memory")
    older = optuna.create_study()  # trials and no record: an e2e tune from before fixed overrides
    older.tell(older.ask(), 1.0)
    record_fixed(older, [], "memory")
    with pytest.raises(E2EError, match="runs every trial with no -S, this run gives -S a=1"):
        record_fixed(older, ["a=1"], "memory")


def test_each_job_gets_a_gpu_when_there_are_enough_else_a_share_of_the_cores():
    from e2e.tune.trial import slots

    assert [s.env for s in slots(2, ["0", "1", "2"], 16)] == [
        {"CUDA_VISIBLE_DEVICES": "0"},
        {"CUDA_VISIBLE_DEVICES": "1"},
    ]
    cpu = slots(4, ["0"], 16)
    assert {s.env["OMP_NUM_THREADS"] for s in cpu} == {"4"} and cpu[0].sets == ("runtime.threads=4",)
    assert slots(3, [], 2)[0].sets == ("runtime.threads=1",) and slots(1, [], 2)[0].sets == ()


def test_suggestions_depend_on_the_seed_and_trial_number_only(tmp_path):
    """Two studies asked alike draw the same values: a study is reproducible."""
    import optuna

    from e2e.config import parse_params
    from e2e.tune.runner import Runner
    from e2e.tune.space import load_space

    raw = params()
    tune = parse_params(raw).tune[TASK]
    dims = load_space(raw, TASK, tune.space)
    drawn = []
    for _ in range(2):
        study = optuna.create_study(direction="maximize")
        runner = Runner(study, dims, tune, TASK, tmp_path, trials=3, push_to=None, fixed=[])
        drawn.append([runner.ask()[1] for _ in range(3)])
        assert runner.ask() is None  # 3 running here: --trials 3 asks no more
    assert drawn[0] == drawn[1] and len({v[f"train.{TASK}.lr"] for v in drawn[0]}) == 3
    assert all(v[f"train.{TASK}.batch_size"] in (16, 32, 48) for v in drawn[0])
