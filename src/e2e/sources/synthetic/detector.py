"""The detector of the toy jets: where particles leave tracks, ECAL and HCAL deposits, and how the
calorimeters read them out, as 125x125 images (ECAL crystal granularity) in the real files' units.

- Tracks sit at their momentum's direction at the vertex, as the real images bin them (MLAnalyzer,
  RHAnalyzer_fillTracksAtEBEE.cc: a high-purity track's eta() and phi()), so soft tracks that curl up
  before the ECAL are in the image too; the calorimeters see only particles that reach them.
- A hadron starts its shower in the ECAL (1.1 interaction lengths) with probability ECAL_INTERACTION
  and leaves a uniform share of its energy there, otherwise a charged one leaves a MIP; the HCAL
  measures the rest with HCAL_RESPONSE.
- Calorimeter read-out: every crystal gets electronics noise (sigma 40 MeV, as in the barrel ECAL)
  and is zero-suppressed at ECAL_THRESHOLD, so ~220 noise-only crystals per image survive, as in real
  rechit images; HCAL towers get 200 MeV of noise and a 1 GeV threshold.
- Calibration to what is published about the real files (no real jet image is available to us):
  ECAL_THRESHOLD, HCAL_THRESHOLD and TRACK_PT_MIN give the zero-pixel fractions that a GSoC 2026
  write-up states for the 139,306 test-file jets (track 99.7 %, ECAL 97.8 %, HCAL 97.8 %);
  ECAL_INTERACTION, HCAL_RESPONSE and TRACK_EFFICIENCY give the per-channel means over all pixels of
  the top_gun jet-mass files (track pT 0.023, ECAL 0.0267, HCAL 0.0214; an EDA notebook on a sample,
  abhisekpraharaj/GSOC_E2E_TEST_2025; jet_mass.py uses this same detector). bench/realism_jets.py
  compares them, and what is not matched (the largest pixel values, the pixel layers); its report names
  the sources.
- HCAL towers cover 5x5 crystals; every crystal of a tower holds tower energy / 25, as in the real images.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from e2e.sources.synthetic import parquet_io as pio

IMG, TOWER = 125, 5
PIXEL = 0.0174  # ECAL barrel crystal size in eta and phi
BEND = 0.3 * 3.8 * 1.29 / 2  # GeV: 0.3 B R / 2 with B = 3.8 T, ECAL front at R = 1.29 m
# lateral spread of an EM shower over 3x3 crystals (~72 % in the central one)
ECAL_KERNEL = np.array([[0.02, 0.05, 0.02], [0.05, 0.72, 0.05], [0.02, 0.05, 0.02]])
# read-out and response: the thresholds, ECAL_INTERACTION, HCAL_RESPONSE, TRACK_* fitted as the docstring says
ECAL_NOISE, ECAL_THRESHOLD = 0.04, 0.088  # GeV per crystal: electronics noise, zero suppression
HCAL_NOISE, HCAL_THRESHOLD = 0.2, 1.0  # GeV per tower
ECAL_INTERACTION, MIP = 0.3, 0.3  # a hadron showers in the ECAL with this probability; else a MIP (GeV)
HCAL_RESPONSE = 0.55  # HCAL signal per GeV of hadron energy
TRACK_PT_MIN, TRACK_EFFICIENCY = 0.45, 0.75  # GeV; the share of tracks found


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
    def concat(parts: list[Particles]) -> Particles:
        return Particles(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Particles)))


def _pixel(eta: np.ndarray, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel (row=eta, col=phi) of a direction from the jet axis, and whether it lies inside the image."""
    row = np.floor(IMG / 2 + eta / PIXEL).astype(int)
    col = np.floor(IMG / 2 + phi / PIXEL).astype(int)
    return row, col, (row >= 0) & (row < IMG) & (col >= 0) & (col < IMG)


def calo_position(p: Particles, radius: float = 1.29) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel (row=eta, col=phi) where each particle crosses `radius` (m), and whether it gets there."""
    reach = BEND * radius / 1.29
    bend = np.zeros(len(p.pt))
    charged = p.charge != 0
    bend[charged] = p.charge[charged] * pio.arcsin(np.minimum(reach / p.pt[charged], 1.0))
    row, col, inside = _pixel(p.eta, p.phi + bend)
    # charged particles below BEND loop inside the solenoid and never reach the calorimeters
    return row, col, inside & ((p.charge == 0) | (p.pt > reach))


Hits = tuple[np.ndarray, np.ndarray, np.ndarray]  # calo_position's (row, col, reaches the calorimeters)


def calorimeter_shares(rng: np.random.Generator, p: Particles, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Energy each particle leaves in the ECAL and in the HCAL: photons all in the ECAL; a hadron starts
    its shower in the ECAL (~1.1 interaction lengths of PbWO4) with probability ECAL_INTERACTION and
    leaves a uniform share there, otherwise a charged one leaves a MIP; the HCAL gets the rest."""
    hadron = p.kind != 1
    share = np.where(rng.random(len(e)) < ECAL_INTERACTION, rng.random(len(e)), 0.0)
    ecal = np.where(hadron, share * e + np.where(share == 0, np.minimum(MIP * (p.charge != 0), e), 0.0), e)
    return ecal, np.where(hadron, e - ecal, 0.0)


