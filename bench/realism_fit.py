"""How the electron/photon generator's constants were fitted to the real crops (issue 23); rerun to refit.

Only the calibration half of the 200 real crops is used (bench/realism.py's split); the held-out half is left
for bench/realism.py's check. Objective, on fresh synthetic crops of a fixed seed (common random numbers):
- per class (photons, electrons) and per shower feature of bench/realism.py, plus the absolute energies of the
  3rd, 10th, 20th and 30th brightest crystals: the squared two-sample Kolmogorov-Smirnov statistic, averaged;
- plus the squared difference between real and synthetic electron-vs-photon ROC-AUC of each feature, averaged:
  the classes must differ as they do in the real crops, or a model trained on the synthetic ones learns the
  wrong difference;
- plus, per class, the squared maximum mean discrepancy between the features' normal scores (each feature
  through the real calibration crops' empirical distribution; Gaussian kernel, median-distance bandwidth):
  the joint shape, which a classifier exploits and per-feature statistics miss.
Optuna's multivariate TPE searches SPACE from the module's current constants; the best constants are printed
as the lines to put into e2e/sources/synthetic/egamma.py. The generator's docstring says which statistics
drive which constant. The dead-tower rate is counted, not fitted (3 of 200 real crops).

    python bench/realism_fit.py --trials 400 --n-per-class 800 --seed 2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import optuna
from scipy.special import ndtri
from scipy.stats import ks_2samp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import realism  # noqa: E402  (bench/ is not a package)

from e2e.evaluation.metrics import roc_auc  # noqa: E402
from e2e.sources.synthetic import egamma  # noqa: E402

# constant -> (low, high, log scale); PROFILE, ELECTRON, CONVERTED and UNCONVERTED are unpacked by name. A converted
# photon sprays less and narrower than an electron (it converts later in the tracker): its mean r and median s
# are searched as fractions of the electron's, so that the fit cannot swap the classes' physics.
SPACE = {
    "core_w": (0.4, 0.92, False),
    "core_s": (0.03, 0.4, False),
    "mid_s": (0.3, 1.5, False),
    "tail_w": (0.0, 0.08, False),
    "tail_s": (1.2, 5.0, False),
    "NOISE": (5e-4, 3e-3, True),
    "N_ISOLATED": (3.0, 40.0, False),
    "DOMINO_CUT": (1e-3, 2e-2, True),
    "STOCHASTIC": (1e-5, 3e-3, True),
    "SPRAY_GAP": (0.0, 1.5, False),
    "EXTRA_PROB": (0.0, 1.0, False),
    "EXTRA_MEAN": (0.005, 0.1, True),
    "electron_a": (1.0, 4.0, False),
    "electron_b": (3.0, 20.0, False),
    "electron_s": (1.0, 8.0, False),
    "converted_r": (0.1, 1.0, False),
    "converted_s": (0.2, 1.0, False),
    "unconverted_b": (10.0, 80.0, False),
    "WIDTH_SPREAD": (0.0, 0.6, False),
    "PILEUP_RATE": (0.0, 5.0, False),
    "ACTIVITY_SHAPE": (0.5, 20.0, True),
    "PILEUP_MEAN": (0.001, 0.05, True),
    "PILEUP_ETA": (1.0, 10.0, False),
    "PILEUP_PHI": (2.0, 16.0, False),
    "READ_CUT": (0.001, 0.05, True),
    "ISOLATED_REACH": (0.5, 6.0, False),
    "RESPONSE": (0.9, 1.02, False),
    "RESPONSE_SIGMA": (0.005, 0.08, False),
}
ABSOLUTE = (3, 10, 20, 30)


def current() -> dict[str, float]:
    (cw, cs), (_, ms), (tw, ts) = egamma.PROFILE
    out = dict(core_w=cw, core_s=cs, mid_s=ms, tail_w=tw, tail_s=ts)
    out |= dict(
        electron_a=egamma.ELECTRON["r"][0], electron_b=egamma.ELECTRON["r"][1], electron_s=egamma.ELECTRON["s"][0]
    )
    out |= dict(converted_r=_beta_mean(egamma.CONVERTED["r"]) / _beta_mean(egamma.ELECTRON["r"]))
    out |= dict(converted_s=egamma.CONVERTED["s"][0] / egamma.ELECTRON["s"][0])
    out |= dict(unconverted_b=egamma.UNCONVERTED["r"][1])
    return out | {k: float(getattr(egamma, k)) for k in SPACE if k.isupper()}


def _beta_mean(ab: tuple[float, float]) -> float:
    return ab[0] / (ab[0] + ab[1])


def apply(p: dict[str, float]) -> None:
    """Set the generator's module constants (this process only)."""
    egamma.PROFILE = (
        (p["core_w"], p["core_s"]),
        (1 - p["core_w"] - p["tail_w"], p["mid_s"]),
        (p["tail_w"], p["tail_s"]),
    )
    egamma.ELECTRON = dict(r=(p["electron_a"], p["electron_b"]), s=(p["electron_s"], egamma.ELECTRON["s"][1]))
    a = egamma.CONVERTED["r"][0]
    b = a / (p["converted_r"] * _beta_mean(egamma.ELECTRON["r"])) - a  # Beta(a, b) with the wanted mean
    egamma.CONVERTED = dict(r=(a, b), s=(p["converted_s"] * p["electron_s"], egamma.CONVERTED["s"][1]))
    egamma.UNCONVERTED = dict(r=(egamma.UNCONVERTED["r"][0], p["unconverted_b"]), s=egamma.UNCONVERTED["s"])
    for k in SPACE:
        if k.isupper():
            setattr(egamma, k, p[k])


