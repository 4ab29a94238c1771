"""`make review BASE=...`: review/report.md, only the tasks whose results changed, each led by its headline
with a paired-bootstrap verdict, its params, at most six key plots; the rest under Details.

The end-to-end tests review a one-task change: a results repository (support.results_repo)
whose workspace differs from HEAD in quark_gluon's results only, with one quark_gluon param and one
param of every task changed. The unit tests below them check the pairing, the verdict and the report's
pieces on hand-made results.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from e2e.errors import E2EError
from e2e.evaluation import metrics
from e2e.reports.review import Paired, Results, changed, paired, read_results, revision_reader, verdict
from e2e.reports.review_report import (
    KEY_PLOTS,
    MAX_KEY_PLOTS,
    TaskSection,
    headline_table,
    params_by_task,
    split_plots,
)
from e2e.tasks import TASKS

from support.report_parts import image_links, rows_by_revision, sections, tables
from support.results_repo import ROOT, results_repo
from support.scores import two_models  # noqa: F401 (a fixture: labels, a base's scores, a better head's)

PNG = b"\x89PNG\r\n\x1a\n"
CHANGED, UNCHANGED = "quark_gluon", ("electron_photon", "jet_mass")


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """HEAD holds every task's results; the workspace changes quark_gluon's only, as a one-task experiment."""
    repo = results_repo(tmp_path_factory, "review")
    for name in UNCHANGED:  # back to HEAD's results
        shutil.rmtree(repo / "metrics" / name)
        subprocess.run(["git", "checkout", "HEAD", "--", f"metrics/{name}"], cwd=repo, check=True)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train"][CHANGED]["lr"] = 0.0003  # the experiment's change
    params["evaluate"]["roc_points"] = 100  # and one of every task's, for the shared params table
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copy(ROOT / "Makefile", repo / "Makefile")
    shutil.copytree(ROOT / "scripts", repo / "scripts")
    return repo


def make(repo: Path, *args: str) -> subprocess.CompletedProcess:
    # -o: treat the venv stamp as up to date; the test's own interpreter is first on PATH
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["make", "-o", ".venv/.installed", *args], cwd=repo, env=env, capture_output=True, text=True)


@pytest.fixture(scope="module")
def reviewed(repo) -> Path:
    """The repo after one `make review BASE=HEAD`."""
    proc = make(repo, "review", "BASE=HEAD")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return repo


def test_review_of_a_one_task_change_lists_only_that_task(reviewed):
    repo = reviewed
    report = (repo / "review" / "report.md").read_text()
    assert report.startswith("# Review: workspace vs `HEAD`")
    parts = sections(report)
    assert [h for h in parts if h in TASKS] == [CHANGED], list(parts)
    assert f"Unchanged: {', '.join(UNCHANGED)}" in report
    for name in UNCHANGED:  # not a plot, a table row or a file of the unchanged tasks
        assert f"{name}_" not in report and f"metrics/{name}/" not in report and f"train.{name}." not in report
    assert not [p for p in (repo / "review" / "plots").iterdir() if any(n in p.name for n in UNCHANGED)]


def test_the_first_table_is_the_headline_with_the_paired_verdict(reviewed):
    """The first table's first row is quark_gluon's test ROC-AUC: HEAD's and the workspace's headline
    values, and the 95 % interval and verdict of the paired bootstrap recomputed here from the two
    revisions' predictions.parquet (the same 200 test events)."""
    repo = reviewed
    section = sections((repo / "review" / "report.md").read_text())[CHANGED]
    header, first, *rest = tables(section)[0]
    assert header[1:] == ["`HEAD`", "workspace", "change", "95 % interval of the change", "verdict"]
    assert first[0].endswith("(`qg.test_auc`)") and {r[0].split("`")[1] for r in rest} >= {"qg.val_auc", "qg.rej50"}
    old = json.loads(git_show(repo, f"metrics/{CHANGED}/eval/headline.json"))["qg"]
    new = json.loads((repo / f"metrics/{CHANGED}/eval/headline.json").read_text())["qg"]
    assert first[1].startswith(f"{old['test_auc']:.4g} [") and first[2].startswith(f"{new['test_auc']:.4g} [")
    assert float(first[3]) == pytest.approx(new["test_auc"] - old["test_auc"], abs=1e-3)

    base = pd.read_parquet(io.BytesIO(git_show(repo, f"metrics/{CHANGED}/eval/predictions.parquet", text=False)))
    head = pd.read_parquet(repo / f"metrics/{CHANGED}/eval/predictions.parquet")
    b, h = (df[df["split"] == "test"].sort_values("row") for df in (base, head))
    assert len(b) == 200 and (b["row"].to_numpy() == h["row"].to_numpy()).all()
    n_boot = yaml.safe_load((repo / "params.yaml").read_text())["evaluate"]["bootstrap"]
    lo, hi = metrics.paired_difference_interval(
        "roc_auc", b["truth"].to_numpy(), b["prediction"].to_numpy(), h["prediction"].to_numpy(), n_boot=n_boot
    )
    assert first[4] == f"[{lo:+.3g}, {hi:+.3g}]"
    assert first[5] == ("within noise" if lo <= 0 <= hi else "significant: " + ("better" if lo > 0 else "worse"))
    assert "same 200 test events" in section


