"""Optimizers and learning-rate schedules from params, as plain-dict registries.

Every schedule is expressed in optimizer steps and stepped once per batch, so one loop serves
per-epoch schedules (step, cosine) and per-batch ones (one-cycle) alike.
"""

from __future__ import annotations

import torch

from e2e.config import TrainParams
from e2e.errors import E2EError

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


def make_optimizer(model: torch.nn.Module, tp: TrainParams) -> torch.optim.Optimizer:
    if tp.optimizer not in OPTIMIZERS:
        raise E2EError(f"params.yaml train.*.optimizer: unknown {tp.optimizer!r}; choices: {sorted(OPTIMIZERS)}")
    extra = {"momentum": 0.9, "nesterov": True} if tp.optimizer == "sgd" else {}
    return OPTIMIZERS[tp.optimizer](model.parameters(), lr=tp.lr, weight_decay=tp.weight_decay, **extra)


def _step(opt, steps, kw):
    return torch.optim.lr_scheduler.StepLR(opt, step_size=kw.get("step_size", 5) * steps, gamma=kw.get("gamma", 0.5))


def _cosine(opt, steps, kw, epochs):
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps, eta_min=kw.get("eta_min", 0.0))


def _restarts(opt, steps, kw):
    return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        opt, T_0=kw.get("T_0", 5) * steps, T_mult=kw.get("T_mult", 1), eta_min=kw.get("eta_min", 0.0)
    )


def _onecycle(opt, steps, kw, epochs):
    return torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=epochs * steps, pct_start=kw.get("pct_start", 0.3)
    )


SCHEDULERS = {
    "none": lambda opt, steps, kw, epochs: torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0),
    "step": lambda opt, steps, kw, epochs: _step(opt, steps, kw),
    "cosine": _cosine,
    "cosine_restarts": lambda opt, steps, kw, epochs: _restarts(opt, steps, kw),
    "onecycle": _onecycle,
}


def make_scheduler(opt: torch.optim.Optimizer, tp: TrainParams, steps_per_epoch: int):
    if tp.scheduler not in SCHEDULERS:
        raise E2EError(f"params.yaml train.*.scheduler: unknown {tp.scheduler!r}; choices: {sorted(SCHEDULERS)}")
    kw = dict(tp.scheduler_kwargs)
    warmup = int(kw.pop("warmup_epochs", 0) * steps_per_epoch)
    main = SCHEDULERS[tp.scheduler](opt, steps_per_epoch, kw, tp.epochs)
    if not warmup:
        return main
    ramp = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.01, total_iters=warmup)
    return torch.optim.lr_scheduler.SequentialLR(opt, [ramp, main], milestones=[warmup])
