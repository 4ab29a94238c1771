"""Guards of the conversion's resume (issue 22): a part left by a killed conversion is reused only when every
param that shapes the data is the same. test_convert covers `clip`; here `zero_below`, `scale`, `dtype` and
`channels`, each changed alone. Expectations come from an independent read of the raw files (pyarrow
`to_pylist`) and numpy."""

from __future__ import annotations

import numpy as np
import pytest

from e2e.config import ConvertParams, Paths
from e2e.sources.registry import DATASETS
from e2e.stages import convert

from support.converted import raw, run_convert
from support.raw_files import pylist_images

QG = "quark_gluon"


def expected(x: np.ndarray, change: str, value) -> np.ndarray:
    """The stored images of raw `x` (float64, the reader's float32 first) with convert.quark_gluon.<change>."""
    x = x.astype(np.float32)
    if change == "zero_below":
        return np.where(np.abs(x) < value, np.float32(0), x).astype(np.float16)
    if change == "scale":
        return (x * np.asarray(value, np.float32)[None, :, None, None]).astype(np.float16)
    if change == "dtype":
        return x.astype(value)
    return x[:, value].astype(np.float16)  # channels


@pytest.mark.parametrize("formats_dir", ["own"], indirect=True)
@pytest.mark.parametrize("change", ["zero_below", "scale", "dtype", "channels"])
def test_a_part_made_with_other_preprocessing_is_converted_again(raw_root, capsys, change):
    """Guards against: the part fingerprint missing a param that shapes the data, so that a conversion
    killed and rerun after changing it joins the old part (the first file's images as they were) with new
    ones, silently. The first file's part is made with the defaults, as a killed run leaves it."""
    files = [raw(raw_root, QG, i) for i in range(3)]
    x = np.concatenate([pylist_images(f, "X_jets") for f in files])
    magnitudes = np.abs(x[x != 0])
    value = {
        "zero_below": float(np.quantile(magnitudes, 0.5)),  # half the pixels go
        "scale": [2.0, 0.5, 1.0],
        "dtype": "float32",
        "channels": [2, 0],
    }[change]
    parts = convert.part_dir(Paths(raw_root), QG)
    part = parts / files[0].name
    convert.convert_one(DATASETS[QG], files[0], cfg=ConvertParams(batch_rows=4), classify=True, part=part)
    capsys.readouterr()
    arrays, meta = run_convert(raw_root, QG, **{change: value})
    assert "resumed" not in capsys.readouterr().out
    want = expected(x, change, value)
    assert not np.array_equal(want, x.astype(np.float32).astype(np.float16))  # the change shows in the data
    np.testing.assert_array_equal(arrays["images"], want)
    assert arrays["images"].dtype == np.dtype(value if change == "dtype" else "float16")
