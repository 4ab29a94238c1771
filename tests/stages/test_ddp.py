"""DistributedDataParallel on the CPU: the backend follows the chosen device, each local rank gets its own GPU
(device count mocked), and in 2-process gloo runs the ranks decide alike (best epoch, early stop, resume)
and never wait on each other forever. The 2-GPU NCCL run is in tests/stages/test_gpu.py."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from e2e.config import Paths, parse_params
from e2e.errors import E2EError
from e2e.runtime.device import select_device
from e2e.stages import train
from e2e.training import ddp

from support.ddp_ranks import run_ranks
from support.training_roots import OWN, RAW, prepared_root, raw_with

EG = "electron_photon"


def fake_gpus(monkeypatch, n: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: n)


@pytest.mark.parametrize("name", ["auto", "cuda"])
def test_each_local_rank_gets_its_own_gpu(monkeypatch, name):
    """Guards against: runtime.device `cuda` giving every rank `cuda` without an index, so all ranks landed on
    GPU 0 (NCCL refuses duplicate GPUs) and DDP got device_ids=[None]."""
    fake_gpus(monkeypatch, 4)
    assert [select_device(name, r, 4) for r in range(4)] == [torch.device("cuda", r) for r in range(4)]
    assert select_device("cuda:2") == torch.device("cuda", 2)  # one process: the GPU it names
    assert select_device("cpu", 3, 4) == torch.device("cpu")


@pytest.mark.parametrize(
    "name,local_world,message",
    [
        ("auto", 3, "runtime.nproc: 3 processes on this node need a GPU each, but 2 CUDA device(s) are visible"),
        ("cuda", 3, "runtime.nproc: 3 processes on this node need a GPU each, but 2 CUDA device(s) are visible"),
        ("cuda:1", 2, "runtime.device: 'cuda:1' names one GPU for all 2 processes of runtime.nproc"),
        ("cuda:2", 1, "runtime.device: 'cuda:2' asked for, but 2 CUDA device(s) are visible"),
    ],
)
def test_more_processes_than_gpus_is_a_one_line_error(monkeypatch, name, local_world, message):
    """Guards against: nproc above the visible GPU count asking for a device that does not exist, failing
    deep inside CUDA on some ranks while the others wait."""
    fake_gpus(monkeypatch, 2)
    with pytest.raises(E2EError) as err:
        select_device(name, 0, local_world)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("device,backend", [("cpu", "gloo"), ("auto", "nccl"), ("cuda", "nccl")])
def test_the_process_group_backend_follows_the_chosen_device(tmp_path, monkeypatch, device, backend):
    """Guards against: NCCL chosen whenever the machine has CUDA, before the device was chosen: with
    runtime.device cpu and nproc > 1 on a GPU host the CPU model sat under an NCCL group and DDP failed.
    train.main on rank 1 of 2, on a host with 2 (mocked) GPUs, stops at init_process_group."""
    fake_gpus(monkeypatch, 2)
    for key, value in {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(key, value)
    calls = []

    def init_process_group(chosen, **kw):
        calls.append(chosen)
        raise RuntimeError("stop here")

    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(str(d)))
    monkeypatch.setattr(ddp.td, "init_process_group", init_process_group)
    raw = json.loads(json.dumps(RAW))
    raw["runtime"]["device"] = device
    with pytest.raises(RuntimeError, match="stop here"):
        train.main(parse_params(raw), EG, Paths(tmp_path))
    assert calls == (["gloo"] if backend == "gloo" else ["cuda:1", "nccl"])


def test_shares_of_the_validation_split_gather_back_into_the_single_process_order(monkeypatch):
    """Guards against: validation shares that miss or repeat rows, or a gather that does not put them back in
    order: the metric would then not be the whole split's. 11 rows over 3 ranks (shares of 4, 4 and 3);
    the all_gather is played by the test, with every rank's share padded as a real one would be."""
    idx = np.array([110, 100, 104, 101, 109, 102, 103, 108, 105, 107, 106])
    shares = [torch.from_numpy(ddp.spread(idx, ddp.Dist(r, 3)).astype(np.float32)) for r in range(3)]
    assert [len(s) for s in shares] == [4, 4, 3]

    def all_gather(parts, mine):
        for part, share in zip(parts, shares):
            part.fill_(-1.0)
            part[: len(share)] = share

    monkeypatch.setattr(ddp.td, "all_gather", all_gather)
    for rank in range(3):
        assert ddp.gather_spread(shares[rank], len(idx), ddp.Dist(rank, 3)).tolist() == sorted(idx.tolist())


@pytest.mark.slow
@OWN
def test_ranks_that_see_different_validation_metrics_stop_at_the_same_epoch(tmp_path, formats_dir):
    """Guards against: each rank choosing the best epoch and early stopping from its own validation (of its
    own model, with its own BatchNorm statistics): one rank stopped while the other trained on and waited in
    its next gradient all-reduce until the process group's timeout. Rank 0's scripted metric peaks in epoch 1
    (patience 1: stop after epoch 2), rank 1's keeps improving; both must follow rank 0, validating the
    same model."""
    root = prepared_root(tmp_path / "repo", raw_with(epochs=4, patience=1), formats_dir)
    code, text, seen = run_ranks(tmp_path, [root, root], metrics=[[0.9, 0.5, 0.5, 0.5], [0.5, 0.6, 0.7, 0.8]])
    assert code == 0, text[-3000:]
    assert [len(s["epochs"]) for s in seen] == [2, 2], seen
    assert seen[0]["validated"] == seen[1]["validated"], "the ranks validated different models"
    summary = json.loads((root / "metrics" / EG / "train" / "metrics.json").read_text())
    assert (summary["epochs_run"], summary["best_epoch"], summary["best_val_roc_auc"]) == (2, 1, 0.9)


@pytest.mark.slow
@OWN
def test_a_resume_on_nodes_that_share_no_cache_continues_on_every_rank(tmp_path, formats_dir):
    """Guards against: every rank looking for last.pt in its own .cache: on a second node (no shared
    filesystem) rank 1 started afresh at epoch 1 while rank 0 resumed at epoch 2. Also against every rank
    drawing the same random numbers (one seed for all: identical augmentation on every shard): last.pt
    holds each rank's random state, and they differ."""
    node0 = prepared_root(tmp_path / "node0", RAW, formats_dir)
    node1 = tmp_path / "node1"
    shutil.copytree(node0, node1)
    code, text, _ = run_ranks(tmp_path, [node0, node1], fail_at=2)
    last = node0 / ".cache" / "train" / EG / "last.pt"
    assert code != 0 and "simulated failure" in text and last.is_file(), text[-3000:]
    assert not (node1 / ".cache" / "train").exists()  # only rank 0 writes
    rngs = torch.load(last, weights_only=True)["rng"]
    assert len(rngs) == 2 and not torch.equal(rngs[0]["cpu"], rngs[1]["cpu"])

    code, text, seen = run_ranks(tmp_path, [node0, node1])
    assert code == 0, text[-3000:]
    assert "resuming after epoch 1" in text
    assert [s["epochs"] for s in seen] == [[f"{EG} epoch 2/2"]] * 2, seen
    assert seen[0]["validated"] == seen[1]["validated"]
    summary = json.loads((node0 / "metrics" / EG / "train" / "metrics.json").read_text())
    assert summary["epochs_run"] == 2 and not last.exists()
