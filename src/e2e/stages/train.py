"""Stage `train`: fit the task's model on the train split, keep the best epoch on the validation split.

Runs as one process or under torchrun (DistributedDataParallel); only rank 0 writes DVCLive output
and checkpoints, and every decision (best epoch, early stop, resume) is rank 0's, broadcast (e2e.training.ddp).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from e2e.config import Params, Paths, RuntimeParams, TrainParams
from e2e.evaluation import metrics
from e2e.models.wrappers import ModelSpec, Standardized, wrap_single
from e2e.runtime.batches import RANK_SEED_STRIDE, Converted, SparseBatches, channel_stats, make_batches
from e2e.runtime.device import prepare, select_device, unwrap
from e2e.runtime.forward import predict
from e2e.store.atomic import atomic_path
from e2e.store.checkpoints import save_checkpoint
from e2e.store.live import open_live
from e2e.store.splits import load_split
from e2e.tasks import Task, get_task, make_loss
from e2e.training import ddp, resume
from e2e.training.augment import make_augment
from e2e.training.ensemble import join, member_dir, member_rows
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


def model_spec(task: Task, data: Converted, tp: TrainParams) -> ModelSpec:
    channels = data.channels(tp.channels, f"train.{task.name}.channels")
    return ModelSpec(
        model=tp.model,
        model_kwargs=dict(tp.model_kwargs),
        in_channels=len(channels),
        channels=channels,
        image_size=list(data.images.image_shape[1:]),
        num_outputs=task.num_outputs,
        classification=task.is_classification,
        task=task.name,
        channel_names=[data.meta["channel_names"][c] for c in channels],
    )


def preprocessing(data: Converted, channels: list[int]) -> dict[str, Any]:
    """What `e2e predict` applies to raw files: the conversion's steps, composed with the model's channels."""
    pre, scale = dict(data.meta["preprocessing"]), data.meta["preprocessing"]["scale"]
    pre["scale"] = None if scale is None else [scale[c] for c in channels]
    return {
        "dataset": data.meta["dataset"],
        "dtype": data.meta["dtype"],
        "channels": [data.meta["channels"][c] for c in channels],
        "channel_names": [data.meta["channel_names"][c] for c in channels],
        "preprocessing": pre,
    }


def new_model(task: Task, data: Converted, tp: TrainParams, train_idx: np.ndarray) -> tuple[Standardized, ModelSpec]:
    spec = model_spec(task, data, tp)
    model = wrap_single(spec)
    mean, std = channel_stats(data.images, train_idx, data.channels(spec.channels))
    t = data.target[train_idx]
    model.set_stats(mean, std, *((0.0, 1.0) if task.is_classification else (t.mean(), t.std())))
    return model, spec


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


def summarize(live: Live, task: Task, results: list[tuple[Best, History]]) -> None:
    """metrics.json of train: what the training chose, not the last epoch's values (those are the plots):
    the first member's choice at the top level, every member's under members.<k> for an ensemble.
    val metrics of the best model, under the same names as every other split's, come from evaluate."""
    m = task.primary_metric

    def chosen(best: Best, history: History) -> dict[str, float]:
        return {
            "best_epoch": best["epoch"] + 1,
            f"best_val_{m}": best["value"],
            "best_val_loss": history[best["epoch"]]["val/loss"],
            "epochs_run": len(history),
        }

    live.summary.clear()
    live.summary.update(chosen(*results[0]))
    live.summary["seconds_per_epoch"] = float(np.mean([r["epoch_seconds"] for _, h in results for r in h]))
    if len(results) > 1:
        live.summary["members"] = {str(k + 1): chosen(*r) for k, r in enumerate(results)}
    live.step = len(results[0][1])


