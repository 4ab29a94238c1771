"""DistributedDataParallel plumbing for `train`: the process group, and the collectives that make every rank
decide alike (validation metric, best epoch, early stop, resume).

Each rank trains on its own shard, but every decision is taken once, on rank 0, and broadcast: a rank that
decided alone could stop while another waits in a collective until the NCCL timeout. One process (no
torchrun) is a `Dist` of world 1, for which every function here is the identity.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as td


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1  # processes on this node, each wanting its own GPU


def from_env() -> Dist:
    """This process's place, as torchrun sets it; a single process when not launched by torchrun."""
    env = os.environ
    world = int(env.get("WORLD_SIZE", "1"))
    return Dist(
        int(env.get("RANK", "0")), world, int(env.get("LOCAL_RANK", "0")), int(env.get("LOCAL_WORLD_SIZE", str(world)))
    )


def backend(device: torch.device) -> str:
    """Chosen from the device the model is on, not from what the machine has: a CPU run on a GPU host
    (runtime.device: cpu) needs gloo, NCCL carries only CUDA tensors."""
    return "nccl" if device.type == "cuda" else "gloo"


def init(dist: Dist, device: torch.device) -> None:
    """Join the process group, after the device is chosen (NCCL binds each rank to its current GPU)."""
    if dist.world == 1 or td.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)  # object collectives stage their bytes on the current device
    td.init_process_group(backend(device))


def close(dist: Dist) -> None:
    if dist.world > 1 and td.is_initialized():
        td.destroy_process_group()


def broadcast(obj: Any, dist: Dist) -> Any:
    """Rank 0's `obj` on every rank (pickled; for decisions and the resume state, never per batch)."""
    if dist.world == 1:
        return obj
    box = [obj]
    td.broadcast_object_list(box, src=0)
    return box[0]


def everyone(obj: Any, dist: Dist) -> list:
    """Every rank's `obj`, in rank order, on every rank."""
    if dist.world == 1:
        return [obj]
    out = [None] * dist.world
    td.all_gather_object(out, obj)
    return out


def spread(idx: np.ndarray, dist: Dist) -> np.ndarray:
    """Rank `rank`'s share of an evaluation split: every `world`-th of the sorted rows, so that together the
    shares hold every row once (unlike e2e.runtime.batches.shard, which drops the remainder to keep steps equal)."""
    return np.sort(np.asarray(idx))[dist.rank :: dist.world]


def gather_spread(t: torch.Tensor, n: int, dist: Dist) -> torch.Tensor:
    """The rows of all ranks' `spread` shares (rank r held rows r, r + world, ...) back in sorted order:
    the tensor a single process would have computed on all `n` rows."""
    if dist.world == 1:
        return t
    size = -(-n // dist.world)  # all_gather wants equal sizes: the shorter shares are padded by one row
    padded = torch.zeros((size, *t.shape[1:]), dtype=t.dtype, device=t.device)
    padded[: len(t)] = t
    parts = [torch.empty_like(padded) for _ in range(dist.world)]
    td.all_gather(parts, padded)
    return torch.stack(parts, dim=1).flatten(0, 1)[:n]  # row k*world + r is rank r's k-th


def sync_buffers(model: torch.nn.Module, dist: Dist) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank. Each rank's last training step
    updated them with its own batch, so without this the ranks would validate different models."""
    if dist.world == 1:
        return
    for buffer in model.buffers():
        td.broadcast(buffer, src=0)
