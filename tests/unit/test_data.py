"""Batches from the sparse format: every batch densifies to exactly the dense rows it names, in the
order it names them, with the model's channels; statistics come from the training rows only; DDP
ranks hold disjoint, equal shards."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from e2e.runtime.batches import SparseBatches, shard
from e2e.runtime.stats import channel_stats
from e2e.store.sparse import SparseImages, densify, select_channels, sparsify

from support.images import dense_images


def batches(x: np.ndarray, idx, channels, *, batch_size=8, shuffle=False, max_gb=1.0) -> SparseBatches:
    target = np.arange(len(x), dtype=np.float32)
    return SparseBatches(
        SparseImages.from_dense(x),
        target,
        np.asarray(idx),
        channels,
        batch_size=batch_size,
        device=torch.device("cpu"),
        shuffle=shuffle,
        seed=0,
        resident_max_gb=max_gb,
    )


def test_sparsify_densify_round_trip_drops_only_zeros():
    x = dense_images()
    x[0, 0, 0, 0] = -0.0
    sparse = sparsify(x)
    assert len(sparse.values) == np.count_nonzero(x) and not np.any(sparse.values == 0)
    np.testing.assert_array_equal(densify(sparse, x.shape[1:], np.float16), x)


@pytest.mark.parametrize("channels", [[0, 1, 2], [2, 0], [1]])
def test_unshuffled_batches_are_the_dense_rows_in_order(channels):
    x = dense_images()
    idx = np.array([1, 3, 4, 8, 9, 17, 20, 21, 30, 31, 40, 49])
    b = batches(x, idx, channels, batch_size=5)
    seen = []
    for xb, yb in b:
        rows = yb.numpy().astype(int)  # target = row number: which rows this batch holds
        np.testing.assert_array_equal(xb.numpy(), x[rows][:, channels].astype(np.float32))
        seen += rows.tolist()
    assert seen == idx.tolist() and len(b) == 3 and b.rows.tolist() == idx.tolist()


def test_shuffled_epochs_cover_every_row_once_in_a_new_order_and_buffers_stay_valid():
    x = dense_images(n=64)
    b = batches(x, np.arange(64), [0, 1, 2], batch_size=6, shuffle=True, max_gb=0.0)  # entries on the host
    orders = []
    for epoch in range(2):
        b.set_epoch(epoch)
        held, rows_seen = [], []
        for xb, yb in b:
            rows = yb.numpy().astype(int)
            held.append((xb, rows))
            if len(held) >= 2:  # the previous batch is still intact while this one is in use
                prev_x, prev_rows = held[-2]
                np.testing.assert_array_equal(prev_x.numpy(), x[prev_rows].astype(np.float32))
            np.testing.assert_array_equal(xb.numpy(), x[rows].astype(np.float32))
            rows_seen += rows.tolist()
        assert sorted(rows_seen) == list(range(64))
        orders.append(rows_seen)
    assert orders[0] != orders[1]


def test_channel_stats_come_from_the_training_rows_only():
    x = dense_images(n=40).astype(np.float32)
    x[30:] += 100.0  # validation/test rows far off: any leak moves the mean
    train = np.arange(0, 30, 2)
    mean, std = channel_stats(SparseImages.from_dense(x.astype(np.float16)), train, [2, 0])
    want = x.astype(np.float16).astype(np.float64)[train][:, [2, 0]]
    np.testing.assert_allclose(mean, want.mean(axis=(0, 2, 3)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(std, want.std(axis=(0, 2, 3)), rtol=1e-5, atol=1e-6)


def test_ranks_hold_disjoint_equal_shards():
    idx = np.arange(3, 104)
    shards = [shard(idx, r, 4) for r in range(4)]
    assert {len(s) for s in shards} == {101 // 4}
    assert len(set(np.concatenate(shards))) == 4 * (101 // 4) and set(np.concatenate(shards)) <= set(idx)


def test_select_channels_keeps_the_entries_of_those_channels():
    x = dense_images()
    got = select_channels(sparsify(x), [2, 0], x.shape[1:])
    np.testing.assert_array_equal(densify(got, (2, *x.shape[2:]), np.float16), x[:, [2, 0]])


@pytest.mark.parametrize("max_gb", [1.0, 0.0], ids=["resident", "host"])
def test_channels_last_batches_hold_the_same_values_in_the_models_layout(max_gb):
    """Guards against: the densified buffer staying NCHW while a GPU model is channels_last (a layout
    conversion every step), or a wrong channels-last index putting values in the wrong channel or pixel."""
    x = dense_images(n=40)
    channels = [2, 0]
    plain, last = (
        SparseBatches(
            SparseImages.from_dense(x),
            np.arange(40, dtype=np.float32),
            np.arange(40),
            channels,
            batch_size=6,
            device=torch.device("cpu"),
            shuffle=True,
            seed=0,
            resident_max_gb=max_gb,
            channels_last=cl,
        )
        for cl in (False, True)
    )
    for epoch in range(2):  # the second pass zeroes what the first wrote, in the channels-last positions
        plain.set_epoch(epoch)
        last.set_epoch(epoch)
        for (xp, yp), (xl, yl) in zip(plain, last):
            assert xl.is_contiguous(memory_format=torch.channels_last) and not xl.is_contiguous()
            assert xp.is_contiguous()
            assert torch.equal(yl, yp)
            np.testing.assert_array_equal(xl.numpy(), x[yl.numpy().astype(int)][:, channels].astype(np.float32))
            assert torch.equal(xl, xp)
