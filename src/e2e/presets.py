"""A preset is a partial params.yaml; it becomes `-S key=value` arguments for `dvc exp run`."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from .errors import E2EError


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def set_args(path: Path) -> list[str]:
    if not path.is_file():
        choices = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise E2EError(f"{path}: no such preset; choices: {choices}")
    tree = yaml.safe_load(path.read_text()) or {}
    # JSON without spaces is valid YAML for DVC and survives the shell's word splitting
    return [f"-S {k}={json.dumps(v, separators=(',', ':')) if not isinstance(v, str) else v}"
            for k, v in flatten(tree).items()]
