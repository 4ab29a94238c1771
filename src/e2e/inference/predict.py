"""`e2e predict <task> --input FILE... --output predictions.parquet [--backend torch|onnx]`: a trained
model on new raw files.

Streams reader batches -> the training's preprocessing -> model -> one parquet row group per batch,
so memory stays bounded on files larger than RAM. The preprocessing (channel selection, scale,
clipping, storage dtype) is the training's own, never re-derived from today's params.yaml (which could
silently mismatch a model trained under other params): `preprocessing.json` beside model.pt, which
`train` writes, or the metadata inside model.onnx, which `export` writes. The onnx backend runs with
onnxruntime alone, so it works where torch is not installed.

The output: `file`, `row` (in that file), `prediction`, `truth` (the file's label or target), then for an
ensemble `uncertainty` and `prediction_member<k>` (e2e.evaluation.members, as evaluate writes them), then the
observers. Files without their target column/key predict too: `truth` is written only when every input
file has one, so a column is never partly empty.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from e2e.config import ConvertParams
from e2e.conversion.preprocess import preprocess, to_storage
from e2e.errors import E2EError
from e2e.evaluation.members import ensemble_columns
from e2e.inference.inputs import IMAGE_INPUTS, POINT_INPUTS, InputLayout
from e2e.sources.batch import Batch
from e2e.sources.readers import Reader, open_reader
from e2e.sources.registry import get_dataset
from e2e.store.atomic import atomic_path
from e2e.store.sparse import densify
from e2e.tasks import get_task

if TYPE_CHECKING:
    import pyarrow as pa


def load_preprocessing(path: Path) -> ConvertParams:
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise E2EError(
            f"{path}: missing; it is written by `train` beside model.pt (retrain the model, "
            "`dvc repro train@<task>`, or pass --model inside a complete model directory)"
        ) from None
    except json.JSONDecodeError as exc:
        raise E2EError(f"{path}: not valid JSON ({exc})") from None
    return parse_preprocessing(raw, path)


def parse_preprocessing(raw: dict[str, Any], path: Path | str) -> ConvertParams:
    try:
        pre = raw["preprocessing"]
        scale = tuple(pre["scale"]) if pre["scale"] is not None else None
        return ConvertParams(
            dtype=raw["dtype"],
            channels=tuple(raw["channels"]),
            scale=scale,
            clip=pre["clip"],
            zero_below=pre["zero_below"],
            nonfinite=pre["nonfinite"],
        )
    except (KeyError, TypeError) as exc:
        raise E2EError(
            f"{path}: expected dtype, channels and preprocessing.{{scale, clip, zero_below, nonfinite}}; missing {exc}"
        ) from None


def check_model(task: str | None, in_channels: int, task_name: str, cfg: ConvertParams, path: Path) -> None:
    if (task or task_name) != task_name:
        raise E2EError(f"{path}: a model for task {task!r}, not {task_name!r}")
    if cfg.channels is not None and in_channels != len(cfg.channels):  # parse_preprocessing always names them
        raise E2EError(f"{path}: model takes {in_channels} channels but its preprocessing selects {len(cfg.channels)}")


# a backend's function of the model's named inputs (e2e.inference.inputs): (predictions (N,), an ensemble's
# members' predictions (N, K) or None)
Outputs = tuple[np.ndarray, np.ndarray | None]
Apply = Callable[[dict[str, np.ndarray]], Outputs]
# what loading a backend gives: its Apply, the training's preprocessing, and the inputs the model takes
Loaded = tuple[Apply, ConvertParams, InputLayout]


def torch_backend(task_name: str, path: Path, device_name: str) -> Loaded:
    """Loaded of model.pt and the preprocessing.json beside it."""
    import torch

    from e2e.models.wrappers import Ensemble
    from e2e.runtime.device import select_device, set_tf32
    from e2e.store.checkpoints import load_checkpoint

    cfg = load_preprocessing(path.parent / "preprocessing.json")
    device = select_device(device_name)
    set_tf32(False)  # IEEE float32 on a GPU too (cuDNN would use TF32 for convolutions)
    model, spec, _ = load_checkpoint(path, device)
    check_model(spec.task, spec.in_channels, task_name, cfg, path)
    layout = InputLayout(
        points=bool(spec.points),
        max_points=spec.max_points,
        energy_channels=tuple(spec.energy_channels or ()),
        global_inputs=tuple(spec.global_inputs or ()),
    )

    def apply(named: dict[str, np.ndarray]) -> Outputs:
        tensors = {k: torch.from_numpy(v).to(device) for k, v in named.items()}
        # Standardized takes images, (images, globals), or (points, features, mask, globals or None)
        order = POINT_INPUTS if layout.points else IMAGE_INPUTS
        x = tuple(tensors.get(k) for k in order) if len(tensors) > 1 else tensors["images"]
        with torch.inference_mode():  # float32 throughout: the same numbers on every device
            raw = model(x)
            each = model.decode_members(raw).float().cpu().numpy() if isinstance(model, Ensemble) else None
            return model.decode(raw).float().cpu().numpy(), each

    return apply, cfg, layout


def onnx_layout(meta: dict[str, Any], path: Path) -> InputLayout:
    """The inputs an exported graph takes, from its metadata 'inputs' (absent: images alone)."""
    inputs = meta.get("inputs")
    if inputs is None:
        return InputLayout()
    try:
        if "points" not in inputs:
            return InputLayout(global_inputs=tuple(inputs["globals"]))
        energy = tuple(inputs["channels"].index(name) for name in inputs["energy_channels"])
        return InputLayout(
            points=True, max_points=inputs["max_points"], energy_channels=energy, global_inputs=tuple(inputs["globals"])
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise E2EError(
            f"{path} (metadata 'inputs'): expected globals, channels, energy_channels, max_points ({exc!r})"
        ) from None


def onnx_backend(task_name: str, path: Path, device_name: str) -> Loaded:
    """Loaded of an exported model.onnx, its preprocessing and inputs from its metadata."""
    from e2e.inference.onnx_model import OnnxModel

    if device_name not in ("auto", "cpu"):
        raise E2EError(f"--device {device_name}: the onnx backend runs on the CPU (onnxruntime's CPU provider)")
    model = OnnxModel(path)
    cfg = parse_preprocessing(model.meta["preprocessing"], f"{path} (metadata 'preprocessing')")
    check_model(model.meta["task"], model.meta["input_shape"][1], task_name, cfg, path)
    return model.run, cfg, onnx_layout(model.meta, path)


BACKENDS: dict[str, tuple[Callable[[str, Path, str], Loaded], str]] = {
    "torch": (torch_backend, "model.pt"),
    "onnx": (onnx_backend, "model.onnx"),
}


def default_backend() -> str:
    """torch where it is installed (the model as trained), else the exported graph."""
    return "torch" if importlib.util.find_spec("torch") else "onnx"


def batch_table(path: Path, start: int, batch: Batch, outputs: Outputs, labelled: bool) -> pa.Table:
    import pyarrow as pa

    prediction, each = outputs
    n = len(prediction)
    columns = {
        "file": pa.array([path.name] * n, pa.string()),
        "row": np.arange(start, start + n, dtype=np.int64),
        "prediction": prediction.astype(np.float32),
    }
    if labelled:  # every file has its target
        assert batch.target is not None
        columns["truth"] = batch.target.astype(np.float32)
    if each is not None:
        columns.update({k: v.astype(np.float32) for k, v in ensemble_columns(each).items()})
    columns.update({k: v.astype(np.float32) for k, v in batch.observers.items()})
    return pa.table(columns)


def predict_files(loaded: Loaded, readers: list[Reader], out: Path, *, batch_rows: int) -> int:
    import pyarrow.parquet as pq

    apply, cfg, layout = loaded
    total, writer = sum(r.n_rows for r in readers), None
    labelled = all(r.has_target for r in readers)  # one schema for every row group
    with atomic_path(out) as tmp, tqdm(total=total, desc=f"predict {out.name}", unit="img", disable=None) as bar:
        try:
            for reader in readers:
                start = 0
                for batch in reader.batches(batch_rows):
                    where = f"{reader.path} rows {start}-{start + len(batch.images)}"
                    entries, _ = preprocess(batch.images, cfg, where)
                    # what the model was trained on: the values as stored in the converted dtype
                    n_channels = batch.images.shape[1] if cfg.channels is None else len(cfg.channels)
                    shape = (n_channels, *batch.images.shape[2:])
                    x = densify(to_storage(entries, cfg.dtype, where, reader.dataset.name), shape)
                    outputs = apply(layout.build(x, batch.observers, where))
                    table = batch_table(reader.path, start, batch, outputs, labelled)
                    writer = writer or pq.ParquetWriter(tmp, table.schema)
                    writer.write_table(table)
                    start += len(batch.images)
                    bar.update(len(batch.images))
                reader.close()
        finally:
            if writer is not None:
                writer.close()
    return total


def main(
    task_name: str,
    inputs: list[Path],
    output: Path,
    model_path: Path | None = None,
    *,
    root: Path = Path("."),
    batch_rows: int = 256,
    device_name: str = "auto",
    backend: str | None = None,
) -> int:
    task = get_task(task_name)
    backend = backend or default_backend()
    load, default_name = BACKENDS[backend]
    model_path = Path(model_path) if model_path else Path(root) / "models" / task_name / default_name
    loaded = load(task_name, model_path, device_name)
    ds = get_dataset(task.dataset)
    # every header validated before anything is written
    readers = [open_reader(ds, Path(f), require_target=False) for f in inputs]
    n = predict_files(loaded, readers, Path(output), batch_rows=batch_rows)
    unlabelled = [r.path.name for r in readers if not r.has_target]
    note = f"; no truth column ({len(unlabelled)} file(s) without a target, e.g. {unlabelled[0]})" if unlabelled else ""
    print(f"{output}: {n} predictions from {len(readers)} file(s) with {model_path} ({backend}){note}")
    return n
