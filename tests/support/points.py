"""Point batches checked against the dense images (e2e.runtime.points): an independent numpy reference of an
image's points, and the comparisons test_points and test_convert_points share."""

from __future__ import annotations

import numpy as np
import torch

from e2e.runtime.batches import SparseBatches
from e2e.runtime.points import PointBatch, PointBatches, to_points
from e2e.store.sparse import SparseImages, select_channels

CPU = torch.device("cpu")


def reference(image: np.ndarray, energy_channels, max_points=None) -> tuple[np.ndarray, np.ndarray]:
    """(positions (n, 2), features (n, C)) of one (C, H, W) image's non-zero pixels, in numpy, in the
    documented order: energy (float32, channels added left to right) descending, then pixel ascending."""
    c, h, w = image.shape
    hs, ws = np.nonzero((image != 0).any(axis=0))
    features = image[:, hs, ws].T.astype(np.float32)
    columns = [features[:, k] for k in energy_channels] or [np.abs(features[:, k]) for k in range(c)]
    energy = columns[0]
    for column in columns[1:]:
        energy = energy + column
    order = np.lexsort((hs * w + ws, -energy))[:max_points]
    positions = np.stack([(hs - (h - 1) / 2) / (h / 2), (ws - (w - 1) / 2) / (w / 2)], 1).astype(np.float32)
    return positions[order], features[order]


def assert_row(batch: PointBatch, i: int, image: np.ndarray, energy_channels, max_points=None) -> None:
    """Row i of `batch` is `image`'s points, then zeros under a False mask."""
    positions, features = reference(image, energy_channels, max_points)
    n = len(positions)
    mask = batch.mask[i].numpy()
    assert mask[:n].all() and not mask[n:].any()
    np.testing.assert_array_equal(batch.points[i, :n].numpy(), positions)
    np.testing.assert_array_equal(batch.features[i, :n].numpy(), features)
    assert not batch.points[i, n:].any() and not batch.features[i, n:].any()


def point_batches(images: SparseImages, target, idx, channels, **kw) -> PointBatches:
    options = dict(batch_size=7, device=CPU, shuffle=True, seed=3, resident_max_gb=1.0)
    options.update(max_points=None, energy_channels=[0])
    options.update(kw)
    return PointBatches(images, target, np.asarray(idx), channels, **options)


def image_batches(images: SparseImages, target, idx, channels, **kw) -> SparseBatches:
    options = dict(batch_size=7, device=CPU, shuffle=True, seed=3, resident_max_gb=1.0) | kw
    return SparseBatches(images, target, np.asarray(idx), channels, **options)


def assert_points_match_images(images: SparseImages, target, idx, channels, energy_channels, *, epochs=2, **kw):
    """Every batch of PointBatches holds the rows of SparseBatches' batch (same y), and its points are the
    non-zero pixels of those dense images."""
    points = point_batches(images, target, idx, channels, energy_channels=energy_channels, **kw)
    dense = image_batches(images, target, idx, channels, **{k: v for k, v in kw.items() if k != "max_points"})
    for epoch in range(epochs):
        points.set_epoch(epoch)
        dense.set_epoch(epoch)
        assert len(points) == len(dense)
        for (pb, py), (xb, xy) in zip(points, dense, strict=True):
            assert torch.equal(py, xy)
            assert pb.points.dtype == pb.features.dtype == torch.float32 and pb.mask.dtype == torch.bool
            assert pb.mask.sum(1).max() == pb.mask.shape[1] or not pb.mask.any()  # P: the largest event
            for i in range(len(xb)):
                assert_row(pb, i, xb[i].numpy(), energy_channels, kw.get("max_points"))


def to_points_of(images: SparseImages, rows, channels, energy_channels, *, max_points, order=None) -> PointBatch:
    """to_points over the selected channels' entries of `rows`, the entries taken in `order` (default: stored)."""
    shape = (len(channels), *images.image_shape[1:])
    part = select_channels(images.gather(rows), channels, images.image_shape)
    event = np.repeat(np.arange(len(rows)), part.counts)
    order = np.arange(len(event)) if order is None else order
    return to_points(
        torch.from_numpy(part.values[order]),
        torch.from_numpy(part.index[order]),
        torch.from_numpy(event[order]),
        n_events=len(rows),
        shape=shape,
        max_points=max_points,
        energy_channels=energy_channels,
    )
