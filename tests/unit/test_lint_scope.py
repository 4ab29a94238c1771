"""`make lint` reads every Python file git tracks, and what it lets pass under tests/ cannot hide a test.

pyproject.toml's ruff exclude once held "tune", meant for the study journals `e2e tune` writes under ./tune;
ruff matches such a pattern as any path component, so it skipped src/e2e/tune as well, and the whole Optuna
package went unlinted (two unused imports, a seven-positional-argument function) while `make lint` read clean.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from collections import Counter
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


def twice_defined(source: str) -> list[str]:
    """Test functions and classes a module defines more than once at its top level."""
    names = Counter(
        node.name
        for node in ast.parse(source).body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        and node.name.startswith(("test", "Test"))
    )
    return sorted(name for name, n in names.items() if n > 1)


def test_no_test_module_defines_a_test_twice():
    """pyproject turns ruff's F811 (redefinition) off under tests/, where a fixture imported from tests/support
    is "redefined" as each test's argument; so a pasted test that keeps its name would silently replace the
    first, which then never runs."""
    modules = sorted((ROOT / "tests").rglob("test_*.py"))
    assert len(modules) > 50
    found = {m.relative_to(ROOT).as_posix(): twice_defined(m.read_text()) for m in modules}
    assert {path: names for path, names in found.items() if names} == {}


def test_the_check_finds_a_test_defined_twice():
    assert twice_defined("def test_a():\n    pass\n\n\ndef test_a():\n    pass\n\n\ndef helper():\n    pass\n") == [
        "test_a"
    ]
