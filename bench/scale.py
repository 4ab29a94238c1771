"""The real datasets at their full size: one real-size jet-mass file, measured in one run.

(1) size: the converted (sparse) file against dense float16, and all seven files projected onto a 64 GiB disk;
(2) conversion (e2e.stages.convert.main) of 1 file, then 2 files: ms/jet and peak RSS of the whole process tree;
(3) CPU densification (e2e.runtime.batches.SparseBatches) against what CPU training consumes, per task;
(4) GPU, when there is one: the resident sparse path against the model-only ceiling, presets/full.yaml models.

The raw file is synthetic (e2e.sources.synthetic: real layout, real occupancy), generated once under
--workdir and reused while it holds --jets jets; the second file of (2) is a hard link to it.

    python bench/scale.py                # 150,000 jets; writes bench/results/scale.md
    python bench/scale.py --jets 2000    # quick check; its report goes to the workdir, never over the results
    python bench/scale.py --gpu-only     # (4) alone, on a GPU machine; writes bench/results/scale_gpu.md
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import yaml

from e2e.config import Params, Paths, parse_params
from e2e.presets import flatten
from e2e.sources.registry import get_dataset
from e2e.sources.synthetic import generate, truth_path
from e2e.stages.convert import n_workers
from e2e.tasks import TASKS, make_loss

if "--_convert" not in sys.argv:  # the conversion child runs this file too: torch would inflate its RSS
    import torch

    from e2e.models.wrappers import ModelSpec, wrap_from_spec
    from e2e.runtime.batches import Converted, SparseBatches
    from e2e.runtime.device import autocast, prepare
    from e2e.store.sparse import SparseImages, sparsify
    from e2e.training.loop import train_one_epoch
    from e2e.training.optimizers import make_optimizer, make_scheduler

ROOT = Path(__file__).resolve().parents[1]
FULL_JETS, ALL_JETS = 150_000, 1_050_000  # one file; the seven files
RAW_ALL, DISK = 8.2e9, 64 * 2**30  # bytes of the seven real raw files; the disk they must fit
DENSE_PER_JET = 8 * 125 * 125 * 2  # float16, all 8 channels
BASELINE = "310f0f0"  # the last commit with the dense converter
OLD_MS_PER_JET, RSS_MAX, FLAT = 0.71, 1.5e9, 1.15  # FLAT: the most 2 files may cost over 1, per jet or per process
DENSIFY_MIN, FEED_MIN, GPU_MIN = 20_000, 5.0, 0.9
CPU_STEPS, GPU_STEPS = 24, 100  # training steps per timed run
# non-zero fraction per channel; one value: one mask for every channel (e/gamma time is recorded where energy is)
OCCUPANCY = {
    "electron_photon": (0.047,),
    "quark_gluon": (0.02,) * 3,
    "jet_mass": tuple(k / 15625 for k in (25, 25, 25, 190, 555, 48, 47, 46)),
}  # the generator's, ~960/jet
FAKE_N = {"electron_photon": 65536, "quark_gluon": 16384}  # beyond the CPU caches, as a real split is
CONVERT = {
    "convert.jet_mass.channels": list(range(8)),
    "convert.jet_mass.scale": [1.0] * 8,
    "convert.jet_mass.clip": 50.0,
}


def load_params(preset: str | None = None, overrides: dict | None = None) -> Params:
    """params.yaml, then the preset's keys, then `overrides` (dotted keys)."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    tree = flatten(yaml.safe_load((ROOT / "presets" / f"{preset}.yaml").read_text())) if preset else {}
    for key, value in {**tree, **(overrides or {})}.items():
        node = raw
        *parents, leaf = key.split(".")
        for k in parents:
            node = node.setdefault(k, {})
        node[leaf] = value
    return parse_params(raw)


def converted_shape(params: Params, task: str) -> tuple[int, int, int]:
    ds, channels = get_dataset(task), params.convert[task].channels
    return (len(channels) if channels else ds.shape[0], *ds.shape[1:])


def train_channels(params: Params, task: str) -> list[int]:
    """The converted channels the task's model sees (train.<task>.channels; None: all)."""
    chosen = params.train[task].channels
    return list(chosen) if chosen is not None else list(range(converted_shape(params, task)[0]))


# ---------------------------------------------------------------- (1) and (2): the file and its conversion


