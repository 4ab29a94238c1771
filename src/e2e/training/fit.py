"""Fitting one model epoch by epoch: the training steps, the validation of every epoch on every rank, the
best epoch kept, early stopping, and the state that lets an interrupted run resume (e2e.training.resume)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from e2e.config import RuntimeParams, TrainParams
from e2e.evaluation import metrics
from e2e.models.wrappers import ModelSpec, Standardized
from e2e.runtime.batches import Inputs, SparseBatches
from e2e.runtime.device import unwrap
from e2e.runtime.forward import predict
from e2e.store.checkpoints import save_checkpoint
from e2e.tasks import Task, make_loss
from e2e.training import ddp, resume
from e2e.training.augment import make_augment
from e2e.training.loop import train_one_epoch
from e2e.training.optimizers import make_optimizer, make_scheduler

if TYPE_CHECKING:
    from dvclive import Live

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# the network a step runs: the model, DDP around it, or torch.compile's module (typed by torch as a callable)
Net = Callable[[torch.Tensor], torch.Tensor]
Best = dict[str, Any]  # {"epoch": the best epoch (-1 before the first), "value": its metric}: saved in last.pt
History = list[dict[str, float]]  # one row of logged values per epoch


@dataclass(frozen=True)
class Run:
    """What every epoch of one ensemble member needs besides its model and batches."""

    task: Task
    tp: TrainParams
    rt: RuntimeParams
    device: torch.device
    dist: ddp.Dist
    live: Live | None  # rank 0's DVCLive; None on the other ranks
    workdir: Path
    prefix: str = ""  # member<k>/ for the members of an ensemble after the first


def score(task: Task, model: nn.Module, out: torch.Tensor, truth: torch.Tensor, loss_fn: LossFn) -> dict[str, float]:
    """Validation loss (in the training loss's units) and the task's primary metric in physical units."""
    core = unwrap(model)
    assert isinstance(core, Standardized), type(core)  # an ensemble trains member by member
    loss = float(loss_fn(out, core.encode_target(truth)))
    decoded, y = core.decode(out).cpu().numpy(), truth.cpu().numpy()
    return {"loss": loss, task.primary_metric: metrics.METRICS[task.primary_metric](y, decoded)}


def wrap(model: nn.Module, runtime: RuntimeParams, dist: ddp.Dist, device: torch.device) -> tuple[Net, Net]:
    """(the network the training steps run, the one validation runs).

    DDP inside torch.compile, not around it: compiling the DDP module splits its graph at the gradient
    buckets, so each bucket's all-reduce overlaps the rest of the backward pass. dynamic=False: the last,
    smaller batch of an epoch costs one more static graph, compiled once per run, instead of turning the
    batch dimension dynamic for every later step; dropping it (drop_last) would change which events train
    and every CPU result, padding it would need a masked loss and would bias BatchNorm's batch statistics.
    Validation runs the bare model: DDP's forward broadcasts buffers, a collective that the ranks' unequal
    validation shares (one batch more on some ranks) would leave unmatched."""
    net = model
    if dist.world > 1:
        ids = [device.index] if device.type == "cuda" else None
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if not runtime.compile:
        return net, model
    compiled = torch.compile(net, dynamic=False)
    return compiled, compiled if dist.world == 1 else torch.compile(model, dynamic=False)


def validate(
    run: Run, evaluator: Net, model: nn.Module, *, batches: SparseBatches, n_val: int, loss_fn: LossFn
) -> dict[str, float]:
    """Loss and metric on the whole validation split, identical on every rank: the ranks first hold the same
    model (rank 0's BatchNorm statistics), predict their shares, gather them all, and take rank 0's score."""
    ddp.sync_buffers(model, run.dist)
    out, truth = (ddp.gather_spread(t, n_val, run.dist) for t in predict(evaluator, batches, run.device))
    return ddp.broadcast(score(run.task, model, out, truth, loss_fn), run.dist)


def is_better(task: Task, value: float, best: float | None) -> bool:
    return best is None or (value > best if task.higher_is_better else value < best)


def log_epoch(live: Live, epoch: int, row: dict[str, float], prefix: str = "") -> None:
    """One epoch's row; an ensemble's members after the first log under `member<k>/` beside the first's."""
    live.step = epoch + 1  # the plots' x axis counts epochs from 1, as the logs and best_epoch do
    for key, value in row.items():
        live.log_metric(prefix + key, value)
    live.next_step()


def resumed(
    run: Run,
    model: Standardized,
    *,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    fp: str,
) -> tuple[Best, History]:
    """(best, history) of the interrupted run of fingerprint `fp`, whose last state model, optimizer and
    scheduler continue from; a fresh start's when there is none."""
    state = resume.load(run.workdir / "last.pt", fp, run.dist)
    if not state:
        return {"epoch": -1, "value": None}, []
    resume.restore(state, model, optimizer=optimizer, scheduler=scheduler, device=run.device, dist=run.dist)
    if run.live is not None:  # DVC deleted the old files: replay
        for epoch, row in enumerate(state["history"]):
            log_epoch(run.live, epoch, row, run.prefix)
    return state["best"], state["history"]


@dataclass(frozen=True)
class Tools:
    """What one member's epochs share, built once by fit (a resumed run restores the optimizer's and the
    scheduler's state into them)."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    train_loss: LossFn  # with the label smoothing of the train params
    val_loss: LossFn  # without: validation scores the plain loss
    augment: Callable[[Inputs], Inputs]


def epoch_row(
    run: Run,
    model: Standardized,
    nets: tuple[Net, Net],
    tools: Tools,
    *,
    epoch: int,
    train_b: SparseBatches,
    val_b: SparseBatches,
    n_val: int,
) -> dict[str, float]:
    """Train one epoch, validate it: the epoch's row of logged values."""
    m = run.task.primary_metric
    train_b.set_epoch(epoch)
    t0 = time.perf_counter()
    train_loss = train_one_epoch(
        nets[0],
        train_b,
        tools.optimizer,
        tools.scheduler,
        tools.train_loss,
        device=run.device,
        amp=run.rt.amp,
        clip_grad=run.tp.grad_clip,
        augment=tools.augment,
        desc=f"{run.task.name} epoch {epoch + 1}/{run.tp.epochs}",
    )
    seconds = time.perf_counter() - t0
    val = validate(run, nets[1], model, batches=val_b, n_val=n_val, loss_fn=tools.val_loss)
    return {
        "train/loss": train_loss,
        "val/loss": val["loss"],
        f"val/{m}": val[m],
        "lr": tools.optimizer.param_groups[0]["lr"],
        "epoch_seconds": seconds,
    }


def announce(run: Run, epoch: int, row: dict[str, float], *, images: int) -> None:
    """Rank 0's one line per epoch (the progress bar shows the steps on a terminal)."""
    m, member = run.task.primary_metric, f" {run.prefix.rstrip('/')}" if run.prefix else ""
    print(
        f"{run.task.name}{member} epoch {epoch + 1}: train loss {row['train/loss']:.4f}  val loss "
        f"{row['val/loss']:.4f}  val {m} {row[f'val/{m}']:.4f}  ({images / row['epoch_seconds']:.0f} img/s)"
    )


def fit(
    run: Run,
    model: Standardized,
    nets: tuple[Net, Net],
    *,
    train_b: SparseBatches,
    val_b: SparseBatches,
    n_val: int,
    spec: ModelSpec,
    fp: str,
) -> tuple[Best, History]:
    """Train `model` (through nets: training, validation) epoch by epoch: (best epoch and value, history)."""
    tp, live, metric = run.tp, run.live, run.task.primary_metric
    optimizer = make_optimizer(model, tp)
    scheduler = make_scheduler(optimizer, tp, len(train_b))
    loss, smoothed = make_loss(run.task.loss), make_loss(run.task.loss, tp.label_smoothing)
    tools = Tools(optimizer, scheduler, train_loss=smoothed, val_loss=loss, augment=make_augment(tp.augment))
    best, history = resumed(run, model, optimizer=optimizer, scheduler=scheduler, fp=fp)
    for epoch in range(len(history), tp.epochs):
        if tp.patience and history and epoch - 1 - best["epoch"] >= tp.patience:  # early stop, also on resume
            break
        row = epoch_row(run, model, nets, tools, epoch=epoch, train_b=train_b, val_b=val_b, n_val=n_val)
        history.append(row)
        value = row[f"val/{metric}"]
        if is_better(run.task, value, best["value"]):
            best = {"epoch": epoch, "value": value}
            if live is not None:
                save_checkpoint(run.workdir / "best.pt", model, spec, epoch=epoch, metrics={f"val_{metric}": value})
        if live is not None:
            log_epoch(live, epoch, row, run.prefix)
            announce(run, epoch, row, images=train_b.n * run.dist.world)
        resume.save(
            run.workdir / "last.pt",
            model,
            spec,
            epoch=epoch,
            best=best,
            history=history,
            fp=fp,
            optimizer=optimizer,
            scheduler=scheduler,
            device=run.device,
            dist=run.dist,
        )
    return best, history
