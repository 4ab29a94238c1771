"""`make review BASE=...`: review/report.md with metrics and params diffs and the key plots as PNG."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_plots_browser import ROOT, results_repo

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    repo = results_repo(tmp_path_factory, "review")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["evaluate"]["roc_points"] = 100  # a parameter change for the params diff
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copy(ROOT / "Makefile", repo / "Makefile")
    shutil.copytree(ROOT / "scripts", repo / "scripts")
    return repo


def make(repo: Path, *args: str) -> subprocess.CompletedProcess:
    # -o: treat the venv stamp as up to date; the test's own interpreter is first on PATH
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["make", "-o", ".venv/.installed", *args], cwd=repo, env=env,
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def reviewed(repo) -> Path:
    """The repo after one `make review BASE=HEAD` (committed results at HEAD, other ones in the workspace)."""
    proc = make(repo, "review", "BASE=HEAD")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return repo


def test_make_review_writes_a_report_with_diffs_and_offline_plots(reviewed):
    repo = reviewed
    report = (repo / "review" / "report.md").read_text()
    assert report.startswith("# Review: workspace vs `HEAD`")
    assert "| Path" in report and "test.roc_auc_ci_lo" in report and "test.resolution_by_mass." in report
    assert re.search(r"\| params.yaml\s+\| evaluate.roc_points\s+\| 200\s+\| 100", report)
    links = image_links(report)
    names = {Path(link).stem for link in links}
    for expected in ("electron_photon_eval_plots_custom_roc", "quark_gluon_eval_plots_custom_rejection",
                     "jet_mass_eval_plots_custom_resolution_vs_true_mass", "jet_mass_eval_plots_custom_pred_vs_true",
                     "electron_photon_train_plots_metrics_train_val_loss"):
        assert expected in names
    for link in links:  # relative to the report, so the folder can be attached as it is
        assert (repo / "review" / link).read_bytes()[:8] == PNG


def data_rows(spec) -> list[dict]:
    """Every inline data row of a Vega-Lite spec, wherever in the spec (top level, layers, ...) it sits."""
    if isinstance(spec, dict):
        values = spec.get("values")
        rows = values if isinstance(values, list) and all(isinstance(v, dict) for v in values) else []
        return rows + [r for k, v in spec.items() if k != "values" for r in data_rows(v)]
    return [r for v in spec for r in data_rows(v)] if isinstance(spec, list) else []


def rows_by_revision(spec) -> dict[str, list[dict]]:
    """The plot's data rows by revision (DVC adds `rev` to every row it overlays), without `rev`."""
    rows: dict[str, list[dict]] = {}
    for row in data_rows(spec):
        rows.setdefault(row.get("rev"), []).append({k: v for k, v in row.items() if k != "rev"})
    return rows


def image_links(report: str) -> list[str]:
    """The images a Markdown report links, relative to it."""
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)


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
        by_rev = {rev: sorted(sorted((k, str(v)) for k, v in row.items()) for row in rows)
                  for rev, rows in rows_by_revision(spec).items()}
        assert set(by_rev) == {"HEAD", "workspace"}, f"{png.name}: revisions {sorted(map(str, by_rev))}"
        assert by_rev["HEAD"] != by_rev["workspace"], f"{png.name}: both revisions hold the same data"


def test_review_of_an_unknown_base_is_one_error_line(repo, tmp_path):
    proc = subprocess.run([sys.executable, "scripts/review.py", "no-such-branch", "--out", str(tmp_path / "r")],
                          cwd=repo, capture_output=True, text=True)
    assert proc.returncode != 0
    assert proc.stderr.strip().count("\n") == 0 and "error: dvc metrics diff" in proc.stderr
    assert not (tmp_path / "r" / "report.md").exists()
