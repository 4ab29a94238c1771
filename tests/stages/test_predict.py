"""`e2e predict` on raw files in the real formats: same numbers as the model on the converted data.

The model directory is built the way `train` builds it (model.pt plus preprocessing.json copied from
the converted meta.json), on the files in the real formats of the formats_dir fixture (the project's own,
and ../shared/formats where present); `exported` adds model.onnx as the `export` stage writes it. Unlabelled
files are those files with the target column/key removed, everything else byte for byte as read.
"""

from __future__ import annotations

import subprocess
import sys
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from e2e.errors import E2EError
from e2e.inference import predict
from e2e.inference.onnx_model import worst_difference
from e2e.sources.registry import DATASETS
from e2e.tasks import get_task

from support.model_dirs import (
    TASKS,
    TOLERANCE,
    exported,
    make_model_dir,
    reference,
)


def unlabelled(src: Path, out_dir: Path, task: str, image_key: str | None = None) -> Path:
    """A copy of the raw file `src` without its target column/key (row groups and everything else kept);
    with image_key, its image column/key renamed to that."""
    ds = DATASETS[get_task(task).dataset]
    out = out_dir / src.name
    out_dir.mkdir(parents=True, exist_ok=True)
    if ds.format == "hdf5":
        with h5py.File(src, "r") as f, h5py.File(out, "w") as g:
            for key in f:
                if key not in ds.target_keys:
                    f.copy(key, g, name=image_key if key in ds.image_keys and image_key else key)
        return out
    table = pq.read_table(src)
    table = table.drop_columns([c for c in table.column_names if c in ds.target_keys])
    if image_key:
        table = table.rename_columns([image_key if c in ds.image_keys else c for c in table.column_names])
    pq.write_table(table, out, row_group_size=1, compression="snappy")  # one jet per row group, as the real files
    return out


def run_predict(task: str, files: list[Path], out: Path, model_path: Path, backend: str) -> pd.DataFrame:
    model = model_path.parent / predict.BACKENDS[backend][1]
    predict.main(task, files, out, model, batch_rows=3, device_name="cpu", backend=backend)  # batches straddle files
    return pq.read_table(out).to_pandas()


