"""Batched prediction: raw outputs for every batch, shared by train (validation), evaluate and export."""

from __future__ import annotations

import torch


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
