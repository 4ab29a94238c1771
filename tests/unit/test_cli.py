"""The command line a user meets first: `e2e --help`, and `make full` / `e2e preset`, which refuse a machine
without a GPU unless the CPU is asked for."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from e2e import cli
from e2e.tune import trial as tune_trial

ROOT = Path(__file__).resolve().parents[2]


def test_help_says_what_e2e_does_and_names_the_stages_and_commands():
    """Bug: `e2e --help` printed the module's docstring ("argument parsing only; the stage modules do the
    work") and "run the <stage> stage" for every stage: how the code is built, not what e2e is for."""
    out = subprocess.run(
        [sys.executable, "-m", "e2e", "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    ).stdout
    assert "argument parsing" not in out and "run the train stage" not in out
    assert "detector images" in out
    for word in (
        *cli.STAGES,
        *cli.NAMES,
        "dvc repro",
        "dvc exp run",
        "e2e summary",
        "e2e predict",
        "e2e tune",
        "e2e compare",
        "make full",
        "download -> convert -> split -> train -> evaluate",
    ):
        assert word in out, word


def run_preset(monkeypatch, capsys, gpus: list[str], *extra: str) -> tuple[int, str, str]:
    monkeypatch.setattr(tune_trial, "visible_gpus", lambda: gpus)
    code = 0
    try:
        cli.main(["--root", str(ROOT), "preset", "full", *extra])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_preset_full_without_gpu_is_one_error_line_and_prints_no_arguments(monkeypatch, capsys):
    """Bug: `make full` on a machine without a GPU started the experiment: hours of download and conversion,
    then the full-width models trained on the CPU for days."""
    code, out, err = run_preset(monkeypatch, capsys, [])
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert "none is visible" in err and "--device cpu" in err and "make full DEVICE=cpu" in err


def test_preset_full_with_gpu_prints_the_preset_only(monkeypatch, capsys):
    code, out, err = run_preset(monkeypatch, capsys, ["0"])
    assert code == 0 and err == ""
    assert out.startswith("-S data.source=cernbox")
    assert "runtime.device" not in out


@pytest.mark.parametrize("gpus", [[], ["0"]])
def test_preset_full_device_cpu_is_the_explicit_opt_in(monkeypatch, capsys, gpus):
    code, out, _ = run_preset(monkeypatch, capsys, gpus, "--device", "cpu")
    assert code == 0
    assert out.split().count("runtime.device=cpu") == 1 and out.rstrip().endswith("-S runtime.device=cpu")


def test_preset_device_cuda_without_gpu_is_refused_and_a_typo_named(monkeypatch, capsys):
    code, out, err = run_preset(monkeypatch, capsys, [], "--device", "cuda")
    assert code == 2 and out == "" and "none is visible" in err
    code, out, err = run_preset(monkeypatch, capsys, ["0"], "--device", "gpu")
    assert code == 2 and out == "" and "--device" in err and "'gpu'" in err


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize("visible, device, started", [("", "", False), ("", "cpu", True), ("0", "", True)])
def test_make_full_starts_dvc_only_with_a_gpu_or_device_cpu(tmp_path, visible, device, started):
    """The Makefile target itself: a failing `e2e preset` inside `$(...)` must stop the recipe, not run
    `dvc exp run -n full` without the preset's arguments. dvc is a stub that records its arguments; the
    GPU probe sees CUDA_VISIBLE_DEVICES (empty: no GPU) before it would ask nvidia-smi."""
    # a copy of the Makefile and the presets, never this checkout: the Makefile puts its own .venv/bin first on
    # PATH, and in a checkout that has one the real dvc would start the real download (a bug this test had)
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(ROOT / "Makefile", repo / "Makefile")
    shutil.copytree(ROOT / "presets", repo / "presets")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "dvc").write_text(f'#!/bin/sh\necho "$*" > {tmp_path}/dvc-args\n')
    (fake / "dvc").chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{fake}:{Path(sys.executable).parent}:{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT / "src"),
        "CUDA_VISIBLE_DEVICES": visible,
    }
    proc = subprocess.run(
        ["make", "-s", "-C", str(repo), "-o", ".venv/.installed", "full", f"DEVICE={device}"],
        capture_output=True,
        text=True,
        env=env,
    )
    args = tmp_path / "dvc-args"
    if not started:
        assert proc.returncode != 0 and not args.exists()
        assert "none is visible" in proc.stderr
        return
    assert proc.returncode == 0, proc.stderr
    called = args.read_text()
    assert called.startswith("exp run -n full -S data.source=cernbox")
    assert ("-S runtime.device=cpu" in called) == (device == "cpu")
