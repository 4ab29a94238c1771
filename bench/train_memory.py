"""Host memory of `e2e train` at the real datasets' full size, per task, and the GPU time per epoch it implies.

(1) Occupancy: a small sample of each dataset from the synthetic generator (real formats, real occupancy),
    converted by e2e.stages.convert: each event's non-zero count per channel.
(2) A full-size converted dataset (e2e.store.sparse) written directly: each event's per-channel counts drawn from
    that sample, at random positions with random values (minutes, where the generator would take hours),
    then the real split stage (e2e.stages.split).
(3) Per task, in a child process: `e2e train <task>` itself (e2e.cli.main) with params.yaml's model,
    runtime.device cpu and one epoch cut to --batches batches, training and validation (SparseBatches is
    patched to stop there; everything before the first batch, where the split's entries are gathered and
    kept resident, runs in full). Peak RSS: the child's ru_maxrss; the memory-mapped converted files' pages
    count in it (the kernel can drop them), so the peak without file-backed pages is sampled too.
(4) GPU time per epoch, projected: train images / the GPU throughput measured in
    bench/results/throughput_gpu.md (not measured here).

    python bench/train_memory.py                 # full size; writes bench/results/train_memory.md
    python bench/train_memory.py --scale 0.01    # quick check; its report goes to the workdir

The full-size data (~7.5 GB) goes to --workdir when given (kept, and reused by the next run), else to
.cache/bench/train_memory when that exists (reused), else to a temporary directory removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import yaml
from numpy.lib import format as npformat

from e2e.config import Paths, parse_params
from e2e.store.sparse import INDEX_DTYPE
from e2e.tasks import get_task

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("electron_photon", "quark_gluon", "jet_mass")
FULL = {"electron_photon": 498_000, "quark_gluon": 139_306, "jet_mass": 1_050_000}  # events at full size
SAMPLE = {"electron_photon": {"n_per_class": 1000}, "quark_gluon": {"n_jets": 1500}, "jet_mass": {"n_jets": 1400}}
CHUNK = 32768  # events generated at a time


# Sequential .npy writing, header first then rows appended: a write-mode memmap of a multi-GB array would
# keep every dirty page resident, appending through a file handle lets the kernel write back as it goes.
class NpyAppender:
    def __init__(self, path: Path, shape: tuple[int, ...], dtype):
        self.path, self.shape, self.dtype = path, shape, np.dtype(dtype)
        self.rows = 0
        self.file = open(path, "wb")
        header = {"descr": npformat.dtype_to_descr(self.dtype), "fortran_order": False, "shape": shape}
        npformat.write_array_header_1_0(self.file, header)

    def append(self, rows: np.ndarray) -> None:
        if rows.shape[1:] != self.shape[1:]:
            raise ValueError(f"{self.path}: row shape {rows.shape[1:]} != {self.shape[1:]}")
        self.file.write(np.ascontiguousarray(rows, dtype=self.dtype).data)  # .data: no tobytes() copy
        self.rows += len(rows)

    def __enter__(self) -> NpyAppender:
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is None:
            self.close()
        else:  # the caller is failing: release the handle, and leave the row-count check unraised
            self.file.close()

    def close(self) -> None:
        self.file.close()
        if self.rows != self.shape[0]:
            raise ValueError(f"{self.path}: wrote {self.rows} rows, header says {self.shape[0]}")


REUSED = ROOT / ".cache" / "bench" / "train_memory"


def base_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


# ---------------------------------------------------------------- (1) and (2): the data


def sample_counts(workdir: Path, dataset: str) -> tuple[np.ndarray, dict]:
    """(events, channels) non-zero counts of a converted synthetic sample, and its meta.json."""
    from e2e.stages import convert, download

    paths = Paths(workdir / "sample")
    out = paths.converted(dataset)
    if not (out / "meta.json").is_file():
        raw = base_params()
        raw["synthetic"][dataset].update(SAMPLE[dataset])
        params = parse_params(raw)
        download.main(params, dataset, paths)
        convert.main(params, dataset, paths)
    meta = json.loads((out / "meta.json").read_text())
    _, c, h, w = meta["shape"]
    offsets, index = np.load(out / "offsets.npy"), np.load(out / "index.npy")
    event = np.repeat(np.arange(meta["n"]), np.diff(offsets))
    return np.bincount(event * c + index // (h * w), minlength=meta["n"] * c).reshape(-1, c), meta


def write_images(out: Path, counts: np.ndarray, hw: int, dtype: str, rng: np.random.Generator) -> int:
    """values.npy, index.npy, offsets.npy of events whose channel k has counts[i, k] entries at random positions."""
    n, c = counts.shape
    per_event = counts.sum(1)
    nnz = int(per_event.sum())
    np.save(out / "offsets.npy", np.concatenate([[0], np.cumsum(per_event)]).astype(np.int64))
    with (
        NpyAppender(out / "values.npy", (nnz,), dtype) as values,
        NpyAppender(out / "index.npy", (nnz,), INDEX_DTYPE) as index,
    ):
        for s in range(0, n, CHUNK):
            part = counts[s : s + CHUNK]
            channel = np.repeat(np.tile(np.arange(c, dtype=INDEX_DTYPE), len(part)), part.ravel())
            index.append(channel * hw + rng.integers(0, hw, len(channel), dtype=INDEX_DTYPE))
            values.append(rng.uniform(0.01, 10.0, len(channel)).astype(np.float32))
    return nnz


def full_size(workdir: Path, dataset: str, n: int, seed: int = 0) -> Path:
    """workdir/full/data/converted/<dataset> with n events; reused when its meta.json (written last) says n."""
    out = Paths(workdir / "full").converted(dataset)
    if (out / "meta.json").is_file() and json.loads((out / "meta.json").read_text())["n"] == n:
        return out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    sample, meta = sample_counts(workdir, dataset)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    counts = sample[rng.integers(0, len(sample), n)]
    np.save(out / "counts.npy", counts.astype(np.int32))  # the report's resident-entry figures, not read by e2e
    _, c, h, w = meta["shape"]
    nnz = write_images(out, counts, h * w, meta["dtype"], rng)
    if get_task(dataset).is_classification:  # e/gamma: photons then electrons, as the converted files are
        target = (np.arange(n) >= n // 2) if dataset == "electron_photon" else rng.integers(0, 2, n)
    else:
        target = rng.uniform(*base_params()["synthetic"][dataset]["m_range"], n)
    np.save(out / "target.npy", target.astype(np.float32))
    for key in meta["observers"]:
        np.save(out / f"{key}.npy", rng.uniform(0, 1000, n).astype(np.float32))
    meta.update(
        n=n,
        nnz=nnz,
        shape=[n, c, h, w],
        rows_per_file=[n],
        truth=[],
        nonfinite_zeroed=0,
        sources=[{"file": f"bench/train_memory.py seed {seed}", "sha256": ""}],
    )
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    print(
        f"wrote {out}: {n:,} events, {nnz:,} entries, {disk_bytes(out) / 1e9:.2f} GB in "
        f"{time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    return out


def disk_bytes(path: Path) -> int:
    return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file())


def make_split(workdir: Path, task: str, n: int) -> dict[str, int]:
    """e2e.stages.split's stage on the full-size data; reused when it splits n events."""
    from e2e.stages import split

    paths = Paths(workdir / "full")
    done = paths.splits(task) / "split.json"
    if not done.is_file() or sum(v["n"] for v in json.loads(done.read_text()).values()) != n:
        split.main(parse_params(base_params()), task, paths)
    return {p: v["n"] for p, v in json.loads(done.read_text()).items()}


