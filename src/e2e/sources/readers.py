"""The real file formats, by the registry's name for each (e2e.sources.registry.Dataset.format), and the
opening checks every input file passes first.

Every failure becomes one E2EError naming the file, what was expected and what was found.
"""

from __future__ import annotations

from pathlib import Path

from e2e.errors import E2EError
from e2e.sources.hdf5_reader import HDF5Reader
from e2e.sources.parquet_reader import ParquetReader
from e2e.sources.registry import Dataset

Reader = HDF5Reader | ParquetReader
READERS: dict[str, type[Reader]] = {"hdf5": HDF5Reader, "parquet": ParquetReader}


def open_reader(dataset: Dataset, path: Path, *, require_target: bool = True) -> Reader:
    """require_target=False (predict): a file without the target column/key reads with Batch.target None."""
    if not path.is_file():
        raise E2EError(f"{path}: missing input file for dataset {dataset.name}")
    if path.stat().st_size == 0:
        raise E2EError(f"{path}: empty file")
    reader = READERS[dataset.format](dataset, path, require_target=require_target)
    if reader.n_rows == 0:
        raise E2EError(f"{path}: holds no rows")
    return reader
