"""A preset is a partial params.yaml; it becomes `-S key=value` arguments for `dvc exp run`."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from e2e.errors import E2EError


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def read_preset(path: Path) -> dict[str, object]:
    """The preset's keys, flattened to dotted names."""
    if not path.is_file():
        choices = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise E2EError(f"{path}: no such preset; choices: {choices}")
    return flatten(yaml.safe_load(path.read_text()) or {})


def set_args(path: Path, *, device: str | None, gpus: list[str]) -> list[str]:
    """What `e2e preset` prints: the preset's keys as `-S` arguments, and `runtime.device` when `device` is
    given. A preset is sized for a GPU: unless `device` or the preset itself says cpu, it is refused when
    `gpus` (the visible GPUs) is empty, so `make full` stops before downloading anything, not days later."""
    keys = read_preset(path)
    if device is not None:
        from e2e.config import parse_params

        parse_params({"runtime": {"device": device}}, "--device")  # a typo fails here, not in the first stage
        keys["runtime.device"] = device
    if str(keys.get("runtime.device") or "auto") != "cpu" and not gpus:
        raise E2EError(
            f"{path}: sized for a GPU and none is visible (nvidia-smi -L, CUDA_VISIBLE_DEVICES); "
            f"nothing started. To run it on the CPU anyway: --device cpu (`make full DEVICE=cpu`)"
        )
    # JSON without spaces is valid YAML for DVC and survives the shell's word splitting
    return [f"-S {k}={json.dumps(v, separators=(',', ':')) if not isinstance(v, str) else v}" for k, v in keys.items()]
