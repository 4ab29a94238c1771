"""A git+DVC repository with this project's dvc.yaml, params.yaml and plot settings and made-up results (no
training): every task's metrics/<task>/{train,eval} as the stages write them, one set committed at HEAD and
another in the workspace. test_plots_browser renders its pages, test_review reviews it, and test_pr_review's
stage writes its results with fake_results.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import pandas as pd

from support.pipeline_repo import built_once

ROOT = Path(__file__).resolve().parents[2]
TASKS = {"electron_photon": (2, 32), "quark_gluon": (3, 125), "jet_mass": (4, 125)}  # channels, size


def run(cmd: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc.stdout


def fake_results(root: Path, seed: int) -> None:
    """metrics/<task>/{train,eval} as the stages write them, from made-up predictions (no training)."""
    import dataclasses

    from e2e.config import load_params
    from e2e.evaluation.headline import headline
    from e2e.stages import evaluate
    from e2e.store.live import open_live
    from e2e.store.sparse import SparseImages
    from e2e.tasks import get_task

    rng = np.random.default_rng(seed)
    # params.yaml's bins (every *_vs_<variable> plot dvc.yaml declares), few resamples: widths do not matter here
    ep = dataclasses.replace(load_params(ROOT / "params.yaml").evaluate, bootstrap=50)
    for i, (name, (channels, size)) in enumerate(TASKS.items()):
        task, n = get_task(name), 400
        # the same events (truth, observers, images) in every revision, as the real split gives: only the
        # predictions and training curves depend on the seed, so a review can pair the revisions' test events
        events = np.random.default_rng(1000 + i)
        if task.is_classification:
            y = events.integers(0, 2, n).astype(float)
            df = pd.DataFrame({"truth": y, "prediction": 1 / (1 + np.exp(-rng.normal(2 * y - 1, 1.0)))})
        else:
            t = events.uniform(85, 500, n)
            df = pd.DataFrame({"truth": t, "prediction": t * rng.normal(1, 0.1, n), "pt": events.uniform(400, 1000, n)})
        for var, spec in ep.bins[name].items():  # the binning variables, over their bins
            lo, hi = (spec[0], spec[-1]) if isinstance(spec, list) else (0.0, 50.0)
            df[var] = events.uniform(lo, hi, n)
        df.insert(0, "split", np.where(np.arange(n) % 2, "test", "val"))
        df.insert(1, "row", np.arange(n))
        images = SparseImages.from_dense(events.exponential(1.0, (n, channels, size, size)).astype(np.float16))
        data = types.SimpleNamespace(images=images, meta={"channel_names": [f"ch{c}" for c in range(channels)]})
        test = df[df["split"] == "test"].reset_index(drop=True)
        results = evaluate.summarise(task, df, 250.0, ep)
        with open_live(root / "metrics" / name / "eval") as live:
            live.summary.update(results)
            evaluate.log_plots(live, task, test, roc_points=200, ep=ep)
            log_images_once(live, root / "metrics" / name / "eval", task, data, test=test, channels=channels)
        # evaluate's other two files: the predictions (the review pairs the revisions' test events) and the headline
        df.to_parquet(root / "metrics" / name / "eval" / "predictions.parquet", index=False)
        top = headline(task, results, ep.working_points)
        (root / "metrics" / name / "eval" / "headline.json").write_text(json.dumps(top, indent=2) + "\n")
        with open_live(root / "metrics" / name / "train") as live:
            for _ in range(3):
                for key in ("train/loss", "val/loss", f"val/{task.primary_metric}", "lr", "epoch_seconds"):
                    live.log_metric(key, float(rng.uniform(0.2, 1.0)))
                live.next_step()


_IMAGES: dict[str, Path] = {}  # task -> a directory holding the PNGs evaluate drew for it once


def log_images_once(live, out: Path, task, data, *, test, channels: int) -> None:
    """evaluate's image views, drawn once per task and session (drawing them costs seconds a figure,
    and they are the same kind of picture in every fake revision), then logged from the copy."""
    from e2e.stages import evaluate

    if task.name not in _IMAGES:
        evaluate.log_images(live, task, data, test, list(range(channels)))
        live.sync()
        keep = Path(tempfile.mkdtemp(prefix=f"e2e-images-{task.name}-"))
        for png in (out / "plots" / "images").glob("*.png"):
            shutil.copy(png, keep / png.name)
        _IMAGES[task.name] = keep
        return
    for png in sorted(_IMAGES[task.name].glob("*.png")):
        live.log_image(png.name, png)


def make_results_repo(root: Path) -> Path:
    """A git+DVC repo with this project's dvc.yaml, params.yaml and .dvc plot settings, results
    committed at HEAD (seed 0) and different ones in the workspace (seed 1)."""
    root.mkdir(parents=True)
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / name, root / name)
    for git in (["init", "-q"], ["config", "user.email", "t@example.org"], ["config", "user.name", "test"]):
        run(["git", *git], root)
    run([sys.executable, "-m", "dvc", "init", "-q"], root)
    shutil.copy(ROOT / ".dvc" / "config", root / ".dvc" / "config")
    shutil.copy(ROOT / ".dvc" / "offline_plots.html", root / ".dvc" / "offline_plots.html")
    shutil.copytree(ROOT / ".dvc" / "plots", root / ".dvc" / "plots")
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "setup"], root)  # DVCLive refuses a repository without commits
    fake_results(root, seed=0)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "base results"], root)
    shutil.rmtree(root / "metrics")
    fake_results(root, seed=1)
    return root


_TEMPLATE: list[Path] = []


def results_repo(tmp_path_factory, name: str) -> Path:
    """A private copy of one make_results_repo per test session (the review tests use it too), built once
    also across pytest-xdist workers (pipeline_repo.built_once)."""
    if not _TEMPLATE:
        _TEMPLATE.append(built_once(tmp_path_factory, "results-template", make_results_repo))
    dest = tmp_path_factory.mktemp(name) / "repo"
    shutil.copytree(_TEMPLATE[0], dest, symlinks=True)
    return dest
