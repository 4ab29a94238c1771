"""Shared plumbing of the generators: chunk plans, per-chunk random streams, and the parquet writers.

The jet files must look exactly like the real ones: nested list<list<list<double>>> images,
channels first, snappy, and ONE ROW GROUP PER JET (readers that treat a row group as a batch
must see the same 1-jet row groups as on the real files).
"""
from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from e2e.atomic import atomic_path


def chunk_sizes(n: int, chunk: int) -> list[int]:
    """Split n events into chunks of at most `chunk`, so memory is bounded whatever n is."""
    return [min(chunk, n - start) for start in range(0, n, chunk)]


def chunk_rng(seed: int, stream: str, index: int) -> np.random.Generator:
    """An independent, reproducible stream per (seed, file, chunk): same seed -> same bytes."""
    return np.random.default_rng([int(seed), zlib.crc32(stream.encode()), int(index)])


def split_counts(n: int, weights: list[float]) -> list[int]:
    """Divide n events among files proportionally to `weights`; the counts sum to n exactly."""
    w = np.asarray(weights, dtype=float) / np.sum(weights)
    counts = np.floor(n * w).astype(int)
    counts[np.argsort(-(n * w - counts))[: n - counts.sum()]] += 1
    return counts.tolist()


def nested_images(images: np.ndarray) -> pa.ListArray:
    """(N, C, H, W) -> list<list<list<double>>> without Python lists: flat values plus offsets."""
    n, c, h, w = images.shape
    values = pa.array(np.ascontiguousarray(images, dtype=np.float64).reshape(-1))
    rows = pa.ListArray.from_arrays(pa.array(np.arange(0, n * c * h + 1, dtype=np.int32) * w), values)
    chans = pa.ListArray.from_arrays(pa.array(np.arange(0, n * c + 1, dtype=np.int32) * h), rows)
    return pa.ListArray.from_arrays(pa.array(np.arange(0, n + 1, dtype=np.int32) * c), chans)


def jet_schema(image_column: str, scalar_columns: list[str]) -> pa.Schema:
    image_type = pa.list_(pa.list_(pa.list_(pa.float64())))
    fields = [pa.field(image_column, image_type)] + [pa.field(k, pa.float64()) for k in scalar_columns]
    return pa.schema(fields)


class JetFileWriter:
    """Append chunks of jets to a parquet file with the real layout, one row group per jet."""

    def __init__(self, writer: pq.ParquetWriter, schema: pa.Schema):
        self._writer, self._schema = writer, schema

    def write(self, images: np.ndarray, scalars: dict[str, np.ndarray]) -> None:
        columns = [nested_images(images)]
        columns += [pa.array(np.asarray(scalars[name], dtype=np.float64)) for name in self._schema.names[1:]]
        table = pa.Table.from_arrays(columns, schema=self._schema)
        self._writer.write_table(table, row_group_size=1)


@contextlib.contextmanager
def jet_file(path: Path, image_column: str, scalar_columns: list[str]) -> Iterator[JetFileWriter]:
    """Open `path` for streaming jets; it appears under its final name only once complete."""
    schema = jet_schema(image_column, scalar_columns)
    with atomic_path(path) as tmp:
        writer = pq.ParquetWriter(tmp, schema, compression="snappy")
        try:
            yield JetFileWriter(writer, schema)
        finally:
            writer.close()


class TruthCollector:
    """Latent truth of every event, kept beside (never inside) the real-format file."""

    def __init__(self) -> None:
        self._parts: dict[str, list[np.ndarray]] = {}

    def add(self, latents: dict[str, np.ndarray]) -> None:
        for key, values in latents.items():
            self._parts.setdefault(key, []).append(np.asarray(values, dtype=np.float64))

    def write(self, raw_path: Path) -> Path:
        path = truth_path(raw_path)
        table = pa.table({k: np.concatenate(v) for k, v in self._parts.items()})
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)
        return path


def truth_path(raw_path: Path) -> Path:
    return raw_path.with_name(raw_path.name + ".truth.parquet")
