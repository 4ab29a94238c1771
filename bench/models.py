"""The point-cloud and graph models beside each task's default CNN, in one run: training events/s, peak memory,
and the test metric with its 95 % interval; for jet mass a paired bootstrap of each model's MAE minus the CNN's
on the same test events.

Each (task, model) trains in its own process through the train stage itself (e2e.stages.train.main), at the
task's params.yaml settings (epochs, batch size, optimiser, seed), on the converted synthetic data and splits
of a repository that ran `dvc repro` (--root), then predicts its test split through training's own batches.
The rows beside each CNN are those of --train (default bench/models.yaml, the settings of the committed
results): a label and the train.<task> fields it changes; another model than the CNN starts from no keyword
arguments and no augmentation. Events/s counts the training
steps of an epoch (validation excluded) averaged over the epochs; peak memory is the process's maximum
resident set size.

    python bench/models.py                       # CPU, writes bench/results/models.md
    python bench/models.py --device cuda --out bench/results/models_gpu.md   # on a GPU (points and images
                                                 # built on the device from the resident entries)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("jet_mass", "quark_gluon", "electron_photon")


def bench_root(
    root: Path, work: Path, task: str, model: str, *, overrides: dict, device: str, epochs: int | None
) -> dict:
    """A repository-like `work` whose data are `root`'s (linked) and params this checkout's params.yaml, with
    train.<task>.model set."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    tp = raw["train"][task]
    tp["epochs"] = epochs or tp["epochs"]
    if model != tp["model"]:  # another architecture: none of the CNN's keyword arguments or augmentations
        tp.update(model=model, model_kwargs={}, augment=[])
    tp.update({k: v for k, v in overrides.items() if k != "model"})
    raw["runtime"]["device"] = device
    (work / "data").mkdir(parents=True)
    for part in ("converted", "splits"):
        (work / "data" / part).symlink_to(root / "data" / part)
    (work / "params.yaml").write_text(yaml.safe_dump(raw))
    return raw


def run_one(root: Path, task: str, model: str, *, overrides: dict, device: str, epochs: int | None, out: Path) -> None:
    """Child process: train, then the test split's predictions (out/*.npy) and the figures (out/run.json)."""
    from e2e.config import Paths, parse_params
    from e2e.runtime.batches import Converted
    from e2e.runtime.device import select_device
    from e2e.runtime.forward import predict
    from e2e.runtime.points import batches_for
    from e2e.stages import train
    from e2e.store.checkpoints import load_checkpoint
    from e2e.store.splits import load_split
    from e2e.tasks import get_task

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        params = parse_params(bench_root(root, work, task, model, overrides=overrides, device=device, epochs=epochs))
        paths = Paths(work)
        t0 = time.perf_counter()
        train.main(params, task, paths)
        wall = time.perf_counter() - t0
        history = json.loads((paths.train_metrics(task) / "metrics.json").read_text())
        dev = select_device(device)
        net, spec, _ = load_checkpoint(paths.models(task) / "model.pt", dev)
        data, split = Converted(paths.converted(get_task(task).dataset)), load_split(paths.splits(task))
        batches = batches_for(
            spec, data, split["test"], batch_size=256, device=dev, shuffle=False, seed=0, runtime=params.runtime
        )
        raw, target = predict(net, batches, dev)
        np.save(out / "prediction.npy", net.decode(raw).float().cpu().numpy())
        np.save(out / "truth.npy", target.cpu().numpy())
        np.save(out / "rows.npy", batches.rows)
    n_train = len(split["train"])
    figures = {
        "events_per_second": n_train / history["seconds_per_epoch"],
        "train_wall_seconds": wall,
        "epochs": history["epochs_run"],
        "parameters": sum(p.numel() for p in net.parameters()),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "peak_gpu_gb": torch.cuda.max_memory_allocated() / 2**30 if dev.type == "cuda" else None,
        "max_points": spec.max_points,
    }
    (out / "run.json").write_text(json.dumps(figures))


def child(task: str, label: str, overrides: dict, *, args: argparse.Namespace, out: Path) -> dict:
    """Run one row (its model: overrides' `model`, else the label) in a fresh process (its own peak memory, no
    warm caches); its figures."""
    out.mkdir(parents=True, exist_ok=True)
    model = overrides.get("model", label)
    command = [sys.executable, __file__, "--one", task, model, "--root", str(args.root), "--device", args.device]
    command += ["--out", str(out), "--one-overrides", json.dumps(overrides)]
    command += ["--epochs", str(args.epochs)] if args.epochs else []
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    print(f"{task} {label}: training", flush=True)
    subprocess.run(command, check=True, env=env)
    return json.loads((out / "run.json").read_text())


def test_metric(task: str, out: Path) -> dict:
    from e2e.evaluation import metrics
    from e2e.tasks import get_task

    truth, pred = np.load(out / "truth.npy"), np.load(out / "prediction.npy")
    if get_task(task).is_classification:
        return {"value": metrics.roc_auc(truth, pred), "interval": metrics.roc_auc_interval(truth, pred)}
    return {"value": metrics.mae(truth, pred), "interval": metrics.mae_interval(truth, pred)}


