"""scripts/pr_review.sh end to end, as a CI runner runs it on a pull request.

An "origin" repository has a main branch whose results are in a local DVC remote and two pull-request
branches that change a training parameter: one whose author pushed the new results, one whose author
committed dvc.lock but did not push. Each review runs in a fresh clone (no DVC cache, no outputs),
with the remote given as CI gives it (DVC_REMOTE_URL) and posting off (no `cml` here, no network).

The pipeline is one stage that writes made-up electron_photon results in the real layout
(support.results_repo.fake_results, seeded by the stage's params) in a second, so that the script's
`dvc repro` path runs for real in seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import yaml

from support.pipeline_repo import ROOT, env
from support.report_parts import image_links, rows_by_revision, sections, tables

pytestmark = pytest.mark.slow  # about 50 s on 2 busy cores: three stage runs, two reviews rendered

TASK = "electron_photon"
BASE_LR, PUSHED_LR, UNPUSHED_LR = 0.001, 0.0003, 0.0001
EVAL_METRICS = f"metrics/{TASK}/eval/metrics.json"
KEY_PLOTS = (f"{TASK}_eval_plots_custom_roc", f"{TASK}_eval_plots_custom_rejection")  # and a training curve
PNG = b"\x89PNG\r\n\x1a\n"
STAGE = f"""\"\"\"Made-up {TASK} results (no training), seeded by the stage's params: new params, new results.\"\"\"
import sys, zlib
from pathlib import Path
import yaml
sys.path.insert(0, {str(ROOT / "tests")!r})
import support.results_repo as results
params = yaml.safe_load(Path("params.yaml").read_text())["train"]["{TASK}"]
results.TASKS = {{"{TASK}": results.TASKS["{TASK}"]}}
results.fake_results(Path("."), seed=zlib.crc32(yaml.safe_dump(params, sort_keys=True).encode()))
"""


def sh(cmd: list[str], cwd: Path, timeout: float = 120, check: bool = True, **extra_env: str):
    """Run a command in a process group of its own, and kill what is left of the group when it ends or
    times out (dvc, the stage it runs, anything they started): nothing outlives the call."""
    # this suite may itself run in GitHub Actions on a pull request: keep its base branch and token out
    cmd_env = {k: v for k, v in env().items() if not k.startswith(("GITHUB_", "E2E_REVIEW_")) and k != "REPO_TOKEN"}
    cmd_env.update(extra_env)
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=cmd_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:  # the whole group has already exited
            pass
        if proc.returncode is None:  # timed out or interrupted
            proc.communicate()
    if check:
        assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-3000:]}\n{err[-3000:]}"
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def results_pipeline() -> dict:
    """dvc.yaml: the one fake stage, and the project's metrics and plots definitions for TASK."""
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    stage = {
        "cmd": "python fake_results.py",
        "deps": ["fake_results.py"],
        "params": [f"train.{TASK}"],
        "outs": [f"metrics/{TASK}/train", f"metrics/{TASK}/eval"],
    }
    return {
        "stages": {"results": stage},
        "metrics": [m for m in spec["metrics"] if f"/{TASK}/" in m],
        "plots": [p for p in spec["plots"] if f"/{TASK}/" in (p if isinstance(p, str) else next(iter(p)))],
    }


def set_lr(repo: Path, lr: float) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train"][TASK]["lr"] = lr
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def branch_with_results(repo: Path, name: str, lr: float, push: bool) -> dict:
    """A branch off main with `lr` and its results committed (dvc.lock) and, if `push`, pushed."""
    sh(["git", "checkout", "-q", "-b", name, "main"], repo)
    set_lr(repo, lr)
    sh(["dvc", "repro", "-q"], repo)
    sh(["git", "add", "-A"], repo)
    sh(["git", "commit", "-qm", f"{TASK} lr {lr}"], repo)
    if push:
        sh(["dvc", "push", "-q"], repo)
    metrics = json.loads((repo / EVAL_METRICS).read_text())
    sh(["git", "checkout", "-q", "main"], repo)
    return metrics


@pytest.fixture(scope="module")
def origin(tmp_path_factory) -> dict:
    """The origin repository, its DVC remote, and the test metrics each branch's author got."""
    root = tmp_path_factory.mktemp("pr-review")
    repo, store = root / "origin", root / "dvc-store"
    repo.mkdir()
    for name in ("params.yaml", "Makefile", ".gitignore", ".dvcignore"):
        shutil.copy(ROOT / name, repo / name)
    shutil.copytree(ROOT / "scripts", repo / "scripts", ignore=shutil.ignore_patterns("__pycache__"))
    (repo / "fake_results.py").write_text(STAGE)
    (repo / "dvc.yaml").write_text(yaml.safe_dump(results_pipeline(), sort_keys=False))
    set_lr(repo, BASE_LR)
    sh(["git", "init", "-q", "-b", "main"], repo)
    for key, value in (("user.name", "test"), ("user.email", "t@example.org")):
        sh(["git", "config", key, value], repo)
    sh(["dvc", "init", "-q"], repo)
    for name in ("config", "offline_plots.html", "plots"):  # the project's plot templates and offline page
        src = ROOT / ".dvc" / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, repo / ".dvc" / name)
    # the author's remote is local to their machine (untracked config.local); CI gets it from DVC_REMOTE_URL
    sh(["dvc", "remote", "add", "--local", "--default", "store", str(store)], repo)
    sh(["git", "add", "-A"], repo)
    sh(["git", "commit", "-qm", "pipeline"], repo)
    sh(["dvc", "repro", "-q"], repo)
    sh(["git", "add", "-A"], repo)
    sh(["git", "commit", "-qm", "base results"], repo)
    sh(["dvc", "push", "-q"], repo)
    metrics = {
        "main": json.loads((repo / EVAL_METRICS).read_text()),
        "pr-pushed": branch_with_results(repo, "pr-pushed", PUSHED_LR, push=True),
        "pr-unpushed": branch_with_results(repo, "pr-unpushed", UNPUSHED_LR, push=False),
    }
    return {"repo": repo, "store": store, "metrics": metrics}


