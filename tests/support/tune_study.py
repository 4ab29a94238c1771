"""The study the tune tests run: quark_gluon (the cheapest learner), one search range of each kind, in the
tiny params.yaml of support.pipeline_repo (test_tune runs it, test_tune_space checks its -S values)."""

from __future__ import annotations

from support.pipeline_repo import tiny_params

TASK = "quark_gluon"
SPACE = {  # one range of each kind: log float, int with a step, categorical
    f"train.{TASK}.lr": {"low": 1e-4, "high": 3e-3, "log": True},
    f"train.{TASK}.batch_size": {"low": 16, "high": 48, "step": 16},
    f"train.{TASK}.weight_decay": {"choices": [0.0, 0.001]},
}


def params(space: dict | None = None) -> dict:
    return tiny_params(**{f"tune.{TASK}": {"sampler": "tpe", "seed": 0, "space": space or SPACE}})
