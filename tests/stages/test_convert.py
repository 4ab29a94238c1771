"""Stage `convert` on the reference files in the real formats and on bad input. The reference files come
from the formats_dir fixture: the project's own (tests/support/real_layout.py) and ../shared/formats where present.

Every expectation comes from an independent read of the raw file (pyarrow `to_pylist`, h5py plus an
explicit transpose), never from our readers.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from e2e.config import Paths, parse_params
from e2e.conversion import file as convert_file
from e2e.errors import E2EError
from e2e.sources import parquet_reader
from e2e.sources.parquet_reader import ParquetReader
from e2e.sources.registry import DATASETS
from e2e.stages import convert

from support.converted import f16, raw, read_converted, run_convert
from support.raw_files import (
    hdf5_images,
    nested,
    pylist_column,
    pylist_images,
    write_egamma,
    write_jet_mass,
    write_jets,
)

EG, QG, JM = "electron_photon", "quark_gluon", "jet_mass"


# ---------------------------------------------------------------- helpers


def sparse_jets(n: int, shape=(3, 125, 125), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    images = np.zeros((n, int(np.prod(shape))))
    idx = rng.integers(0, images.shape[1], (n, 300))
    np.put_along_axis(images, idx, rng.exponential(2.0, idx.shape), axis=1)
    return images.reshape(n, *shape)


def no_output(root: Path) -> list[str]:
    """Everything left under data/converted (the final directory and any temporary sibling)."""
    converted = root / "data" / "converted"
    return sorted(p.name for p in converted.iterdir()) if converted.exists() else []


# ---------------------------------------------------------------- the reference files


def test_quark_gluon_reference_files_pixel_exact(raw_root):
    arrays, meta = run_convert(raw_root, QG)
    files = [raw(raw_root, QG, i) for i in range(3)]
    expected = np.concatenate([pylist_images(f, "X_jets") for f in files])  # registry order: run0, run1, run2
    assert expected.shape == (12, 3, 125, 125)
    # the check below can only see a scramble if the channels differ and are not empty
    assert all(np.count_nonzero(expected[:, c]) > 0 for c in range(3))
    assert not np.array_equal(expected[:, 0], expected[:, 1])
    assert arrays["images"].dtype == np.float16 and arrays["images"].shape == (12, 3, 125, 125)
    np.testing.assert_array_equal(arrays["images"], f16(expected))
    for name, col in (("target", "y"), ("pt", "pt"), ("m0", "m0")):
        want = np.concatenate([pylist_column(f, col) for f in files]).astype(np.float32)
        np.testing.assert_array_equal(arrays[name], want)
        assert arrays[name].dtype == np.float32
    assert set(arrays) == {"images", "target", "pt", "m0"}
    assert meta["n"] == 12 and meta["shape"] == [12, 3, 125, 125] and meta["dtype"] == "float16"
    assert meta["channel_names"] == ["track_pt", "ecal", "hcal"] and meta["channels"] == [0, 1, 2]
    assert meta["rows_per_file"] == [4, 3, 5] and meta["nonfinite_zeroed"] == 0
    assert meta["observers"] == ["m0", "pt"]
    assert meta["sources"] == [{"file": f.name, "sha256": hashlib.sha256(f.read_bytes()).hexdigest()} for f in files]


def test_quark_gluon_channel_selection_reorders_exactly_in_float32(raw_root):
    arrays, meta = run_convert(raw_root, QG, channels=[2, 0], dtype="float32")
    expected = np.concatenate([pylist_images(raw(raw_root, QG, i), "X_jets") for i in range(3)])
    assert arrays["images"].dtype == np.float32
    np.testing.assert_array_equal(arrays["images"], expected[:, [2, 0]].astype(np.float32))
    assert meta["channels"] == [2, 0] and meta["channel_names"] == ["hcal", "track_pt"]
    assert meta["shape"] == [12, 2, 125, 125]


def test_jet_mass_reference_file(raw_root):
    arrays, meta = run_convert(raw_root, JM)
    f = raw(raw_root, JM)
    np.testing.assert_array_equal(arrays["images"], f16(pylist_images(f, "X_jet")))
    assert arrays["images"].shape == (4, 8, 125, 125)
    for name, col in (("target", "m"), ("pt", "pt"), ("ieta", "ieta"), ("iphi", "iphi")):
        np.testing.assert_array_equal(arrays[name], pylist_column(f, col).astype(np.float32))
    assert 85 <= arrays["target"].min() and arrays["target"].max() <= 500
    assert meta["channel_names"] == list(DATASETS[JM].channel_names)
    assert meta["observers"] == ["ieta", "iphi", "pt"] and meta["rows_per_file"] == [4]


def test_jet_mass_schema_variant_x_jets_am_apt(raw_root, formats_dir):
    """Other samples name the image `X_jets`, the mass `am` and the pT `apt`."""
    variant = formats_dir / "jet_mass" / "variant_am" / "aToGG_variant.parquet"
    shutil.copyfile(variant, raw(raw_root, JM))
    arrays, meta = run_convert(raw_root, JM, channels=[0, 3, 7])
    np.testing.assert_array_equal(arrays["images"], f16(pylist_images(variant, "X_jets")[:, [0, 3, 7]]))
    np.testing.assert_array_equal(arrays["target"], pylist_column(variant, "am").astype(np.float32))
    np.testing.assert_array_equal(arrays["pt"], pylist_column(variant, "apt").astype(np.float32))
    assert meta["shape"] == [3, 3, 125, 125] and meta["channel_names"] == ["track_pt", "ecal", "pix3"]


def test_electron_photon_reference_files_photons_then_electrons(raw_root):
    arrays, meta = run_convert(raw_root, EG)
    (xp, yp), (xe, ye) = hdf5_images(raw(raw_root, EG, 0)), hdf5_images(raw(raw_root, EG, 1))
    np.testing.assert_array_equal(arrays["images"], f16(np.concatenate([xp, xe])))
    np.testing.assert_array_equal(arrays["target"], np.r_[np.zeros(98), np.ones(102)].astype(np.float32))
    assert set(yp) == {0.0} and set(ye) == {1.0}  # photon file y=0, electron file y=1
    assert meta["shape"] == [200, 2, 32, 32] and meta["rows_per_file"] == [98, 102]
    assert meta["channel_names"] == ["energy", "time"] and set(arrays) == {"images", "target"}
    assert [s["file"] for s in meta["sources"]] == [f.name for f in DATASETS[EG].files]


# ---------------------------------------------------------------- the sparse format


def own_jet_mass_file(path: Path) -> np.ndarray:
    """The project's own real-layout jet-mass file: negative dZ/d0 values, values that float16 rounds to
    zero (1e-9) or to its smallest subnormal, and -0.0."""
    images = sparse_jets(6, (8, 125, 125), seed=3)
    images[:, 1:3] *= np.where(np.random.default_rng(4).random(images[:, 1:3].shape) < 0.5, -1, 1)
    images[0, 1, 10, 10], images[0, 2, 11, 11], images[1, 0, 5, 5] = 1e-9, -1e-9, 6e-8
    images[2, 3, 0, 0], images[3, 7, 124, 124] = -0.0, -250.5
    write_jet_mass(path, images, list(np.linspace(90, 480, 6)))
    return images


def test_sparse_round_trip_is_exact_with_negative_and_float16_zero_values(raw_root):
    images = own_jet_mass_file(raw(raw_root, JM))
    arrays, meta = run_convert(raw_root, JM)
    expected = f16(images)
    assert (expected[:, 1:3] < 0).any() and expected[0, 1, 10, 10] == 0 and expected[1, 0, 5, 5] != 0
    np.testing.assert_array_equal(arrays["images"], expected)
    assert meta["nnz"] == np.count_nonzero(expected) and meta["shape"] == [6, 8, 125, 125]
    # what training reads: e2e.runtime.batches's densification of the same files, every channel and a selection
    from e2e.runtime.batches import Converted

    data = Converted(raw_root / "data" / "converted" / JM)
    np.testing.assert_array_equal(data.images[np.arange(6)], expected.astype(np.float32))
    np.testing.assert_array_equal(data.images[4], expected[4].astype(np.float32))


@pytest.mark.parametrize("dataset", [EG, QG, JM])
def test_reference_files_round_trip_to_the_dense_arrays(raw_root, dataset):
    """Every reference file converts to entries that densify back to the dense float16 arrays an
    independent read gives (h5py + transpose, pyarrow to_pylist)."""
    arrays, meta = run_convert(raw_root, dataset)
    files = [raw(raw_root, dataset, i) for i in range(len(meta["rows_per_file"]))]
    if dataset == EG:
        dense = np.concatenate([hdf5_images(f)[0] for f in files])
    else:
        dense = np.concatenate([pylist_images(f, DATASETS[dataset].image_keys[0]) for f in files])
    np.testing.assert_array_equal(arrays["images"], f16(dense))
    assert meta["nnz"] == np.count_nonzero(f16(dense)) < dense.size / 4  # sparse, and smaller than dense


def test_parallel_conversion_is_byte_identical_to_serial(raw_root, tmp_path):
    run_convert(raw_root, QG, workers=1)
    serial = raw_root / "data" / "converted" / QG
    kept = tmp_path / "serial"
    shutil.copytree(serial, kept)
    run_convert(raw_root, QG, workers=3)
    names = sorted(p.name for p in kept.iterdir())
    assert names == sorted(p.name for p in serial.iterdir()) and "values.npy" in names
    for name in names:
        assert (kept / name).read_bytes() == (serial / name).read_bytes(), name


def test_complete_parts_are_resumed_only_when_made_from_the_same_file_and_params(raw_root, capsys):
    ds, cfg = DATASETS[QG], convert.ConvertParams(batch_rows=4)
    files = [raw(raw_root, QG, i) for i in range(3)]
    parts = convert.part_dir(Paths(raw_root), QG)
    convert.convert_one(ds, files[0], cfg=cfg, classify=True, part=parts / files[0].name)  # a killed run's first file
    arrays, _ = run_convert(raw_root, QG, batch_rows=2)  # batch_rows does not change the output
    assert "1 of 3 files resumed" in capsys.readouterr().out and not parts.exists()
    expected = np.concatenate([pylist_images(f, "X_jets") for f in files])
    np.testing.assert_array_equal(arrays["images"], f16(expected))

    convert.convert_one(ds, files[0], cfg=cfg, classify=True, part=parts / files[0].name)
    arrays, _ = run_convert(raw_root, QG, clip=0.5)  # other params: the part is converted again
    assert "resumed" not in capsys.readouterr().out
    np.testing.assert_array_equal(arrays["images"], f16(np.clip(expected, -0.5, 0.5)))


def test_a_subset_of_the_files_and_unknown_names(raw_root):
    params = parse_params(
        {"datasets": {QG: {"files": [DATASETS[QG].files[2].name]}}, "runtime": {"convert_workers": 1}}
    )
    convert.main(params, QG, Paths(raw_root))
    arrays, meta = read_converted(raw_root / "data" / "converted" / QG)
    assert meta["rows_per_file"] == [5] and [s["file"] for s in meta["sources"]] == [DATASETS[QG].files[2].name]
    bad = parse_params({"datasets": {QG: {"files": ["run9.parquet"]}}})
    with pytest.raises(E2EError, match=r"datasets.quark_gluon.files: unknown .*run9.parquet.*choose among"):
        convert.main(bad, QG, Paths(raw_root))


# ---------------------------------------------------------------- params


def test_scale_zero_below_clip_and_channel_selection(raw_root):
    """Order as documented in params.yaml: scale, then zero suppression of |scaled| values, then clip."""
    arrays, meta = run_convert(raw_root, EG, channels=[0], scale=[2.0], zero_below=0.05, clip=1.5, dtype="float32")
    x = np.concatenate([hdf5_images(raw(raw_root, EG, i))[0] for i in range(2)])[:, [0]].astype(np.float32)
    scaled = x * np.float32(2.0)
    assert ((scaled != 0) & (np.abs(scaled) < 0.05)).any() and (scaled > 1.5).any()  # both settings bite
    expected = np.clip(np.where(np.abs(scaled) < 0.05, 0, scaled), -1.5, 1.5)
    np.testing.assert_array_equal(arrays["images"], expected)
    assert meta["preprocessing"] == {"scale": [2.0], "clip": 1.5, "zero_below": 0.05, "nonfinite": "error"}
    assert meta["channel_names"] == ["energy"]


def test_nonfinite_zero_zeroes_and_counts(raw_root):
    path = raw(raw_root, EG, 0)
    x = h5py.File(path, "r")["X"][:]
    y = np.zeros(len(x), np.float32)
    x[3, 4, 5, 0], x[7, 0, 0, 1], x[97, 31, 31, 0] = np.nan, np.inf, -np.inf
    write_egamma(path, x, y)
    arrays, meta = run_convert(raw_root, EG, nonfinite="zero")
    assert meta["nonfinite_zeroed"] == 3
    images = arrays["images"]
    assert np.isfinite(images).all()
    assert images[3, 0, 4, 5] == 0 and images[7, 1, 0, 0] == 0 and images[97, 0, 31, 31] == 0
    clean = np.nan_to_num(x, nan=0, posinf=0, neginf=0).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(images[: len(x)], f16(clean))


def test_bad_params_name_params_yaml(raw_root):
    with pytest.raises(E2EError, match=r"params.yaml convert.quark_gluon.channels"):
        run_convert(raw_root, QG, channels=[0, 3])
    with pytest.raises(E2EError, match=r"convert.quark_gluon.scale: expected 2 values"):
        run_convert(raw_root, QG, channels=[0, 1], scale=[1.0])
    assert no_output(raw_root) == []


def test_float16_overflow_is_an_error(raw_root):
    with pytest.raises(E2EError, match="overflow float16"):
        run_convert(raw_root, EG, scale=[1e6, 1.0])
    assert no_output(raw_root) == []


# ---------------------------------------------------------------- regressions


@pytest.mark.parametrize(
    "threads,row_group_size",
    [(4, 1), (1, 1), (4, 10)],
    ids=["parallel-spans", "one-thread-stream", "large-row-groups-stream"],
)
def test_every_row_group_is_read(raw_root, monkeypatch, threads, row_group_size):
    """Regression: the public-solution trap of reading one row group as "a chunk" read 1 jet per file,
    because the real files hold ONE ROW GROUP PER JET. Batches must cross row-group boundaries, in file
    order, whether spans of row groups decode in threads or iter_batches streams them."""
    monkeypatch.setattr(parquet_reader, "DECODE_THREADS", threads)
    images = sparse_jets(37)
    path = raw(raw_root, QG, 1)
    write_jets(path, images, row_group_size=row_group_size)
    assert pq.ParquetFile(path).metadata.num_row_groups == -(-37 // row_group_size)
    arrays, meta = run_convert(raw_root, QG, batch_rows=8, dtype="float32")  # 37 = 4 * 8 + 5
    assert meta["rows_per_file"] == [4, 37, 5] and arrays["images"].shape[0] == 46
    np.testing.assert_array_equal(arrays["images"][4:41], images.astype(np.float32))
    np.testing.assert_array_equal(arrays["target"][4:41], (np.arange(37) % 2).astype(np.float32))


def test_channels_last_hdf5_is_transposed_not_reshaped(raw_root):
    """Regression: `.reshape`/`.view` of channels-last (N, H, W, C) data into (N, C, H, W) interleaves
    the channels and scrambles every pixel; only a transpose keeps them. The shared reference files' time
    channel is all zero, so this file gives each channel distinct values."""
    n = 3
    x = np.arange(n * 32 * 32 * 2, dtype=np.float32).reshape(n, 32, 32, 2)
    x[..., 1] *= -1
    write_egamma(raw(raw_root, EG, 0), x, np.zeros(n, np.float32))
    arrays, _ = run_convert(raw_root, EG, dtype="float32")
    images = arrays["images"][:n]
    np.testing.assert_array_equal(images[:, 0], x[..., 0])
    np.testing.assert_array_equal(images[:, 1], x[..., 1])
    assert not np.array_equal(images, x.reshape(n, 2, 32, 32))


@pytest.mark.parametrize("threads", [1, 4])
def test_plain_batches_keep_the_requested_size(tmp_path, monkeypatch, threads):
    """Callers without a transform (predict runs the model per batch) get batches of batch_rows rows,
    also when threads decode smaller spans."""
    monkeypatch.setattr(parquet_reader, "DECODE_THREADS", threads)
    images = sparse_jets(37)
    write_jets(tmp_path / "jets.parquet", images)
    reader = ParquetReader(DATASETS[QG], tmp_path / "jets.parquet")
    batches = list(reader.batches(32))
    reader.close()
    assert [len(b.target) for b in batches] == [32, 5]
    np.testing.assert_array_equal(np.concatenate([b.images for b in batches]), images.astype(np.float32))
    np.testing.assert_array_equal(
        np.concatenate([b.observers["pt"] for b in batches]), np.linspace(100, 200, 37).astype(np.float32)
    )


@pytest.fixture(scope="module")
def dense_jets_file(tmp_path_factory) -> Path:
    """200 jets with 30 % non-zero pixels: 20 MB of compressed pages, far more than 2 decoded jets."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("dense") / "jets.parquet"
    write_jets(path, rng.random((200, 3, 125, 125)) * (rng.random((200, 3, 125, 125)) < 0.3))
    return path