def paired(task: str, base: Path, head: Path) -> tuple[float, float] | None:
    """The 95 % interval of head's test metric minus base's on the same events (jet mass: MAE in GeV)."""
    from e2e.evaluation import metrics
    from e2e.tasks import get_task

    if not np.array_equal(np.load(base / "rows.npy"), np.load(head / "rows.npy")):
        raise SystemExit(f"{head}: not the same test events as {base}")
    metric = "roc_auc" if get_task(task).is_classification else "mae"
    truth = np.load(base / "truth.npy")
    return metrics.paired_difference_interval(
        metric, truth, np.load(base / "prediction.npy"), np.load(head / "prediction.npy")
    )


def table(rows: list[dict]) -> list[str]:
    lines = [
        "| task | model | max_points | parameters | events/s | x CNN | peak memory (GB) | test metric [95 %] "
        "| minus the CNN's [95 %, paired] |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lo, hi = r["test"]["interval"]
        diff = "" if r["paired"] is None else f"{r['paired'][2]:+.4g} [{r['paired'][0]:+.4g}, {r['paired'][1]:+.4g}]"
        lines.append(
            f"| {r['task']} | {r['model']} | {r['max_points'] or ''} | {r['parameters']:,} | "
            f"{r['events_per_second']:,.0f} | {r['speedup']:.2f} | {r['peak_rss_gb']:.2f} | "
            f"{r['metric']} {r['test']['value']:.4g} [{lo:.4g}, {hi:.4g}] | {diff} |"
        )
    return lines


def measure(args: argparse.Namespace, work: Path) -> list[dict]:
    """Each task's rows: its default CNN (the baseline), then --train's entries for it (label -> train fields,
    `model` defaulting to the label), those named by --models only when given."""
    rows = []
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for task in args.tasks:
        cnn = raw["train"][task]["model"]
        base = work / task / cnn
        figures = {cnn: child(task, cnn, {}, args=args, out=base)}
        for label, overrides in args.train.get(task, {}).items():
            if args.models is None or label in args.models:
                figures[label] = child(task, label, overrides, args=args, out=work / task / label)
        for model, fig in figures.items():
            here = work / task / model
            d = None if model == cnn else paired(task, base, here)
            metric = "MAE (GeV)" if task == "jet_mass" else "ROC-AUC"
            diff = None if d is None else (*d, test_metric(task, here)["value"] - test_metric(task, base)["value"])
            speed = fig["events_per_second"] / figures[cnn]["events_per_second"]
            rows.append({"task": task, "model": model, "metric": metric, "test": test_metric(task, here)} | fig)
            rows[-1].update(paired=diff, speedup=speed)
    return rows


def write(args: argparse.Namespace, rows: list[dict], seconds: float) -> None:
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU ({os.cpu_count()} cores)"
    head = [
        f"# Point-cloud and graph models beside the default CNNs ({'GPU' if args.device != 'cpu' else 'CPU'})",
        "",
        f"{dt.date.today()}, {platform.machine()}, {device}, torch {torch.__version__}, Python "
        f"{platform.python_version()}; params.yaml's synthetic data and splits, each task's epochs, batch size, "
        f"optimiser and seed; the rows beside the CNN change only the train.<task> fields of bench/models.yaml "
        f"(--train), shown below; "
        f"{seconds / 60:.0f} min in all. Command: `python bench/models.py {' '.join(sys.argv[1:])}`",
        "",
        "events/s: training steps only (validation excluded), the mean over the epochs; x CNN: over the task's "
        "default CNN in this run. Test metric on the task's test split with its 95 % bootstrap interval; the "
        "difference is the model's minus the CNN's on the same events, resampled together (paired bootstrap): "
        "an interval that excludes zero is a difference the test split resolves.",
        "",
        *table(rows),
        "",
        "The rows' settings (--train):",
        "",
        "```yaml",
        yaml.safe_dump({t: v for t, v in args.train.items() if t in args.tasks}, sort_keys=False).rstrip(),
        "```",
        "",
    ]
    if args.device == "cpu":
        head += [
            "## GPU",
            "",
            "Not measured: no GPU was lent. On one: `python bench/models.py --device cuda "
            "--out bench/results/models_gpu.md` (points resident on the device, images densified there).",
            "",
        ]
    args.out.write_text("\n".join(head))
    print(f"wrote {args.out}")


def overrides_file(path: str) -> dict:
    """--train FILE: YAML task -> model -> train.<task> fields for that model (lr, model_kwargs, global_inputs)."""
    raw = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        raise SystemExit(f"{path}: expected a mapping task -> model -> train fields")
    return raw


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=ROOT, help="a repository after `dvc repro`: its data and splits")
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    ap.add_argument("--models", nargs="+", help="only these rows of --train (default: all of them)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--epochs", type=int, help="override every task's epochs (a quick check; default params.yaml's)")
    ap.add_argument(
        "--train",
        type=overrides_file,
        default=str(ROOT / "bench" / "models.yaml"),
        help="YAML: task -> row label -> train.<task> fields (`model` defaults to the label); bench/models.yaml",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "models.md")
    ap.add_argument("--one", nargs=2, metavar=("TASK", "MODEL"), help=argparse.SUPPRESS)
    ap.add_argument("--one-overrides", type=json.loads, default={}, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        options = {"overrides": args.one_overrides, "device": args.device, "epochs": args.epochs}
        run_one(args.root, *args.one, out=args.out, **options)
        return
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        rows = measure(args, Path(tmp))
    write(args, rows, time.perf_counter() - t0)


if __name__ == "__main__":
    main()
