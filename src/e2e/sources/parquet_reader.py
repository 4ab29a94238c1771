"""The jet images' parquet layout streamed as channels-first batches, its row groups decoded in threads,
validating as it goes: every failure is one E2EError naming the file, what was expected and what was found."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from e2e.errors import E2EError
from e2e.sources.batch import Batch, Transform, find, one_line, pick
from e2e.sources.registry import Dataset

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

# threads decoding parquet row groups; past ~8 the write of the output bounds the rate
DECODE_THREADS = min(8, os.cpu_count() or 1)
# rows per span decoded by one thread, and so at most 2 * 8 * 16 rows in flight: with 64-row spans
# 8 threads peaked at 1 GB RSS, with 16 at 430 MB, equally fast (bench/convert.py)
SPAN_ROWS = 16


def _flatten_checked(
    column: pa.Array | pa.ChunkedArray, dims: tuple[int, ...], path: Path, col: str
) -> list[np.ndarray]:
    """Arrow nested lists -> flat values, one zero-copy view per chunk, checking every level has exactly
    the expected length. Chunks are never combined: that would copy the float64 batch once more."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = column
    for depth, size in enumerate(dims):
        if not (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type)):
            raise E2EError(f"{path}: {col} expected {len(dims)} nested list levels, found type {column.type}")
        if arr.null_count:
            raise E2EError(f"{path}: {col} has null entries at nesting level {depth}")
        lo, hi = pc.min_max(pc.list_value_length(arr)).values()
        if lo.as_py() != size or hi.as_py() != size:
            raise E2EError(
                f"{path}: {col} is ragged or misshapen at level {depth}: "
                f"expected length {size}, found {lo.as_py()}..{hi.as_py()}"
            )
        arr = pc.list_flatten(arr)
    if not (pa.types.is_floating(arr.type) or pa.types.is_integer(arr.type)):
        raise E2EError(f"{path}: {col} values must be numeric, found {arr.type}")
    if arr.null_count:
        raise E2EError(f"{path}: {col} has null pixel values")
    chunks = arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]
    return [chunk.to_numpy(zero_copy_only=False) for chunk in chunks]


def _row_group_spans(metadata: pq.FileMetaData, batch_rows: int) -> list[tuple[int, list[int]]] | None:
    """(first row, row groups) of consecutive row groups in spans of about batch_rows rows; None when one
    row group alone holds more, so that iter_batches streams inside it and memory stays bounded."""
    spans: list[tuple[int, list[int]]] = []
    span: list[int] = []
    first, rows = 0, 0
    for i in range(metadata.num_row_groups):
        n = metadata.row_group(i).num_rows
        if n > batch_rows:
            return None
        span.append(i)
        rows += n
        if rows >= batch_rows:
            spans.append((first, span))
            span, first, rows = [], first + rows, 0
    return spans + [(first, span)] if span else spans


def _regroup(batches: Iterator[Batch], batch_rows: int) -> Iterator[Batch]:
    """Consecutive batches joined into batches of at most batch_rows rows."""
    parts: list[Batch] = []
    for batch in batches:
        if parts and sum(len(p.images) for p in parts) + len(batch.images) > batch_rows:
            yield _concat(parts)
            parts = []
        parts.append(batch)
    if parts:
        yield _concat(parts)


def _concat(parts: list[Batch]) -> Batch:
    if len(parts) == 1:
        return parts[0]
    target = None if parts[0].target is None else np.concatenate([p.target for p in parts])
    return Batch(
        np.concatenate([p.images for p in parts]),
        target,
        {k: np.concatenate([p.observers[k] for p in parts]) for k in parts[0].observers},
    )


