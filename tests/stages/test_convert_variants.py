"""The real files' variants that the readers accept: e/gamma HDF5 in gzip-compressed chunks (as the real files
are) read with a chunk cache that decompresses each chunk once, and the jet-mass sample of 4 channels with
target `am`. Expectations come from independent reads (h5py, pyarrow to_pylist), as in test_convert."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from e2e.config import Paths, parse_params
from e2e.errors import E2EError
from e2e.sources import hdf5_cache, hdf5_reader, readers
from e2e.sources.registry import DATASETS
from e2e.stages import convert, split, train

from support.converted import f16, raw, read_converted, run_convert
from support.raw_files import pylist_column, pylist_images, write_jet_mass
from support.real_layout import EGAMMA_CHUNKS, JET_MASS_4CH

EG, JM = "electron_photon", "jet_mass"
ROOT = Path(__file__).resolve().parents[2]
# the project's own files: the shared reference set has neither chunked e/gamma files nor the 4-channel sample
OWN = pytest.mark.parametrize("formats_dir", ["own"], indirect=True)


# ---------------------------------------------------------------- e/gamma in gzip-compressed chunks


def rewrite_contiguous(path: Path) -> None:
    with h5py.File(path, "r") as f:
        x, y = f["X"][:], f["y"][:]
    with h5py.File(path, "w") as f:
        f.create_dataset("X", data=x)
        f.create_dataset("y", data=y)


@OWN
def test_chunked_gzip_egamma_converts_to_exactly_the_arrays_of_the_contiguous_one(raw_root, tmp_path, capsys):
    files = [raw(raw_root, EG, i) for i in range(2)]
    with h5py.File(files[0], "r") as f:
        assert f["X"].chunks == EGAMMA_CHUNKS and f["X"].compression == "gzip"
    run_convert(raw_root, EG, batch_rows=20)  # 20-row batches cross the 32-row chunks
    assert f"{files[0]}: X gzip level 4, chunks {EGAMMA_CHUNKS}, chunk cache" in capsys.readouterr().out
    chunked = tmp_path / "chunked"
    shutil.move(raw_root / "data" / "converted" / EG, chunked)
    for f in files:
        rewrite_contiguous(f)
    run_convert(raw_root, EG, batch_rows=20)
    assert f"{files[0]}: X contiguous, uncompressed" in capsys.readouterr().out
    contiguous = raw_root / "data" / "converted" / EG
    names = sorted(p.name for p in contiguous.glob("*.npy"))
    assert names == sorted(p.name for p in chunked.glob("*.npy")) and "values.npy" in names
    for name in names:
        assert (chunked / name).read_bytes() == (contiguous / name).read_bytes(), name
    meta = [json.loads((d / "meta.json").read_text()) for d in (chunked, contiguous)]
    assert meta[0] | {"sources": None} == meta[1] | {"sources": None}  # the files' sha256 differ, nothing else


class CountingFile(io.FileIO):
    """A file that counts the bytes HDF5 reads from it: each chunk loaded from disk is a chunk decompressed."""

    read_bytes = 0

    def readinto(self, buffer) -> int:
        n = super().readinto(buffer)
        self.read_bytes += n or 0
        return n

    def read(self, size: int = -1) -> bytes:
        data = super().read(size)
        self.read_bytes += len(data)
        return data


def bytes_read_in_batches(path: Path, batch_rows: int, monkeypatch) -> int:
    """Read every row through the reader, in batches; how many bytes HDF5 read from the file to do it."""
    opened, real_file = [], h5py.File

    def counting(name, mode="r", **kwargs):
        opened.append(CountingFile(name, "rb"))
        return real_file(opened[-1], mode, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(h5py, "File", counting)
        reader = readers.open_reader(DATASETS[EG], path)
        rows = sum(len(batch.target) for batch in reader.batches(batch_rows))
        reader.close()
    assert rows == 3000
    return opened[0].read_bytes


def test_reading_row_batches_decompresses_each_chunk_once(tmp_path, monkeypatch):
    """The chunks have the pixel extent h5py picks for a full-size e/gamma file; a row of them is 512 chunks of
    19 kB (9.8 MB), more than HDF5's default cache (1 MiB, 8 MiB since HDF5 2.0), and 512-row batches cut the
    1200-row chunks. Chunks loaded from the file are chunks decompressed."""
    path = tmp_path / "chunked.hdf5"
    rng = np.random.default_rng(5)
    x = np.where(rng.random((3000, 32, 32, 2)) < 0.05, rng.random((3000, 32, 32, 2)), 0).astype(np.float32)
    with h5py.File(path, "w") as f:
        f.create_dataset("X", data=x, chunks=(1200, 2, 2, 1), compression="gzip")
        f.create_dataset("y", data=np.zeros(3000, np.float32))
        stored = f["X"].id.get_storage_size()
    once = bytes_read_in_batches(path, 512, monkeypatch)
    assert stored < once < 1.1 * stored + 2**20  # every chunk loaded once, plus the metadata and y
    # control: with h5py's default chunk cache the same reading loads most chunks again for every batch
    monkeypatch.setattr(hdf5_reader, "with_chunk_cache", lambda file, name: file[name])
    assert bytes_read_in_batches(path, 512, monkeypatch) > 2 * stored


def test_chunk_cache_holds_a_row_of_chunks():
    # h5py's own chunk shape for a full-size e/gamma X: 512 chunks of 7782 x 2 x 2 x 1 float32 hold one row
    nbytes, nslots = hdf5_cache.chunk_cache((249_000, 32, 32, 2), (7782, 2, 2, 1), 4)
    assert nbytes == 512 * 7782 * 4 * 4 and nslots >= 51_200 and all(nslots % d for d in range(2, 227))
    assert hdf5_cache.chunk_cache((100, 32, 32, 2), (100, 32, 32, 2), 4)[0] == 100 * 32 * 32 * 2 * 4


# ---------------------------------------------------------------- jet mass with 4 channels and target `am`


def jet_mass_root(tmp_path: Path, formats_dir: Path) -> tuple[Path, Path, dict]:
    """A repo whose one jet-mass file is the 4-channel sample, and params.yaml's own jet-mass settings."""
    name = DATASETS[JM].files[0].name
    variant = formats_dir / JM / JET_MASS_4CH[0]
    root = tmp_path / "repo"
    (root / "data" / "raw" / JM).mkdir(parents=True)
    shutil.copyfile(variant, root / "data" / "raw" / JM / name)
    defaults = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw_params = {
        "datasets": {JM: {"files": [name]}},
        "convert": {JM: defaults["convert"][JM]},
        "runtime": {"device": "cpu", "threads": 1, "convert_workers": 1},
        "split": {"seed": 3, "val_fraction": 0.25, "test_fraction": 0.25},
        "train": {JM: {**defaults["train"][JM], "model_kwargs": {"width": 2}, "epochs": 1, "batch_size": 4}},
    }
    return root, variant, raw_params


