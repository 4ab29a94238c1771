"""The epoch loop and prediction (e2e.runtime.device): float32 predictions whatever the training's autocast, TF32 as
runtime.tf32 says, and progress lines only where no progress bar is drawn."""

import dataclasses
import io
import sys

import numpy as np
import pytest
import torch

from e2e.config import parse_params
from e2e.models.wrappers import Standardized
from e2e.runtime.device import prepare
from e2e.runtime.forward import predict
from e2e.training import loop
from e2e.training.loop import run_steps

from support.training_roots import RAW


def mass_model() -> Standardized:
    """A jet-mass-like regression: outputs standardised, decoded to ~300 +- 100 GeV."""
    torch.manual_seed(0)
    model = Standardized(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2 * 4 * 4, 1)), 2, False)
    model.set_stats(np.zeros(2), np.ones(2), 300.0, 100.0)
    return model


def test_predictions_are_float32_even_where_the_training_steps_use_bf16(monkeypatch):
    """Guards against: validation, evaluate and predict running under bf16 autocast, so that jet masses came
    out in steps of 0.5-1 GeV (8 significant bits); and against runtime.amp no longer reaching the training
    steps. CPU bf16 autocast stands in for the GPU's (e2e.runtime.device.autocast is a no-op on a CPU)."""
    model, device = mass_model(), torch.device("cpu")
    x = torch.randn(64, 2, 4, 4)
    batches = [(x[:32], torch.full((32,), 300.0)), (x[32:], torch.full((32,), 300.0))]
    with torch.no_grad():
        exact = model.decode(model(x))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # a caller under autocast, as a GPU run with amp
        raw, _ = predict(model, batches, device)
        with torch.no_grad():
            rounded = model.decode(model(x).float())
    assert raw.dtype == torch.float32 and torch.equal(model.decode(raw), exact)
    assert not torch.equal(rounded, exact)  # the autocast would have rounded them

    seen = []
    model.register_forward_hook(lambda *_: seen.append(torch.is_autocast_enabled("cpu")))
    monkeypatch.setattr(loop, "autocast", lambda dev, on: torch.autocast("cpu", dtype=torch.bfloat16, enabled=on))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    run_steps(
        model,
        batches,
        optimizer,
        torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0),
        torch.nn.MSELoss(),
        device=device,
        amp=True,
    )
    predict(model, batches, device)
    assert seen == [True, True, False, False]


def test_a_terminal_keeps_its_progress_bar_and_no_progress_lines(monkeypatch, capsys):
    """The lines of a piped log replace the bar; where the bar is drawn (a terminal) there are none."""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setattr(loop, "PROGRESS_EVERY_S", 0.0)
    model, x = mass_model(), torch.randn(8, 2, 4, 4)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    run_steps(
        model,
        [(x, torch.full((8,), 300.0))] * 3,
        optimizer,
        torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0),
        torch.nn.MSELoss(),
        device=torch.device("cpu"),
        amp=False,
        desc="bar",
    )
    assert "bar:" in terminal.getvalue() and capsys.readouterr().out == ""


@pytest.mark.parametrize("tf32", [False, True, False])
def test_tf32_is_what_runtime_tf32_says(tf32):
    """Guards against: TF32 switched on for every GPU run (and cuDNN's own default of TF32 convolutions left
    in place), so GPU predictions differed from the CPU's at ~1e-3 while predict promised float32; and
    against flags set so that torch's own getter raises (torch.compile and torch.export read it). The
    flags are process-wide and set either way, so each case follows the one before."""
    runtime = dataclasses.replace(parse_params(RAW).runtime, tf32=tf32)
    prepare(torch.nn.Linear(2, 1), torch.device("cpu"), runtime)
    assert torch.backends.cuda.matmul.allow_tf32 is tf32 and torch.backends.cudnn.allow_tf32 is tf32
    assert (torch.backends.cudnn.conv.fp32_precision == "tf32") is tf32  # what the convolutions go by
