"""`data.source: cernbox`: find each wanted registry file in its CERNBox share and fetch it, by `download.mode`:

- files: list every share (WebDAV PROPFIND, e2e.sources.webdav), find each file by name wherever it sits,
  and fetch each one on its own (resumable, sha256-verified, only the files selected);
- archive: fetch each share whole as its archive (e2e.sources.archive) and take the wanted files out of it;
- auto (the default): as files, but a share that refuses to be listed, or a file refused on its own, is
  fetched as the share's archive instead, and one line says so.

The shares are listed before anything is downloaded, so a missing file or a size that disagrees with the
registry stops the stage at once with one line, having fetched nothing.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from e2e.config import DownloadParams
from e2e.errors import E2EError
from e2e.sources import archive
from e2e.sources.fetch import UNKNOWN, Checksum, Refused, fetch, verify
from e2e.sources.registry import Dataset, RawFile
from e2e.sources.webdav import Entry, ListingRefused, list_share, share_url

SHOWN = 12  # names listed in a message before "and N more"


@dataclass(frozen=True)
class Want:
    file: RawFile
    expect: Checksum  # what the registry or checksums/<dataset>.sha256 knows of it (UNKNOWN if nothing)
    origin: str  # where `expect` comes from, for messages
    part: Path  # where the verified file is left


@dataclass(frozen=True)
class Job:
    spec: Dataset  # its files: the selected ones
    registry: tuple[RawFile, ...]  # every file of the dataset, to name the files a share holds beyond them
    dl: DownloadParams
    workdir: Path  # partial downloads, kept across runs
    record: Callable[[RawFile, Checksum], None]  # called with each verified file's checksum


def fetch_dataset(job: Job, wants: list[Want]) -> None:
    """Fetch every wanted file into its part, verified."""
    by_share: dict[str, list[Want]] = defaultdict(list)
    for want in wants:
        by_share[want.file.share].append(want)
    listings = {} if job.dl.mode == "archive" else _listings(job, list(by_share))
    located = _locate_all(job, by_share, listings)
    for share, share_wants in by_share.items():
        if share not in listings:
            _from_archive(job, share, share_wants)
            continue
        for i, want in enumerate(share_wants):
            try:
                job.record(want.file, _fetch_listed(job, want, share, located[want.file.name]))
            except Refused as exc:
                _fall_back(job, exc)
                _from_archive(job, share, share_wants[i:])
                break


def _fetch_listed(job: Job, want: Want, share: str, entry: Entry) -> Checksum:
    expect, origin = want.expect, want.origin
    if expect.size is None and entry.size is not None:
        expect, origin = expect._replace(size=entry.size), f"{origin}; the size from the share's listing"
    return fetch(share_url(job.dl.base_url, share, entry.path), want.part, job.dl, expect, origin)


def _fall_back(job: Job, exc: E2EError) -> None:
    """auto: say that the share's archive is used instead; files: stop, saying what archive mode would do."""
    if job.dl.mode == "files":
        raise E2EError(f"{exc}; download.mode: archive (or auto) fetches the share's archive instead") from None
    print(f"{exc}; fetching the share's archive instead (download.mode: auto)", file=sys.stderr)


def _listings(job: Job, shares: list[str]) -> dict[str, list[Entry]]:
    """Each share's files; a share that refuses to be listed is left out (auto) or stops the stage (files)."""
    listings = {}
    for share in shares:
        try:
            listings[share] = [e for e in list_share(job.dl.base_url, share, job.dl) if not e.is_dir]
        except ListingRefused as exc:
            _fall_back(job, exc)
    return listings


def _locate_all(job: Job, by_share: dict[str, list[Want]], listings: dict[str, list[Entry]]) -> dict[str, Entry]:
    """Registry file name -> where its share holds it, for every listed share; one line for what is missing
    or of the wrong size, before anything is fetched."""
    located: dict[str, Entry] = {}
    missing: list[str] = []
    held: list[str] = []
    for share, entries in listings.items():
        _note_extras(job, share, [e.path for e in entries])
        found = find(share, [w.file for w in by_share[share]], entries)
        located |= found
        missing += [w.file.name for w in by_share[share] if w.file.name not in found]
        held += [f"{share}/{e.path}" for e in entries]
    if missing:
        raise missing_error(job.spec, missing, held, "the share listing")
    for share, share_wants in by_share.items():
        for want in share_wants:
            entry = located.get(want.file.name)
            if entry and None not in (entry.size, want.expect.size) and entry.size != want.expect.size:
                raise E2EError(
                    f"{share}/{entry.path}: the share lists {entry.size} bytes, {want.origin} says "
                    f"{want.expect.size}; the file on the share changed, or the registry is wrong"
                )
    return located


