"""Stage `download@<dataset>`: produce data/raw/<dataset> from the source named by `data.source`.

- `synthetic`: the toy generator writes files in the exact real formats;
- `cernbox`: each share listed, then the registry's files fetched wherever they sit, or the share's archive
  (e2e.sources.shares, by `download.mode`): resumable, sha256-verified;
- anything else: a directory that already holds the real files, verified and hardlinked in.

data/raw/<dataset> is built in a temporary sibling and renamed into place, so it only ever appears
complete. Partial downloads live in .cache/partial/<dataset>/ instead: `dvc repro` deletes a stage's
outputs before running it, and a 300 MB file cut at 90% should resume, not restart.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import sys
from pathlib import Path

from e2e.config import DownloadParams, Params, Paths
from e2e.errors import E2EError
from e2e.sources import shares
from e2e.sources.fetch import UNKNOWN, Checksum, sha256_file
from e2e.sources.registry import Dataset, RawFile, get_dataset, select_files
from e2e.store.atomic import atomic_path


def main(params: Params, dataset: str, paths: Paths) -> None:
    spec = _dataset(dataset)
    # only the chosen files, from here on
    spec = dataclasses.replace(spec, files=select_files(spec, params.files_of(dataset)))
    out = paths.raw(dataset)
    source = params.data.source
    if source == "synthetic":
        from e2e.sources import synthetic  # only this source needs the generator and its imports

        with atomic_path(out, is_dir=True) as tmp:
            synthetic.generate(dataset, tmp, params.synthetic.get(dataset, {}), seed=params.data.seed, files=spec.files)
    elif source == "cernbox":
        _assemble(out, download_files(spec, params.download, paths))
        # kept until now so that a failure above never costs a download
        shutil.rmtree(partial_dir(paths, dataset), ignore_errors=True)
    else:
        _assemble(out, verify_local(spec, _local_dir(source, paths), paths))
    files = sorted(out.iterdir())
    print(
        f"{dataset} from {source}: {len(files)} file(s), {sum(f.stat().st_size for f in files) / 1e6:.1f} MB in {out}"
    )


def partial_dir(paths: Paths, dataset: str) -> Path:
    return paths.work("partial", dataset)


def checksum_file(paths: Paths, dataset: str) -> Path:
    return paths.root / "checksums" / f"{dataset}.sha256"


def download_files(spec: Dataset, dl: DownloadParams, paths: Paths) -> dict[str, Path]:
    """Fetch and verify every file of the dataset (e2e.sources.shares); return file name -> verified .part file."""
    sumfile = checksum_file(paths, spec.name)
    sums = read_checksums(sumfile)
    wants = [
        shares.Want(f, *_expected(f, sums, sumfile), partial_dir(paths, spec.name) / f"{f.name}.part")
        for f in spec.files
    ]

    def record(file: RawFile, got: Checksum) -> None:
        if _expected(file, sums, sumfile)[0] == UNKNOWN:
            record_checksum(sumfile, file.name, got)
            print(
                f"recorded sha256 of {file.name} in {sumfile}: commit that file so later downloads "
                "are verified against it",
                file=sys.stderr,
            )

    job = shares.Job(spec, get_dataset(spec.name).files, dl, partial_dir(paths, spec.name), record)
    shares.fetch_dataset(job, wants)
    return {w.file.name: w.part for w in wants}


def verify_local(spec: Dataset, src_dir: Path, paths: Paths) -> dict[str, Path]:
    """Check that `src_dir` holds every file of the dataset, non-empty and matching known checksums."""
    names = [f.name for f in spec.files]
    if not src_dir.is_dir():
        raise E2EError(
            f"data.source: {src_dir} is not a directory; expected 'synthetic', 'cernbox' or "
            f"a directory holding {', '.join(names)}"
        )
    missing = [n for n in names if not (src_dir / n).is_file()]
    if missing:
        raise E2EError(f"{src_dir}: missing {', '.join(missing)} (dataset {spec.name} needs {', '.join(names)})")
    sumfile = checksum_file(paths, spec.name)
    sums = read_checksums(sumfile)
    for file in spec.files:
        path = src_dir / file.name
        expect, origin = _expected(file, sums, sumfile)
        size = path.stat().st_size
        if size == 0 or (expect.size is not None and size != expect.size):
            raise E2EError(
                f"{path}: {size} bytes, expected {expect.size or 'a non-empty file'}"
                + (f" (from {origin})" if expect.size else "")
            )
        if expect.sha256 and (digest := sha256_file(path)) != expect.sha256:
            raise E2EError(f"{path}: sha256 {digest} does not match {expect.sha256} from {origin}")
    return {n: src_dir / n for n in names}


def read_checksums(path: Path) -> dict[str, Checksum]:
    """Parse `<sha256>  <name>  <size>` lines (size optional, so plain sha256sum output also reads)."""
    if not path.exists():
        return {}
    sums = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if (
            len(fields) not in (2, 3)
            or not re.fullmatch(r"[0-9a-fA-F]{64}", fields[0])
            or (len(fields) == 3 and not fields[2].isdigit())
        ):
            raise E2EError(f"{path}:{number}: expected '<sha256>  <file name>  <size>', found {line.strip()!r}")
        sums[fields[1].lstrip("*")] = Checksum(fields[0].lower(), int(fields[2]) if len(fields) == 3 else None)
    return sums


def record_checksum(path: Path, name: str, got: Checksum) -> None:
    sums = read_checksums(path) | {name: got}
    lines = [f"{c.sha256}  {n}" + (f"  {c.size}" if c.size is not None else "") for n, c in sorted(sums.items())]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def _expected(file: RawFile, sums: dict[str, Checksum], sumfile: Path) -> tuple[Checksum, str]:
    if file.sha256 or file.size is not None:
        return Checksum(file.sha256, file.size), "the dataset registry"
    return sums.get(file.name, UNKNOWN), str(sumfile)


def _assemble(out: Path, files: dict[str, Path]) -> None:
    """Hardlink verified files into a temporary sibling of `out`, then rename it into place."""
    with atomic_path(out, is_dir=True) as tmp:
        for name, src in files.items():
            _link_or_copy(src, tmp / name)


def _link_or_copy(src: Path, dest: Path) -> None:
    try:
        os.link(src, dest)  # same inode: no second copy of hundreds of MB
    except OSError:  # another filesystem (EXDEV) or one without hardlinks
        shutil.copyfile(src, dest)


def _local_dir(source: str, paths: Paths) -> Path:
    path = Path(source).expanduser()
    return path if path.is_absolute() else paths.root / path


def _dataset(name: str) -> Dataset:
    try:
        return get_dataset(name)
    except KeyError as exc:
        raise E2EError(exc.args[0]) from None
