"""The default electron/photon model, trained on the synthetic default, applied by `e2e predict` to real crops.

The 200 real crops of ../shared/realdata (energy channel only) are written in the real IMGCROPS layout with a
zero time channel, as the README of the sample says to, and `e2e predict electron_photon` scores them with
the pipeline's model (models/electron_photon/model.pt, from `dvc repro`). ROC-AUC electron vs photon on all
200, on the calibration half and on the held-out half (the split of bench/realism.py), with 95 % bootstrap
intervals. For comparison, the same model on fresh synthetic crops, with their time channel and with it set
to zero: what the missing time costs, apart from the synthetic-to-real difference.

    python bench/realism_model.py               # writes bench/results/realism_model.md
    python bench/realism_model.py --model models/electron_photon/model.pt --realdata PATH
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pyarrow.parquet as pq
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import realism  # noqa: E402  (bench/ is not a package)
from realism_classes import N_BOOT, auc_interval  # noqa: E402

from e2e.inference import predict  # noqa: E402

ROOT = realism.ROOT


def write_crops(path: Path, energy: np.ndarray, time: np.ndarray, labels: np.ndarray) -> Path:
    with h5py.File(path, "w") as f:
        f["X"] = np.stack([energy, time], axis=-1).astype(np.float32)
        f["y"] = labels.astype(np.float32)
    return path


def scores(model: Path, h5: Path) -> tuple[np.ndarray, np.ndarray]:
    out = h5.with_suffix(".parquet")
    predict.main("electron_photon", [h5], out, model, backend="torch", device_name="cpu")
    table = pq.read_table(out)
    return table["truth"].to_numpy(), table["prediction"].to_numpy()


def locked_md5(lock: Path, rel: str) -> str | None:
    """The md5 dvc.lock records for the output at `rel` (a path relative to the repository), if any."""
    if not lock.is_file():
        return None
    stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
    return next((o["md5"] for st in stages.values() for o in st.get("outs", []) if o.get("path") == rel), None)


def provenance(model: Path, shown: Path, lock: Path = ROOT / "dvc.lock") -> str:
    """Which model the figures are of: its md5, and whether it is the one dvc.lock records. Training is not
    bit-identical across CPUs (docs/reproducibility.md), so a model `dvc repro` made on another machine is not
    the committed one, and it scores the real crops differently."""
    with open(model, "rb") as f:
        md5 = hashlib.file_digest(f, "md5").hexdigest()
    locked = locked_md5(lock, shown.as_posix())
    if locked is None:
        return f"md5 {md5}; {lock.name} records no such output"
    if locked == md5:
        return f"md5 {md5}, the one {lock.name} records"
    return f"md5 {md5}, NOT the one {lock.name} records, {locked}: trained on another machine or by other code"


def report(model: Path, shown: Path, realdata: Path, n_per_class: int, seed: int) -> list[str]:
    real = realism.real_crops(realdata)
    rows = ["| crops | n | ROC-AUC electron vs photon [95 %] |", "| --- | ---: | --- |"]
    with tempfile.TemporaryDirectory() as tmp:
        for part in ("all", "calibration", "held_out"):
            x, y = real[part]
            truth, pred = scores(model, write_crops(Path(tmp) / f"real_{part}.hdf5", x, np.zeros_like(x), y))
            rows.append(f"| real, {part.replace('_', '-')} (time zero) | {len(y)} | {auc_interval(truth, pred)} |")
        energy, time, y = realism.synthetic_crops(n_per_class, seed)
        for name, t in (("with time", time), ("time zero", np.zeros_like(time))):
            truth, pred = scores(model, write_crops(Path(tmp) / f"synthetic_{name[:4]}.hdf5", energy, t, y))
            rows.append(f"| synthetic, fresh ({name}) | {len(y)} | {auc_interval(truth, pred)} |")
    return [
        "# The default electron/photon model on the real crops",
        "",
        f"Command: `python bench/realism_model.py --model {shown} --n-per-class {n_per_class} --seed {seed}`. "
        f"Machine: {realism.machine()}.",
        f"Model: {shown}, trained on the synthetic default; {provenance(model, shown)}. "
        f"Real: {realdata.name}, energy channel, time set to zero; halves as in bench/realism.py "
        f"(default_rng({realism.SPLIT_SEED}) per class). "
        f"95 % bootstrap intervals ({N_BOOT} resamples). Target (issue 23): real AUC at least 0.70.",
        "",
        *rows,
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "electron_photon" / "model.pt")
    parser.add_argument("--realdata", type=Path, default=realism.REAL_EG)
    parser.add_argument("--n-per-class", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=23)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "realism_model.md")
    args = parser.parse_args(argv)
    for path, what in ((args.model, "model (run dvc repro)"), (args.realdata, "real crops (pass --realdata)")):
        if not path.is_file():
            print(f"error: {path}: {what} not found", file=sys.stderr)
            return 2
    model = args.model.resolve()
    shown = model.relative_to(ROOT) if model.is_relative_to(ROOT) else model
    realism.write_report(args.out, report(model, shown, args.realdata, args.n_per_class, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
