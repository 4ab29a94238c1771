"""List a CERNBox public share over WebDAV (PROPFIND), to find each registry file wherever the share holds it.

CERNBox serves public shares through Reva's ocdav at <base_url>/<share>/ (remote.php/dav/public-files). A
PROPFIND with `Depth: 1` lists one folder; each subfolder is then listed in turn. `Depth: infinity` is not
asked for: Reva answers it with 400 unless its operator allowed it. A single-file share lists as a folder
that holds the file (Reva's virtual parent collection), so both kinds of share read the same.

The answer is untrusted XML from the network: Python's expat (2.4.1 and later) refuses entity-expansion
bombs, the body is read up to MAX_BYTES, and every href must lie inside the share with no `.`/`..` segment,
since the paths found here become URLs that are fetched.
"""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from urllib.parse import quote, unquote, urljoin, urlsplit

import requests

from e2e.config import DownloadParams
from e2e.errors import E2EError
from e2e.sources.fetch import short_reason

MAX_BYTES = 32 * 2**20  # a listing of a few thousand files is about 1 MB
MAX_DEPTH = 16  # folders nested deeper than this are not followed: a server that nests forever stops here
DAV = "{DAV:}"
BODY = (
    b'<?xml version="1.0" encoding="utf-8"?>\n'
    b'<d:propfind xmlns:d="DAV:"><d:prop><d:resourcetype/><d:getcontentlength/></d:prop></d:propfind>'
)


@dataclass(frozen=True)
class Entry:
    path: str  # inside the share, "/"-separated, percent-decoded, e.g. "Task_3a/top_gun_opendata_3.parquet"
    size: int | None  # bytes (getcontentlength); None for folders or when the server does not say
    is_dir: bool = False

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


class ListingRefused(E2EError):
    """The server will not list the share (an HTTP refusal, or an answer that is no WebDAV listing)."""


def share_url(base_url: str, share: str, path: str = "") -> str:
    """The URL of `path` inside the share, every segment percent-encoded, so that no name leaves its folder."""
    segments = [share, *(s for s in path.split("/") if s)]
    return base_url.rstrip("/") + "/" + "/".join(quote(s, safe="") for s in segments)


def list_share(base_url: str, share: str, dl: DownloadParams) -> list[Entry]:
    """Every file and folder in the share, sorted by path: a Depth-1 PROPFIND of each folder in turn."""
    found: dict[str, Entry] = {}
    folders = [""]
    with requests.Session() as session:
        while folders:
            folder = folders.pop()
            url = share_url(base_url, share, folder) + "/"
            for entry in parse(_propfind(session, url, dl), url, share):
                parent = entry.path.rpartition("/")[0]
                if parent != folder or not entry.path or entry.path in found:
                    continue  # the folder itself, or more than asked for: each folder lists its own children
                found[entry.path] = entry
                if entry.is_dir and entry.path.count("/") < MAX_DEPTH:
                    folders.append(entry.path)
    return sorted(found.values(), key=lambda e: e.path)


def _propfind(session: requests.Session, url: str, dl: DownloadParams) -> bytes:
    """The 207 body; retried like a download on connection errors, timeouts and 5xx; any other status is a
    refusal (405 where the server has no WebDAV, 401/403 where it wants a login, 400 for the Depth)."""
    headers = {"Depth": "1", "Content-Type": "application/xml; charset=utf-8"}
    for attempt in range(dl.retries + 1):
        try:
            with session.request(
                "PROPFIND", url, headers=headers, data=BODY, stream=True, timeout=dl.timeout_s
            ) as resp:
                code = resp.status_code
                if code == 207:
                    return _read_capped(resp, url)
                if code < 500 and code not in (408, 429):
                    raise ListingRefused(
                        f"{url}: the share's listing (WebDAV PROPFIND) was refused: HTTP {code} {resp.reason}"
                    )
                problem = f"{url}: PROPFIND answered HTTP {code} {resp.reason}"
        except requests.Timeout:
            problem = f"{url}: no answer to PROPFIND within download.timeout_s={dl.timeout_s:g} s"
        except requests.ConnectionError as exc:
            problem = f"cannot reach {url}: {short_reason(exc)}"
        if attempt < dl.retries:
            time.sleep(dl.backoff_s * 2**attempt)
    raise E2EError(f"{problem} (gave up after {dl.retries + 1} failed attempts)")


def _read_capped(resp: requests.Response, url: str) -> bytes:
    body = bytearray()
    for chunk in resp.iter_content(chunk_size=2**16):  # decoded: a gzip bomb meets the cap too
        body += chunk
        if len(body) > MAX_BYTES:
            raise E2EError(f"{url}: the share's listing is over {MAX_BYTES // 2**20} MB; refusing to read on")
    return bytes(body)


def parse(body: bytes, url: str, share: str) -> list[Entry]:
    """The entries of a WebDAV multistatus answer to a PROPFIND of `url`, with paths relative to the share."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise ListingRefused(f"{url}: the PROPFIND answer is not XML ({exc})") from None
    if root.tag != f"{DAV}multistatus":
        raise ListingRefused(f"{url}: the PROPFIND answer is not a WebDAV multistatus (root element {root.tag})")
    entries = []
    for response in root.iter(f"{DAV}response"):
        href, props = response.findtext(f"{DAV}href"), _found_props(response)
        if not href or props is None:
            continue  # a resource the server could not describe (a 404 propstat only): nothing to use
        kind = props.find(f"{DAV}resourcetype")
        size = (props.findtext(f"{DAV}getcontentlength") or "").strip()
        entries.append(
            Entry(
                _relative(href.strip(), url, share),
                int(size) if size.isdigit() else None,
                kind is not None and kind.find(f"{DAV}collection") is not None,
            )
        )
    return entries


def _found_props(response: ET.Element) -> ET.Element | None:
    """The <prop> of the propstat with status 200 (Reva lists the properties it lacks in a 404 propstat)."""
    for propstat in response.iter(f"{DAV}propstat"):
        if re.search(r"\s200(\s|$)", propstat.findtext(f"{DAV}status") or ""):
            return propstat.find(f"{DAV}prop")
    return None


def _relative(href: str, url: str, share: str) -> str:
    """The path inside the share that `href` names (absolute URL, absolute path or relative reference)."""
    raw = urlsplit(urljoin(url, href)).path.split("/")
    segments = [unquote(s) for s in raw]  # decoded one by one: an encoded "/" stays inside its name
    if share not in segments:
        raise E2EError(f"{url}: the listing names {href!r}, which is outside share {share}")
    inside = [s for s in segments[segments.index(share) + 1 :] if s]
    if any(s in (".", "..") or "/" in s or "\\" in s for s in inside):
        raise E2EError(f"{url}: the listing names {href!r}, a path that leaves its folder")
    return "/".join(inside)
