"""`dvc exp show --only-changed` and `make compare` answer on one screen.

A small git+DVC repository with this project's params.yaml and dvc.yaml `metrics:` list, whose stages stand in
for train+evaluate of each task: each writes the task's headline.json through e2e.evaluation.headline from numbers
that depend on the task's params, in milliseconds. Experiments are real `dvc exp run -S` runs; what is
checked is what DVC shows of the headline keys, so a key set or name that widens the table fails here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from e2e.tasks import TASKS

ROOT = Path(__file__).resolve().parents[2]
FAKE_EVALUATE = """
import hashlib, json, sys
from pathlib import Path
import yaml
from e2e.evaluation.headline import headline
from e2e.tasks import get_task

task = get_task(sys.argv[1])
params = yaml.safe_load(open("params.yaml"))
seed = hashlib.sha256(json.dumps(params["train"][task.name], sort_keys=True).encode()).digest()
u = [b / 255 for b in seed]  # numbers in [0, 1] that change with any train param of this task
if task.is_classification:
    test = {"roc_auc": 0.7 + 0.1 * u[0], "roc_auc_ci_lo": 0.68 + 0.1 * u[0], "roc_auc_ci_hi": 0.72 + 0.1 * u[0],
            "rejection_at_50": 8 + 4 * u[1], "rejection_at_80": 3 + u[2], "oracle_auc": 0.906}
    val = {"roc_auc": 0.7 + 0.1 * u[3]}
else:
    test = {"mae": 40 + 5 * u[0], "mae_ci_lo": 38 + 5 * u[0], "mae_ci_hi": 42 + 5 * u[0],
            "resolution": 0.2 + 0.1 * u[1], "response": 0.9 + 0.2 * u[2]}
    val = {"mae": 40 + 5 * u[3]}
if params["train"][task.name]["ensemble"]["members"] > 1:
    test["member_mean"] = {task.primary_metric: test[task.primary_metric] - 0.01}
out = Path("metrics") / task.name / "eval" / "headline.json"
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(json.dumps(headline(task, {"test": test, "val": val}, params["evaluate"]["working_points"])))
"""


def run(cmd: list[str], cwd: Path, **env: str) -> str:
    full = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.org",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.org",
        **env,
    }
    proc = subprocess.run(cmd, cwd=cwd, env=full, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("compare")
    shutil.copy(ROOT / "params.yaml", root / "params.yaml")
    shutil.copy(ROOT / "Makefile", root / "Makefile")
    (root / "fake_evaluate.py").write_text(FAKE_EVALUATE)
    metrics = yaml.safe_load((ROOT / "dvc.yaml").read_text())["metrics"]
    stage = {
        "foreach": list(TASKS),
        "do": {
            "cmd": "python fake_evaluate.py ${item}",
            "deps": ["fake_evaluate.py"],
            "params": ["train.${item}", "evaluate.working_points"],
            "outs": [{"metrics/${item}/eval/headline.json": {"cache": False}}],
        },
    }
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"evaluate": stage}, "metrics": metrics}))
    run(["git", "init", "-q"], root)
    run([sys.executable, "-m", "dvc", "init", "-q"], root)
    run([sys.executable, "-m", "dvc", "repro", "-q"], root)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "baseline"], root)
    for lr in ("0.001", "0.002", "0.0001"):
        run([sys.executable, "-m", "dvc", "exp", "run", "-q", "-S", f"train.quark_gluon.lr={lr}"], root)
    return root


def exp_show(repo: Path) -> str:
    # a terminal far wider than the table: the table's own width is what is measured, never rich's squeezing
    return run([sys.executable, "-m", "dvc", "exp", "show", "--only-changed", "--no-pager"], repo, COLUMNS="1000")


def test_exp_show_only_changed_fits_one_screen_with_the_changed_tasks_headline(repo):
    table = exp_show(repo)
    lines = [line.rstrip() for line in table.splitlines() if line.strip()]
    assert max(map(len, lines)) <= 160, table
    header = next(line for line in lines if line.strip().startswith("Experiment")).split()
    metrics = [c for c in header if re.match(r"^(eg|qg|mass)\.", c)]
    assert set(metrics) == {"qg.test_auc", "qg.test_auc_lo", "qg.test_auc_hi", "qg.val_auc", "qg.rej50", "qg.rej80"}
    assert "train.quark_gluon.lr" in header and "…" not in table
    assert len(metrics) + 1 <= 20


def test_metrics_diff_shows_the_headline_only(repo):
    out = run([sys.executable, "-m", "dvc", "metrics", "diff", "HEAD", "--all", "--md"], repo)
    keys = {cells[2].strip() for cells in (line.split("|") for line in out.splitlines()[2:]) if len(cells) > 3}
    assert keys and all(re.match(r"^(eg|qg|mass)\.", k) for k in keys), out


def tables(out: str) -> dict[str, list[dict[str, str]]]:
    """compare's tables by task, each as one dict per row, cut at the header's column starts (a header may
    hold one space)."""
    found = {}
    for block in out.strip().split("\n\n")[:-1]:
        title, header, *rows = block.splitlines()
        names = re.split(r"\s{2,}", header.strip())
        starts = [header.index(name) for name in names] + [None]
        found[title.split(":")[0]] = [
            {n: row[a:b].strip() for n, a, b in zip(names, starts, starts[1:])} for row in rows
        ]
    return found


def test_compare_sorts_each_changed_task_by_validation_within_120_columns(repo):
    for members in (2, 1):  # an ensemble, and a change of the jet mass alone, each from the committed params
        run(["git", "checkout", "--", "params.yaml"], repo)  # `dvc exp run -S` left the last experiment's there
        run(
            [
                sys.executable,
                "-m",
                "dvc",
                "exp",
                "run",
                "-q",
                "-S",
                f"train.electron_photon.ensemble.members={members}",
                "-S",
                f"train.jet_mass.lr={0.002 * members}",
            ],
            repo,
        )
    out = run(["make", "-s", "-o", ".venv/.installed", "compare"], repo)
    assert max(map(len, out.splitlines())) <= 120, out
    found = tables(out)
    assert list(found) == ["electron_photon", "quark_gluon", "jet_mass"], out
    eg, qg, mass = found["electron_photon"], found["quark_gluon"], found["jet_mass"]
    assert set(eg[0]) == {"Experiment", "ensemble.members", "eg.test_auc [95 %]", "eg.val_auc", "eg.members_auc"}
    assert set(qg[0]) == {"Experiment", "lr", "qg.test_auc [95 %]", "qg.val_auc"}, out
    assert set(mass[0]) == {"Experiment", "lr", "mass.test_mae [95 %]", "mass.val_mae"}, out
    # the workspace, the baseline, then the experiments that changed the task, best validation first
    assert [len(t) for t in (eg, qg, mass)] == [2 + 1, 2 + 3, 2 + 2], out
    auc = [float(r["qg.val_auc"]) for r in qg[2:]]
    mae = [float(r["mass.val_mae"]) for r in mass[2:]]
    assert auc == sorted(auc, reverse=True) and mae == sorted(mae), out
    assert "sorted by qg.val_auc (validation, higher is better)" in out
    assert "sorted by mass.val_mae (validation, lower is better)" in out
    assert re.fullmatch(r"0\.\d+ \[0\.\d+, 0\.\d+\]", qg[0]["qg.test_auc [95 %]"]), out


def test_compare_of_one_task_shows_that_task_alone(repo):
    out = run(["make", "-s", "-o", ".venv/.installed", "compare", "TASK=quark_gluon"], repo)
    assert list(tables(out)) == ["quark_gluon"], out
