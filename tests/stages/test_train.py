"""Training: reproducible on CPU, resumable only for the same experiment (SIGKILL and resume: test_faults) and
then drawing the same random numbers, progress in a piped log, and DistributedDataParallel with gloo (more
in test_ddp)."""

import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from e2e.config import Paths, parse_params
from e2e.runtime.batches import Converted
from e2e.stages import train
from e2e.tasks import get_task
from e2e.training import fit, loop

from support.training_roots import OWN, RAW, prepared_root, raw_with


def history(root: Path) -> dict:
    """Per-epoch metrics as logged by DVCLive, without wall-clock columns."""
    base = root / "metrics" / "electron_photon" / "train" / "plots" / "metrics"
    return {str(p.relative_to(base)): p.read_text() for p in sorted(base.rglob("*.tsv")) if "seconds" not in p.name}


def cli(root: Path, *args: str, **kw) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "e2e", "--params", str(root / "params.yaml"), "--root", str(root), *args]
    return subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


@OWN
def test_same_seed_gives_identical_metrics(tmp_path, formats_dir):
    a, b = (prepared_root(tmp_path / n, RAW, formats_dir) for n in "ab")
    for root in (a, b):
        train.main(parse_params(RAW), "electron_photon", Paths(root))
    assert history(a) and history(a) == history(b)
    sa = torch.load(a / "models/electron_photon/model.pt", weights_only=True)["state_dict"]
    sb = torch.load(b / "models/electron_photon/model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@OWN
def test_train_metrics_count_epochs_from_1_and_hold_the_chosen_epoch(tmp_path, formats_dir):
    root = prepared_root(tmp_path, RAW, formats_dir)
    train.main(parse_params(RAW), "electron_photon", Paths(root))
    base = root / "metrics" / "electron_photon" / "train"
    rows = [r.split("\t") for r in (base / "plots/metrics/val/roc_auc.tsv").read_text().splitlines()]
    assert rows[0] == ["step", "roc_auc"] and [r[0] for r in rows[1:]] == ["1", "2"]
    summary = json.loads((base / "metrics.json").read_text())
    best = max(range(2), key=lambda i: float(rows[1 + i][1]))  # the epoch with the best validation AUC
    assert summary["best_epoch"] == best + 1 and summary["best_val_roc_auc"] == float(rows[1 + best][1])
    # the per-epoch values are plots, not metrics: `val.roc_auc` is evaluate's, of the best model only
    assert "val" not in summary and "train" not in summary and summary["epochs_run"] == 2


def fail_in_epoch_2(monkeypatch, seen: list) -> None:
    """Make train's second epoch raise; `seen` collects each epoch's progress label as it starts."""
    real = fit.train_one_epoch

    def patched(*args, **kw):
        seen.append(kw["desc"])
        if len(seen) == 2:
            raise RuntimeError("simulated failure in epoch 2")
        return real(*args, **kw)

    monkeypatch.setattr(fit, "train_one_epoch", patched)


@OWN
def test_a_failed_training_leaves_no_stray_output(tmp_path, formats_dir, monkeypatch):
    root = prepared_root(tmp_path, RAW, formats_dir)
    fail_in_epoch_2(monkeypatch, [])
    with pytest.raises(RuntimeError, match="simulated"):
        train.main(parse_params(RAW), "electron_photon", Paths(root))
    # no metrics.json holding `{}`, no half-written plots, no temporary directory: nothing for DVC to trip on
    assert [p for p in (root / "metrics").rglob("*") if not p.is_dir()] == []
    assert not (root / "metrics" / "electron_photon" / "train").exists()
    assert not (root / "models" / "electron_photon").exists()


@pytest.mark.slow
@OWN
def test_ddp_with_two_gloo_processes_records_metrics_once(tmp_path, formats_dir):
    raw = json.loads(json.dumps(RAW))
    raw["runtime"]["nproc"] = 2
    root = prepared_root(tmp_path / "ddp", raw, formats_dir)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = cli(root, "train", "electron_photon", env=env)
    text = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, text[-3000:]
    assert "relaunching" in text
    summary = json.loads((root / "metrics/electron_photon/train/metrics.json").read_text())
    assert summary["epochs_run"] == summary["step"] == 2  # two epochs logged once each, not four rows
    loss_rows = (root / "metrics/electron_photon/train/plots/metrics/train/loss.tsv").read_text().splitlines()
    assert len(loss_rows) == 1 + 2 and [r.split("\t")[0] for r in loss_rows[1:]] == ["1", "2"]
    assert all(float(r.split("\t")[-1]) == float(r.split("\t")[-1]) for r in loss_rows[1:])  # finite, not NaN
    assert (root / "models/electron_photon/model.pt").is_file()


# ---------------------------------------------------------------- guards of the numbers (issue 12)


@OWN
def test_inputs_are_standardised_with_the_training_rows_statistics_only(tmp_path, formats_dir):
    """Guards against: the per-channel input mean and std computed over every row of the dataset instead
    of the training split alone (validation and test events leaking into what the model was fitted with)."""
    raw = raw_with(epochs=1)
    root = prepared_root(tmp_path, raw, formats_dir)
    train.main(parse_params(raw), "electron_photon", Paths(root))
    state = torch.load(root / "models/electron_photon/model.pt", weights_only=True)["state_dict"]
    data = Converted(root / "data" / "converted" / "electron_photon")

    def per_channel(rows):  # recomputed independently: dense images, every pixel of every row, zeros included
        x = data.images[np.asarray(rows)].astype(np.float64)
        return x.mean(axis=(0, 2, 3)), x.std(axis=(0, 2, 3))

    mean, std = per_channel(np.load(root / "data" / "splits" / "electron_photon" / "train.npy"))
    np.testing.assert_allclose(state["in_mean"].double().flatten().numpy(), mean, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(state["in_std"].double().flatten().numpy(), std, rtol=1e-5, atol=1e-9)
    # the data tell the two apart: statistics over all rows would not pass the checks above
    all_mean, all_std = per_channel(np.arange(len(data.target)))
    assert not (np.allclose(all_mean, mean, rtol=1e-3) and np.allclose(all_std, std, rtol=1e-3))


@OWN
@pytest.mark.parametrize(
    "metric,scripted",
    [("roc_auc", [0.70, 0.90, 0.60, 0.80]), ("log_loss", [0.70, 0.50, 0.80, 0.60])],
    ids=["higher-is-better", "lower-is-better"],
)
def test_the_epoch_with_the_best_validation_metric_is_the_model_kept(
    tmp_path, formats_dir, monkeypatch, metric, scripted
):
    """Guards against: the best-epoch comparison reversed (or not made), so that the worst or the last
    epoch's weights become models/<task>/model.pt. The validation metric is scripted to be best in epoch 2
    of 4: an AUC (higher is better, as for the classifiers) and a log loss standing in for a metric where
    lower is better (jet_mass's MAE; the task's table entry is patched, the e/gamma files are tiny)."""
    kept = []
    real = fit.score
    if metric == "log_loss":
        lower = dataclasses.replace(get_task("electron_photon"), primary_metric=metric, higher_is_better=False)
        monkeypatch.setattr(train, "get_task", lambda name: lower)

    def scripted_score(task, model, *args, **kw):
        out = real(task, model, *args, **kw)
        kept.append({k: v.detach().clone() for k, v in model.state_dict().items()})  # the weights scored
        return {**out, task.primary_metric: scripted[len(kept) - 1]}

    monkeypatch.setattr(fit, "score", scripted_score)
    raw = raw_with(epochs=4)
    root = prepared_root(tmp_path, raw, formats_dir)
    train.main(parse_params(raw), "electron_photon", Paths(root))
    summary = json.loads((root / "metrics/electron_photon/train/metrics.json").read_text())
    assert (summary["best_epoch"], summary[f"best_val_{metric}"], summary["epochs_run"]) == (2, scripted[1], 4)
    ckpt = torch.load(root / "models/electron_photon/model.pt", weights_only=True)
    assert ckpt["epoch"] + 1 == 2  # evaluate reports best_epoch as the checkpoint's epoch + 1
    assert ckpt["metrics"] == {f"val_{metric}": scripted[1]}
    assert len(kept) == 4 and all(torch.equal(ckpt["state_dict"][k], kept[1][k]) for k in kept[1])
    assert not all(torch.equal(ckpt["state_dict"][k], kept[3][k]) for k in kept[3])  # the epochs did differ


@OWN
@pytest.mark.parametrize("changed,resumes", [({}, True), ({"lr": 0.0005}, False)], ids=["same-params", "lr-changed"])
def test_an_interrupted_training_resumes_only_the_same_experiment(
    tmp_path, formats_dir, monkeypatch, capsys, *, changed, resumes
):
    """Guards against: the resume fingerprint ignoring the train params, or not being checked at all (a
    changed experiment then continues from another experiment's last.pt), and against resume never
    happening. A run fails in epoch 2, leaving .cache/train/<task>/last.pt; the rerun with the same params
    must resume after epoch 1, the rerun with a changed learning rate must start afresh from epoch 1."""
    real, epochs_run = fit.train_one_epoch, []
    fail_in_epoch_2(monkeypatch, epochs_run)
    root = prepared_root(tmp_path, RAW, formats_dir)
    with pytest.raises(RuntimeError, match="simulated"):
        train.main(parse_params(RAW), "electron_photon", Paths(root))
    assert (root / ".cache" / "train" / "electron_photon" / "last.pt").is_file()
    capsys.readouterr()

    def count(*args, **kw):
        epochs_run.append(kw["desc"])
        return real(*args, **kw)

    monkeypatch.setattr(fit, "train_one_epoch", count)
    epochs_run.clear()
    train.main(parse_params(raw_with(**changed)), "electron_photon", Paths(root))
    printed = capsys.readouterr().out
    if resumes:
        assert epochs_run == ["electron_photon epoch 2/2"] and "resuming after epoch 1" in printed, printed
    else:
        assert epochs_run == ["electron_photon epoch 1/2", "electron_photon epoch 2/2"], epochs_run
        assert "resuming" not in printed, printed
    summary = json.loads((root / "metrics/electron_photon/train/metrics.json").read_text())
    assert summary["epochs_run"] == 2


@OWN
def test_every_epoch_trains_on_a_new_order_of_the_events(tmp_path, formats_dir, monkeypatch):
    """Guards against: the epoch no longer reaching the batches (SparseBatches.set_epoch), so that every
    epoch, on every rank, ran through the training events in the same order, a silent loss of the shuffle's
    regularisation that no metric flags. Each epoch must see all the training events, in a new order."""
    real, orders = fit.train_one_epoch, []

    def spy(net, batches, *args, **kw):
        orders.append(batches.order().tolist())
        return real(net, batches, *args, **kw)

    monkeypatch.setattr(fit, "train_one_epoch", spy)
    raw = raw_with(epochs=3)
    root = prepared_root(tmp_path, raw, formats_dir)
    train.main(parse_params(raw), "electron_photon", Paths(root))
    assert len(orders) == 3 and all(sorted(o) == list(range(len(o))) for o in orders)
    assert len({tuple(o) for o in orders}) == 3, "two epochs ran in the same order"


@OWN
def test_a_resumed_training_draws_the_same_random_numbers_as_an_uninterrupted_one(tmp_path, formats_dir, monkeypatch):
    """Guards against: last.pt missing a random state the loop draws from (here the augmentation's flips,
    from the CPU generator; on a GPU the CUDA generator, tests/stages/test_gpu.py), so that a resumed run trained
    another model than an uninterrupted one."""
    whole, resumed = (prepared_root(tmp_path / n, RAW, formats_dir) for n in ("whole", "resumed"))
    train.main(parse_params(RAW), "electron_photon", Paths(whole))
    with monkeypatch.context() as m:
        fail_in_epoch_2(m, [])
        with pytest.raises(RuntimeError, match="simulated"):
            train.main(parse_params(RAW), "electron_photon", Paths(resumed))
    train.main(parse_params(RAW), "electron_photon", Paths(resumed))
    assert history(whole) == history(resumed)
    a, b = (
        torch.load(r / "models/electron_photon/model.pt", weights_only=True)["state_dict"] for r in (whole, resumed)
    )
    assert all(torch.equal(a[k], b[k]) for k in a)


@OWN
def test_a_piped_training_of_a_slow_model_reports_progress_within_the_epoch(tmp_path, formats_dir, monkeypatch, capsys):
    """Guards against: a piped log (no progress bar: `dvc repro > log`) silent for a whole epoch of a slow
    model. The interval (30 s) is shortened and each batch made slow; pytest's captured output is no
    terminal, as a pipe."""
    monkeypatch.setattr(loop, "PROGRESS_EVERY_S", 0.2)
    monkeypatch.setattr(fit, "make_augment", lambda names: lambda x: (time.sleep(0.15), x)[1])
    raw = raw_with(epochs=1)
    root = prepared_root(tmp_path, raw, formats_dir)
    capsys.readouterr()
    train.main(parse_params(raw), "electron_photon", Paths(root))
    printed = capsys.readouterr().out.splitlines()
    progress = [
        re.fullmatch(r"electron_photon epoch 1/1: (\d+)/(\d+) batches, \d+ img/s, ETA \d\d:\d\d", line)
        for line in printed
        if "batches" in line
    ]
    assert progress and all(progress), printed
    assert int(progress[0][1]) < int(progress[0][2]), "no line before the epoch ended"
    assert printed.index(next(line for line in printed if "batches" in line)) < printed.index(
        next(line for line in printed if line.startswith("electron_photon epoch 1:"))
    )
