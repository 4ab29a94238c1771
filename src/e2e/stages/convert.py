"""Stage `convert`: raw files in the real formats -> the sparse format (e2e.store.sparse) plus labels and observers.

Each raw file becomes a part in .cache/convert/<dataset>/ (outside the DVC outputs, which `dvc repro`
deletes before a rerun), converted in parallel over files (`runtime.convert_workers` processes, each
streaming one file with bounded memory: memory grows with the workers, never with the files). A killed
conversion resumes with the parts already complete; the parts are then joined in registry order
(electron_photon: photons then electrons; quark_gluon: run0, run1, run2), so the output is
byte-identical whatever the number of workers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import multiprocessing
import os
import shutil
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from e2e.config import ConvertParams, Params, Paths
from e2e.conversion.file import check_config, convert_file
from e2e.errors import E2EError
from e2e.sources import parquet_reader
from e2e.sources.fetch import sha256_file
from e2e.sources.registry import Dataset, get_dataset, select_files
from e2e.store.atomic import atomic_path
from e2e.store.sparse import INDEX_DTYPE, concat_npy
from e2e.tasks import get_task

TRUTH_SUFFIX = ".truth.parquet"  # the synthetic generator's latent-truth sidecar, beside each raw file
FORMAT_VERSION = 1
# a part converted by other code must not be resumed: the converter's own source is in the fingerprint
CODE = (
    "stages/convert.py",
    "conversion/file.py",
    "conversion/preprocess.py",
    "store/sparse.py",
    "sources/batch.py",
    "sources/hdf5_reader.py",
    "sources/parquet_reader.py",
    "sources/readers.py",
    "sources/hdf5_cache.py",
    "sources/registry.py",
)


def part_fingerprint(ds: Dataset, cfg: ConvertParams, sha256: str) -> str:
    h = hashlib.sha256(
        json.dumps(
            [FORMAT_VERSION, ds.name, sha256, {**dataclasses.asdict(cfg), "batch_rows": None}], sort_keys=True
        ).encode()
    )
    for name in CODE:
        h.update((Path(__file__).parents[1] / name).read_bytes())
    return h.hexdigest()


def convert_one(
    ds: Dataset,
    path: Path,
    *,
    cfg: ConvertParams,
    classify: bool,
    part: Path,
    progress: Callable[[int], None] = lambda n: None,
) -> dict[str, Any]:
    """The part of one raw file: reused when complete and made from the same bytes, params and code."""
    sha256 = sha256_file(path) if path.is_file() else ""  # a missing file fails in convert_file, by name
    fingerprint = part_fingerprint(ds, cfg, sha256)
    done = part / "part.json"  # written last: present means complete
    info = json.loads(done.read_text()) if done.is_file() else {}
    resumed = info.get("fingerprint") == fingerprint
    if resumed:
        progress(info["rows"])
    else:
        info = convert_file(ds, path, cfg=cfg, classify=classify, part=part, fingerprint=fingerprint, progress=progress)
    return {**info, "sha256": sha256, "resumed": resumed}


_progress_queue: Queue[int] | None = None  # a worker's, set by _init_worker: rows converted
# a worker holds one file's parquet footer, ~8 kB per row group (~1.2 GB for a real 150,000-jet file), and
# decodes with threads of its own: on a small machine one worker already uses every core
CORES_PER_WORKER = 4


def n_workers(asked: int, n_files: int) -> int:
    """runtime.convert_workers, where 0 means one worker per CORES_PER_WORKER cores."""
    auto = max(1, (os.cpu_count() or 1) // CORES_PER_WORKER)
    return max(1, min(asked or auto, n_files))


def _init_worker(q: Queue[int], workers: int) -> None:
    global _progress_queue
    _progress_queue = q
    parquet_reader.DECODE_THREADS = max(1, min(parquet_reader.DECODE_THREADS, (os.cpu_count() or 1) // workers))


def _convert_in_worker(ds: Dataset, path: Path, *, cfg: ConvertParams, classify: bool, part: Path) -> dict[str, Any]:
    """convert_one in a worker process; its arguments travel pickled (ProcessPoolExecutor.submit)."""
    if _progress_queue is None:
        raise RuntimeError("_convert_in_worker runs in a pool initialised by _init_worker")
    return convert_one(ds, path, cfg=cfg, classify=classify, part=part, progress=_progress_queue.put)


def convert_parts(
    ds: Dataset, files: list[Path], parts: list[Path], *, cfg: ConvertParams, classify: bool, workers: int
) -> list[dict[str, Any]]:
    """Convert every file to its part, `workers` files at a time; a progress bar counts rows."""
    # disable=None: a bar on a terminal only, never carriage-return frames in a piped log
    with tqdm(desc=f"convert {ds.name} ({len(files)} files)", unit="img", disable=None) as bar:
        if workers == 1:
            return [
                convert_one(ds, f, cfg=cfg, classify=classify, part=p, progress=bar.update)
                for f, p in zip(files, parts)
            ]
        ctx = multiprocessing.get_context("spawn")  # no fork of a process that holds threads
        q = ctx.Queue()
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(q, workers)) as pool:
            futures = [
                pool.submit(_convert_in_worker, ds, f, cfg=cfg, classify=classify, part=p) for f, p in zip(files, parts)
            ]
            pending = set(futures)
            while pending:
                _, pending = wait(pending, timeout=0.2, return_when=FIRST_EXCEPTION)
                with contextlib.suppress(Exception):
                    while True:
                        bar.update(q.get_nowait())
                if any(f.done() and f.exception() for f in futures):
                    for f in futures:
                        f.cancel()
                    break
            return [f.result() for f in futures]  # re-raises the first failure


def join_parts(parts: list[Path], out: Path, ds: Dataset, dtype: str) -> dict[str, int]:
    """Concatenate the parts, in order, into values.npy, index.npy, offsets.npy, target.npy, observers."""
    nnz = concat_npy(out / "values.npy", [p / "values.bin" for p in parts], dtype)
    concat_npy(out / "index.npy", [p / "index.bin" for p in parts], INDEX_DTYPE)
    counts = np.concatenate([np.load(p / "counts.npy") for p in parts])
    np.save(out / "offsets.npy", np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))
    for name in ("target", *ds.observer_keys):
        np.save(out / f"{name}.npy", np.concatenate([np.load(p / f"{name}.npy") for p in parts]).astype(np.float32))
    return {"n": int(len(counts)), "nnz": int(nnz)}


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


def same_layout(files: list[Path], infos: list[dict[str, Any]]) -> dict[str, Any]:
    """The channels and columns that every file was read with (files of two samples cannot be joined)."""
    first = {k: infos[0][k] for k in ("channel_names", "columns")}
    for f, info in zip(files, infos):
        if {k: info[k] for k in first} != first:
            raise E2EError(
                f"{f}: holds channels {info['channel_names']} in columns {info['columns']}, but "
                f"{files[0].name} holds {first['channel_names']} in {first['columns']}; convert one "
                "sample at a time (params.yaml datasets.<dataset>.files)"
            )
    return first


def part_dir(paths: Paths, dataset: str) -> Path:
    return paths.work("convert", dataset)


def main(params: Params, dataset: str, paths: Paths) -> None:
    ds = get_dataset(dataset)
    cfg = params.convert.get(dataset, ConvertParams())
    files = [paths.raw(dataset) / f.name for f in select_files(ds, params.files_of(dataset))]
    check_config(ds, cfg)  # early, against the most channels any sample holds; each file is checked on opening
    classify = get_task(dataset).is_classification  # the task of the same name: labels must be 0/1
    parts = [part_dir(paths, dataset) / f.name for f in files]
    workers = n_workers(params.runtime.convert_workers, len(files))
    infos = convert_parts(ds, files, parts, cfg=cfg, classify=classify, workers=workers)
    layout = same_layout(files, infos)
    with atomic_path(paths.converted(dataset), is_dir=True) as tmp:
        sizes = join_parts(parts, tmp, ds, cfg.dtype)
        truth = convert_truth(files, tmp)
        stored = layout["channel_names"]  # every channel the files hold, in their order
        channels = list(cfg.channels) if cfg.channels is not None else list(range(len(stored)))
        meta = {
            "dataset": dataset,
            "format": "sparse",
            "format_version": FORMAT_VERSION,
            **sizes,
            "shape": [sizes["n"], len(channels), *ds.shape[1:]],
            "dtype": cfg.dtype,
            "index_dtype": "int32",
            "nonfinite_zeroed": sum(i["nonfinite_zeroed"] for i in infos),
            "observers": sorted(ds.observer_keys),
            "rows_per_file": [i["rows"] for i in infos],
            "channels": channels,
            "channel_names": [stored[c] for c in channels],
            "source_channels": stored,
            "target": layout["columns"]["target"],
            "source_columns": layout["columns"],
            "truth": truth,
            "preprocessing": {
                "scale": cfg.scale,
                "clip": cfg.clip,
                "zero_below": cfg.zero_below,
                "nonfinite": cfg.nonfinite,
            },
            "sources": [{"file": f.name, "sha256": i["sha256"]} for f, i in zip(files, infos)],
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    shutil.rmtree(part_dir(paths, dataset), ignore_errors=True)  # kept until now so a failure never costs them
    resumed = sum(i["resumed"] for i in infos)
    print(
        f"converted {dataset}: {meta['n']} events, {meta['nnz']} non-zero values"
        + (f" ({resumed} of {len(files)} files resumed from {part_dir(paths, dataset)})" if resumed else "")
    )
