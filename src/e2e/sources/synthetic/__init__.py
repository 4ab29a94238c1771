"""The physics toy generator behind `data.source: synthetic`.

Writes each dataset's files under their REAL names and in their real on-disk layouts
(see e2e.sources.registry and shared/DESIGN.md), so everything downstream runs unchanged on the
real CERNBox files. Beside every raw file F it writes `F.truth.parquet`: the sampled latents,
one row per event in F's order, and for the classifiers an `oracle` (Bayes-optimal) score.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from e2e.errors import E2EError
from e2e.sources.registry import DATASETS, RawFile
from e2e.sources.synthetic.egamma import generate_electron_photon
from e2e.sources.synthetic.jet_mass import generate_jet_mass
from e2e.sources.synthetic.parquet_io import truth_path
from e2e.sources.synthetic.quark_gluon import generate_quark_gluon

GENERATORS: dict[str, Callable[..., list[Path]]] = {
    "electron_photon": generate_electron_photon,
    "quark_gluon": generate_quark_gluon,
    "jet_mass": generate_jet_mass,
}

__all__ = ["GENERATORS", "generate", "truth_path"]


def generate(
    dataset: str,
    out_dir: Path,
    cfg: dict,
    *,
    seed: int,
    progress: bool = True,
    files: tuple[RawFile, ...] | None = None,
) -> list[Path]:
    """Write `dataset`'s raw files (real names) and their truth sidecars into `out_dir`.

    cfg is params.yaml `synthetic.<dataset>`; the same seed gives byte-identical arrays on every
    x86-64 machine. `files` are registry RawFiles of the dataset (e.g. from
    e2e.sources.registry.select_files); None writes every file of the dataset. Exactly those files
    are written, in registry order. Returns the written paths: each raw file followed by its sidecar.
    """
    try:
        generator = GENERATORS[dataset]
    except KeyError:
        raise KeyError(f"unknown synthetic dataset {dataset!r}; choices: {sorted(GENERATORS)}") from None
    known = DATASETS[dataset].files
    if files is not None:
        chosen = {f.name for f in files}
        unknown = sorted(chosen - {f.name for f in known})
        if unknown or not chosen:
            raise E2EError(
                f"synthetic {dataset}: unknown or empty file selection {unknown or []}; "
                f"choose among {[f.name for f in known]}"
            )
        files = tuple(f for f in known if f.name in chosen)
    return generator(Path(out_dir), dict(cfg or {}), int(seed), progress=progress, files=files)
