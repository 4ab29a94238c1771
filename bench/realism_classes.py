"""Electron against photon, real against synthetic crops: tables for bench/realism.py.

A model trained on the synthetic crops learns the differences between the synthetic classes; it holds on the
real crops only as far as the real classes differ the same way. So, on the features of bench/realism.py and
the seed's neighbours of bench/realism_shape.py:
- separation: a gradient-boosted classifier trained to tell electrons from photons, cross-validated within
  the real crops and within the synthetic ones (also at the real sample's size);
- differences: each feature's electron-vs-photon ROC-AUC, real and synthetic (not folded: above 0.5, electrons
  have more); a synthetic difference stronger than the real interval allows is one a model would over-trust;
- transfer: the same classifier trained on the synthetic crops and applied to the real ones, a proxy of
  bench/realism_model.py's check (the pipeline's CNN on the real crops) that costs seconds, not a `dvc repro`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from e2e.evaluation.metrics import roc_auc, roc_auc_interval

N_DRAWS = 20  # samples of the real sample's size drawn from the synthetic crops


def _matrix(feats: dict[str, np.ndarray]) -> np.ndarray:
    return np.nan_to_num(np.column_stack(list(feats.values())))  # a seedless crop's neighbour ratios


def separation(feats: dict[str, np.ndarray], y: np.ndarray, classifier_auc: Callable, rng: np.random.Generator):
    """(AUC, low, high): the classifier of bench/realism.py, trained to tell electrons from photons."""
    x = _matrix(feats)
    return classifier_auc(x[y == 1], x[y == 0], rng)


def separation_like_real(feats: dict, y: np.ndarray, n: int, classifier_auc: Callable, rng) -> str:
    """The synthetic classes' separation on samples as small as the real one (a classifier learns less from
    fewer crops), over N_DRAWS draws: the mean and the 2.5-97.5 % range."""
    draws = []
    for _ in range(N_DRAWS):
        pick = np.concatenate([rng.choice(np.flatnonzero(y == c), n // 2, replace=False) for c in (0.0, 1.0)])
        draws.append(separation({k: v[pick] for k, v in feats.items()}, y[pick], classifier_auc, rng)[0])
    lo, hi = np.quantile(draws, [0.025, 0.975])
    return f"{np.mean(draws):.3f} [{lo:.3f}, {hi:.3f}]"


def flag(real: float, interval: tuple[float, float], synth: float) -> str:
    """How a synthetic electron-vs-photon AUC stands to the real one: '' inside the real interval, else
    'reversed' (the other side of 0.5), 'stronger' or 'weaker'."""
    if interval[0] <= synth <= interval[1]:
        return ""
    if (synth - 0.5) * (real - 0.5) < 0:
        return "reversed"
    return "stronger" if abs(synth - 0.5) > abs(real - 0.5) else "weaker"


def differences(real: dict, synth: dict, y_real: np.ndarray, y_synth: np.ndarray) -> list[str]:
    """Markdown rows: each feature's electron-vs-photon AUC, real [95 %] and synthetic, flagged."""
    rows = ["| feature | real [95 %] | synthetic | |", "| --- | --- | ---: | --- |"]
    for name in real:
        r, syn = np.nan_to_num(real[name]), roc_auc(y_synth, np.nan_to_num(synth[name]))
        auc, (lo, hi) = roc_auc(y_real, r), roc_auc_interval(y_real, r, n_boot=1000)
        rows.append(f"| {name} | {auc:.3f} [{lo:.3f}, {hi:.3f}] | {syn:.3f} | {flag(auc, (lo, hi), syn)} |")
    return rows


def transfer(real: dict[str, tuple[dict, np.ndarray]], synth: tuple[dict, np.ndarray], *, model) -> list[str]:
    """Markdown rows: `model` (a scikit-learn classifier) trained on the synthetic crops' (features, labels),
    its ROC-AUC on each part of the real sample ({part: (features, labels)}) with a 95 % interval."""
    model.fit(_matrix(synth[0]), synth[1])
    rows = ["| real crops | n | ROC-AUC electron vs photon [95 %] |", "| --- | ---: | --- |"]
    for part, (feats, y) in real.items():
        p = model.predict_proba(_matrix(feats))[:, 1]
        lo, hi = roc_auc_interval(y, p, n_boot=1000)
        rows.append(f"| {part.replace('_', '-')} | {len(y)} | {roc_auc(y, p):.3f} [{lo:.3f}, {hi:.3f}] |")
    return rows
