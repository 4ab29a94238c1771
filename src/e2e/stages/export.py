"""Stage `export`: the best checkpoint as `models/<task>/model.onnx`, checked against PyTorch.

The graph maps images as the converter stores them (N, C, H, W) to the probability of class 1 or the
mass in GeV: standardisation and decoding are inside, and the conversion's preprocessing rides along as
metadata (e2e.inference.onnx_model), so a deployment (CMSSW's ONNX Runtime) needs nothing but this file. An
ensemble's graph also returns each member's prediction (output `members`, (N, K)), from which predict
takes the per-event uncertainty. Before the file is written, onnxruntime must reproduce PyTorch's float32
outputs (all of them) on the first batches of the test split to `export.tolerance`, else the stage fails
naming the model.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn as nn

from e2e.config import ExportParams, Params, Paths
from e2e.errors import E2EError, first_line
from e2e.inference.inputs import IMAGE_INPUTS, POINT_INPUTS
from e2e.inference.onnx_metadata import metadata
from e2e.inference.onnx_model import session, worst_difference
from e2e.models.wrappers import Ensemble, Standardized
from e2e.runtime.batches import Converted
from e2e.runtime.points import batches_for
from e2e.store.atomic import atomic_path
from e2e.store.checkpoints import load_checkpoint
from e2e.store.splits import load_split
from e2e.tasks import get_task

if TYPE_CHECKING:
    from onnx import ModelProto

# (images, targets) batches: the test split's SparseBatches, or any list of them (tests/stages/test_export_registry.py)
Batches = Iterable[tuple[Any, Any]]  # images (N, C, H, W), or a PointBatch for a point model
MEMBERS = "members"  # an ensemble graph's second output


# the graph's input names (e2e.inference.inputs) -> Deployed.forward's parameters, in the signature's order
ARGUMENTS = dict(zip(POINT_INPUTS, ("x", "features", "mask", "globals_"))) | {IMAGE_INPUTS[0]: "x"}


class Deployed(nn.Module):
    """Stored images in, physics out: what the ONNX graph computes, as a tuple of its outputs (the
    prediction, and an ensemble's members' predictions (N, K), whose mean the prediction is)."""

    def __init__(self, model: Standardized | Ensemble):
        super().__init__()
        self.model = model

    def forward(
        self,
        x: torch.Tensor,
        features: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        globals_: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """images (N, C, H, W)[, globals]; or a point model's points (x), features, mask[, globals]
        (models.wrappers). Named arguments, not *inputs: torch.export matches dynamic_shapes to the
        signature's parameters."""
        if is_points(self.model):
            raw = self.model((x, features, mask, globals_))
        else:
            raw = self.model(x if globals_ is None else (x, globals_))
        if not isinstance(self.model, Ensemble):
            return (self.model.decode(raw),)
        each = self.model.decode_members(raw)
        return each.mean(-1), each


def is_points(model: Standardized | Ensemble) -> bool:
    single = model.members[0] if isinstance(model, Ensemble) else model
    return bool(getattr(single, "points", False))


def input_tensors(model: Standardized | Ensemble, x: Any) -> dict[str, torch.Tensor]:
    """The graph's inputs by name for a batch `x`: images, an ImageBatch's images and globals, or a
    PointBatch's points, features, mask[, globals]."""
    if isinstance(x, torch.Tensor):
        return {IMAGE_INPUTS[0]: x}
    names = POINT_INPUTS if is_points(model) else IMAGE_INPUTS
    return {name: t for name, t in zip(names, x, strict=False) if t is not None}


def arguments(inputs: dict[str, Any]) -> dict[str, Any]:
    """Deployed.forward's keyword arguments for the graph's named inputs (tensors, or their dynamic axes)."""
    return {ARGUMENTS[name]: value for name, value in inputs.items()}


def to_onnx(model: Standardized | Ensemble, example: Any, output: str, opset: int, where: str) -> ModelProto:
    """The onnx ModelProto of Deployed(model), its batch axis (and a point model's point axis) dynamic
    (torch.export, the dynamo exporter)."""
    batch, points = torch.export.Dim("batch"), torch.export.Dim("points")
    names = [output, MEMBERS] if isinstance(model, Ensemble) else [output]
    inputs = input_tensors(model, example)
    axes = {k: {0: batch} if k in ("images", "globals") else {0: batch, 1: points} for k in inputs}
    try:
        program = torch.onnx.export(
            Deployed(model).eval(),
            (),
            kwargs=arguments(inputs),
            dynamo=True,
            verbose=False,
            input_names=list(inputs),
            output_names=names,
            dynamic_shapes=arguments(axes),
            opset_version=opset,
        )
    except Exception as exc:  # torch.export's own error classes: the architecture cannot be traced
        raise E2EError(f"{where}: ONNX export failed ({type(exc).__name__}: {first_line(exc)})") from None
    assert program is not None  # None only from the TorchScript exporter (dynamo=False)
    return without_node_sources(program.model_proto)


