"""Shared plumbing of the generators: chunk plans, per-chunk random streams, CPU-independent math,
and the parquet writers.

The jet files must look exactly like the real ones: nested list<list<list<double>>> images,
channels first, snappy, and ONE ROW GROUP PER JET (readers that treat a row group as a batch
must see the same 1-jet row groups as on the real files).

Same seed, same bytes on EVERY x86-64 machine: NumPy picks its float64 exp, log, power, sinh, cosh,
arcsinh, arcsin, arctan2, log1p ... kernels by the CPU's SIMD level at run time, and its AVX-512
kernels round differently from the AVX2/SSE ones in the last bit, which a generator amplifies into
different images. The generators therefore take those functions from here (the C library's scalar
code through scipy.special and math, whatever the CPU); +, -, *, /, sqrt, hypot, floor, sin, cos
and the random Generator's own samplers are exact or scalar and safe to use from NumPy.
"""

from __future__ import annotations

import contextlib
import math
import queue
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.special import inv_boxcox, xlogy

from e2e.errors import E2EError
from e2e.store.atomic import atomic_path


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
    # stable: equal remainders (equal weights) go to the first files, whatever sort the CPU runs
    counts[np.argsort(-(n * w - counts), kind="stable")[: n - counts.sum()]] += 1
    return counts.tolist()


def share_jets(n: int, names: list[str], weights: list[float], param: str) -> list[int]:
    """split_counts for jet files, refusing a split that leaves a file without jets."""
    counts = split_counts(n, weights)
    empty = [name for name, count in zip(names, counts) if count == 0]
    if empty:
        raise E2EError(
            f"params.yaml {param} = {n} leaves no jets for {empty}: raise it to at least "
            f"{len(names)} or select fewer files"
        )
    return counts


def exp(x):
    return inv_boxcox(np.asarray(x, dtype=float), 0.0)  # exp(x) by the C library, not NumPy's SIMD kernel


def log(x):
    return xlogy(1.0, np.asarray(x, dtype=float))  # 1 * log(x) by the C library


def power(x, a):
    """x ** a for x > 0 (NumPy's float ** float is a SIMD kernel too)."""
    return exp(a * log(x))


def cosh(x):
    e = exp(x)
    return 0.5 * (e + 1.0 / e)


def sinh(x):
    e = exp(x)
    return 0.5 * (e - 1.0 / e)


def arcsinh(x):
    a = np.abs(x)
    return np.copysign(log(a + np.sqrt(a * a + 1.0)), x)


def arcsin(x):
    x = np.asarray(x, dtype=float)
    return np.array([math.asin(v) for v in x.ravel().tolist()], dtype=float).reshape(x.shape)


def arctan2(y, x):
    y, x = np.broadcast_arrays(np.asarray(y, dtype=float), np.asarray(x, dtype=float))
    return np.array(list(map(math.atan2, y.ravel().tolist(), x.ravel().tolist())), dtype=float).reshape(x.shape)


def nested_images(images: np.ndarray) -> pa.ListArray:
    """(N, C, H, W) -> list<list<list<double>>> without Python lists: flat values plus offsets.

    The values are rounded to float32 first: the real images were filled as float32 (MLAnalyzer's
    std::vector<float> branches, like the float32 e/gamma crops) and widened to double on the way to
    parquet, so their low mantissa bytes are zero, which snappy compresses (~10 % of a file's size).
    """
    n, c, h, w = images.shape
    values = pa.array(np.ascontiguousarray(images, dtype=np.float32).astype(np.float64).reshape(-1))
    rows = pa.ListArray.from_arrays(pa.array(np.arange(0, n * c * h + 1, dtype=np.int32) * w), values)
    chans = pa.ListArray.from_arrays(pa.array(np.arange(0, n * c + 1, dtype=np.int32) * h), rows)
    return pa.ListArray.from_arrays(pa.array(np.arange(0, n + 1, dtype=np.int32) * c), chans)


def jet_schema(image_column: str, scalar_columns: list[str]) -> pa.Schema:
    image_type = pa.list_(pa.list_(pa.list_(pa.float64())))
    fields = [pa.field(image_column, image_type)] + [pa.field(k, pa.float64()) for k in scalar_columns]
    return pa.schema(fields)


class JetFileWriter:
    """Append chunks of jets to a parquet file with the real layout, one row group per jet.

    Encoding a chunk (levels, dictionary, statistics, snappy: ~3 ms per 8-channel jet) runs in a
    background thread, while the caller generates the next chunk: Arrow releases the GIL, so the
    two overlap on two cores. At most one chunk waits in the queue, so memory stays bounded; the
    chunks are written in the order given, so the file is the same as a sequential write.
    """

    def __init__(self, writer: pq.ParquetWriter, schema: pa.Schema):
        self._writer, self._schema = writer, schema
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="jet-file-writer", daemon=True)
        self._thread.start()

    def write(self, images: np.ndarray, scalars: dict[str, np.ndarray]) -> None:
        """Queue a chunk; the caller must not modify `images` or `scalars` afterwards."""
        self._raise()
        self._queue.put((images, scalars))

    def close(self) -> None:
        """Wait for every queued chunk to be written; re-raise the writer thread's error."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is None:  # after a failure, keep draining so that write() never blocks
                try:
                    self._write(*item)
                except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                    self._error = exc

    def _write(self, images: np.ndarray, scalars: dict[str, np.ndarray]) -> None:
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
            jets = JetFileWriter(writer, schema)
            try:
                yield jets
            finally:
                jets.close()
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
