"""Points per event and the cost of building point batches (e2e.runtime.points), per task, on the CPU.

(1) Each task's default synthetic data (params.yaml's data and synthetic sizes), downloaded and converted by
    e2e.stages.download and e2e.stages.convert into a scratch root; the channels train.<task>.channels selects.
    A point is a pixel where any selected channel is non-zero: points per event (median, 90 %, 99 %, max),
    and how many events a cap of 64, 128, 256, 512 points truncates. Where ../shared/realdata holds the 200
    real e/gamma crops (energy channel only), their points per event too, as a check of the synthetic ones.
(2) Events/s of whole shuffled epochs on the CPU, at the task's training batch size: PointBatches (to_points,
    uncapped and at the proposed cap) against SparseBatches (densify), the best of --epochs epochs.
The proposed max_points is the smallest of the caps that truncates at most 1 % of the events.

    python bench/points.py                   # writes bench/results/points.md
    python bench/points.py --workdir DIR     # keeps (and reuses) the converted data in DIR
    python bench/points.py --realdata /work/shared/realdata/electron-photon.npz   # from a git worktree
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from e2e.config import Paths, parse_params
from e2e.runtime.batches import Converted, SparseBatches
from e2e.runtime.points import PointBatches
from e2e.store.sparse import select_channels

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("electron_photon", "quark_gluon", "jet_mass")
CAPS = (64, 128, 256, 512, 1024, 2048)
CALORIMETER = {"energy", "ecal", "hcal"}  # the channels whose sum orders the points (the "energy")
REAL_EG = ROOT.parent / "shared" / "realdata" / "electron-photon.npz"  # as tests/conftest.py finds ../shared
CPU = torch.device("cpu")


def converted(root: Path, task: str, raw: dict) -> Converted:
    """The task's default synthetic data, converted under `root` (reused when already there)."""
    from e2e.stages import convert, download

    paths = Paths(root)
    if not (paths.converted(task) / "meta.json").is_file():
        params = parse_params(raw)
        download.main(params, task, paths)
        convert.main(params, task, paths)
    return Converted(paths.converted(task))


