"""Stage `train`: fit the task's model on the train split, keep the best epoch on the validation split.

Runs as one process or under torchrun (DistributedDataParallel); only rank 0 writes DVCLive output
and checkpoints, and every decision (best epoch, early stop, resume) is rank 0's, broadcast (e2e.training.ddp).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from e2e.config import Params, Paths, TrainParams
from e2e.models import takes_points
from e2e.models.wrappers import ModelSpec, Standardized, wrap_single
from e2e.runtime.batches import RANK_SEED_STRIDE, Converted, global_values
from e2e.runtime.device import prepare, select_device
from e2e.runtime.points import batches_for, energy_channels_of
from e2e.runtime.stats import channel_stats, point_stats
from e2e.store.atomic import atomic_path
from e2e.store.live import open_live
from e2e.store.splits import load_split
from e2e.tasks import Task, get_task
from e2e.training import ddp, resume
from e2e.training.ensemble import join, member_dir, member_rows
from e2e.training.fit import Best, History, Run, fit, wrap

if TYPE_CHECKING:
    from dvclive import Live


def model_spec(task: Task, data: Converted, tp: TrainParams) -> ModelSpec:
    channels = data.channels(tp.channels, f"train.{task.name}.channels")
    names = [data.meta["channel_names"][c] for c in channels]
    spec = ModelSpec(
        model=tp.model,
        model_kwargs=dict(tp.model_kwargs),
        in_channels=len(channels),
        channels=channels,
        image_size=list(data.images.image_shape[1:]),
        num_outputs=task.num_outputs,
        classification=task.is_classification,
        task=task.name,
        channel_names=names,
    )
    # the fields stay None where they do not apply: an image model's spec, hence its model.pt, as it always was
    spec = replace(spec, global_inputs=list(tp.global_inputs) or None)
    if not takes_points(tp.model):
        return spec
    return replace(spec, points=True, max_points=tp.max_points, energy_channels=energy_channels_of(names))


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
    # a point model standardises its points' features: moments over the points, not over every pixel
    stats = point_stats if spec.points else channel_stats
    mean, std = stats(data.images, train_idx, data.channels(spec.channels))
    if spec.global_inputs:
        values = global_values(data, spec.global_inputs, f"train.{task.name}.global_inputs")[np.sort(train_idx)]
        model.set_global_stats(values.mean(0), np.where(values.std(0) > 0, values.std(0), 1.0))
    t = data.target[train_idx]
    model.set_stats(mean, std, *((0.0, 1.0) if task.is_classification else (t.mean(), t.std())))
    return model, spec


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
    train_b = batches_for(
        spec,
        data,
        rows,
        batch_size=run.tp.batch_size,
        device=device,
        shuffle=True,
        seed=seed,
        runtime=rt,
        rank=dist.rank,
        world=dist.world,
    )
    val_b = batches_for(
        spec,
        data,
        ddp.spread(split["val"], dist),
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
