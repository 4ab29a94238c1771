"""Stage `train`: fit the task's model on the train split, keep the best epoch on the validation split.

Runs as one process or under torchrun (DistributedDataParallel); only rank 0 writes DVCLive output
and checkpoints.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import time

import numpy as np
import torch

from . import metrics
from .atomic import atomic_path
from .augment import make_augment
from .config import Params, Paths
from .data import Converted, channel_stats, make_batches
from .ensemble import join, member_dir, member_rows
from .engine import _unwrap, predict, prepare, select_device, train_one_epoch
from .errors import E2EError
from .modelio import build, save_checkpoint
from .optim import make_optimizer, make_scheduler
from .split import load_split
from .tracking import open_live
from .tasks import Task, get_task, make_loss


def init_distributed() -> tuple[int, int, int]:
    """(rank, world, local_rank); a single process when not launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def model_spec(task: Task, data: Converted, tp) -> dict:
    channels = data.channels(tp.channels, f"train.{task.name}.channels")
    return {"model": tp.model, "model_kwargs": dict(tp.model_kwargs), "in_channels": len(channels),
            "channels": channels, "image_size": list(data.images.image_shape[1:]), "num_outputs": task.num_outputs,
            "classification": task.is_classification, "task": task.name,
            "channel_names": [data.meta["channel_names"][c] for c in channels]}


def preprocessing(data: Converted, channels: list[int]) -> dict:
    """What `e2e predict` applies to raw files: the conversion's steps, composed with the model's channels."""
    pre, scale = dict(data.meta["preprocessing"]), data.meta["preprocessing"]["scale"]
    pre["scale"] = None if scale is None else [scale[c] for c in channels]
    return {"dataset": data.meta["dataset"], "dtype": data.meta["dtype"],
            "channels": [data.meta["channels"][c] for c in channels],
            "channel_names": [data.meta["channel_names"][c] for c in channels], "preprocessing": pre}


def build_model(task: Task, data: Converted, tp, train_idx: np.ndarray):
    spec = model_spec(task, data, tp)
    model = build(spec)
    mean, std = channel_stats(data.images, train_idx, spec["channels"])
    t = data.target[train_idx]
    model.set_stats(mean, std, *((0.0, 1.0) if task.is_classification else (t.mean(), t.std())))
    return model, spec


def score(task: Task, model, out: torch.Tensor, truth: torch.Tensor, loss_fn) -> dict:
    """Validation loss (in the training loss's units) and the task's primary metric in physical units."""
    core = _unwrap(model)
    loss = float(loss_fn(out, core.encode_target(truth)))
    decoded, y = core.decode(out).cpu().numpy(), truth.cpu().numpy()
    return {"loss": loss, task.primary_metric: metrics.METRICS[task.primary_metric](y, decoded)}


def wrap(model, runtime, world: int, device: torch.device):
    net = torch.compile(model) if runtime.compile else model
    if world > 1:
        ids = [device.index] if device.type == "cuda" else None
        net = torch.nn.parallel.DistributedDataParallel(net, device_ids=ids)
    return net


def is_better(task: Task, value: float, best: float | None) -> bool:
    return best is None or (value > best if task.higher_is_better else value < best)


def fingerprint(tp, data: Converted, split: dict) -> str:
    """What a resumable checkpoint must match: the train params, the converted data and the split."""
    h = hashlib.sha256(json.dumps(dataclasses.asdict(tp), sort_keys=True, default=str).encode())
    h.update(json.dumps(data.meta["sources"], sort_keys=True).encode())
    for part in ("train", "val"):
        h.update(split[part].tobytes())
    return h.hexdigest()


def load_resume(path, fp: str, model, optimizer, scheduler) -> dict | None:
    """State of the last completed epoch of an interrupted run with the same fingerprint, else None."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only refuses pickled code: a tampered checkpoint is an error
        raise E2EError(f"{path}: refused to resume from it ({type(exc).__name__}); delete it to start afresh") from None
    if state.get("fingerprint") != fp:
        return None
    model.load_state_dict(state["state_dict"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"])
    print(f"resuming after epoch {state['epoch'] + 1} from {path}")
    return state


def log_epoch(live, epoch: int, row: dict, prefix: str = "") -> None:
    """One epoch's row; an ensemble's members after the first log under `member<k>/` beside the first's."""
    live.step = epoch + 1  # the plots' x axis counts epochs from 1, as the logs and best_epoch do
    for key, value in row.items():
        live.log_metric(prefix + key, value)
    live.next_step()


def summarize(live, task: Task, results: list[tuple[dict, list[dict]]]) -> None:
    """metrics.json of train: what the training chose, not the last epoch's values (those are the plots):
    the first member's choice at the top level, every member's under members.<k> for an ensemble.
    val metrics of the best model, under the same names as every other split's, come from evaluate."""
    m = task.primary_metric

    def chosen(best: dict, history: list[dict]) -> dict:
        return {"best_epoch": best["epoch"] + 1, f"best_val_{m}": best["value"],
                "best_val_loss": history[best["epoch"]]["val/loss"], "epochs_run": len(history)}

    live.summary.clear()
    live.summary.update(chosen(*results[0]))
    live.summary["seconds_per_epoch"] = float(np.mean([r["epoch_seconds"] for _, h in results for r in h]))
    if len(results) > 1:
        live.summary["members"] = {str(k + 1): chosen(*r) for k, r in enumerate(results)}
    live.step = len(results[0][1])


@contextlib.contextmanager
def live_output(path, workdir, rank: int):
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


