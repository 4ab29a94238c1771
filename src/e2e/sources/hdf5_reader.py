"""The e/gamma crops' HDF5 layout streamed as channels-first batches, validating as it goes: every failure is
one E2EError naming the file, what was expected and what was found."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from e2e.errors import E2EError
from e2e.sources.batch import Batch, Transform, find, one_line, pick
from e2e.sources.hdf5_cache import storage, with_chunk_cache
from e2e.sources.registry import Dataset


class HDF5Reader:
    """The e/gamma layout: `X` (N, H, W, C) channels-LAST float32 and `y` (N,) (optional with require_target=False),
    contiguous or chunked (the real files are gzip-compressed chunks); opening logs how `X` is stored, once."""

    def __init__(self, dataset: Dataset, path: Path, *, require_target: bool = True) -> None:
        import h5py

        self.path, self.dataset = path, dataset
        try:
            self.file = h5py.File(path, "r")
        except OSError as exc:
            raise E2EError(f"{path}: not a readable HDF5 file ({one_line(exc)})") from None
        keys = list(self.file.keys())
        image = pick(keys, dataset.image_keys, path, "image")
        target = pick(keys, dataset.target_keys, path, "target") if require_target else find(keys, dataset.target_keys)
        self.source_columns = {"image": image, **({"target": target} if target is not None else {})}
        self.x = with_chunk_cache(self.file, image)
        self.y = None if target is None else self.file[target]
        self.has_target = target is not None
        # on stdout with the stages' other notes: stderr holds only the one line of an error
        print(f"{path}: {storage(self.x)}")
        C, H, W = dataset.shape
        if self.x.ndim != 4 or self.x.shape[1:] != (H, W, C):
            raise E2EError(f"{path}: image shape expected (N, {H}, {W}, {C}) channels-last, found {self.x.shape}")
        for name, ds in (("X", self.x), ("y", self.y)):
            if ds is not None and ds.dtype.kind not in "fiub":
                raise E2EError(f"{path}: {name} must be numeric, found dtype {ds.dtype}")
        if self.y is not None and self.y.shape != (self.x.shape[0],):
            raise E2EError(f"{path}: y shape expected ({self.x.shape[0]},), found {self.y.shape}")
        self.n_rows = int(self.x.shape[0])

    def batches(self, batch_rows: int, transform: Transform | None = None) -> Iterator:
        for start in range(0, self.n_rows, batch_rows):
            stop = min(start + batch_rows, self.n_rows)
            try:
                x = np.asarray(self.x[start:stop], dtype=np.float32)
                y = None if self.y is None else np.asarray(self.y[start:stop], dtype=np.float32)
            except (OSError, RuntimeError) as exc:  # truncated or corrupt chunk
                raise E2EError(f"{self.path}: unreadable rows {start}-{stop} ({one_line(exc)})") from None
            # transpose, never reshape: a reshape of channels-last data scrambles pixels
            batch = Batch(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), y, {})
            yield transform(batch, start) if transform else batch

    def close(self) -> None:
        self.file.close()
