"""Point batches from the sparse entries (e2e.runtime.points): each event's points are exactly the non-zero
pixels of its dense image (checked against SparseBatches' dense batches and an independent numpy reference),
ordered by energy, capped to the most energetic, independent of the entries' storage order, padded with
zeros under a False mask; and the batches hold the same rows, in the same order, as the image batches. On the
real-layout files: tests/stages/test_convert_points.py."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from e2e.errors import E2EError
from e2e.inference.inputs import point_arrays
from e2e.runtime.batches import make_batches
from e2e.runtime.points import make_point_batches
from e2e.runtime.stats import point_stats
from e2e.store.sparse import SparseImages, sparsify

from support.images import dense_images
from support.points import CPU, assert_points_match_images, assert_row, point_batches, to_points_of


@pytest.mark.parametrize("channels, energy_channels", [([0, 1, 2], [0]), ([2, 0], [1, 0]), ([1], []), ([0, 2], [])])
@pytest.mark.parametrize("max_gb", [1.0, 0.0], ids=["resident", "host"])
def test_points_are_the_nonzero_pixels_of_the_dense_images(channels, energy_channels, max_gb):
    x = dense_images(n=60)
    target = np.arange(60, dtype=np.float32)  # y = row: the batches name their rows
    idx = np.arange(1, 60, 2)
    assert_points_match_images(
        SparseImages.from_dense(x), target, idx, channels, energy_channels, resident_max_gb=max_gb
    )


def test_the_cap_keeps_the_most_energetic_points_and_a_cap_above_every_event_changes_nothing():
    x = dense_images(n=40).astype(np.float32)
    images, rows = SparseImages.from_dense(x), np.arange(40)
    sizes = (x != 0).any(axis=1).sum(axis=(1, 2))
    full = to_points_of(images, rows, [0, 1, 2], [0, 2], max_points=None)
    assert full.mask.shape[1] == sizes.max()
    for cap in (1, 5):
        capped = to_points_of(images, rows, [0, 1, 2], [0, 2], max_points=cap)
        assert capped.mask.shape[1] == cap and capped.mask.sum(1).tolist() == np.minimum(sizes, cap).tolist()
        for i in rows:
            assert_row(capped, i, x[i], [0, 2], cap)
            kept = capped.features[i][capped.mask[i]]
            dropped = full.features[i][full.mask[i]][cap:]
            if len(dropped):  # every kept point has at least the energy of every dropped one
                assert (kept[:, 0] + kept[:, 2]).min() >= (dropped[:, 0] + dropped[:, 2]).max()
    for cap in (int(sizes.max()), 10**6):
        same = to_points_of(images, rows, [0, 1, 2], [0, 2], max_points=cap)
        assert all(torch.equal(a, b) for a, b in zip(same[:3], full[:3]))


def test_the_order_of_points_does_not_depend_on_the_storage_order_of_entries():
    x = dense_images(n=30)
    x[5, :, 2, 3] = x[5, :, 4, 1] = np.array([1.0, 0.0, 2.0], np.float16)  # equal energies: pixel order decides
    images, rows = SparseImages.from_dense(x), np.arange(30)
    stored = to_points_of(images, rows, [0, 1, 2], [0, 2], max_points=4)
    n = int(images.counts(rows).sum())
    for seed in range(3):  # the entries shuffled across the whole batch, events interleaved
        order = np.random.default_rng(seed).permutation(n)
        shuffled = to_points_of(images, rows, [0, 1, 2], [0, 2], max_points=4, order=order)
        assert all(torch.equal(a, b) for a, b in zip(shuffled[:3], stored[:3]))


def test_empty_events_give_an_all_false_mask_row_and_an_empty_batch_one_padded_slot():
    x = dense_images(n=20)
    assert not x[3].any() and not x[17].any()  # dense_images' empty events
    batch = to_points_of(SparseImages.from_dense(x), np.arange(20), [0, 1, 2], [], max_points=None)
    for i in (3, 17):
        assert not batch.mask[i].any() and not batch.points[i].any() and not batch.features[i].any()
    empty = to_points_of(SparseImages.from_dense(x), np.array([3, 17]), [0, 1, 2], [], max_points=None)
    assert empty.points.shape == (2, 1, 2) and empty.features.shape == (2, 1, 3) and empty.mask.shape == (2, 1)
    assert not empty.mask.any() and not empty.points.any() and not empty.features.any()


def test_positions_are_relative_to_the_image_centre():
    x = np.zeros((1, 1, 4, 5), np.float16)
    x[0, 0, 0, 0], x[0, 0, 3, 4], x[0, 0, 2, 2] = 3.0, 2.0, 1.0  # two corners and a pixel on the middle column
    batch = to_points_of(SparseImages.from_dense(x), np.array([0]), [0], [0], max_points=None)
    want = [[-1.5 / 2, -2 / 2.5], [1.5 / 2, 2 / 2.5], [0.5 / 2, 0.0]]
    np.testing.assert_array_equal(batch.points[0].numpy(), np.array(want, np.float32))
    np.testing.assert_array_equal(batch.features[0, :, 0].numpy(), [3.0, 2.0, 1.0])


@pytest.mark.parametrize("world", [1, 3])
def test_make_point_batches_holds_the_rows_and_shards_of_make_batches(world):
    x = dense_images(n=64)
    data = SimpleNamespace(images=SparseImages.from_dense(x), target=np.arange(64, dtype=np.float32))
    runtime = SimpleNamespace(resident_max_gb=1.0, channels_last=True)
    idx = np.arange(2, 61)
    for rank in range(world):
        common = dict(batch_size=5, device=CPU, shuffle=True, seed=7, runtime=runtime, rank=rank, world=world)
        images = make_batches(data, idx, [1, 2], **common)
        points = make_point_batches(data, idx, [1, 2], max_points=3, energy_channels=[1], **common)
        for epoch in range(2):
            images.set_epoch(epoch)
            points.set_epoch(epoch)
            for (xb, xy), (pb, py) in zip(images, points, strict=True):
                assert torch.equal(xy, py) and pb.mask.shape[0] == len(xb)


def test_point_stats_are_the_moments_over_the_points_of_the_training_rows():
    x = dense_images(n=40)
    x[30:] += np.float16(100.0) * (x[30:] != 0)  # validation/test rows far off: any leak moves the mean
    train, channels = np.arange(0, 30, 2), [2, 0]
    mean, std = point_stats(SparseImages.from_dense(x), train, channels)
    sel = x[train][:, channels].astype(np.float64)
    values = sel.transpose(0, 2, 3, 1)[(sel != 0).any(axis=1)]  # (points, channels), zeros where a channel is
    np.testing.assert_allclose(mean, values.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(std, values.std(axis=0), rtol=1e-6)


@pytest.mark.parametrize(
    "options, message",
    [({"max_points": 0}, "max_points"), ({"max_points": 2.5}, "max_points"), ({"energy_channels": [2]}, "energy")],
)
def test_bad_options_are_refused_in_one_line(options, message):
    x = dense_images(n=20)
    with pytest.raises(E2EError, match=message) as err:
        point_batches(SparseImages.from_dense(x), np.zeros(20, np.float32), np.arange(20), [0, 1], **options)
    assert "\n" not in str(err.value)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("max_gb", [1.0, 0.0], ids=["resident", "host"])
def test_gpu_point_batches_are_the_cpus_bit_for_bit(max_gb):
    x = sparsify(dense_images(n=200, shape=(4, 33, 31), seed=1))
    images = SparseImages(x.values, x.index, np.concatenate([[0], np.cumsum(x.counts)]), (4, 33, 31))
    target = np.arange(200, dtype=np.float32)
    kw = dict(max_points=40, energy_channels=[3, 0], resident_max_gb=max_gb, batch_size=32)
    cpu = point_batches(images, target, np.arange(200), [3, 1, 0], **kw)
    gpu = point_batches(images, target, np.arange(200), [3, 1, 0], **{**kw, "device": torch.device("cuda", 0)})
    for (pc, yc), (pg, yg) in zip(cpu, gpu, strict=True):
        assert pg.mask.is_cuda and torch.equal(yc, yg.cpu())
        assert all(torch.equal(a, b.cpu()) for a, b in zip(pc[:3], pg[:3]))


@pytest.mark.parametrize("max_points", [None, 1, 6])
@pytest.mark.parametrize("channels, energy_channels", [([0, 1, 2], [0, 2]), ([2, 0], []), ([1], [0])])
def test_predicts_numpy_points_are_trainings_bit_for_bit(channels, energy_channels, max_points):
    """e2e.inference.inputs builds the points from the dense images predict makes, in numpy (onnxruntime needs
    no torch): the same bits as to_points on the sparse entries, ties, negative values and the cap included."""
    x = dense_images(n=30)
    x[3, :, 2, 3] = x[3, :, 4, 1] = np.array([1.0, 0.0, 2.0], np.float16)  # equal energies: pixel order decides
    x[4, 1] = -np.abs(x[4, 1])  # negative values (track dZ and d0 are signed)
    images, rows = SparseImages.from_dense(x), np.arange(30)
    want = to_points_of(images, rows, channels, energy_channels, max_points=max_points)
    got = point_arrays(x[:, channels].astype(np.float32), max_points=max_points, energy_channels=energy_channels)
    for name, tensor in zip(("points", "features", "mask"), want[:3]):
        np.testing.assert_array_equal(got[name], tensor.numpy(), err_msg=name)
        assert got[name].dtype == tensor.numpy().dtype
