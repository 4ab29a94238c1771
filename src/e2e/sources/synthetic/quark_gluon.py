"""Toy quark and gluon jets as 125x125 (track pT, ECAL, HCAL) images, in the layout of the real files.

Physics of the toy:
- Gluons radiate with colour factor C_A = 3 against C_F = 4/3 for quarks, so gluon jets carry
  more constituents (NegBin, mean ~1.8x, below C_A / C_F = 2.25) and spread wider (log-normal
  girth scale); with fewer constituents a quark's momentum is shared among fewer particles, so it
  fragments harder.
- Momentum fractions are a Dirichlet draw, soft constituents sit further from the axis.
- 62 % charged hadrons (track + ECAL/HCAL, bent in phi by the 3.8 T field), 25 % photons from
  pi0 decays (ECAL), 13 % neutral hadrons (ECAL/HCAL, no track).
- Soft particles from the underlying event and ~21 pile-up collisions (2012 conditions) land
  anywhere in the image, whatever the class: ~1.6 particles per unit eta x phi per collision, so
  ~160 above 0.1 GeV in the 2.2 x 2.2 window, with a steep pT spectrum (mean ~0.55 GeV). Charged
  ones below ~0.7 GeV curl up inside the solenoid and reach no calorimeter.
- The detector (tracks, calorimeters, their read-out and calibration): detector.py.
- Occupancy: ~730 non-zero values of 46,875 per jet, mostly soft pile-up and noise hits; with values
  stored as float32 (parquet_io.nested_images) a file has ~6.3 kB per jet, 1.24x the real run files'
  5.1 kB (184 MB / 36,272 jets): tests/stages/test_synthetic.py checks the ratio stays within 0.75-1.33.
- Class enters only through (n_constituents, width) given pT, so P(gluon | latents) is the
  Bayes-optimal discriminant, stored as `oracle` in the truth sidecar.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from scipy.special import expit, gammaln
from tqdm import tqdm

from e2e.sources.registry import DATASETS, RawFile
from e2e.sources.synthetic import parquet_io as pio
from e2e.sources.synthetic.detector import IMG, PIXEL, Particles, calorimeter_images, track_position
from e2e.sources.synthetic.parquet_io import TruthCollector, chunk_rng, chunk_sizes, jet_file, share_jets

KINDS = (0.62, 0.25, 0.13)  # charged hadron, photon, neutral hadron
MULTIPLICITY = {0: 13.0, 1: 24.0}  # mean constituents at pT = 100 GeV, quark / gluon
DISPERSION = 6.0  # NegBin shape: multiplicity fluctuates more than Poisson
GIRTH = {0: 0.08, 1: 0.12}  # median width scale (rad) at pT = 100 GeV
GIRTH_SIGMA = 0.3
FRAG_ALPHA = 1.0  # Dirichlet concentration: < 1 gives a leading particle, 1 a flat sharing
UE_MEAN = 160.0  # underlying-event + pile-up particles above UE_PT_MIN per image
UE_PT_MIN, UE_PT_SLOPE = 0.1, 0.45  # GeV: pT = min + exponential(slope), mean ~0.55 GeV
CHUNK = 200


def _multiplicity_mean(y: np.ndarray, pt: np.ndarray) -> np.ndarray:
    # multiplicity grows slowly, roughly like a power of the jet energy
    return np.where(y == 1, MULTIPLICITY[1], MULTIPLICITY[0]) * pio.power(pt / 100.0, 0.3)


def _width_median(y: np.ndarray, pt: np.ndarray) -> np.ndarray:
    return np.where(y == 1, GIRTH[1], GIRTH[0]) * pio.power(pt / 100.0, -0.5)


def sample_latents(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    y = (rng.random(n) < 0.5).astype(float)
    pt = 70.0 * pio.power(rng.random(n), -0.25)  # dsigma/dpT ~ pT^-5 above the 70 GeV trigger
    pt = np.minimum(pt, 400.0)
    mu = _multiplicity_mean(y, pt)
    n_const = 2 + rng.negative_binomial(DISPERSION, DISPERSION / (DISPERSION + mu))
    width = _width_median(y, pt) * pio.exp(GIRTH_SIGMA * rng.standard_normal(n))
    return dict(
        y=y,
        pt_gen=pt,
        eta_jet=rng.uniform(-0.9, 0.9, n),
        n_constituents=n_const.astype(float),
        width=width,
        n_ue=rng.poisson(UE_MEAN, n).astype(float),
    )


def _log_likelihood(lat: dict[str, np.ndarray], label: int) -> np.ndarray:
    y = np.full_like(lat["pt_gen"], label)
    mu, k, m = _multiplicity_mean(y, lat["pt_gen"]), DISPERSION, lat["n_constituents"] - 2
    log_nb = gammaln(m + k) - gammaln(k) - gammaln(m + 1) + k * pio.log(k / (k + mu)) + m * pio.log(mu / (k + mu))
    z = pio.log(lat["width"] / _width_median(y, lat["pt_gen"])) / GIRTH_SIGMA
    return log_nb - 0.5 * z**2


def oracle(lat: dict[str, np.ndarray]) -> np.ndarray:
    """P(gluon | n_constituents, width, pT) for equal priors."""
    return expit(_log_likelihood(lat, 1) - _log_likelihood(lat, 0))


def _kinds(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    kind = rng.choice(3, size, p=KINDS)
    charge = np.where(kind == 0, rng.choice([-1.0, 1.0], size), 0.0)
    return kind, charge


def fragment(rng: np.random.Generator, counts: np.ndarray, pt: np.ndarray, width: np.ndarray) -> Particles:
    """Split each jet's pT among `counts` constituents (Dirichlet), soft ones wider from the axis."""
    jet = np.repeat(np.arange(len(counts)), counts)
    g = rng.gamma(FRAG_ALPHA, size=len(jet))
    z = g / np.bincount(jet, g)[jet]
    n_of = np.repeat(counts, counts)
    sigma = np.minimum(np.repeat(width, counts) * pio.power(z * n_of, -0.35), 0.3)
    kind, charge = _kinds(rng, len(jet))
    return Particles(
        jet,
        z * np.repeat(pt, counts),
        sigma * rng.standard_normal(len(jet)),
        sigma * rng.standard_normal(len(jet)),
        kind,
        charge,
    )


