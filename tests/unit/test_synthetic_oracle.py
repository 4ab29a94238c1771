"""The class reaches a synthetic image only through the latents the oracle reads, so the stored oracle is the
Bayes-optimal score the README and the metrics compare models with.

Guards against: a class-dependent nuisance (pile-up, noise, energy, an extra photon, jet pT) added to one
class only. The images would then carry class information the oracle does not see, and a model could
beat the "Bayes limit", or learn a difference that is not physics.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import ks_2samp

from e2e.sources.synthetic import egamma, quark_gluon
from e2e.sources.synthetic.parquet_io import chunk_rng

N = 40_000
EGAMMA_CLASS_KEYS = {"r", "s", "converted"}  # what the oracle reads (converted: which photon prior)
QG_CLASS_KEYS = {"y", "n_constituents", "width"}


def _egamma_latents(electron: bool) -> dict[str, np.ndarray]:
    return egamma.sample_latents(chunk_rng(7, f"oracle-{electron}", 0), N, electron)


def _qg_latents() -> tuple[dict[str, np.ndarray], np.ndarray]:
    lat = quark_gluon.sample_latents(chunk_rng(7, "oracle-qg", 0), 2 * N)
    return lat, lat["y"] == 1


def _same_distribution(a: np.ndarray, b: np.ndarray, key: str) -> None:
    # p > 1e-4 at these sizes: a shift of 1/25 of a standard deviation (a 1 % energy scale) fails it
    assert ks_2samp(a, b).pvalue > 1e-4, key


def test_egamma_latents_other_than_r_s_are_class_blind():
    photon, electron = _egamma_latents(False), _egamma_latents(True)
    assert photon.keys() == electron.keys()
    for key in photon.keys() - EGAMMA_CLASS_KEYS:
        _same_distribution(photon[key], electron[key], key)


def test_egamma_images_do_not_read_the_conversion_flag():
    """The image sees a converted photon only through its (r, s), as the oracle does."""
    lat = _egamma_latents(False)
    flipped = dict(lat, converted=1.0 - lat["converted"])
    a = egamma.make_images(chunk_rng(7, "images", 0), {k: v[:50] for k, v in lat.items()})
    b = egamma.make_images(chunk_rng(7, "images", 0), {k: v[:50] for k, v in flipped.items()})
    assert np.array_equal(a, b)


def test_quark_gluon_latents_other_than_multiplicity_and_width_are_class_blind():
    lat, gluon = _qg_latents()
    assert QG_CLASS_KEYS < set(lat)
    for key in set(lat) - QG_CLASS_KEYS:
        _same_distribution(lat[key][gluon], lat[key][~gluon], key)
