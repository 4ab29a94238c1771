"""GPU-only checks (skipped without CUDA; run on a lent GPU machine): the fast path is used, and it gives the
CPU's numbers: batches bit for bit, an epoch that never waits for the device, float32 jet masses within a
stated tolerance of the CPU's, the CUDA random state resumed, and 2 GPUs under NCCL deciding alike.

Written against the torch 2.14 documentation without a GPU to run them on (none was lent while they were
written): the first run on a GPU machine is their first run."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from e2e.config import Paths, parse_params
from e2e.runtime.batches import Converted, SparseBatches, make_batches
from e2e.runtime.device import prepare
from e2e.stages import convert, download, evaluate, split, train
from e2e.store.sparse import SparseImages
from e2e.tasks import make_loss
from e2e.training import resume
from e2e.training.augment import make_augment
from e2e.training.loop import run_steps
from e2e.training.optimizers import make_optimizer, make_scheduler

from support.ddp_ranks import run_ranks
from support.images import dense_images
from support.pipeline_repo import tiny_params
from support.training_roots import OWN, RAW, prepared_root

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
CUDA = torch.device("cuda", 0)


def gpu_raw(**runtime):
    raw = json.loads(json.dumps(RAW))
    raw["runtime"] = {"device": "cuda", "amp": True, "channels_last": True, **runtime}
    return raw


def test_training_set_is_resident_on_the_gpu(tmp_path, formats_dir):
    raw = gpu_raw()
    root = prepared_root(tmp_path, raw, formats_dir)
    params = parse_params(raw)
    data = Converted(root / "data" / "converted" / "electron_photon")
    batches = make_batches(
        data, list(range(100)), [0, 1], batch_size=16, device=CUDA, shuffle=True, seed=0, runtime=params.runtime
    )
    assert isinstance(batches, SparseBatches) and batches.values.is_cuda and batches.values.dtype == torch.float16
    x, y = next(iter(batches))
    assert x.is_cuda and x.shape == (16, 2, 32, 32) and y.is_cuda
    assert x.is_contiguous(memory_format=torch.channels_last)  # the model's layout (runtime.channels_last)


@pytest.mark.parametrize("compile_", [False, True])
def test_bf16_channels_last_training_on_gpu(tmp_path, formats_dir, compile_):
    raw = gpu_raw(compile=compile_)
    root = prepared_root(tmp_path, raw, formats_dir)
    train.main(parse_params(raw), "electron_photon", Paths(root))
    summary = json.loads((root / "metrics/electron_photon/train/metrics.json").read_text())
    assert summary["best_val_roc_auc"] == summary["best_val_roc_auc"]  # finite, not NaN
    ckpt = torch.load(root / "models/electron_photon/model.pt", weights_only=True)
    assert all(v.device.type == "cpu" for v in ckpt["state_dict"].values())


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("max_gb", [8.0, 0.0], ids=["resident", "host"])
def test_gpu_batches_equal_the_cpu_ones_bit_for_bit(monkeypatch, max_gb, channels_last):
    """Guards against: densification on the GPU (entries resident there, or copied per batch from host
    memory) giving other values than on the CPU, e.g. the zeroing of a reused buffer missing entries; and
    against the host path copying from pageable memory (its non_blocking copies would block the host)."""
    x = dense_images(n=203, shape=(3, 16, 12))
    images, target = SparseImages.from_dense(x), np.arange(203, dtype=np.float32)
    pinned, real_pin = [], torch.Tensor.pin_memory
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda t, *a, **k: pinned.append(t.numel()) or real_pin(t, *a, **k))
    common = {"batch_size": 16, "shuffle": True, "seed": 0}
    cpu = SparseBatches(
        images, target, np.arange(203), [2, 0], **common, device=torch.device("cpu"), resident_max_gb=1.0
    )
    gpu = SparseBatches(
        images,
        target,
        np.arange(203),
        [2, 0],
        **common,
        device=CUDA,
        resident_max_gb=max_gb,
        channels_last=channels_last,
    )
    assert gpu.values.is_cuda == (max_gb > 0)
    for epoch in range(3):  # later epochs zero what earlier ones wrote into the reused buffers
        cpu.set_epoch(epoch)
        gpu.set_epoch(epoch)
        for (xc, yc), (xg, yg) in zip(cpu, gpu, strict=True):
            assert xg.is_cuda and yg.is_cuda
            assert xg.is_contiguous(memory_format=torch.channels_last) == channels_last
            assert torch.equal(xg.cpu(), xc) and torch.equal(yg.cpu(), yc)
    if max_gb == 0.0:  # every batch's entries, positions and targets went through pinned memory
        assert len(pinned) >= 3 * 3 * len(gpu)


@OWN
@pytest.mark.parametrize("max_gb", [8.0, 0.0], ids=["resident", "host"])
def test_an_epoch_never_waits_for_the_gpu(tmp_path, formats_dir, max_gb):
    """Guards against: a synchronisation per batch inside the training loop (e.g. `buffer[idx] = 0`, a
    Python scalar copied to the device; a blocking copy from pageable memory; `.item()`), which keeps the
    host from queueing the next step while the GPU computes. After a warm-up epoch (cuDNN autotuning,
    optimizer state), a whole epoch runs with synchronisations made errors."""
    raw = gpu_raw(resident_max_gb=max_gb)
    root = prepared_root(tmp_path, raw, formats_dir)
    params, tp = parse_params(raw), parse_params(raw).train["electron_photon"]
    data = Converted(root / "data" / "converted" / "electron_photon")
    rows = np.load(root / "data" / "splits" / "electron_photon" / "train.npy")
    model, spec = train.new_model(train.get_task("electron_photon"), data, tp, rows)
    model = prepare(model, CUDA, params.runtime)
    batches = make_batches(
        data,
        rows,
        spec.channels,
        batch_size=tp.batch_size,
        device=CUDA,
        shuffle=True,
        seed=0,
        runtime=params.runtime,
    )
    optimizer = make_optimizer(model, tp)
    args = (model, batches, optimizer, make_scheduler(optimizer, tp, len(batches)), make_loss("bce", 0.05))
    options = {"device": CUDA, "amp": True, "clip_grad": 1.0, "augment": make_augment(["flip_eta", "flip_phi"])}
    run_steps(*args, **options)
    torch.cuda.synchronize()
    batches.set_epoch(1)
    torch.cuda.set_sync_debug_mode("error")
    try:
        total, count = run_steps(*args, **options)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert count == batches.n and bool(torch.isfinite(total))


def test_the_cuda_random_state_is_saved_and_restored():
    """Guards against: last.pt holding the CPU random state only, so a resumed GPU run drew other dropout
    masks and augmentation flips than an uninterrupted one."""
    torch.manual_seed(0)
    torch.rand(7, device=CUDA)
    state = resume.rng_state(CUDA)
    expected = torch.rand(5, device=CUDA)
    torch.rand(100, device=CUDA)
    resume.restore_rng(state, CUDA)
    assert "cuda" in state and torch.equal(torch.rand(5, device=CUDA), expected)


def test_evaluate_gives_the_cpus_jet_masses_on_the_gpu(tmp_path):
    """Guards against: jet masses predicted under bf16 autocast (steps of 0.5-1 GeV at 300 GeV) or with TF32
    (~1e-3 relative), which made GPU and CPU results differ. A tiny jet-mass model trained on the CPU is
    evaluated on both; float32 on both sides leaves only the kernels' summation order (and cuDNN's choice of
    algorithm): the stated tolerance is 1e-4 of the largest mass (~0.05 GeV), 10x below a bf16 step."""
    raw = tiny_params(**{"runtime.device": "cpu", "evaluate.bootstrap": 10})
    cpu_root, gpu_root = tmp_path / "cpu", tmp_path / "gpu"
    params = parse_params(raw)
    for stage in (download, convert, split):
        stage.main(params, "jet_mass", Paths(cpu_root))
    train.main(params, "jet_mass", Paths(cpu_root))
    shutil.copytree(cpu_root, gpu_root)
    evaluate.main(params, "jet_mass", Paths(cpu_root))
    evaluate.main(parse_params({**raw, "runtime": {**raw["runtime"], "device": "cuda"}}), "jet_mass", Paths(gpu_root))
    a, b = (pd.read_parquet(r / "metrics/jet_mass/eval/predictions.parquet") for r in (cpu_root, gpu_root))
    assert a["row"].tolist() == b["row"].tolist() and a["truth"].tolist() == b["truth"].tolist()
    worst = float((a["prediction"] - b["prediction"]).abs().max())
    assert worst <= 1e-4 * float(a["prediction"].abs().max()), f"GPU and CPU jet masses differ by {worst:.3g} GeV"


@OWN
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_two_gpus_under_nccl_validate_the_same_model_and_stop_together(tmp_path, formats_dir):
    """The 2-process run of tests/stages/test_ddp.py on two GPUs (NCCL, each rank its own GPU): ranks that see
    different scripted metrics stop at rank 0's epoch, having validated the same model, without hanging."""
    raw = gpu_raw()
    raw["train"]["electron_photon"].update(epochs=4, patience=1)
    root = prepared_root(tmp_path / "repo", raw, formats_dir)
    code, text, seen = run_ranks(
        tmp_path, [root, root], metrics=[[0.9, 0.5, 0.5, 0.5], [0.5, 0.6, 0.7, 0.8]], timeout=400
    )
    assert code == 0, text[-3000:]
    assert [s["device"] for s in seen] == ["cuda:0", "cuda:1"]
    assert [len(s["epochs"]) for s in seen] == [2, 2] and seen[0]["validated"] == seen[1]["validated"]