def test_params_of_the_task_then_those_of_every_task_once(reviewed):
    parts = sections((reviewed / "review" / "report.md").read_text())
    task_params = [t for t in tables(parts[CHANGED]) if t[0][0] == "param"]
    assert task_params == [[["param", "`HEAD`", "workspace"], [f"train.{CHANGED}.lr", "0.0005", "0.0003"]]]
    assert parts[CHANGED].index("train.quark_gluon.lr") < parts[CHANGED].index("![")  # before the plots
    shared = [h for h in parts if h.startswith("Parameters")]
    assert len(shared) == 1 and tables(parts[shared[0]]) == [
        [["param", "`HEAD`", "workspace"], ["evaluate.roc_points", "200", "100"]]
    ]


def test_at_most_six_key_plots_and_the_rest_linked_under_details(reviewed):
    repo = reviewed
    parts = sections((repo / "review" / "report.md").read_text())
    shown = image_links(parts[CHANGED])
    names = [Path(link).stem for link in shown]
    assert names == [
        f"{CHANGED}_{name}"
        for name in (
            "train_plots_metrics_train_val_loss",
            "train_plots_metrics_val_roc_auc",
            "eval_plots_custom_roc",
            "eval_plots_custom_rejection",
            "eval_plots_custom_score_distribution",
            "eval_plots_custom_rejection_vs_pt",
        )
    ]
    assert sum(len(image_links(text)) for text in parts.values()) == len(shown)  # no other image in the report
    details = parts["Details"]
    assert "<details>" in details and "test.binned.pt." in details and "test.roc_auc_ci_lo" in details
    linked = re.findall(r"^- \[[^\]]*\]\(([^)]+)\)$", details, re.M)
    assert {Path(p).stem for p in linked} >= {
        "quark_gluon_eval_plots_custom_calibration",
        "quark_gluon_eval_plots_custom_efficiency_vs_m0",
    }
    for link in shown + linked:  # relative to the report, so the folder can be attached as it is
        assert (repo / "review" / link).read_bytes()[:8] == PNG
    assert not set(shown) & set(linked)


def test_every_key_plot_overlays_base_and_workspace(reviewed):
    """Guards against: a key plot in the review that shows one revision (the workspace's `dvc plots show`,
    or the base's rows dropped) where the README promises base and workspace on the same axes. Each
    PNG's Vega-Lite spec (review/plots/<name>.vl.json) must hold rows of both revisions, and the two
    revisions' rows must differ (HEAD and the workspace hold different results)."""
    report = (reviewed / "review" / "report.md").read_text()
    pngs = [reviewed / "review" / link for link in image_links(report)]
    assert pngs, report
    for png in pngs:
        spec = json.loads(png.with_name(png.name.removesuffix(".png") + ".vl.json").read_text())
        by_rev = {
            rev: sorted(sorted((k, str(v)) for k, v in row.items()) for row in rows)
            for rev, rows in rows_by_revision(spec).items()
        }
        assert set(by_rev) == {"HEAD", "workspace"}, f"{png.name}: revisions {sorted(map(str, by_rev))}"
        assert by_rev["HEAD"] != by_rev["workspace"], f"{png.name}: both revisions hold the same data"