def find(share: str, files: list[RawFile], entries: list[Entry]) -> dict[str, Entry]:
    """Registry file name -> the entry of that name, wherever it sits in the share."""
    by_name: dict[str, list[Entry]] = defaultdict(list)
    for entry in entries:
        by_name[entry.name].append(entry)
    for file in files:
        if len(by_name[file.name]) > 1:
            raise E2EError(
                f"share {share} holds {file.name} more than once "
                f"({_names(e.path for e in by_name[file.name])}); e2e cannot tell which one is meant"
            )
    return {f.name: by_name[f.name][0] for f in files if by_name[f.name]}


def _note_extras(job: Job, share: str, paths: list[str]) -> None:
    known = {f.name for f in job.registry}
    extra = [p for p in paths if p.rsplit("/", 1)[-1] not in known]
    if extra:
        print(f"share {share} also holds files the dataset registry does not list (not fetched): {_names(extra)}")


def missing_error(spec: Dataset, missing: list[str], held: list[str], where: str) -> E2EError:
    """One line: what the registry expects and the share lacks, what it holds, and the params line that
    selects the files present."""
    present = [f.name for f in spec.files if f.name not in missing]
    fix = (
        f"to use the ones present, set datasets.{spec.name}.files: [{', '.join(present)}]"
        if present
        else "none of the selected files is there: check the share id in src/e2e/sources/registry.py"
    )
    return E2EError(
        f"{spec.name}: {where} lacks {_names(missing)}, which the registry expects; it holds "
        f"{_names(held) or 'nothing'}; {fix}"
    )


def _names(names: Iterable[str]) -> str:
    names = list(names)
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


def archive_url(dl: DownloadParams, share: str) -> str:
    return f"{dl.archive_url.rstrip('/')}/{quote(share, safe='')}/download"


def _from_archive(job: Job, share: str, wants: list[Want]) -> None:
    """Fetch the share's archive (resuming), take the wanted files out of it and verify each one."""
    url = archive_url(job.dl, share)
    part, state = job.workdir / f"{share}.archive.part", job.workdir / f"{share}.archive.json"
    parts = {w.file.name: w.part for w in wants}
    index = archive.Index.load(state)
    if (
        index is None
        or index.kind == "file"
        or not archive.covers(part, archive.pending(index, _members(job, share, wants, index, url), parts))
    ):
        index = _download_archive(url, part, state, index, job.dl)
    by_name = {w.file.name: w for w in wants}

    def check(name: str, got: Checksum) -> None:
        want = by_name[name]
        verify(got, want.expect, want.part, f"{url} ({name})", want.origin)
        job.record(want.file, got)

    if index.kind == "file":  # a single-file share sent the file itself
        if len(wants) != 1:
            raise E2EError(
                f"{url}: sent one file, not an archive, but share {share} should hold "
                f"{len(wants)} wanted files; set download.mode: files"
            )
        part.replace(wants[0].part)
        check(wants[0].file.name, Checksum(index.sha256, index.size))
    else:
        _note_extras(job, share, [m.name for m in index.members])
        archive.extract_all(
            part,
            index,
            _members(job, share, wants, index, url),
            parts,
            state,
            chunk=max(1, int(job.dl.chunk_mb * 2**20)),
            check=check,
        )
    part.unlink(missing_ok=True)


def _members(job: Job, share: str, wants: list[Want], index: archive.Index, url: str) -> dict[str, archive.Member]:
    """Registry file name -> its member in the archive, found by name wherever it sits."""
    found = find(share, [w.file for w in wants], [Entry(m.name, m.size) for m in index.members])
    missing = [w.file.name for w in wants if w.file.name not in found]
    if missing:
        raise missing_error(job.spec, missing, [m.name for m in index.members], f"the archive {url}")
    by_path = {m.name: m for m in index.members}
    return {name: by_path[entry.path] for name, entry in found.items()}


def _download_archive(
    url: str, part: Path, state: Path, old: archive.Index | None, dl: DownloadParams
) -> archive.Index:
    """Fetch the archive, resuming. After a cut, only the bytes cut away are fetched again, and they must give
    back the archive first downloaded (its sha256), else both are dropped and a rerun starts over."""
    expect = Checksum(old.sha256, old.size) if old and old.kind != "file" else UNKNOWN
    try:
        got = fetch(url, part, dl, expect, f"{state} (the archive as first downloaded)")
    except E2EError:
        if expect != UNKNOWN:
            state.unlink(missing_ok=True)
        raise
    index = archive.read_index(part, got)
    if old is not None and old.kind != "file":
        index.done = old.done  # parts extracted before are hashed again (archive.pending) before reuse
    index.save(state)
    return index