def raw_file(workdir: Path, n: int, params: Params) -> Path:
    """workdir/raw_<n>/top_gun_opendata_0.parquet and its truth sidecar, generated once and reused."""
    import pyarrow.parquet as pq

    first = get_dataset("jet_mass").files[0]
    path = workdir / f"raw_{n}" / first.name
    # the sidecar is written after the raw file: its presence means the raw file is complete
    if path.is_file() and truth_path(path).is_file() and pq.read_metadata(truth_path(path)).num_rows == n:
        return path
    t0 = time.perf_counter()
    cfg = {**params.synthetic["jet_mass"], "n_jets": n}
    generate("jet_mass", path.parent, cfg, seed=params.data.seed, files=(first,))  # the first of the seven files
    if (rows := pq.read_metadata(truth_path(path)).num_rows) != n:
        sys.exit(f"{path}: the generator wrote {rows} jets, {n} asked for")
    print(f"generated {path} ({path.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - t0:.0f} s", flush=True)
    return path


def conversion_root(workdir: Path, raw: Path, n_files: int) -> Path:
    """A fresh project root whose data/raw/jet_mass holds the file n_files times under the registry's names."""
    root = workdir / f"convert_{raw.parent.name}_{n_files}"
    shutil.rmtree(root, ignore_errors=True)  # no parts left to resume: every run converts from scratch
    raw_dir = Paths(root).raw("jet_mass")
    raw_dir.mkdir(parents=True)
    for f in get_dataset("jet_mass").files[:n_files]:  # hard links: generating a second file costs many minutes
        os.link(raw, raw_dir / f.name)
        os.link(truth_path(raw), truth_path(raw_dir / f.name))
    return root


def convert_child(root: Path, n_files: int, workers: int) -> None:
    """In the child process: e2e.stages.convert.main on `root`, its wall clock written to root/timing.json."""
    from e2e.stages.convert import main as convert_main  # imported before the clock starts

    names = [f.name for f in get_dataset("jet_mass").files[:n_files]]
    params = load_params(None, {**CONVERT, "datasets.jet_mass.files": names, "runtime.convert_workers": workers})
    t0 = time.perf_counter()
    convert_main(params, "jet_mass", Paths(root))
    (root / "timing.json").write_text(json.dumps({"seconds": time.perf_counter() - t0}))


def watch(cmd: list[str], env: dict | None = None) -> tuple[int, int]:
    """Run cmd, sampling the RSS of it and every descendant (the converter's workers) every 50 ms:
    the peak of their sum, and the peak of any one process."""
    proc = psutil.Popen(cmd, cwd=ROOT, env=env)
    peak_sum = peak_one = 0
    while proc.poll() is None:
        rss = []
        with contextlib.suppress(psutil.Error):
            for p in [proc, *proc.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):  # a worker may exit between listing and reading
                    rss.append(p.memory_info().rss)
        peak_sum, peak_one = max(peak_sum, sum(rss)), max([peak_one, *rss])
        time.sleep(0.05)
    if proc.returncode:
        sys.exit(f"conversion failed ({proc.returncode}): {' '.join(cmd)}")
    return peak_sum, peak_one


# today's converter as it was before the sparse format (commit 310f0f0: dense float16 (N, C, H, W) images.npy),
# run from a git worktree on the same file in the same run: the speed target is "no slower than it". The imports
# are that commit's module paths (e2e.convert, before the regroup into e2e.stages; tests/unit/test_scripts_import.py)
BASELINE_CHILD = """
import json, sys, time
from pathlib import Path
from e2e.config import parse_params, Paths
from e2e.convert import main
params = parse_params({"convert": {"jet_mass": {"channels": list(range(8)), "scale": [1.0] * 8, "clip": 50.0}}})
t0 = time.perf_counter()
main(params, "jet_mass", Paths(Path(sys.argv[1])))
(Path(sys.argv[1]) / "timing.json").write_text(json.dumps({"seconds": time.perf_counter() - t0}))
"""


def baseline_run(workdir: Path, raw: Path, rev: str) -> dict:
    tree = workdir / f"baseline-{rev}"
    if not tree.is_dir():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), rev], check=True)
    root = conversion_root(workdir, raw, 1)
    print(f"converting 1 file with the dense converter of {rev} in {root}", flush=True)
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    peak_sum, peak_one = watch([sys.executable, "-c", BASELINE_CHILD, str(root)], env=env)
    seconds = json.loads((root / "timing.json").read_text())["seconds"]
    out = Paths(root).converted("jet_mass")
    run = {
        "n": json.loads((out / "meta.json").read_text())["n"],
        "seconds": seconds,
        "peak_sum": peak_sum,
        "bytes": sum(f.stat().st_size for f in out.iterdir()),
    }
    shutil.rmtree(root)  # 37.5 GB of dense float16 at 150,000 jets
    print(f"  {seconds:.1f} s, {1e3 * seconds / run['n']:.3f} ms/jet, peak RSS {peak_sum / 1e9:.2f} GB", flush=True)
    return run


def convert_run(workdir: Path, raw: Path, n_files: int, workers: int) -> dict:
    root = conversion_root(workdir, raw, n_files)
    print(f"converting {n_files} file(s), {workers} worker(s), in {root}", flush=True)
    peak_sum, peak_one = watch(
        [sys.executable, __file__, "--_convert", str(root), "--_files", str(n_files), "--workers", str(workers)]
    )
    out = Paths(root).converted("jet_mass")
    meta, seconds = json.loads((out / "meta.json").read_text()), json.loads((root / "timing.json").read_text())
    run = {
        "files": n_files,
        "n": meta["n"],
        "nnz": meta["nnz"],
        "seconds": seconds["seconds"],
        "out": out,
        "bytes": sum(f.stat().st_size for f in out.iterdir()),
        "peak_sum": peak_sum,
        "peak_one": peak_one,
    }
    print(
        f"  {run['seconds']:.1f} s, {1e3 * run['seconds'] / run['n']:.3f} ms/jet, peak RSS {peak_sum / 1e9:.2f} GB"
        f" (largest process {peak_one / 1e9:.2f} GB)",
        flush=True,
    )
    return run


# ---------------------------------------------------------------- (3) and (4): batches and training


def fake_images(params: Params, task: str, n: int, seed: int = 0):
    """n random images at the task's real occupancy, in the converted (sparse) format, in memory."""
    shape, rng = converted_shape(params, task), np.random.default_rng(seed)
    occupancy = np.asarray(OCCUPANCY[task]).reshape(1, -1, 1, 1)
    parts = []
    for start in range(0, n, 512):
        b = min(512, n - start)
        mask = np.broadcast_to(rng.random((b, occupancy.shape[1], *shape[1:]), np.float32) < occupancy, (b, *shape))
        x = np.zeros((b, *shape), np.float16)
        x[mask] = rng.uniform(0.1, 10.0, int(mask.sum()))
        parts.append(sparsify(x))
    values, index, counts = (np.concatenate([getattr(p, k) for p in parts]) for k in ("values", "index", "counts"))
    y = rng.random(n).round() if TASKS[task].is_classification else rng.normal(size=n)
    return SparseImages(values, index, np.cumsum([0, *counts]).astype(np.int64), shape), y.astype(np.float32)


def densify_rate(images, target, channels: list[int], batch: int, repeat: int) -> float:
    """Images/s of whole shuffled epochs of float32 batches from SparseBatches on the CPU, the best one."""
    batches = SparseBatches(
        images,
        target,
        np.arange(len(images)),
        channels,
        batch_size=batch,
        device=torch.device("cpu"),
        shuffle=True,
        seed=0,
        resident_max_gb=8.0,
    )

    def epoch():
        batches.set_epoch(batches.epoch + 1)
        for _ in batches:
            pass

    epoch()  # warm-up: first touch of the two reused buffers
    return best_rate(epoch, len(images), repeat, torch.device("cpu"))


def make_model(params: Params, task: str, device, rt):
    tp, (_, h, w) = params.train[task], converted_shape(params, task)
    spec = ModelSpec(
        model=tp.model,
        model_kwargs=dict(tp.model_kwargs),
        in_channels=len(train_channels(params, task)),
        image_size=[h, w],
        num_outputs=1,
        classification=TASKS[task].is_classification,
        task=task,
    )
    model = prepare(wrap_from_spec(spec), device, rt)
    return model, (torch.compile(model) if rt.compile else model)


