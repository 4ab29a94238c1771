"""Stream the real file formats as channels-first batches, validating as they go.

Every failure becomes one E2EError naming the file, what was expected and what was found.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import E2EError
from .registry import Dataset


@dataclass
class Batch:
    images: np.ndarray  # (b, C, H, W) float32, channels-first
    target: np.ndarray  # (b,) float32
    observers: dict[str, np.ndarray]


def _pick(found: list[str], accepted: tuple[str, ...], path: Path, what: str) -> str:
    for name in accepted:
        if name in found:
            return name
    raise E2EError(f"{path}: no {what} column/key; expected one of {list(accepted)}, found {sorted(found)}")


class HDF5Reader:
    """The e/gamma layout: `X` (N, H, W, C) channels-LAST float32 and `y` (N,)."""

    def __init__(self, dataset: Dataset, path: Path):
        import h5py

        self.path, self.dataset = path, dataset
        try:
            self.file = h5py.File(path, "r")
        except OSError as exc:
            raise E2EError(f"{path}: not a readable HDF5 file ({exc})") from None
        keys = list(self.file.keys())
        self.x = self.file[_pick(keys, dataset.image_keys, path, "image")]
        self.y = self.file[_pick(keys, dataset.target_keys, path, "target")]
        C, H, W = dataset.shape
        if self.x.ndim != 4 or self.x.shape[1:] != (H, W, C):
            raise E2EError(f"{path}: image shape expected (N, {H}, {W}, {C}) channels-last, found {self.x.shape}")
        for name, ds in (("X", self.x), ("y", self.y)):
            if ds.dtype.kind not in "fiub":
                raise E2EError(f"{path}: {name} must be numeric, found dtype {ds.dtype}")
        if self.y.shape != (self.x.shape[0],):
            raise E2EError(f"{path}: y shape expected ({self.x.shape[0]},), found {self.y.shape}")
        self.n_rows = int(self.x.shape[0])

    def batches(self, batch_rows: int) -> Iterator[Batch]:
        for start in range(0, self.n_rows, batch_rows):
            stop = min(start + batch_rows, self.n_rows)
            try:
                x = np.asarray(self.x[start:stop], dtype=np.float32)
                y = np.asarray(self.y[start:stop], dtype=np.float32)
            except (OSError, RuntimeError) as exc:  # truncated or corrupt chunk
                raise E2EError(f"{self.path}: unreadable rows {start}-{stop} ({exc})") from None
            # transpose, never reshape: a reshape of channels-last data scrambles pixels
            yield Batch(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), y, {})

    def close(self) -> None:
        self.file.close()


def _flatten_checked(column, dims: tuple[int, ...], path: Path, col: str) -> np.ndarray:
    """Arrow nested lists -> flat values, checking every level has exactly the expected length."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    for depth, size in enumerate(dims):
        if not (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type)):
            raise E2EError(f"{path}: {col} expected {len(dims)} nested list levels, found type {column.type}")
        if arr.null_count:
            raise E2EError(f"{path}: {col} has null entries at nesting level {depth}")
        lengths = pc.list_value_length(arr)
        lo, hi = pc.min_max(lengths).values()
        if lo.as_py() != size or hi.as_py() != size:
            raise E2EError(f"{path}: {col} is ragged or misshapen at level {depth}: "
                           f"expected length {size}, found {lo.as_py()}..{hi.as_py()}")
        arr = arr.flatten()
    if not (pa.types.is_floating(arr.type) or pa.types.is_integer(arr.type)):
        raise E2EError(f"{path}: {col} values must be numeric, found {arr.type}")
    if arr.null_count:
        raise E2EError(f"{path}: {col} has null pixel values")
    return arr.to_numpy(zero_copy_only=False)


class ParquetReader:
    """Jet images: nested list<list<list<double>>> channels-first, one row group per jet in the real files.

    Reads with iter_batches across row groups: reading one row group as "a chunk" reads one jet.
    """

    def __init__(self, dataset: Dataset, path: Path):
        import pyarrow.parquet as pq

        self.path, self.dataset = path, dataset
        try:
            self.file = pq.ParquetFile(path)
        except Exception as exc:  # pyarrow raises several types for bad footers/magic bytes
            raise E2EError(f"{path}: not a readable parquet file ({exc})") from None
        names = self.file.schema_arrow.names
        self.image_col = _pick(names, dataset.image_keys, path, "image")
        self.target_col = _pick(names, dataset.target_keys, path, "target")
        self.observer_cols = {out: _pick(names, acc, path, out) for out, acc in dataset.observer_keys.items()}
        for col in [self.target_col, *self.observer_cols.values()]:
            t = self.file.schema_arrow.field(col).type
            if not (str(t).startswith(("double", "float", "int", "uint", "halffloat", "bool"))):
                raise E2EError(f"{path}: column {col} must be numeric, found {t}")
        self.n_rows = self.file.metadata.num_rows

    def batches(self, batch_rows: int) -> Iterator[Batch]:
        cols = [self.image_col, self.target_col, *self.observer_cols.values()]
        try:
            for rb in self.file.iter_batches(batch_size=batch_rows, columns=cols, use_threads=True):
                yield self._decode(rb)
        except E2EError:
            raise
        except Exception as exc:
            raise E2EError(f"{self.path}: unreadable data ({type(exc).__name__}: {exc})") from None

    def _decode(self, rb) -> Batch:
        b = rb.num_rows
        flat = _flatten_checked(rb.column(self.image_col), self.dataset.shape, self.path, self.image_col)
        # the file is channels-first already, so this reshape keeps every pixel where it was
        images = flat.reshape(b, *self.dataset.shape).astype(np.float32, copy=False)
        target = rb.column(self.target_col).to_numpy(zero_copy_only=False).astype(np.float32)
        observers = {out: rb.column(col).to_numpy(zero_copy_only=False).astype(np.float32)
                     for out, col in self.observer_cols.items()}
        return Batch(images, target, observers)

    def close(self) -> None:
        self.file.close()


READERS = {"hdf5": HDF5Reader, "parquet": ParquetReader}


def open_reader(dataset: Dataset, path: Path):
    if not path.is_file():
        raise E2EError(f"{path}: missing input file for dataset {dataset.name}")
    if path.stat().st_size == 0:
        raise E2EError(f"{path}: empty file")
    reader = READERS[dataset.format](dataset, path)
    if reader.n_rows == 0:
        raise E2EError(f"{path}: holds no rows")
    return reader
