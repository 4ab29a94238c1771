"""What the plots say to a reader: each class of the score distribution (and each of the train and
validation losses) has its own colour and each revision of `dvc plots diff` its own dash, the training
curves have titles that are not paths and an epoch axis, the image views have colour scales with
units and eta/phi axes, and `dvc exp run -S` changes only the lines of params.yaml it sets.

The Vega-Lite specs are the ones DVC fills from this repository's dvc.yaml and .dvc/plots, in a small
git+DVC repository with made-up results; vl-convert draws them offline, and the SVG is inspected.
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

from e2e.config import load_params
from e2e.evaluation import images, metrics, plots
from e2e.stages import evaluate
from e2e.tasks import TASKS, get_task

ROOT = Path(__file__).resolve().parents[2]
VEGA_LITE = "5.21"
TRAIN_DIR = "metrics/{task}/train/plots/metrics"
SCORE_PLOT = "metrics/{task}/eval/plots/custom/score_distribution.json"
LOSS_PLOT = TRAIN_DIR + "/train/val/loss"  # a plot name (y lists two files), not a file
PNG = b"\x89PNG\r\n\x1a\n"
# params.yaml's bins and working points, with few resamples: the bands' widths do not matter here
EVALUATE = dataclasses.replace(load_params(ROOT / "params.yaml").evaluate, bootstrap=20)


def run(cmd: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc.stdout


def git_repo(root: Path) -> Path:
    root.mkdir(parents=True)
    for args in (["init", "-q"], ["config", "user.email", "t@example.org"], ["config", "user.name", "test"]):
        run(["git", *args], root)
    run([sys.executable, "-m", "dvc", "init", "-q"], root)
    return root


def commit(root: Path, message: str) -> None:
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", message], root)


def write_results(root: Path, seed: int, epochs: int = 4) -> None:
    """metrics/<task>/{train,eval} as the stages lay them out: DVCLive's per-epoch tsv files (step = epoch,
    from 1) and the eval tables of e2e.evaluation.plots; the images are placeholders (DVC only copies them)."""
    rng = np.random.default_rng(seed)
    for name, task in TASKS.items():
        train = root / TRAIN_DIR.format(task=name)
        for key in ("train/loss", "val/loss", f"val/{task.primary_metric}", "lr", "epoch_seconds"):
            path = train / f"{key}.tsv"
            path.parent.mkdir(parents=True, exist_ok=True)
            field = key.rsplit("/", 1)[-1]
            rows = [f"{epoch}\t{rng.uniform(0.2, 1.0)}" for epoch in range(1, epochs + 1)]
            path.write_text("\n".join([f"step\t{field}", *rows]) + "\n")
        n = 400
        if task.is_classification:
            y = rng.integers(0, 2, n).astype(float)
            test = pd.DataFrame({"truth": y, "prediction": 1 / (1 + np.exp(-rng.normal(2 * y - 1, 1.0)))})
        else:
            t = rng.uniform(85, 500, n)
            test = pd.DataFrame({"truth": t, "prediction": t * rng.normal(1, 0.1, n)})
        for var, spec in EVALUATE.bins[name].items():  # every binning variable of params.yaml, over its bins
            lo, hi = (spec[0], spec[-1]) if isinstance(spec, list) else (0.0, 50.0)
            test[var] = rng.uniform(lo, hi, n)
        custom = root / "metrics" / name / "eval" / "plots" / "custom"
        custom.mkdir(parents=True, exist_ok=True)
        for p in evaluate.plot_tables(task, test, 100, EVALUATE):
            (custom / f"{p.name}.json").write_text(json.dumps(evaluate.records(p.rows)))
        for image in ("mean_per_class.png", "examples.png"):
            (custom.parent / "images").mkdir(exist_ok=True)
            (custom.parent / "images" / image).write_bytes(PNG)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """This project's dvc.yaml, params.yaml and templates; results committed at HEAD, others in the workspace."""
    root = git_repo(tmp_path_factory.mktemp("plots") / "repo")
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / name, root / name)
    shutil.copytree(ROOT / ".dvc" / "plots", root / ".dvc" / "plots")
    write_results(root, seed=0)
    commit(root, "base results")
    write_results(root, seed=1)
    return root