class ParquetReader:
    """Jet images: nested list<list<list<double>>> channels-first, one row group per jet in the real files,
    so every row group is read (reading one row group as "a chunk" reads one jet)."""

    def __init__(self, dataset: Dataset, path: Path, *, require_target: bool = True) -> None:
        import pyarrow.parquet as pq

        self.path, self.dataset = path, dataset
        try:
            # pre_buffer=False: with pre-buffering, iter_batches keeps every row group's compressed
            # chunks cached until the file closes; with one row group per jet memory grew by the whole
            # file size (+330 MB on a 40,000-jet file, measured with bench/convert.py)
            self.file = pq.ParquetFile(path, pre_buffer=False)
        except Exception as exc:  # pyarrow raises several types for bad footers/magic bytes
            raise E2EError(f"{path}: not a readable parquet file ({one_line(exc)})") from None
        names = self.file.schema_arrow.names
        self.image_col = pick(names, dataset.image_keys, path, "image")
        self.target_col = (
            pick(names, dataset.target_keys, path, "target") if require_target else find(names, dataset.target_keys)
        )
        self.has_target = self.target_col is not None
        self.observer_cols = {out: pick(names, acc, path, out) for out, acc in dataset.observer_keys.items()}
        present = [c for c in (self.target_col, *self.observer_cols.values()) if c is not None]
        for col in present:
            t = self.file.schema_arrow.field(col).type
            if not (str(t).startswith(("double", "float", "int", "uint", "halffloat", "bool"))):
                raise E2EError(f"{path}: column {col} must be numeric, found {t}")
        self.n_rows = self.file.metadata.num_rows
        self.columns = [self.image_col, *present]
        self.source_columns = {
            "image": self.image_col,
            **({"target": self.target_col} if self.has_target else {}),
            **self.observer_cols,
        }
        self.dataset = self._as_file_holds(dataset)

    def _as_file_holds(self, dataset: Dataset) -> Dataset:
        """The dataset with as many channels as this file's first jet has, where samples differ in that (the
        jet-mass files hold 8 or 4); every other jet is then checked against it as it is read."""
        import pyarrow as pa

        field = self.file.schema_arrow.field(self.image_col).type
        if not dataset.channel_variants or not self.n_rows or not pa.types.is_list(field):
            return dataset  # nothing to choose, or a layout that the reading reports in its own words
        try:
            first = next(self.file.iter_batches(batch_size=1, columns=[self.image_col], use_threads=False))
        except Exception as exc:
            raise E2EError(f"{self.path}: unreadable data ({one_line(exc)})") from None
        count = first.column(0).value_lengths()[0].as_py()
        found = dataset.with_channels(count) if count is not None else dataset
        if found is None:
            samples = (dataset.channel_names, *dataset.channel_variants)
            expected = " or ".join(f"{len(v)} ({', '.join(v)})" for v in samples)
            raise E2EError(f"{self.path}: {self.image_col} holds {count} channels; expected {expected}")
        return found

    def batches(self, batch_rows: int, transform: Transform | None = None) -> Iterator:
        """Batches of at most batch_rows rows in file order; with a transform, transform(batch, index of
        its first row in the file) of smaller batches, computed in the decoding threads so that the
        caller's per-batch work scales with the cores too."""
        spans = _row_group_spans(self.file.metadata, min(batch_rows, SPAN_ROWS))
        if spans is None or DECODE_THREADS == 1:
            source = self._stream(batch_rows, transform or (lambda batch, start: batch))
        elif transform is None:  # callers that run a model on each batch want the size they asked for
            source = _regroup(self._parallel(spans, lambda batch, start: batch), batch_rows)
        else:
            source = self._parallel(spans, transform)
        try:
            yield from source
        except E2EError:
            raise
        except Exception as exc:
            raise E2EError(f"{self.path}: unreadable data ({one_line(exc)})") from None

    def _stream(self, batch_rows: int, transform: Transform) -> Iterator:
        start = 0
        # use_threads=False: Arrow's pool only parallelises across columns, and one column holds the work
        for rb in self.file.iter_batches(batch_size=batch_rows, columns=self.columns, use_threads=False):
            yield transform(self._decode(rb), start)
            start += rb.num_rows

    def _parallel(self, spans: list[tuple[int, list[int]]], transform: Transform) -> Iterator:
        """Decode spans of row groups in threads, in file order: the decode is most of the conversion and
        Arrow releases the GIL (pq.read_table does the same, holding the whole file). At most
        2 * DECODE_THREADS spans are in memory at once."""
        pool = ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="e2e-decode")
        pending: deque[Future[Any]] = deque()
        try:
            for start, span in spans:
                pending.append(pool.submit(self._transform_span, transform, span, start))
                if len(pending) >= 2 * DECODE_THREADS:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _transform_span(self, transform: Transform, row_groups: list[int], start: int) -> Any:
        return transform(self._read_span(row_groups), start)

    def _read_span(self, row_groups: list[int]) -> Batch:
        import pyarrow.parquet as pq

        # a handle per span, sharing the parsed footer: one ParquetFile is not meant for concurrent reads
        part = pq.ParquetFile(self.path, metadata=self.file.metadata, pre_buffer=False)
        try:
            return self._decode(part.read_row_groups(row_groups, columns=self.columns, use_threads=False))
        finally:
            part.close()

    def _decode(self, rb: pa.RecordBatch | pa.Table) -> Batch:
        """A record batch or table (one chunk per row group) -> float32 channels-first images."""
        b = rb.num_rows
        images = np.empty((b, *self.dataset.shape), np.float32)
        flat, at = images.reshape(-1), 0
        for values in _flatten_checked(rb.column(self.image_col), self.dataset.shape, self.path, self.image_col):
            flat[at : at + len(values)] = values  # the float64 -> float32 cast happens in this one copy
            at += len(values)
        # the file is channels-first already, so filling (b, C, H, W) in order keeps every pixel where it was
        target = (
            None
            if self.target_col is None
            else rb.column(self.target_col).to_numpy(zero_copy_only=False).astype(np.float32)
        )
        observers = {
            out: rb.column(col).to_numpy(zero_copy_only=False).astype(np.float32)
            for out, col in self.observer_cols.items()
        }
        return Batch(images, target, observers)

    def close(self) -> None:
        self.file.close()
