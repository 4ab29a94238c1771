"""`make test` on a fresh clone with nothing beside it (no ../shared/formats, no $E2E_FORMATS).

A physicist's clone has only the repository: the tests that convert, download and train on files in the
real layouts must then run on the project's own files (tests/support/real_layout.py), not fail and not all skip.
This copies tests/ and pyproject.toml into an empty directory, so that nothing lies beside the copy, and
runs a small, fast selection there with the installed package.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SELECTION = ["tests/stages/test_train.py::test_same_seed_gives_identical_metrics", "tests/stages/test_convert.py"]


def source(test_id: str) -> str | None:
    """'own' or 'shared' for a test parametrized by formats_dir, else None."""
    match = re.search(r"[\[-](own|shared)[\]-]", test_id)
    return match.group(1) if match else None


def outcomes(junit: Path) -> dict[str, tuple[str, str]]:
    """test id -> (outcome, skip message) from a JUnit XML report."""
    out = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        kinds = {child.tag: child for child in case if child.tag in ("skipped", "failure", "error")}
        if "failure" in kinds or "error" in kinds:
            out[name] = ("failed", "")
        elif "skipped" in kinds:
            out[name] = ("skipped", kinds["skipped"].get("message", ""))
        else:
            out[name] = ("passed", "")
    return out


def test_a_fresh_clone_without_shared_formats_runs_the_real_layout_tests(tmp_path):
    clone = tmp_path / "clone"
    shutil.copytree(ROOT / "tests", clone / "tests", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copyfile(ROOT / "pyproject.toml", clone / "pyproject.toml")
    assert not (tmp_path / "shared").exists()  # ../shared/formats of the copy
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["E2E_FORMATS"] = str(tmp_path / "no-such-formats")
    env.setdefault("OMP_NUM_THREADS", "1")  # training's two threads would spin for minutes on a busy 2-core machine
    junit = tmp_path / "junit.xml"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            *SELECTION,
            "-x",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={junit}",
            f"--basetemp={tmp_path / 'basetemp'}",
        ],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = proc.stdout[-4000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, report
    results = outcomes(junit)
    passed = [name for name, (kind, _) in results.items() if kind == "passed"]
    skipped = {name: why for name, (kind, why) in results.items() if kind == "skipped"}
    assert any("test_same_seed_gives_identical_metrics" in name and source(name) == "own" for name in passed), report
    assert sum("test_convert" in name and source(name) == "own" for name in passed) >= 20, report
    # the only skips: the shared files' cases, each saying why
    assert skipped and all(
        source(name) == "shared" and "shared reference files not found" in why for name, why in skipped.items()
    ), skipped
    assert not [name for name in results if source(name) == "own" and name not in passed], report
