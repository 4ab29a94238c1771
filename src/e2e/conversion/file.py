"""Convert ONE raw file into a part of the sparse format (e2e.store.sparse): validated, preprocessed
(e2e.conversion.preprocess), cast to the storage dtype, and reduced to its non-zero pixels as it streams, so
memory stays bounded whatever the file's size. The stage `convert` runs this per file (in parallel) and joins the parts.
"""

from __future__ import annotations

import contextlib
import functools
import json
import queue
import threading
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from e2e.config import ConvertParams
from e2e.conversion.preprocess import preprocess, to_storage
from e2e.errors import E2EError
from e2e.sources.batch import Batch
from e2e.sources.readers import Reader, open_reader
from e2e.sources.registry import Dataset
from e2e.store.atomic import atomic_path
from e2e.store.sparse import SparseBatch

T = TypeVar("T")
# one converted batch: (its sparse entries as stored, target, observers, pixels zeroed as non-finite)
ConvertedBatch = tuple[SparseBatch, np.ndarray, dict[str, np.ndarray], int]


def check_labels(target: np.ndarray, where: str) -> None:
    bad = ~np.isin(target, (0.0, 1.0))
    if bad.any():
        raise E2EError(f"{where}: class labels must be 0 or 1, found {np.unique(target[bad])[:5].tolist()}")


def check_target(target: np.ndarray, where: str, classify: bool) -> None:
    """A NaN regression target would turn the whole training loss into NaN."""
    if classify:
        check_labels(target, where)
    n_bad = int((~np.isfinite(target)).sum())
    if n_bad:
        raise E2EError(f"{where}: target has {n_bad} NaN or infinite values")


def check_config(ds: Dataset, cfg: ConvertParams) -> int:
    """Validate params against the dataset; return the number of output channels."""
    n_in = ds.shape[0]
    channels = list(cfg.channels) if cfg.channels is not None else list(range(n_in))
    if not channels or min(channels) < 0 or max(channels) >= n_in:
        raise E2EError(
            f"params.yaml convert.{ds.name}.channels: indices must lie in 0..{n_in - 1} (the {n_in} "
            f"channels {', '.join(ds.channel_names)}), found {channels}"
        )
    if cfg.scale is not None and len(cfg.scale) != len(channels):
        raise E2EError(f"params.yaml convert.{ds.name}.scale: expected {len(channels)} values, found {len(cfg.scale)}")
    if cfg.nonfinite not in ("error", "zero"):
        raise E2EError(f"params.yaml convert.{ds.name}.nonfinite: expected error or zero, found {cfg.nonfinite!r}")
    return len(channels)


_END = object()


def prefetch(items: Iterator[T], depth: int = 2) -> Generator[T, None, None]:
    """Run `items` ahead in a thread: reading, decoding and numpy casts release the GIL, so the next
    batches are read and converted while this one is written. The producer's errors re-raise here."""
    q: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                q.put((item, None))
                if stop.is_set():
                    return
            q.put((_END, None))
        except BaseException as exc:  # noqa: BLE001  handed over to the consumer
            q.put((_END, exc))

    thread = threading.Thread(target=produce, name="e2e-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, exc = q.get()
            if exc is not None:
                raise exc
            if item is _END:
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # a producer blocked on a full queue needs one more get
            with contextlib.suppress(queue.Empty):
                q.get(timeout=0.05)
        if hasattr(items, "close"):  # now, not at garbage collection: a reader's threads stop here
            items.close()


def convert_batch(
    batch: Batch, start: int, *, cfg: ConvertParams, path: Path, classify: bool, dataset: str
) -> ConvertedBatch:
    """Checks, preprocessing, the cast to the storage dtype and sparsification of the batch whose first row
    in `path` is `start`. Runs in the reader's decoding threads, so the dense batch never leaves them."""
    if batch.target is None:  # open_reader(require_target=True) refuses a file without one
        raise E2EError(f"{path}: no target")
    where = f"{path} rows {start}-{start + len(batch.target)}"
    check_target(batch.target, where, classify)
    entries, zeroed = preprocess(batch.images, cfg, where)
    return to_storage(entries, cfg.dtype, where, dataset), batch.target, batch.observers, zeroed


def convert_file(
    ds: Dataset,
    path: Path,
    *,
    cfg: ConvertParams,
    classify: bool,
    part: Path,
    fingerprint: str,
    progress: Callable[[int], None] = lambda n: None,
) -> dict[str, Any]:
    """Write `part`/ {values.bin, index.bin (raw, headerless), counts.npy, target.npy, <observer>.npy,
    part.json}; the directory appears only complete, with part.json last. part.json records the channels and
    the columns the file was read from."""
    job = functools.partial(convert_batch, cfg=cfg, path=path, classify=classify, dataset=ds.name)
    with contextlib.closing(open_reader(ds, path)) as reader:
        try:
            check_config(reader.dataset, cfg)  # a sample may hold fewer channels than the registry's default
        except E2EError as exc:
            raise E2EError(f"{path}: {exc}") from None
        about = {
            "file": path.name,
            "fingerprint": fingerprint,
            "channel_names": list(reader.dataset.channel_names),
            "columns": reader.source_columns,
        }
        return _write_part(reader, reader.batches(cfg.batch_rows, job), part, about, progress)


def _write_part(
    reader: Reader,
    converted: Iterator[ConvertedBatch],
    part: Path,
    about: dict[str, Any],
    progress: Callable[[int], None],
) -> dict[str, Any]:
    counts: list[np.ndarray] = []
    target: list[np.ndarray] = []
    observers: dict[str, list[np.ndarray]] = {k: [] for k in reader.dataset.observer_keys}
    zeroed = 0
    with (
        atomic_path(part, is_dir=True) as tmp,
        open(tmp / "values.bin", "wb") as values,
        open(tmp / "index.bin", "wb") as index,
        contextlib.closing(prefetch(converted)) as batches,
    ):
        for sparse, batch_target, batch_observers, batch_zeroed in batches:
            values.write(np.ascontiguousarray(sparse.values).data)
            index.write(np.ascontiguousarray(sparse.index).data)
            counts.append(sparse.counts)
            target.append(batch_target)
            for k, v in batch_observers.items():
                observers[k].append(v)
            zeroed += batch_zeroed
            progress(len(batch_target))
        rows = sum(len(t) for t in target)
        if rows != reader.n_rows:
            raise E2EError(f"{reader.path}: metadata declares {reader.n_rows} rows, found {rows}")
        np.save(tmp / "counts.npy", np.concatenate(counts))
        np.save(tmp / "target.npy", np.concatenate(target))
        for k, chunks in observers.items():
            np.save(tmp / f"{k}.npy", np.concatenate(chunks))
        info = about | {"rows": rows, "nonfinite_zeroed": zeroed}
        (tmp / "part.json").write_text(json.dumps(info))
    return info