def fit(task, tp, rt, model, net, train_b, val_b, device, live, workdir, spec, fp,
        prefix: str = "") -> tuple[dict, list[dict]]:
    optimizer = make_optimizer(model, tp)
    scheduler = make_scheduler(optimizer, tp, len(train_b))
    train_loss_fn, loss_fn = make_loss(task.loss, tp.label_smoothing), make_loss(task.loss)
    augment = make_augment(tp.augment)
    m, best, history = task.primary_metric, {"epoch": -1, "value": None}, []
    resumed = load_resume(workdir / "last.pt", fp, model, optimizer, scheduler)
    if resumed:
        best, history = resumed["best"], resumed["history"]
        for epoch, row in enumerate(history if live is not None else []):  # DVC deleted the old files: replay
            log_epoch(live, epoch, row, prefix)
    for epoch in range(len(history), tp.epochs):
        if tp.patience and history and epoch - 1 - best["epoch"] >= tp.patience:  # early stop, also on resume
            break
        train_b.set_epoch(epoch)
        t0 = time.perf_counter()
        train_loss = train_one_epoch(net, train_b, optimizer, scheduler, train_loss_fn, device, rt.amp,
                                     tp.grad_clip, augment, desc=f"{task.name} epoch {epoch + 1}/{tp.epochs}")
        seconds = time.perf_counter() - t0
        val = score(task, model, *predict(model, val_b, device, rt.amp), loss_fn)
        row = {"train/loss": train_loss, "val/loss": val["loss"], f"val/{m}": val[m],
               "lr": optimizer.param_groups[0]["lr"], "epoch_seconds": seconds}
        history.append(row)
        if is_better(task, val[m], best["value"]):
            best = {"epoch": epoch, "value": val[m]}
            if live is not None:
                save_checkpoint(workdir / "best.pt", model, spec, epoch=epoch, metrics={f"val_{m}": val[m]})
        if live is not None:
            log_epoch(live, epoch, row, prefix)
            print(f"{task.name}{' ' + prefix.rstrip('/') if prefix else ''} epoch {epoch + 1}: train loss {train_loss:.4f}  val loss {val['loss']:.4f}  "
                  f"val {m} {val[m]:.4f}  ({train_b.n / seconds:.0f} img/s)")
            save_checkpoint(workdir / "last.pt", model, spec, epoch=epoch, best=best, history=history,
                            fingerprint=fp, optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                            rng=torch.get_rng_state())
    return best, history


def train_member(k: int, task: Task, tp, rt, data: Converted, split: dict, seed: int, rows: np.ndarray,
                 live, workdir, dist: tuple[int, int, torch.device]) -> tuple[dict, list[dict], dict]:
    """Train ensemble member k (the model itself when there is one) on `rows`: (best, history, spec)."""
    rank, world, device = dist
    torch.manual_seed(seed)
    model, spec = build_model(task, data, tp, rows)
    model = prepare(model, device, rt)
    net = wrap(model, rt, world, device)
    channels = spec["channels"]
    train_b = make_batches(data, rows, channels, tp.batch_size, device, True, seed, rt, rank, world)
    val_b = make_batches(data, split["val"], channels, 4 * tp.batch_size, device, False, 0, rt)
    fp = fingerprint(tp, data, split) + (f"-member{k + 1}" if k else "")
    best, history = fit(task, tp, rt, model, net, train_b, val_b, device, live, workdir, spec, fp,
                        f"member{k + 1}/" if k else "")
    return best, history, spec


def save_model(paths: Paths, task_name: str, tp, data: Converted, channels: list[int], workdirs: list) -> None:
    """models/<task>/: preprocessing.json, then model.pt (the best epoch's checkpoint, or the members joined).
    Two files, not the directory: export@<task> writes model.onnx beside them. `e2e predict` applies exactly
    this preprocessing, never re-deriving it from params.yaml."""
    with atomic_path(paths.models(task_name) / "preprocessing.json") as tmp:
        tmp.write_text(json.dumps(preprocessing(data, channels), indent=2))
    with atomic_path(paths.models(task_name) / "model.pt") as tmp:
        if len(workdirs) == 1:
            os.replace(workdirs[0] / "best.pt", tmp)
        else:
            join([w / "best.pt" for w in workdirs], tmp, tp.ensemble["mode"])
    for w in workdirs:
        (w / "last.pt").unlink(missing_ok=True)


def main(params: Params, task_name: str, paths: Paths) -> None:
    task, tp, rt = get_task(task_name), params.train[task_name], params.runtime
    rank, world, local_rank = init_distributed()
    device = select_device(rt.device, local_rank)
    data = Converted(paths.converted(task.dataset))
    split = load_split(paths.splits(task_name))
    members = member_rows(split["train"], tp)
    # outside the DVC outputs, which `dvc repro` deletes before a rerun: this is what makes resume possible
    workdir = paths.root / ".cache" / "train" / task_name
    workdirs = [member_dir(workdir, k, len(members)) for k in range(len(members))]
    with live_output(paths.train_metrics(task_name), workdir, rank) as live:
        results = [train_member(k, task, tp, rt, data, split, seed, rows, live, workdirs[k], (rank, world, device))
                   for k, (seed, rows) in enumerate(members)]
        if live is not None:
            summarize(live, task, [(best, history) for best, history, _ in results])
            save_model(paths, task_name, tp, data, results[0][2]["channels"], workdirs)
    if world > 1:
        torch.distributed.destroy_process_group()
