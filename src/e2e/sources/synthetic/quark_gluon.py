"""Toy quark and gluon jets as 125x125 (track pT, ECAL, HCAL) images, in the layout of the real files.

Physics of the toy:
- Gluons radiate with colour factor C_A = 3 against C_F = 4/3 for quarks, so gluon jets carry
  more constituents (NegBin, mean ~1.8x, below C_A / C_F = 2.25) and spread wider (log-normal
  girth scale); with fewer constituents a quark's momentum is shared among fewer particles, so it
  fragments harder.
- Momentum fractions are a Dirichlet draw, soft constituents sit further from the axis.
- 62 % charged hadrons (track + ECAL/HCAL, bent in phi by the 3.8 T field), 25 % photons from
  pi0 decays (ECAL, 3x3 crystal spread), 13 % neutral hadrons (HCAL only). HCAL towers cover
  5x5 crystals; every crystal of a tower holds tower energy / 25, as in the real images.
- A few soft underlying-event / pile-up particles land anywhere in the image, whatever the class.
- Class enters only through (n_constituents, width) given pT, so P(gluon | latents) is the
  Bayes-optimal discriminant, stored as `oracle` in the truth sidecar.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from scipy.special import expit, gammaln
from tqdm import tqdm

from e2e.sources.registry import DATASETS
from e2e.sources.synthetic.parquet_io import (
    TruthCollector, chunk_rng, chunk_sizes, jet_file, split_counts,
)

IMG, TOWER = 125, 5
PIXEL = 0.0174  # ECAL barrel crystal size in eta and phi
BEND = 0.3 * 3.8 * 1.29 / 2  # GeV: 0.3 B R / 2 with B = 3.8 T, ECAL front at R = 1.29 m
KINDS = (0.62, 0.25, 0.13)  # charged hadron, photon, neutral hadron
# lateral spread of an EM shower over 3x3 crystals (~72 % in the central one)
ECAL_KERNEL = np.array([[0.02, 0.05, 0.02], [0.05, 0.72, 0.05], [0.02, 0.05, 0.02]])
MULTIPLICITY = {0: 13.0, 1: 24.0}  # mean constituents at pT = 100 GeV, quark / gluon
DISPERSION = 6.0  # NegBin shape: multiplicity fluctuates more than Poisson
GIRTH = {0: 0.08, 1: 0.12}  # median width scale (rad) at pT = 100 GeV
GIRTH_SIGMA = 0.3
FRAG_ALPHA = 1.0  # Dirichlet concentration: < 1 gives a leading particle, 1 a flat sharing
UE_MEAN = 5.0  # underlying-event + pile-up particles per image
CHUNK = 200


@dataclass
class Particles:
    """Flat particle arrays; `jet` says which image each belongs to; eta/phi relative to the jet axis."""
    jet: np.ndarray
    pt: np.ndarray
    eta: np.ndarray
    phi: np.ndarray
    kind: np.ndarray  # 0 charged hadron, 1 photon, 2 neutral hadron
    charge: np.ndarray

    @staticmethod
    def concat(parts: list["Particles"]) -> "Particles":
        return Particles(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Particles)))


def _multiplicity_mean(y: np.ndarray, pt: np.ndarray) -> np.ndarray:
    # multiplicity grows slowly, roughly like a power of the jet energy
    return np.where(y == 1, MULTIPLICITY[1], MULTIPLICITY[0]) * (pt / 100.0) ** 0.3


def _width_median(y: np.ndarray, pt: np.ndarray) -> np.ndarray:
    return np.where(y == 1, GIRTH[1], GIRTH[0]) * (pt / 100.0) ** -0.5


def sample_latents(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    y = (rng.random(n) < 0.5).astype(float)
    pt = 70.0 * rng.random(n) ** -0.25  # dsigma/dpT ~ pT^-5 above the 70 GeV trigger
    pt = np.minimum(pt, 400.0)
    mu = _multiplicity_mean(y, pt)
    n_const = 2 + rng.negative_binomial(DISPERSION, DISPERSION / (DISPERSION + mu))
    width = _width_median(y, pt) * np.exp(GIRTH_SIGMA * rng.standard_normal(n))
    return dict(y=y, pt_gen=pt, eta_jet=rng.uniform(-0.9, 0.9, n), n_constituents=n_const.astype(float),
                width=width, n_ue=rng.poisson(UE_MEAN, n).astype(float))


def _log_likelihood(lat: dict[str, np.ndarray], label: int) -> np.ndarray:
    y = np.full_like(lat["pt_gen"], label)
    mu, k, m = _multiplicity_mean(y, lat["pt_gen"]), DISPERSION, lat["n_constituents"] - 2
    log_nb = (gammaln(m + k) - gammaln(k) - gammaln(m + 1)
              + k * np.log(k / (k + mu)) + m * np.log(mu / (k + mu)))
    z = np.log(lat["width"] / _width_median(y, lat["pt_gen"])) / GIRTH_SIGMA
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
    sigma = np.minimum(np.repeat(width, counts) * (z * n_of) ** -0.35, 0.3)
    kind, charge = _kinds(rng, len(jet))
    return Particles(jet, z * np.repeat(pt, counts), sigma * rng.standard_normal(len(jet)),
                     sigma * rng.standard_normal(len(jet)), kind, charge)


def underlying_event(rng: np.random.Generator, counts: np.ndarray) -> Particles:
    """Soft particles from the underlying event and pile-up, flat over the image, class-blind."""
    jet = np.repeat(np.arange(len(counts)), counts)
    half = IMG * PIXEL / 2
    kind, charge = _kinds(rng, len(jet))
    return Particles(jet, 0.3 + rng.exponential(0.7, len(jet)), rng.uniform(-half, half, len(jet)),
                     rng.uniform(-half, half, len(jet)), kind, charge)


def jet_kinematics(p: Particles, eta_jet: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """pT and invariant mass of the jet from its (massless) constituents."""
    eta = eta_jet[p.jet] + p.eta
    px, py = p.pt * np.cos(p.phi), p.pt * np.sin(p.phi)
    pz, e = p.pt * np.sinh(eta), p.pt * np.cosh(eta)
    sums = [np.bincount(p.jet, w, minlength=n) for w in (px, py, pz, e)]
    m2 = sums[3] ** 2 - sums[0] ** 2 - sums[1] ** 2 - sums[2] ** 2
    return np.hypot(sums[0], sums[1]), np.sqrt(np.maximum(m2, 0.0))


def calo_position(p: Particles, radius: float = 1.29) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel (row=eta, col=phi) where each particle crosses `radius` (m), and whether it gets there."""
    reach = BEND * radius / 1.29
    bend = np.where(p.charge != 0, p.charge * np.arcsin(np.minimum(reach / p.pt, 1.0)), 0.0)
    row = np.floor(IMG / 2 + p.eta / PIXEL).astype(int)
    col = np.floor(IMG / 2 + (p.phi + bend) / PIXEL).astype(int)
    # charged particles below BEND loop inside the solenoid and never reach the calorimeters
    ok = (row >= 0) & (row < IMG) & (col >= 0) & (col < IMG) & ((p.charge == 0) | (p.pt > reach))
    return row, col, ok


