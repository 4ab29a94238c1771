"""Scores of two models on the same events, for the paired-bootstrap tests (test_metrics, test_review)."""

import numpy as np
import pytest


@pytest.fixture
def two_models():
    """Labels, a base model's scores and a head that separates the classes slightly better."""
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 2000).astype(float)
    base = rng.normal(y, 1.0)
    return y, base, base + 0.08 * y
