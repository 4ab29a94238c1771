"""What an exported graph says about itself: the metadata `e2e export` writes into model.onnx, each value
JSON (the model, its preprocessing, the training data's DVC md5, the git revision, the best epoch), which
e2e.inference.onnx_model reads back and docs/deployment.md lists."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

from e2e.models.wrappers import ModelSpec
from e2e.tasks import get_task


def dir_md5(path: Path) -> str:
    """md5 of a directory as DVC writes it in dvc.lock (md5 of the sorted [{md5, relpath}] JSON, + .dir)."""

    def md5(p: Path) -> str:
        with open(p, "rb") as f:  # as e2e.sources.fetch.sha256_file does
            return hashlib.file_digest(f, "md5").hexdigest()

    files = sorted((p.relative_to(path).as_posix(), p) for p in path.rglob("*") if p.is_file())
    listing = [{"md5": md5(p), "relpath": rel} for rel, p in files]
    return hashlib.md5(json.dumps(listing, sort_keys=True).encode()).hexdigest() + ".dir"


def git_revision(root: Path) -> dict[str, Any]:
    """The commit the code came from, and whether tracked files differed from it (e.g. `dvc exp run -S`).
    dvc.lock does not count: `dvc repro` rewrites it stage by stage, code and params unchanged."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()

    try:
        changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)dvc.lock")
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(changed)}
    except (OSError, subprocess.CalledProcessError):  # no git, or not a repository with a commit
        return {"commit": None, "dirty": None}


def metadata(
    task_name: str, spec: ModelSpec, pre: dict[str, Any], *, epoch: int, data_path: Path, root: Path
) -> dict[str, str]:
    """The graph's metadata, each value JSON: what the model is, its preprocessing and where it came from;
    `epoch` is the checkpoint's (the best epoch, counted from 0)."""
    task = get_task(task_name)
    output = f"probability that the image is a {task.classes[1]} (class 1)" if task.is_classification else "jet mass"
    meta = {
        "task": task_name,
        "model": {"name": spec.model, "kwargs": spec.model_kwargs},
        "channels": pre["channel_names"],
        "preprocessing": pre,
        "input_shape": [None, spec.in_channels, *spec.image_size],
        "output": output,
        "output_unit": "" if task.is_classification else "GeV",
        "training_data": {
            "path": data_path.relative_to(root).as_posix() if data_path.is_relative_to(root) else str(data_path),
            "md5": dir_md5(data_path),
        },
        "git_revision": git_revision(root),
        "best_epoch": int(epoch) + 1,
        "members": spec.n_members,
    }
    if spec.points:
        meta["inputs"] = point_inputs(spec, pre)
    elif spec.global_inputs:  # an image model's graph takes (images, globals)
        meta["inputs"] = {"images": "float32 (N, C, H, W) as input_shape", "globals": spec.global_inputs}
    return {k: json.dumps(v) for k, v in meta.items()}


def point_inputs(spec: ModelSpec, pre: dict[str, Any]) -> dict[str, Any]:
    """How a point model's inputs are built from a converted event (e2e.runtime.points.to_points)."""
    return {
        "points": "float32 (N, P, 2): each pixel (h, w) where any channel is non-zero, as "
        "((h - (H-1)/2) / (H/2), (w - (W-1)/2) / (W/2)), H, W = input_shape[2:]",
        "features": "float32 (N, P, C): the channels' values there (0 where a channel is zero), unstandardised",
        "mask": "bool (N, P): True for real points; padded slots all zero; P is any size >= 1",
        "order": "by energy descending (the sum of energy_channels), ties by ascending h*W + w; max_points kept",
        "channels": pre["channel_names"],
        "energy_channels": [pre["channel_names"][k] for k in spec.energy_channels or []],
        "max_points": spec.max_points,
        "globals": spec.global_inputs or [],
    }
