"""The epoch loop and batched prediction, shared by train, evaluate and predict; one path for CPU and GPU."""
from __future__ import annotations

import os

import torch
from tqdm import tqdm

from .errors import E2EError


def select_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise E2EError(f"params.yaml runtime.device: {name!r} asked for, but no CUDA device is visible")
    return torch.device(name)


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on GPU; a no-op on CPU, where bf16 convolutions are slower than fp32."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled and device.type == "cuda")


def prepare(model: torch.nn.Module, device: torch.device, runtime) -> torch.nn.Module:
    model = model.to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed image sizes: autotuned conv kernels pay off at once
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if runtime.channels_last and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    if runtime.threads:
        torch.set_num_threads(runtime.threads)
    return model


def train_one_epoch(model, batches, optimizer, scheduler, loss_fn, device, amp: bool, clip_grad: float = 0.0,
                    augment=lambda x: x, desc: str = "train") -> float:
    model.train()
    total, count = torch.zeros((), device=device), 0
    show = os.environ.get("LOCAL_RANK", "0") == "0"
    # disable=None: a bar on a terminal only; a piped log gets the one line per epoch that train prints
    for x, y in tqdm(batches, desc=desc, leave=False, disable=None if show else True):
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
    if not torch.isfinite(total):
        raise E2EError(f"{desc}: training loss became non-finite; lower the learning rate")
    return float(total) / max(count, 1)


@torch.no_grad()
def predict(model, batches, device, amp: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw model outputs and targets for every batch, in batch order, left on the device for decoding."""
    model.eval()
    outs, ys = [], []
    for x, y in batches:
        with autocast(device, amp):
            outs.append(model(x).float())
        ys.append(y)
    return torch.cat(outs), torch.cat(ys)


def _unwrap(model):
    """DistributedDataParallel and torch.compile wrap the module that owns encode/decode."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or getattr(model, "_orig_mod")
    return model
