"""Guards of what training promises (issue 22), on the tiny real-format e/gamma files: the channels the model
sees, each DDP rank's own rows, the logged learning rate against the schedule, a bit-identical resume with
dropout, early stopping, and the optimiser settings of params.yaml. Expectations come from the params as
written, numpy and hand-written tables, never from what training wrote."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from e2e.config import Paths, parse_params
from e2e.models.wrappers import ModelSpec, wrap_single
from e2e.runtime.batches import Converted
from e2e.stages import train
from e2e.training import ddp, fit, loop

from support.training_roots import OWN, prepared_root, raw_with

EG = "electron_photon"


def summary(root: Path) -> dict:
    return json.loads((root / "metrics" / EG / "train" / "metrics.json").read_text())


def logged(root: Path, name: str) -> list[float]:
    rows = (root / "metrics" / EG / "train" / "plots" / "metrics" / f"{name}.tsv").read_text().splitlines()
    return [float(r.split("\t")[1]) for r in rows[1:]]


def record_epochs(monkeypatch, *, run: bool = True) -> list[dict]:
    """Each epoch's call of train_one_epoch: its batches' rows and shape, optimizer, loss and options;
    `run=False` skips the steps (the epoch's loss is 0.5)."""
    real, seen = fit.train_one_epoch, []

    def recorded(model, batches, optimizer, scheduler, loss_fn, **kw):
        seen.append(
            {"rows": batches.rows.copy(), "shape": batches.shape, "optimizer": optimizer, "loss": loss_fn, **kw}
        )
        return real(model, batches, optimizer, scheduler, loss_fn, **kw) if run else 0.5

    monkeypatch.setattr(fit, "train_one_epoch", recorded)
    return seen


# ---------------------------------------------------------------- channels


@OWN
def test_the_model_sees_the_channels_params_names_and_is_standardised_on_them(tmp_path, formats_dir, monkeypatch):
    """Guards against: training silently using every converted channel instead of train.<task>.channels, which
    no check reading the checkpoint back can notice. e/gamma keeps channel 1 (hit time) of its two: the
    batches, the network's first layer, the input statistics (numpy over the training rows' dense channel 1)
    and preprocessing.json must all be of that one channel."""
    raw = raw_with(epochs=1, channels=[1])
    written = raw["train"][EG]["channels"]
    root = prepared_root(tmp_path, raw, formats_dir)
    seen = record_epochs(monkeypatch)
    train.main(parse_params(raw), EG, Paths(root))
    assert seen[0]["shape"][0] == len(written)
    ckpt = torch.load(root / "models" / EG / "model.pt", weights_only=True)
    first_conv = next(v for k, v in ckpt["state_dict"].items() if v.ndim == 4)
    assert first_conv.shape[1] == len(written)
    data = Converted(root / "data" / "converted" / EG)
    x = data.images[np.load(root / "data" / "splits" / EG / "train.npy")].astype(np.float64)[:, written]
    np.testing.assert_allclose(ckpt["state_dict"]["in_mean"].flatten().numpy(), x.mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(ckpt["state_dict"]["in_std"].flatten().numpy(), x.std(axis=(0, 2, 3)), rtol=1e-5)
    pre = json.loads((root / "models" / EG / "preprocessing.json").read_text())
    assert pre["channels"] == written and pre["channel_names"] == ["time"]


# ---------------------------------------------------------------- DDP rows


def as_rank(monkeypatch, rank: int, world: int) -> None:
    """This process plays rank `rank` of `world` (torchrun's variables), with the collectives played by the
    test: rank 0's decisions are this rank's own, validation is scripted and DDP's wrapper left out."""
    for key, value in {"WORLD_SIZE": world, "RANK": rank, "LOCAL_RANK": rank, "LOCAL_WORLD_SIZE": world}.items():
        monkeypatch.setenv(key, str(value))
    monkeypatch.setattr(ddp, "init", lambda dist, device: None)
    monkeypatch.setattr(ddp, "close", lambda dist: None)
    monkeypatch.setattr(ddp, "broadcast", lambda obj, dist: obj)
    monkeypatch.setattr(ddp, "everyone", lambda obj, dist: [obj] * dist.world)
    monkeypatch.setattr(train, "wrap", lambda model, runtime, dist, device: (model, model))
    monkeypatch.setattr(fit, "validate", lambda run, evaluator, model, **kw: {"loss": 0.5, "roc_auc": 0.5})


@OWN
def test_each_ddp_rank_trains_on_rows_of_its_own(tmp_path, formats_dir, monkeypatch):
    """Guards against: every rank training on the same rows (rank 0's shard, or all of them), which the
    2-process gloo test lets through as it checks only what rank 0 writes. train.main runs here as rank 1
    and rank 0 of 2 in turn; the rows each one's training batches hold must be disjoint, of equal size,
    drawn from the training split, and together all of it but at most one row (equal steps per rank)."""
    raw = raw_with(epochs=1)
    root = prepared_root(tmp_path, raw, formats_dir)
    rows = {}
    for rank in (1, 0):
        with monkeypatch.context() as m:
            as_rank(m, rank, 2)
            seen = record_epochs(m, run=False)
            train.main(parse_params(raw), EG, Paths(root))
        rows[rank] = set(seen[0]["rows"].tolist())
    split = set(np.load(root / "data" / "splits" / EG / "train.npy").tolist())
    assert not rows[0] & rows[1], "the ranks trained on the same rows"
    assert len(rows[0]) == len(rows[1]) == len(split) // 2
    assert rows[0] | rows[1] <= split and len(split - (rows[0] | rows[1])) <= 1


# ---------------------------------------------------------------- learning-rate schedule


def expected_lr(scheduler: str, kw: dict, lr: float, epochs: int) -> list[float]:
    """The learning rate after each epoch as documented (every schedule counted in epochs; a warm-up
    ramps over its epochs, then the schedule starts from its own beginning)."""
    warm = kw.get("warmup_epochs", 0)
    out = []
    for k in range(1, epochs + 1):
        e = k - warm  # epochs of the schedule itself done
        if scheduler == "step":
            out.append(lr * kw["gamma"] ** (e // kw["step_size"]))
        elif scheduler == "cosine":
            out.append(lr * (1 + math.cos(math.pi * e / epochs)) / 2)
        elif scheduler == "cosine_restarts":
            out.append(lr * (1 + math.cos(math.pi * (e % kw["T_0"]) / kw["T_0"])) / 2)
    return out


@OWN
@pytest.mark.parametrize(
    "scheduler,kw",
    [
        ("step", {"step_size": 2, "gamma": 0.5}),
        ("cosine", {}),
        ("cosine_restarts", {"T_0": 2}),
        ("cosine", {"warmup_epochs": 1}),
    ],
    ids=["step", "cosine", "cosine_restarts", "warmup-cosine"],
)
def test_the_logged_learning_rate_follows_the_schedule(tmp_path, formats_dir, scheduler, kw):
    """Guards against: a scheduler that never steps, steps once per epoch where it counts batches (or the
    reverse), or ignores its params: the logged `lr` of every epoch against the schedule computed here."""
    raw = raw_with(epochs=4, lr=0.01, scheduler=scheduler, scheduler_kwargs=kw)
    root = prepared_root(tmp_path, raw, formats_dir)
    train.main(parse_params(raw), EG, Paths(root))
    want = expected_lr(scheduler, kw, 0.01, 4)
    assert len(set(want)) > 1  # the schedule changes the rate within the run
    np.testing.assert_allclose(logged(root, "lr"), want, rtol=1e-6, atol=1e-12)


# ---------------------------------------------------------------- resume with dropout


def fail_in_epoch_2(monkeypatch) -> None:
    real, calls = fit.train_one_epoch, []

    def patched(*args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("simulated failure in epoch 2")
        return real(*args, **kw)

    monkeypatch.setattr(fit, "train_one_epoch", patched)


@OWN
def test_a_resumed_training_with_dropout_is_bit_identical(tmp_path, formats_dir, monkeypatch):
    """Guards against: a resume that does not restore the random state, where the randomness after the
    restore is dropout's (the default quark/gluon LeNet-5 has it) and no augmentation: the model of a run
    failed in epoch 2 and resumed must equal the uninterrupted run's, weight for weight."""
    raw = raw_with(model="lenet5", model_kwargs={"dropout": [0.25, 0.5]}, augment=[], label_smoothing=0.0)
    whole, resumed = (prepared_root(tmp_path / n, raw, formats_dir) for n in ("whole", "resumed"))
    train.main(parse_params(raw), EG, Paths(whole))
    with monkeypatch.context() as m:
        fail_in_epoch_2(m)
        with pytest.raises(RuntimeError, match="simulated"):
            train.main(parse_params(raw), EG, Paths(resumed))
    train.main(parse_params(raw), EG, Paths(resumed))
    assert logged(whole, "train/loss") == logged(resumed, "train/loss")
    a, b = (torch.load(r / "models" / EG / "model.pt", weights_only=True)["state_dict"] for r in (whole, resumed))
    assert all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- early stopping

SCRIPTED = [0.6, 0.9, 0.8, 0.95, 0.7, 0.7, 0.99, 0.5]  # validation AUC per epoch


@OWN
@pytest.mark.parametrize(
    "patience,epochs_run,best_epoch", [(0, 8, 7), (1, 3, 2), (2, 6, 4), (3, 8, 7)], ids=lambda v: str(v)
)
def test_early_stopping_stops_after_patience_epochs_without_a_better_validation_metric(
    tmp_path, formats_dir, monkeypatch, *, patience, epochs_run, best_epoch
):
    """Guards against: `patience` ignored, or off by one. The validation AUC is scripted (SCRIPTED); the
    expected stops are counted by hand: patience 1 stops after epoch 3 (epoch 2 best, 3 not better),
    patience 2 after epoch 6 (4 best, 5 and 6 not), patience 3 runs on to epoch 7's better value."""
    epochs = record_epochs(monkeypatch, run=False)  # no steps: the stopping alone is under test
    real, scored = fit.score, []

    def scripted(task, model, *args, **kw):
        scored.append(1)
        return {**real(task, model, *args, **kw), task.primary_metric: SCRIPTED[len(scored) - 1]}

    monkeypatch.setattr(fit, "score", scripted)
    raw = raw_with(epochs=8, patience=patience)
    root = prepared_root(tmp_path, raw, formats_dir)
    train.main(parse_params(raw), EG, Paths(root))
    got = summary(root)
    assert (got["epochs_run"], got["best_epoch"], got["best_val_roc_auc"]) == (
        epochs_run,
        best_epoch,
        SCRIPTED[best_epoch - 1],
    )
    assert len(epochs) == len(logged(root, "val/roc_auc")) == epochs_run


# ---------------------------------------------------------------- optimiser, losses, gradient clipping


@OWN
def test_the_optimiser_and_the_losses_take_the_params_as_written(tmp_path, formats_dir, monkeypatch):
    """Guards against: weight_decay, grad_clip or label_smoothing not reaching the training (no test set them
    apart from the smoothing, whose effect no test looked at), and against the smoothing leaking into the
    validation loss. The losses are evaluated here on two logits against BCE computed in numpy."""
    raw = raw_with(epochs=1, optimizer="sgd", lr=0.003, weight_decay=0.01, grad_clip=0.7, label_smoothing=0.2)
    root = prepared_root(tmp_path, raw, formats_dir)
    seen, val_losses, real_validate = record_epochs(monkeypatch, run=False), [], fit.validate

    def validate(*args, **kw):
        val_losses.append(kw["loss_fn"])
        return real_validate(*args, **kw)

    monkeypatch.setattr(fit, "validate", validate)
    train.main(parse_params(raw), EG, Paths(root))
    group, written = seen[0]["optimizer"].param_groups[0], raw["train"][EG]
    assert type(seen[0]["optimizer"]) is torch.optim.SGD and group["momentum"] == 0.9 and group["nesterov"]
    assert (group["lr"], group["weight_decay"], seen[0]["clip_grad"]) == (0.003, 0.01, 0.7)
    logit, y = torch.tensor([2.0, -1.0]), torch.tensor([1.0, 0.0])
    p = 1 / (1 + np.exp(-logit.numpy().astype(np.float64)))

    def bce(q: np.ndarray) -> float:
        return float(-np.mean(q * np.log(p) + (1 - q) * np.log(1 - p)))

    s = written["label_smoothing"]
    assert float(seen[0]["loss"](logit, y)) == pytest.approx(bce(y.numpy() * (1 - s) + 0.5 * s), rel=1e-6)
    assert float(val_losses[0](logit, y)) == pytest.approx(bce(y.numpy()), rel=1e-6)


def test_the_epoch_loop_clips_the_gradient_norm():
    """Guards against: grad_clip reaching the loop but not applied. One plain SGD step of rate 1 moves the
    weights by exactly the gradient, so with clipping at 1e-3 they move by at most 1e-3 (the gradient of
    this fixture is far larger)."""
    spec = ModelSpec(
        model="lenet5",
        model_kwargs={"dropout": [0.0, 0.0]},
        in_channels=1,
        image_size=[32, 32],
        num_outputs=1,
        classification=True,
    )
    torch.manual_seed(0)
    model = wrap_single(spec)
    x, y = 5 * torch.randn(8, 1, 32, 32), torch.tensor([1.0, 0.0] * 4)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    loss_fn(model(x), y).backward()
    unclipped = torch.sqrt(sum((q.grad**2).sum() for q in model.parameters()))
    before = torch.cat([q.detach().flatten().clone() for q in model.parameters()])
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    loop.train_one_epoch(model, [(x, y)], opt, schedule, loss_fn, device=torch.device("cpu"), amp=False, clip_grad=1e-3)
    moved = torch.linalg.vector_norm(torch.cat([q.detach().flatten() for q in model.parameters()]) - before)
    assert unclipped > 1e-2 and moved <= 1e-3 * (1 + 1e-4), (float(unclipped), float(moved))
