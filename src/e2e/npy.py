"""Sequential .npy writing: the header first, then rows appended, so memory stays bounded.

A write-mode memmap would keep every dirty page of a multi-GB array resident; appending through
a file handle lets the kernel write back as we go.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.lib import format as npformat

from .errors import E2EError


class NpyAppender:
    def __init__(self, path: Path, shape: tuple[int, ...], dtype):
        self.path, self.shape, self.dtype = path, shape, np.dtype(dtype)
        self.rows = 0
        self.file = open(path, "wb")
        header = {"descr": npformat.dtype_to_descr(self.dtype), "fortran_order": False, "shape": shape}
        npformat.write_array_header_1_0(self.file, header)

    def append(self, rows: np.ndarray) -> None:
        if rows.shape[1:] != self.shape[1:]:
            raise ValueError(f"{self.path}: row shape {rows.shape[1:]} != {self.shape[1:]}")
        self.file.write(np.ascontiguousarray(rows, dtype=self.dtype).data)  # .data: no tobytes() copy
        self.rows += len(rows)

    def __enter__(self) -> NpyAppender:
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is None:
            self.close()
        else:  # the caller is failing: release the handle, and leave the row-count check unraised
            self.file.close()

    def close(self) -> None:
        self.file.close()
        if self.rows != self.shape[0]:
            raise ValueError(f"{self.path}: wrote {self.rows} rows, header says {self.shape[0]}")


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
