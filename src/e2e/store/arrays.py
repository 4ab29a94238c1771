"""Reading .npy arrays without pickle, whole or memory-mapped."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from e2e.errors import E2EError


def load_array(path: Path, mmap: bool = False) -> np.ndarray:
    """Load (or memory-map read-only) an array, never through pickle: an object array is refused."""
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise E2EError(f"{path}: missing; run the stage that writes it (dvc repro)") from None
    except ValueError as exc:  # object arrays need pickle; a corrupt header lands here too
        raise E2EError(f"{path}: refused to load ({exc})") from None


def open_array(path: Path) -> np.ndarray:
    return load_array(path, mmap=True)
