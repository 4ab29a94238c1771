"""Training throughput per task, in one run: model-only ceiling, our loop, the reference solutions' loop.

(a) ceiling: synthetic tensors already on the device, our precision and compile settings;
(b) ours: e2e's training loop (engine.train_one_epoch) over converted data, resident on the device;
(c) reference: fp32, a DataLoader over CPU float32 arrays with the references' batch sizes (32/256/64),
    one host-to-device copy per batch, as the public notebooks do.
On CPU it also times the input pipeline alone, to check it delivers >= 3x what training consumes.

    python bench/throughput.py                  # CPU, params.yaml models, writes bench/results/throughput.md
    python bench/throughput.py --preset full    # reference widths (run this one on a GPU)
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from e2e.config import parse_params
from e2e.models.wrappers import ModelSpec, wrap_from_spec
from e2e.presets import flatten
from e2e.runtime.batches import SparseBatches
from e2e.runtime.device import autocast, prepare, select_device
from e2e.store.sparse import SparseImages
from e2e.tasks import TASKS, make_loss
from e2e.training.loop import train_one_epoch
from e2e.training.optimizers import make_optimizer, make_scheduler

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {"electron_photon": (2, 32, 32), "quark_gluon": (3, 125, 125), "jet_mass": (4, 125, 125)}
REFERENCE_BATCH = {"electron_photon": 32, "quark_gluon": 256, "jet_mass": 64}
FAST_BATCH = {"electron_photon": 4096, "quark_gluon": 1024, "jet_mass": 512}  # GPU batch for (a) and (b)


def load_params(preset: str | None):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    if preset:
        for key, value in flatten(yaml.safe_load((ROOT / "presets" / f"{preset}.yaml").read_text())).items():
            node = raw
            *parents, leaf = key.split(".")
            for k in parents:
                node = node.setdefault(k, {})
            node[leaf] = value
    return parse_params(raw)


def fake_data(task: str, n: int, seed: int = 0):
    """Sparse images like the real ones (~2 % non-zero), stored float16 as converted data is."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, *SHAPES[task]), dtype=np.float32) * (rng.random((n, *SHAPES[task])) < 0.02)
    y = rng.integers(0, 2, n).astype(np.float32) if TASKS[task].is_classification else rng.uniform(85, 500, n)
    return x.astype(np.float16), y.astype(np.float32)


def make_model(task, tp, device, rt):
    spec = ModelSpec(
        model=tp.model,
        model_kwargs=dict(tp.model_kwargs),
        in_channels=SHAPES[task][0],
        image_size=list(SHAPES[task][1:]),
        num_outputs=1,
        classification=TASKS[task].is_classification,
        task=task,
    )
    model = prepare(wrap_from_spec(spec), device, rt)
    return model, (torch.compile(model) if rt.compile else model)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, n_images: int, device) -> float:
    fn()  # warm-up: compilation, cudnn autotuning, allocator
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return n_images / (time.perf_counter() - t0)


