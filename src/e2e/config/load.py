"""Reading params.yaml: YAML parsed, then every value checked by e2e.config.schema before a stage sees it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from e2e.config.params import Params
from e2e.errors import E2EError, first_line


def parse_params(raw: Any, source: str = "params.yaml") -> Params:
    """params.yaml's content as Params, every value checked by type and range (e2e.config.schema) before
    any stage reads data; the first mistake is an E2EError of one line naming `source`, key and value."""
    from e2e.config.schema import check  # pydantic: imported only when params are read

    return check(raw, source)


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise E2EError(f"{path}: not found; run from the repository root") from None
    except yaml.YAMLError as exc:
        raise E2EError(f"{path}: not valid YAML ({first_line(exc)})") from None
    return parse_params(raw, str(path))
