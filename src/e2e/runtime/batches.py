"""Converted datasets, and batches of a split: the split's sparse entries resident on one device,
each batch densified where the model runs.

On a GPU the sparse split lives on the device (the jet-mass train and validation splits of all seven
files at the model's 4 channels are ~1.4 GB), so an epoch makes no host-to-device copies of images;
when it exceeds `runtime.resident_max_gb` it stays in host memory and each batch's entries (kilobytes)
are copied over before densifying, from pinned memory so that the copy does not block the host. On a
CPU it is the same code.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from numpy.typing import ArrayLike

from e2e.errors import E2EError
from e2e.inference.inputs import finite_globals
from e2e.runtime.device import to_device, uses_channels_last
from e2e.store.arrays import load_array
from e2e.store.sparse import SparseBatch, SparseImages, nhwc_index, select_channels

if TYPE_CHECKING:
    from e2e.config import RuntimeParams

RANK_SEED_STRIDE = 100003  # rank r of a DDP run draws from seed + r * this: its own shuffle and dropout


class ImageBatch(NamedTuple):
    """An image model's input when it takes jet-level inputs (train.<task>.global_inputs): the dense images
    and the events' standardisable scalars (B, G)."""

    images: torch.Tensor
    globals_: torch.Tensor


# what a batch feeds the model: dense images (B, C, H, W), or an ImageBatch, here; a PointBatch (points,
# features, mask[, globals_]) in e2e.runtime.points; training, validation and prediction pass each through
# `model(x)` unchanged
Inputs = torch.Tensor | tuple[torch.Tensor | None, ...]