def absolute(x: np.ndarray) -> dict[str, np.ndarray]:
    ordered = -np.sort(-x.reshape(len(x), -1), axis=1)
    return {f"energy of crystal #{k}": ordered[:, k - 1] for k in ABSOLUTE}


class Objective:
    def __init__(self, x: np.ndarray, y: np.ndarray, n_per_class: int, seed: int) -> None:
        feats = realism.features(x)
        self.real, self.y, self.n, self.seed = feats | absolute(x), y, n_per_class, seed
        self.sorted = {k: np.sort(v) for k, v in feats.items()}  # the joint term: the shower features only
        self.z_real = self.scores(feats)
        self.separation = {k: roc_auc(y, v) for k, v in feats.items()}
        d = np.sqrt(((self.z_real[:, None] - self.z_real[None]) ** 2).sum(-1))
        self.bandwidth = float(np.median(d[d > 0]))

    def scores(self, feats: dict[str, np.ndarray]) -> np.ndarray:
        """Normal scores through the real crops' empirical distribution (bounded: outliers cannot dominate)."""
        cols = []
        for k, ref in self.sorted.items():
            rank = 0.5 * (np.searchsorted(ref, feats[k], "left") + np.searchsorted(ref, feats[k], "right"))
            cols.append(ndtri((rank + 0.5) / (len(ref) + 1)))
        return np.column_stack(cols)

    def mmd2(self, a: np.ndarray, b: np.ndarray) -> float:
        def k(u: np.ndarray, v: np.ndarray) -> float:
            return float(np.exp(-((u[:, None] - v[None]) ** 2).sum(-1) / (2 * self.bandwidth**2)).mean())

        return k(a, a) + k(b, b) - 2 * k(a, b)

    def __call__(self, p: dict[str, float]) -> float:
        apply(p)
        energy, _, y = realism.synthetic_crops(self.n, self.seed)
        synth = realism.features(energy) | absolute(energy)
        ks = [
            ks_2samp(v[self.y == c], synth[k][y == c]).statistic ** 2 for k, v in self.real.items() for c in (0.0, 1.0)
        ]
        z = self.scores(synth)
        mmd = sum(self.mmd2(self.z_real[self.y == c], z[y == c]) for c in (0.0, 1.0))
        # the electron-photon differences feature by feature, as the real crops show them
        sep = [(self.separation[k] - roc_auc(y, synth[k])) ** 2 for k in self.separation]
        return float(np.mean(ks)) + mmd + float(np.mean(sep))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--realdata", type=Path, default=realism.REAL_EG)
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument("--n-per-class", type=int, default=800)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--local", type=float, default=1.5, help="search within [current / F, current * F]")
    args = parser.parse_args(argv)
    x, y = realism.real_crops(args.realdata)["calibration"]
    objective = Objective(x, y, args.n_per_class, args.seed)
    start = current()
    print(f"current constants: {objective(start):.4f}", flush=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        sampler=optuna.samplers.TPESampler(seed=args.seed, multivariate=True, n_startup_trials=30)
    )
    study.enqueue_trial(start)
    space = {
        k: (max(lo, start[k] / args.local), min(hi, max(start[k], 1e-3) * args.local), log)
        for k, (lo, hi, log) in SPACE.items()
    }
    study.optimize(
        lambda t: objective({k: t.suggest_float(k, *b[:2], log=b[2]) for k, b in space.items()}), n_trials=args.trials
    )
    print(f"best: {study.best_value:.4f} (trial {study.best_trial.number})")
    for k, v in study.best_params.items():
        print(f"{k} = {v:.4g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
