"""bench/realism_null.py: the floor of bench/realism.py's real-vs-synthetic classifier AUC.

A physicist reads the held-out AUC (0.5: indistinguishable) against this floor. A floor computed on the wrong
class mix, on one sample repeated, or on the report's own synthetic crops would make the generator look
closer to the detector, or further from it, than it is.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def null():
    return _load("realism_null")


@pytest.fixture(scope="module")
def realism():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        return _load("realism")
    finally:
        sys.path.remove(str(ROOT / "bench"))


@pytest.fixture(scope="module")
def synth(realism):
    energy, _, _ = realism.synthetic_crops(150, 23)
    return np.column_stack(list(realism.features(energy).values()))


def test_floor_crops_have_the_real_halfs_class_mix_and_their_own_seed_and_stream(null, realism):
    x, _, y = realism.synthetic_crops((4, 6), 23, stream=null.STREAM)
    assert x.shape == (10, 32, 32) and (y == 0).sum() == 4 and (y == 1).sum() == 6
    assert not np.array_equal(x, realism.synthetic_crops((4, 6), 24, stream=null.STREAM)[0])
    report_crops, _, _ = realism.synthetic_crops(4, 23)  # the report's own crops at its default seed
    assert not np.array_equal(x[:4], report_crops[:4])
    assert null.FIRST_SEED != 23


def test_each_repeat_is_a_new_sample_against_the_same_synthetic_rows(null, realism):
    seen = []

    def record(rows, synth):
        seen.append((rows, synth))
        return 0.5

    drawn = []

    def crops(per_class, seed, *, stream):
        drawn.append((per_class, seed, stream))
        return realism.synthetic_crops(per_class, seed, stream=stream)

    reference = np.zeros((7, 3))
    aucs = null.same_generator(reference, (3, 4), crops=crops, features=realism.features, auc=record, repeats=3)
    assert [d[0] for d in drawn] == [(3, 4)] * 3 and all(d[2] == null.STREAM for d in drawn)
    assert len(aucs) == 3 and all(s is reference for _, s in seen)
    assert all(len(rows) == 7 for rows, _ in seen)
    assert not np.array_equal(seen[0][0], seen[1][0]) and not np.array_equal(seen[1][0], seen[2][0])


def test_the_floor_is_low_and_a_real_difference_still_shows_above_it(null, realism, synth):
    kwargs = dict(crops=realism.synthetic_crops, features=realism.features, auc=realism.classifier_point_auc, repeats=3)
    floor = null.same_generator(synth, (49, 51), **kwargs)
    assert np.median(floor) < 0.62

    def brighter(x):  # a generator whose crops carry 30 % more energy than the reference's
        return realism.features(1.3 * x)

    shifted = null.same_generator(synth, (49, 51), **(kwargs | {"features": brighter}))
    assert shifted.min() > 0.8


def test_sentence_gives_the_median_and_the_95_percent_quantile(null):
    text = null.sentence(np.linspace(0.50, 0.60, 21), (49, 51))
    assert "median 0.550" in text and "at most 0.595" in text and "49 photons, 51 electrons" in text
    assert "over 21 samples" in text
