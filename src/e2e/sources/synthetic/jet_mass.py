"""Toy boosted-jet images for mass regression: 8x125x125 like the public top_gun files.

Physics of the toy:
- A heavy particle of mass m (flat in m_range) and transverse momentum pT decays to two massless
  partons (W/Z-like) or, top-like, to b + W with W -> q q' (m_W / m_t kept at 80/173); decays
  are isotropic in the rest frame, so prongs open by dR ~ 2 m / pT. pT is flat in pt_range above
  1.25 m, so every prong lands inside the 125-crystal (2.2 rad) window.
- Each prong fragments like a jet (quark_gluon.fragment) into collinear hadrons; soft
  underlying-event / pile-up particles are added on top (UE_MEAN ~55 above 0.1 GeV per image,
  fewer than in the quark/gluon runs). Tracks, calorimeters, their noise and zero suppression are
  those of detector.py, fitted in part to this dataset's published channel means.
- Tracks carry impact parameters: prompt ones are resolution-limited, b-hadron daughters are
  displaced (d0 ~ exponential, c tau ~ 0.5 mm), pile-up tracks come from another vertex
  (dZ ~ the 5 cm beam spot): the dZ and d0 channels are heavy-tailed.
- Pixel layers 1-3 (r = 4.4, 7.3, 10.2 cm) record a cluster charge (MIP units) where charged
  particles cross, also the soft ones that curl up before the ECAL.
- Occupancy: ~900 non-zero values of 125,000 per jet, mostly noise and soft-particle hits; they
  set the size of a file, ~8.4 kB per jet, 1.08x the public top_gun_opendata_0 (1,171,158,319 B
  for 150,327 jets), which UE_MEAN was set by and tests/stages/test_synthetic.py checks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from e2e.sources.registry import DATASETS, RawFile
from e2e.sources.synthetic import detector as det
from e2e.sources.synthetic import parquet_io as pio
from e2e.sources.synthetic import quark_gluon as qg
from e2e.sources.synthetic.parquet_io import TruthCollector, chunk_rng, chunk_sizes, jet_file, share_jets

W_OVER_TOP = 80.4 / 172.8
PIXEL_LAYERS_M = (0.044, 0.073, 0.102)
MIN_PT_OVER_M = 1.25  # keeps m / pT <= 0.8: the prongs stay within the image
CONTAINED = 0.8  # rad: prong axes within the 125-crystal (+-1.09 rad) window, minus a margin
PILEUP_FRACTION = 0.7
PRONG_MULTIPLICITY = 10.0  # mean hadrons per prong at 100 GeV (plus 2)
UE_MEAN = 55.0  # soft particles (pT > 0.1 GeV) per image: set by the real file's bytes per jet
CHUNK = 64


def _two_body(rng: np.random.Generator, parent: np.ndarray, m: np.ndarray, m1: np.ndarray):
    """Isotropic decay of `parent` (N, 4: E, px, py, pz) of mass m into masses m1 and 0."""
    p = (m**2 - m1**2) / (2 * m)
    cos, phi = rng.uniform(-1, 1, len(m)), rng.uniform(0, 2 * np.pi, len(m))
    sin = np.sqrt(1 - cos**2)
    d = np.stack([sin * np.cos(phi), sin * np.sin(phi), cos], axis=1) * p[:, None]
    first = np.concatenate([np.sqrt(m1**2 + p**2)[:, None], d], axis=1)
    second = np.concatenate([p[:, None], -d], axis=1)
    return _boost(first, parent), _boost(second, parent)


def _boost(v: np.ndarray, parent: np.ndarray) -> np.ndarray:
    """Lorentz-boost rest-frame 4-vectors `v` to the frame where the parent has 4-momentum `parent`."""
    m = np.sqrt(np.maximum(parent[:, 0] ** 2 - np.sum(parent[:, 1:] ** 2, axis=1), 1e-12))
    beta = parent[:, 1:] / parent[:, :1]
    gamma = parent[:, 0] / m
    bp = np.sum(beta * v[:, 1:], axis=1)
    b2 = np.maximum(np.sum(beta**2, axis=1), 1e-12)
    coef = (gamma - 1) * bp / b2 + gamma * v[:, 0]
    return np.concatenate([(gamma * (v[:, 0] + bp))[:, None], v[:, 1:] + coef[:, None] * beta], axis=1)


def decay_prongs(rng: np.random.Generator, m: np.ndarray, pt: np.ndarray, three: np.ndarray) -> list[np.ndarray]:
    """Three prong 4-vectors per jet (the third has zero energy for two-prong decays); parent at eta=phi=0."""
    parent = np.stack([np.sqrt(pt**2 + m**2), pt, np.zeros_like(pt), np.zeros_like(pt)], axis=1)
    m_w = np.where(three, W_OVER_TOP * m, 0.0)
    w, b = _two_body(rng, parent, m, m_w)
    first, second = w.copy(), np.zeros_like(w)
    first[three], second[three] = _two_body(rng, w[three], m_w[three], np.zeros(three.sum()))
    return [b, first, second]


def contained_prongs(rng: np.random.Generator, m: np.ndarray, pt: np.ndarray, three: np.ndarray) -> list[np.ndarray]:
    """Decay, re-drawing the rest-frame angles until every prong points inside the window.

    Like the real sample's requirement that the jet contains its whole decay; m and pT are
    untouched, so the target distribution stays flat.
    """
    prongs = decay_prongs(rng, m, pt, three)
    todo = ~_contained(prongs)
    for _ in range(200):
        if not todo.any():
            break
        redo = decay_prongs(rng, m[todo], pt[todo], three[todo])
        for prong, new in zip(prongs, redo):
            prong[todo] = new
        todo[todo] = ~_contained(redo)
    return prongs


def _contained(prongs: list[np.ndarray]) -> np.ndarray:
    ok = np.ones(len(prongs[0]), bool)
    for v in prongs:
        _, eta, phi = _prong_axes(v)
        ok &= (v[:, 0] == 0) | ((np.abs(eta) < CONTAINED) & (np.abs(phi) < CONTAINED))
    return ok


def _prong_axes(v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pt = np.hypot(v[:, 1], v[:, 2])
    return pt, pio.arcsinh(v[:, 3] / np.maximum(pt, 1e-9)), pio.arctan2(v[:, 2], v[:, 1])


def sample_latents(rng: np.random.Generator, n: int, cfg: dict) -> dict[str, np.ndarray]:
    m_lo, m_hi = cfg.get("m_range", (85.0, 500.0))
    pt_lo, pt_hi = cfg.get("pt_range", (400.0, 1000.0))
    m = rng.uniform(m_lo, m_hi, n)
    lo = np.minimum(np.maximum(pt_lo, MIN_PT_OVER_M * m), pt_hi)
    eta = rng.uniform(-1.2, 1.2, n)
    return dict(
        m=m,
        pt_gen=rng.uniform(lo, pt_hi),
        eta_jet=eta,
        three_prong=(rng.random(n) < 0.5) * 1.0,
        # the jet's HCAL tower indices as in the public files: 0.087-wide towers in eta, 72 in phi
        ieta=np.floor(eta / 0.087) + 28.0,
        iphi=rng.integers(0, 72, n) * 1.0,
        n_ue=rng.poisson(UE_MEAN, n) * 1.0,
    )


def decay_products(rng: np.random.Generator, lat: dict[str, np.ndarray]) -> tuple[det.Particles, np.ndarray]:
    """The hadrons from the decay, and whether each is a b-hadron daughter (displaced)."""
    prongs = contained_prongs(rng, lat["m"], lat["pt_gen"], lat["three_prong"] > 0)
    parts, from_b = [], []
    for k, v in enumerate(prongs):
        pt, eta, phi = _prong_axes(v)
        alive = pt > 1.0
        # prongs fragment like light jets: multiplicity grows slowly with prong energy
        scale = np.maximum(pt, 1.0) / 100
        counts = np.where(alive, 2 + rng.poisson(PRONG_MULTIPLICITY * pio.power(scale, 0.3)), 0)
        frag = qg.fragment(rng, counts, pt, 0.02 * pio.power(scale, -0.5))
        frag.eta, frag.phi = frag.eta + eta[frag.jet], frag.phi + phi[frag.jet]
        parts.append(frag)
        from_b.append(np.full(len(frag.jet), k == 0) & (lat["three_prong"][frag.jet] > 0))
    return det.Particles.concat(parts), np.concatenate(from_b)


def track_images(
    rng: np.random.Generator,
    p: det.Particles,
    from_b: np.ndarray,
    pileup: np.ndarray,
    *,
    tracks: det.Hits,
    out: np.ndarray,
) -> None:
    """Into `out` (n, 8, 125, 125) of zeros: dZ, d0 (mm) at the track pixels of the track pT channel
    (channels 1, 2), then pixel layers 1-3 (channels 5-7)."""
    row, col, trk = tracks
    sigma = 0.01 + 0.1 / p.pt  # multiple scattering dominates the resolution of soft tracks
    d0 = sigma * rng.standard_normal(len(p.pt)) + np.where(from_b, rng.exponential(0.5, len(p.pt)), 0.0)
    d0 *= rng.choice([-1.0, 1.0], len(p.pt))
    dz = np.where(pileup, rng.normal(0.0, 50.0, len(p.pt)), 1.5 * sigma * rng.standard_normal(len(p.pt)))
    np.add.at(out[:, 1], (p.jet[trk], row[trk], col[trk]), dz[trk])
    np.add.at(out[:, 2], (p.jet[trk], row[trk], col[trk]), d0[trk])
    for layer, radius in enumerate(PIXEL_LAYERS_M):
        r, c, hit = det.calo_position(p, radius)
        hit &= (p.charge != 0) & (rng.random(len(p.pt)) < 0.98)
        charge = np.maximum(rng.gumbel(1.0, 0.15, len(p.pt)), 0.5)  # Landau-like MIP cluster charge
        np.add.at(out[:, 5 + layer], (p.jet[hit], r[hit], c[hit]), charge[hit])


def make_chunk(rng: np.random.Generator, n: int, cfg: dict) -> tuple[np.ndarray, dict, dict]:
    lat = sample_latents(rng, n, cfg)
    decay, from_b = decay_products(rng, lat)
    lat["pt_reco"], lat["m_reco"] = qg.jet_kinematics(decay, lat["eta_jet"], n)
    parts = det.Particles.concat([decay, qg.underlying_event(rng, lat["n_ue"].astype(int))])
    from_b = np.concatenate([from_b, np.zeros(len(parts.jet) - len(from_b), bool)])
    # most soft extra particles come from pile-up collisions elsewhere along the beam line
    pileup = (np.arange(len(parts.jet)) >= len(decay.jet)) & (rng.random(len(parts.jet)) < PILEUP_FRACTION)
    images = np.zeros((n, 8, det.IMG, det.IMG))  # track pT, dZ, d0, ECAL, HCAL, pixel layers 1-3
    tracks = det.track_position(rng, parts)
    det.calorimeter_images(rng, parts, lat["eta_jet"], n, tracks=tracks, out=images, channels=(0, 3, 4))
    track_images(rng, parts, from_b, pileup, tracks=tracks, out=images)
    scalars = dict(m=lat["m"], pt=lat["pt_gen"], ieta=lat["ieta"], iphi=lat["iphi"])
    return images, scalars, lat


def generate_jet_mass(
    out_dir: Path, cfg: dict, seed: int, *, progress: bool = True, files: tuple[RawFile, ...] | None = None
) -> list[Path]:
    """Write the chosen top_gun_opendata_<i>.parquet files (default all seven; columns X_jet, m, iphi,
    pt, ieta like the public files), n_jets divided among them in equal shares.

    Each file's random streams are keyed by its name, so its content depends only on the seed, its
    name and its jet count, not on which other files are written.
    """
    n = int(cfg.get("n_jets", 2500))
    files = DATASETS["jet_mass"].files if files is None else tuple(files)
    written = []
    with tqdm(total=n, desc="jet_mass", unit="jet", disable=None if progress else True) as bar:
        counts = share_jets(n, [f.name for f in files], [1.0] * len(files), "synthetic.jet_mass.n_jets")
        for raw, count in zip(files, counts):
            written += _write_file(Path(out_dir) / raw.name, count, cfg, seed, bar)
    return written


def _write_file(path: Path, n: int, cfg: dict, seed: int, bar: tqdm) -> list[Path]:
    truth = TruthCollector()
    with jet_file(path, "X_jet", ["m", "iphi", "pt", "ieta"]) as writer:
        for i, size in enumerate(chunk_sizes(n, CHUNK)):
            images, scalars, lat = make_chunk(chunk_rng(seed, path.name, i), size, cfg)
            writer.write(images, scalars)
            truth.add(lat)
            bar.update(size)
    return [path, truth.write(path)]
