"""What the point-cloud and graph networks share (particlenet.py, transformer.py, graph.py): k nearest
neighbours, neighbour gathering, masked pooling and norms, and the base class with the head.

A point model maps (points (B, P, 2) position relative to the image centre, features (B, P, C) standardised
channel values, mask (B, P) bool, True = a real point[, globals_ (B, G) jet-level scalars]) to (B, num_outputs)
raw outputs, like the CNNs. Padded slots never reach the output: every aggregation, attention, pooling and
norm statistic is masked, so the output does not depend on the order of an event's points nor on how much
padding follows them, and padded points get no gradient. Everything is plain torch with fixed shapes per
point count (gather, where, topk; no boolean indexing), so the models export to ONNX with dynamic batch and
point axes."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from e2e.models.classic import _mlp_head

# Tie-breaking of equal distances in knn (pixels lie on a grid, so equal distances are common, and topk's
# choice among equal values depends on the order of the points). The key is d + u_j * (d + TINY), in float64,
# with d the float32 squared distance and u_j = rank_j * CODE_STEP, rank_j < 2**20 the neighbour's rank in
# an order-independent order of the event's points. Why it never reorders unequal distances: the next
# float32 above d is d + g with g > d * 2**-24 (d normal) and g >= 2**-149 (always); the added term is below
# 2**-25 * (d + 2**-126), which is < d * 2**-24 for d >= 2**-126 and < 2**-150 below, so < g either way. Why it
# separates equal ones: float64 has 29 more significant bits than float32, and one rank step (2**-45 relative)
# is 2**7 float64 ulps, so distinct ranks give distinct, increasing keys.
CODE_STEP = 2.0**-45
TINY = 2.0**-126  # the smallest normal float32
EXACT_DIMS = 3  # pair_sq_distances sums differences up to this many coordinates, else uses a matmul


def pair_sq_distances(x: torch.Tensor) -> torch.Tensor:
    """(B, P, P) float32 squared Euclidean distances of x (B, P, D).

    Up to EXACT_DIMS coordinates (positions), summed coordinate by coordinate from the differences: each
    entry is then a function of its own pair alone, so equal distances on the pixel grid come out exactly
    equal wherever the pair sits, for knn's tie-break to order. Beyond (features), |x_i|^2 + |x_j|^2 - 2 x_i.x_j
    by one matmul, 30x faster than the differences at 34 dimensions: its rounding may depend on the pair's
    place in the matrix, but exact ties there are between equal feature vectors (either neighbour gathers
    the same features) and continuous features leave no near ties in practice."""
    x = x.float()  # also under autocast: elementwise ops keep float32, so no bf16 ties
    if x.shape[-1] > EXACT_DIMS:
        norm = x.square().sum(-1)
        if torch.is_autocast_enabled(x.device.type):  # a bf16 matmul would blur the distances
            with torch.autocast(x.device.type, enabled=False):
                inner = x @ x.transpose(1, 2)
        else:  # no autocast context in the traced graph: export meets this branch
            inner = x @ x.transpose(1, 2)
        return (norm[:, :, None] + norm[:, None, :] - 2 * inner).clamp(min=0)
    diff = x[:, :, None, 0] - x[:, None, :, 0]
    dist = diff * diff
    for c in range(1, x.shape[-1]):
        diff = x[:, :, None, c] - x[:, None, :, c]
        dist = dist + diff * diff
    return dist


def point_rank(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, P) int64: how many real points of the event come before each point in the lexicographic order of
    x's coordinates (B, P, D). Independent of the order of the points; unique among distinct coordinates
    (pixel positions are)."""
    xi, xj = x[:, :, None, :], x[:, None, :, :]
    before = xi[..., -1] < xj[..., -1]  # [b, i, j]: point i comes before point j
    for c in reversed(range(x.shape[-1] - 1)):
        before = (xi[..., c] < xj[..., c]) | ((xi[..., c] == xj[..., c]) & before)
    return (before & mask[:, :, None]).sum(1)


def knn(x: torch.Tensor, mask: torch.Tensor, k: int, *, code: torch.Tensor | None = None) -> torch.Tensor:
    """Indices (B, P, k) of each point's k nearest other real points by squared distance in x (B, P, D),
    nearest first; equal distances ordered by `code` (B, P) (default point_rank(x, mask); pass the
    positions' rank to break feature-space ties by position). A slot with no real neighbour left (fewer
    than k + 1 real points, or a padded query) holds the query's own index: neighbour_valid says which
    slots are real. No gradient flows through the choice."""
    batch, points = x.shape[0], x.shape[1]
    with torch.no_grad():
        dist = pair_sq_distances(x).double()
        rank = point_rank(x, mask) if code is None else code
        key = dist + (rank.double() * CODE_STEP)[:, None, :] * (dist + TINY)
        self_index = torch.arange(points, device=x.device)
        pair = mask[:, :, None] & mask[:, None, :] & (self_index[:, None] != self_index[None, :])
        key = key.masked_fill(~pair, float("inf"))
        # k columns of +inf after the P real ones: topk needs k <= its axis, and P may be smaller than k
        key = F.pad(key, (0, k), value=float("inf"))
        value, index = key.topk(k, dim=2, largest=False)
        index = torch.where(torch.isinf(value), self_index.view(1, points, 1).expand(batch, -1, k), index)
    return index