def underlying_event(rng: np.random.Generator, counts: np.ndarray) -> Particles:
    """Soft particles from the underlying event and pile-up, flat over the image, class-blind."""
    jet = np.repeat(np.arange(len(counts)), counts)
    half = IMG * PIXEL / 2
    kind, charge = _kinds(rng, len(jet))
    return Particles(
        jet,
        UE_PT_MIN + rng.exponential(UE_PT_SLOPE, len(jet)),
        rng.uniform(-half, half, len(jet)),
        rng.uniform(-half, half, len(jet)),
        kind,
        charge,
    )


def jet_kinematics(p: Particles, eta_jet: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """pT and invariant mass of the jet from its (massless) constituents."""
    eta = eta_jet[p.jet] + p.eta
    px, py = p.pt * np.cos(p.phi), p.pt * np.sin(p.phi)
    pz, e = p.pt * pio.sinh(eta), p.pt * pio.cosh(eta)
    sums = [np.bincount(p.jet, w, minlength=n) for w in (px, py, pz, e)]
    m2 = sums[3] ** 2 - sums[0] ** 2 - sums[1] ** 2 - sums[2] ** 2
    return np.hypot(sums[0], sums[1]), np.sqrt(np.maximum(m2, 0.0))


def make_chunk(rng: np.random.Generator, n: int) -> tuple[np.ndarray, dict, dict]:
    lat = sample_latents(rng, n)
    jet = fragment(rng, lat["n_constituents"].astype(int), lat["pt_gen"], lat["width"])
    pt, m0 = jet_kinematics(jet, lat["eta_jet"], n)
    ue = underlying_event(rng, lat["n_ue"].astype(int))
    particles = Particles.concat([jet, ue])
    images = calorimeter_images(rng, particles, lat["eta_jet"], n, tracks=track_position(rng, particles))
    lat["oracle"] = oracle(lat)
    return images, dict(pt=pt, m0=m0, y=lat["y"]), lat


def _write_file(path: Path, n: int, seed: int, bar: tqdm) -> list[Path]:
    truth = TruthCollector()
    with jet_file(path, "X_jets", ["pt", "m0", "y"]) as writer:
        for i, size in enumerate(chunk_sizes(n, CHUNK)):
            images, scalars, lat = make_chunk(chunk_rng(seed, path.name, i), size)
            writer.write(images, scalars)
            truth.add(lat)
            bar.update(size)
    return [path, truth.write(path)]


def _declared_jets(f: RawFile) -> float:
    """The jets a real run file holds, as its name says (..._n36272.test.snappy.parquet)."""
    match = re.search(r"_n(\d+)\.", f.name)
    if match is None:
        raise ValueError(f"{f.name}: no _n<jets>. in the name of a quark/gluon run file")
    return float(match.group(1))


def generate_quark_gluon(
    out_dir: Path, cfg: dict, seed: int, *, progress: bool = True, files: tuple[RawFile, ...] | None = None
) -> list[Path]:
    """Write the chosen run files (default all three), n_jets divided among them as in the real runs
    (36272/47540/55494)."""
    n = int(cfg.get("n_jets", 3000))
    files = DATASETS["quark_gluon"].files if files is None else tuple(files)
    counts = share_jets(
        n,
        [f.name for f in files],
        [_declared_jets(f) for f in files],
        "synthetic.quark_gluon.n_jets",
    )
    written = []
    with tqdm(total=n, desc="quark_gluon", unit="jet", disable=None if progress else True) as bar:
        for raw, count in zip(files, counts):
            written += _write_file(Path(out_dir) / raw.name, count, seed, bar)
    return written
