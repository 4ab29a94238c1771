"""The moments that standardise a model's inputs, over the training rows only (never validation or test): per
channel over every pixel of the images for an image model, over the points for a point model."""

from __future__ import annotations

import numpy as np

from e2e.store.sparse import SparseImages, select_channels


def channel_stats(images: SparseImages, idx: np.ndarray, channels: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std over every pixel of the training rows, never validation or test."""
    s, ss = images.channel_moments(np.sort(idx))
    n = len(idx) * images.image_shape[1] * images.image_shape[2]
    mean = s[channels] / n
    std = np.sqrt(np.maximum(ss[channels] / n - mean**2, 0.0))
    return mean.astype(np.float32), np.where(std > 0, std, 1.0).astype(np.float32)


def point_stats(
    images: SparseImages, idx: np.ndarray, channels: list[int], *, chunk: int = 65536
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std over the points of the training rows (never validation or test), float64
    sums in chunks. Not channel_stats: the sums are the same (a zero adds nothing) but the count is the
    points, the pixels where any of `channels` is non-zero, not every pixel of the image; a channel that is
    zero at a point counts as a 0 there, as the point's features hold it."""
    c, h, w = images.image_shape
    hw, n_channels = h * w, len(channels)
    s, ss, n = np.zeros(n_channels), np.zeros(n_channels), 0
    rows = np.sort(np.asarray(idx))
    for start in range(0, len(rows), chunk):
        part = select_channels(images.gather(rows[start : start + chunk]), channels, (c, h, w))
        event = np.repeat(np.arange(len(part.counts), dtype=np.int64), part.counts)
        n += len(np.unique(event * hw + part.index % hw))
        channel, v = part.index // hw, part.values.astype(np.float64)
        s += np.bincount(channel, weights=v, minlength=n_channels)
        ss += np.bincount(channel, weights=v * v, minlength=n_channels)
    mean = s / max(n, 1)
    std = np.sqrt(np.maximum(ss / max(n, 1) - mean**2, 0.0))
    return mean.astype(np.float32), np.where(std > 0, std, 1.0).astype(np.float32)
