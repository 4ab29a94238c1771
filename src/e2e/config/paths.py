"""Every path a stage reads or writes, in one place."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Paths:
    """Every path a stage reads or writes, relative to the repository root (as in dvc.yaml)."""

    root: Path = Path(".")

    def raw(self, dataset: str) -> Path:
        return self.root / "data" / "raw" / dataset

    def converted(self, dataset: str) -> Path:
        return self.root / "data" / "converted" / dataset

    def splits(self, task: str) -> Path:
        return self.root / "data" / "splits" / task

    def models(self, task: str) -> Path:
        return self.root / "models" / task

    def train_metrics(self, task: str) -> Path:
        return self.root / "metrics" / task / "train"

    def eval_metrics(self, task: str) -> Path:
        return self.root / "metrics" / task / "eval"

    def work(self, stage: str, name: str) -> Path:
        """`.cache/<stage>/<name>`: what a stage keeps across reruns (partial downloads, converted parts, the
        last epoch), outside its DVC outputs, which `dvc repro` deletes before running it."""
        return self.root / ".cache" / stage / name
