"""Stage `export` and `e2e predict --backend onnx`: the ONNX graph computes what the checkpoint computes.

Models are built as test_predict builds them (model.pt and preprocessing.json from files in the real
layouts, non-trivial preprocessing, the model on a subset of the converted channels); each test runs on
the project's own reference files and on ../shared/formats where present.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pyarrow.parquet as pq
import pytest
import torch

from e2e.errors import E2EError
from e2e.inference import onnx_metadata, predict
from e2e.inference.onnx_model import OnnxModel, worst_difference
from e2e.stages import export

from support.model_dirs import TASKS, TOLERANCE, exported, reference

OWN = pytest.mark.parametrize("formats_dir", ["own"], indirect=True)
OUTPUT = {"electron_photon": "probability", "quark_gluon": "probability", "jet_mass": "mass"}  # the graph's output


@OWN
def test_the_graph_carries_no_checkout_paths(raw_root):
    """Guards against: the exporter's per-node stack traces (absolute paths of the checkout) and Python class
    paths left in model.onnx, which then differs between two clones of one commit, and after any module move."""
    model_path, _ = exported(raw_root, "quark_gluon")
    graph = onnx.load(model_path.parent / "model.onnx").graph
    assert graph.node and not [p.key for node in graph.node for p in node.metadata_props]
    assert str(Path(export.__file__).parent) not in (model_path.parent / "model.onnx").read_bytes().decode("latin-1")


@pytest.mark.parametrize("task", TASKS)
def test_the_onnx_graph_equals_pytorch_and_carries_its_preprocessing(raw_root, task):
    model_path, data = exported(raw_root, task)
    onnx_model = OnnxModel(model_path.parent / "model.onnx")
    x = data.images[np.arange(len(data.target))][:, torch.load(model_path, weights_only=True)["spec"]["channels"]]
    assert worst_difference(onnx_model(x), reference(model_path, data)) <= TOLERANCE
    assert len(onnx_model(x[:1])) == 1  # the batch axis is dynamic: one image, and all of them above
    meta, pre = onnx_model.meta, json.loads((model_path.parent / "preprocessing.json").read_text())
    assert meta["task"] == task and meta["preprocessing"] == pre
    assert (
        meta["channels"]
        == pre["channel_names"]
        == [data.meta["channel_names"][c] for c in torch.load(model_path, weights_only=True)["spec"]["channels"]]
    )
    assert meta["input_shape"] == [None, x.shape[1], *x.shape[2:]]
    assert meta["output_unit"] == ("GeV" if task == "jet_mass" else "")
    # a single model's graph: its one output, as before ensembles
    assert meta["members"] == 1 and [o.name for o in onnx_model.session.get_outputs()] == [OUTPUT[task]]
    assert meta["training_data"] == {"path": "data/converted/" + task, "md5": onnx_metadata.dir_md5(data.path)}


@OWN
def test_an_ensemble_graph_also_returns_each_members_prediction(raw_root):
    """Its layout; the members' values on every task and both backends: test_predict's unlabelled test."""
    task = "jet_mass"
    model_path, data = exported(raw_root, task, members=2)
    onnx_model = OnnxModel(model_path.parent / "model.onnx")
    assert [o.name for o in onnx_model.session.get_outputs()] == [OUTPUT[task], "members"]
    assert onnx_model.meta["members"] == 2
    x = data.images[np.arange(len(data.target))][:, torch.load(model_path, weights_only=True)["spec"]["channels"]]
    prediction, members = onnx_model.run(x)
    assert members.shape == (len(x), 2) and onnx_model.run(x[:1])[1].shape == (1, 2)
    assert worst_difference(members, reference(model_path, data, members=True)) <= TOLERANCE
    assert worst_difference(prediction, reference(model_path, data)) <= TOLERANCE


def test_the_training_data_md5_is_the_one_dvc_lock_records(tmp_path):
    """dir_md5 against DVC's own hashing of a directory, so a deployed model can be traced in dvc.lock."""
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db import HashFileDB
    from dvc_objects.fs.local import LocalFileSystem

    d = tmp_path / "data"
    (d / "sub").mkdir(parents=True)
    (d / "a.npy").write_bytes(b"\x93NUMPY" + bytes(range(256)) * 10)
    (d / "sub" / "b.json").write_text('{"x": 1}\r\n')  # DVC 3 hashes bytes: no dos2unix
    fs = LocalFileSystem()
    _, _, obj = build(HashFileDB(fs, str(tmp_path / "cache")), str(d), fs, "md5")
    assert onnx_metadata.dir_md5(d) == obj.hash_info.value