@pytest.fixture(scope="module")
def shown(repo) -> dict[str, dict]:
    return vega_specs(run([sys.executable, "-m", "dvc", "plots", "show", "--json"], repo))


@pytest.fixture(scope="module")
def diffed(repo) -> dict[str, dict]:
    return vega_specs(run([sys.executable, "-m", "dvc", "plots", "diff", "HEAD", "--json"], repo))


def vega_specs(out: str) -> dict[str, dict]:
    found = json.loads(out)
    assert not found.get("errors"), found["errors"][:3]
    return {
        plot_id: item["content"] for plot_id, items in found["data"].items() for item in items if item["type"] == "vega"
    }


def drawn(spec: dict) -> tuple[list[tuple[str, str]], list[str]]:
    """(stroke colour, dash) of every line Vega draws, and every text of the picture (legends, titles)."""
    svg = svg_of(spec)
    lines = []
    for tag in re.findall(r"<path[^>]*>", svg):
        if 'aria-roledescription="line mark"' in tag:
            stroke = re.search(r'stroke="([^"]+)"', tag)
            dash = re.search(r'stroke-dasharray="([^"]+)"', tag)
            lines.append((stroke.group(1) if stroke else "", dash.group(1) if dash else ""))
    return lines, re.findall(r"<text[^>]*>([^<]*)</text>", svg)


def svg_of(spec: dict) -> str:
    import vl_convert

    return vl_convert.vegalite_to_svg(spec, vl_version=VEGA_LITE, allowed_base_urls=[])


def title(spec: dict) -> str:
    return spec["title"]["text"] if isinstance(spec.get("title"), dict) else spec.get("title", "")


# ---------------------------------------------------------------- score distribution: a colour per class


@pytest.mark.parametrize("task", ["electron_photon", "quark_gluon"])
def test_score_distribution_gives_each_class_its_own_colour(shown, task):
    spec = shown[SCORE_PLOT.format(task=task)]
    assert spec["encoding"]["color"]["field"] != "rev"  # DVC's simple template: one colour per revision
    lines, texts = drawn(spec)
    assert len(lines) == 2 and len({stroke for stroke, _ in lines}) == 2, lines
    for name in plots.class_names(task):
        assert name in texts  # the colour legend names the classes
    assert "score = P(" in " ".join(texts)


@pytest.mark.parametrize("task", ["electron_photon", "quark_gluon"])
def test_score_distribution_diff_keeps_classes_by_colour_and_revisions_by_dash(diffed, task):
    spec = diffed[SCORE_PLOT.format(task=task)]
    assert {row["rev"] for row in spec["data"]["values"]} == {"workspace", "HEAD"}
    assert spec["encoding"]["strokeDash"]["field"] == "rev"
    lines, texts = drawn(spec)
    assert len(lines) == 4 and len(set(lines)) == 4, lines  # class x revision, each drawn its own way
    assert len({stroke for stroke, _ in lines}) == 2 and len({dash for _, dash in lines}) == 2
    assert {"workspace", "HEAD", *plots.class_names(task)} <= set(texts)


# ---------------------------------------------------------------- binned plots: a colour per series

BINNED = {
    "metrics/quark_gluon/eval/plots/custom/rejection_vs_pt.json": ["global 50%", "global 80%"],
    "metrics/quark_gluon/eval/plots/custom/rejection_flat_vs_pt.json": ["per-bin 50%", "per-bin 80%"],
    "metrics/electron_photon/eval/plots/custom/efficiency_vs_energy_total.json": ["global 50%", "global 80%"],
}


