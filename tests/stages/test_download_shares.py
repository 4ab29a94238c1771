"""The download against shares laid out as the real ones may be: files in subfolders, files missing, sizes that
disagree, and shares that only give their archive. A loopback server answers WebDAV PROPFIND as CERNBox's
public-files endpoint does (tests/support/http_server.py) and serves archives at index.php/s/<share>/download."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from e2e.config import Paths, parse_params
from e2e.errors import E2EError
from e2e.sources import archive, webdav
from e2e.sources.registry import DATASETS
from e2e.stages.download import checksum_file, main, partial_dir, read_checksums

from support.http_server import FileServer

QG, EG = "quark_gluon", "electron_photon"
FILES = DATASETS[QG].files
SHARE = FILES[0].share
DAV = "/remote.php/dav/public-files"  # CERNBox's prefix, so that hrefs look as the real ones
FOLDER = "Task 2 (jets)"  # a subfolder whose name needs percent-encoding
# the download is not about the file layouts: the project's own files only ([shared] would repeat them)
OWN = pytest.mark.parametrize("formats_dir", ["own"], indirect=True)


def params(url: str, files: list[str] | None = None, **download):
    download = {
        "base_url": url + DAV,
        "archive_url": url + "/index.php/s",
        "retries": 2,
        "backoff_s": 0.01,
        "timeout_s": 5,
        "chunk_mb": 0.0625,
    } | download
    return parse_params({"data": {"source": "cernbox"}, "download": download, "datasets": {QG: {"files": files}}})


def share_dir(srv: Path, share: str = SHARE) -> Path:
    return srv / DAV.lstrip("/") / share


def archive_dir(srv: Path, share: str = SHARE) -> Path:
    return srv / "index.php" / "s" / share


def put_share(srv: Path, ref: Path, skip: tuple[str, ...] = ()) -> None:
    """The quark/gluon share with its files in a subfolder, and files the registry does not list."""
    folder = share_dir(srv) / FOLDER
    folder.mkdir(parents=True)
    for f in FILES:
        if f.name not in skip:
            shutil.copyfile(ref / f.name, folder / f.name)
    (share_dir(srv) / "README.txt").write_text("jets\n")
    (share_dir(srv) / "old").mkdir()
    (share_dir(srv) / "old" / "notes.md").write_text("notes\n")


def put_archive(srv: Path, ref: Path, kind: str = "zip", names: list[str] | None = None) -> Path:
    """The share as CERNBox's archive of it: every file under a folder, plus a README."""
    path = archive_dir(srv) / "download"
    path.parent.mkdir(parents=True)
    members = {f"jets/{n}": ref / n for n in (names or [f.name for f in FILES])}
    if kind == "tar":
        with tarfile.open(path, "w") as tf:
            for arcname, src in members.items():
                tf.add(src, arcname)
    else:
        compression = zipfile.ZIP_DEFLATED if kind == "zip" else zipfile.ZIP_STORED
        with zipfile.ZipFile(path, "w", compression) as zf:
            zf.writestr("jets/README.md", "the jets\n")
            for arcname, src in members.items():
                zf.write(src, arcname)
    return path


def assert_downloaded(root: Path, ref: Path, names: list[str] | None = None) -> None:
    names = names or [f.name for f in FILES]
    raw = Paths(root).raw(QG)
    assert sorted(p.name for p in raw.iterdir()) == sorted(names)
    for name in names:
        assert (raw / name).read_bytes() == (ref / name).read_bytes(), name
    assert not partial_dir(Paths(root), QG).exists()


def assert_nothing_left(root: Path) -> None:
    assert not Paths(root).raw(QG).exists()
    part_dir = partial_dir(Paths(root), QG)
    assert not part_dir.exists() or not any(part_dir.iterdir())


@pytest.fixture
def ref(formats_dir) -> Path:
    return formats_dir / QG


