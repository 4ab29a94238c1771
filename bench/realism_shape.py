"""The shower's shape beyond single features, real against synthetic crops: tables for bench/realism.py.

- coherence: the feature pairs whose rank correlation within a class differs most, which a multivariate
  classifier sees when every feature's distribution alone agrees;
- leakage: the energy of the seed's neighbours in eta and in phi over the seed's own, the lateral profile
  axis by axis, which the moment features mix with the electron's spray.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr

from e2e.sources.synthetic.egamma import SEED  # the crops are centred on their seed crystal

QUANTILES = (0.1, 0.5, 0.9)


def coherence(real: dict, synth: dict, y_real: np.ndarray, y_synth: np.ndarray, most: int = 8) -> list[str]:
    """Markdown: the `most` pairs whose within-class Spearman correlation differs most, real vs synthetic."""
    names, rows = list(real), []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            rho = [
                spearmanr(f[a][y == c], f[b][y == c])[0]
                for c in (0.0, 1.0)
                for f, y in ((real, y_real), (synth, y_synth))
            ]
            rows.append(((rho[0] - rho[1]) ** 2 + (rho[2] - rho[3]) ** 2, a, b, rho))
    lines = [
        f"Spearman rank correlations within each class, real (all {len(y_real)}) against synthetic; the pairs that "
        "differ most (with 100 crops a class, a real correlation has a standard error of about 0.1).",
        "",
        "| features | real photon | synthetic photon | real electron | synthetic electron |",
        "| --- |" + " ---: |" * 4,
    ]
    for _, a, b, rho in sorted(rows, reverse=True)[:most]:
        lines.append(f"| {a} / {b} | " + " | ".join(f"{r:+.2f}" for r in rho) + " |")
    return lines


def neighbour_ratios(x: np.ndarray) -> dict[str, np.ndarray]:
    """Per crop (N, 32, 32): the two crystals at distance d from the seed along one axis, over the seed."""
    seed = x[:, SEED, SEED]
    out = {}
    for d in (1, 2):
        out[f"{d} crystal{'s' if d > 1 else ''} away in eta"] = (x[:, SEED - d, SEED] + x[:, SEED + d, SEED]) / seed
        out[f"{d} crystal{'s' if d > 1 else ''} away in phi"] = (x[:, SEED, SEED - d] + x[:, SEED, SEED + d]) / seed
    return out


def leakage(x_real: np.ndarray, x_synth: np.ndarray, y_real: np.ndarray, y_synth: np.ndarray) -> list[str]:
    """Markdown: the 10, 50 and 90 % quantiles of neighbour_ratios, per class, real and synthetic."""
    real, synth = neighbour_ratios(x_real), neighbour_ratios(x_synth)
    lines = [
        f"The energy of the seed's two neighbours at 1 and 2 crystals in eta (rows) and in phi (columns), over the "
        f"seed's; the 10, 50 and 90 % quantiles, real (all {len(y_real)}) against synthetic. A photon has no spray "
        "in phi apart from its conversions, so its rows show the shower's own width on both axes.",
        "",
        "| neighbours / seed | real photon | synthetic photon | real electron | synthetic electron |",
        "| --- |" + " ---: |" * 4,
    ]
    for name in real:
        cells = [
            " / ".join(f"{q:.3f}" for q in np.quantile(f[name][y == c], QUANTILES))
            for c in (0.0, 1.0)
            for f, y in ((real, y_real), (synth, y_synth))
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines
