"""Checkpoints that describe themselves (the model spec, task, epoch, metrics) and load with
torch.load(weights_only=True): everything in them is a tensor or a plain value."""

from __future__ import annotations

from pathlib import Path

import torch

from e2e.errors import E2EError
from e2e.models.wrappers import Ensemble, Standardized, wrap_from_spec
from e2e.store.atomic import atomic_path


def save_checkpoint(path: Path, model: Standardized, spec: dict, **info) -> None:
    """Everything in it is a tensor or a plain value, so it loads with torch.load(weights_only=True)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"spec": spec, "state_dict": state, **info}, tmp)


def load_checkpoint(path: Path, device="cpu") -> tuple[Standardized | Ensemble, dict]:
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise E2EError(f"{path}: no checkpoint; run `dvc repro train@<task>` first") from None
    except Exception as exc:  # includes the unpickling error that refuses arbitrary objects
        raise E2EError(
            f"{path}: refused to load checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0]})"
        ) from None
    model = wrap_from_spec(ckpt["spec"])
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval(), ckpt