def best_rate(fn, images: int, repeat: int, device, min_seconds: float = 3.0) -> float:
    """Images/s of the best call of fn (each processing `images`), over at least `repeat` calls and `min_seconds`:
    a shared machine stalls for seconds now and then, and the best call is what the code can do."""
    seconds, start = [], time.perf_counter()
    while len(seconds) < repeat or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - t0)
    return images / min(seconds)


def ceiling_rate(params: Params, task: str, *, device, rt, steps: int, warmup: int, repeat: int) -> float:
    """Images/s of forward + backward + optimizer step on one pre-made dense batch already on `device`."""
    tp = params.train[task]
    model, net = make_model(params, task, device, rt)
    opt, loss_fn = make_optimizer(model, tp), make_loss(TASKS[task].loss)
    x = torch.randn(tp.batch_size, len(train_channels(params, task)), *converted_shape(params, task)[1:], device=device)
    y = torch.rand(tp.batch_size, device=device).round()

    def run(k: int):
        for _ in range(k):
            with autocast(device, rt.amp):
                loss = loss_fn(net(x).float(), model.encode_target(y))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    run(warmup)  # cuDNN autotuning, allocator, compilation
    return best_rate(lambda: run(steps), tp.batch_size * steps, repeat, device)


def sparse_rate(params: Params, task: str, images, target, *, device, rt, repeat: int) -> float:
    """Images/s of e2e's own training epoch over SparseBatches resident on `device`, after one epoch of warm-up."""
    tp = params.train[task]
    model, net = make_model(params, task, device, rt)
    batches = SparseBatches(
        images,
        target,
        np.arange(len(images)),
        train_channels(params, task),
        batch_size=tp.batch_size,
        device=device,
        shuffle=True,
        seed=0,
        resident_max_gb=rt.resident_max_gb,
    )
    opt = make_optimizer(model, tp)
    sched, loss_fn = make_scheduler(opt, tp, len(batches)), make_loss(TASKS[task].loss)
    epoch = lambda: train_one_epoch(net, batches, opt, sched, loss_fn, device=device, amp=rt.amp)  # noqa: E731
    epoch()
    return best_rate(epoch, len(images), repeat, device)


# ---------------------------------------------------------------- the report


def ok(flag: bool) -> str:
    return "pass" if flag else "**FAIL**"


def table(rows, head=("measure", "measured", "target", "result")) -> list[str]:
    return [
        "| " + " | ".join(head) + " |",
        "|" + " --- |" * len(head),
        *("| " + " | ".join(str(v) for v in row) + " |" for row in rows),
        "",
    ]


def size_rows(one: dict) -> list[tuple]:
    n, size = one["n"], one["bytes"]
    dense, projected = n * DENSE_PER_JET, size / n * ALL_JETS
    linked = RAW_ALL + projected
    return [
        ("non-zero values per jet (8 channels)", f"{one['nnz'] / n:,.0f}", "", ""),
        ("converted size", f"{size / 1e6:,.1f} MB ({size / n / 1e3:.2f} kB/jet)", "", ""),
        (
            "dense float16 / converted",
            f"{dense / size:,.0f}x (dense {dense / 1e9:,.2f} GB)",
            ">= 20x",
            ok(dense / size >= 20),
        ),
        (f"seven files projected ({ALL_JETS:,} jets)", f"{projected / 1e9:.2f} GB", "", ""),
        ("raw 8.2 GB + converted, DVC cache linked", f"{linked / 2**30:.1f} GiB", "<= 64 GiB", ok(linked <= DISK)),
        (
            "raw + converted + DVC's cache copy of each",
            f"{2 * linked / 2**30:.1f} GiB",
            "<= 64 GiB",
            ok(2 * linked <= DISK),
        ),
    ]


