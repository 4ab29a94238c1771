"""Stage `convert` run on a repo-like root (the raw_root fixture), and its output read back independently of
e2e.runtime.batches: test_convert and test_convert_variants."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from e2e.config import Paths, parse_params
from e2e.sources.registry import DATASETS
from e2e.stages import convert

JM = "jet_mass"


def raw(root: Path, dataset: str, i: int = 0) -> Path:
    return root / "data" / "raw" / dataset / DATASETS[dataset].files[i].name


def run_convert(root: Path, dataset: str, workers: int = 1, **cfg) -> tuple[dict[str, np.ndarray], dict]:
    """Convert with `cfg` as convert.<dataset>; arrays["images"] is the sparse output densified in the storage
    dtype, independently of e2e.runtime.batches (np.add.at over the stored entries)."""
    files = {JM: [DATASETS[JM].files[0].name]}  # the reference directory has one of the seven
    raw_params = {
        "convert": {dataset: cfg},
        "runtime": {"convert_workers": workers},
        "datasets": {k: {"files": v} for k, v in files.items()},
    }
    convert.main(parse_params(raw_params), dataset, Paths(root))
    return read_converted(root / "data" / "converted" / dataset)


def read_converted(out: Path) -> tuple[dict[str, np.ndarray], dict]:
    arrays = {p.stem: np.load(p, allow_pickle=False) for p in out.glob("*.npy")}
    meta = json.loads((out / "meta.json").read_text())
    values, index, offsets = arrays.pop("values"), arrays.pop("index"), arrays.pop("offsets")
    n, shape = len(offsets) - 1, meta["shape"][1:]
    assert index.dtype == np.int32 and offsets.dtype == np.int64 and offsets[0] == 0 and offsets[-1] == len(values)
    assert np.all(np.diff(offsets) >= 0) and (index.size == 0 or 0 <= index.min() <= index.max() < np.prod(shape))
    assert not np.any(values == 0), "a stored zero: the format keeps non-zero values only"
    images = np.zeros((n, int(np.prod(shape))), values.dtype)
    np.add.at(images, (np.repeat(np.arange(n), np.diff(offsets)), index), values)  # duplicates would add up
    arrays["images"] = images.reshape(n, *shape)
    assert meta["n"] == n and meta["nnz"] == len(values) and meta["format"] == "sparse"
    return arrays, meta


def f16(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32).astype(np.float16)  # the readers hand float32 to the converter
