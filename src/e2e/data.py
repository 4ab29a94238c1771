"""Converted datasets as memmaps, and batches of a split: device-resident when they fit, streamed otherwise."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .errors import E2EError
from .npy import load_array, open_array


class Converted:
    """A converted dataset directory: images.npy (N, C, H, W), target.npy, observers, truth_*.npy, meta.json."""

    def __init__(self, path: Path):
        self.path = Path(path)
        meta_path = self.path / "meta.json"
        if not meta_path.is_file():
            raise E2EError(f"{meta_path}: missing; run `dvc repro convert@<dataset>` first")
        self.meta = json.loads(meta_path.read_text())
        self.images = open_array(self.path / "images.npy")
        self.target = load_array(self.path / "target.npy")
        self.observers = {k: load_array(self.path / f"{k}.npy") for k in self.meta["observers"]}
        self.truth = {k: load_array(self.path / f"truth_{k}.npy") for k in self.meta["truth"]}

    @property
    def in_channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])


def channel_stats(images: np.ndarray, idx: np.ndarray, max_rows: int = 4096, seed: int = 0):
    """Per-channel mean and std over (a sample of) the training rows only, never validation or test."""
    rows = np.sort(np.random.default_rng(seed).permutation(idx)[:max_rows])
    x = np.asarray(images[rows], dtype=np.float64)
    mean, std = x.mean(axis=(0, 2, 3)), x.std(axis=(0, 2, 3))
    return mean.astype(np.float32), np.where(std > 0, std, 1.0).astype(np.float32)


class _EpochOrder:
    """Seeded per-epoch shuffling and equal per-rank shards, shared by both kinds of batches."""

    def __init__(self, n, batch_size, shuffle, seed, rank, world):
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed
        self.rank, self.world, self.epoch = rank, world, 0

    def __len__(self) -> int:
        per_rank = self.n // self.world if self.world > 1 else self.n
        return -(-per_rank // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[torch.Tensor]:
        if not self.shuffle:
            order = torch.arange(self.n)
        else:
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        if self.world > 1:  # equal shard per rank, so DDP ranks run the same number of steps
            order = order[: self.n // self.world * self.world][self.rank :: self.world]
        return list(order.split(self.batch_size))


class ResidentBatches(_EpochOrder):
    """The whole split in (device) memory in its storage dtype: an epoch makes no host-to-device copies."""

    def __init__(self, images, target, idx, batch_size, device, shuffle, seed, rank=0, world=1):
        super().__init__(len(idx), batch_size, shuffle, seed, rank, world)
        self.x = torch.from_numpy(np.ascontiguousarray(images[idx])).to(device)
        self.y = torch.from_numpy(np.ascontiguousarray(target[idx], dtype=np.float32)).to(device)

    def __iter__(self):
        for b in self.batches():
            b = b.to(self.x.device)
            yield self.x[b].float(), self.y[b]


class _MemmapRows(torch.utils.data.Dataset):
    """Reads a batch of rows in one sorted fancy-index; opens the memmap lazily in each worker (a memmap
    pickled into a worker would be copied whole)."""

    def __init__(self, path: Path, target: np.ndarray):
        self.path, self.target, self.images = path, target, None

    def __len__(self) -> int:
        return len(self.target)

    def __getitem__(self, rows):
        if self.images is None:
            self.images = open_array(self.path)
        rows = np.sort(np.asarray(rows))
        x = torch.from_numpy(np.asarray(self.images[rows], dtype=np.float32))
        return x, torch.from_numpy(self.target[rows].astype(np.float32))


class StreamedBatches(_EpochOrder):
    """Too big for memory: a DataLoader with workers reads each batch from the memmap (pinned on GPU)."""

    def __init__(self, images_path, target, idx, batch_size, device, shuffle, seed, num_workers, rank=0, world=1):
        super().__init__(len(idx), batch_size, shuffle, seed, rank, world)
        self.idx, self.device, self.num_workers = np.asarray(idx), device, num_workers
        self.rows = _MemmapRows(Path(images_path), target)

    def __iter__(self):
        loader = torch.utils.data.DataLoader(
            self.rows, batch_size=None, sampler=[self.idx[b.numpy()] for b in self.batches()],
            num_workers=self.num_workers, pin_memory=self.device.type == "cuda")
        for x, y in loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


def make_batches(data: Converted, idx, batch_size, device, shuffle, seed, runtime, rank=0, world=1):
    nbytes = len(idx) * data.images[0].nbytes
    if nbytes <= runtime.resident_max_gb * 2**30:
        return ResidentBatches(data.images, data.target, idx, batch_size, device, shuffle, seed, rank, world)
    return StreamedBatches(data.path / "images.npy", data.target, idx, batch_size, device, shuffle, seed,
                           runtime.num_workers, rank, world)
