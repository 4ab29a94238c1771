"""Stage `split`: stratified, seeded train/val/test indices, on synthetic label and target arrays."""

from __future__ import annotations

import json

import numpy as np
import pytest

from e2e.config import Paths, SplitParams, parse_params
from e2e.errors import E2EError
from e2e.stages import split
from e2e.store.splits import load_split

CFG = SplitParams(seed=42, val_fraction=0.15, test_fraction=0.2, target_bins=10)


def labels(n: int = 10_000, positive: float = 0.3, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random(n) < positive).astype(np.float32)


def masses(n: int = 10_000, seed: int = 0) -> np.ndarray:
    """Jet-mass-like target: a falling spectrum over 85-500 GeV."""
    return (85 + np.random.default_rng(seed).exponential(80, n).clip(0, 415)).astype(np.float32)


def check_partition(parts: dict[str, np.ndarray], n: int) -> None:
    assert set(parts) == {"train", "val", "test"}
    every = np.concatenate(list(parts.values()))
    assert len(every) == n and np.array_equal(np.sort(every), np.arange(n))  # disjoint and covering
    for idx in parts.values():
        assert idx.dtype == np.int64 and np.all(np.diff(idx) > 0)  # sorted: sequential memmap reads


@pytest.mark.parametrize("classify,target", [(True, labels()), (False, masses())], ids=["labels", "masses"])
def test_parts_are_disjoint_cover_every_row_and_have_the_requested_sizes(classify, target):
    parts = split.split_indices(target, classify, CFG)
    check_partition(parts, len(target))
    assert abs(len(parts["val"]) - 1500) <= 1 and abs(len(parts["test"]) - 2000) <= 1


def test_class_balance_is_kept_within_one_percent():
    target = labels(positive=0.27)
    parts = split.split_indices(target, True, CFG)
    for idx in parts.values():
        assert abs(target[idx].mean() - target.mean()) < 0.01


def test_single_class_files_concatenated_are_mixed_into_every_part():
    """The e/gamma layout: all photons (y=0) first, then all electrons (y=1). An unshuffled split
    would put only electrons into the last part."""
    target = np.r_[np.zeros(4900), np.ones(5100)].astype(np.float32)
    parts = split.split_indices(target, True, CFG)
    check_partition(parts, len(target))
    for idx in parts.values():
        assert abs(target[idx].mean() - 0.51) < 0.01


def test_regression_binned_by_target_keeps_each_part_distribution():
    target = masses()
    parts = split.split_indices(target, False, CFG)
    qs = np.linspace(0.05, 0.95, 19)
    overall = np.quantile(target, qs)
    for idx in parts.values():
        assert np.abs(np.quantile(target[idx], qs) - overall).max() < 0.03 * (target.max() - target.min())
        assert abs(target[idx].mean() - target.mean()) < 0.01 * target.mean()
    # each quantile bin of the target is shared out in the requested fractions
    edges = np.quantile(target, np.linspace(0, 1, 11)[1:-1])
    bins = np.searchsorted(edges, target, side="right")
    for b in range(10):
        in_bin = np.flatnonzero(bins == b)
        assert abs(np.isin(in_bin, parts["test"]).mean() - 0.2) < 0.01


def test_same_seed_same_indices_different_seed_different():
    target = labels()
    a = split.split_indices(target, True, CFG)
    b = split.split_indices(target, True, CFG)
    c = split.split_indices(target, True, SplitParams(seed=43))
    assert all(np.array_equal(a[p], b[p]) for p in a)
    assert not np.array_equal(a["test"], c["test"])


def test_tiny_strata_still_fill_every_part():
    """Regression: the carried counts grew by what each stratum was asked for, not what it gave. With
    one-row strata and large fractions, test took the row, val's share was counted as taken anyway,
    and val stayed empty ("too few rows") although 10 rows can fill 0.45/0.45/0.1."""
    cfg = SplitParams(val_fraction=0.45, test_fraction=0.45, target_bins=10)
    parts = split.split_indices(np.arange(10, dtype=np.float32), False, cfg)
    check_partition(parts, 10)
    assert {p: len(v) for p, v in parts.items()} == {"train": 2, "val": 4, "test": 4}  # round(4.5) = 4
    minority = np.r_[np.zeros(1), np.ones(19)].astype(np.float32)
    parts = split.split_indices(minority, True, cfg)
    assert {p: len(v) for p, v in parts.items()} == {"train": 2, "val": 9, "test": 9}


@pytest.mark.parametrize("n", [0, 1, 2, 3])
def test_too_few_rows_is_an_error(n):
    with pytest.raises(E2EError, match="too few"):
        split.split_indices(labels(n), True, CFG)


@pytest.mark.parametrize(
    "val,test", [(0.0, 0.2), (0.15, 0.0), (-0.1, 0.2), (0.5, 0.5), (0.6, 0.6), (float("nan"), 0.2)]
)
def test_bad_fractions_are_an_error(val, test):
    with pytest.raises(E2EError, match="val_fraction and test_fraction"):
        split.split_indices(labels(100), True, SplitParams(val_fraction=val, test_fraction=test))


def test_main_writes_indices_and_summary(tmp_path):
    target = labels(1000)
    converted = tmp_path / "data" / "converted" / "quark_gluon"
    converted.mkdir(parents=True)
    np.save(converted / "target.npy", target)
    paths = Paths(tmp_path)
    split.main(parse_params({"split": {"seed": 7}}), "quark_gluon", paths)
    out = paths.splits("quark_gluon")
    parts = load_split(out)
    check_partition(parts, 1000)
    summary = json.loads((out / "split.json").read_text())
    assert {p: summary[p]["n"] for p in parts} == {p: len(v) for p, v in parts.items()}
    assert sorted(q.name for q in out.parent.iterdir()) == ["quark_gluon"]  # no temporary left behind
