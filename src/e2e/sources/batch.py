"""What every reader yields (Batch), and what both readers share: finding a column or key among the names a
dataset accepts, and library errors squeezed into the one line the CLI promises."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from e2e.errors import E2EError


@dataclass
class Batch:
    images: np.ndarray  # (b, C, H, W) float32, channels-first
    target: np.ndarray | None  # (b,) float32; None from a file without one, opened with require_target=False
    observers: dict[str, np.ndarray]


Transform = Callable[[Batch, int], Any]  # (batch, index of its first row in the file) -> anything


def one_line(exc: BaseException) -> str:
    """Library messages (thrift, HDF5) span several lines; the CLI promises one."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def find(found: list[str], accepted: tuple[str, ...]) -> str | None:
    """The first accepted name that is found, None if none is."""
    return next((name for name in accepted if name in found), None)


def pick(found: list[str], accepted: tuple[str, ...], path: Path, what: str) -> str:
    name = find(found, accepted)
    if name is None:
        raise E2EError(f"{path}: no {what} column/key; expected one of {list(accepted)}, found {sorted(found)}")
    return name
