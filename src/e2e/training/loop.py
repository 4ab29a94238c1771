"""The epoch loop: optimizer steps over one epoch's batches, with progress on a terminal or in a log."""

from __future__ import annotations

import os
import time

import torch
from tqdm import tqdm

from e2e.errors import E2EError
from e2e.models.wrappers import Standardized
from e2e.runtime.device import autocast, unwrap

# A piped log (no progress bar) gets a line this often during an epoch: a slow model under `dvc repro > log`
# is never silent for long, and a day-long run adds ~3000 short lines, not a bar's frames per batch.
PROGRESS_EVERY_S = 30.0


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
    GPU (tests/stages/test_gpu.py runs it under torch.cuda.set_sync_debug_mode("error")), so the host queues the
    next batch while the device computes."""
    model.train()
    total, count = torch.zeros((), device=device), 0
    show = os.environ.get("LOCAL_RANK", "0") == "0"
    # disable=None: a bar on a terminal only; a piped log gets Progress's lines and the one line per epoch
    bar = tqdm(batches, desc=desc, leave=False, disable=None if show else True)
    progress = Progress(desc, len(batches), show and bar.disable)
    core = unwrap(model)
    assert isinstance(core, Standardized), type(core)  # an ensemble trains member by member
    for k, (x, y) in enumerate(bar, 1):
        with autocast(device, amp):
            out = model(augment(x))
            loss = loss_fn(out.float(), core.encode_target(y))
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
