"""Electron against photon, real against synthetic crops: tables for bench/realism.py.

A model trained on the synthetic crops learns the differences between the synthetic classes; it holds on the
real crops only as far as the real classes differ the same way. So, on the features of bench/realism.py and
the seed's neighbours of bench/realism_shape.py:
- separation: a gradient-boosted classifier trained to tell electrons from photons, cross-validated within
  the real crops and within the synthetic ones (also at the real sample's size);
- differences: each feature's electron-vs-photon ROC-AUC, real and synthetic (not folded: above 0.5, electrons
  have more); a synthetic difference stronger than the real interval allows is one a model would over-trust;
- transfer: the same classifier trained on the synthetic crops and applied to the real ones, a proxy of
  bench/realism_model.py's check (the pipeline's CNN on the real crops) that costs seconds, not a `dvc repro`;
- what the real crops teach by themselves: a linear classifier, which overfits 200 crops less than the trees,
  cross-validated within the real crops over many splits, and within synthetic samples of their size: the
  yardstick for the transfer (how much separation these features show a classifier trained on the real
  crops themselves).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import QuantileTransformer

from e2e.evaluation.metrics import roc_auc, roc_auc_interval

N_BOOT = 1000  # bootstrap resamples of every 95 % interval in the realism reports
N_DRAWS = 20  # samples of the real sample's size drawn from the synthetic crops; 5-fold splits of the real ones
LINEAR_C = 0.1  # the linear classifier's inverse regularisation: fixed, not tuned on the real crops


@dataclass(frozen=True)
class Crops:
    """One sample's per-crop features: bench/realism.py's shower features, the seed's neighbours
    (bench/realism_shape.py), and the labels (1: electron)."""

    shower: dict[str, np.ndarray]
    neighbours: dict[str, np.ndarray]
    y: np.ndarray

    def both(self) -> dict[str, np.ndarray]:
        return self.shower | self.neighbours


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
        pick = _draw(y, n, rng)
        draws.append(separation({k: v[pick] for k, v in feats.items()}, y[pick], classifier_auc, rng)[0])
    return _spread(draws)


def _draw(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of n // 2 crops of each class, without replacement."""
    return np.concatenate([rng.choice(np.flatnonzero(y == c), n // 2, replace=False) for c in (0.0, 1.0)])


def interval(value: float, lo: float, hi: float) -> str:
    """A figure with its range, as every table and sentence of the realism reports gives it."""
    return f"{value:.3f} [{lo:.3f}, {hi:.3f}]"


def auc_interval(y: np.ndarray, p: np.ndarray) -> str:
    """The ROC-AUC of scores p for labels y, with its 95 % bootstrap interval."""
    return interval(roc_auc(y, p), *roc_auc_interval(y, p, n_boot=N_BOOT))


def _spread(draws: list[float]) -> str:
    return interval(float(np.mean(draws)), *np.quantile(draws, [0.025, 0.975]))


def linear() -> Pipeline:
    """Logistic regression on the features' normal quantiles: few parameters, for 200 crops."""
    quantiles = QuantileTransformer(n_quantiles=100, output_distribution="normal")
    return make_pipeline(quantiles, LogisticRegression(C=LINEAR_C, max_iter=1000))


def linear_within(feats: dict[str, np.ndarray], y: np.ndarray, split: int) -> float:
    """The linear classifier's 5-fold cross-validated electron-vs-photon AUC within one sample (not folded)."""
    folds = StratifiedKFold(5, shuffle=True, random_state=split)
    score = cross_val_predict(linear(), _matrix(feats), y, cv=folds, method="predict_proba")[:, 1]
    return roc_auc(y, score)


def taught(real: Crops, synth: Crops, rng: np.random.Generator) -> str:
    """Markdown: the linear classifier within the real crops (N_DRAWS splits) and within synthetic samples of
    their size (a new sample and split each time); means and 2.5-97.5 % ranges."""
    within_real = [linear_within(real.both(), real.y, i) for i in range(N_DRAWS)]
    feats, picks = synth.both(), [_draw(synth.y, len(real.y), rng) for _ in range(N_DRAWS)]
    within_synth = [linear_within({k: v[p] for k, v in feats.items()}, synth.y[p], i) for i, p in enumerate(picks)]
    return (
        f"What the crops teach a classifier by themselves: a linear one (logistic regression, C = {LINEAR_C}, on "
        "the normal quantiles of these features and the neighbours), which overfits 200 crops less than the trees; "
        f"its 5-fold cross-validated AUC, mean over {N_DRAWS} splits [2.5-97.5 %], within the real crops (all "
        f"{len(real.y)}): {_spread(within_real)}; within synthetic samples of the same size: "
        f"{_spread(within_synth)}. The first is the yardstick for the proxy above and for the pipeline's CNN on "
        "the real crops (bench/results/realism_model.md)."
    )


def flag(real: float, bounds: tuple[float, float], synth: float) -> str:
    """How a synthetic electron-vs-photon AUC stands to the real one: '' inside the real interval, else
    'reversed' (the other side of 0.5), 'stronger' or 'weaker'."""
    if bounds[0] <= synth <= bounds[1]:
        return ""
    if (synth - 0.5) * (real - 0.5) < 0:
        return "reversed"
    return "stronger" if abs(synth - 0.5) > abs(real - 0.5) else "weaker"


def differences(real: dict, synth: dict, y_real: np.ndarray, y_synth: np.ndarray) -> list[str]:
    """Markdown rows: each feature's electron-vs-photon AUC, real [95 %] and synthetic, flagged."""
    rows = ["| feature | real [95 %] | synthetic | |", "| --- | --- | ---: | --- |"]
    for name in real:
        r, syn = np.nan_to_num(real[name]), roc_auc(y_synth, np.nan_to_num(synth[name]))
        auc, bounds = roc_auc(y_real, r), roc_auc_interval(y_real, r, n_boot=N_BOOT)
        rows.append(f"| {name} | {interval(auc, *bounds)} | {syn:.3f} | {flag(auc, bounds, syn)} |")
    return rows


def transfer(real: dict[str, tuple[dict, np.ndarray]], synth: tuple[dict, np.ndarray], *, model) -> list[str]:
    """Markdown rows: `model` (a scikit-learn classifier) trained on the synthetic crops' (features, labels),
    its ROC-AUC on each part of the real sample ({part: (features, labels)}) with a 95 % interval."""
    model.fit(_matrix(synth[0]), synth[1])
    rows = ["| real crops | n | ROC-AUC electron vs photon [95 %] |", "| --- | ---: | --- |"]
    for part, (feats, y) in real.items():
        p = model.predict_proba(_matrix(feats))[:, 1]
        rows.append(f"| {part.replace('_', '-')} | {len(y)} | {auc_interval(y, p)} |")
    return rows


def section(real: dict[str, Crops], synth: Crops, *, classifier_auc: Callable, model, rng: np.random.Generator):
    """Markdown lines: how electrons differ from photons, real ({'all', 'calibration', 'held_out'}: Crops)
    against synthetic; `classifier_auc` and `model` are bench/realism.py's classifier, as a function and an
    untrained scikit-learn model."""
    every = real["all"]
    sep = interval(*separation(every.shower, every.y, classifier_auc, rng))
    small = separation_like_real(synth.shower, synth.y, len(every.y), classifier_auc, rng)
    whole = interval(*separation(synth.shower, synth.y, classifier_auc, rng))
    parts = {p: (real[p].both(), real[p].y) for p in ("all", "calibration", "held_out")}
    return [
        "The classifier above, trained to tell electrons from photons instead (5-fold cross-validated AUC, folded), "
        f"on the real crops (all {len(every.y)}): {sep}; on synthetic samples of the same size: {small}; on all "
        f"{len(synth.y)} synthetic crops: {whole}.",
        "",
        "Each feature's electron-vs-photon ROC-AUC (not folded: above 0.5 electrons have more), real (all "
        f"{len(every.y)}, 95 % bootstrap interval) against synthetic; flagged where the synthetic one lies outside "
        "the real interval (stronger, weaker or reversed). A model trained on the synthetic crops leans on the "
        "differences flagged stronger.",
        "",
        *differences(every.both(), synth.both(), every.y, synth.y),
        "",
        "The same classifier trained on all the synthetic crops' features (these and the neighbours), applied to "
        "the real ones: a proxy, in seconds, of bench/realism_model.py's check of the pipeline's CNN.",
        "",
        *transfer(parts, (synth.both(), synth.y), model=model),
        "",
        taught(every, synth, rng),
    ]
