"""The dataset registry: for each dataset its real files, where they come from and how they are read.

sha256/size are None where not yet known: the first complete download records them in
`checksums/<dataset>.sha256` (commit it), which later runs verify against.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from e2e.errors import E2EError

CERNBOX_DAV = "https://cernbox.cern.ch/remote.php/dav/public-files"


@dataclass(frozen=True)
class RawFile:
    name: str
    share: str  # CERNBox public share id; URL = f"{base_url}/{share}/{name}"
    label: float | None = None  # single-class files (electron_photon) carry their class here
    sha256: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class Dataset:
    name: str
    format: str  # "hdf5" (channels-last X, y) or "parquet" (nested-list channels-first, one row group per jet)
    files: tuple[RawFile, ...]
    shape: tuple[int, int, int]  # (C, H, W) of the image as stored, channels-first
    channel_names: tuple[str, ...]
    image_keys: tuple[str, ...]  # accepted names of the image column/key, first match wins
    target_keys: tuple[str, ...]
    observer_keys: dict[str, tuple[str, ...]] = field(default_factory=dict)  # output name -> accepted names
    # the channels of other samples in the same layout, by their count (a file says how many it holds)
    channel_variants: tuple[tuple[str, ...], ...] = ()

    def with_channels(self, count: int) -> Dataset | None:
        """This dataset as a file holding `count` image channels has it, or None if no sample has that many."""
        for names in (self.channel_names, *self.channel_variants):
            if len(names) == count:
                return dataclasses.replace(self, shape=(count, *self.shape[1:]), channel_names=names)
        return None


EGAMMA_FILES = (  # documented order: photons (y=0) first, then electrons (y=1)
    RawFile("SinglePhotonPt50_IMGCROPS_n249k_RHv1.hdf5", "AtBT8y4MiQYFcgc", label=0.0),
    RawFile("SingleElectronPt50_IMGCROPS_n249k_RHv1.hdf5", "FbXw3V4XNyYB3oA", label=1.0),
)
QG_SHARE = "oolDBdQegsITFcv"
QG_FILES = tuple(
    RawFile(f"QCDToGGQQ_IMGjet_RH1all_jet0_run{run}_n{n}.test.snappy.parquet", QG_SHARE)
    for run, n in ((0, 36272), (1, 47540), (2, 55494))
)
JM_SHARE = "zUvpkKhXIp0MJ0g"
# seven files of ~150,000 jets each (~1.05M jets, ~8.2 GB); only _0's size is known from here
JM_FILES = (RawFile("top_gun_opendata_0.parquet", JM_SHARE, size=1_171_158_319),) + tuple(
    RawFile(f"top_gun_opendata_{i}.parquet", JM_SHARE) for i in range(1, 7)
)
# bytes per jet of one real file of each jet dataset (DESIGN.md: run0 is 184 MB for 36,272 jets; top_gun_opendata_0
# holds 150,327): the occupancy the synthetic files are checked against (tests, bench/realism_jets.py)
REAL_BYTES_PER_JET = {"quark_gluon": 184e6 / 36272, "jet_mass": 1_171_158_319 / 150_327}

DATASETS: dict[str, Dataset] = {
    "electron_photon": Dataset(
        name="electron_photon",
        format="hdf5",
        files=EGAMMA_FILES,
        shape=(2, 32, 32),
        channel_names=("energy", "time"),
        image_keys=("X",),
        target_keys=("y",),
    ),
    "quark_gluon": Dataset(
        name="quark_gluon",
        format="parquet",
        files=QG_FILES,
        shape=(3, 125, 125),
        channel_names=("track_pt", "ecal", "hcal"),
        image_keys=("X_jets",),
        target_keys=("y",),
        observer_keys={"pt": ("pt",), "m0": ("m0",)},
    ),
    "jet_mass": Dataset(
        name="jet_mass",
        format="parquet",
        files=JM_FILES,
        shape=(8, 125, 125),
        channel_names=("track_pt", "track_dz", "track_d0", "ecal", "hcal", "pix1", "pix2", "pix3"),
        image_keys=("X_jet", "X_jets"),
        target_keys=("m", "genM", "am"),
        # ieta, iphi: the jet's HCAL tower indices (public files: ieta 12-43, iphi 0-71; a tower is 5x5 ECAL
        # crystals, crystal = 5 * tower + 2), not ECAL crystal indices
        observer_keys={"pt": ("pt", "apt"), "ieta": ("ieta",), "iphi": ("iphi",)},
        # a later year's public task describes a sample with 4 channels and target `am`: taken to be the
        # tracker and ECAL channels the reference mass model reads (track pT, dZ, d0, ECAL), in that order
        channel_variants=(("track_pt", "track_dz", "track_d0", "ecal"),),
    ),
}


def select_files(dataset: Dataset, names) -> tuple[RawFile, ...]:
    """The registry's files named in `names` (params.yaml `datasets.<name>.files`), in registry order;
    None selects every file. An unknown name fails with the choices."""
    if names is None:
        return dataset.files
    known = {f.name for f in dataset.files}
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise E2EError(
            f"params.yaml datasets.{dataset.name}.files: unknown or empty selection {list(names)}; "
            f"choose among {[f.name for f in dataset.files]}"
        )
    return tuple(f for f in dataset.files if f.name in set(names))


def get_dataset(name: str) -> Dataset:
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; choices: {sorted(DATASETS)}") from None
