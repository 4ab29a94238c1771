"""bench/realism_classes.py: how the electron-photon differences of the synthetic crops stand to the real ones.

Its tables tell a physicist which differences a model trained on the synthetic crops would over-trust, and how
well such a model carries over to the real crops; a wrong flag or a classifier trained on the wrong sample
would point the generator's calibration the wrong way.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def classes():
    spec = importlib.util.spec_from_file_location("realism_classes", ROOT / "bench" / "realism_classes.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("real", "synth", "expected"),
    [
        (0.60, 0.62, ""),
        (0.60, 0.80, "stronger"),
        (0.60, 0.51, "weaker"),
        (0.60, 0.30, "reversed"),
        (0.40, 0.20, "stronger"),
    ],
)
def test_flag_says_how_the_synthetic_difference_stands_to_the_real_one(classes, real, synth, expected):
    assert classes.flag(real, (real - 0.07, real + 0.07), synth) == expected


def _crops(rng, n: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """(n, 4, 4) crops whose mean energy is higher for electrons by `shift`, and their labels."""
    y = np.repeat([0.0, 1.0], n // 2)
    return rng.normal(0.0, 1.0, (n, 4, 4)) + shift * y[:, None, None], y


def _mean(x: np.ndarray) -> dict[str, np.ndarray]:
    return {"mean": x.mean((1, 2))}


def test_differences_flag_a_feature_that_separates_the_synthetic_classes_more(classes):
    rng = np.random.default_rng(0)
    (xr, yr), (xs, ys), (xw, yw) = _crops(rng, 400, 0.1), _crops(rng, 2000, 1.0), _crops(rng, 2000, 0.1)
    over = classes.differences(_mean(xr), _mean(xs), yr, ys)[-1]
    alike = classes.differences(_mean(xr), _mean(xw), yr, yw)[-1]
    assert over.endswith("| stronger |"), over
    assert alike.endswith("|  |"), alike


def test_transfer_trains_on_the_synthetic_crops_and_scores_the_real_ones(classes):
    rng = np.random.default_rng(1)
    real = {"same": _crops(rng, 400, 1.0), "reversed": _crops(rng, 400, -1.0)}
    real = {part: (_mean(x), y) for part, (x, y) in real.items()}
    x, y = _crops(rng, 2000, 1.0)
    rows = classes.transfer(real, (_mean(x), y), model=LogisticRegression())
    auc = {row.split(" | ")[0].strip("| "): float(row.split(" | ")[2].split()[0]) for row in rows[2:]}
    assert auc["same"] > 0.9 and auc["reversed"] < 0.1, rows
