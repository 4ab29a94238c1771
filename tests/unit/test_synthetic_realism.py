"""The electron/photon generator's calibrated shower statistics stay where the real crops put them (issue 23).

Each band below is the real sample's class mean +- 3 standard errors of that mean, measured on the 200 real
crops of shared/realdata/electron-photon.npz (98 photons, 102 electrons; features of bench/realism.py):

| statistic | real photons | real electrons |
| --- | --- | --- |
| energy fraction of the 2nd-10th brightest crystals | 0.354 +- 0.013 | 0.401 +- 0.013 |
| energy fraction of the 7th brightest crystal | 0.0126 +- 0.0006 | 0.0153 +- 0.0009 |
| energy fraction of the 10th brightest crystal | 0.0069 +- 0.0004 | 0.0083 +- 0.0005 |
| soft hits (0 < E < 1e-3) per crop | 9.39 +- 0.53 | 11.13 +- 0.61 |
| hits above 0.01 per crop | 8.27 +- 0.29 | 9.64 +- 0.41 |
| hits per crop | 45.2 +- 1.2 | 51.2 +- 1.5 |
| energy-weighted second moment in eta (crystals^2) | 0.563 +- 0.029 | 0.625 +- 0.035 |
| hottest crystal | 0.725 +- 0.026 | 0.636 +- 0.020 |

The spread from crop to crop matters as much (a classifier finds a too-narrow distribution even when the
means agree): over all 200 crops the standard deviation of the count of hits above 0.01 is 3.63 (99 %
bootstrap interval 2.30-5.08) and that of the hit count 14.1 (11.5-16.3). The synthetic sample (2,000 crops
per class, seeded) adds a standard error of its own of at most a third of the real one, well inside.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from e2e.sources.synthetic import egamma
from e2e.sources.synthetic.parquet_io import chunk_rng

ROOT = Path(__file__).resolve().parents[2]
# (feature of bench/realism.py, (photon mean, its standard error), (electron mean, its standard error))
REAL = [
    ("fraction of crystals #2-10", (0.3535, 0.013), (0.401, 0.013)),
    ("fraction of crystal #7", (0.01256, 0.00059), (0.01532, 0.00086)),
    ("fraction of crystal #10", (0.006915, 0.00044), (0.008304, 0.00054)),
    ("soft hits (E < 0.001)", (9.388, 0.53), (11.13, 0.61)),
    ("hits above 0.01", (8.265, 0.29), (9.637, 0.41)),
    ("hits", (45.18, 1.2), (51.16, 1.5)),
    ("second moment in eta", (0.5625, 0.029), (0.6246, 0.035)),
    ("hottest crystal", (0.7245, 0.026), (0.6364, 0.020)),
]
SPREAD = [("hits above 0.01", 2.30, 5.08), ("hits", 11.5, 16.3)]  # 99 % bootstrap interval of the real SD


def _realism_module():
    spec = importlib.util.spec_from_file_location("realism", ROOT / "bench" / "realism.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def synthetic() -> tuple[dict[str, np.ndarray], np.ndarray]:
    images, labels = [], []
    for electron in (False, True):
        rng = chunk_rng(7, f"test-realism-{int(electron)}", 0)
        images.append(egamma.make_images(rng, egamma.sample_latents(rng, 2000, electron))[..., 0])
        labels.append(np.full(2000, float(electron)))
    return _realism_module().features(np.concatenate(images).astype(np.float64)), np.concatenate(labels)


@pytest.mark.parametrize("name,photon,electron", REAL, ids=[r[0] for r in REAL])
def test_class_means_within_three_standard_errors_of_the_real_crops(synthetic, name, photon, electron):
    feats, y = synthetic
    for label, (mean, se) in ((0.0, photon), (1.0, electron)):
        got = feats[name][y == label].mean()
        assert abs(got - mean) < 3 * se, (
            f"{name}, {'electron' if label else 'photon'}: {got:.4g} vs real {mean:.4g} +- {se:.2g}"
        )


@pytest.mark.parametrize("name,lo,hi", SPREAD, ids=[s[0] for s in SPREAD])
def test_crop_to_crop_spread_like_the_real_crops(synthetic, name, lo, hi):
    feats, _ = synthetic
    assert lo < feats[name].std() < hi, feats[name].std()
