"""Stage `split`: stratified, seeded train/val/test index arrays.

The e/gamma files are single-class and concatenated, so an unshuffled split would be all photons:
we stratify on the label (classification) or on quantile bins of the target (regression).
"""

from __future__ import annotations

import json

import numpy as np

from e2e.config import Params, Paths, SplitParams
from e2e.errors import E2EError
from e2e.store.arrays import open_array
from e2e.store.atomic import atomic_path
from e2e.store.splits import PARTS
from e2e.tasks import get_task


def strata(target: np.ndarray, classify: bool, n_bins: int) -> np.ndarray:
    if classify:
        return target.astype(np.int64)
    edges = np.quantile(target, np.linspace(0, 1, n_bins + 1)[1:-1])
    return np.searchsorted(edges, target, side="right")


def split_indices(target: np.ndarray, classify: bool, cfg: SplitParams) -> dict[str, np.ndarray]:
    if not (0 < cfg.val_fraction and 0 < cfg.test_fraction and cfg.val_fraction + cfg.test_fraction < 1):
        raise E2EError(
            f"params.yaml split: val_fraction and test_fraction must be > 0 and sum below 1, "
            f"found {cfg.val_fraction} and {cfg.test_fraction}"
        )
    rng = np.random.default_rng(cfg.seed)
    parts: dict[str, list[np.ndarray]] = {p: [] for p in PARTS}
    groups = strata(target, classify, cfg.target_bins)
    seen, taken = 0, {"test": 0, "val": 0}
    for g in np.unique(groups):
        idx = rng.permutation(np.flatnonzero(groups == g))
        seen += len(idx)
        # counts carried across strata, so tiny strata still add up to the requested fractions overall;
        # clamped to the stratum and carried as assigned, so a 1-row stratum cannot swallow val's share
        n_test = min(int(round(seen * cfg.test_fraction)) - taken["test"], len(idx))
        n_val = min(int(round(seen * cfg.val_fraction)) - taken["val"], len(idx) - n_test)
        taken["test"] += n_test
        taken["val"] += n_val
        parts["test"].append(idx[:n_test])
        parts["val"].append(idx[n_test : n_test + n_val])
        parts["train"].append(idx[n_test + n_val :])
    empty = [p for p in PARTS if not sum(len(a) for a in parts[p])]
    if empty:
        raise E2EError(
            f"split: {len(target)} rows are too few to fill {empty} with fractions "
            f"val {cfg.val_fraction}, test {cfg.test_fraction}"
        )
    # sorted indices make memmap reads sequential; training shuffles its own order each epoch
    return {p: np.sort(np.concatenate(v)).astype(np.int64) for p, v in parts.items()}


def summary(target: np.ndarray, parts: dict[str, np.ndarray], classify: bool) -> dict:
    out = {}
    for p, idx in parts.items():
        t = target[idx]
        out[p] = {"n": int(len(idx)), ("positive_fraction" if classify else "target_mean"): float(t.mean())}
    return out


def main(params: Params, task_name: str, paths: Paths) -> None:
    task = get_task(task_name)
    target = np.asarray(open_array(paths.converted(task.dataset) / "target.npy"))
    parts = split_indices(target, task.is_classification, params.split)
    with atomic_path(paths.splits(task_name), is_dir=True) as tmp:
        for p, idx in parts.items():
            np.save(tmp / f"{p}.npy", idx)
        (tmp / "split.json").write_text(json.dumps(summary(target, parts, task.is_classification), indent=2))
    print(json.dumps(summary(target, parts, task.is_classification)))
