"""What conversion does to every image, and e2e predict to every raw image it reads: channel selection,
the non-finite policy, scale, zero suppression, clipping, and the cast to the storage dtype."""

from __future__ import annotations

import numpy as np

from e2e.config import ConvertParams
from e2e.errors import E2EError
from e2e.store.sparse import SparseBatch, keep_entries, select_channels, sparsify


def preprocess(images: np.ndarray, cfg: ConvertParams, where: str) -> tuple[SparseBatch, int]:
    """Dense float32 (b, C, H, W) -> the non-zero entries of the selected channels after the non-finite
    policy, scale, zero suppression and clipping. Returns (entries, n_zeroed).

    Every step maps 0 to 0, so it runs on the non-zero entries alone (~1 % of the pixels) instead of
    making five passes over the dense batch. NaN and inf count as non-zero, so they are seen here.
    """
    shape = images.shape[1:]
    channels = list(cfg.channels) if cfg.channels is not None else list(range(shape[0]))
    entries = select_channels(sparsify(images), channels, shape)
    v = entries.values
    bad = ~np.isfinite(v)
    n_bad = int(bad.sum())
    if n_bad:
        if cfg.nonfinite != "zero":
            raise E2EError(
                f"{where}: {n_bad} NaN or infinite pixels (set convert.<dataset>.nonfinite: zero to zero them)"
            )
        v = np.where(bad, 0.0, v)
    if cfg.scale is not None and any(s != 1 for s in cfg.scale):
        v = v * np.asarray(cfg.scale, dtype=np.float32)[entries.index // (shape[1] * shape[2])]
    if cfg.zero_below:
        v = np.where(np.abs(v) < cfg.zero_below, 0.0, v)
    if cfg.clip is not None:
        v = np.clip(v, -cfg.clip, cfg.clip)
    return SparseBatch(v, entries.index, entries.counts), n_bad


def to_storage(entries: SparseBatch, dtype: str, where: str, dataset: str) -> SparseBatch:
    """Cast to the storage dtype, refusing values it cannot hold (float16 ends at 65504), and drop the
    entries that are zero once stored (zeroed above, or below float16's smallest subnormal)."""
    with np.errstate(over="ignore"):
        stored = entries.values.astype(dtype, copy=False)
    if np.dtype(dtype).kind == "f" and not np.isfinite(stored).all():
        raise E2EError(f"{where}: values overflow {dtype}; lower convert.{dataset}.scale or use float32")
    return keep_entries(SparseBatch(stored, entries.index, entries.counts), stored != 0)
