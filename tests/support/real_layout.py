"""The project's own tiny files in the real on-disk layouts (DESIGN.md, first table).

`write_formats(out)` writes into `out` the same file set, names and row counts as ../shared/formats
(the independently written reference files CI has), so that every test that converts, downloads or
trains on "the files in the real layouts" also runs on a fresh clone with nothing beside it.

This module shares no code with the synthetic generator (src/e2e/sources/synthetic) nor with e2e's
readers: it writes with h5py and pyarrow directly, from the layout as documented, so that a test which
reads these files checks our code against the documented format, not against itself. The content is
sparse random deposits, seeded (the same bytes on every run), with distinct non-zero values in every
channel, so that a scrambled, swapped or dropped channel shows:

| path | layout | rows |
| --- | --- | --- |
| electron_photon/SinglePhotonPt50_IMGCROPS_n249k_RHv1.hdf5 | `X` (N,32,32,2) float32 channels-LAST (energy, time), `y` (N,) float32 = 0; gzip-compressed chunks, as the real files | 98 |
| electron_photon/SingleElectronPt50_IMGCROPS_n249k_RHv1.hdf5 | same, `y` = 1 | 102 |
| quark_gluon/QCDToGGQQ_IMGjet_RH1all_jet0_run{0,1,2}_n*.test.snappy.parquet | `X_jets` list<list<list<double>>> 3x125x125 channels-FIRST (track pT, ECAL, HCAL in 5x5 towers / 25), `pt`, `m0`, `y` double; snappy; one row group per jet | 4, 3, 5 |
| jet_mass/top_gun_opendata_0.parquet | `X_jet` 8x125x125 (track pT, dZ, d0 signed, ECAL, HCAL towers, 3 pixel layers), `m` 85-500, `iphi` 0-71, `pt` 400-1000, `ieta` 12-43 double; one row group per jet | 4 |
| jet_mass/variant_am/aToGG_variant.parquet | `X_jets`, `am`, `apt`, `iphi`, `ieta`; no `pt`/`m` | 3 |
| jet_mass/variant_4ch/jet_mass_4channels.parquet | `X_jet` 4x125x125 (track pT, dZ, d0, ECAL), `am`, `apt`, `iphi`, `ieta` | 12 |

`ieta`/`iphi` are the jet's HCAL tower indices, as in the public files (ieta 12-43, iphi 0-71; a tower is 5x5
ECAL crystals), not ECAL crystal indices. The real e/gamma files' chunk shape is not known here: they are
115 and 123 MiB for 2.04 GB of pixels, so compressed, and taken to have been written by h5py with gzip
(level 4, its default) and no chunk shape given, which makes h5py choose (7782, 2, 2, 1) for X of shape
(249000, 32, 32, 2) and (3891,) for y. The fixture keeps that chunk's pixel extent with 32 rows, so that its
98 rows span several rows of chunks and reading in row batches crosses chunk boundaries.

Only uniform draws and + - * / are used (no exp/log), so the values do not depend on the CPU's libm.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

EGAMMA = (
    ("SinglePhotonPt50_IMGCROPS_n249k_RHv1.hdf5", 98, 0.0),
    ("SingleElectronPt50_IMGCROPS_n249k_RHv1.hdf5", 102, 1.0),
)
QUARK_GLUON = tuple(
    (f"QCDToGGQQ_IMGjet_RH1all_jet0_run{run}_n{size}.test.snappy.parquet", jets)
    for run, size, jets in ((0, 36272, 4), (1, 47540, 3), (2, 55494, 5))
)
JET_MASS = ("top_gun_opendata_0.parquet", 4)
JET_MASS_VARIANT = ("variant_am/aToGG_variant.parquet", 3)
JET_MASS_4CH = ("variant_4ch/jet_mass_4channels.parquet", 12)
EGAMMA_CHUNKS = (32, 2, 2, 1)  # rows, eta, phi, channel: see the module docstring
SIDE, JET_SIDE, TOWER = 32, 125, 5
SEED = 20240611


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([SEED, *key])


# ---------------------------------------------------------------- electron/photon: HDF5, channels-last


def egamma_crops(n: int, label: float, rng: np.random.Generator) -> np.ndarray:
    """(n, 32, 32, 2) float32 channels-last: a shower around the centre, ~5 % of the pixels hit.

    Energy: a core pixel of 0.3-1.4 near the centre plus 20-70 halo hits from ~0.001 up (some below
    0.025, so zero suppression bites); electrons spread wider in phi. Time: non-zero (-2.5..2.3 ns) on
    the hits above 0.01, so the two channels differ everywhere they are non-zero."""
    x = np.zeros((n, SIDE, SIDE, 2), np.float32)
    for i in range(n):
        ce, cp = 16 + rng.integers(-1, 2, 2)
        half_eta, half_phi = 4, (7 if label else 4)
        window = [
            (e, p)
            for e in range(ce - half_eta, ce + half_eta + 1)
            for p in range(cp - half_phi, cp + half_phi + 1)
            if (e, p) != (ce, cp)
        ]
        hits = rng.choice(len(window), size=int(rng.integers(20, 71)), replace=False)
        core = 0.3 + 1.1 * rng.random()
        x[i, ce, cp, 0] = core
        for k in hits:
            e, p = window[k]
            x[i, e, p, 0] = 0.001 + 0.6 * core * rng.random() ** 3
        hit = x[i, :, :, 0] > 0.01
        x[i, :, :, 1][hit] = (-2.5 + 4.8 * rng.random(int(hit.sum()))).astype(np.float32)
        x[i, :, :, 1][hit & (x[i, :, :, 1] == 0)] = 0.125  # never a zero time on a timed hit
    return x


def write_egamma(path: Path, n: int, label: float, rng: np.random.Generator) -> None:
    """X then y, gzip-compressed in chunks, as the real files (see the module docstring)."""
    with h5py.File(path, "w") as f:
        f.create_dataset("X", data=egamma_crops(n, label, rng), chunks=EGAMMA_CHUNKS, compression="gzip")
        f.create_dataset("y", data=np.full(n, label, np.float32), chunks=EGAMMA_CHUNKS[:1], compression="gzip")


# ---------------------------------------------------------------- jets: parquet, nested lists, channels-first


def deposits(rng: np.random.Generator, count: int, low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
    """`count` distinct pixel positions of a 125x125 image and positive values in [low, high), most small."""
    where = rng.choice(JET_SIDE * JET_SIDE, size=count, replace=False)
    return where, low + (high - low) * rng.random(count) ** 3


def hcal_towers(rng: np.random.Generator, count: int) -> np.ndarray:
    """125x125 HCAL image: `count` 5x5 towers, each pixel the tower energy divided by 25."""
    grid = np.zeros((JET_SIDE // TOWER, JET_SIDE // TOWER))
    towers = rng.choice(grid.size, size=count, replace=False)
    grid.flat[towers] = 0.5 + 9.5 * rng.random(count)
    return np.kron(grid, np.ones((TOWER, TOWER))) / 25.0


def signed_impact(rng: np.random.Generator, count: int, scale: float) -> np.ndarray:
    """Track impact parameters: both signs, mostly small, a few ~100x the median (1/u tail)."""
    sign = np.where(rng.random(count) < 0.5, -1.0, 1.0)
    return sign * scale / (rng.random(count) + 0.01)


def quark_gluon_jets(n: int, rng: np.random.Generator) -> np.ndarray:
    images = np.zeros((n, 3, JET_SIDE, JET_SIDE))
    for i in range(n):
        where, value = deposits(rng, int(rng.integers(100, 200)), 0.05, 12.0)
        images[i, 0].flat[where] = value  # track pT
        where, value = deposits(rng, int(rng.integers(100, 200)), 0.02, 14.0)
        images[i, 1].flat[where] = value  # ECAL
        images[i, 2] = hcal_towers(rng, int(rng.integers(3, 9)))
    return images


def jet_mass_jets(n: int, rng: np.random.Generator) -> np.ndarray:
    images = np.zeros((n, 8, JET_SIDE, JET_SIDE))
    for i in range(n):
        tracks, pt = deposits(rng, int(rng.integers(90, 150)), 0.1, 30.0)
        images[i, 0].flat[tracks] = pt
        images[i, 1].flat[tracks] = signed_impact(rng, len(tracks), 0.05)  # dZ at the track pixels
        images[i, 2].flat[tracks] = signed_impact(rng, len(tracks), 0.01)  # d0
        where, value = deposits(rng, int(rng.integers(100, 180)), 0.02, 28.0)
        images[i, 3].flat[where] = value  # ECAL
        images[i, 4] = hcal_towers(rng, int(rng.integers(4, 10)))
        for layer in (5, 6, 7):  # pixel-layer cluster charges, positive
            where, value = deposits(rng, int(rng.integers(100, 160)), 0.5, 30.0)
            images[i, layer].flat[where] = value
    return images


def nested_list(images: np.ndarray) -> pa.Array:
    """(N, C, H, W) float64 -> list<list<list<double>>>: per jet C lists of H lists of W values."""
    n, c, h, w = images.shape
    values = pa.array(np.ascontiguousarray(images, np.float64).ravel(), pa.float64())
    for length, count in ((w, n * c * h), (h, n * c), (c, n)):
        values = pa.ListArray.from_arrays(pa.array(np.arange(count + 1, dtype=np.int32) * length), values)
    return values


def write_jets(path: Path, columns: dict[str, object]) -> None:
    """Columns in the given order, all double; snappy; ONE ROW GROUP PER JET, as the real files."""
    table = pa.table(
        {k: v if isinstance(v, pa.Array) else pa.array(np.asarray(v, np.float64)) for k, v in columns.items()}
    )
    pq.write_table(table, path, row_group_size=1, compression="snappy")


def towers(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """The jets' HCAL tower indices: ieta 12-43 (the barrel part the public files cover), iphi 0-71."""
    return {"iphi": rng.integers(0, 72, n).astype(np.float64), "ieta": rng.integers(12, 44, n).astype(np.float64)}


