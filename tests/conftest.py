"""Shared fixtures: files in the real formats, from two independent sources, copied into a repository-like tmp root.

`formats_dir` runs every test that uses it (directly or through `raw_root`) twice:
- [own]: the project's own tiny files, written by tests/support/real_layout.py (h5py/pyarrow directly, no code
  shared with the synthetic generator or our readers) into a session temp dir: always available, so a
  fresh clone with nothing beside it tests the converter, the download and training on the real layouts;
- [shared]: ../shared/formats (or $E2E_FORMATS), reference files written by someone else, as CI has
  them; skipped, with the reason, where they are absent.
A test that needs the shared files' real content (the real e/gamma crops) asks for them alone with
`@pytest.mark.parametrize("formats_dir", ["shared"], indirect=True)`.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from e2e.sources.registry import DATASETS

from support import processes
from support.real_layout import write_formats


def pytest_sessionstart(session):
    # every process a test starts inherits this mark (pipeline_repo.env copies os.environ); a pytest run
    # by a test (test_fresh_clone) gets a mark of its own for its own check
    os.environ[processes.MARK] = f"{os.getpid()}-{time.time_ns()}"


def pytest_sessionfinish(session, exitstatus):
    """No test may leave a process behind, pass or fail: any still alive is killed and fails the run.
    Under pytest-xdist each worker checks its own tests; the controller runs none (and its workers carry
    its mark)."""
    if session.config.pluginmanager.hasplugin("dsession"):
        return
    left = {
        pid: cmd
        for pid, cmd in processes.marked(os.environ[processes.MARK]).items()
        if not processes.ends_with_us(pid, cmd)
    }
    if left:
        processes.kill(left)
        print(f"\nerror: {len(left)} process(es) started by tests outlived them (killed now):", file=sys.stderr)
        for pid, cmd in left.items():
            print(f"  {pid} {cmd[:200]}", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


SHARED_FORMATS = Path(os.environ.get("E2E_FORMATS") or Path(__file__).resolve().parents[2] / "shared" / "formats")
SOURCES = ("own", "shared")


@pytest.fixture(scope="session")
def own_formats(tmp_path_factory) -> Path:
    """The project's own files in the real layouts (tests/support/real_layout.py), written once per session."""
    return write_formats(tmp_path_factory.mktemp("own-formats"))


@pytest.fixture(scope="session")
def shared_formats() -> Path:
    """../shared/formats: tiny files in the real layouts, written independently of this project."""
    if not SHARED_FORMATS.is_dir():
        pytest.skip(
            f"shared reference files not found in {SHARED_FORMATS} (CI has them; set E2E_FORMATS to their directory)"
        )
    return SHARED_FORMATS


@pytest.fixture(params=SOURCES)
def formats_dir(request) -> Path:
    """A directory of files in the real layouts (see the module docstring): each test runs on both sources.

    Function-scoped on purpose: a parametrized session fixture would make pytest regroup the whole run by
    source. The files behind it are written (own) or checked (shared) once per session."""
    if request.param not in SOURCES:
        raise ValueError(f"formats_dir: unknown source {request.param!r}; choose among {SOURCES}")
    return request.getfixturevalue(f"{request.param}_formats")


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