@pytest.fixture
def srv(tmp_path) -> Path:
    return tmp_path / "srv"


@pytest.fixture
def root(tmp_path) -> Path:
    return tmp_path / "repo"


# ---------------------------------------------------------------- the listing


@OWN
def test_files_in_a_subfolder_are_found_and_verified(srv, ref, root, capsys):
    put_share(srv, ref)
    with FileServer(srv) as server:
        main(params(server.url), QG, Paths(root))
    assert_downloaded(root, ref)
    gets = [s.path for s in server.seen]
    assert gets == [f"{DAV}/{SHARE}/{FOLDER}/{f.name}" for f in FILES]
    assert {s.range for s in server.propfinds} == {"1"}  # Depth 1 only: Reva refuses infinity
    assert len(server.propfinds) == 3  # the share, its two subfolders
    out = capsys.readouterr().out
    assert "README.txt" in out and "old/notes.md" in out and "not fetched" in out
    assert set(read_checksums(checksum_file(Paths(root), QG))) == {f.name for f in FILES}


@OWN
def test_missing_file_is_one_line_and_the_line_it_gives_selects_the_present_ones(srv, ref, root):
    missing = FILES[1].name
    put_share(srv, ref, skip=(missing,))
    with FileServer(srv) as server:
        with pytest.raises(E2EError) as info:
            main(params(server.url), QG, Paths(root))
        message = str(info.value)
        assert "\n" not in message and server.seen == []  # nothing fetched
        assert f"lacks {missing}, which the registry expects" in message
        for f in (FILES[0], FILES[2]):
            assert f"{SHARE}/{FOLDER}/{f.name}" in message
        assert_nothing_left(root)
        line = re.search(rf"datasets\.{QG}\.files: \[(.*?)\]", message)
        present = line.group(1).split(", ")
        assert present == [FILES[0].name, FILES[2].name]
        main(params(server.url, files=present), QG, Paths(root))
    assert_downloaded(root, ref, present)


@OWN
def test_listed_size_that_disagrees_with_the_registry_names_both(srv, ref, root, monkeypatch):
    put_share(srv, ref)
    size = (ref / FILES[2].name).stat().st_size
    files = tuple(dataclasses.replace(f, size=size) if f == FILES[2] else f for f in FILES)
    monkeypatch.setitem(DATASETS, QG, dataclasses.replace(DATASETS[QG], files=files))
    with FileServer(srv) as server:
        server.fault(f"{DAV}/{SHARE}/{FOLDER}/{FILES[2].name}", listed_size=size + 7)
        with pytest.raises(E2EError) as info:
            main(params(server.url), QG, Paths(root))
    message = str(info.value)
    assert f"lists {size + 7} bytes, the dataset registry says {size}" in message and "\n" not in message
    assert server.seen == []
    assert_nothing_left(root)


@OWN
def test_files_mode_stops_where_the_listing_is_refused(srv, ref, root):
    put_share(srv, ref)
    with FileServer(srv) as server:
        server.fault(f"{DAV}/{SHARE}/", listing=405)
        with pytest.raises(E2EError, match=r"PROPFIND\) was refused: HTTP 405.*download.mode: archive"):
            main(params(server.url, mode="files"), QG, Paths(root))
    assert server.seen == []
    assert_nothing_left(root)