# ---------------------------------------------------------------- (3): training, in a child process


def child(root: Path, params_path: Path, task: str, batches: int, result: Path) -> None:
    """`e2e train <task>` with every epoch and validation pass cut to `batches` batches."""
    from e2e.cli import main
    from e2e.runtime.batches import SparseBatches

    imported = psutil.Process().memory_info().rss
    whole = SparseBatches.__iter__
    SparseBatches.__iter__ = lambda self: itertools.islice(whole(self), batches)
    SparseBatches.__len__ = lambda self: min(batches, -(-self.n // self.batch_size))
    t0 = time.perf_counter()
    main(["--params", str(params_path), "--root", str(root), "train", task])
    result.write_text(
        json.dumps(
            {
                "seconds": time.perf_counter() - t0,
                "rss_imported": imported,
                "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            }
        )
    )


def train_params(workdir: Path, task: str) -> Path:
    """params.yaml with one epoch of `task` on the CPU."""
    raw = base_params()
    raw["train"][task]["epochs"] = 1
    raw["runtime"]["device"] = "cpu"
    path = workdir / f"params-{task}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def measure(workdir: Path, task: str, batches: int, limit: float) -> dict:
    """Run the child, sampling its RSS without file-backed pages every 50 ms; killed past `limit` bytes."""
    result = workdir / f"result-{task}.json"
    result.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        __file__,
        "--_child",
        task,
        "--_root",
        str(workdir / "full"),
        "--_params",
        str(train_params(workdir, task)),
        "--_result",
        str(result),
        "--batches",
        str(batches),
    ]
    proc, peak_anon, killed = psutil.Popen(cmd, cwd=workdir), 0, False
    while proc.poll() is None:
        with contextlib.suppress(psutil.Error):
            m = proc.memory_info()
            peak_anon = max(peak_anon, m.rss - m.shared)  # shared: file-backed and shared-memory pages
        if peak_anon > limit:
            proc.kill()
            killed = True
        time.sleep(0.05)
    if killed:
        return {"killed": True, "peak_anon": peak_anon}
    if proc.returncode:
        sys.exit(f"{task}: training failed ({proc.returncode}): {' '.join(cmd)}")
    return {**json.loads(result.read_text()), "peak_anon": peak_anon, "killed": False}


def resident_bytes(workdir: Path, task: str, dataset: str) -> tuple[float, float, int]:
    """Mean non-zero values per event (the model's channels, all channels) and the bytes of the train + val
    entries of the model's channels: what SparseBatches keeps resident (values + int32 index)."""
    out, paths = Paths(workdir / "full").converted(dataset), Paths(workdir / "full")
    counts, meta = np.load(out / "counts.npy"), json.loads((out / "meta.json").read_text())
    chosen = base_params()["train"][task].get("channels")
    model = counts[:, chosen] if chosen is not None else counts
    rows = np.concatenate([np.load(paths.splits(task) / f"{p}.npy") for p in ("train", "val")])
    per_entry = np.dtype(meta["dtype"]).itemsize + np.dtype(INDEX_DTYPE).itemsize
    return float(model.sum(1).mean()), float(counts.sum(1).mean()), int(model[rows].sum()) * per_entry


# ---------------------------------------------------------------- (4): GPU time per epoch, projected


def gpu_rates(compiled: bool) -> tuple[str, str, dict[str, dict[str, str]]]:
    """The title, first line and rows (by task) of the table in bench/results/throughput_gpu.md measured with
    or without torch.compile."""
    text = (ROOT / "bench" / "results" / "throughput_gpu.md").read_text()
    title = "# Training throughput (GPU, torch.compile)" if compiled else "# Training throughput (GPU)"
    lines = text.split(title + "\n", 1)[1].split("\n# ", 1)[0].strip().splitlines()
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines if line.startswith("|")]
    return title.lstrip("# "), lines[0], {r[0]: dict(zip(rows[0], r)) for r in rows[2:]}


def rate(cell: str) -> float:
    return float(cell.replace(",", ""))


def projection(train_n: dict[str, int]) -> list[str]:
    preset = yaml.safe_load((ROOT / "presets" / "full.yaml").read_text())
    title, where, rows = gpu_rates(bool(preset["runtime"].get("compile")))
    compiled = json.dumps(bool(preset["runtime"].get("compile")))
    out = [
        f'Source: `bench/results/throughput_gpu.md`, table "{title}" (presets/full.yaml sets runtime.compile '
        f"{compiled}): {where.rstrip('.')}. That is an H100 with presets/full.yaml's models (the "
        "reference widths) on random images about 2 % non-zero (bench/throughput.py), not this machine. "
        "Seconds per epoch = train images / images per second: the validation pass of each epoch, evaluation "
        "and compile warm-up are not included. (b) is our training loop at a larger batch than the preset's; "
        "(c) the reference notebooks' loop (fp32, a DataLoader, one host-to-device copy per batch) at the "
        "preset's batch. Our loop at the preset's batch was not measured: it is expected between the two.",
        "",
        "| task | model (preset) | train images | (b) our loop: img/s (batch) | s/epoch | (c) reference loop: "
        "img/s (batch) | s/epoch | epochs (preset) | all epochs, (b) to (c) |",
        "| --- " * 9 + "|",
    ]
    for task, n in train_n.items():
        r, tp = rows[task], preset["train"][task]
        b, c = rate(r["(b) ours img/s"]), rate(r["(c) reference img/s"])
        kwargs = "".join(f", {k} {v}" for k, v in tp.get("model_kwargs", {}).items())
        out.append(
            f"| {task} | {r['model']}{kwargs} | {n:,} | {b:,.0f} ({r['batch (a, b)']}) "
            f"| {n / b:,.1f} | {c:,.0f} ({tp['batch_size']}) | {n / c:,.0f} | {tp['epochs']} | "
            f"{tp['epochs'] * n / b / 60:,.1f} to {tp['epochs'] * n / c / 60:,.0f} min |"
        )
    return out


# ---------------------------------------------------------------- the report


def gb(x: float) -> str:
    return f"{x / 1e9:.2f} GB"


def memory_table(rows: list[dict]) -> list[str]:
    out = [
        "| task | events | converted on disk | non-zero values per event: model's channels (all) | split train / "
        "val / test | train + val entries resident (model's channels) | peak RSS | peak RSS without file-backed "
        "pages | RSS after imports | wall clock |",
        "| --- " * 10 + "|",
    ]
    for r in rows:
        s, m = r["split"], r["run"]
        head = (
            f"| {r['task']} | {r['n']:,} | {gb(r['disk'])} | {r['nnz_model']:.0f} ({r['nnz_all']:.0f}) | "
            f"{s['train']:,} / {s['val']:,} / {s['test']:,} | {gb(r['resident'])} | "
        )
        if m["killed"]:
            out.append(head + f"killed: over {gb(m['peak_anon'])} without file-backed pages | | | |")
        else:
            out.append(
                head + f"{gb(m['ru_maxrss'])} | {gb(m['peak_anon'])} | {gb(m['rss_imported'])} | {m['seconds']:.0f} s |"
            )
    return out


def report(args, rows: list[dict], seconds: float, workdir_note: str) -> str:
    from scale import machine  # bench/scale.py: imports torch, so only here

    sample = ", ".join(
        f"{d}: {next(iter(v.values())):,}" + (" per class" if d == "electron_photon" else "") for d, v in SAMPLE.items()
    )
    full = [r for r in rows if not r["run"]["killed"]]
    return "\n".join(
        [
            "# Host memory of training at full size, and GPU time per epoch (projected)",
            "",
            f"Machine: {machine()}; `nproc` {len(os.sched_getaffinity(0))}.",
            "",
            f"Command: `{' '.join(['nice -n 19 python bench/train_memory.py', *sys.argv[1:]])}`; {seconds:.0f} s, "
            f"data generation included where it happened. Memory limit of the child: {args.max_gb:.1f} GB without "
            "file-backed pages.",
            "",
            "## Host memory of `e2e train` (measured)",
            "",
            f"Data: per event, each channel's non-zero count is drawn from a converted synthetic sample ({sample} "
            "events; the generator's occupancy is the real files'), at random positions with random values, written "
            f"directly in the converted (sparse) format at full size: {workdir_note}. Split by e2e.stages.split with "
            "params.yaml's fractions. Training: `e2e train <task>` (e2e.cli.main) in a child process with "
            "params.yaml's "
            f"model and batch size, runtime.device cpu, one epoch cut to {args.batches} training and {args.batches} "
            "validation batches; everything before the first batch (the split's entries gathered and kept resident, "
            "the channel statistics of the train split) runs in full. Peak RSS: the child's ru_maxrss; it includes "
            "the pages of the memory-mapped converted files the child read, which the kernel can drop under memory "
            "pressure. Without file-backed pages: RSS minus shared pages, sampled every 50 ms.",
            "",
            *memory_table(rows),
            "",
            "On a CPU the split's entries stay in host memory for the whole run. On a GPU (presets/full.yaml: "
            "runtime.resident_max_gb 40) they are gathered in host memory the same way, then moved to the GPU; the "
            "figures above include that gathering. The CUDA context, and evaluation (a separate stage, the test "
            "split), are not measured here.",
            "",
            "## GPU time per epoch (projected from measured throughput, not measured)",
            "",
            *projection({r["task"]: r["split"]["train"] for r in full}),
            "",
        ]
    )


def run_task(workdir: Path, task: str, args) -> dict:
    dataset = get_task(task).dataset
    n = max(1000, round(FULL[dataset] * args.scale))
    converted = full_size(workdir, dataset, n)
    split = make_split(workdir, task, n)
    nnz_model, nnz_all, resident = resident_bytes(workdir, task, dataset)
    print(f"{task}: training {args.batches} batches in a child process", flush=True)
    run = measure(workdir, task, args.batches, args.max_gb * 1e9)
    print(f"{task}: {run}", flush=True)
    return {
        "task": task,
        "n": n,
        "disk": disk_bytes(converted),
        "split": split,
        "nnz_model": nnz_model,
        "nnz_all": nnz_all,
        "resident": resident,
        "run": run,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the full event counts (default 1)")
    ap.add_argument("--batches", type=int, default=20, help="training and validation batches run (default 20)")
    ap.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    ap.add_argument("--workdir", type=Path, help="where the data go, kept for the next run (see above)")
    ap.add_argument(
        "--max-gb",
        type=float,
        default=0.9 * psutil.virtual_memory().available / 1e9,
        help="kill a child whose RSS without file-backed pages passes this (default: 90%% of the "
        "memory available at the start)",
    )
    ap.add_argument("--out", type=Path, help="the report (default: bench/results/train_memory.md at full size)")
    for hidden in ("--_child", "--_root", "--_params", "--_result"):
        ap.add_argument(hidden, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        return child(Path(args._root), Path(args._params), args._child, args.batches, Path(args._result))
    workdir = args.workdir or (REUSED if REUSED.is_dir() else Path(tempfile.mkdtemp(prefix="e2e-train-memory-")))
    temporary = args.workdir is None and workdir != REUSED
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        rows = []
        for task in args.tasks:
            rows.append(run_task(workdir, task, args))
            if rows[-1]["run"]["killed"]:
                print(f"{task}: over {args.max_gb:.1f} GB without file-backed pages; stopped", flush=True)
                break
        note = (
            f"{disk_bytes(workdir) / 1e9:.1f} GB on disk in all, the samples included, in {workdir} "
            f"({'removed at the end' if temporary else 'kept'})"
        )
        text = report(args, rows, time.perf_counter() - t0, note)
    finally:
        if temporary:
            shutil.rmtree(workdir, ignore_errors=True)
    out = args.out or (
        ROOT / "bench" / "results" / "train_memory.md"
        if args.scale == 1.0
        else workdir / f"train_memory-{args.scale}.md"
    )  # a shrunken run never overwrites the results
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text + f"\nwrote {out}")


if __name__ == "__main__":
    main()