@pytest.mark.parametrize("threads", [1, 4])
def test_parquet_reader_memory_does_not_grow_with_the_file(dense_jets_file, monkeypatch, threads):
    """Regression: ParquetFile pre-buffers by default, and iter_batches then kept every row group's
    compressed chunks until the file closed: with one row group per jet, memory grew by the whole
    file size (+330 MB on a 40,000-jet file in bench/convert.py). Arrow's pool must stay near the
    batches in flight, streaming (1 thread) or decoding spans in threads."""
    monkeypatch.setattr(parquet_reader, "DECODE_THREADS", threads)
    path = dense_jets_file
    reader = ParquetReader(DATASETS[QG], path)
    base = pa.total_allocated_bytes()
    peak = max(pa.total_allocated_bytes() for _ in reader.batches(2)) - base  # 2 jets: 1.5 MB of float64
    reader.close()
    assert peak < 0.25 * path.stat().st_size, (peak, path.stat().st_size)


def test_prefetch_keeps_order_reraises_and_stops_its_thread():
    def failing():
        yield from range(5)
        raise E2EError("boom")

    assert list(convert_file.prefetch(iter(range(100)), depth=2)) == list(range(100))
    with pytest.raises(E2EError, match="boom"):
        list(convert_file.prefetch(failing()))
    early = convert_file.prefetch(iter(range(100)), depth=1)
    assert next(early) == 0
    early.close()  # the consumer fails or stops early: the producer must not stay blocked
    assert not [t for t in threading.enumerate() if t.name == "e2e-prefetch"]


