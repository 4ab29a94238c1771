"""Reading a full-size, gzip-chunked e/gamma HDF5 file in row batches: how often each chunk is decompressed and
what it costs, with h5py's default chunk cache and with the one e2e's reader sizes (e2e.sources.hdf5_cache).

The file: 249,000 crops (32, 32, 2) float32, as one real e/gamma file, written by h5py with gzip (level 4) and
no chunk shape given, so h5py picks it: (7782, 2, 2, 1), 512 chunks of 125 kB to a row of chunks. The real files'
chunk shape is not known here; this is the guess tests/support/real_layout.py states. Crops come from the synthetic
generator at the real occupancy (24,900 generated, each tenth of the file a fresh permutation of them, as
generating all 249,000 takes ~10 minutes on 2 cores); cached in bench/work/ (git-ignored).

Each method runs in a fresh subprocess reading every row through e2e's HDF5 reader in batches of
convert.electron_photon.batch_rows (params.yaml), and reports its time, peak RSS and the bytes HDF5 read from
the file: chunks loaded from the file are chunks decompressed, so bytes read / stored bytes is how many times
each chunk was decompressed on average.

    python bench/hdf5_cache.py           # writes bench/results/hdf5_cache.md
    python bench/hdf5_cache.py --quick   # 24,900 rows, a smoke run
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "work"
RESULTS = ROOT / "bench" / "results" / "hdf5_cache.md"
UNIQUE = 24_900


def write_file(path: Path, rows: int) -> None:
    import h5py

    from e2e.sources.synthetic.egamma import make_images, sample_latents

    rng = np.random.default_rng(2024)
    crops = make_images(rng, sample_latents(rng, UNIQUE, False))
    tmp = path.with_suffix(".tmp")
    with h5py.File(tmp, "w") as f:
        x = f.create_dataset("X", shape=(rows, 32, 32, 2), dtype="float32", compression="gzip")
        f.create_dataset("y", data=np.zeros(rows, np.float32), compression="gzip")
        for start in range(0, rows, UNIQUE):
            n = min(UNIQUE, rows - start)
            x[start : start + n] = crops[rng.permutation(UNIQUE)[:n]]
    tmp.replace(path)


class CountingFile(io.FileIO):
    read_bytes = 0

    def readinto(self, buffer) -> int:
        n = super().readinto(buffer)
        self.read_bytes += n or 0
        return n


def measure(path: Path, method: str, batch_rows: int) -> dict:
    """In this process: read every row of `path` through e2e's reader, with the chunk cache of `method`."""
    import h5py

    from e2e.sources import hdf5_reader, readers
    from e2e.sources.registry import DATASETS

    opened, real_file = [], h5py.File

    def counting(name, mode="r", **kwargs):
        opened.append(CountingFile(name, "rb"))
        return real_file(opened[-1], mode, **kwargs)

    h5py.File = counting
    if method == "default":
        hdf5_reader.with_chunk_cache = lambda file, name: file[name]  # h5py's own cache
    start = time.perf_counter()
    reader = readers.open_reader(DATASETS["electron_photon"], path)
    rows = sum(len(batch.target) for batch in reader.batches(batch_rows))
    cache = reader.x.id.get_access_plist().get_chunk_cache()
    stored = reader.x.id.get_storage_size()
    reader.close()
    return {
        "method": method,
        "rows": rows,
        "s": time.perf_counter() - start,
        "read": opened[0].read_bytes,
        "stored": stored,
        "cache_bytes": cache[1],
        "cache_slots": cache[0],
        "w0": cache[2],
        "rss_mb": peak_rss_mb(),
    }


def peak_rss_mb() -> float:
    """VmHWM: unlike ru_maxrss, which Linux carries across exec, it is this process's own peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def run(path: Path, method: str, batch_rows: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--measure", method, "--file", str(path), "--batch-rows", str(batch_rows)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(results: list[dict], path: Path, batch_rows: int, command: str) -> str:
    import h5py

    with h5py.File(path, "r") as f:
        chunks, compression = f["X"].chunks, f["X"].compression
    size = path.stat().st_size
    lines = [
        "# HDF5 chunk cache: e/gamma file read in row batches",
        "",
        f"Machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, Python "
        f"{platform.python_version()}, h5py {h5py.__version__} (HDF5 {h5py.version.hdf5_version}); "
        f"{dt.datetime.now():%Y-%m-%d %H:%M}; load average at the end {os.getloadavg()[0]:.1f}.",
        "",
        f"File: {results[0]['rows']:,} rows of X (32, 32, 2) float32 ({results[0]['rows'] * 8192 / 1e9:.2f} GB of "
        f"pixels), {compression} chunks {chunks}, {size / 2**20:.0f} MiB on disk (the real files: 115 and 123 MiB "
        f"for 249,000 rows). Read through e2e's HDF5 reader in batches of {batch_rows} rows "
        "(convert.electron_photon.batch_rows); each method in a fresh process.",
        "",
        "| chunk cache | bytes, slots, w0 | s | rows/s | bytes read / stored (decompressions per chunk) "
        "| peak RSS (MB) |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    names = {"default": "h5py default", "sized": "e2e: one row of chunks"}
    for r in results:
        lines.append(
            f"| {names[r['method']]} | {r['cache_bytes'] / 2**20:.1f} MiB, {r['cache_slots']:,}, "
            f"{r['w0']:g} | {r['s']:.1f} | {r['rows'] / r['s']:,.0f} | {r['read'] / r['stored']:.2f} | "
            f"{r['rss_mb']:,.0f} |"
        )
    default, sized = results
    lines += [
        "",
        f"Sizing the cache saves {1 - sized['s'] / default['s']:.0%} of the reading time; each chunk is "
        f"decompressed {sized['read'] / sized['stored']:.2f} times instead of "
        f"{default['read'] / default['stored']:.2f} (bytes read include the file's metadata and y).",
        "",
        f"Command: `{command}`",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--measure", choices=["default", "sized"])
    parser.add_argument("--file", type=Path)
    parser.add_argument("--batch-rows", type=int)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.file, args.measure, args.batch_rows)))
        return
    rows = UNIQUE if args.quick else 249_000
    path = WORK / f"egamma_chunked_{rows}.hdf5"
    if not path.exists():
        WORK.mkdir(parents=True, exist_ok=True)
        write_file(path, rows)
    batch_rows = yaml.safe_load((ROOT / "params.yaml").read_text())["convert"]["electron_photon"]["batch_rows"]
    results = [run(path, method, batch_rows) for method in ("default", "sized")]
    text = report(results, path, batch_rows, "python bench/hdf5_cache.py" + (" --quick" if args.quick else ""))
    print(text)
    if not args.quick:
        RESULTS.write_text(text)


if __name__ == "__main__":
    main()