@pytest.mark.parametrize("plot_id", list(BINNED))
def test_binned_plots_colour_each_series_and_dash_each_revision(shown, diffed, plot_id):
    series = BINNED[plot_id]
    lines, texts = drawn(shown[plot_id])
    assert len(lines) == len(series) and len({stroke for stroke, _ in lines}) == len(series), lines
    assert set(series) <= set(texts)
    lines, texts = drawn(diffed[plot_id])
    assert len(lines) == 2 * len(series) and len(set(lines)) == 2 * len(series), lines  # series x revision
    assert len({stroke for stroke, _ in lines}) == len(series) and len({dash for _, dash in lines}) == 2
    assert {"workspace", "HEAD", *series} <= set(texts)
    log = shown[plot_id]["layer"][0]["encoding"]["y"]["scale"].get("type") == "log"
    assert log == ("rejection_" in plot_id)  # rejections span decades


ERROR_BARS = [
    "metrics/quark_gluon/eval/plots/custom/rejection_vs_pt.json",
    "metrics/quark_gluon/eval/plots/custom/rejection_flat_vs_m0.json",
    "metrics/electron_photon/eval/plots/custom/efficiency_vs_energy_max.json",
    "metrics/jet_mass/eval/plots/custom/response_vs_pt.json",
    "metrics/jet_mass/eval/plots/custom/resolution_vs_ieta.json",
    "metrics/jet_mass/eval/plots/custom/resolution_vs_true_mass.json",
]


@pytest.mark.parametrize("plot_id", ERROR_BARS)
def test_binned_plots_draw_each_interval_and_bin_as_an_error_bar(diffed, plot_id):
    """Every binned chart draws its 95 % interval (<y>_lo to <y>_hi) as a vertical error bar and the bin's
    extent (<x>_lo to <x>_hi) as a horizontal one: a reader tells a fluctuation from a trend."""
    spec = diffed[plot_id]
    x, y = spec["layer"][0]["encoding"]["x"]["field"], spec["layer"][0]["encoding"]["y"]["field"]
    rows = spec["data"]["values"]
    assert rows and all({f"{y}_lo", f"{y}_hi", f"{x}_lo", f"{x}_hi"} <= set(r) for r in rows)
    bars = {
        (layer["encoding"].get("y2", {}).get("field"), layer["encoding"].get("x2", {}).get("field"))
        for layer in spec["layer"]
        if layer["mark"]["type"] == "errorbar"
    }
    assert bars == {(f"{y}_hi", None), (None, f"{x}_hi")}
    measured = [r for r in rows if r[f"{y}_lo"] is not None and r[f"{y}_hi"] is not None]
    assert measured and all(r[f"{y}_lo"] <= r[y] <= r[f"{y}_hi"] for r in measured)
    svg = svg_of(spec)
    # Vega draws them: at least a horizontal bar per row (a null end, as a rejection's upper end with no
    # background passing, leaves its bar undrawn)
    assert len(re.findall(r'aria-roledescription="errorbar"', svg)) >= len(rows)


def test_roc_names_each_revision_with_its_auc_and_draws_the_diagonal(diffed):
    spec = diffed["metrics/quark_gluon/eval/plots/custom/roc.json"]
    rows = spec["data"]["values"]
    aucs = {r["rev"]: r["auc"] for r in rows}
    assert set(aucs) == {"workspace", "HEAD"} and aucs["workspace"] != aucs["HEAD"]
    lines, texts = drawn(spec)
    for rev, auc in aucs.items():
        assert f"{rev} (AUC {auc:.4f})" in texts
    assert len(lines) == 2, lines  # one curve per revision
    # the diagonal: one dashed rule from (0, 0) to (1, 1) of the plot, i.e. x2 = width and y2 = -height
    rules = re.findall(r'<g class="mark-rule role-mark[^"]*"[^>]*>(.*?)</g>', svg_of(spec), re.S)
    diagonal = [r for r in rules if 'stroke-dasharray="4,4"' in r]
    assert len(diagonal) == 1 and re.search(r'x2="(\d+)" y2="-\1"', diagonal[0]), rules
    assert {row.get("rev") for row in spec["data"]["values"]} == {"workspace", "HEAD"}  # no data of its own


