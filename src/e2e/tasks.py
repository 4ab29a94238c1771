"""One table: per task its dataset, target, loss, output size and primary metric."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    name: str
    dataset: str
    kind: str  # "classification" (binary, one logit) or "regression" (one value)
    loss: str  # key of LOSSES
    primary_metric: str  # key of e2e.evaluation.metrics.METRICS, computed on the validation split each epoch
    higher_is_better: bool
    # prefix of the task's headline metrics: unique across tasks, so `dvc exp show` names each column by its
    # key alone (a key shared by two metrics files is shown as `<file path>:<key>`, three times as wide)
    tag: str = ""
    classes: tuple[str, str] = ("class_0", "class_1")  # names of class 0 and class 1 (the signal) in plots
    num_outputs: int = 1

    @property
    def is_classification(self) -> bool:
        return self.kind == "classification"


TASKS: dict[str, Task] = {
    "electron_photon": Task(
        "electron_photon", "electron_photon", "classification", "bce", "roc_auc", True, "eg", ("photon", "electron")
    ),
    "quark_gluon": Task(
        "quark_gluon", "quark_gluon", "classification", "bce", "roc_auc", True, "qg", ("quark", "gluon")
    ),
    "jet_mass": Task("jet_mass", "jet_mass", "regression", "mse", "mae", False, "mass"),
}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; choices: {sorted(TASKS)}") from None


def make_loss(name: str, label_smoothing: float = 0.0):
    import torch.nn as nn

    losses = {"bce": nn.BCEWithLogitsLoss, "mse": nn.MSELoss, "huber": nn.HuberLoss, "l1": nn.L1Loss}
    loss = losses[name]()
    if not label_smoothing:
        return loss
    return lambda out, y: loss(out, y * (1 - label_smoothing) + 0.5 * label_smoothing)
