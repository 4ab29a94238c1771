"""Ensembles (`train.<task>.ensemble`): what each member trains on, and the members joined into one model.

mode `seeds`: member k trains on the whole training split with seed `seed + k` (initialisation and
shuffling differ); mode `subsets`: on the k-th of N disjoint, equal shares of the training split, as the
electron/photon survey's best result did. Every member keeps its own best epoch on the whole validation
split. One member (the default) is the plain model of `seed`, exactly as without this module.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from e2e.config import TrainParams
from e2e.errors import E2EError
from e2e.models.wrappers import Ensemble, Standardized
from e2e.store.checkpoints import load_checkpoint, save_checkpoint


def member_rows(train_idx: np.ndarray, tp: TrainParams) -> list[tuple[int, np.ndarray]]:
    """(seed, training rows) of each member."""
    n, mode = tp.ensemble.members, tp.ensemble.mode
    if n == 1 or mode == "seeds":
        return [(tp.seed + k, train_idx) for k in range(n)]
    if len(train_idx) < 2 * n:
        raise E2EError(
            f"params.yaml train.<task>.ensemble: {n} disjoint subsets of {len(train_idx)} training rows "
            "leave fewer than 2 rows each; use fewer members or mode seeds"
        )
    shares = np.array_split(np.random.default_rng(tp.seed).permutation(train_idx), n)
    return [(tp.seed + k, np.sort(share)) for k, share in enumerate(shares)]


def member_dir(workdir: Path, k: int, n: int) -> Path:
    """A single model works in `workdir` itself, as before ensembles; member k of several in member<k+1>/."""
    return workdir if n == 1 else workdir / f"member{k + 1}"


def join(checkpoints: list[Path], out: Path, mode: str) -> None:
    """The members' best checkpoints as one Ensemble checkpoint at `out` (for evaluate, predict, export)."""
    loaded = [load_checkpoint(p) for p in checkpoints]
    members = [model for model, _, _ in loaded if isinstance(model, Standardized)]
    if len(members) != len(loaded):  # each member's best.pt holds one model
        raise E2EError(f"{out}: a member's checkpoint among {[str(p) for p in checkpoints]} holds an ensemble")
    (_, first, ckpt), epochs = loaded[0], [int(c["epoch"]) for _, _, c in loaded]
    spec = dataclasses.replace(first, members=len(members), ensemble_mode=mode)
    save_checkpoint(out, Ensemble(members), spec, epoch=ckpt["epoch"], member_epochs=epochs)
