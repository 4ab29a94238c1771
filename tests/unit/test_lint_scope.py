"""`make lint` reads every Python file git tracks.

pyproject.toml's ruff exclude once held "tune", meant for the study journals `e2e tune` writes under ./tune;
ruff matches such a pattern as any path component, so it skipped src/e2e/tune as well, and the whole Optuna
package went unlinted (two unused imports, a seven-positional-argument function) while `make lint` read clean.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def tracked_python() -> set[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: no list of tracked files to compare with")
    out = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def linted(*extra: str) -> set[str]:
    """The files `ruff check .` (as `make lint` runs it) would read, relative to the repository root."""
    ruff = Path(sys.executable).parent / "ruff"
    cmd = [str(ruff), "check", "--no-cache", "--show-files", *extra, "."]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
    return {Path(line).resolve().relative_to(ROOT).as_posix() for line in out.stdout.split()}


def test_ruff_reads_every_tracked_python_file():
    assert sorted(tracked_python() - linted()) == []


def test_the_check_notices_a_package_left_out():
    """What the bug looked like: an exclude pattern that names a package's directory."""
    missed = tracked_python() - linted("--extend-exclude", "tune")
    assert "src/e2e/tune/search.py" in missed
