"""A loopback HTTP file server for download tests: Range support, WebDAV listings, injectable faults.

Serves one directory on 127.0.0.1 (random port) so that no test ever needs the network. Faults are
set per URL path (e.g. "/share/file.hdf5") and cover what a real CERNBox download meets: cut
connections, 404/403, corrupted bytes, a slow link (so a test can kill a client mid-transfer),
servers that ignore Range, shares that refuse to be listed and listings whose sizes disagree.

PROPFIND answers as CERNBox's public-files endpoint (Reva's ocdav) does: a 207 multistatus with
`d:`-prefixed elements, percent-encoded absolute hrefs, folders with a trailing slash and
`<d:collection/>`, the properties a resource lacks in a separate 404 propstat, and `Depth: infinity`
refused with 400.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote
from xml.sax.saxutils import escape

SEND_CHUNK = 16 * 1024


@dataclass
class Fault:
    cut_after: int | None = None  # close the connection after this many body bytes...
    cut_times: int = 0  # ...for this many requests
    status: int | None = None  # answer with this error status instead of the file
    corrupt: bool = False  # flip one byte in the middle of the file
    delay_s: float = 0.0  # sleep before each SEND_CHUNK: a slow link
    ignore_range: bool = False  # answer 200 with the whole file even when asked for a range
    listing: int | None = None  # answer PROPFIND of this path with this status (405: no WebDAV here)
    listed_size: int | None = None  # the size PROPFIND reports for this file instead of its real one


@dataclass
class Seen:
    path: str
    range: str | None
    status: int | None  # None while the response is being sent


class FileServer:
    """`with FileServer(dir) as srv:` serves dir at srv.url; srv.seen lists every request."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.faults: dict[str, Fault] = {}
        self.seen: list[Seen] = []  # GET requests
        self.propfinds: list[Seen] = []  # PROPFIND requests (range: the Depth header)
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def fault(self, path: str, **kwargs) -> Fault:
        self.faults[path] = Fault(**kwargs)
        return self.faults[path]

    def ranges(self, path: str) -> list[str | None]:
        return [s.range for s in self.seen if s.path == path]

    def resolve(self, path: str) -> Path | None:
        """The file or folder that URL path `path` names, or None when it lies outside the served directory."""
        target = (self.directory / path.lstrip("/")).resolve()
        return target if target.is_relative_to(self.directory.resolve()) else None

    def __enter__(self) -> FileServer:
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def _handler_for(server: FileServer):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest output clean
            pass

        def do_GET(self):
            path = unquote(self.path.split("?", 1)[0])
            seen = Seen(path, self.headers.get("Range"), None)  # logged now: a killed client never sees the end
            with server._lock:
                server.seen.append(seen)
                fault = server.faults.get(path, Fault())
                cut = fault.cut_after if fault.cut_times > 0 else None
                fault.cut_times -= cut is not None
            seen.status = self._respond(path, fault, cut)

        def do_PROPFIND(self):
            path = unquote(self.path.split("?", 1)[0])
            depth = self.headers.get("Depth", "infinity")
            seen = Seen(path, depth, None)
            with server._lock:
                server.propfinds.append(seen)
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            target = server.resolve(path)
            listing = server.faults.get(path, Fault()).listing
            if listing or target is None or not target.exists():
                seen.status = self._error(listing or 404)
            elif depth not in ("0", "1"):
                seen.status = self._error(400)
            else:
                resources = [target] + (sorted(target.iterdir()) if depth == "1" and target.is_dir() else [])
                body = _multistatus(server, resources).encode()
                self.send_response(207)
                self.send_header("Content-Type", "application/xml; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                seen.status = 207

        def _respond(self, path: str, fault: Fault, cut: int | None) -> int:
            file = server.resolve(path)
            if fault.status or file is None or not file.is_file():
                return self._error(fault.status or 404)
            data = bytearray(file.read_bytes())
            if fault.corrupt:
                data[len(data) // 2] ^= 0xFF
            match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
            start = int(match.group(1)) if match and not fault.ignore_range else 0
            if start >= len(data) > 0:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return 416
            status = 206 if match and not fault.ignore_range else 200
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data) - start))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            self._send(memoryview(data)[start:], fault, cut)
            return status

        def _send(self, body: memoryview, fault: Fault, cut: int | None) -> None:
            body = body if cut is None else body[:cut]
            try:
                for i in range(0, len(body), SEND_CHUNK):
                    time.sleep(fault.delay_s)
                    self.wfile.write(body[i : i + SEND_CHUNK])
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):  # the client was killed: expected
                pass
            self.close_connection = True

        def _error(self, status: int) -> int:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            body = f"error {status}\n".encode()
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return status

    return Handler


def _multistatus(server: FileServer, resources: list[Path]) -> str:
    root = server.directory.resolve()
    responses = []
    for res in resources:
        rel = res.relative_to(root).as_posix()
        href = escape(quote("/" + rel + ("/" if res.is_dir() else "")))
        if res.is_dir():
            found, lacking = "<d:resourcetype><d:collection/></d:resourcetype>", "<d:getcontentlength/>"
        else:
            size = server.faults.get("/" + rel, Fault()).listed_size
            size = res.stat().st_size if size is None else size
            found = f"<d:resourcetype/><d:getcontentlength>{size}</d:getcontentlength>"
            lacking = ""
        stats = f"<d:propstat><d:prop>{found}</d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat>"
        if lacking:
            stats += f"<d:propstat><d:prop>{lacking}</d:prop><d:status>HTTP/1.1 404 Not Found</d:status></d:propstat>"
        responses.append(f"<d:response><d:href>{href}</d:href>{stats}</d:response>")
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<d:multistatus xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns">'
        + "".join(responses)
        + "</d:multistatus>"
    )