def test_listing_parse_reads_what_webdav_servers_send():
    """Absolute URLs, absolute paths and relative hrefs; percent-encoding; a 404 propstat beside the 200 one;
    a resource with no 200 propstat is skipped."""
    url = f"https://host{DAV}/{SHARE}/sub/"
    body = f"""<?xml version="1.0"?><D:multistatus xmlns:D="DAV:">
      <D:response><D:href>https://host{DAV}/{SHARE}/sub/</D:href><D:propstat><D:prop><D:resourcetype>
        <D:collection/></D:resourcetype></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>
      <D:response><D:href>{DAV}/{SHARE}/sub/a%20b%28c%29.parquet</D:href><D:propstat><D:prop><D:resourcetype/>
        <D:getcontentlength> 12 </D:getcontentlength></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat>
        <D:propstat><D:prop><D:getetag/></D:prop><D:status>HTTP/1.1 404 Not Found</D:status></D:propstat>
      </D:response>
      <D:response><D:href>deeper/</D:href><D:propstat><D:prop><D:resourcetype><D:collection/></D:resourcetype>
        </D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>
      <D:response><D:href>gone.txt</D:href><D:propstat><D:prop><D:getcontentlength/></D:prop>
        <D:status>HTTP/1.1 404 Not Found</D:status></D:propstat></D:response>
    </D:multistatus>""".encode()
    assert webdav.parse(body, url, SHARE) == [
        webdav.Entry("sub", None, True),
        webdav.Entry("sub/a b(c).parquet", 12),
        webdav.Entry("sub/deeper", None, True),
    ]
    for bad in (b"<html><body>Login</body></html>", b"not xml at all"):
        with pytest.raises(webdav.ListingRefused, match="not"):
            webdav.parse(bad, url, SHARE)


# ---------------------------------------------------------------- the archive

ARCHIVE = f"/index.php/s/{SHARE}/download"


@OWN
@pytest.mark.parametrize("kind", ["zip", "zip-stored", "tar"])
def test_share_that_only_serves_its_archive(srv, ref, root, kind, capsys):
    """auto: the listing is refused, so the archive is fetched; the wanted members come out verified."""
    share_dir(srv).mkdir(parents=True)
    put_archive(srv, ref, kind)
    with FileServer(srv) as server:
        server.fault(f"{DAV}/{SHARE}/", listing=405)
        main(params(server.url), QG, Paths(root))
    assert_downloaded(root, ref)
    assert [s.path for s in server.seen] == [ARCHIVE]
    captured = capsys.readouterr()
    assert "fetching the share's archive instead" in captured.err
    assert ("jets/README.md" in captured.out) == kind.startswith("zip")  # named, not fetched
    sums = read_checksums(checksum_file(Paths(root), QG))
    assert {n: c.size for n, c in sums.items()} == {f.name: (ref / f.name).stat().st_size for f in FILES}


@OWN
def test_auto_falls_back_to_the_archive_when_a_listed_file_is_refused(srv, ref, root, capsys):
    put_share(srv, ref)
    put_archive(srv, ref)
    with FileServer(srv) as server:
        server.fault(f"{DAV}/{SHARE}/{FOLDER}/{FILES[1].name}", status=403)
        main(params(server.url), QG, Paths(root))
    assert_downloaded(root, ref)
    assert [s.path for s in server.seen][-1] == ARCHIVE
    assert "HTTP 403" in capsys.readouterr().err


KILLED_RUN = """
import json, sys
from pathlib import Path
from e2e.config import Paths, parse_params
from e2e.stages.download import main
main(parse_params(json.loads(sys.argv[1])), sys.argv[2], Paths(root=Path(sys.argv[3])))
"""


@OWN
def test_archive_download_resumes_after_a_kill(srv, ref, root):
    size = put_archive(srv, ref, "zip-stored").stat().st_size
    raw = {"data": {"source": "cernbox"}, "download": {**dataclasses.asdict(params("x").download), "mode": "archive"}}
    with FileServer(srv) as server:
        raw["download"] |= {"base_url": server.url + DAV, "archive_url": server.url + "/index.php/s"}
        server.fault(ARCHIVE, delay_s=0.3)  # 16 kB every 0.3 s: time to kill the client part-way
        proc = subprocess.Popen(
            [sys.executable, "-c", KILLED_RUN, json.dumps(raw), QG, str(root)], stderr=subprocess.DEVNULL
        )
        part = partial_dir(Paths(root), QG) / f"{SHARE}.archive.part"
        deadline = time.monotonic() + 30
        while not (part.exists() and part.stat().st_size >= 16_384) and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.kill()
        proc.wait()
        have = part.stat().st_size
        assert 0 < have < size
        assert not Paths(root).raw(QG).exists()
        server.faults.clear()
        main(params(server.url, mode="archive"), QG, Paths(root))
    assert server.ranges(ARCHIVE) == [None, f"bytes={have}-"]
    assert_downloaded(root, ref)