def fresh_clone(origin: dict, branch: str, dest: Path) -> Path:
    """What a CI runner has after checkout and `make install`: the branch, origin/main, no DVC cache."""
    sh(["git", "clone", "-q", "-b", branch, str(origin["repo"]), str(dest)], dest.parent)
    # `make review` depends on the venv stamp: mark it installed (the test's own interpreter is on PATH)
    for name in ("requirements.lock", "pyproject.toml", ".venv/.installed"):
        (dest / name).parent.mkdir(exist_ok=True)
        (dest / name).touch()
    assert not (dest / ".dvc" / "cache").exists() and not (dest / f"metrics/{TASK}/eval").exists()
    return dest


def review(clone: Path, store: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return sh(
        ["bash", "scripts/pr_review.sh", *args],
        clone,
        timeout=timeout,
        check=False,
        E2E_REVIEW_POST="0",
        DVC_REMOTE_URL=str(store),
    )


@pytest.mark.parametrize(
    "branch, lr, how",
    [
        ("pr-pushed", PUSHED_LR, "pulled from the DVC remote"),
        ("pr-unpushed", UNPUSHED_LR, "reproduced by the review run"),
    ],
)
def test_review_of_a_pull_request_compares_it_with_main(origin, tmp_path, branch, lr, how):
    """pr-unpushed guards against a bug: fetching main's results with `repo.fetch(revs=[main],
    types=["metrics", "plots"])` failed with DataIndexDirError on the PR's own train output, missing from
    the remote (DVC 3.67 resolves the plot outputs after switching back to the workspace)."""
    clone = fresh_clone(origin, branch, tmp_path / "runner")
    proc = review(clone, origin["store"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "not posting the report (E2E_REVIEW_POST=0)" in proc.stdout
    assert ("dvc repro" in proc.stdout) == (branch == "pr-unpushed")
    report = (clone / "review" / "report.md").read_text()
    assert report.startswith("# Review: workspace vs `origin/main`")
    assert f"_Results of this revision: {how}" in report
    section = sections(report)[TASK]

    # the headline first: main's test ROC-AUC and the one the PR's author got, paired on the same test events
    # (main's predictions come from the DVC remote, as its metrics do)
    _, first, *_ = tables(section)[0]
    old, new = (origin["metrics"][name]["test"]["roc_auc"] for name in ("main", branch))
    assert old != new and first[0] == "test ROC-AUC (`eg.test_auc`)"
    assert first[1].startswith(f"{old:.4g} [") and first[2].startswith(f"{new:.4g} [")
    assert first[5] in ("within noise", "significant: better", "significant: worse"), first
    assert [f"train.{TASK}.lr", f"{BASE_LR}", f"{lr}"] in next(t for t in tables(section) if t[0][0] == "param")

    # the key plots: linked PNGs whose specs overlay main and the PR, with different data
    links = {Path(link).stem: link for link in image_links(report)}
    assert set(KEY_PLOTS) <= set(links) and any(f"{TASK}_train_" in name for name in links), sorted(links)
    for name, link in links.items():
        png = clone / "review" / link
        assert png.read_bytes()[:8] == PNG
        by_rev = rows_by_revision(json.loads(png.with_suffix(".vl.json").read_text()))
        assert set(by_rev) == {"origin/main", "workspace"}, name
        assert by_rev["origin/main"] != by_rev["workspace"], f"{name}: both revisions have the same data"


def test_review_without_the_bases_results_is_one_error_line(origin, tmp_path):
    clone = fresh_clone(origin, "pr-pushed", tmp_path / "runner")
    proc = review(clone, tmp_path / "empty-store", timeout=120)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the results of origin/main are not in the DVC remote"), proc.stderr[-2000:]
    assert not (clone / "review" / "report.md").exists()


def test_review_against_an_unknown_base_is_one_error_line(origin, tmp_path):
    clone = fresh_clone(origin, "pr-pushed", tmp_path / "runner")
    proc = review(clone, origin["store"], "origin/no-such-branch", timeout=60)
    assert proc.returncode != 0
    assert proc.stderr.strip() == "error: unknown base ref: origin/no-such-branch"