def points_per_event(data: Converted, channels: list[int]) -> np.ndarray:
    """Each event's count of pixels where any of `channels` is non-zero, from the sparse entries."""
    shape = data.images.image_shape
    hw, n = shape[1] * shape[2], len(data.images)
    part = select_channels(data.images.gather(np.arange(n)), channels, shape)
    event = np.repeat(np.arange(n, dtype=np.int64), part.counts)
    keys = np.unique(event * hw + part.index % hw)
    return np.bincount(keys // hw, minlength=n)


def energy_kept(data: Converted, channels: list[int], energy: list[int], counts: np.ndarray) -> dict:
    """Per cap, the median and the 1st percentile over events of the share of an event's energy that its
    `cap` most energetic points hold (uncapped PointBatches: each event's points come by energy)."""
    rows = np.arange(len(data.images))
    batches = PointBatches(
        data.images, data.target, rows, channels, batch_size=256, device=CPU, shuffle=False, seed=0,
        resident_max_gb=8.0, max_points=None, energy_channels=energy,
    )  # fmt: skip
    shares = {cap: [] for cap in CAPS}
    seen = []
    for batch, _ in batches:
        e = (batch.features[..., energy].sum(-1) * batch.mask).double().cumsum(1)
        n = batch.mask.sum(1)
        seen.append(n.numpy())
        total = e.gather(1, (n - 1).clamp(min=0)[:, None])[:, 0]
        for cap in CAPS:
            kept = e.gather(1, (n.clamp(max=cap) - 1).clamp(min=0)[:, None])[:, 0]
            shares[cap].append(torch.where(total > 0, kept / total, 1.0).numpy())
    if not np.array_equal(np.concatenate(seen), counts):  # the points of to_points against the numpy count
        raise SystemExit("bench/points.py: PointBatches' point counts differ from the numpy count")
    return {cap: np.percentile(np.concatenate(v), [50, 1]) for cap, v in shares.items()}


def distribution(counts: np.ndarray) -> dict:
    q = np.percentile(counts, [50, 90, 99])
    row = {"events": len(counts), "median": q[0], "p90": q[1], "p99": q[2], "max": counts.max()}
    return row | {cap: int((counts > cap).sum()) for cap in CAPS}


def proposed_cap(counts: np.ndarray) -> int | None:
    """The smallest cap that truncates at most 1 % of the events (None: every listed cap truncates more)."""
    return next((cap for cap in CAPS if (counts > cap).mean() <= 0.01), None)


def events_per_s(batches, epochs: int) -> float:
    """The best epoch's events/s over whole shuffled epochs (each batch's tensors touched, as a model would)."""
    best = 0.0
    for epoch in range(epochs + 1):  # epoch 0: warm-up (first touch of buffers and allocator)
        batches.set_epoch(epoch)
        t0 = time.perf_counter()
        for x, _ in batches:
            (x[0] if isinstance(x, tuple) else x).sum()
        if epoch:
            best = max(best, batches.n / (time.perf_counter() - t0))
    return best


def throughput(data: Converted, channels: list[int], energy: list[int], *, batch: int, cap: int, epochs: int) -> dict:
    rows = np.arange(len(data.images))
    common = dict(batch_size=batch, device=CPU, shuffle=True, seed=0, resident_max_gb=8.0)
    dense = SparseBatches(data.images, data.target, rows, channels, **common)
    out = {"densify": events_per_s(dense, epochs)}
    for label, max_points in (("points", None), ("points_cap", cap)):
        pb = PointBatches(
            data.images, data.target, rows, channels, max_points=max_points, energy_channels=energy, **common
        )
        out[label] = events_per_s(pb, epochs)
    return out


def real_eg_counts(path: Path) -> np.ndarray | None:
    if not path.is_file():
        print(f"{path}: not found, so no row of real e/gamma crops", flush=True)
        return None
    with np.load(path) as f:
        x = np.concatenate([f["x_train"], f["x_test"]])
    return (x != 0).sum(axis=(1, 2))


def measure(root: Path, raw: dict, epochs: int) -> list[dict]:
    results = []
    for task in TASKS:
        data = converted(root, task, raw)
        names = data.meta["channel_names"]
        channels = data.channels(raw["train"][task].get("channels"))
        energy = [k for k, c in enumerate(channels) if names[c] in CALORIMETER]
        counts = points_per_event(data, channels)
        cap = proposed_cap(counts)
        batch = raw["train"][task]["batch_size"]
        print(f"{task}: {len(counts)} events, points per event median {np.median(counts):.0f}", flush=True)
        kept = energy_kept(data, channels, energy, counts)
        speed = throughput(data, channels, energy, batch=batch, cap=cap or CAPS[-1], epochs=epochs)
        results.append(
            dict(task=task, channels=[names[c] for c in channels], energy=[names[channels[k]] for k in energy])
            | dict(batch=batch, cap=cap, dist=distribution(counts), kept=kept, speed=speed)
        )
    return results


def header(seed: int, epochs: int, seconds: float) -> list[str]:
    command = " ".join(["python bench/points.py", *sys.argv[1:]])
    return [
        "# Points per event and point-batch throughput (CPU)",
        "",
        f"{dt.date.today().isoformat()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), Python {platform.python_version()}; "
        f"params.yaml's synthetic data (data.seed {seed}) converted by e2e.stages.convert; {seconds:.0f} s in "
        f"all. Command: `OMP_NUM_THREADS=1 {command}`",
        "",
        "A point is a pixel where any of the model's channels (train.<task>.channels) is non-zero; its energy "
        "(which orders the points and picks the ones a cap keeps) is the sum of the calorimeter channels among "
        "the model's. The proposed max_points is the smallest cap that truncates at most 1 % of the events.",
    ]


def points_table(results: list[dict], real: np.ndarray | None) -> list[str]:
    caps = " | ".join(f"> {c}" for c in CAPS)
    lines = [
        "",
        "## Points per event, and the events each cap truncates",
        "",
        f"| task | channels | events | median | 90 % | 99 % | max | {caps} |",
        "| --- " * (7 + len(CAPS)) + "|",
    ]
    dists = [(r["task"], ", ".join(r["channels"]), r["dist"]) for r in results]
    if real is not None:
        dists.append(("electron_photon, 200 real crops (../shared/realdata)", "energy", distribution(real)))
    for task, channels, d in dists:
        over = " | ".join(f"{d[c]} ({100 * d[c] / d['events']:.1f} %)" for c in CAPS)
        lines.append(
            f"| {task} | {channels} | {d['events']} | {d['median']:.0f} | {d['p90']:.0f} | {d['p99']:.0f} | "
            f"{d['max']} | {over} |"
        )
    return lines


def energy_table(results: list[dict]) -> list[str]:
    caps = " | ".join(str(c) for c in CAPS)
    lines = [
        "",
        "## Share of each event's energy its `cap` most energetic points hold: median (1st percentile)",
        "",
        f"| task | energy | {caps} |",
        "| --- " * (2 + len(CAPS)) + "|",
    ]
    for r in results:
        shares = " | ".join(f"{100 * m:.1f} % ({100 * low:.1f} %)" for m, low in (r["kept"][c] for c in CAPS))
        lines.append(f"| {r['task']} | {', '.join(r['energy'])} | {shares} |")
    return lines


def speed_table(results: list[dict], epochs: int) -> list[str]:
    lines = [
        "",
        f"## Events/s on the CPU: whole shuffled epochs, the best of {epochs} after one of warm-up",
        "",
        "| task | batch | proposed max_points | densify (images) | to_points | to_points at the cap | "
        "to_points / densify |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        s, cap = r["speed"], r["cap"] or f"none ({CAPS[-1]} timed)"
        lines.append(
            f"| {r['task']} | {r['batch']} | {cap} | {s['densify']:,.0f} | {s['points']:,.0f} | "
            f"{s['points_cap']:,.0f} | {s['points'] / s['densify']:.2f} |"
        )
    return lines


def report(results: list[dict], real: np.ndarray | None, seed: int, epochs: int, seconds: float) -> str:
    lines = header(seed, epochs, seconds) + points_table(results, real) + energy_table(results)
    return "\n".join(lines + speed_table(results, epochs)) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="keep (and reuse) the converted data here")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "points.md")
    parser.add_argument("--realdata", type=Path, default=REAL_EG, help="the 200 real e/gamma crops (.npz)")
    args = parser.parse_args()
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-points-") as scratch:
        results = measure(args.workdir or Path(scratch), raw, args.epochs)
    seconds = time.perf_counter() - t0
    text = report(results, real_eg_counts(args.realdata), raw["data"]["seed"], args.epochs, seconds)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