def convert_rows(runs: list[dict], workers: int, base: dict) -> list[tuple]:
    old_ms = 1e3 * base["seconds"] / base["n"]
    rows = [
        (
            f"dense converter of {BASELINE}, 1 file: ms/jet (wall clock)",
            f"{old_ms:.3f} ({base['seconds']:.1f} s); "
            f"peak RSS {base['peak_sum'] / 1e9:.2f} GB; output {base['bytes'] / 1e9:.1f} GB",
            f"measured {OLD_MS_PER_JET} at the old occupancy",
            "",
        )
    ]
    for r in runs:
        label = f"{r['files']} file(s), {r['n']:,} jets, {n_workers(workers, r['files'])} worker process(es)"
        ms = 1e3 * r["seconds"] / r["n"]
        rows += [
            (
                f"{label}: ms/jet (wall clock)",
                f"{ms:.3f} ({r['seconds']:.1f} s)",
                f"<= {old_ms:.3f} (dense, same file)",
                ok(ms <= old_ms),
            ),
            (
                f"{label}: peak RSS of the process tree",
                f"{r['peak_sum'] / 1e9:.2f} GB (largest process {r['peak_one'] / 1e9:.2f} GB)",
                "< 1.5 GB",
                ok(r["peak_sum"] < RSS_MAX),
            ),
        ]
    one, two = runs
    speed, proc = (two["seconds"] / two["n"]) / (one["seconds"] / one["n"]), two["peak_one"] / one["peak_one"]
    return rows + [
        ("flat: ms/jet, 2 files / 1 file", f"{speed:.2f}x", f"<= {FLAT}x", ok(speed <= FLAT)),
        ("flat: largest process, 2 files / 1 file", f"{proc:.2f}x", f"<= {FLAT}x", ok(proc <= FLAT)),
    ]


def feed_table(args, params: Params, data) -> list[str]:
    """Per task: what CPU training consumes against what densification delivers, at the task's batch size."""
    rows = []
    for task in TASKS:
        tp, shape = params.train[task], (len(train_channels(params, task)), *converted_shape(params, task)[1:])
        if task == "jet_mass":
            (images, target), source = (data.images, data.target), f"the converted file ({len(data.images):,})"
        else:
            (images, target), source = fake_images(params, task, FAKE_N[task]), f"random ({FAKE_N[task]:,})"
        feed = densify_rate(images, target, train_channels(params, task), tp.batch_size, args.repeat)
        cpu = torch.device("cpu")
        train = ceiling_rate(params, task, device=cpu, rt=params.runtime, steps=CPU_STEPS, warmup=3, repeat=args.repeat)
        print(f"{task}: CPU training {train:,.0f} img/s, densification {feed:,.0f} img/s", flush=True)
        rows.append(
            (
                task,
                tp.model,
                tp.batch_size,
                " x ".join(map(str, shape)),
                source,
                f"{train:,.0f}",
                f"{feed:,.0f}",
                f"{feed / train:,.0f}x",
                f">= {FEED_MIN:.0f}x",
                ok(feed / train >= FEED_MIN),
            )
        )
    return table(
        rows,
        (
            "task",
            "model",
            "batch",
            "image",
            "sparse data (images)",
            "CPU training img/s",
            "densification img/s",
            "ratio",
            "target",
            "result",
        ),
    )


def gpu_table(args) -> list[str]:
    """presets/full.yaml models: the sparse path's training epoch against the model-only ceiling."""
    head = ("task", "model", "batch", "ceiling img/s", "sparse path img/s", "ratio", "target", "result")
    if not torch.cuda.is_available():
        return table([(t, "", "", "not measured (no GPU here)", "", "", f">= {GPU_MIN}", "") for t in TASKS], head)
    params, device, rows = load_params("full"), torch.device("cuda"), []
    rt = dataclasses.replace(params.runtime, compile=args.compile)
    for task in TASKS:
        tp, steps = params.train[task], GPU_STEPS
        images, target = fake_images(params, task, tp.batch_size * steps, seed=1)
        ceiling = ceiling_rate(params, task, device=device, rt=rt, steps=steps, warmup=steps, repeat=args.repeat)
        sparse = sparse_rate(params, task, images, target, device=device, rt=rt, repeat=args.repeat)
        print(f"{task}: GPU ceiling {ceiling:,.0f} img/s, sparse path {sparse:,.0f} img/s", flush=True)
        rows.append(
            (
                task,
                f"{tp.model} {dict(tp.model_kwargs)}",
                tp.batch_size,
                f"{ceiling:,.0f}",
                f"{sparse:,.0f}",
                f"{sparse / ceiling:.2f}",
                f">= {GPU_MIN}",
                ok(sparse / ceiling >= GPU_MIN),
            )
        )
    return table(rows, head)