def _ecal(rng: np.random.Generator, p: Particles, e: np.ndarray, row, col, ok, n: int) -> np.ndarray:
    frac = np.where(p.kind == 1, 1.0, np.where(p.kind == 0, 0.3 * rng.random(len(e)) ** 2, 0.0))
    point = np.zeros((n, IMG + 2, IMG + 2))
    np.add.at(point, (p.jet[ok], row[ok] + 1, col[ok] + 1), (e * frac)[ok])
    image = sum(ECAL_KERNEL[i, j] * point[:, 2 - i:IMG + 2 - i, 2 - j:IMG + 2 - j]
                for i in range(3) for j in range(3))
    image = rng.gamma(image / 0.01 + 1e-12) * 0.01  # ECAL stochastic term ~ 3 %/sqrt(E)
    return np.where(image > 0.1, image, 0.0)  # zero suppression at ~ 2.5 sigma of noise


def _hcal(rng: np.random.Generator, p: Particles, e: np.ndarray, row, col, ok, n: int) -> np.ndarray:
    frac = np.where(p.kind == 2, 1.0, np.where(p.kind == 0, 0.7 + 0.3 * rng.random(len(e)), 0.0))
    towers = np.zeros((n, IMG // TOWER, IMG // TOWER))
    np.add.at(towers, (p.jet[ok], row[ok] // TOWER, col[ok] // TOWER), (e * frac)[ok])
    # sampling calorimeter: ~100 %/sqrt(E) resolution and 85 % response to hadrons
    towers = rng.gamma(towers / 1.0 + 1e-12) * 0.85
    towers = np.where(towers > 0.5, towers, 0.0)
    return np.repeat(np.repeat(towers, TOWER, axis=1), TOWER, axis=2) / TOWER**2


def calorimeter_images(rng: np.random.Generator, p: Particles, eta_jet: np.ndarray, n: int) -> np.ndarray:
    """(n, 3, 125, 125): track pT at the ECAL entry point, ECAL energy, HCAL energy (towers / 25)."""
    row, col, ok = calo_position(p)
    e = p.pt * np.cosh(eta_jet[p.jet] + p.eta)
    tracks = np.zeros((n, IMG, IMG))
    has_track = ok & (p.charge != 0)
    np.add.at(tracks, (p.jet[has_track], row[has_track], col[has_track]), p.pt[has_track])
    return np.stack([tracks, _ecal(rng, p, e, row, col, ok, n), _hcal(rng, p, e, row, col, ok, n)], axis=1)


def make_chunk(rng: np.random.Generator, n: int) -> tuple[np.ndarray, dict, dict]:
    lat = sample_latents(rng, n)
    jet = fragment(rng, lat["n_constituents"].astype(int), lat["pt_gen"], lat["width"])
    pt, m0 = jet_kinematics(jet, lat["eta_jet"], n)
    ue = underlying_event(rng, lat["n_ue"].astype(int))
    images = calorimeter_images(rng, Particles.concat([jet, ue]), lat["eta_jet"], n)
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


def generate_quark_gluon(out_dir: Path, cfg: dict, seed: int, progress: bool = True) -> list[Path]:
    """Write the three run files, jets divided as in the real ones (36272/47540/55494)."""
    n = int(cfg.get("n_jets", 3000))
    files = DATASETS["quark_gluon"].files
    counts = split_counts(n, [float(re.search(r"_n(\d+)\.", f.name).group(1)) for f in files])
    written = []
    with tqdm(total=n, desc="quark_gluon", unit="jet", disable=not progress) as bar:
        for raw, count in zip(files, counts):
            written += _write_file(Path(out_dir) / raw.name, count, seed, bar)
    return written
