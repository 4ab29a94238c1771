"""How far the synthetic electron/photon crops are from the 200 real ones in ../shared/realdata (issue 23).

Per crop (energy channel, the only one the real sample has): the energy fractions of the 1st-20th brightest
crystals, the energy-weighted second moments in eta (rows) and phi (columns), hit counts above thresholds,
the count of soft hits (0 < E < 1e-3), total and maximum energy. For each feature, the real and synthetic
means per class and the univariate two-sample ROC-AUC real vs synthetic, folded to >= 0.5 (0.5: the feature
cannot tell them apart); then a gradient-boosted classifier on all features, its 5-fold cross-validated
AUC, beside its floor: the same test with fresh synthetic crops in the real ones' place (bench/realism_null.py).
Then how electrons differ from photons (bench/realism_classes.py), with a classifier trained on the synthetic
crops applied to the real ones, a quick proxy of bench/realism_model.py, and its yardstick, what the real crops
teach a classifier by themselves; then what the classifier can see beyond single features
(bench/realism_shape.py). Intervals: 95 % bootstrap over the crops (real and synthetic
resampled alike; for the classifier, over its out-of-fold scores). The time channel has no real values here:
its occupancy and range are checked against the facts stated in shared/realdata/README.md instead.

The real crops are split per class with numpy default_rng(23): the first half of each class calibrated
the generator (e2e.sources.synthetic.egamma), the other half is held out; the held-out half is the check.

    python bench/realism.py                    # writes bench/results/realism.md
    python bench/realism.py --realdata PATH    # the npz elsewhere (from a git worktree)
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
from pathlib import Path

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from e2e.evaluation.metrics import roc_auc
from e2e.sources.synthetic import egamma
from e2e.sources.synthetic.parquet_io import chunk_rng
from e2e.store.atomic import atomic_path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import realism_classes  # noqa: E402  (bench/ is not a package)
import realism_null  # noqa: E402
import realism_shape  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REAL_EG = ROOT.parent / "shared" / "realdata" / "electron-photon.npz"
RANKS = (1, 2, 3, 5, 7, 10, 15, 20)
THRESHOLDS = (1e-2, 1e-1)
SOFT = 1e-3
SPLIT_SEED = 23
N_BOOT = realism_classes.N_BOOT


def real_crops(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{'calibration', 'held_out', 'all'}: (images (N, 32, 32), labels) of the real sample, split per class."""
    with np.load(path) as d:
        x = np.concatenate([d["x_train"], d["x_test"]]).astype(np.float64)
        y = np.concatenate([d["y_train"], d["y_test"]])
    rng = np.random.default_rng(SPLIT_SEED)
    halves: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
    for label in (0.0, 1.0):
        idx = rng.permutation(np.flatnonzero(y == label))
        halves[0].append(idx[: len(idx) // 2])
        halves[1].append(idx[len(idx) // 2 :])
    cal, held = np.concatenate(halves[0]), np.concatenate(halves[1])
    return {"calibration": (x[cal], y[cal]), "held_out": (x[held], y[held]), "all": (x, y)}


def synthetic_crops(
    n_per_class: int | tuple[int, int], seed: int, *, stream: str = "realism"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Energy (N, 32, 32), time (N, 32, 32) and labels of fresh generator output: n_per_class photons, then as
    many electrons (or (photons, electrons)), from random streams named after `stream`, seed and class."""
    counts = (n_per_class, n_per_class) if isinstance(n_per_class, int) else n_per_class
    images, labels = [], []
    for electron, n in zip((False, True), counts, strict=True):
        rng = chunk_rng(seed, f"{stream}-{int(electron)}", 0)
        images.append(egamma.make_images(rng, egamma.sample_latents(rng, n, electron)))
        labels.append(np.full(n, float(electron)))
    x = np.concatenate(images).astype(np.float64)
    return x[..., 0], x[..., 1], np.concatenate(labels)


def features(x: np.ndarray) -> dict[str, np.ndarray]:
    """Shower features per crop of energies (N, 32, 32)."""
    flat = x.reshape(len(x), -1)
    total = flat.sum(1)
    ordered = -np.sort(-flat, axis=1) / total[:, None]
    out = {f"fraction of crystal #{k}": ordered[:, k - 1] for k in RANKS}
    out["fraction of crystals #2-10"] = ordered[:, 1:10].sum(1)
    for summed, name in ((2, "eta"), (1, "phi")):  # rows are eta, columns phi
        profile = x.sum(summed)
        pos = np.arange(x.shape[1]) - egamma.SEED
        mean = (profile * pos).sum(1) / total
        out[f"second moment in {name}"] = (profile * (pos - mean[:, None]) ** 2).sum(1) / total
    hits = flat > 0
    out["hits"] = hits.sum(1).astype(float)
    out[f"soft hits (E < {SOFT:g})"] = (hits & (flat < SOFT)).sum(1).astype(float)
    for t in THRESHOLDS:
        out[f"hits above {t:g}"] = (flat > t).sum(1).astype(float)
    out["energy sum"] = total
    out["hottest crystal"] = flat.max(1)
    return out


def folded_auc(real: np.ndarray, synth: np.ndarray) -> float:
    """ROC-AUC of `real` against `synth` (ties count half), folded to >= 0.5."""
    auc = roc_auc(np.r_[np.ones(len(real)), np.zeros(len(synth))], np.r_[real, synth])
    return max(auc, 1.0 - auc)


def bootstrap(real: np.ndarray, synth: np.ndarray, rng: np.random.Generator) -> tuple[float, float, float]:
    """The folded AUC and its 95 % bootstrap interval, real and synthetic values resampled alike."""
    draws = [folded_auc(rng.choice(real, len(real)), rng.choice(synth, len(synth))) for _ in range(N_BOOT)]
    lo, hi = np.quantile(draws, [0.025, 0.975])
    return folded_auc(real, synth), float(lo), float(hi)


def gradient_boosting() -> HistGradientBoostingClassifier:
    """The classifier of every multivariate AUC here: shallow trees, for 200 real crops."""
    return HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, max_depth=3, random_state=0)


def classifier_scores(real: np.ndarray, synth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold scores (real, synthetic) of a gradient-boosted real-vs-synthetic classifier on feature rows."""
    x, y = np.vstack([real, synth]), np.r_[np.ones(len(real)), np.zeros(len(synth))]
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    score = cross_val_predict(gradient_boosting(), x, y, cv=folds, method="predict_proba")[:, 1]
    return score[y == 1], score[y == 0]


def classifier_auc(real: np.ndarray, synth: np.ndarray, rng: np.random.Generator) -> tuple[float, float, float]:
    """Cross-validated AUC of that classifier, with its bootstrap interval."""
    return bootstrap(*classifier_scores(real, synth), rng)


def classifier_point_auc(real: np.ndarray, synth: np.ndarray) -> float:
    """Cross-validated AUC of that classifier, without the interval (the floor needs only the value)."""
    return folded_auc(*classifier_scores(real, synth))


def table(real: dict, synth: dict, y_real: np.ndarray, y_synth: np.ndarray, rng: np.random.Generator) -> list[str]:
    rows = [
        "| feature | real photon | synthetic photon | real electron | synthetic electron "
        "| AUC real vs synthetic [95 %] |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for name in real:
        means = [v[y == c].mean() for c in (0.0, 1.0) for v, y in ((real[name], y_real), (synth[name], y_synth))]
        auc, lo, hi = bootstrap(real[name], synth[name], rng)
        cells, flag = " | ".join(f"{m:.4g}" for m in means), " **>0.65**" if auc > 0.65 else ""
        rows.append(f"| {name} | {cells} | {realism_classes.interval(auc, lo, hi)}{flag} |")
    return rows


def time_facts(energy: np.ndarray, time: np.ndarray) -> list[str]:
    on = time != 0
    return [
        f"- Time non-zero on {100 * on.mean():.1f} % of pixels (real files: roughly 5 to 10 %), energy non-zero "
        f"on {100 * (energy > 0).mean():.1f} %; time within [{time.min():.2f}, {time.max():.2f}] (real: about "
        f"-2.5 to 2.3); energy at most {energy.max():.3f} (real: 0 to 1.48).",
    ]


def machine() -> str:
    return (
        f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
        f"numpy {np.__version__}; {dt.datetime.now():%Y-%m-%d %H:%M}"
    )


def report(path: Path, n_per_class: int, seed: int) -> list[str]:
    real = real_crops(path)
    energy, time, y_synth = synthetic_crops(n_per_class, seed)
    synth = features(energy)
    rng = np.random.default_rng(0)
    lines = [
        "# Realism of the synthetic electron/photon crops",
        "",
        f"Command: `python bench/realism.py --n-per-class {n_per_class} --seed {seed}`. Machine: {machine()}.",
        f"Real: {path.name}, {len(real['all'][1])} crops split per class with default_rng({SPLIT_SEED}) into a "
        f"calibration half and a held-out half. Synthetic: {2 * n_per_class} fresh crops of "
        "e2e.sources.synthetic.egamma. AUCs are folded to >= 0.5; 95 % bootstrap intervals "
        f"({N_BOOT} resamples). Target (issue 23): every AUC at most 0.65.",
    ]
    rows = np.column_stack(list(synth.values()))
    crops = {p: realism_classes.Crops(features(x), realism_shape.neighbour_ratios(x), y) for p, (x, y) in real.items()}
    for part in ("held_out", "calibration", "all"):
        feats, y = crops[part].shower, crops[part].y
        multi = classifier_auc(np.column_stack(list(feats.values())), rows, rng)
        lines += ["", f"## Real {part.replace('_', '-')} crops ({len(y)}) against the synthetic ones", ""]
        lines += [
            f"Multivariate (gradient-boosted trees, 5-fold cross-validated) AUC: **{multi[0]:.3f}** "
            f"[{multi[1]:.3f}, {multi[2]:.3f}].",
            "",
        ]
        if part == "held_out":  # the floor of that figure (bench/realism_null.py)
            per_class = (int((y == 0).sum()), int((y == 1).sum()))
            null = realism_null.same_generator(
                rows, per_class, crops=synthetic_crops, features=features, auc=classifier_point_auc
            )
            lines += [realism_null.sentence(null, per_class), ""]
        lines += table(feats, synth, y, y_synth, rng)
    own = realism_classes.Crops(synth, realism_shape.neighbour_ratios(energy), y_synth)
    lines += ["", "## Electron against photon", ""]
    lines += realism_classes.section(crops, own, classifier_auc=classifier_auc, model=gradient_boosting(), rng=rng)
    x, y = real["all"]
    lines += ["", "## What the classifier can see beyond single features", ""]
    lines += realism_shape.coherence(crops["all"].shower, synth, y, y_synth)
    lines += ["", "## The lateral profile axis by axis", ""] + realism_shape.leakage(x, energy, y, y_synth)
    lines += ["", "## Time channel (no real values in the sample)", ""] + time_facts(energy, time)
    return lines


def write_report(path: Path, lines: list[str]) -> None:
    """The markdown to `path` whole or not at all, and to the terminal."""
    text = "\n".join(lines) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    print(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--realdata", type=Path, default=REAL_EG)
    parser.add_argument("--n-per-class", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=23)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "realism.md")
    args = parser.parse_args(argv)
    if not args.realdata.is_file():
        print(f"error: {args.realdata}: real crops not found (pass --realdata)", file=sys.stderr)
        return 2
    write_report(args.out, report(args.realdata, args.n_per_class, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
