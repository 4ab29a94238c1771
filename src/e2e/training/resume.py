"""Resumable training: `.cache/train/<task>/last.pt` after every epoch, and the state to continue from.

It holds everything the next epoch depends on: weights, optimizer, scheduler, the history and best epoch
so far, and every random state the loop draws from, per rank: the CPU generator (initialisation, and
dropout and augmentation on a CPU) and the CUDA generator (dropout and augmentation on a GPU). numpy's and
Python's global generators are not used by training (shuffles and ensemble subsets have their own seeded
generators), so they are not saved.

Under DDP only rank 0 writes the file, and only rank 0 reads it: it decides whether to resume and
broadcasts the state, so nodes that do not share `.cache` resume together.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from e2e.config import TrainParams
from e2e.errors import E2EError
from e2e.models import takes_points
from e2e.models.wrappers import ModelSpec, Standardized
from e2e.runtime.batches import Converted
from e2e.store.checkpoints import save_checkpoint
from e2e.training import ddp

FORMAT = 2  # part of the fingerprint: a last.pt of an older layout (one CPU random state) starts afresh


def hashed_params(tp: TrainParams) -> dict[str, Any]:
    """asdict(tp) less the point-model fields where they change nothing: max_points of an image model, and
    global_inputs when there are none. An image model's params then hash exactly as before these fields
    existed, so a run interrupted before the upgrade still resumes."""
    params = dataclasses.asdict(tp)
    if not takes_points(tp.model):
        del params["max_points"]
    if not tp.global_inputs:
        del params["global_inputs"]
    return params


def fingerprint(tp: TrainParams, data: Converted, split: dict[str, np.ndarray]) -> str:
    """What a resumable checkpoint must match: the train params, the converted data and the split."""
    h = hashlib.sha256(json.dumps(hashed_params(tp), sort_keys=True, default=str).encode())
    h.update(json.dumps(data.meta["sources"], sort_keys=True).encode())
    for part in ("train", "val"):
        h.update(split[part].tobytes())
    h.update(f"last.pt format {FORMAT}".encode())
    return h.hexdigest()


def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def load(path: Path, fp: str, dist: ddp.Dist) -> dict[str, Any] | None:
    """Rank 0's state of the last completed epoch of an interrupted run with the same fingerprint, on every
    rank; None to start afresh."""
    state = None
    if dist.rank == 0 and path.is_file():
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # weights_only refuses pickled code: a tampered checkpoint is an error
            raise E2EError(
                f"{path}: refused to resume from it ({type(exc).__name__}); delete it to start afresh"
            ) from None
        if state.get("fingerprint") != fp:
            state = None
        else:
            print(f"resuming after epoch {state['epoch'] + 1} from {path}")
    return ddp.broadcast(state, dist)


def restore(
    state: dict[str, Any],
    model: torch.nn.Module,
    *,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    device: torch.device,
    dist: ddp.Dist,
) -> None:
    """Continue from `state`. A rank the interrupted run did not have (more processes now) keeps its own
    seeded generators."""
    model.load_state_dict(state["state_dict"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if dist.rank < len(state["rng"]):
        restore_rng(state["rng"][dist.rank], device)


def save(
    path: Path,
    model: Standardized,
    spec: ModelSpec,
    *,
    epoch: int,
    best: dict[str, Any],
    history: list[dict[str, float]],
    fp: str,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    device: torch.device,
    dist: ddp.Dist,
) -> None:
    """last.pt after `epoch`, written by rank 0 with every rank's random state (all ranks must call this)."""
    rngs = ddp.everyone(rng_state(device), dist)
    if dist.rank == 0:
        save_checkpoint(
            path,
            model,
            spec,
            epoch=epoch,
            best=best,
            history=history,
            fingerprint=fp,
            optimizer=optimizer.state_dict(),
            scheduler=scheduler.state_dict(),
            rng=rngs,
        )