def _ecal(rng: np.random.Generator, p: Particles, dep: np.ndarray, *, hits: Hits, out: np.ndarray) -> None:
    """ECAL energies `dep` into `out` (n, 125, 125), which holds zeros."""
    row, col, ok = hits
    dep = dep[ok]
    # each deposit spread over its 3x3 crystals (in a frame one crystal wider, then cropped)
    di, dj = np.divmod(np.arange(9), 3)
    padded = np.zeros((len(out), IMG + 2, IMG + 2))
    np.add.at(
        padded,
        (p.jet[ok][:, None], row[ok][:, None] + di, col[ok][:, None] + dj),
        dep[:, None] * ECAL_KERNEL.reshape(-1),
    )
    out += padded[:, 1:-1, 1:-1]
    hit = out > 0
    out[hit] = rng.gamma(out[hit] / 0.01) * 0.01  # ECAL stochastic term ~ 3 %/sqrt(E)
    out += ECAL_NOISE * rng.standard_normal(out.shape)
    out[out <= ECAL_THRESHOLD] = 0.0  # zero suppression


def _hcal(rng: np.random.Generator, p: Particles, dep: np.ndarray, *, hits: Hits, out: np.ndarray) -> None:
    """HCAL tower energies (of deposits `dep`) / 25 into every crystal of `out` (n, 125, 125)."""
    row, col, ok = hits
    towers = np.zeros((len(out), IMG // TOWER, IMG // TOWER))
    np.add.at(towers, (p.jet[ok], row[ok] // TOWER, col[ok] // TOWER), dep[ok])
    # sampling calorimeter: ~100 %/sqrt(E) resolution, HCAL_RESPONSE to hadrons
    hit = towers > 0
    towers[hit] = rng.gamma(towers[hit] / 1.0) * HCAL_RESPONSE
    towers += HCAL_NOISE * rng.standard_normal(towers.shape)
    towers[towers <= HCAL_THRESHOLD] = 0.0
    out[...] = np.repeat(np.repeat(towers, TOWER, axis=1), TOWER, axis=2) / TOWER**2


def track_position(rng: np.random.Generator, p: Particles) -> Hits:
    """Pixel (row=eta, col=phi) of each track, and whether it is one: the direction of its momentum at
    the vertex, as the real images place tracks (MLAnalyzer's fillTracksAtEBEE bins a high-purity track
    at its eta() and phi()), so also tracks that curl up before the ECAL: above TRACK_PT_MIN, found with
    TRACK_EFFICIENCY (high-purity tracks lose hits shared in a dense jet core)."""
    row, col, inside = _pixel(p.eta, p.phi)
    ok = inside & (p.charge != 0) & (p.pt > TRACK_PT_MIN)
    return row, col, ok & (rng.random(len(p.pt)) < TRACK_EFFICIENCY)


def calorimeter_images(
    rng: np.random.Generator,
    p: Particles,
    eta_jet: np.ndarray,
    n: int,
    *,
    tracks: Hits,
    out: np.ndarray | None = None,
    channels: tuple[int, int, int] = (0, 1, 2),
) -> np.ndarray:
    """Track pT at `tracks` (track_position's, drawn once so that every track channel agrees), ECAL energy,
    HCAL energy (towers / 25), written into `channels` of `out` (n, C, 125, 125) of zeros; by default a new
    (n, 3, 125, 125)."""
    out = np.zeros((n, 3, IMG, IMG)) if out is None else out
    row, col, track = tracks
    np.add.at(out[:, channels[0]], (p.jet[track], row[track], col[track]), p.pt[track])
    hits = calo_position(p)
    ecal, hcal = calorimeter_shares(rng, p, p.pt * pio.cosh(eta_jet[p.jet] + p.eta))
    _ecal(rng, p, ecal, hits=hits, out=out[:, channels[1]])
    _hcal(rng, p, hcal, hits=hits, out=out[:, channels[2]])
    return out
