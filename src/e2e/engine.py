"""The epoch loop and batched prediction, shared by train, evaluate and predict; one path for CPU and GPU."""

from __future__ import annotations

import os
import time

import torch
from tqdm import tqdm

from .data import uses_channels_last
from .errors import E2EError

# A piped log (no progress bar) gets a line this often during an epoch: a slow model under `dvc repro > log`
# is never silent for long, and a day-long run adds ~3000 short lines, not a bar's frames per batch.
PROGRESS_EVERY_S = 30.0


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


def prepare(model: torch.nn.Module, device: torch.device, runtime) -> torch.nn.Module:
    model = model.to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed image sizes: autotuned conv kernels pay off at once
    set_tf32(runtime.tf32)
    if uses_channels_last(device, runtime):  # the batches are densified in the same layout (e2e.data)
        model = model.to(memory_format=torch.channels_last)
    if runtime.threads:
        torch.set_num_threads(runtime.threads)
    return model


class Progress:
    """Where no bar is drawn (a piped log): every `PROGRESS_EVERY_S` seconds one line of batches done,
    images/s and the time left in the epoch. Counts are the host's own: printing never waits for the GPU."""

    def __init__(self, desc: str, total: int, enabled: bool):
        self.desc, self.total, self.enabled = desc, total, enabled
        self.start = time.monotonic()
        self.next = self.start + PROGRESS_EVERY_S

    def update(self, batches: int, images: int) -> None:
        now = time.monotonic()
        if not self.enabled or now < self.next:
            return
        self.next = now + PROGRESS_EVERY_S
        elapsed = now - self.start
        left = tqdm.format_interval(elapsed / batches * (self.total - batches))
        print(f"{self.desc}: {batches}/{self.total} batches, {images / elapsed:.0f} img/s, ETA {left}", flush=True)


def run_steps(
    model,
    batches,
    optimizer,
    scheduler,
    loss_fn,
    *,
    device: torch.device,
    amp: bool,
    clip_grad: float = 0.0,
    augment=lambda x: x,
    desc: str = "train",
) -> tuple[torch.Tensor, int]:
    """One epoch's optimizer steps: (summed loss, on the device, and images). Nothing in here waits for the
    GPU (tests/test_gpu.py runs it under torch.cuda.set_sync_debug_mode("error")), so the host queues the
    next batch while the device computes."""
    model.train()
    total, count = torch.zeros((), device=device), 0
    show = os.environ.get("LOCAL_RANK", "0") == "0"
    # disable=None: a bar on a terminal only; a piped log gets Progress's lines and the one line per epoch
    bar = tqdm(batches, desc=desc, leave=False, disable=None if show else True)
    progress = Progress(desc, len(batches), show and bar.disable)
    for k, (x, y) in enumerate(bar, 1):
        with autocast(device, amp):
            out = model(augment(x))
            loss = loss_fn(out.float(), _unwrap(model).encode_target(y))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip_grad:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
        optimizer.step()
        scheduler.step()
        total += loss.detach() * len(y)  # stays on device: no sync per step
        count += len(y)
        progress.update(k, count)
    return total, count


def train_one_epoch(
    model,
    batches,
    optimizer,
    scheduler,
    loss_fn,
    *,
    device: torch.device,
    amp: bool,
    clip_grad: float = 0.0,
    augment=lambda x: x,
    desc: str = "train",
) -> float:
    """The epoch's mean training loss."""
    total, count = run_steps(
        model,
        batches,
        optimizer,
        scheduler,
        loss_fn,
        device=device,
        amp=amp,
        clip_grad=clip_grad,
        augment=augment,
        desc=desc,
    )
    if not torch.isfinite(total):
        raise E2EError(f"{desc}: training loss became non-finite; lower the learning rate")
    return float(total) / max(count, 1)


@torch.no_grad()
def predict(model, batches, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw model outputs and targets for every batch, in batch order, left on the device for decoding.

    Always float32, autocast off even inside an enclosing autocast: a bf16 output keeps 8 significant bits,
    i.e. jet masses in steps of 0.5-1 GeV and classifier scores tied in the thousands. runtime.amp speeds up
    the training steps only."""
    model.eval()
    outs, ys = [], []
    with torch.autocast(device_type=device.type, enabled=False):
        for x, y in batches:
            outs.append(model(x))
            ys.append(y)
    return torch.cat(outs), torch.cat(ys)


def _unwrap(model):
    """DistributedDataParallel and torch.compile wrap the module that owns encode/decode."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or model._orig_mod
    return model