def test_learning_curves_of_one_epoch_show_a_point(shown):
    """A one-epoch run has one value per curve: a line alone would draw nothing."""
    spec = shown[TRAIN_DIR.format(task="quark_gluon") + "/val/roc_auc.tsv"]
    assert spec["mark"]["point"] is True


def test_residuals_histogram_is_drawn_as_steps(shown):
    spec = shown["metrics/jet_mass/eval/plots/custom/residuals.json"]
    assert spec["mark"]["interpolate"] == "step"
    lines, _ = drawn(spec)
    assert len(lines) == 1


# ---------------------------------------------------------------- training curves


@pytest.mark.parametrize("task", list(TASKS))
def test_training_curves_have_readable_titles_and_an_epoch_axis(shown, task):
    directory, metric = TRAIN_DIR.format(task=task), get_task(task).primary_metric
    train_plots = {plot_id: spec for plot_id, spec in shown.items() if plot_id.startswith(directory)}
    # the losses overlaid in one plot, not again one by one from DVCLive's directory
    assert set(train_plots) == {
        LOSS_PLOT.format(task=task),
        f"{directory}/val/{metric}.tsv",
        f"{directory}/lr.tsv",
        f"{directory}/epoch_seconds.tsv",
    }
    for spec in train_plots.values():
        text = title(spec)
        assert text.startswith(f"{task} training: ") and "metrics/" not in text and ".tsv" not in text, text
        assert spec["encoding"]["x"]["title"] == "epoch"
        assert not spec["encoding"]["y"]["title"].startswith("metrics/")
        assert sorted({int(row["step"]) for row in spec["data"]["values"]}) == [1, 2, 3, 4]


@pytest.mark.parametrize("task", list(TASKS))
def test_train_and_validation_loss_are_one_plot_with_two_colours(shown, diffed, task):
    spec = shown[LOSS_PLOT.format(task=task)]
    lines, texts = drawn(spec)
    assert len(lines) == 2 and len({stroke for stroke, _ in lines}) == 2
    assert {"train/loss", "val/loss"} <= set(texts)
    assert "train" in title(spec) and "validation" in title(spec)
    lines, texts = drawn(diffed[LOSS_PLOT.format(task=task)])
    assert len(set(lines)) == 4 and {"workspace", "HEAD"} <= set(texts)


def test_dvc_yaml_train_plots_name_the_epoch_axis():
    entries = yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
    declared = {k: v for e in entries if isinstance(e, dict) for k, v in e.items()}
    for task in TASKS:
        train = {k: v for k, v in declared.items() if k.startswith(TRAIN_DIR.format(task=task))}
        assert len(train) == 3
        for props in train.values():
            assert props["x"] == "step" and props["x_label"] == "epoch" and props["title"].startswith(task)


# ---------------------------------------------------------------- image views


def image_inputs(classification: bool, channels: int = 2, size: int = 16):
    from e2e.store.sparse import SparseImages

    rng = np.random.default_rng(0)
    n = 24
    dense = rng.exponential(1.0, (n, channels, size, size)) * (rng.random((n, channels, size, size)) < 0.2)
    dense[:, -1] *= rng.choice([-1.0, 1.0], (n, size, size))  # a signed channel, like time or d0
    truth = rng.integers(0, 2, n).astype(float) if classification else rng.uniform(85, 500, n)
    test = pd.DataFrame({"row": np.arange(n), "truth": truth, "prediction": rng.random(n)})
    grouped = images.groups(test, ("photon", "electron") if classification else None)
    names = ["energy", "time"] if classification else ["track_pt", "track_d0"]
    return SparseImages.from_dense(dense.astype(np.float16)), grouped, test, names


def check_detector_axes(fig, n_rows: int, n_cols: int, names: list[str]) -> None:
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(panels) == n_rows * n_cols and len(bars) == n_cols  # a colour scale per channel
    for bar, name in zip(bars, names):
        assert images.channel_label(name) in bar.get_ylabel() and "[" in bar.get_ylabel()  # with units
    assert all("eta" in ax.get_ylabel() for ax in panels[::n_cols])  # rows: eta
    assert all("phi" in ax.get_xlabel() for ax in panels[-n_cols:])  # columns: phi
    fig.savefig(io.BytesIO(), format="png")