@OWN
def test_jet_mass_4_channel_am_sample_converts_and_trains_with_the_reference_channels(tmp_path, formats_dir):
    root, variant, raw_params = jet_mass_root(tmp_path, formats_dir)
    path = root / "data" / "raw" / JM / DATASETS[JM].files[0].name
    # params.yaml keeps all 8 channels of the public files: one line says what this file holds
    with pytest.raises(E2EError) as info:
        convert.main(parse_params(raw_params), JM, Paths(root))
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    assert "0..3 (the 4 channels track_pt, track_dz, track_d0, ecal), found [0, 1, 2, 3, 4, 5, 6, 7]" in message

    raw_params["convert"][JM] |= {"channels": None, "scale": None}
    convert.main(parse_params(raw_params), JM, Paths(root))
    arrays, meta = read_converted(root / "data" / "converted" / JM)
    n = JET_MASS_4CH[1]
    np.testing.assert_array_equal(arrays["images"], f16(pylist_images(variant, "X_jet")))
    np.testing.assert_array_equal(arrays["target"], pylist_column(variant, "am").astype(np.float32))
    np.testing.assert_array_equal(arrays["pt"], pylist_column(variant, "apt").astype(np.float32))
    assert meta["shape"] == [n, 4, 125, 125] and meta["target"] == "am"
    assert meta["channel_names"] == meta["source_channels"] == ["track_pt", "track_dz", "track_d0", "ecal"]
    assert meta["source_columns"] == {"image": "X_jet", "target": "am", "pt": "apt", "ieta": "ieta", "iphi": "iphi"}

    params = parse_params(raw_params)
    assert params.train[JM].channels == (0, 1, 2, 3)  # params.yaml's: track pT, dZ, d0, ECAL, as the reference
    split.main(params, JM, Paths(root))
    train.main(params, JM, Paths(root))
    saved = json.loads((root / "models" / JM / "preprocessing.json").read_text())
    assert saved["channel_names"] == ["track_pt", "track_dz", "track_d0", "ecal"]

    raw_params["train"][JM]["channels"] = [5]
    with pytest.raises(E2EError) as info:
        train.main(parse_params(raw_params), JM, Paths(root))
    message = str(info.value)
    assert "\n" not in message and "train.jet_mass.channels" in message and "found [5]" in message
    assert "4 converted channels ['track_pt', 'track_dz', 'track_d0', 'ecal']" in message


@OWN
def test_jet_mass_file_of_another_channel_count_is_one_line(raw_root):
    path = raw(raw_root, JM)
    images = np.zeros((2, 5, 125, 125))
    images[:, :, 60, 60] = 1.0
    write_jet_mass(path, images, [100.0, 200.0])
    with pytest.raises(E2EError) as info:
        run_convert(raw_root, JM)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    assert "X_jet holds 5 channels; expected 8 (track_pt" in message and "or 4 (track_pt, track_dz" in message
