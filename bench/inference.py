"""Inference speed on the CPU: onnxruntime (models/<task>/model.onnx) against torch eager (model.pt).

Per task, at batch 1 and batch 256, two figures in images per second:
  model     the network alone on converted images held in memory (what the backend changes);
  predict   `e2e predict` end to end on the task's first raw file: reading, preprocessing, model, parquet.
Both backends get the same number of CPU threads. Run after `dvc repro` (it uses the workspace's trained
models and raw files):

    python bench/inference.py                 # writes bench/results/inference.md
    python bench/inference.py --threads 1
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from e2e.inference import predict
from e2e.inference.onnx_model import OnnxModel
from e2e.runtime.batches import Converted
from e2e.store.checkpoints import load_checkpoint
from e2e.tasks import TASKS

ROOT = Path(__file__).resolve().parents[1]
BATCHES = (1, 256)


def rate(fn, n_images: int, min_seconds: float = 2.0) -> float:
    """Images per second of fn() (which handles n_images), repeated for at least min_seconds after a warm-up."""
    fn()
    calls, t0 = 0, time.perf_counter()
    while calls == 0 or time.perf_counter() - t0 < min_seconds:
        fn()
        calls += 1
    return calls * n_images / (time.perf_counter() - t0)


def model_rates(root: Path, task: str, rows: int, threads: int) -> dict:
    models = root / "models" / task
    net, spec, _ = load_checkpoint(models / "model.pt")
    ort = OnnxModel(models / "model.onnx", threads)
    data = Converted(root / "data" / "converted" / TASKS[task].dataset)
    x = data.images[np.arange(min(rows, len(data.target)))][:, data.channels(spec.channels)]
    out = {"model": spec.model}
    for b in BATCHES:
        xb = np.ascontiguousarray(x[:b])
        tb = torch.from_numpy(xb)

        def eager(tb=tb):  # bound now: each batch size times its own tensor
            with torch.inference_mode():
                net.decode(net(tb))

        out[("model", "torch", b)] = rate(eager, len(xb))
        out[("model", "onnx", b)] = rate(lambda xb=xb: ort(xb), len(xb))
    return out


def predict_rates(root: Path, task: str) -> dict:
    """e2e predict on the task's first raw file, each backend and batch once."""
    raw = sorted(p for p in (root / "data" / "raw" / TASKS[task].dataset).iterdir() if "truth" not in p.name)[0]
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for backend in ("torch", "onnx"):
            for b in BATCHES:
                t0 = time.perf_counter()
                n = predict.main(
                    task, [raw], Path(tmp) / "p.parquet", root=root, batch_rows=b, device_name="cpu", backend=backend
                )
                out[("predict", backend, b)] = n / (time.perf_counter() - t0)
    return out


def table(results: dict) -> list[str]:
    lines = [
        "| task | model | what | batch | torch eager img/s | onnxruntime img/s | onnxruntime / torch |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for task, r in results.items():
        for what in ("model", "predict"):
            for b in BATCHES:
                t, o = r[(what, "torch", b)], r[(what, "onnx", b)]
                lines.append(f"| {task} | {r['model']} | {what} | {b} | {t:,.0f} | {o:,.0f} | {o / t:.2f}x |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2, help="CPU threads of both backends")
    ap.add_argument("--rows", type=int, default=1024, help="converted images held for the model-only figures")
    ap.add_argument("--root", type=Path, default=ROOT, help="repository whose models/ and data/ to use")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "inference.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results = {}
    for task in TASKS:
        results[task] = {**model_rates(args.root, task, args.rows, args.threads), **predict_rates(args.root, task)}
        print("\n".join(table({task: results[task]})[2:]), flush=True)
    header = [
        "# Inference speed (CPU): onnxruntime vs torch eager",
        "",
        f"{dt.date.today()}, {platform.processor() or platform.machine()}, {args.threads} threads, torch "
        f"{torch.__version__}, onnxruntime {onnxruntime.__version__}, Python {platform.python_version()}. "
        f"Models: the workspace's `models/<task>/` after `dvc repro` (params.yaml). Command: "
        f"`{' '.join(['bench/inference.py', *sys.argv[1:]])}`",
        "",
        "`model`: the network alone on converted images in memory; `predict`: `e2e predict` end to end on "
        "the task's first raw file (the synthetic default's sizes), reading and preprocessing included.",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(header + table(results)) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