# ---------------------------------------------------------------- bad input


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _garbage(p: Path) -> None:
    p.write_bytes(np.random.default_rng(0).bytes(p.stat().st_size))


def _corrupt_page(p: Path) -> None:
    """Footer intact, the data page of the second jet's image overwritten."""
    col = pq.ParquetFile(p).metadata.row_group(1).column(0)
    start, end = col.data_page_offset, (col.dictionary_page_offset or col.data_page_offset) + col.total_compressed_size
    data = bytearray(p.read_bytes())
    data[start:end] = np.random.default_rng(0).bytes(end - start)
    p.write_bytes(bytes(data))


def _ragged(p: Path) -> None:
    jets = sparse_jets(2).tolist()
    jets[1][2][60].pop()  # one pixel short in one row of one jet
    write_jets(p, pa.array(jets, pa.list_(pa.list_(pa.list_(pa.float64())))))


def _null_jet(p: Path) -> None:
    write_jets(p, pa.array([sparse_jets(1)[0].tolist(), None], pa.list_(pa.list_(pa.list_(pa.float64())))))


def _string_pixels(p: Path) -> None:
    jet = np.full((3, 125, 125), "0").tolist()
    write_jets(p, pa.array([jet], pa.list_(pa.list_(pa.list_(pa.string())))), pt=[1.0], m0=[1.0], y=[0.0])


