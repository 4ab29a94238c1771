"""Raw files in the real layouts written and read straight with pyarrow and h5py, never through e2e's readers:
the independent reads the convert tests compare against, and writers of variants and broken files."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def pylist_images(path: Path, column: str) -> np.ndarray:
    """Independent read: Python lists straight from Arrow, so the layout is whatever the file says."""
    return np.array(pq.read_table(path, columns=[column]).column(column).to_pylist(), dtype=np.float64)


def pylist_column(path: Path, column: str) -> np.ndarray:
    return np.array(pq.read_table(path, columns=[column]).column(column).to_pylist(), dtype=np.float64)


def hdf5_images(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with h5py.File(path, "r") as f:
        return f["X"][:].transpose(0, 3, 1, 2), f["y"][:]


def nested(images: np.ndarray) -> pa.ListArray:
    """(N, C, H, W) -> list<list<list<double>>> channels-first, built from offsets."""
    n, c, h, w = images.shape
    values = pa.array(np.ascontiguousarray(images, dtype=np.float64).reshape(-1))
    rows = pa.ListArray.from_arrays(pa.array(np.arange(n * c * h + 1, dtype=np.int32) * w), values)
    chans = pa.ListArray.from_arrays(pa.array(np.arange(n * c + 1, dtype=np.int32) * h), rows)
    return pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32) * c), chans)


def write_jets(path: Path, images, image_col: str = "X_jets", row_group_size: int = 1, **scalars) -> None:
    """Real layout: snappy, ONE ROW GROUP PER JET. `images`: (N, C, H, W) array or a ready Arrow array."""
    arr = images if isinstance(images, pa.Array) else nested(images)
    n = len(arr)
    cols = {"pt": np.linspace(100, 200, n), "m0": np.linspace(5, 40, n), "y": np.arange(n) % 2.0} | scalars
    table = pa.table({image_col: arr, **{k: pa.array(v) for k, v in cols.items() if v is not None}})
    pq.write_table(table, path, row_group_size=row_group_size, compression="snappy")


def write_egamma(path: Path, X, y) -> None:
    with h5py.File(path, "w") as f:
        if X is not None:
            f["X"] = X
        if y is not None:
            f["y"] = y


def write_jet_mass(p: Path, images: np.ndarray, m: list[float]) -> None:
    """A jet_mass file in the real layout (X_jet, m, pt, ieta, iphi), with these images and masses."""
    n = len(images)
    write_jets(p, images, "X_jet", m=m, pt=np.full(n, 500.0), ieta=np.zeros(n), iphi=np.zeros(n), m0=None, y=None)
