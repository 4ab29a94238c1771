"""The converted image format: sparse per event, as .npy files opened with `np.load(mmap_mode="r")`.

    values.npy   (nnz,)  storage dtype   the non-zero pixel values, event after event
    index.npy    (nnz,)  int32           flat position c*H*W + h*W + w of each value in its (C, H, W) image
    offsets.npy  (N+1,)  int64           event i owns values[offsets[i]:offsets[i+1]]

Detector images are 95-99.8 % zeros, so this is 20-200x smaller than dense float16 and the whole
dataset is never materialised dense: batches are densified where the model runs (e2e.runtime.batches).
"Non-zero" is judged on the stored value (e2e.conversion.preprocess.to_storage), so a pixel that float16 rounds
to 0 is dropped, and the dense array rebuilt from this format equals the dense array of the stored
dtype exactly.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib import format as npformat
from numpy.typing import ArrayLike, DTypeLike

from e2e.store.arrays import load_array, open_array

INDEX_DTYPE = np.int32  # 8 x 125 x 125 = 125,000 positions per event


@dataclass
class SparseBatch:
    """A batch of events in the sparse form: counts[i] entries of (index, values) belong to event i."""

    values: np.ndarray
    index: np.ndarray
    counts: np.ndarray


def sparsify(images: np.ndarray) -> SparseBatch:
    """(b, C, H, W) images -> entries of their non-zero pixels (NaN and inf included), in row-major order."""
    size = int(np.prod(images.shape[1:]))
    flat = images.reshape(-1)
    # a boolean mask first: np.nonzero on the float array itself was 7x slower (74 vs 557 us per jet)
    found = np.flatnonzero(flat != 0)
    rows = found // size
    counts = np.bincount(rows, minlength=len(images)).astype(np.int64)
    return SparseBatch(flat[found], (found - rows * size).astype(INDEX_DTYPE), counts)


def densify(batch: SparseBatch, shape: tuple[int, ...], dtype: DTypeLike = np.float32) -> np.ndarray:
    """The inverse of sparsify: (b, C, H, W) dense images of (C, H, W) `shape`."""
    size = int(np.prod(shape))
    out = np.zeros((len(batch.counts), size), dtype)
    rows = np.repeat(np.arange(len(batch.counts)), batch.counts)
    out[rows, batch.index] = batch.values
    return out.reshape(len(batch.counts), *shape)


def concat_npy(dest: Path, parts: list[Path], dtype: DTypeLike) -> int:
    """Write parts of raw (headerless) values one after the other as one .npy, streaming: returns its length."""
    dtype = np.dtype(dtype)
    n = sum(p.stat().st_size for p in parts) // dtype.itemsize
    with open(dest, "wb") as out:
        npformat.write_array_header_1_0(
            out, {"descr": npformat.dtype_to_descr(dtype), "fortran_order": False, "shape": (n,)}
        )
        for part in parts:
            with open(part, "rb") as src:
                shutil.copyfileobj(src, out, 16 << 20)
    return n


class SparseImages:
    """A converted dataset's images, read-only: `images[rows]` densifies those rows (float32), and
    `gather(rows)` returns them still sparse. Values and indices stay memory-mapped."""

    def __init__(
        self, values: np.ndarray, index: np.ndarray, offsets: np.ndarray, shape: Iterable[int], where: str = "images"
    ) -> None:
        self.values, self.index, self.offsets, self.where = values, index, offsets, where
        # (C, H, W), typed as any length: it is read from a meta.json, whose length nothing checks here
        self.image_shape: tuple[int, ...] = tuple(int(s) for s in shape)

    @classmethod
    def open(cls, path: Path, shape: Iterable[int]) -> SparseImages:
        path = Path(path)
        return cls(
            open_array(path / "values.npy"),
            open_array(path / "index.npy"),
            load_array(path / "offsets.npy"),
            shape,
            str(path),
        )

    @classmethod
    def from_dense(cls, images: np.ndarray) -> SparseImages:
        """In memory, for benchmarks and tests."""
        batch = sparsify(images)
        return cls(batch.values, batch.index, np.concatenate([[0], np.cumsum(batch.counts)]), images.shape[1:])

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.image_shape)

    def counts(self, rows: ArrayLike) -> np.ndarray:
        rows = np.asarray(rows)
        return self.offsets[rows + 1] - self.offsets[rows]

    def gather(self, rows: ArrayLike) -> SparseBatch:
        """The entries of `rows`, in that order (sorted rows read the memmaps sequentially)."""
        rows = np.asarray(rows, dtype=np.int64)
        starts, counts = self.offsets[rows], self.counts(rows)
        first = np.cumsum(counts) - counts
        src = np.repeat(starts - first, counts) + np.arange(int(counts.sum()))
        return SparseBatch(np.asarray(self.values[src]), np.asarray(self.index[src]), counts)

    def __getitem__(self, rows: ArrayLike) -> np.ndarray:
        if np.ndim(rows) == 0:
            return self[np.array([rows])][0]
        return densify(self.gather(rows), self.image_shape)

    def channel_moments(self, rows: ArrayLike, chunk: int = 65536) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel sum and sum of squares over every pixel of `rows` (zeros included by construction)."""
        c, hw = self.image_shape[0], self.image_shape[1] * self.image_shape[2]
        s, ss = np.zeros(c), np.zeros(c)
        rows = np.asarray(rows)
        for start in range(0, len(rows), chunk):
            part = self.gather(rows[start : start + chunk])
            channel, v = part.index // hw, part.values.astype(np.float64)
            s += np.bincount(channel, weights=v, minlength=c)
            ss += np.bincount(channel, weights=v * v, minlength=c)
        return s, ss

    def pixel_sum(self, rows: ArrayLike, chunk: int = 65536) -> np.ndarray:
        """Sum of the (C, H, W) images of `rows`, in float64: a mean image without densifying any event."""
        total = np.zeros(int(np.prod(self.image_shape)))
        rows = np.asarray(rows)
        for start in range(0, len(rows), chunk):
            part = self.gather(rows[start : start + chunk])
            total += np.bincount(part.index, weights=part.values.astype(np.float64), minlength=len(total))
        return total.reshape(self.image_shape)


def select_channels(batch: SparseBatch, channels: Sequence[int], shape: tuple[int, ...]) -> SparseBatch:
    """Keep the entries of `channels` (in that order: channel channels[k] becomes channel k) of (C, H, W) `shape`."""
    hw = shape[1] * shape[2]
    if list(channels) == list(range(shape[0])):
        return batch
    remap = np.full(shape[0], -1, np.int64)
    remap[list(channels)] = np.arange(len(channels))
    channel = remap[batch.index // hw]
    index = (channel * hw + batch.index % hw).astype(INDEX_DTYPE)
    return keep_entries(SparseBatch(batch.values, index, batch.counts), channel >= 0)


def nhwc_index(index: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Flat positions c*H*W + h*W + w of (C, H, W) images as positions (h*W + w)*C + c in (H, W, C) order."""
    hw = shape[1] * shape[2]
    return ((index % hw).astype(np.int64) * shape[0] + index // hw).astype(INDEX_DTYPE)


def keep_entries(batch: SparseBatch, keep: np.ndarray) -> SparseBatch:
    """The entries where `keep` is true, with each event's count updated."""
    if keep.all():
        return batch
    events = np.repeat(np.arange(len(batch.counts)), batch.counts)[keep]
    return SparseBatch(
        batch.values[keep], batch.index[keep], np.bincount(events, minlength=len(batch.counts)).astype(np.int64)
    )
