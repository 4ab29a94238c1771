"""Stage `convert`: raw files in the real formats -> (N, C, H, W) .npy memmaps plus labels and observers.

Streams batch by batch, so memory stays bounded whatever the input size. Files are concatenated in
registry order (electron_photon: photons then electrons; quark_gluon: run0, run1, run2).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .atomic import atomic_path
from .config import ConvertParams, Params, Paths
from .errors import E2EError
from .npy import NpyAppender
from .sources.readers import open_reader
from .sources.registry import Dataset, get_dataset

TRUTH_SUFFIX = ".truth.parquet"  # the synthetic generator's latent-truth sidecar, beside each raw file


def sha256_of(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def preprocess(images: np.ndarray, cfg: ConvertParams, where: str) -> tuple[np.ndarray, int]:
    """Channel selection, non-finite policy, scale, zero suppression, clipping. Returns (images, n_zeroed)."""
    if cfg.channels is not None:
        images = images[:, list(cfg.channels)]
    bad = ~np.isfinite(images)
    n_bad = int(bad.sum())
    if n_bad:
        if cfg.nonfinite != "zero":
            raise E2EError(f"{where}: {n_bad} NaN or infinite pixels (set convert.<dataset>.nonfinite: zero to zero them)")
        images = np.where(bad, 0.0, images)
    if cfg.scale is not None:
        images = images * np.asarray(cfg.scale, dtype=np.float32).reshape(1, -1, 1, 1)
    if cfg.zero_below:
        images = np.where(np.abs(images) < cfg.zero_below, 0.0, images)
    if cfg.clip is not None:
        images = np.clip(images, -cfg.clip, cfg.clip)
    return images, n_bad


def check_labels(target: np.ndarray, where: str) -> None:
    bad = ~np.isin(target, (0.0, 1.0))
    if bad.any():
        raise E2EError(f"{where}: class labels must be 0 or 1, found {np.unique(target[bad])[:5].tolist()}")


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


def convert_files(ds: Dataset, files: list[Path], cfg: ConvertParams, out: Path, classify: bool) -> dict:
    n_channels = check_config(ds, cfg)
    readers = [open_reader(ds, f) for f in files]  # opens and validates every header before writing
    n = sum(r.n_rows for r in readers)
    shape = (n, n_channels, *ds.shape[1:])
    images = NpyAppender(out / "images.npy", shape, cfg.dtype)
    target = np.empty(n, np.float32)
    observers = {k: np.empty(n, np.float32) for k in ds.observer_keys}
    row, n_zeroed = 0, 0
    with tqdm(total=n, desc=f"convert {ds.name}", unit="img") as bar:
        for path, reader in zip(files, readers):
            for batch in reader.batches(cfg.batch_rows):
                b, where = len(batch.target), f"{path} rows {row}-{row + len(batch.target)}"
                x, zeroed = preprocess(batch.images, cfg, where)
                stored = x.astype(cfg.dtype)
                if not np.isfinite(stored).all():
                    raise E2EError(f"{where}: values overflow {cfg.dtype}; lower convert.{ds.name}.scale or use float32")
                if classify:
                    check_labels(batch.target, where)
                images.append(stored)
                target[row:row + b] = batch.target
                for k, v in batch.observers.items():
                    observers[k][row:row + b] = v
                row, n_zeroed = row + b, n_zeroed + zeroed
                bar.update(b)
            reader.close()
    images.close()
    np.save(out / "target.npy", target)
    for k, v in observers.items():
        np.save(out / f"{k}.npy", v)
    return {"n": n, "shape": list(shape), "nonfinite_zeroed": n_zeroed, "observers": sorted(observers),
            "rows_per_file": [r.n_rows for r in readers]}


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
    from .tasks import TASKS  # the task of the same name says whether labels must be 0/1

    ds = get_dataset(dataset)
    cfg = params.convert.get(dataset, ConvertParams())
    files = [paths.raw(dataset) / f.name for f in ds.files]
    classify = TASKS[dataset].kind == "classification"
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
            "sources": [{"file": f.name, "sha256": sha256_of(f)} for f in files],
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
