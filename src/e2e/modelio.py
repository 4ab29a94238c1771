"""The trained model as it travels: network plus its preprocessing, saved as a self-describing checkpoint.

Input standardisation and target scaling live inside the model as buffers, so predict and evaluate
apply exactly what training used, read from the checkpoint rather than re-derived.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .atomic import atomic_path
from .errors import E2EError
from .models import build_model


class Standardized(nn.Module):
    def __init__(self, net: nn.Module, in_channels: int, classification: bool):
        super().__init__()
        self.net, self.classification = net, classification
        self.register_buffer("in_mean", torch.zeros(1, in_channels, 1, 1))
        self.register_buffer("in_std", torch.ones(1, in_channels, 1, 1))
        self.register_buffer("target_mean", torch.zeros(()))
        self.register_buffer("target_std", torch.ones(()))

    def set_stats(self, in_mean, in_std, target_mean=0.0, target_std=1.0) -> None:
        self.in_mean.copy_(torch.as_tensor(np.asarray(in_mean)).view_as(self.in_mean))
        self.in_std.copy_(torch.as_tensor(np.asarray(in_std)).view_as(self.in_std))
        self.target_mean.fill_(float(target_mean))
        self.target_std.fill_(float(target_std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.in_mean) / self.in_std).squeeze(-1)

    def encode_target(self, y: torch.Tensor) -> torch.Tensor:
        """Regression trains on a standardised target: MSE in GeV^2 would dwarf every other scale."""
        return y if self.classification else (y - self.target_mean) / self.target_std

    def decode(self, out: torch.Tensor) -> torch.Tensor:
        """Raw outputs -> probability of class 1, or an estimate in physical units."""
        return torch.sigmoid(out) if self.classification else out * self.target_std + self.target_mean


class Ensemble(nn.Module):
    """Members trained apart (other seeds, or disjoint subsets of the training split) predicting together.

    forward gives each member's raw output, one column per member; decode averages the members' decoded
    outputs (probabilities, or GeV: averaging logits would not average the probabilities); evaluate
    takes their standard deviation per event as the ensemble's uncertainty."""

    def __init__(self, members: list[Standardized]):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.classification = members[0].classification

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members], dim=-1)

    def decode_members(self, out: torch.Tensor) -> torch.Tensor:
        return torch.stack([m.decode(out[..., k]) for k, m in enumerate(self.members)], dim=-1)

    def decode(self, out: torch.Tensor) -> torch.Tensor:
        return self.decode_members(out).mean(-1)


def build(spec: dict) -> Standardized | Ensemble:
    """spec: model, model_kwargs, in_channels, image_size, num_outputs, classification[, members]."""
    members = spec.get("members", 1)
    if members > 1:
        return Ensemble([build({**spec, "members": 1}) for _ in range(members)])
    try:
        net = build_model(
            spec["model"], spec["in_channels"], spec["num_outputs"], tuple(spec["image_size"]), **spec["model_kwargs"]
        )
    except (KeyError, TypeError) as exc:  # unknown model name or keyword: a params.yaml mistake
        raise E2EError(f"params.yaml train.{spec.get('task', '<task>')}: {str(exc).strip(chr(34) + chr(39))}") from None
    return Standardized(net, spec["in_channels"], spec["classification"])


def save_checkpoint(path: Path, model: Standardized, spec: dict, **info) -> None:
    """Everything in it is a tensor or a plain value, so it loads with torch.load(weights_only=True)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"spec": spec, "state_dict": state, **info}, tmp)


def load_checkpoint(path: Path, device="cpu") -> tuple[Standardized, dict]:
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise E2EError(f"{path}: no checkpoint; run `dvc repro train@<task>` first") from None
    except Exception as exc:  # includes the unpickling error that refuses arbitrary objects
        raise E2EError(
            f"{path}: refused to load checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0]})"
        ) from None
    model = build(ckpt["spec"])
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval(), ckpt
