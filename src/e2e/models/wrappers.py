"""The trained model as it travels: the network with its preprocessing (e2e.store.checkpoints saves it).

Input standardisation and target scaling live inside the model as buffers, so predict and evaluate
apply exactly what training used, read from the checkpoint rather than re-derived.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from e2e.errors import E2EError
from e2e.models import build_model


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


def wrap_from_spec(spec: dict) -> Standardized | Ensemble:
    """spec: model, model_kwargs, in_channels, image_size, num_outputs, classification[, members]."""
    members = spec.get("members", 1)
    if members > 1:
        return Ensemble([wrap_from_spec({**spec, "members": 1}) for _ in range(members)])
    try:
        net = build_model(
            spec["model"], spec["in_channels"], spec["num_outputs"], tuple(spec["image_size"]), **spec["model_kwargs"]
        )
    except (KeyError, TypeError) as exc:  # unknown model name or keyword: a params.yaml mistake
        raise E2EError(f"params.yaml train.{spec.get('task', '<task>')}: {str(exc).strip(chr(34) + chr(39))}") from None
    return Standardized(net, spec["in_channels"], spec["classification"])
