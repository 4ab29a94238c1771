"""The synthetic quark/gluon and jet-mass images against the channel statistics that public write-ups state.

No real jet images are available to us; these are the numbers published about the real files, each with its
source. They come from single write-ups and notebooks, some measured on a sample. Six of them are fitted
(src/e2e/sources/synthetic/detector.py): the quark/gluon zero-pixel fractions and the jet-mass means of the
track pT, ECAL and HCAL channels; the rest, and the bytes per jet of the real files (their sizes and jet
counts, measured on the files themselves), are checks.

    python bench/realism_jets.py            # writes bench/results/realism_jets.md
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import realism  # noqa: E402  (bench/ is not a package)

from e2e.sources.registry import DATASETS, REAL_BYTES_PER_JET  # noqa: E402
from e2e.sources.synthetic import jet_mass, quark_gluon  # noqa: E402
from e2e.sources.synthetic.parquet_io import chunk_rng, jet_file  # noqa: E402

ROOT = realism.ROOT
QG_SOURCE = (
    "a GSoC 2026 applicant's README on the QCDToGGQQ_IMGjet_RH1all files (139,306 jets; stored in the search "
    "index as file 52062008731)"
)
JM_SOURCE = (
    "abhisekpraharaj/GSOC_E2E_TEST_2025, EDA notebook: 'Mean & Std from sampled data' of top_gun_opendata "
    "(unstated sample size); mass mean and std also in a second write-up"
)
QG_CHANNELS = ("track pT", "ECAL", "HCAL")
QG_ZERO = (99.7, 97.8, 97.8)  # % of pixels exactly zero
QG_MAX = (10.03, 12.67, 0.133)  # largest pixel value in the files
JM_MEAN = (0.0230, -0.00107, -0.00836, 0.0267, 0.0214, 0.00179, 0.00214, 0.00237)
JM_STD = (1.36, 0.713, 4.25, 1.03, 0.317, 0.0450, 0.0514, 0.0562)
JM_NAMES = ("track pT", "dz", "d0", "ECAL", "HCAL", "pixel layer 1", "pixel layer 2", "pixel layer 3")


def bytes_row(images: np.ndarray, scalars: dict[str, np.ndarray], name: str) -> str:
    """The snappy parquet bytes per jet of these jets written as the generator writes them, against the real file's."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "jets.parquet"
        with jet_file(path, DATASETS[name].image_keys[0], list(scalars)) as writer:
            writer.write(images, scalars)
        size = path.stat().st_size / len(images)
    real = REAL_BYTES_PER_JET[name]
    return f"| file bytes per jet | {real:.0f} | {size:.0f} ({size / real:.2f}x) |"


def quark_gluon_rows(n: int, seed: int) -> list[str]:
    images, scalars, _ = quark_gluon.make_chunk(chunk_rng(seed, "realism-qg", 0), n)
    rows = [
        f"Quark/gluon: {n} synthetic jets (seed {seed}) against {QG_SOURCE}.",
        "",
        "| statistic | published | synthetic |",
        "| --- | ---: | ---: |",
    ]
    for c, name in enumerate(QG_CHANNELS):
        x = images[:, c]
        rows.append(f"| {name}: zero pixels | {QG_ZERO[c]} % | {100 * (x == 0).mean():.2f} % |")
        rows.append(f"| {name}: largest pixel | {QG_MAX[c]} | {x.max():.3g} |")
    active = (images != 0).any(1).sum((1, 2))
    rows.append(
        f"| pixels non-zero in any channel, per jet | 'typically 20-700' | {np.percentile(active, 5):.0f}-"
        f"{np.percentile(active, 95):.0f} (5-95 %) |"
    )
    rows.append(f"| jet pT | 70.4-337.1 GeV | {scalars['pt'].min():.1f}-{scalars['pt'].max():.1f} GeV |")
    rows.append(bytes_row(images, scalars, "quark_gluon"))
    return rows


def jet_mass_rows(n: int, seed: int) -> list[str]:
    cfg = {"m_range": [85.0, 500.0], "pt_range": [400.0, 1000.0]}
    images, scalars, _ = jet_mass.make_chunk(chunk_rng(seed, "realism-jm", 0), n, cfg)
    rows = [
        f"Jet mass: {n} synthetic jets (seed {seed}) against {JM_SOURCE}. Means and standard deviations over all "
        "pixels, zeros included.",
        "",
        "| channel | published mean | synthetic mean | published std | synthetic std | synthetic zero pixels |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c, name in enumerate(JM_NAMES):
        x = images[:, c]
        rows.append(
            f"| {c}: {name} | {JM_MEAN[c]:.3g} | {x.mean():.3g} | {JM_STD[c]:.3g} | {x.std():.3g} "
            f"| {100 * (x == 0).mean():.2f} % |"
        )
    rows.append(
        f"| jet mass (GeV) | mean 293.3, std 119.9 | mean {scalars['m'].mean():.1f}, std "
        f"{scalars['m'].std():.1f} | | | |"
    )
    rows.append(
        f"| jet pT (GeV) | mean 750, std 135 | mean {scalars['pt'].mean():.0f}, std {scalars['pt'].std():.0f} | | | |"
    )
    rows.append(bytes_row(images, scalars, "jet_mass") + " | | |")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-jets", type=int, default=400)
    parser.add_argument("--seed", type=int, default=23)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "realism_jets.md")
    args = parser.parse_args(argv)
    lines = [
        "# The synthetic jet images against published channel statistics",
        "",
        f"Command: `python bench/realism_jets.py --n-jets {args.n_jets} --seed {args.seed}`. "
        f"Machine: {realism.machine()}.",
        "",
        *quark_gluon_rows(args.n_jets, args.seed),
        "",
        *jet_mass_rows(args.n_jets, args.seed),
    ]
    realism.write_report(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
