"""bench/realism_classes.py: how the electron-photon differences of the synthetic crops stand to the real ones.

Its tables tell a physicist which differences a model trained on the synthetic crops would over-trust, and how
well such a model carries over to the real crops; a wrong flag or a classifier trained on the wrong sample
would point the generator's calibration the wrong way.
"""

from __future__ import annotations

import importlib.util
import re
import sys
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
    sys.modules[spec.name] = module  # its dataclass looks its module up there
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


def _sample(classes, rng, n: int, shift: float):
    x, y = _crops(rng, n, shift)
    return classes.Crops({"mean": x.mean((1, 2))}, {"corner": x[:, 0, 0]}, y)


def _figures(sentence: str) -> list[float]:
    """The means of 'mean [low, high]' figures in a sentence, in order."""
    return [float(mean) for mean in re.findall(r"(\d\.\d{3}) \[\d\.\d{3}, \d\.\d{3}\]", sentence)]


def test_the_yardstick_is_learnt_within_the_real_crops_and_within_synthetic_samples_of_their_size(classes):
    """A weak real difference must read weak and a strong synthetic one strong: swapping the samples, or
    training on one and scoring the other, would make the yardstick say the generator's separation is real."""
    rng = np.random.default_rng(2)
    real, synth = _sample(classes, rng, 200, 0.15), _sample(classes, rng, 2000, 2.0)
    within_real, within_synth = _figures(classes.taught(real, synth, rng))
    assert 0.5 < within_real < 0.7 and within_synth > 0.95, (within_real, within_synth)


def test_the_yardstick_draws_a_new_split_and_synthetic_sample_each_time(classes, monkeypatch):
    seen = []
    monkeypatch.setattr(classes, "linear_within", lambda feats, y, split: seen.append((len(y), y.sum(), split)) or 0.6)
    rng = np.random.default_rng(3)
    real, synth = _sample(classes, rng, 200, 0.0), _sample(classes, rng, 2000, 0.0)
    classes.taught(real, synth, rng)
    n = classes.N_DRAWS
    assert seen[:n] == [(200, 100.0, i) for i in range(n)]  # all the real crops, each time another split
    assert seen[n:] == [(200, 100.0, i) for i in range(n)]  # synthetic samples of the real size, class-balanced


def test_the_linear_classifier_learns_a_difference_and_not_noise(classes):
    rng = np.random.default_rng(4)
    x, y = _crops(rng, 400, 1.0)
    assert classes.linear_within(_mean(x), y, 0) > 0.9
    noisy = rng.normal(0.0, 1.0, (400, 4, 4)) + 0.2 * y[:, None, None]
    assert classes.linear_within(_mean(noisy), y, 0) != classes.linear_within(_mean(noisy), y, 1)  # another split
    assert abs(classes.linear_within(_mean(x), rng.permutation(y), 0) - 0.5) < 0.1


def test_the_section_compares_every_feature_and_ends_with_the_yardstick(classes):
    rng = np.random.default_rng(5)
    real = {part: _sample(classes, rng, 200, 0.3) for part in ("all", "calibration", "held_out")}
    lines = classes.section(
        real,
        _sample(classes, rng, 400, 1.0),
        classifier_auc=lambda a, b, r: (0.6, 0.5, 0.7),
        model=LogisticRegression(),
        rng=rng,
    )
    assert sum(line.startswith(("| mean |", "| corner |")) for line in lines) == 2
    assert [line.split(" | ")[0] for line in lines if line.startswith("| held-out")] == ["| held-out"]
    assert lines[-1].startswith("What the crops teach a classifier by themselves")
