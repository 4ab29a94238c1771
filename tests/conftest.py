"""Shared fixtures: the reference files in the real formats, copied into a repository-like tmp root."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from e2e.sources.registry import DATASETS

FORMATS = Path(os.environ.get("E2E_FORMATS", Path(__file__).resolve().parents[2] / "shared" / "formats"))


@pytest.fixture(scope="session")
def formats_dir() -> Path:
    """../shared/formats: tiny files in the real layouts, written independently of our generator."""
    if not FORMATS.is_dir():
        pytest.skip(f"reference format files not found in {FORMATS} (set E2E_FORMATS)")
    return FORMATS


@pytest.fixture
def raw_root(tmp_path, formats_dir) -> Path:
    """A repo-like root whose data/raw/<dataset> holds writable copies of every registered reference file.

    jet_mass gets top_gun_opendata_0.parquet (the one of its seven files there); tests of the schema variant
    copy formats_dir / "jet_mass/variant_am/aToGG_variant.parquet" over it.
    """
    root = tmp_path / "repo"
    for ds in DATASETS.values():
        raw = root / "data" / "raw" / ds.name
        raw.mkdir(parents=True)
        for f in ds.files:
            if (formats_dir / ds.name / f.name).is_file():
                shutil.copyfile(formats_dir / ds.name / f.name, raw / f.name)  # copyfile: not the read-only mode
    return root