@contextlib.contextmanager
def live_output(path: Path, workdir: Path, rank: int) -> Iterator[Live | None]:
    """DVCLive writing into `workdir`, moved to `path` only when training succeeds: a failed or killed run
    leaves nothing in the outputs (DVC deleted the old ones before running it), so `dvc checkout` works."""
    if rank != 0:
        yield None
        return
    tmp = workdir / "live"
    shutil.rmtree(tmp, ignore_errors=True)  # a killed run's; resuming replays the history from last.pt
    try:
        with open_live(tmp) as live:
            yield live
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(path, ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(tmp, path)


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
    task, tp, live = run.task, run.tp, run.live
    optimizer = make_optimizer(model, tp)
    scheduler = make_scheduler(optimizer, tp, len(train_b))
    train_loss_fn, loss_fn = make_loss(task.loss, tp.label_smoothing), make_loss(task.loss)
    augment = make_augment(tp.augment)
    m, last = task.primary_metric, run.workdir / "last.pt"
    best, history = resumed(run, model, optimizer=optimizer, scheduler=scheduler, fp=fp)
    for epoch in range(len(history), tp.epochs):
        if tp.patience and history and epoch - 1 - best["epoch"] >= tp.patience:  # early stop, also on resume
            break
        train_b.set_epoch(epoch)
        t0 = time.perf_counter()
        train_loss = train_one_epoch(
            nets[0],
            train_b,
            optimizer,
            scheduler,
            train_loss_fn,
            device=run.device,
            amp=run.rt.amp,
            clip_grad=tp.grad_clip,
            augment=augment,
            desc=f"{task.name} epoch {epoch + 1}/{tp.epochs}",
        )
        seconds = time.perf_counter() - t0
        val = validate(run, nets[1], model, batches=val_b, n_val=n_val, loss_fn=loss_fn)
        row = {
            "train/loss": train_loss,
            "val/loss": val["loss"],
            f"val/{m}": val[m],
            "lr": optimizer.param_groups[0]["lr"],
            "epoch_seconds": seconds,
        }
        history.append(row)
        if is_better(task, val[m], best["value"]):
            best = {"epoch": epoch, "value": val[m]}
            if live is not None:
                save_checkpoint(run.workdir / "best.pt", model, spec, epoch=epoch, metrics={f"val_{m}": val[m]})
        if live is not None:
            log_epoch(live, epoch, row, run.prefix)
            print(
                f"{task.name}{' ' + run.prefix.rstrip('/') if run.prefix else ''} epoch {epoch + 1}: train loss "
                f"{train_loss:.4f}  val loss {val['loss']:.4f}  val {m} {val[m]:.4f}  "
                f"({train_b.n * run.dist.world / seconds:.0f} img/s)"
            )
        resume.save(
            last,
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


def train_member(
    k: int, run: Run, data: Converted, split: dict[str, np.ndarray], *, seed: int, rows: np.ndarray
) -> tuple[Best, History, list[int]]:
    """Train ensemble member k (the model itself when there is one) on `rows`: (best, history, the channels
    the model sees)."""
    rt, dist, device = run.rt, run.dist, run.device
    torch.manual_seed(seed)
    model, spec = new_model(run.task, data, run.tp, rows)
    if dist.rank:  # its own dropout and augmentation draws; rank 0 goes on as a single process would
        torch.manual_seed(seed + RANK_SEED_STRIDE * dist.rank)
    model = prepare(model, device, rt)
    channels = data.channels(spec.channels)
    train_b = make_batches(
        data,
        rows,
        channels,
        batch_size=run.tp.batch_size,
        device=device,
        shuffle=True,
        seed=seed,
        runtime=rt,
        rank=dist.rank,
        world=dist.world,
    )
    val_b = make_batches(
        data,
        ddp.spread(split["val"], dist),
        channels,
        batch_size=4 * run.tp.batch_size,
        device=device,
        shuffle=False,
        seed=0,
        runtime=rt,
    )
    fp = resume.fingerprint(run.tp, data, split) + (f"-member{k + 1}" if k else "")
    nets = wrap(model, rt, dist, device)
    best, history = fit(run, model, nets, train_b=train_b, val_b=val_b, n_val=len(split["val"]), spec=spec, fp=fp)
    return best, history, channels


def save_model(
    paths: Paths, task_name: str, data: Converted, *, channels: list[int], workdirs: list[Path], ensemble_mode: str
) -> None:
    """models/<task>/: preprocessing.json, then model.pt (the best epoch's checkpoint, or the members joined).
    Two files, not the directory: export@<task> writes model.onnx beside them. `e2e predict` applies exactly
    this preprocessing, never re-deriving it from params.yaml."""
    with atomic_path(paths.models(task_name) / "preprocessing.json") as tmp:
        tmp.write_text(json.dumps(preprocessing(data, channels), indent=2))
    with atomic_path(paths.models(task_name) / "model.pt") as tmp:
        if len(workdirs) == 1:
            os.replace(workdirs[0] / "best.pt", tmp)
        else:
            join([w / "best.pt" for w in workdirs], tmp, ensemble_mode)
    for w in workdirs:
        (w / "last.pt").unlink(missing_ok=True)


def main(params: Params, task_name: str, paths: Paths) -> None:
    task, tp, rt = get_task(task_name), params.train[task_name], params.runtime
    dist = ddp.from_env()
    device = select_device(rt.device, dist.local_rank, dist.local_world)
    ddp.init(dist, device)
    data = Converted(paths.converted(task.dataset))
    split = load_split(paths.splits(task_name))
    members = member_rows(split["train"], tp)
    # outside the DVC outputs, which `dvc repro` deletes before a rerun: this is what makes resume possible
    workdir = paths.work("train", task_name)
    workdirs = [member_dir(workdir, k, len(members)) for k in range(len(members))]
    with live_output(paths.train_metrics(task_name), workdir, dist.rank) as live:
        run = Run(task, tp, rt, device, dist, live, workdir)
        results = [
            train_member(
                k,
                replace(run, workdir=workdirs[k], prefix=f"member{k + 1}/" if k else ""),
                data,
                split,
                seed=seed,
                rows=rows,
            )
            for k, (seed, rows) in enumerate(members)
        ]
        if live is not None:
            summarize(live, task, [(best, history) for best, history, _ in results])
            channels = results[0][2]
            save_model(paths, task_name, data, channels=channels, workdirs=workdirs, ensemble_mode=tp.ensemble.mode)
    ddp.close(dist)