def without_node_sources(proto: ModelProto) -> ModelProto:
    """The exporter tags every node with where it came from: a stack trace with this checkout's absolute
    paths, and the Python classes and modules. Two clones of one commit would then export different bytes,
    and a refactoring that moves a module would change model.onnx; the graph and weights are the same."""
    for node in proto.graph.node:
        del node.metadata_props[:]
    return proto


def check_parity(
    model: Standardized | Ensemble, graph: bytes, batches: Batches, tolerance: float, where: str
) -> tuple[float, int]:
    """(worst difference over every output, images compared) of onnxruntime against PyTorch float32;
    E2EError beyond tolerance."""
    ort, deployed, worst, n = session(graph), Deployed(model).eval(), 0.0, 0
    with torch.inference_mode():
        for x, _ in batches:
            inputs = input_tensors(model, x)
            got = ort.run(None, {k: t.numpy() for k, t in inputs.items()})
            want = deployed(**arguments(inputs))
            if len(got) != len(want):
                raise E2EError(f"{where}: the graph has {len(got)} output(s), PyTorch {len(want)}")
            worst = max([worst] + [worst_difference(g, w.numpy()) for g, w in zip(got, want)])
            n += len(inputs["images" if "images" in inputs else "points"])
    if not worst <= tolerance:  # also catches NaN
        raise E2EError(
            f"{where}: onnxruntime differs from PyTorch by {worst:.3g} on the test split's first {n} "
            f"images (export.tolerance {tolerance:g}): this model does not export faithfully"
        )
    return worst, n


def export_model(
    model: Standardized | Ensemble, batches: Batches, *, output: str, meta: dict[str, str], ep: ExportParams, where: str
) -> tuple[bytes, float, int]:
    """Serialised graph with its metadata, after the parity check; `where` names the model in errors."""
    import onnx

    first = next(iter(batches))[0]
    # two rows: torch.export specialises a batch axis of size 1
    example = first[:2] if isinstance(first, torch.Tensor) else type(first)(*(t if t is None else t[:2] for t in first))
    proto = to_onnx(model, example, output, ep.opset, where)
    onnx.helper.set_model_props(proto, meta)
    proto.producer_name, proto.doc_string = "e2e", json.loads(meta["output"])
    onnx.checker.check_model(proto)
    graph = proto.SerializeToString()
    worst, n = check_parity(model, graph, batches, ep.tolerance, where)
    return graph, worst, n


def export_dir(
    task_name: str, model_dir: Path, data: Converted, rows: np.ndarray, *, params: Params, root: Path
) -> Path:
    """model_dir/model.onnx from model_dir/model.pt and preprocessing.json; parity checked on `rows` of data."""
    task, ep, out = get_task(task_name), params.export, model_dir / "model.onnx"
    model, spec, ckpt = load_checkpoint(model_dir / "model.pt", "cpu")  # float32, as deployed
    pre = json.loads((model_dir / "preprocessing.json").read_text())
    batches = batches_for(
        spec,
        data,
        np.sort(rows)[: ep.parity_batches * ep.batch_size],
        batch_size=ep.batch_size,
        device=torch.device("cpu"),
        shuffle=False,
        seed=0,
        runtime=params.runtime,
    )
    meta = metadata(task_name, spec, pre, epoch=ckpt["epoch"], data_path=data.path, root=root)
    where = f"{out} (model {spec.model})"
    output = "probability" if task.is_classification else "mass"
    graph, worst, n = export_model(model, batches, output=output, meta=meta, ep=ep, where=where)
    with atomic_path(out) as tmp:
        Path(tmp).write_bytes(graph)
    print(
        f"exported {task_name} ({spec.model}) to {out}: {len(graph) / 1e6:.2f} MB, onnxruntime within "
        f"{worst:.2g} of PyTorch on {n} test images"
    )
    return out


def main(params: Params, task_name: str, paths: Paths) -> None:
    data = Converted(paths.converted(get_task(task_name).dataset))
    rows = load_split(paths.splits(task_name))["test"]
    export_dir(task_name, paths.models(task_name), data, rows, params=params, root=paths.root)