def test_review_of_an_unknown_base_is_one_error_line(repo, tmp_path):
    proc = subprocess.run(
        [sys.executable, "scripts/review.py", "no-such-branch", "--out", str(tmp_path / "r")],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert proc.stderr.strip().count("\n") == 0 and "error: dvc params diff no-such-branch" in proc.stderr
    assert not (tmp_path / "r" / "report.md").exists()


def git_show(repo: Path, path: str, text: bool = True):
    out = subprocess.run(["git", "show", f"HEAD:{path}"], cwd=repo, capture_output=True, check=True).stdout
    return out.decode() if text else out


def test_a_base_output_missing_from_the_dvc_cache_is_one_line_saying_how_to_get_it(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    dvc = [sys.executable, "-m", "dvc"]
    for cmd in (
        ["git", "init", "-q"],
        ["git", "config", "user.email", "t@example.org"],
        ["git", "config", "user.name", "test"],
        [*dvc, "init", "-q"],
        [
            *dvc,
            "stage",
            "add",
            "-q",
            "-n",
            "eval",
            "-o",
            "metrics/quark_gluon/eval",
            "mkdir -p metrics/quark_gluon/eval && echo '{\"qg\": {}}' > metrics/quark_gluon/eval/headline.json",
        ],
        [*dvc, "repro", "-q"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "results"],
    ):
        subprocess.run(cmd, cwd=repo, check=True, capture_output=True)
    read = revision_reader("HEAD", repo)
    assert read("metrics/quark_gluon/eval/headline.json") == b'{"qg": {}}\n'
    assert read("metrics/quark_gluon/eval/predictions.parquet") is None  # not an output of HEAD: no results
    shutil.rmtree(repo / ".dvc" / "cache")
    with pytest.raises(
        E2EError,
        match=r"^metrics/quark_gluon/eval/headline.json of HEAD is not in the DVC cache "
        r"or remote: fetch HEAD's results first \(`scripts/pr_review.sh HEAD`",
    ):
        revision_reader("HEAD", repo)("metrics/quark_gluon/eval/headline.json")


# unit tests on hand-made results


def results(truth, prediction, rows=None, headline=None) -> Results:
    rows = np.arange(len(truth)) if rows is None else np.asarray(rows)
    df = pd.DataFrame({"split": "test", "row": rows, "truth": truth, "prediction": prediction})
    return Results(headline=headline, predictions=df, metrics={})


def test_paired_joins_the_test_events_on_row_not_on_position(two_models):
    """A revision that writes its test events in another order is paired event by event: the head's rows
    shuffled give exactly the interval of the rows in order."""
    y, base, head = two_models
    in_order = paired(TASKS["quark_gluon"], results(y, base), results(y, head), n_boot=200)
    order = np.random.default_rng(1).permutation(len(y))
    shuffled = paired(TASKS["quark_gluon"], results(y, base), results(y[order], head[order], rows=order), n_boot=200)
    assert shuffled == in_order and in_order.n == len(y) and 0 < in_order.lo < in_order.hi
    assert verdict(TASKS["quark_gluon"], in_order) == "significant: better"
    assert (
        verdict(TASKS["quark_gluon"], paired(TASKS["quark_gluon"], results(y, head), results(y, base), n_boot=200))
        == "significant: worse"
    )


def test_identical_predictions_are_within_noise(two_models):
    y, base, _ = two_models
    same = paired(TASKS["quark_gluon"], results(y, base), results(y, base.copy()), n_boot=100)
    assert (same.lo, same.hi) == (0.0, 0.0) and verdict(TASKS["quark_gluon"], same) == "within noise"


def test_a_lower_mae_is_better():
    rng = np.random.default_rng(2)
    t = rng.uniform(85, 500, 1000)
    base = t * rng.normal(1, 0.1, 1000)
    result = paired(TASKS["jet_mass"], results(t, base), results(t, t + 0.9 * (base - t)), n_boot=200)
    assert result.hi < 0 and verdict(TASKS["jet_mass"], result) == "significant: better"


def test_different_test_events_are_not_paired(two_models):
    y, base, head = two_models
    other_rows = paired(TASKS["quark_gluon"], results(y, base), results(y, head, rows=np.arange(len(y)) + 5), n_boot=50)
    assert verdict(TASKS["quark_gluon"], other_rows).startswith("not paired: the test events differ")
    other_truth = paired(TASKS["quark_gluon"], results(y, base), results(1 - y, head), n_boot=50)
    assert verdict(TASKS["quark_gluon"], other_truth) == "not paired: the test events' truth differs"
    missing = paired(TASKS["quark_gluon"], Results(None, None, {}), results(y, head), n_boot=50)
    assert verdict(TASKS["quark_gluon"], missing) == "not paired: the base has no predictions.parquet"


def test_changed_compares_predictions_headline_and_metrics(two_models):
    y, base, head = two_models
    one = results(y, base, headline={"test_auc": 0.7})
    assert not changed(one, results(y, base.copy(), headline={"test_auc": 0.7}))
    assert changed(one, results(y, head, headline={"test_auc": 0.7}))  # same headline, other predictions
    assert changed(one, results(y, base, headline={"test_auc": 0.71}))
    assert changed(one, dataclasses.replace(one, metrics={"eval/metrics.json: test.binned.pt.0-10.n": 3}))
    assert changed(one, Results(None, None, {})) and not changed(Results(None, None, {}), Results(None, None, {}))


def test_read_results_takes_the_tasks_block_of_the_headline():
    files = {
        "metrics/jet_mass/eval/headline.json": b'{"mass": {"test_mae": 20.5}}',
        "metrics/jet_mass/train/metrics.json": b'{"val": {"mae": 21.0}, "step": 2}',
    }
    got = read_results(TASKS["jet_mass"], files.get)
    assert got.headline == {"test_mae": 20.5} and got.predictions is None
    assert got.metrics == {"train/metrics.json: val.mae": 21.0, "train/metrics.json: step": 2}


def test_headline_table_puts_the_primary_metric_first_with_its_interval():
    section = TaskSection(
        TASKS["quark_gluon"],
        Results({"val_auc": 0.7, "test_auc": 0.71, "test_auc_lo": 0.69, "test_auc_hi": 0.73, "rej50": None}, None, {}),
        Results({"val_auc": 0.72, "test_auc": 0.74, "test_auc_lo": 0.72, "test_auc_hi": 0.76, "rej50": 12.0}, None, {}),
        Paired(n=100, lo=0.01, hi=0.05),
    )
    rows = tables("\n".join(headline_table(section, "main")))[0]
    assert rows[1] == [
        "test ROC-AUC (`qg.test_auc`)",
        "0.71 [0.69, 0.73]",
        "0.74 [0.72, 0.76]",
        "+0.03",
        "[+0.01, +0.05]",
        "significant: better",
    ]
    assert [r[0] for r in rows[2:]] == [
        "validation ROC-AUC of the best epoch (`qg.val_auc`)",
        "test rejection 1/FPR at 50 % signal efficiency (`qg.rej50`)",
    ]
    assert rows[3][1:] == ["-", "12", "", "", ""]  # null: no background passes; no change to compute


def test_split_plots_keeps_six_key_plots_in_order():
    ids = [
        f"metrics/jet_mass/{p}"
        for p in (
            "eval/plots/custom/response_vs_ieta.json",
            "eval/plots/custom/response_vs_pt.json",
            "eval/plots/custom/residuals.json",
            "train/plots/metrics/lr.tsv",
            "train/plots/metrics/val/mae.tsv",
            "train/plots/metrics/train/val/loss",
            "eval/plots/custom/pred_vs_true.json",
            "eval/plots/custom/resolution_vs_true_mass.json",
            "eval/plots/custom/resolution_vs_pt.json",
        )
    ]
    key, other = split_plots(TASKS["jet_mass"], [*ids, "metrics/quark_gluon/eval/plots/custom/roc.json"])
    assert len(key) == MAX_KEY_PLOTS == 6 and all(len(keys) <= MAX_KEY_PLOTS for keys in KEY_PLOTS.values())
    assert [k.split("/", 2)[2] for k in key] == [
        "train/plots/metrics/train/val/loss",
        "train/plots/metrics/val/mae.tsv",
        "eval/plots/custom/pred_vs_true.json",
        "eval/plots/custom/residuals.json",
        "eval/plots/custom/resolution_vs_true_mass.json",
        "eval/plots/custom/response_vs_ieta.json",
    ]
    assert sorted(other) == sorted(set(ids) - set(key))  # the other task's plot in neither


def test_params_by_task():
    diff = {
        "params.yaml": {
            "train.quark_gluon.lr": {"old": 0.001, "new": 0.0003},
            "evaluate.bins.jet_mass.pt": {"old": 5, "new": 6},
            "evaluate.bootstrap": {"old": 1000, "new": 500},
        },
        "presets/x.yaml": {"train.quark_gluon.epochs": {"old": None, "new": 2}},
    }
    assert params_by_task(diff) == {
        "quark_gluon": {"train.quark_gluon.lr": (0.001, 0.0003), "presets/x.yaml: train.quark_gluon.epochs": (None, 2)},
        "jet_mass": {"evaluate.bins.jet_mass.pt": (5, 6)},
        None: {"evaluate.bootstrap": (1000, 500)},
    }
