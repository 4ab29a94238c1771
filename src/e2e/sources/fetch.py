"""HTTP download of one file: streamed, resumable, retried, sha256-verified.

The data lands in a `.part` file that the caller keeps outside any DVC output: a killed process, or
a `dvc repro` (which deletes stage outputs before running), resumes it with `Range: bytes=N-`.
The caller moves the `.part` into place only after `fetch` returns, i.e. after verification.
"""

from __future__ import annotations

import errno
import hashlib
import re
import time
from pathlib import Path
from typing import NamedTuple

import requests
from tqdm import tqdm

from e2e.config import DownloadParams
from e2e.errors import E2EError

_HINTS = {
    403: "the share may have expired or need a password; check download.base_url and the share id",
    404: "check download.base_url and the share id / file name in the dataset registry",
}


class Checksum(NamedTuple):
    sha256: str | None
    size: int | None


UNKNOWN = Checksum(None, None)


class Refused(E2EError):
    """The server answered, and will not give this URL (401, 403, 404, 405, 410): retrying cannot help, but
    the share's archive may still hold the file (e2e.stages.download's auto mode falls back to it)."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


REFUSALS = (401, 403, 404, 405, 410)


class _Retry(Exception):
    """A failure worth retrying (connection, timeout, truncation, 5xx); the message names the URL."""


def sha256_file(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def fetch(
    url: str, part: Path, dl: DownloadParams, expect: Checksum = UNKNOWN, origin: str = "the dataset registry"
) -> Checksum:
    """Download `url` into `part` (resuming what is there) and verify it against `expect`.

    Returns the sha256 and size of the complete file. On a mismatch the bad `.part` is removed.
    """
    part.parent.mkdir(parents=True, exist_ok=True)
    have = _size(part)
    if expect.size is not None and have > expect.size:
        part.unlink()  # longer than the real file, so it cannot be a prefix of it
    if expect.size is not None and have == expect.size:
        got = Checksum(sha256_file(part), have)  # completed by an earlier run: no request needed
    else:
        got = _fetch_with_retries(url, part, dl)
    verify(got, expect, part, url, origin)
    return got


def verify(got: Checksum, expect: Checksum, part: Path, what: str, origin: str) -> None:
    """Raise (and remove the bad `part`) unless `got` is a non-empty file matching what is known of it."""
    if got.size == 0:  # never a valid data file, and must not be recorded as the reference checksum
        part.unlink(missing_ok=True)
        raise E2EError(f"{what}: the server sent an empty file")
    if (expect.sha256 and got.sha256 != expect.sha256) or (expect.size is not None and got.size != expect.size):
        part.unlink(missing_ok=True)
        raise E2EError(
            f"{what}: checksum mismatch: expected sha256 {expect.sha256} ({expect.size} bytes, from {origin}), "
            f"got {got.sha256} ({got.size} bytes); the bad file was removed, re-run to download it again"
        )


def _fetch_with_retries(url: str, part: Path, dl: DownloadParams) -> Checksum:
    failures = 0
    with requests.Session() as session:
        while True:
            before = _size(part)
            try:
                return _attempt(session, url, part, dl)
            except _Retry as exc:
                # An attempt that moved the file forward starts the count again: on a flaky link a
                # large file should finish rather than give up after `retries` cuts.
                progressed = _size(part) > before
                failures = 1 if progressed else failures + 1
                if failures > dl.retries:
                    kept = "; the partial file is kept and resumes on re-run" if _size(part) else ""
                    raise E2EError(f"{exc} (gave up after {failures} failed attempts{kept})") from None
                time.sleep(dl.backoff_s * 2 ** (failures - 1))


def _attempt(session: requests.Session, url: str, part: Path, dl: DownloadParams) -> Checksum:
    offset = _size(part)
    # identity: a compressed transfer would make byte offsets (Range) and the sha256 meaningless
    headers = {"Accept-Encoding": "identity"} | ({"Range": f"bytes={offset}-"} if offset else {})
    try:
        with session.get(url, headers=headers, stream=True, timeout=dl.timeout_s) as resp:
            offset, total = _check_response(resp, url, part, offset)
            if resp.status_code == 416:  # _check_response let it through: the .part is complete
                return Checksum(sha256_file(part), offset)
            return _stream(resp, url, part, offset=offset, total=total, dl=dl)
    except requests.Timeout:
        raise _Retry(f"{url}: no answer within download.timeout_s={dl.timeout_s:g} s") from None
    except requests.ConnectionError as exc:
        raise _Retry(f"cannot reach {url}: {short_reason(exc)}") from None


def _check_response(resp: requests.Response, url: str, part: Path, offset: int) -> tuple[int, int | None]:
    """Return (offset to write from, total file size or None) or raise for statuses we cannot use."""
    code = resp.status_code
    if code == 416:  # asked for bytes past the end: either the .part is already complete or stale
        total = _range_total(resp)
        if total == offset:
            return offset, total
        part.unlink(missing_ok=True)
        raise _Retry(f"{url}: server refused to resume at byte {offset} (HTTP 416, file has {total} bytes)")
    if code >= 500 or code in (408, 429):
        raise _Retry(f"{url}: HTTP {code} {resp.reason}")
    if code in REFUSALS:
        raise Refused(f"{url}: HTTP {code} {resp.reason} ({_HINTS.get(code, 'the server refuses it')})", code)
    if code not in (200, 206):
        raise E2EError(f"{url}: HTTP {code} {resp.reason} (expected HTTP 200 or 206)")
    if "text/html" in resp.headers.get("Content-Type", ""):
        raise E2EError(f"{url}: got an HTML page instead of the data file (a login or error page?); {_HINTS[404]}")
    if code == 200:  # the server ignored Range (or nothing to resume): start from byte 0
        length = resp.headers.get("Content-Length")
        return 0, int(length) if length is not None else None
    match = re.fullmatch(r"bytes (\d+)-\d+/(\d+)", resp.headers.get("Content-Range", ""))
    if not match or int(match.group(1)) != offset:
        part.unlink(missing_ok=True)
        raise _Retry(
            f"{url}: answered Range bytes={offset}- with Content-Range "
            f"{resp.headers.get('Content-Range')!r}; restarting from byte 0"
        )
    return offset, int(match.group(2))


def _stream(
    resp: requests.Response, url: str, part: Path, *, offset: int, total: int | None, dl: DownloadParams
) -> Checksum:
    """Append the body to `part`, hashing the resumed prefix first so the sha256 covers the whole file."""
    hasher = hashlib.sha256()
    if offset:
        with open(part, "rb") as fh:
            hasher = hashlib.file_digest(fh, "sha256")
    written = offset
    name = part.name.removesuffix(".part")
    bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=name, disable=None)
    try:
        with bar, open(part, "ab" if offset else "wb") as fh:
            for chunk in resp.iter_content(chunk_size=max(1, int(dl.chunk_mb * 2**20))):
                fh.write(chunk)
                hasher.update(chunk)
                written += len(chunk)
                bar.update(len(chunk))
    except requests.RequestException as exc:  # cut mid-body: ChunkedEncodingError, read timeout
        raise _Retry(f"{url}: transfer cut at byte {written} of {total} ({short_reason(exc)})") from None
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise E2EError(
                f"no space left on device in {part.parent} while downloading {url}; free some "
                f"space and re-run (the partial file is kept and resumes)"
            ) from None
        raise
    if total is not None and written < total:
        raise _Retry(f"{url}: transfer truncated at byte {written} of {total}")
    return Checksum(hasher.hexdigest(), written)


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _range_total(resp: requests.Response) -> int | None:
    match = re.fullmatch(r"bytes \*/(\d+)", resp.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def short_reason(exc: Exception) -> str:
    """requests nests the OS error several levels deep; users want just '[Errno 111] Connection refused'."""
    text = str(exc)
    for pattern in (r"\[Errno -?\d+\] [^'\")]+", r"IncompleteRead\([^)]*\)", r"Read timed out"):
        match = re.search(pattern, text)
        if match:
            return match.group(0).strip()
    return type(exc).__name__
