"""Where the model runs: the device, its memory format, bf16 autocast and TF32; one path for CPU and GPU."""

from __future__ import annotations

from typing import TypeVar

import torch

from e2e.errors import E2EError
from e2e.models.wrappers import Ensemble, Standardized

M = TypeVar("M", bound=torch.nn.Module)


def select_device(name: str, local_rank: int = 0, local_world: int = 1) -> torch.device:
    """This process's device. Under DDP each of the `local_world` processes on a node takes its own GPU,
    cuda:<local_rank> (NCCL refuses two ranks on one GPU), whether runtime.device says auto or cuda."""
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise E2EError(f"params.yaml runtime.device: {name!r} asked for, but no CUDA device is visible")
    count = torch.cuda.device_count()
    if local_world > count:
        raise E2EError(
            f"params.yaml runtime.nproc: {local_world} processes on this node need a GPU each, but "
            f"{count} CUDA device(s) are visible; lower runtime.nproc (or torchrun --nproc_per_node)"
        )
    if ":" not in name:
        return torch.device("cuda", local_rank)
    if local_world > 1:
        raise E2EError(
            f"params.yaml runtime.device: {name!r} names one GPU for all {local_world} processes of "
            "runtime.nproc; use cuda or auto (each process then takes cuda:<local rank>)"
        )
    index = int(name.split(":")[1])
    if index >= count:
        raise E2EError(f"params.yaml runtime.device: {name!r} asked for, but {count} CUDA device(s) are visible")
    return torch.device("cuda", index)


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on GPU; a no-op on CPU, where bf16 convolutions are slower than fp32."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled and device.type == "cuda")


def set_tf32(enabled: bool) -> None:
    """TF32 tensor-core math for float32 matmuls and cuDNN convolutions (Ampere and later), or IEEE float32.
    Set both ways on purpose: cuDNN defaults to TF32 for convolutions, so a GPU's float32 predictions would
    differ from the CPU's at ~1e-3 unless IEEE is asked for. No effect on a CPU.
    The allow_tf32 flags, not the per-operation `fp32_precision` ones: in torch 2.14 setting cuDNN's conv
    precision alone makes `torch.backends.cudnn.allow_tf32` raise, and torch.compile and torch.export
    (e2e export) read it. The two APIs share their state (allow_tf32 False is conv precision "none")."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def prepare(model: M, device: torch.device, runtime) -> M:
    """`model` itself, moved to `device` (and channels_last on a GPU), with the runtime's math settings."""
    model = model.to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed image sizes: autotuned conv kernels pay off at once
    set_tf32(runtime.tf32)
    if uses_channels_last(device, runtime):  # the batches are densified in the same layout (e2e.runtime.batches)
        model = model.to(memory_format=torch.channels_last)
    if runtime.threads:
        torch.set_num_threads(runtime.threads)
    return model


def uses_channels_last(device: torch.device, runtime) -> bool:
    """The memory format of the model (prepare, below) and so of its batches: channels_last on a GPU."""
    return bool(runtime.channels_last) and device.type == "cuda"


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`t` on `device` without blocking the host: a host tensor bound for a GPU goes through pinned memory,
    since a copy from pageable memory is staged by the driver and returns only when done, non_blocking or
    not. (The caching host allocator keeps the pinned block until the copy has finished.)"""
    if t.device.type == "cpu" and device.type == "cuda":
        t = t.pin_memory()
    return t.to(device, non_blocking=True)


def unwrap(model: torch.nn.Module) -> Standardized | Ensemble:
    """DistributedDataParallel and torch.compile wrap the module that owns encode/decode."""
    while isinstance(inner := getattr(model, "module", None) or getattr(model, "_orig_mod", None), torch.nn.Module):
        model = inner
    assert isinstance(model, (Standardized, Ensemble)), type(model)
    return model
