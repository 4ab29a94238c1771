"""A sweep as queued experiments: `dvc exp run --queue` with a sweep of -S values, run by the queue's
workers two at a time, then compared with `dvc exp show`.

Runs on a clone of pipeline_repo.golden_repo (the electron_photon graph, reproduced and pushed): each
queued experiment starts from the committed results and reruns only train and evaluate.
"""

from __future__ import annotations

import csv
import io
import os
import shutil

import pytest

from support import processes
from support.pipeline_repo import ROOT, clone, run
from support.pipeline_repo import golden_repo as build_golden

pytestmark = pytest.mark.slow
TASK = "electron_photon"


@pytest.fixture
def repo(tmp_path_factory):
    golden = build_golden(tmp_path_factory, TASK)
    repo = clone(golden, golden.parent / "sweep")
    run(["dvc", "pull"], repo)
    yield repo
    # no worker outlives the test, pass, fail or timeout: `dvc queue stop --kill` does not always end the
    # daemonised `dvc exp queue-worker` and the `dvc exp run` it serves, so kill whatever runs in the repo
    run(["dvc", "queue", "stop", "--kill"], repo, check=False, timeout=60)
    processes.kill(processes.under(repo.parent, os.environ[processes.MARK]))


def exp_rows(repo) -> list[dict]:
    out = run(["dvc", "exp", "show", "--csv", "--force"], repo)
    return list(csv.DictReader(io.StringIO(out[out.index("Experiment,") :])))


def test_queued_sweep_runs_both_settings_and_exp_show_lists_their_metrics(repo):
    # the README's sweep: one experiment per value (the baseline has lr 1e-3, so both change something)
    out = run(["dvc", "exp", "run", "--queue", "-S", f"train.{TASK}.lr=3e-3,3e-4"], repo)
    assert out.count("Queued experiment") == 2, out
    queued = run(["dvc", "queue", "status"], repo)
    assert queued.count("Queued") == 2, queued

    # two workers run the experiments side by side; --run-all returns when both are done
    run(["dvc", "exp", "run", "--run-all", "-j", "2"], repo, timeout=400)
    done = run(["dvc", "queue", "status"], repo)
    assert done.count("Success") == 2 and "Failed" not in done, done

    rows = exp_rows(repo)
    baseline = next(r for r in rows if r["typ"] == "baseline")
    exps = [r for r in rows if r["Experiment"]]
    assert len(exps) == 2 and all(r["State"] == "Success" for r in exps), exps
    lr = f"train.{TASK}.lr"
    assert sorted(float(r[lr]) for r in exps) == [3e-4, 3e-3]
    for r in exps:
        for m in ("eg.test_auc", "eg.test_auc_lo", "eg.test_auc_hi", "eg.val_auc"):
            assert 0.0 <= float(r[m]) <= 1.0, (r["Experiment"], m, r[m])
        # each experiment trained its own model (evaluate's dependency), not the baseline's
        assert r[f"models/{TASK}/model.pt"] != baseline[f"models/{TASK}/model.pt"], r["Experiment"]
        log = run(["dvc", "queue", "logs", r["Experiment"]], repo)
        assert f"Running stage 'train@{TASK}'" in log and f"Running stage 'evaluate@{TASK}'" in log, log
        assert "Running stage 'convert@" not in log and "Running stage 'download@" not in log, log
    assert exps[0][f"models/{TASK}/model.pt"] != exps[1][f"models/{TASK}/model.pt"]

    # `dvc exp show --only-changed` of the real outputs: the lr, the task's headline and nothing else but what DVC
    # always adds (the queue's State and Executor, the changed model file's hash, a dependency of evaluate);
    # without those, one screen wide (the README's recipe)
    shown = run(["dvc", "exp", "show", "--only-changed", "--no-pager"], repo, COLUMNS="1000")
    header = next(line for line in shown.splitlines() if "Experiment" in line).split()
    extra = {"Experiment", "Created", "State", "Executor", lr, f"models/{TASK}/model.pt"}
    assert set(header) - extra == {
        "eg.test_auc",
        "eg.test_auc_lo",
        "eg.test_auc_hi",
        "eg.val_auc",
        "eg.rej50",
        "eg.rej80",
    }, shown
    narrow = ["dvc", "exp", "show", "--only-changed", "--no-pager", "--drop", "State|Executor|models/"]
    shown = run(narrow, repo, COLUMNS="1000")
    assert max(len(line.rstrip()) for line in shown.splitlines()) <= 160 and "…" not in shown, shown

    # the README's comparison (`make compare`): what changed and what it did, best validation first
    shutil.copy(ROOT / "Makefile", repo / "Makefile")
    table = run(["make", "-s", "-o", ".venv/.installed", "compare"], repo)
    lines = table.splitlines()
    assert lines[0] == "electron_photon: sorted by eg.val_auc (validation, higher is better)", table
    assert lines[1].split()[:2] == ["Experiment", "lr"] and len(lines) == 2 + 2 + 2 + 2, table
    assert max(map(len, lines)) <= 120, table