class Converted:
    """A converted dataset directory: the sparse images (e2e.store.sparse), target.npy, observers, truth_*.npy,
    meta.json."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        meta_path = self.path / "meta.json"
        if not meta_path.is_file():
            raise E2EError(f"{meta_path}: missing; run `dvc repro convert@<dataset>` first")
        self.meta: dict[str, Any] = json.loads(meta_path.read_text())
        if self.meta.get("format") != "sparse":
            raise E2EError(f"{meta_path}: not the sparse format of this version; rerun `dvc repro convert@<dataset>`")
        self.images = SparseImages.open(self.path, self.meta["shape"][1:])
        self.target = load_array(self.path / "target.npy")
        self.observers = {k: load_array(self.path / f"{k}.npy") for k in self.meta["observers"]}
        self.truth = {k: load_array(self.path / f"truth_{k}.npy") for k in self.meta["truth"]}

    def channels(self, selected: Iterable[int] | None, key: str = "train.<task>.channels") -> list[int]:
        """Indices of the converted channels a model sees (params `train.<task>.channels`; None: all)."""
        n = self.images.image_shape[0]
        chosen = list(range(n)) if selected is None else list(selected)
        if not chosen or min(chosen) < 0 or max(chosen) >= n or len(set(chosen)) != len(chosen):
            raise E2EError(
                f"params.yaml {key}: expected distinct indices into the {n} converted channels "
                f"{self.meta['channel_names']}, found {chosen}"
            )
        return chosen


def global_values(data: Converted, names: Sequence[str], where: str) -> np.ndarray:
    """(N, G) float32 of the converted observers `names`; an unknown name is refused listing those there are,
    a non-finite value naming the input."""
    unknown = [g for g in names if g not in data.observers]
    if unknown:
        there = ", ".join(data.observers) or "none"
        raise E2EError(f"{where}: {unknown[0]!r} is not an observer of {data.path} (available: {there})")
    return finite_globals(
        {g: np.asarray(data.observers[g], dtype=np.float32) for g in names}, f"{where} in {data.path}"
    )


def shard(idx: np.ndarray, rank: int, world: int) -> np.ndarray:
    """Rank `rank`'s fixed, equal share of the rows: each DDP rank keeps only its own rows resident, and
    every rank runs the same number of steps."""
    if world == 1:
        return idx
    return idx[: len(idx) // world * world][rank::world]


class SparseBatches:
    """Batches (x float32 (b, C, H, W), y float32 (b,)) of one split, shuffled per epoch when asked.

    A yielded `x` lives in one of two reused buffers: it is valid until the next-but-one batch. A fresh
    zeroed 16 MB tensor per batch cost more in page faults than the whole densification on a CPU, and
    zeroing only the entries the buffer's last batch wrote is ~1000x less memory traffic than a memset.
    With `channels_last` the buffer is laid out (b, H, W, C) and `x` is its channels_last view, the layout
    of a channels_last model: no conversion per step.
    """

    def __init__(
        self,
        images: SparseImages,
        target: np.ndarray,
        idx: np.ndarray,
        channels: Sequence[int],
        *,
        batch_size: int,
        device: torch.device,
        shuffle: bool,
        seed: int,
        resident_max_gb: float,
        channels_last: bool = False,
        globals_: np.ndarray | None = None,
    ) -> None:
        self.shape = (len(channels), *images.image_shape[1:])
        self.size = int(np.prod(self.shape))  # values per dense image
        self.rows = np.sort(np.asarray(idx))  # batch i of an unshuffled pass holds rows[i*b:(i+1)*b]
        self.n, self.batch_size, self.shuffle, self.seed, self.epoch = len(idx), batch_size, shuffle, seed, 0
        self.device, self.channels_last = device, channels_last
        entries = _gather(images, self.rows, channels)
        if channels_last:
            entries = SparseBatch(entries.values, nhwc_index(entries.index, self.shape), entries.counts)
        fits = entries.values.nbytes + entries.index.nbytes <= resident_max_gb * 2**30
        self.store = store = device if fits else torch.device("cpu")
        self.counts_host = entries.counts  # each batch's size is known on the host: no device sync per batch
        self.counts = torch.from_numpy(entries.counts).to(store)
        self.offsets = torch.from_numpy(np.concatenate([[0], np.cumsum(entries.counts)])).to(store)
        self.values = torch.from_numpy(entries.values).to(store)
        self.index = torch.from_numpy(entries.index).to(store)
        self.y = torch.from_numpy(np.ascontiguousarray(target[self.rows], dtype=np.float32)).to(store)
        # each row's jet-level inputs (N, G) for every row of the dataset, kept beside the entries in self.rows' order
        self.globals_ = None if globals_ is None else torch.from_numpy(globals_[self.rows]).to(store)
        self.buffers = self.make_buffers()

    def make_buffers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The two reused dense buffers and the positions each last wrote (e2e.runtime.points needs none)."""
        empty = torch.zeros(0, dtype=torch.long, device=self.device)
        return [(torch.zeros(self.batch_size * self.size, device=self.device), empty) for _ in range(2)]

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.n)
        return torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + self.epoch))

    def __iter__(self) -> Iterator[tuple[Inputs, torch.Tensor]]:
        order = self.order()
        totals = np.add.reduceat(self.counts_host[order.numpy()], np.arange(0, self.n, self.batch_size))
        order = to_device(order, self.store)  # one copy of the epoch's order: none per batch
        for k, (rows, total) in enumerate(zip(order.split(self.batch_size), totals.tolist())):
            yield self.inputs(rows, total, k % 2), to_device(self.y[rows], self.device)

    def inputs(self, rows: torch.Tensor, total: int, slot: int) -> Inputs:
        """The model's input for `rows`: their dense images here (with their jet-level inputs, an ImageBatch),
        a PointBatch in e2e.runtime.points."""
        dense = self.densify(rows, total, slot)
        return dense if self.globals_ is None else ImageBatch(dense, self.batch_globals(rows))

    def batch_globals(self, rows: torch.Tensor) -> torch.Tensor:
        assert self.globals_ is not None
        return to_device(self.globals_.index_select(0, rows), self.device)

    def entries(self, rows: torch.Tensor, total: int) -> tuple[torch.Tensor, torch.Tensor]:
        """For each of the `total` entries of `rows`: its event's place in `rows`, and its place in the store."""
        store, counts = self.store, self.counts[rows]
        event = torch.repeat_interleave(torch.arange(len(rows), device=store), counts, output_size=total)
        first = torch.cumsum(counts, 0) - counts
        return event, (self.offsets[rows] - first)[event] + torch.arange(total, device=store)

    def densify(self, rows: torch.Tensor, total: int, slot: int) -> torch.Tensor:
        """Scatter the `total` entries of `rows` into buffer `slot`, after zeroing only what its last batch wrote."""
        event, src = self.entries(rows, total)
        # only the batch's entries travel when the split lives in host memory (kilobytes, not the dense batch)
        position = to_device(event * self.size + self.index[src], self.device)
        buffer, written = self.buffers[slot]
        # not `buffer[written] = 0`: indexing with a Python scalar copies it to the GPU and waits, every batch
        buffer.index_fill_(0, written, 0.0)
        buffer[position] = to_device(self.values[src], self.device).float()
        self.buffers[slot] = (buffer, position)
        dense = buffer[: len(rows) * self.size]
        if self.channels_last:
            c, h, w = self.shape
            return dense.view(len(rows), h, w, c).permute(0, 3, 1, 2)
        return dense.view(len(rows), *self.shape)


def _gather(images: SparseImages, rows: np.ndarray, channels: Sequence[int], chunk: int = 65536) -> SparseBatch:
    """The entries of the selected channels of sorted `rows`, read in chunks (sequential memmap reads)."""
    parts = [
        select_channels(images.gather(rows[s : s + chunk]), channels, images.image_shape)
        for s in range(0, len(rows), chunk)
    ]
    if not parts:
        raise E2EError(f"{images.where}: an empty split has no batches")
    return SparseBatch(*(np.concatenate([getattr(p, k) for p in parts]) for k in ("values", "index", "counts")))


def make_batches(
    data: Converted,
    idx: ArrayLike,
    channels: Sequence[int],
    *,
    batch_size: int,
    device: torch.device,
    shuffle: bool,
    seed: int,
    runtime: RuntimeParams,
    rank: int = 0,
    world: int = 1,
    globals_: np.ndarray | None = None,
) -> SparseBatches:
    """Batches of rows `idx` (this rank's share of them) on `device`; `seed` orders a shuffled pass;
    `globals_` (N, G): every row's jet-level inputs, or None."""
    return SparseBatches(
        data.images,
        data.target,
        shard(np.asarray(idx), rank, world),
        channels,
        batch_size=batch_size,
        device=device,
        shuffle=shuffle,
        seed=seed + RANK_SEED_STRIDE * rank,
        resident_max_gb=runtime.resident_max_gb,
        channels_last=uses_channels_last(device, runtime),
        globals_=globals_,
    )
