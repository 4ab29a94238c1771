"""One rank of tests/stages/test_ddp.py's torchrun runs: `train.main` for electron_photon, with what the test asks
for in $E2E_DDP_TEST (JSON):

    roots    each rank's repository root (separate copies stand for nodes that share no filesystem)
    metrics  each rank's scripted validation metric per epoch, or null for the real one
    fail_at  the training epoch (counted from 1 in this run) that raises, or null
    out      a directory for rank<r>.json: the epochs this rank trained, a hash of the model it validated
             each epoch (weights and buffers), and the device it trained on

Not a test module: run as a script by torch.distributed.run.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import yaml

from e2e.config import Paths, parse_params
from e2e.stages import train
from e2e.training import fit


def model_hash(model) -> str:
    return hashlib.sha256(b"".join(v.detach().cpu().numpy().tobytes() for v in model.state_dict().values())).hexdigest()


def main() -> None:
    cfg, rank = json.loads(os.environ["E2E_DDP_TEST"]), int(os.environ["RANK"])
    root = Path(cfg["roots"][rank])
    seen: dict = {"epochs": [], "validated": []}
    real_score, real_epoch = fit.score, fit.train_one_epoch

    def score(task, model, *args, **kw):
        out = real_score(task, model, *args, **kw)
        seen["validated"].append(model_hash(model))
        seen["device"] = str(next(model.parameters()).device)
        if cfg["metrics"]:
            out[task.primary_metric] = cfg["metrics"][rank][len(seen["validated"]) - 1]
        return out

    def epoch(*args, **kw):
        seen["epochs"].append(kw["desc"])
        if len(seen["epochs"]) == cfg["fail_at"]:
            raise RuntimeError(f"simulated failure on rank {rank}")
        return real_epoch(*args, **kw)

    fit.score, fit.train_one_epoch = score, epoch
    try:
        params = parse_params(yaml.safe_load((root / "params.yaml").read_text()))
        train.main(params, "electron_photon", Paths(root))
    finally:
        (Path(cfg["out"]) / f"rank{rank}.json").write_text(json.dumps(seen))


if __name__ == "__main__":
    main()
