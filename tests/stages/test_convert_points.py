"""The points of the converted real-layout files (own and, where present, ../shared/formats) are exactly the
non-zero pixels of their dense images, for several channel selections (e2e.runtime.points)."""

from __future__ import annotations

import numpy as np
import pytest

from e2e.runtime.batches import Converted

from support.converted import run_convert
from support.points import assert_points_match_images, assert_row, to_points_of


@pytest.mark.parametrize("dataset", ["electron_photon", "quark_gluon", "jet_mass"])
def test_points_of_the_real_layout_files_are_their_nonzero_pixels(raw_root, dataset):
    arrays, meta = run_convert(raw_root, dataset)
    data = Converted(raw_root / "data" / "converted" / dataset)
    n, c = meta["n"], meta["shape"][1]
    rows = np.arange(n)
    for channels in ([*range(c)], [0], [c - 1], [c - 1, 0]):
        energy = [len(channels) - 1]
        assert_points_match_images(data.images, rows.astype(np.float32), rows, channels, energy, epochs=1)
        # and against the converted files read independently of e2e (test_convert.read_converted)
        batch = to_points_of(data.images, rows, channels, energy, max_points=None)
        for i in rows:
            assert_row(batch, i, arrays["images"][i][channels].astype(np.float32), energy)