@pytest.mark.parametrize("classification", [True, False], ids=["classes", "mass_ranges"])
def test_examples_figure_has_colour_bars_and_eta_phi_axes(classification):
    data, grouped, test, names = image_inputs(classification)
    fig = images.examples_figure(data, [0, 1], grouped, test, channel_names=names, classification=classification)
    check_detector_axes(fig, len(grouped) * images.EXAMPLES_PER_GROUP, 2, names)
    labels = " ".join(ax.get_ylabel() for ax in fig.axes)
    assert ("P(electron)" in labels) if classification else ("predicted" in labels and "GeV" in labels)


def test_mean_figure_has_colour_bars_and_eta_phi_axes():
    data, grouped, test, names = image_inputs(True)
    fig = images.mean_figure(data, [0, 1], grouped, names)
    check_detector_axes(fig, 2, 2, names)


# ---------------------------------------------------------------- params.yaml under `dvc exp run -S`


def test_params_yaml_is_written_as_dvc_writes_it_back(tmp_path):
    """`-S` rewrites the whole file through ruamel (lists as blocks, null as empty): an unchanged value must
    come back byte for byte, or every experiment's diff carries the reformatting."""
    from dvc.utils.hydra import apply_overrides

    path = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", path)
    same = yaml.safe_load(path.read_text())["evaluate"]["batch_size"]
    apply_overrides(path, [f"evaluate.batch_size={same}"])
    assert path.read_text() == (ROOT / "params.yaml").read_text()


def test_exp_run_set_param_changes_only_the_lines_it_sets(tmp_path):
    """With the inline lists params.yaml had, one `-S train.quark_gluon.lr=0.0003` was a 66-line diff."""
    root = git_repo(tmp_path / "repo")
    shutil.copy(ROOT / "params.yaml", root / "params.yaml")
    stage = {
        "stages": {
            "touch": {
                "cmd": "echo done > out.txt",
                "outs": ["out.txt"],
                "params": ["train", "evaluate", "synthetic", "datasets"],
            }
        }
    }
    (root / "dvc.yaml").write_text(yaml.safe_dump(stage))
    commit(root, "params")
    sets = {
        "train.quark_gluon.lr": 0.0003,
        "evaluate.roc_points": 100,
        "synthetic.jet_mass.n_jets": 1000,
        "train.electron_photon.model_kwargs.width": 32,
    }
    run([sys.executable, "-m", "dvc", "exp", "run", *[a for k, v in sets.items() for a in ("-S", f"{k}={v}")]], root)
    diff = run(["git", "diff", "-U0", "params.yaml"], root).splitlines()
    removed = [line for line in diff if line.startswith("-") and not line.startswith("---")]
    added = [line for line in diff if line.startswith("+") and not line.startswith("+++")]
    assert len(removed) == len(added) == len(sets), "\n".join(diff)
    expected = yaml.safe_load((ROOT / "params.yaml").read_text())
    for key, value in sets.items():
        *parents, leaf = key.split(".")
        assert any(f"{leaf}: {value}" in line for line in added), (key, added)
        node = expected
        for part in parents:
            node = node[part]
        node[leaf] = value
    assert yaml.safe_load((root / "params.yaml").read_text()) == expected


def test_roc_rows_carry_the_exact_auc_of_every_event():
    """The legend's AUC is the events' own, not that of another ordering or of the thinned curve."""
    y = np.r_[np.zeros(300), np.ones(300)]
    s = np.r_[np.linspace(0.0, 0.6, 300), np.linspace(0.4, 1.0, 300)]
    rows = plots.roc(y, s, 20).rows
    assert len(rows) < 100 and rows["auc"].nunique() == 1
    assert rows["auc"].iloc[0] == pytest.approx(metrics.roc_auc(y, s)) and 0.9 < rows["auc"].iloc[0] < 1.0
