"""A share fetched whole, as the archive CERNBox makes of it (`<archive_url>/<share>/download`), and the wanted
files streamed out of it, each checked against the archive's own CRC and size.

A ZIP's table of contents (the central directory) is at its end, so nothing can be extracted before the
archive is complete: the download is resumable with Range like any file (e2e.sources.fetch). The archive is
needed whole, but not twice: members are extracted last-first and, after each, the archive is truncated
where that member starts, so the disk holds at most the archive plus its largest wanted member (never the
archive plus everything extracted). The index of the members (where each one's bytes start, its sizes and
CRC) is written to `<stem>.json` before the first cut, so a run killed during extraction goes on from the
truncated archive without downloading it again.

Plain (uncompressed) tar is read the same way: its members' offsets are known from their headers. A share
of one file may answer with the file itself rather than an archive of it; that download is then the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from e2e.errors import E2EError
from e2e.sources.fetch import Checksum, sha256_file
from e2e.store.atomic import atomic_path

LOCAL_HEADER = 30  # bytes of a ZIP local file header before its name and extra field


class Corrupt(E2EError):
    """A member's bytes do not match the archive's index: the archive cannot be trusted any more."""


@dataclass(frozen=True)
class Member:
    name: str  # path inside the archive
    start: int  # offset of its header: the archive is cut here once the member is out
    data: int  # offset of its stored bytes
    stored: int  # bytes stored in the archive
    size: int  # bytes once extracted
    deflated: bool
    crc: int | None  # ZIP's CRC-32 of the extracted bytes; tar has none


@dataclass
class Index:
    """What an archive holds, kept beside it (`<stem>.json`) so that extraction can resume after a cut."""

    kind: str  # "zip", "tar" or "file" (the download is the single file itself)
    sha256: str  # of the complete archive as downloaded
    size: int
    members: list[Member]
    done: dict[str, list] = dataclasses.field(default_factory=dict)  # member name -> [sha256, size] extracted

    def save(self, path: Path) -> None:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def load(cls, path: Path) -> Index | None:
        if not path.is_file():
            return None
        raw = json.loads(path.read_text())
        return cls(**{**raw, "members": [Member(**m) for m in raw["members"]]})


def read_index(path: Path, got: Checksum) -> Index:
    """Index the complete archive at `path` (sha256 and size `got`) by what its first bytes say it is."""
    with open(path, "rb") as fh:
        head = fh.read(262)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        members = _zip_members(path)
        kind = "zip"
    elif head[257:262] == b"ustar":
        members = _tar_members(path)
        kind = "tar"
    elif head[:2] == b"\x1f\x8b":
        raise E2EError(f"{path}: a gzip-compressed download; e2e reads ZIP, plain tar or the data file itself")
    else:
        kind, members = "file", []
    return Index(kind, got.sha256 or "", got.size or 0, members)


def _zip_members(path: Path) -> list[Member]:
    members = []
    try:
        with zipfile.ZipFile(path) as zf, open(path, "rb") as fh:
            for info in zf.infolist():
                if info.is_dir():
                    continue
                if info.flag_bits & 0x1:
                    raise E2EError(f"{path}: {info.filename} is encrypted")
                if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                    raise E2EError(
                        f"{path}: {info.filename} uses ZIP compression method {info.compress_type}; "
                        "e2e reads stored and deflate members"
                    )
                fh.seek(info.header_offset)
                header = fh.read(LOCAL_HEADER)
                if header[:4] != b"PK\x03\x04":
                    raise E2EError(f"{path}: no ZIP header where {info.filename} should start")
                name_len, extra_len = struct.unpack_from("<HH", header, 26)
                members.append(
                    Member(
                        info.filename,
                        info.header_offset,
                        info.header_offset + LOCAL_HEADER + name_len + extra_len,
                        info.compress_size,
                        info.file_size,
                        info.compress_type == zipfile.ZIP_DEFLATED,
                        info.CRC,
                    )
                )
    except (zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
        raise E2EError(f"{path}: not a readable ZIP archive ({exc})") from None
    return members


def _tar_members(path: Path) -> list[Member]:
    try:
        with tarfile.open(path, "r:") as tf:
            return [
                Member(t.name, t.offset, t.offset_data, t.size, t.size, False, None)
                for t in tf
                if t.isreg() and not t.sparse
            ]
    except tarfile.TarError as exc:
        raise E2EError(f"{path}: not a readable tar archive ({exc})") from None


def extract(archive: Path, member: Member, dest: Path, chunk: int) -> Checksum:
    """Stream `member` out of `archive` into `dest`, inflating it and checking its size and CRC on the way;
    return the sha256 and size of what was written. `dest` appears only complete and correct."""
    inflate = zlib.decompressobj(-zlib.MAX_WBITS) if member.deflated else None
    sha, crc, size = hashlib.sha256(), 0, 0
    corrupt = Corrupt(
        f"{archive}: {member.name} is corrupt (its size or CRC-32 differs from the archive's "
        "index); the archive was removed, re-run to download it again"
    )
    with atomic_path(dest) as tmp, open(archive, "rb") as src, open(tmp, "wb") as out:
        src.seek(member.data)
        left = member.stored
        while left:
            block = src.read(min(chunk, left))
            if not block:
                raise corrupt  # the archive ends inside the member
            left -= len(block)
            try:
                for data in _inflated(inflate, block, chunk) if inflate else (block,):
                    size += len(data)
                    if size > member.size:  # never inflate past what the index promised: a zip bomb stops here
                        raise corrupt
                    out.write(data)
                    sha.update(data)
                    crc = zlib.crc32(data, crc)
            except zlib.error:
                raise corrupt from None
        if size != member.size or (member.crc is not None and crc != member.crc) or (inflate and not inflate.eof):
            raise corrupt
    return Checksum(sha.hexdigest(), size)


def _inflated(inflate, block: bytes, limit: int):
    """The inflated bytes of `block`, at most `limit` at a time (memory stays bounded whatever the ratio)."""
    yield inflate.decompress(block, limit)
    while inflate.unconsumed_tail:
        yield inflate.decompress(inflate.unconsumed_tail, limit)


def pending(index: Index, wanted: dict[str, Member], parts: dict[str, Path]) -> dict[str, Member]:
    """The wanted members not yet extracted: no record, or a part that is no longer what was recorded."""

    def done(name: str, member: Member) -> bool:
        record, part = index.done.get(member.name), parts[name]
        return (
            record is not None
            and part.is_file()
            and part.stat().st_size == record[1]
            and sha256_file(part) == record[0]
        )

    return {name: m for name, m in wanted.items() if not done(name, m)}


def covers(archive: Path, members: dict[str, Member]) -> bool:
    """Whether the archive on disk still holds every byte of `members` (it is cut as members come out)."""
    have = archive.stat().st_size if archive.exists() else 0
    return all(m.data + m.stored <= have for m in members.values())


def extract_all(
    archive: Path,
    index: Index,
    wanted: dict[str, Member],
    parts: dict[str, Path],
    state: Path,
    *,
    chunk: int,
    check: Callable[[str, Checksum], None],
) -> None:
    """Extract each wanted member (registry file name -> member) to its part, the last in the archive first.
    `check(name, sha256 and size)` verifies each part (raising leaves the archive as it is); a verified member
    is recorded in `state` and only then cut off the archive's end, so that a rerun skips it."""
    todo = pending(index, wanted, parts)
    for name, member in sorted(wanted.items(), key=lambda item: -item[1].start):
        try:
            got = extract(archive, member, parts[name], chunk) if name in todo else Checksum(*index.done[member.name])
        except Corrupt:
            archive.unlink(missing_ok=True)
            state.unlink(missing_ok=True)
            raise
        check(name, got)
        if name in todo:
            index.done[member.name] = list(got)
            index.save(state)
        if archive.exists() and archive.stat().st_size > member.start:
            os.truncate(archive, member.start)  # its bytes are out and recorded: free them now
