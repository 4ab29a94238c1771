"""Batches of points: each event's non-zero pixels, built from the resident sparse entries where the model runs.

A point is a pixel (h, w) where any selected channel is non-zero. Its features are the selected channels'
values there (0 where a channel is zero), its position is relative to the image centre, scaled to [-1, 1]:

    points   float32 (B, P, 2)  ((h - (H-1)/2) / (H/2), (w - (W-1)/2) / (W/2))
    features float32 (B, P, C)
    mask     bool    (B, P)     True for real points; padded slots are all zero

P is the batch's own largest event after the cap (at least 1). An event's points are ordered by energy
descending (the sum of its `energy_channels`, or of |value| over all channels when none are named), ties by
ascending pixel, so neither the order nor the cap depends on how the entries were stored. No dense image is
made: the batch is built with sort/unique/scatter on the entries alone, the same code on CPU and GPU.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from e2e.errors import E2EError
from e2e.runtime.batches import RANK_SEED_STRIDE, Converted, SparseBatches, global_values, make_batches, shard
from e2e.runtime.device import to_device
from e2e.store.sparse import SparseImages


class PointBatch(NamedTuple):
    """The padded points of a batch of events: tensors, so it passes through torch code and ONNX export; the
    events' jet-level inputs (B, G) where the model takes some (train.<task>.global_inputs)."""

    points: torch.Tensor
    features: torch.Tensor
    mask: torch.Tensor
    globals_: torch.Tensor | None = None


# The energy that orders an event's points and chooses those the cap keeps: the sum of the model's channels
# named after a calorimeter (any name containing one of these); none among them: |value| summed over all.
ENERGY_NAMES = ("ecal", "hcal", "energy")


def energy_channels_of(channel_names: Sequence[str]) -> list[int]:
    """Positions among the model's channels (by name) whose sum is the points' energy (ENERGY_NAMES)."""
    return [k for k, name in enumerate(channel_names) if any(e in name.lower() for e in ENERGY_NAMES)]


def check_points_options(max_points: int | None, energy_channels, n_channels: int) -> tuple[int, ...]:
    """The energy channels as a tuple, after refusing a cap below 1 and a channel outside the selected ones."""
    whole = isinstance(max_points, (int, np.integer)) and not isinstance(max_points, bool)
    if max_points is not None and not (whole and max_points >= 1):
        raise E2EError(f"max_points: expected a whole number >= 1 or null (no cap), found {max_points!r}")
    chosen = tuple(int(k) for k in energy_channels)
    if any(k < 0 or k >= n_channels for k in chosen) or len(set(chosen)) != len(chosen):
        raise E2EError(
            f"energy_channels: expected distinct positions among the {n_channels} selected channels, found {chosen}"
        )
    return chosen


def to_points(
    values: torch.Tensor,
    index: torch.Tensor,
    event: torch.Tensor,
    *,
    n_events: int,
    shape: tuple[int, int, int],
    max_points: int | None,
    energy_channels,
) -> PointBatch:
    """The PointBatch of `n_events` events from their sparse entries, on the entries' device.

    `values`, `index` (flat c*H*W + h*W + w in the selected channels' (C, H, W) `shape`) and `event` (each
    entry's event, 0..n_events-1) in any order; one entry per (event, channel, pixel), as the converted
    format holds. Every step is a stable sort, a unique, a search, or a scatter into distinct slots (but
    the one spare slot past the cap, which is cut off), so the result is the same bits on CPU and GPU.
    """
    c, h, w = shape
    energy = check_points_options(max_points, energy_channels, c)
    device, hw = values.device, h * w
    index, event = index.long(), event.long()
    # one key per (event, pixel), sorted: the points of the batch, event after event, pixel after pixel
    keys, inverse = torch.unique(event * hw + index % hw, sorted=True, return_inverse=True)
    # index_copy_/index_select rather than x[i] = v / x[i]: the same result, 2-5x faster on a CPU
    table = torch.zeros(len(keys) * c, device=device)
    table.index_copy_(0, inverse * c + index // hw, values.float())  # each (point, channel) slot written once
    table = table.view(len(keys), c)
    owner = keys // hw
    # each point's rank in its event: its place in the energy order minus its event's first place (the
    # events keep their places: the order sorts by event first)
    place = torch.empty_like(keys)
    place.index_copy_(0, energy_order(table, owner, energy), torch.arange(len(keys), device=device))
    first = torch.searchsorted(owner, torch.arange(n_events, device=device))  # each event's first point
    rank = place - first.index_select(0, owner)
    p = int(rank.max()) + 1 if len(rank) else 1  # the largest event: a sync, as unique's size is on a GPU
    p = min(p, max_points) if max_points is not None else p
    # a point past the cap goes to one spare slot after the batch, cut off below: no filtering, no sync
    slot = torch.where(rank < p, owner * p + rank, n_events * p)
    mask = torch.zeros(n_events * p + 1, dtype=torch.bool, device=device)
    mask.index_fill_(0, slot, True)
    features = torch.zeros(n_events * p + 1, c, device=device)
    features.index_copy_(0, slot, table)
    points = torch.zeros(n_events * p + 1, 2, device=device)
    points.index_copy_(0, slot, positions(h, w, device).index_select(0, keys % hw))
    cut = n_events * p
    return PointBatch(
        points[:cut].view(n_events, p, 2), features[:cut].view(n_events, p, c), mask[:cut].view(n_events, p)
    )


@functools.lru_cache(maxsize=8)
def positions(h: int, w: int, device: torch.device) -> torch.Tensor:
    """(H*W, 2) float32: pixel h*W + w's ((h - (H-1)/2) / (H/2), (w - (W-1)/2) / (W/2)), computed in float64
    (an exact subtraction, one correctly rounded division), so CPU and GPU agree to the bit."""
    rows = (torch.arange(h, device=device, dtype=torch.float64) - (h - 1) / 2) / (h / 2)
    columns = (torch.arange(w, device=device, dtype=torch.float64) - (w - 1) / 2) / (w / 2)
    return torch.stack(torch.meshgrid(rows, columns, indexing="ij"), -1).view(h * w, 2).float()


def energy_order(table: torch.Tensor, owner: torch.Tensor, energy: tuple[int, ...]) -> torch.Tensor:
    """The order of points (rows of `table`, sorted by event then pixel) by event, then energy descending,
    then pixel: one stable sort of an integer key (event, energy), ties left in their pixel order."""
    # channels summed one at a time, left to right: a fixed order of float32 additions on any device
    columns = [table[:, k] for k in energy] or [table[:, k].abs() for k in range(table.shape[1])]
    total = columns[0]
    for column in columns[1:]:
        total = total + column
    # float32 -> int32 bits that sort as the floats do (negatives: magnitude bits flipped); -0.0 is made +0.0
    # first so that it ties with it, as the floats compare
    bits = torch.where(total == 0, 0.0, total).view(torch.int32).long()
    ascending = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)  # in [-2**31, 2**31)
    return torch.sort(owner * 2**33 + (2**31 - ascending), stable=True).indices  # 2**31 - ascending in (0, 2**32]