def cpu_sections(args) -> list[str]:
    params = load_params(None, CONVERT)
    raw = raw_file(args.workdir, args.jets, params)
    base = baseline_run(args.workdir, raw, BASELINE)
    runs = [convert_run(args.workdir, raw, k, args.workers) for k in (1, 2)]
    shutil.rmtree(runs[1]["out"].parents[2])  # the 2-file output is only timed; the disk is worth more
    data = Converted(runs[0]["out"])
    rate = densify_rate(data.images, data.target, train_channels(params, "jet_mass"), 64, args.repeat)
    head = (
        "jet_mass, 4 x 125 x 125 float32, batch 64, shuffled, from the converted file",
        f"{rate:,.0f} img/s",
        f">= {DENSIFY_MIN:,} img/s",
        ok(rate >= DENSIFY_MIN),
    )
    return [
        "## 1. Size",
        "",
        f"`{raw.name}`: {args.jets:,} synthetic jets at the real occupancy, "
        f"{raw.stat().st_size / 1e9:.2f} GB raw, converted with params.yaml convert.jet_mass (8 channels, float16, "
        "clip 50); sizes are all of data/converted/jet_mass. While converting, .cache/convert holds as much again.",
        "",
        *table(size_rows(runs[0])),
        "## 2. Conversion",
        "",
        "e2e.stages.convert.main in a child process on a fresh root; file 2 is a hard link to "
        "file 1. Peak RSS: the child and all its descendants, sampled every 50 ms. The wall clock includes the "
        "sha256 of each file and the join.",
        "",
        *table(convert_rows(runs, args.workers, base)),
        "## 3. CPU densification",
        "",
        "SparseBatches on the CPU, shuffled: the best epoch of at least "
        f"{args.repeat} and 3 s. CPU training: forward + backward + Adam step of params.yaml's model on one random "
        f"batch, the best run of {CPU_STEPS} steps (at least {args.repeat} and 3 s). Random images have the real "
        "occupancy (e/gamma 4.7 % of energy pixels, quark/gluon 2 %).",
        "",
        *table([head]),
        *feed_table(args, params, data),
    ]


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return (
        f"{os.cpu_count()} cores ({cpu}), {psutil.virtual_memory().total / 2**30:.0f} GiB RAM, {gpu}; "
        f"torch {torch.__version__}, numpy {np.__version__}, Python {platform.python_version()}; "
        f"{dt.datetime.now():%Y-%m-%d %H:%M}; load average at the end {os.getloadavg()[0]:.1f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jets", type=int, default=FULL_JETS, help="jets in the file (default: a real-size file)")
    ap.add_argument("--workers", type=int, default=0, help="runtime.convert_workers (0: params.yaml's automatic)")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/e2e-scale"), help="generated files, kept between runs")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per rate (and 3 s); the best counts")
    ap.add_argument("--compile", action="store_true", help="GPU: torch.compile (presets/full.yaml's setting)")
    ap.add_argument("--gpu-only", action="store_true", help="only (4), the GPU rows")
    ap.add_argument("--out", type=Path, help="the report (default: bench/results/scale.md at full size)")
    ap.add_argument("--_convert", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--_files", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._convert:
        return convert_child(args._convert, args._files, args.workers)
    args.workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    sections = ([] if args.gpu_only else cpu_sections(args)) + [
        "## 4. GPU",
        "",
        f"presets/full.yaml models and batch sizes, bf16 autocast, channels_last, compile "
        f"{args.compile}; the best run of {GPU_STEPS} steps (at least {args.repeat} and 3 s) after as many of "
        "warm-up. Ceiling: the step on one pre-made dense batch on the GPU; sparse path: engine.train_one_epoch over "
        "SparseBatches resident on the GPU (random images at the real occupancy).",
        "",
        *gpu_table(args),
    ]
    results = ROOT / "bench" / "results"
    out = args.out or (
        results / "scale_gpu.md"
        if args.gpu_only
        else results / "scale.md"
        if args.jets == FULL_JETS
        else args.workdir / f"scale-{args.jets}.md"
    )  # a shrunken run never overwrites the results
    text = "\n".join(
        [
            "# The real datasets at their full size",
            "",
            f"Machine: {machine()}.",
            "",
            f"Command: `{' '.join(['python bench/scale.py', *sys.argv[1:]])}`; "
            f"{time.perf_counter() - t0:.0f} s, generation included when it happened.",
            "",
            *sections,
        ]
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text + f"\nwrote {out}")


if __name__ == "__main__":
    main()