def neighbour_valid(index: torch.Tensor) -> torch.Tensor:
    """(B, P, k) bool: the knn slots that hold a real neighbour (the others hold the query itself)."""
    return index != torch.arange(index.shape[1], device=index.device)[None, :, None]


def gather_neighbours(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x (B, P, C) at index (B, P, k) -> (B, P, k, C), one flat index_select (ONNX Gather)."""
    batch, points, channels = x.shape
    offset = torch.arange(batch, device=x.device)[:, None, None] * points
    flat = x.reshape(-1, channels).index_select(0, (index + offset).reshape(-1))
    return flat.view(batch, points, index.shape[2], channels)


def masked_mean(x: torch.Tensor, valid: torch.Tensor, dim: int) -> torch.Tensor:
    """Mean of x (..., C) over `dim` where valid (x.shape[:-1]); 0 where nothing is valid."""
    weight = valid.unsqueeze(-1).to(x.dtype)
    return (x * weight).sum(dim) / weight.sum(dim).clamp(min=1)


def masked_max(x: torch.Tensor, valid: torch.Tensor, dim: int) -> torch.Tensor:
    """Max of x (..., C) over `dim` where valid; 0 where nothing is valid."""
    low = torch.finfo(x.dtype).min
    top = x.masked_fill(~valid.unsqueeze(-1), low).amax(dim)
    return torch.where(valid.any(dim).unsqueeze(-1), top, torch.zeros_like(top))


class MaskedBatchNorm(nn.Module):
    """BatchNorm over the last axis with statistics from the valid entries only (padded points, absent
    neighbours): nn.BatchNorm would count the padding, so an event's output would depend on the padding
    of the batch. Eval mode uses the running statistics, as BatchNorm does."""

    running_mean: torch.Tensor
    running_var: torch.Tensor

    def __init__(self, channels: int, *, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        if self.training:
            # sums as matrix-vector products and one fused affine: edge tensors are large, each pass counts
            flat, weight = x.reshape(-1, x.shape[-1]), valid.reshape(-1).to(x.dtype)
            count = weight.sum().clamp(min=1)
            mean = (weight @ flat) / count
            var = ((weight @ flat.square()) / count - mean.square()).clamp(min=0)
            with torch.no_grad():
                unbiased = var * count / (count - 1).clamp(min=1)
                self.running_mean.lerp_(mean.float(), self.momentum)
                self.running_var.lerp_(unbiased.float(), self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        scale = self.weight * torch.rsqrt(var + self.eps)
        return torch.addcmul(self.bias - mean * scale, x, scale)


class PointLayerNorm(nn.Module):
    """LayerNorm with the norms' (x, valid) call: each entry is normalised on its own, nothing leaks."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


NORMS = {"batch": MaskedBatchNorm, "layer": PointLayerNorm}


def make_norm(kind: str, channels: int) -> nn.Module:
    if kind not in NORMS:
        raise ValueError(f"norm must be one of {sorted(NORMS)}, got {kind!r}")
    return NORMS[kind](channels)


class PointModel(nn.Module):
    """Base of the point models: `takes_points` tells the pipeline to feed points, not images; the head
    takes the pooled event vector with the jet-level inputs (global_inputs of them) concatenated.

    forward takes (points, features, mask) when global_inputs is 0, else (points, features, mask, globals_)."""

    takes_points = True

    def __init__(self, *, global_inputs: int, pooled: int, hidden: Sequence[int], num_outputs: int, dropout: float):
        super().__init__()
        if global_inputs < 0:
            raise ValueError(f"global_inputs must be >= 0, got {global_inputs}")
        self.global_inputs = int(global_inputs)
        self.head = nn.Sequential(*_mlp_head([pooled + self.global_inputs, *hidden, num_outputs], dropout))

    def masked_inputs(self, points: torch.Tensor, features: torch.Tensor, mask: torch.Tensor):
        """Inputs with padded slots zeroed (whatever the batcher left there), and the mask as (B, P, 1) floats."""
        weight = mask.unsqueeze(-1).to(features.dtype)
        return points * weight, features * weight, weight

    def predict(self, pooled: torch.Tensor, globals_: torch.Tensor | None) -> torch.Tensor:
        if (globals_ is None) != (self.global_inputs == 0):
            raise ValueError(
                f"{type(self).__name__}: built for {self.global_inputs} global input(s), got "
                f"{'none' if globals_ is None else tuple(globals_.shape)}"
            )
        if globals_ is not None:
            if globals_.shape[-1] != self.global_inputs:
                raise ValueError(
                    f"{type(self).__name__}: globals_ has {globals_.shape[-1]} columns, expected {self.global_inputs}"
                )
            pooled = torch.cat([pooled, globals_.to(pooled.dtype)], dim=-1)
        return self.head(pooled)