@pytest.mark.parametrize("task", ["electron_photon", "quark_gluon", "jet_mass"])
def test_predict_on_raw_files_matches_model_on_converted_images(raw_root, tmp_path, task):
    model_path, data = make_model_dir(raw_root, task, tmp_path / "model")
    files = [raw_root / "data" / "raw" / task / s["file"] for s in data.meta["sources"]]
    out = tmp_path / "out" / "predictions.parquet"
    predict.main(task, files, out, model_path, batch_rows=3, device_name="cpu")  # batches straddle files
    table = pq.read_table(out).to_pandas()
    np.testing.assert_allclose(table["prediction"], reference(model_path, data), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(table["truth"], data.target)
    assert table["file"].tolist() == [f.name for f, r in zip(files, data.meta["rows_per_file"]) for _ in range(r)]
    assert table["row"].tolist() == [i for r in data.meta["rows_per_file"] for i in range(r)]
    for k, v in data.observers.items():
        np.testing.assert_array_equal(table[k], v)


@pytest.mark.parametrize("members", [1, 2])
@pytest.mark.parametrize("task", TASKS)
def test_unlabelled_files_predict_as_labelled_ones_without_truth(raw_root, tmp_path, task, members):
    """Bug: predict refused a file without its target ("no target column/key"), and an ensemble's predictions
    lost the per-event uncertainty that evaluate writes. Both backends, a single model and an ensemble."""
    model_path, data = exported(raw_root, task, members=members)
    files = [raw_root / "data" / "raw" / task / s["file"] for s in data.meta["sources"]]
    bare = [unlabelled(f, tmp_path / "bare", task) for f in files]
    each = reference(model_path, data, members=True) if members > 1 else None
    for backend in ("torch", "onnx"):
        labelled = run_predict(task, files, tmp_path / f"{backend}.parquet", model_path, backend)
        table = run_predict(task, bare, tmp_path / f"{backend}-bare.parquet", model_path, backend)
        assert "truth" not in table and "truth" in labelled
        pd.testing.assert_frame_equal(table, labelled.drop(columns="truth"))
        assert worst_difference(table["prediction"], reference(model_path, data)) <= TOLERANCE
        if each is None:
            assert not any(c.startswith(("uncertainty", "prediction_member")) for c in table)
            continue
        got = table[[f"prediction_member{k + 1}" for k in range(members)]].to_numpy()
        assert worst_difference(got, each) <= TOLERANCE, backend
        np.testing.assert_allclose(table["uncertainty"], got.std(axis=1), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(table["prediction"], got.mean(axis=1), rtol=1e-5, atol=1e-6)
        assert not np.allclose(got[:, 0], got[:, 1])  # the members differ: a zero uncertainty would show


def test_truth_is_written_only_when_every_file_has_its_target(raw_root, tmp_path, capsys):
    model_path, data = make_model_dir(raw_root, "quark_gluon", tmp_path / "model")
    files = [raw_root / "data" / "raw" / "quark_gluon" / s["file"] for s in data.meta["sources"]]
    mixed = [files[0], unlabelled(files[1], tmp_path / "bare", "quark_gluon"), files[2]]
    table = run_predict("quark_gluon", mixed, tmp_path / "p.parquet", model_path, "torch")
    assert "truth" not in table and len(table) == len(data.target)
    assert f"no truth column (1 file(s) without a target, e.g. {files[1].name})" in capsys.readouterr().out
    np.testing.assert_allclose(table["prediction"], reference(model_path, data), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("task", TASKS)
def test_an_unlabelled_file_with_a_wrong_image_column_is_one_clear_error(raw_root, tmp_path, task):
    model_path, data = make_model_dir(raw_root, task, tmp_path / "model")
    src = raw_root / "data" / "raw" / task / data.meta["sources"][0]["file"]
    bad = unlabelled(src, tmp_path / "bare", task, image_key="pixels")
    out = tmp_path / "p.parquet"
    with pytest.raises(E2EError, match=f"{bad.name}: no image column/key; expected one of") as err:
        predict.main(task, [bad], out, model_path, device_name="cpu")
    assert "\n" not in str(err.value) and "pixels" in str(err.value) and not out.exists()
    if task == "quark_gluon":  # the CLI: exit 2 and that one line
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "e2e",
                "predict",
                task,
                "--input",
                str(bad),
                "--output",
                str(out),
                "--model",
                str(model_path),
            ],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 2 and proc.stderr.strip() == f"error: {err.value}", proc.stderr
        assert not out.exists()


@pytest.mark.parametrize("formats_dir", ["shared"], indirect=True)  # the real crops are only in the shared files
def test_cli_predicts_the_real_electron_photon_sample(raw_root, formats_dir, tmp_path):
    model_path, _ = make_model_dir(raw_root, "electron_photon", tmp_path / "model")
    files = sorted((formats_dir / "electron_photon").glob("*.hdf5"))
    out = tmp_path / "p.parquet"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "e2e",
            "predict",
            "electron_photon",
            "--input",
            *map(str, files),
            "--output",
            str(out),
            "--model",
            str(model_path),
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = pq.read_table(out).to_pandas()
    assert len(table) == 200 and table["prediction"].between(0, 1).all()
    assert set(table["file"]) == {f.name for f in files}


def test_memory_stays_bounded_and_each_batch_is_a_row_group(raw_root, tmp_path):
    """Streaming: peak numpy memory is a few batches' worth, whatever the file's size."""
    model_path, _ = make_model_dir(raw_root, "electron_photon", tmp_path / "model", ("mlp", {"hidden": [8]}))
    big, n, batch_rows = tmp_path / "big.hdf5", 4000, 100
    with h5py.File(big, "w") as f:
        f["X"] = np.random.default_rng(0).exponential(1.0, (n, 32, 32, 2)).astype(np.float32)  # 33 MB
        f["y"] = np.zeros(n, np.float32)
    out = tmp_path / "big.parquet"
    small = raw_root / "data" / "raw" / "electron_photon" / DATASETS["electron_photon"].files[0].name
    predict.main("electron_photon", [small], out, model_path, device_name="cpu")  # lazy imports happen here
    tracemalloc.start()
    predict.main("electron_photon", [big], out, model_path, batch_rows=batch_rows, device_name="cpu")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    batch_bytes = batch_rows * 32 * 32 * 2 * 4
    # every pixel of this file is non-zero, the worst case of the sparse preprocessing (int64 positions and
    # int32 indices beside each float32 value): still a bounded number of batches, far below the 40 in the file
    assert peak < 20 * batch_bytes, f"peak {peak / 2**20:.1f} MiB for 0.8 MiB batches of a 33 MB file"
    meta = pq.ParquetFile(out).metadata
    assert meta.num_rows == n and meta.num_row_groups == n // batch_rows


def test_missing_preprocessing_json_is_one_clear_error(raw_root, tmp_path):
    model_path, _ = make_model_dir(raw_root, "electron_photon", tmp_path / "model")
    (model_path.parent / "preprocessing.json").unlink()
    with pytest.raises(E2EError, match="preprocessing.json: missing"):
        predict.main("electron_photon", [], tmp_path / "p.parquet", model_path)


def test_model_of_another_task_is_refused(raw_root, tmp_path):
    model_path, _ = make_model_dir(raw_root, "electron_photon", tmp_path / "model")
    with pytest.raises(E2EError, match="model.pt: a model for task 'electron_photon', not 'quark_gluon'"):
        predict.main("quark_gluon", [], tmp_path / "p.parquet", model_path)


def test_bad_input_exits_2_with_one_line_and_leaves_no_output(raw_root, tmp_path):
    model_path, _ = make_model_dir(raw_root, "electron_photon", tmp_path / "model")
    bad = tmp_path / "not_hdf5.hdf5"
    bad.write_text("hello")
    good = raw_root / "data" / "raw" / "electron_photon" / DATASETS["electron_photon"].files[0].name
    out = tmp_path / "p.parquet"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "e2e",
            "predict",
            "electron_photon",
            "--input",
            str(good),
            str(bad),
            "--output",
            str(out),
            "--model",
            str(model_path),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0], proc.stderr
    assert not out.exists() and not list(tmp_path.glob(".p.parquet.tmp-*"))
