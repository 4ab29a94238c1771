"""An ensemble's per-event columns, from its members' predictions: the one definition that evaluate and
predict (both backends) write. numpy only, so that predict's onnx backend runs where torch is not installed."""

from __future__ import annotations

import numpy as np


def ensemble_columns(each: np.ndarray) -> dict[str, np.ndarray]:
    """`uncertainty` (per event, the standard deviation of the members' predictions) and each member's
    `prediction_member<k>` (k from 1), from the (N, K) predictions of K members."""
    cols = {"uncertainty": each.std(axis=1)}
    cols.update({f"prediction_member{k + 1}": each[:, k] for k in range(each.shape[1])})
    return cols