@OWN
@pytest.mark.parametrize("members, output", [(1, 0), (2, 0), (2, 1)])
def test_a_graph_that_differs_from_pytorch_fails_the_stage_naming_the_model(raw_root, monkeypatch, members, output):
    """Every output is checked: an ensemble's `members` as well as its mean."""
    real = export.to_onnx

    def off_by_a_bit(model, *args):  # the exported graph with 1e-3 added to one of its outputs
        proto = real(model, *args)
        out = proto.graph.output[output]  # other nodes may read it (the mean reads `members`): a new tensor
        proto.graph.initializer.append(onnx.numpy_helper.from_array(np.float32(1e-3), "nudge"))
        proto.graph.node.append(onnx.helper.make_node("Add", [out.name, "nudge"], ["nudged"]))
        out.name = "nudged"
        return proto

    monkeypatch.setattr(export, "to_onnx", off_by_a_bit)
    with pytest.raises(E2EError, match=r"model.onnx \(model lenet5\): onnxruntime differs from PyTorch by"):
        exported(raw_root, "quark_gluon", members=members)
    assert not (raw_root / "models" / "quark_gluon" / "model.onnx").exists()


@pytest.mark.parametrize("task", TASKS)
def test_predict_with_onnx_equals_predict_with_torch(raw_root, tmp_path, task):
    model_path, data = exported(raw_root, task)
    files = [raw_root / "data" / "raw" / task / s["file"] for s in data.meta["sources"]]
    tables = {}
    for backend in ("torch", "onnx"):
        out = tmp_path / f"{backend}.parquet"
        model = model_path.parent / ("model.pt" if backend == "torch" else "model.onnx")
        predict.main(task, files, out, model, batch_rows=3, device_name="cpu", backend=backend)
        tables[backend] = pq.read_table(out).to_pandas()
    assert list(tables["onnx"].columns) == list(tables["torch"].columns)
    assert worst_difference(tables["onnx"]["prediction"], tables["torch"]["prediction"]) <= TOLERANCE
    for column in tables["torch"].columns.drop("prediction"):
        assert tables["onnx"][column].equals(tables["torch"][column]), column


BLOCK_TORCH = """
import sys
sys.modules["torch"] = None  # as if not installed: `import torch` fails, importlib.util.find_spec gives None
from e2e.cli import main
main(sys.argv[1:])
"""


@OWN
def test_predict_with_onnx_needs_no_torch(raw_root, tmp_path):
    """A deployment machine with onnxruntime only: the backend defaults to onnx and never imports torch."""
    model_path, data = exported(raw_root, "quark_gluon")
    files = [str(raw_root / "data" / "raw" / "quark_gluon" / s["file"]) for s in data.meta["sources"]]
    out = tmp_path / "p.parquet"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            BLOCK_TORCH,
            "--root",
            str(raw_root),
            "predict",
            "quark_gluon",
            "--input",
            *files,
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "(onnx)" in proc.stdout
    assert len(pq.read_table(out)) == len(data.target)


@OWN
def test_a_file_that_is_not_an_e2e_export_is_one_clear_error(raw_root, tmp_path):
    model_path, _ = exported(raw_root, "quark_gluon")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a protobuf")
    with pytest.raises(E2EError, match="junk.onnx: not a loadable ONNX model"):
        predict.main("quark_gluon", [], tmp_path / "p.parquet", junk, backend="onnx")
    stripped = onnx.load(model_path.parent / "model.onnx")
    del stripped.metadata_props[:]
    onnx.save(stripped, tmp_path / "bare.onnx")
    with pytest.raises(E2EError, match="bare.onnx: not an e2e export, its metadata lacks"):
        predict.main("quark_gluon", [], tmp_path / "p.parquet", tmp_path / "bare.onnx", backend="onnx")
    with pytest.raises(E2EError, match="model.onnx: a model for task 'quark_gluon', not 'electron_photon'"):
        predict.main("electron_photon", [], tmp_path / "p.parquet", model_path.parent / "model.onnx", backend="onnx")
