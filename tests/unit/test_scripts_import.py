"""Every script under bench/ and scripts/ imports only e2e names that exist, those inside functions too.

Nothing imports these scripts, so nothing else notices when a refactoring removes what they use: bench/convert.py
imported `e2e.convert.convert_files` for weeks after it was gone. The imports are read from the source (the
scripts are not run), then each module is imported and each name looked up.
"""

from __future__ import annotations

import ast
import importlib
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
