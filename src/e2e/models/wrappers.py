"""The trained model as it travels: the network with its preprocessing (e2e.store.checkpoints saves it),
and the ModelSpec that rebuilds its network.

Input standardisation and target scaling live inside the model as buffers, so predict and evaluate
apply exactly what training used, read from the checkpoint rather than re-derived.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
import torch.nn as nn

from e2e.errors import E2EError
from e2e.models import build_model
from e2e.models.fusion import EMBEDDING, WithGlobals

# keys a checkpoint's spec has only where they apply: an ensemble's, and those older checkpoints lack
_OPTIONAL = (
    "channels",
    "task",
    "channel_names",
    "members",
    "ensemble_mode",
    "points",
    "max_points",
    "energy_channels",
    "global_inputs",
)


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """What rebuilds a checkpoint's network (wrap_from_spec), and what the checkpoint's model expects.

    The checkpoint stores it as the plain dict of to_dict(), keys in field order (the order of the dict it
    was before this class: the same bytes from torch.save), and loads it back with ModelSpec(**spec).
    kw_only: the optional fields sit where their keys always were, between required ones."""

    model: str
    model_kwargs: dict[str, Any]
    in_channels: int
    channels: list[int] | None = None  # the converted channels the model sees; None: all (older checkpoints)
    image_size: list[int]
    num_outputs: int
    classification: bool
    task: str | None = None
    channel_names: list[str] | None = None
    members: int | None = None  # an ensemble's number of members (e2e.training.ensemble.join)
    ensemble_mode: str | None = None  # and its train.<task>.ensemble.mode
    # a point model's (e2e.runtime.points), absent from an image model's spec: fed points, not images; the
    # cap (None: all points), the positions among `channels` whose sum orders the points; and any model's
    # converted observers given as jet-level inputs (None: none, and absent: the spec as it always was)
    points: bool | None = None
    max_points: int | None = None
    energy_channels: list[int] | None = None
    global_inputs: list[str] | None = None

    @property
    def n_members(self) -> int:
        return self.members or 1

    @property
    def n_globals(self) -> int:
        return len(self.global_inputs or [])

    def to_dict(self) -> dict[str, Any]:
        """The checkpoint's "spec": every field in order, less the optional ones that are None."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None or k not in _OPTIONAL}


class Standardized(nn.Module):
    # buffers, declared for the type checker (nn.Module's __getattr__ would type them Tensor | Module)
    in_mean: torch.Tensor
    in_std: torch.Tensor
    target_mean: torch.Tensor
    target_std: torch.Tensor

    def __init__(
        self, net: nn.Module, in_channels: int, classification: bool, *, points: bool = False, n_globals: int = 0
    ):
        super().__init__()
        self.net, self.classification, self.points, self.n_globals = net, classification, points, n_globals
        self.register_buffer("in_mean", torch.zeros(1, in_channels, 1, 1))
        self.register_buffer("in_std", torch.ones(1, in_channels, 1, 1))
        self.register_buffer("target_mean", torch.zeros(()))
        self.register_buffer("target_std", torch.ones(()))
        if n_globals:  # only then: an image model's state_dict, hence its checkpoint, is what it always was
            self.register_buffer("global_mean", torch.zeros(n_globals))
            self.register_buffer("global_std", torch.ones(n_globals))

    def set_stats(
        self,
        in_mean: Sequence[float] | np.ndarray,
        in_std: Sequence[float] | np.ndarray,
        target_mean: float = 0.0,
        target_std: float = 1.0,
    ) -> None:
        self.in_mean.copy_(torch.as_tensor(np.asarray(in_mean)).view_as(self.in_mean))
        self.in_std.copy_(torch.as_tensor(np.asarray(in_std)).view_as(self.in_std))
        self.target_mean.fill_(float(target_mean))
        self.target_std.fill_(float(target_std))

    def set_global_stats(self, mean: Sequence[float] | np.ndarray, std: Sequence[float] | np.ndarray) -> None:
        self.get_buffer("global_mean").copy_(torch.as_tensor(np.asarray(mean, dtype=np.float32)))
        self.get_buffer("global_std").copy_(torch.as_tensor(np.asarray(std, dtype=np.float32)))

    def forward(self, x) -> torch.Tensor:
        """Images (B, C, H, W), or an ImageBatch (images, globals_) for an image model with jet-level inputs,
        or for a point model a PointBatch (points, features, mask[, globals_])."""
        if not self.n_globals and not self.points:
            return self.net((x - self.in_mean) / self.in_std).squeeze(-1)
        # a bare tensor here would be read as (images, globals) = (x[0], x[1]): images of the wrong shape
        assert isinstance(x, tuple), f"expected the model's inputs as a tuple, got {type(x).__name__}"
        if not self.points:
            return self.net((x[0] - self.in_mean) / self.in_std, self.scaled_globals(x[1])).squeeze(-1)
        points, features, mask = x[0], x[1], x[2]
        # the features only, per channel; positions as they are; padded slots stay exactly zero
        scaled = torch.where(mask[..., None], (features - self.in_mean.view(-1)) / self.in_std.view(-1), 0.0)
        if not self.n_globals:
            return self.net(points, scaled, mask).squeeze(-1)
        return self.net(points, scaled, mask, self.scaled_globals(x[3])).squeeze(-1)

    def scaled_globals(self, globals_: torch.Tensor) -> torch.Tensor:
        return (globals_ - self.get_buffer("global_mean")) / self.get_buffer("global_std")

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

    def forward(self, x) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members], dim=-1)

    def decode_members(self, out: torch.Tensor) -> torch.Tensor:
        members = cast(list[Standardized], list(self.members))  # ModuleList yields nn.Module, these are Standardized
        return torch.stack([m.decode(out[..., k]) for k, m in enumerate(members)], dim=-1)

    def decode(self, out: torch.Tensor) -> torch.Tensor:
        return self.decode_members(out).mean(-1)


def wrap_from_spec(spec: ModelSpec) -> Standardized | Ensemble:
    """The network of `spec` with fresh weights: an Ensemble of its members where it has several."""
    if spec.n_members > 1:
        return Ensemble([wrap_single(spec) for _ in range(spec.n_members)])
    return wrap_single(spec)


def wrap_single(spec: ModelSpec) -> Standardized:
    """A single model of `spec` with fresh weights, whatever its members. An image model with jet-level
    inputs is built with EMBEDDING outputs and WithGlobals' head after it; a point model takes them itself."""
    kwargs = dict(spec.model_kwargs)
    fused = spec.n_globals and not spec.points
    if spec.n_globals and spec.points:
        kwargs["global_inputs"] = spec.n_globals
    outputs = EMBEDDING if fused else spec.num_outputs
    try:
        net = build_model(spec.model, spec.in_channels, outputs, tuple(spec.image_size), **kwargs)
    except (KeyError, TypeError) as exc:  # unknown model name or keyword: a params.yaml mistake
        raise E2EError(f"params.yaml train.{spec.task or '<task>'}: {str(exc).strip(chr(34) + chr(39))}") from None
    if fused:
        net = WithGlobals(net, global_inputs=spec.n_globals, num_outputs=spec.num_outputs)
    return Standardized(net, spec.in_channels, spec.classification, points=bool(spec.points), n_globals=spec.n_globals)
