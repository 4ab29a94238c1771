"""A task's split: train, val and test row indices, one .npy each (written by the split stage)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from e2e.store.arrays import load_array

PARTS = ("train", "val", "test")


def load_split(path: Path) -> dict[str, np.ndarray]:
    return {p: load_array(path / f"{p}.npy") for p in PARTS}