# ---------------------------------------------------------------- the whole set


def write_formats(out: Path) -> Path:
    """Write the reference file set into `out` (created); the files are made read-only, as the shared ones."""
    out = Path(out)
    eg, qg, jm = out / "electron_photon", out / "quark_gluon", out / "jet_mass"
    for folder in (eg, qg, jm / "variant_am", jm / "variant_4ch"):
        folder.mkdir(parents=True, exist_ok=True)
    for k, (name, n, label) in enumerate(EGAMMA):
        write_egamma(eg / name, n, label, _rng(1, k))
    for k, (name, n) in enumerate(QUARK_GLUON):
        rng = _rng(2, k)
        images = quark_gluon_jets(n, rng)
        y = (np.arange(n) + k) % 2.0  # both classes in every file with more than one jet
        write_jets(
            qg / name,
            {"X_jets": nested_list(images), "pt": 50 + 150 * rng.random(n), "m0": 5 + 25 * rng.random(n), "y": y},
        )
    name, n = JET_MASS
    rng = _rng(3, 0)
    images = jet_mass_jets(n, rng)
    where = towers(rng, n)
    write_jets(
        jm / name,
        {
            "X_jet": nested_list(images),
            "m": 85 + 415 * rng.random(n),
            "iphi": where["iphi"],
            "pt": 400 + 600 * rng.random(n),
            "ieta": where["ieta"],
        },
    )
    name, n = JET_MASS_VARIANT
    rng = _rng(3, 1)
    images = jet_mass_jets(n, rng)
    write_jets(
        jm / name,
        {
            "X_jets": nested_list(images),
            "am": 0.1 + 1.5 * rng.random(n),
            "apt": 20 + 80 * rng.random(n),
            **towers(rng, n),
        },
    )
    name, n = JET_MASS_4CH
    rng = _rng(3, 2)
    images = jet_mass_jets(n, rng)[:, :4]  # track pT, dZ, d0, ECAL
    write_jets(
        jm / name,
        {
            "X_jet": nested_list(images),
            "am": 0.1 + 1.5 * rng.random(n),
            "apt": 20 + 80 * rng.random(n),
            **towers(rng, n),
        },
    )
    for path in out.rglob("*"):
        if path.is_file():
            os.chmod(path, 0o444)
    return out


if __name__ == "__main__":  # python tests/support/real_layout.py DIR: write the set for a look with other tools
    import sys

    print(write_formats(Path(sys.argv[1])))