def ceiling(task, tp, *, rt, device, batch, steps) -> float:
    model, net = make_model(task, tp, device, rt)
    opt, loss_fn = make_optimizer(model, tp), make_loss(TASKS[task].loss)
    x = torch.randn(batch, *SHAPES[task], device=device)
    y = torch.rand(batch, device=device).round()

    def run():
        for _ in range(steps):
            with autocast(device, rt.amp):
                loss = loss_fn(net(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    return timed(run, batch * steps, device)


def ours(task, tp, x, y, *, rt, device, batch, steps) -> float:
    model, net = make_model(task, tp, device, rt)
    n = batch * steps
    batches = resident(x[:n], y[:n], batch, device)
    opt = make_optimizer(model, tp)
    sched, loss_fn = make_scheduler(opt, tp, len(batches)), make_loss(TASKS[task].loss)
    return timed(lambda: train_one_epoch(net, batches, opt, sched, loss_fn, device=device, amp=rt.amp), n, device)


def reference(task, tp, x, y, *, device, steps) -> float:
    batch = REFERENCE_BATCH[task]
    n = min(batch * steps, len(x))
    rt32 = parse_params({}).runtime.__class__(amp=False, compile=False, channels_last=False)
    model, net = make_model(task, tp, device, rt32)
    ds = torch.utils.data.TensorDataset(torch.from_numpy(x[:n].astype(np.float32)), torch.from_numpy(y[:n]))
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True)
    opt, loss_fn = torch.optim.Adam(model.parameters(), lr=tp.lr), make_loss(TASKS[task].loss)

    def run():
        model.train()
        torch.backends.cudnn.benchmark = False  # the notebooks never turn on cuDNN autotuning
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            loss = loss_fn(net(xb).squeeze(-1), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()

    try:
        return timed(run, n, device)
    finally:
        torch.backends.cudnn.benchmark = device.type == "cuda"


def resident(x, y, batch, device) -> SparseBatches:
    """The training input path: the sparse entries resident on `device`, batches densified there."""
    return SparseBatches(
        SparseImages.from_dense(x),
        y,
        np.arange(len(x)),
        list(range(x.shape[1])),
        batch_size=batch,
        device=device,
        shuffle=True,
        seed=0,
        resident_max_gb=1e3,
    )


def input_only(x, y, batch, device) -> float:
    batches = resident(x, y, batch, device)
    return timed(lambda: [b for b in batches], len(x), device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default=None, help="e.g. full: the reference model widths")
    ap.add_argument("--steps", type=int, default=None, help="training steps per measurement")
    ap.add_argument("--batch-scale", type=float, default=1.0, help="multiply the GPU batch sizes of (a) and (b)")
    ap.add_argument("--tasks", nargs="*", default=list(TASKS))
    ap.add_argument("--compile", action="store_true", help="torch.compile for (a) and (b)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "throughput.md"))
    args = ap.parse_args()
    params = load_params(args.preset)
    rt = params.runtime.__class__(**{**params.runtime.__dict__, "compile": args.compile})
    device = select_device(rt.device)
    gpu = device.type == "cuda"
    steps = args.steps or (50 if gpu else 5)
    rows = []
    for task in args.tasks:
        tp = params.train[task]
        batch = int(FAST_BATCH[task] * args.batch_scale) if gpu else tp.batch_size
        x, y = fake_data(task, max(batch, REFERENCE_BATCH[task]) * steps)
        a = ceiling(task, tp, rt=rt, device=device, batch=batch, steps=steps)
        b = ours(task, tp, x, y, rt=rt, device=device, batch=batch, steps=steps)
        c = reference(task, tp, x, y, device=device, steps=steps)
        feed = input_only(x, y, batch, device)
        rows.append((task, tp.model, batch, a, b, c, feed))
        print(f"{task}: ceiling {a:,.0f}  ours {b:,.0f}  reference {c:,.0f}  input-only {feed:,.0f} img/s", flush=True)
    write(args, rows, device, rt, steps)


def write(args, rows, device, rt, steps) -> None:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    lines = [
        f"# Training throughput ({'GPU' if device.type == 'cuda' else 'CPU'})",
        "",
        f"{dt.date.today()}, {name}, torch {torch.__version__}, Python {platform.python_version()}, "
        f"preset {args.preset or 'none (params.yaml)'}, amp {rt.amp and device.type == 'cuda'}, "
        f"compile {rt.compile}, {steps} steps per measurement. Command: `{' '.join(sys.argv)}`",
        "",
        "| task | model | batch (a, b) | (a) ceiling img/s | (b) ours img/s | (b)/(a) | (c) reference img/s "
        "| (b)/(c) | input pipeline alone img/s | input/(b) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for task, model, batch, a, b, c, feed in rows:
        lines.append(
            f"| {task} | {model} | {batch} | {a:,.0f} | {b:,.0f} | {b / a:.2f} | {c:,.0f} | "
            f"{b / c:.1f}x | {feed:,.0f} | {feed / b:.0f}x |"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