@OWN
def test_a_run_killed_while_extracting_goes_on_from_the_cut_archive(srv, ref, root, monkeypatch):
    """Members come out last-first and the archive is cut behind each; the index kept beside it lets the
    next run extract the rest without a download, and fetch only the cut-away tail if a part is lost."""
    put_archive(srv, ref, "zip")
    real_extract, calls = archive.extract, []

    def dies_on_the_second(*args, **kwargs):
        calls.append(args[1].name)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as a kill would, after the first member is out and recorded
        return real_extract(*args, **kwargs)

    part_dir = partial_dir(Paths(root), QG)
    archive_part = part_dir / f"{SHARE}.archive.part"
    with FileServer(srv) as server:
        monkeypatch.setattr(archive, "extract", dies_on_the_second)
        with pytest.raises(KeyboardInterrupt):
            main(params(server.url, mode="archive"), QG, Paths(root))
        monkeypatch.setattr(archive, "extract", real_extract)
        last = calls[0].rsplit("/", 1)[-1]
        assert last == FILES[-1].name  # the last member in the archive came out first
        cut = archive_part.stat().st_size
        assert cut < (srv / ARCHIVE.lstrip("/")).stat().st_size and (part_dir / f"{last}.part").is_file()

        (part_dir / f"{last}.part").unlink()  # lost: its bytes were cut off the archive, so they are fetched again
        main(params(server.url, mode="archive"), QG, Paths(root))
    assert server.ranges(ARCHIVE) == [None, f"bytes={cut}-"]
    assert_downloaded(root, ref)


@OWN
def test_corrupt_archive_is_refused_and_removed(srv, ref, root):
    put_archive(srv, ref, "zip-stored")
    with FileServer(srv) as server:
        server.fault(ARCHIVE, corrupt=True)
        with pytest.raises(E2EError, match="is corrupt.*CRC-32.*re-run"):
            main(params(server.url, mode="archive"), QG, Paths(root))
        assert not (partial_dir(Paths(root), QG) / f"{SHARE}.archive.part").exists()
        assert not Paths(root).raw(QG).exists()
        server.faults.clear()
        main(params(server.url, mode="archive"), QG, Paths(root))
    assert_downloaded(root, ref)


@OWN
def test_archive_missing_a_file_is_one_line_with_the_selection(srv, ref, root):
    put_archive(srv, ref, names=[FILES[0].name, FILES[2].name])
    with FileServer(srv) as server, pytest.raises(E2EError) as info:
        main(params(server.url, mode="archive"), QG, Paths(root))
    message = str(info.value)
    assert f"lacks {FILES[1].name}" in message and "\n" not in message
    assert f"datasets.{QG}.files: [{FILES[0].name}, {FILES[2].name}]" in message
    assert not Paths(root).raw(QG).exists()


@OWN
def test_single_file_share_sends_the_file_itself(tmp_path, formats_dir, root):
    """The e/gamma shares hold one file each: their `download` is that file, not an archive of it."""
    srv = tmp_path / "srv"
    for f in DATASETS[EG].files:
        archive_dir(srv, f.share).mkdir(parents=True)
        shutil.copyfile(formats_dir / EG / f.name, archive_dir(srv, f.share) / "download")
    with FileServer(srv) as server:
        main(params(server.url, mode="archive"), EG, Paths(root))
    for f in DATASETS[EG].files:
        assert (Paths(root).raw(EG) / f.name).read_bytes() == (formats_dir / EG / f.name).read_bytes()
