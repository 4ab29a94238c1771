"""An exported model, `models/<task>/model.onnx`, run with onnxruntime: no torch needed.

The graph takes images as the converter stores them (after channel selection, scale, clip, as float32)
and returns the probability of class 1, or the mass in GeV: the input standardisation and the output
decoding are inside it. An ensemble's graph has a second output, `members` (N, K): each member's
prediction, whose mean is the first output. Everything a deployment needs to prepare those images
travels in the graph's metadata (string -> JSON), which e2e.stages.export writes and this module reads:

    task, model, channels (names), preprocessing (as preprocessing.json), input_shape ([null, C, H, W]),
    output (what it means), output_unit, training_data ({path, md5} as dvc.lock spells it),
    git_revision ({commit, dirty}), best_epoch, members (K; 1 for a single model, whose graph has one output)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from e2e.errors import E2EError, first_line

REQUIRED = ("task", "channels", "preprocessing", "input_shape", "output", "output_unit")


def session(source: bytes | str | Path, threads: int = 0):
    """An onnxruntime CPU session; threads 0 lets onnxruntime choose (one per core)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3  # errors only: its warnings about unused initialisers are noise here
    return ort.InferenceSession(
        source if isinstance(source, bytes) else str(source), options, providers=["CPUExecutionProvider"]
    )


class OnnxModel:
    """`model(images)` -> float32 predictions (N,), for images (N, C, H, W) float32; `model.run(images)` ->
    (predictions, the members' predictions (N, K) of an ensemble's graph, else None). A graph of several
    inputs (a point model's, or one with jet-level inputs: metadata 'inputs') takes them by name, a dict."""

    def __init__(self, path: Path, threads: int = 0):
        self.path = Path(path)
        if not self.path.is_file():
            raise E2EError(f"{self.path}: no exported model; run `dvc repro export@<task>` first")
        try:
            self.session = session(self.path, threads)
        except Exception as exc:  # onnxruntime raises its own classes for a corrupt or foreign file
            raise E2EError(f"{self.path}: not a loadable ONNX model ({first_line(exc, limit=200)})") from None
        raw = self.session.get_modelmeta().custom_metadata_map
        missing = [k for k in REQUIRED if k not in raw]
        if missing:
            raise E2EError(f"{self.path}: not an e2e export, its metadata lacks {missing}")
        self.meta = {k: json.loads(v) for k, v in raw.items()}
        self.input_name = self.session.get_inputs()[0].name

    def run(self, inputs: np.ndarray | dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        named = inputs if isinstance(inputs, dict) else {self.input_name: np.ascontiguousarray(inputs, np.float32)}
        outputs = self.session.run(None, {k: np.ascontiguousarray(v) for k, v in named.items()})
        return outputs[0], (outputs[1] if len(outputs) > 1 else None)

    def __call__(self, inputs: np.ndarray | dict[str, np.ndarray]) -> np.ndarray:
        return self.run(inputs)[0]


def worst_difference(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| / max(1, |want|): absolute for probabilities (<= 1), relative for masses of
    hundreds of GeV, which float32 itself resolves only to ~3e-5 GeV."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want) / np.maximum(1.0, np.abs(want)), initial=0.0))