class PointBatches(SparseBatches):
    """Batches (PointBatch on the model's device, y float32 (b,)) of one split: the entries, their residency,
    the rows of each batch and their shuffle are SparseBatches' own, so a point model sees the same events
    in the same order as an image model with the same seed. Each batch is new tensors (P varies by batch)."""

    def __init__(
        self,
        images: SparseImages,
        target,
        idx,
        channels,
        *,
        batch_size: int,
        device: torch.device,
        shuffle: bool,
        seed: int,
        resident_max_gb: float,
        max_points: int | None,
        energy_channels,
        globals_: np.ndarray | None = None,
    ):
        self.max_points = max_points
        self.energy_channels = check_points_options(max_points, energy_channels, len(channels))
        super().__init__(
            images,
            target,
            idx,
            channels,
            batch_size=batch_size,
            device=device,
            shuffle=shuffle,
            seed=seed,
            resident_max_gb=resident_max_gb,
            channels_last=False,  # the entries keep their (C, H, W) positions: to_points reads c, h and w
            globals_=globals_,
        )

    def make_buffers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return []

    def inputs(self, rows: torch.Tensor, total: int, slot: int) -> PointBatch:
        event, src = self.entries(rows, total)
        c, h, w = self.shape
        # the batch's entries go to the model's device (kilobytes when the split lives in host memory)
        batch = to_points(
            to_device(self.values.index_select(0, src), self.device),
            to_device(self.index.index_select(0, src), self.device),
            to_device(event, self.device),
            n_events=len(rows),
            shape=(c, h, w),
            max_points=self.max_points,
            energy_channels=self.energy_channels,
        )
        return batch if self.globals_ is None else batch._replace(globals_=self.batch_globals(rows))


def make_point_batches(
    data: Converted,
    idx,
    channels,
    *,
    batch_size: int,
    device: torch.device,
    shuffle: bool,
    seed: int,
    runtime,
    max_points: int | None,
    energy_channels,
    globals_: np.ndarray | None = None,
    rank: int = 0,
    world: int = 1,
) -> PointBatches:
    """Point batches of rows `idx` (this rank's share of them) on `device`, as make_batches' image batches;
    `globals_` (N, G): every row's jet-level inputs, or None."""
    return PointBatches(
        data.images,
        data.target,
        shard(np.asarray(idx), rank, world),
        channels,
        batch_size=batch_size,
        device=device,
        shuffle=shuffle,
        seed=seed + RANK_SEED_STRIDE * rank,
        resident_max_gb=runtime.resident_max_gb,
        max_points=max_points,
        energy_channels=energy_channels,
        globals_=globals_,
    )


def batches_for(spec: Any, data: Converted, idx, **options) -> SparseBatches:
    """The batches model `spec` (a models.wrappers.ModelSpec) takes: point batches for a point model (its cap
    and energy channels from the spec), make_batches' images otherwise; either with the spec's jet-level
    inputs. `options`: those of make_batches (batch_size, device, shuffle, seed, runtime[, rank, world])."""
    channels = data.channels(spec.channels)
    where = f"train.{spec.task}.global_inputs"
    globals_ = global_values(data, spec.global_inputs, where) if spec.global_inputs else None
    if not spec.points:
        return make_batches(data, idx, channels, globals_=globals_, **options)
    return make_point_batches(
        data,
        idx,
        channels,
        max_points=spec.max_points,
        energy_channels=spec.energy_channels,
        globals_=globals_,
        **options,
    )
