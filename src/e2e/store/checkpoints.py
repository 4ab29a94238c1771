"""Checkpoints that describe themselves (the model spec, task, epoch, metrics) and load with
torch.load(weights_only=True): everything in them is a tensor or a plain value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from e2e.errors import E2EError
from e2e.models.wrappers import Ensemble, ModelSpec, Standardized, wrap_from_spec
from e2e.store.atomic import atomic_path


def save_checkpoint(path: Path, model: Standardized | Ensemble, spec: ModelSpec, **info: Any) -> None:
    """Everything in it is a tensor or a plain value (the spec too, as a dict), so it loads with
    torch.load(weights_only=True)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"spec": spec.to_dict(), "state_dict": state, **info}, tmp)


def load_checkpoint(
    path: Path, device: str | torch.device = "cpu"
) -> tuple[Standardized | Ensemble, ModelSpec, dict[str, Any]]:
    """(the model in eval mode on `device`, its spec, the checkpoint as stored: epoch, metrics, ...)."""
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise E2EError(f"{path}: no checkpoint; run `dvc repro train@<task>` first") from None
    except Exception as exc:  # includes the unpickling error that refuses arbitrary objects
        raise E2EError(
            f"{path}: refused to load checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0]})"
        ) from None
    try:
        spec = ModelSpec(**ckpt["spec"])
    except (KeyError, TypeError) as exc:  # not a model spec of this code: missing or unknown keys
        raise E2EError(f"{path}: not a checkpoint of e2e ({type(exc).__name__}: {exc})") from None
    model = wrap_from_spec(spec)
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval(), spec, ckpt