def _pixel(p: Path, value: float) -> None:
    images = sparse_jets(3)
    images[2, 1, 7, 9] = value
    write_jets(p, images)


def _egamma_x(p: Path, x, y=None) -> None:
    write_egamma(p, x, np.zeros(len(x), np.float32) if y is None else y)


def _egamma_bad_pixel(p: Path, value: float) -> None:
    x = np.ones((4, 32, 32, 2), np.float32)
    x[1, 2, 3, 0] = value
    _egamma_x(p, x)


def _zero_row_parquet(p: Path) -> None:
    write_jets(p, nested(np.zeros((0, 3, 125, 125))), pt=np.zeros(0), m0=np.zeros(0), y=np.zeros(0))


BAD_INPUT = {  # id: (dataset, file index, how to break it, fragments the message must hold)
    "hdf5_truncated": (EG, 1, _truncate, ["not a readable HDF5 file"]),
    "hdf5_garbage": (EG, 0, _garbage, ["not a readable HDF5 file"]),
    "parquet_truncated": (QG, 1, _truncate, ["not a readable parquet file"]),
    "parquet_garbage": (QG, 2, _garbage, ["not a readable parquet file"]),
    "parquet_corrupt_page": (QG, 1, _corrupt_page, ["unreadable data"]),
    "hdf5_missing_key": (
        EG,
        1,
        lambda p: write_egamma(p, np.ones((2, 32, 32, 2), np.float32), None),
        ["no target", "expected one of ['y']", "found ['X']"],
    ),
    "parquet_missing_column": (
        QG,
        0,
        lambda p: write_jets(p, sparse_jets(2), m0=None),
        ["no m0 column", "found ['X_jets', 'pt', 'y']"],
    ),
    "hdf5_wrong_shape": (
        EG,
        0,
        lambda p: _egamma_x(p, np.ones((2, 32, 32, 3), np.float32)),
        ["expected (N, 32, 32, 2) channels-last", "(2, 32, 32, 3)"],
    ),
    "hdf5_channels_first": (
        EG,
        0,
        lambda p: _egamma_x(p, np.ones((2, 2, 32, 32), np.float32)),
        ["expected (N, 32, 32, 2)", "(2, 2, 32, 32)"],
    ),
    "parquet_wrong_channel_count": (
        QG,
        0,
        lambda p: write_jets(p, sparse_jets(2, (2, 125, 125))),
        ["X_jets", "level 0", "expected length 3, found 2"],
    ),
    "parquet_wrong_image_size": (
        QG,
        0,
        lambda p: write_jets(p, sparse_jets(2, (3, 125, 120))),
        ["X_jets", "level 2", "expected length 125, found 120"],
    ),
    "parquet_ragged": (QG, 1, _ragged, ["X_jets is ragged", "level 2", "found 124..125"]),
    "parquet_null_jet": (QG, 1, _null_jet, ["X_jets has null entries"]),
    "hdf5_nan": (EG, 1, lambda p: _egamma_bad_pixel(p, np.nan), ["1 NaN or infinite pixels", "nonfinite: zero"]),
    "hdf5_inf": (EG, 0, lambda p: _egamma_bad_pixel(p, -np.inf), ["1 NaN or infinite pixels"]),
    "parquet_nan": (QG, 2, lambda p: _pixel(p, np.nan), ["rows 0-3: 1 NaN or infinite pixels"]),  # rows of that file
    "parquet_inf": (
        JM,
        0,
        lambda p: write_jet_mass(p, np.full((2, 8, 125, 125), np.inf), [100.0, 200.0]),
        ["rows 0-2: 250000 NaN or infinite pixels"],
    ),  # 2 jets * 8 channels * 125 * 125
    "hdf5_label_2": (
        EG,
        0,
        lambda p: _egamma_x(p, np.ones((3, 32, 32, 2), np.float32), np.float32([0, 2, 0])),
        ["class labels must be 0 or 1, found [2.0]"],
    ),
    "parquet_label_half": (
        QG,
        0,
        lambda p: write_jets(p, sparse_jets(2), y=[0.5, 1.0]),
        ["class labels must be 0 or 1, found [0.5]"],
    ),
    "hdf5_empty_file": (EG, 1, lambda p: p.write_bytes(b""), ["empty file"]),
    "parquet_empty_file": (QG, 0, lambda p: p.write_bytes(b""), ["empty file"]),
    "hdf5_zero_rows": (EG, 0, lambda p: _egamma_x(p, np.ones((0, 32, 32, 2), np.float32)), ["holds no rows"]),
    "parquet_zero_rows": (QG, 2, _zero_row_parquet, ["holds no rows"]),
    "hdf5_string_images": (
        EG,
        0,
        lambda p: _egamma_x(p, np.full((2, 32, 32, 2), b"1", "S1")),
        ["X must be numeric", "|S1"],
    ),
    "hdf5_string_labels": (
        EG,
        0,
        lambda p: _egamma_x(p, np.ones((2, 32, 32, 2), np.float32), np.array([b"0", b"1"])),
        ["y must be numeric"],
    ),
    "parquet_string_target": (
        QG,
        0,
        lambda p: write_jets(p, sparse_jets(2), y=["quark", "gluon"]),
        ["column y must be numeric, found string"],
    ),
    "parquet_string_pixels": (QG, 0, _string_pixels, ["X_jets values must be numeric, found string"]),
    "parquet_nan_mass": (
        JM,
        0,
        lambda p: write_jet_mass(p, sparse_jets(2, (8, 125, 125)), [100.0, np.nan]),
        ["target has 1 NaN or infinite values"],
    ),
    "missing_file": (QG, 2, lambda p: p.unlink(), ["missing input file for dataset quark_gluon"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_one_clear_error_and_leaves_nothing(raw_root, case):
    dataset, index, breaker, fragments = BAD_INPUT[case]
    path = raw(raw_root, dataset, index)
    breaker(path)
    with pytest.raises(E2EError) as info:
        run_convert(raw_root, dataset)
    message = str(info.value)
    assert str(path) in message and "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    assert no_output(raw_root) == []
    assert not [t.name for t in threading.enumerate() if t.name.startswith("e2e-")]  # no reader thread left


def test_failure_keeps_the_previous_good_output(raw_root):
    good, _ = run_convert(raw_root, EG)
    _truncate(raw(raw_root, EG, 1))
    with pytest.raises(E2EError):
        run_convert(raw_root, EG)
    assert no_output(raw_root) == [EG]
    again, _ = read_converted(raw_root / "data" / "converted" / EG)
    np.testing.assert_array_equal(again["images"], good["images"])


@pytest.mark.parametrize("case", ["parquet_garbage", "parquet_missing_column"])
def test_cli_prints_one_error_line_and_exits_non_zero(raw_root, case):
    dataset, index, breaker, fragments = BAD_INPUT[case]
    path = raw(raw_root, dataset, index)
    breaker(path)
    params = raw_root / "params.yaml"
    params.write_text(yaml.safe_dump({"convert": {dataset: {"batch_rows": 4}}}))
    proc = subprocess.run(
        [sys.executable, "-m", "e2e", "--params", str(params), "--root", str(raw_root), "convert", dataset],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and str(path) in lines[0] and all(f in lines[0] for f in fragments), proc.stderr
    assert "Traceback" not in proc.stderr
    assert no_output(raw_root) == []
