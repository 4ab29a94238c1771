"""Every script under bench/ and scripts/ imports only e2e names that exist, those inside functions too.

Nothing imports these scripts, so nothing else notices when a refactoring removes what they use: bench/convert.py
imported `e2e.convert.convert_files` for weeks after it was gone. The imports are read from the source (the
scripts are not run), then each module is imported and each name looked up.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted((ROOT / "bench").glob("*.py")) + sorted((ROOT / "scripts").glob("*.py"))


def e2e_imports(source: str) -> list[tuple[str, str | None]]:
    """(module, name) of every `from e2e... import name` and (module, None) of every `import e2e...`."""
    found: list[tuple[str, str | None]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "e2e":
            found += [(node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names if alias.name.split(".")[0] == "e2e"]
    return found


def missing(imports: list[tuple[str, str | None]]) -> list[str]:
    out = []
    for module, name in imports:
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            out.append(f"{module}: {exc}")
            continue
        if name is not None and not hasattr(mod, name):
            try:  # `from e2e import sub` names a submodule
                importlib.import_module(f"{module}.{name}")
            except ImportError:
                out.append(f"{module}.{name}")
    return out


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_e2e_name_a_script_imports_exists(script):
    assert not missing(e2e_imports(script.read_text())), script


def test_the_check_finds_a_name_that_is_gone():
    """The bug it guards against: bench/convert.py's `from e2e.convert import convert_files` in a function."""
    source = "def run_ours():\n    from e2e.stages.convert import convert_files\n    import e2e.no_such_module\n"
    assert missing(e2e_imports(source)) == [
        "e2e.stages.convert.convert_files",
        "e2e.no_such_module: No module named 'e2e.no_such_module'",
    ]


def _constants(path: Path, *names: str) -> list[str]:
    """The string values of module-level assignments in a script, read without running it."""
    values = {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in ast.parse(path.read_text()).body
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and node.targets[0].id in names
    }
    return [values[n] for n in names]


def test_the_scale_baseline_imports_what_its_commit_had():
    """bench/scale.py runs the dense converter of an old commit from a worktree: its child code must import that
    commit's module paths, not today's (after the regroup it imported e2e.stages.convert, absent there)."""
    rev, child = _constants(ROOT / "bench" / "scale.py", "BASELINE", "BASELINE_CHILD")
    if subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{rev}^{{commit}}"], capture_output=True).returncode:
        pytest.skip(f"commit {rev} is not in this clone's history")
    for module, name in e2e_imports(child):
        path = "src/" + module.replace(".", "/")
        shown = [
            subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:{p}"], capture_output=True, text=True)
            for p in (f"{path}.py", f"{path}/__init__.py")
        ]
        source = next((r.stdout for r in shown if r.returncode == 0), None)
        assert source is not None, f"{module} is not in {rev}"
        assert name is None or f"def {name}(" in source or f"class {name}" in source, f"{module}.{name} not in {rev}"
