"""Stage `convert`: raw files in the real formats -> (N, C, H, W) .npy memmaps plus labels and observers.

Streams batch by batch, so memory stays bounded whatever the input size. Files are concatenated in
registry order (electron_photon: photons then electrons; quark_gluon: run0, run1, run2).
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import queue
import threading
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm import tqdm

from .atomic import atomic_path
from .config import ConvertParams, Params, Paths
from .errors import E2EError
from .npy import NpyAppender
from .sources.fetch import sha256_file
from .sources.readers import Batch, open_reader
from .sources.registry import Dataset, get_dataset
from .tasks import get_task

TRUTH_SUFFIX = ".truth.parquet"  # the synthetic generator's latent-truth sidecar, beside each raw file


def preprocess(images: np.ndarray, cfg: ConvertParams, where: str) -> tuple[np.ndarray, int]:
    """Channel selection, non-finite policy, scale, zero suppression, clipping. Returns (images, n_zeroed).

    Each step is skipped when it would not change a pixel: every pass over a batch costs as much as a
    good part of the parquet decode.
    """
    if cfg.channels is not None and list(cfg.channels) != list(range(images.shape[1])):
        images = images[:, list(cfg.channels)]
    n_bad = 0
    # min and max propagate NaN and see +-inf: a clean batch needs no boolean mask
    if images.size and not np.isfinite([images.min(), images.max()]).all():
        bad = ~np.isfinite(images)
        n_bad = int(bad.sum())
        if cfg.nonfinite != "zero":
            raise E2EError(f"{where}: {n_bad} NaN or infinite pixels "
                           "(set convert.<dataset>.nonfinite: zero to zero them)")
        images = np.where(bad, 0.0, images)
    if cfg.scale is not None and any(s != 1 for s in cfg.scale):
        images = images * np.asarray(cfg.scale, dtype=np.float32).reshape(1, -1, 1, 1)
    if cfg.zero_below:
        images = np.where(np.abs(images) < cfg.zero_below, 0.0, images)
    if cfg.clip is not None:
        images = np.clip(images, -cfg.clip, cfg.clip)
    return images, n_bad


def to_storage(images: np.ndarray, dtype: str, where: str, dataset: str) -> np.ndarray:
    """Cast to the storage dtype, refusing values it cannot hold (float16 ends at 65504)."""
    with np.errstate(over="ignore"):
        stored = images.astype(dtype, copy=False)
    if np.dtype(dtype).kind != "f" or not images.size:
        return stored
    # only values beyond the dtype's range can overflow: testing the float32 extremes spares a full
    # isfinite pass over float16, which numpy evaluates slowly
    extreme = max(-float(images.min()), float(images.max()))
    if extreme > float(np.finfo(dtype).max) and not np.isfinite(stored).all():
        raise E2EError(f"{where}: values overflow {dtype}; lower convert.{dataset}.scale or use float32")
    return stored


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
        raise E2EError(f"params.yaml convert.{ds.name}.channels: indices must lie in 0..{n_in - 1}, found {channels}")
    if cfg.scale is not None and len(cfg.scale) != len(channels):
        raise E2EError(f"params.yaml convert.{ds.name}.scale: expected {len(channels)} values, found {len(cfg.scale)}")
    if cfg.nonfinite not in ("error", "zero"):
        raise E2EError(f"params.yaml convert.{ds.name}.nonfinite: expected error or zero, found {cfg.nonfinite!r}")
    return len(channels)


_END = object()


def prefetch(items: Iterator, depth: int = 2) -> Iterator:
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


def count_rows(ds: Dataset, path: Path) -> int:
    """Open and validate one file's header, then close it: the footer of a file with one row group per
    jet takes ~4 kB of memory per jet (~240 MB for a real 55k-jet file), so only one is held at a time."""
    with contextlib.closing(open_reader(ds, path)) as reader:
        return reader.n_rows


def convert_batch(batch: Batch, start: int, *, cfg: ConvertParams, path: Path, classify: bool,
                  dataset: str) -> tuple[Batch, int]:
    """Checks, preprocessing and the cast to the storage dtype of the batch whose first row in `path` is
    `start`. Runs in the reader's decoding threads; returns the batch holding the stored images."""
    where = f"{path} rows {start}-{start + len(batch.target)}"
    check_target(batch.target, where, classify)
    images, zeroed = preprocess(batch.images, cfg, where)
    return dataclasses.replace(batch, images=to_storage(images, cfg.dtype, where, dataset)), zeroed


