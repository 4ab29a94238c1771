"""Every registered image architecture, and one timm model per family (support/timm_families.py, test_timm's list),
exports to ONNX with parity, or is on the list of those that do not (docs/deployment.md).

At 32x32 with two channels (the electron/photon crops, where downsampling leaves the least room),
through the stage's own path: e2e.stages.export.export_model, metadata and parity check included. The point
models take points, not images: tests/unit/test_point_models.py checks their export.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from e2e.config import ExportParams
from e2e.inference.onnx_model import session
from e2e.models import MODELS, POINT_MODELS
from e2e.models.timm_zoo import CLASSICS, PREFIX
from e2e.models.wrappers import ModelSpec, wrap_from_spec
from e2e.stages import export

from support.timm_families import TIMM_MODELS

README = Path(__file__).resolve().parents[2] / "docs" / "deployment.md"
# name -> why it does not export; each must be in docs/deployment.md's list (none today)
NOT_EXPORTABLE: dict[str, str] = {}
META = {"task": '"electron_photon"', "output": '"probability"'}  # metadata values are JSON
# the registry at its defaults, then timm's families with test_timm's small kwargs, less the timm models a
# registry name already builds (densenet121, efficientnet_b0: the same builder; ~30 s of export saved)
EXPORTED = {
    **{name: {} for name in sorted(set(MODELS) - set(POINT_MODELS))},
    **{
        name: kwargs
        for name, kwargs in TIMM_MODELS.items()
        if name.startswith(PREFIX) and name.removeprefix(PREFIX) not in CLASSICS.values()
    },
}


def documented_exceptions() -> set[str]:
    """The model names in docs/deployment.md's "Models that do not export to ONNX" list."""
    text = README.read_text()
    section = text.split("Models that do not export to ONNX", 1)[1].split("\n#", 1)[0]
    return set(re.findall(r"^- `([A-Za-z0-9_./]+)`", section, flags=re.M))


def test_the_readme_lists_exactly_the_models_that_do_not_export():
    assert documented_exceptions() == set(NOT_EXPORTABLE)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(EXPORTED))
def test_every_registered_model_exports_with_parity(name, tmp_path):
    torch.manual_seed(0)
    spec = ModelSpec(
        model=name,
        model_kwargs=EXPORTED[name],
        in_channels=2,
        image_size=[32, 32],
        num_outputs=1,
        classification=True,
        task="electron_photon",
    )
    model = wrap_from_spec(spec).eval()
    model.set_stats([0.1, -0.2], [2.0, 0.5])
    x = torch.from_numpy(np.random.default_rng(0).exponential(1.0, (6, 2, 32, 32)).astype(np.float32))
    batches = [(x[:4], None), (x[4:], None)]
    if name in NOT_EXPORTABLE:
        with pytest.raises(export.E2EError):
            export.export_model(model, batches, output="probability", meta=META, ep=ExportParams(), where=name)
        return
    graph, worst, n = export.export_model(
        model, batches, output="probability", meta=META, ep=ExportParams(), where=name
    )
    assert n == 6 and worst <= ExportParams().tolerance
    ort = session(graph)
    assert ort.get_inputs()[0].shape[0] == "batch" and ort.get_modelmeta().custom_metadata_map["task"]
