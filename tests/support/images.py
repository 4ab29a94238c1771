"""Small dense images for the batch and GPU tests: float16, sparse-looking, with negative values and empty events."""

from __future__ import annotations

import numpy as np


def dense_images(n: int = 50, shape=(3, 9, 7), seed: int = 0) -> np.ndarray:
    """Sparse-looking float16 images with negative values and a few empty events."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *shape)) * (rng.random((n, *shape)) < 0.1)
    x[[3, 17]] = 0.0
    return x.astype(np.float16)