def convert_files(ds: Dataset, files: list[Path], cfg: ConvertParams, out: Path, classify: bool) -> dict:
    n_channels = check_config(ds, cfg)
    rows_per_file = [count_rows(ds, f) for f in files]  # every header is validated before anything is written
    n = sum(rows_per_file)
    shape = (n, n_channels, *ds.shape[1:])
    target = np.empty(n, np.float32)
    observers = {k: np.empty(n, np.float32) for k in ds.observer_keys}
    row, n_zeroed = 0, 0
    with NpyAppender(out / "images.npy", shape, cfg.dtype) as images, \
            tqdm(total=n, desc=f"convert {ds.name}", unit="img") as bar:
        for path, expected in zip(files, rows_per_file):
            job = functools.partial(convert_batch, cfg=cfg, path=path, classify=classify, dataset=ds.name)
            first = row
            with contextlib.closing(open_reader(ds, path)) as reader, \
                    contextlib.closing(prefetch(reader.batches(cfg.batch_rows, job))) as converted:
                for batch, zeroed in converted:
                    b = len(batch.target)
                    if row - first + b > expected:
                        raise E2EError(f"{path}: holds more rows than the {expected} its metadata declares")
                    images.append(batch.images)
                    target[row:row + b] = batch.target
                    for k, v in batch.observers.items():
                        observers[k][row:row + b] = v
                    row, n_zeroed = row + b, n_zeroed + zeroed
                    bar.update(b)
            if row - first != expected:
                raise E2EError(f"{path}: metadata declares {expected} rows, found {row - first}")
    np.save(out / "target.npy", target)
    for k, v in observers.items():
        np.save(out / f"{k}.npy", v)
    return {"n": n, "shape": list(shape), "nonfinite_zeroed": n_zeroed, "observers": sorted(observers),
            "rows_per_file": rows_per_file}


def convert_truth(files: list[Path], out: Path) -> list[str]:
    """Carry the generator's latent-truth sidecars through as truth_<column>.npy, when every file has one."""
    import pyarrow.parquet as pq

    sidecars = [f.with_name(f.name + TRUTH_SUFFIX) for f in files]
    present = [s.is_file() for s in sidecars]
    if not any(present):
        return []
    if not all(present):
        missing = [str(s) for s, p in zip(sidecars, present) if not p]
        raise E2EError(f"{missing[0]}: truth sidecar missing while other files of the dataset have one")
    tables = [pq.read_table(s) for s in sidecars]
    columns = tables[0].column_names
    for k in columns:
        np.save(out / f"truth_{k}.npy", np.concatenate([t.column(k).to_numpy() for t in tables]).astype(np.float32))
    return columns


def main(params: Params, dataset: str, paths: Paths) -> None:
    ds = get_dataset(dataset)
    cfg = params.convert.get(dataset, ConvertParams())
    files = [paths.raw(dataset) / f.name for f in ds.files]
    classify = get_task(dataset).is_classification  # the task of the same name: labels must be 0/1
    with atomic_path(paths.converted(dataset), is_dir=True) as tmp:
        info = convert_files(ds, files, cfg, tmp, classify)
        truth = convert_truth(files, tmp)
        channels = list(cfg.channels) if cfg.channels is not None else list(range(ds.shape[0]))
        meta = {
            "dataset": dataset, **info, "dtype": cfg.dtype,
            "channels": channels, "channel_names": [ds.channel_names[c] for c in channels],
            "target": ds.target_keys[0], "truth": truth,
            "preprocessing": {"scale": cfg.scale, "clip": cfg.clip, "zero_below": cfg.zero_below,
                              "nonfinite": cfg.nonfinite},
            "sources": [{"file": f.name, "sha256": sha256_file(f)} for f in files],
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
