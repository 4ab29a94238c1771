"""The download stage against a loopback server that serves real-format files (the formats_dir fixture: the
project's own files, and ../shared/formats where present)."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

import e2e.sources
from e2e.config import Paths, parse_params
from e2e.errors import E2EError
from e2e.sources import fetch as fetch_mod
from e2e.sources.registry import DATASETS
from e2e.stages.download import checksum_file, main, partial_dir, read_checksums

from support.http_server import FileServer

DS = "electron_photon"
FILES = DATASETS[DS].files


@pytest.fixture
def ref(formats_dir) -> Path:
    """The e/gamma files in the real layout that the server serves and the downloads must equal."""
    return formats_dir / DS


def url_path(file) -> str:
    return f"/{file.share}/{file.name}"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def raw_params(base_url: str, source: str = "cernbox", **download) -> dict:
    download = {
        "base_url": base_url,
        "archive_url": f"{base_url}/index.php/s",
        "retries": 3,
        "backoff_s": 0.01,
        "timeout_s": 5,
        "chunk_mb": 0.0625,
    } | download
    return {"data": {"source": source}, "download": download}


def params(*args, **kwargs):
    return parse_params(raw_params(*args, **kwargs))


def assert_identical(paths: Paths, ref: Path) -> None:
    out = paths.raw(DS)
    assert sorted(p.name for p in out.iterdir()) == sorted(f.name for f in FILES)
    for f in FILES:
        assert (out / f.name).read_bytes() == (ref / f.name).read_bytes()


def assert_nothing_in_raw(paths: Paths) -> None:
    raw = paths.raw(DS).parent
    assert not raw.exists() or list(raw.iterdir()) == []


@pytest.fixture
def paths(tmp_path) -> Paths:
    return Paths(root=tmp_path / "repo")


@pytest.fixture
def server(tmp_path, ref):
    """The electron_photon files laid out as CERNBox serves them: <share>/<name>."""
    for f in FILES:
        (tmp_path / "srv" / f.share).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ref / f.name, tmp_path / "srv" / f.share / f.name)
    with FileServer(tmp_path / "srv") as srv:
        yield srv


@pytest.fixture
def known_checksums(monkeypatch, ref):
    """Pretend the registry knows the true sha256/size of every file."""
    files = tuple(
        dataclasses.replace(f, sha256=sha256(ref / f.name), size=(ref / f.name).stat().st_size) for f in FILES
    )
    monkeypatch.setitem(DATASETS, DS, dataclasses.replace(DATASETS[DS], files=files))


def test_clean_download_records_checksums_then_verifies(server, paths, ref, capsys):
    main(params(server.url), DS, paths)
    assert_identical(paths, ref)
    sums = read_checksums(checksum_file(paths, DS))
    for f in FILES:
        path = ref / f.name
        assert sums[f.name] == (sha256(path), path.stat().st_size)
    assert "commit" in capsys.readouterr().err
    assert not partial_dir(paths, DS).exists()
    assert sorted(p.name for p in paths.raw(DS).parent.iterdir()) == [DS]

    shutil.rmtree(paths.raw(DS))  # what `dvc repro` does before re-running the stage
    main(params(server.url), DS, paths)
    assert_identical(paths, ref)
    assert "recorded" not in capsys.readouterr().err


def test_cut_transfer_resumes_with_range(server, paths, ref):
    first = url_path(FILES[0])
    cut = (ref / FILES[0].name).stat().st_size // 2
    server.fault(first, cut_after=cut, cut_times=1)
    main(params(server.url), DS, paths)
    ranges = server.ranges(first)
    assert ranges[0] is None and len(ranges) == 2
    assert ranges[1].startswith("bytes=") and 0 < int(ranges[1][6:-1]) <= cut
    assert_identical(paths, ref)


KILLED_RUN = """
import json, sys
from pathlib import Path
from e2e.config import Paths, parse_params
from e2e.stages.download import main
main(parse_params(json.loads(sys.argv[1])), sys.argv[2], Paths(root=Path(sys.argv[3])))
"""


def test_killed_run_resumes_from_part(server, paths, ref):
    first = url_path(FILES[0])
    server.fault(first, delay_s=0.2)  # 16 kB every 0.2 s: time to kill the client part-way
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN, json.dumps(raw_params(server.url)), DS, str(paths.root)],
        stderr=subprocess.DEVNULL,
    )
    part = partial_dir(paths, DS) / f"{FILES[0].name}.part"
    deadline = time.monotonic() + 20
    while not (part.exists() and part.stat().st_size >= 40_000) and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    have = part.stat().st_size
    assert 0 < have < (ref / FILES[0].name).stat().st_size
    assert_nothing_in_raw(paths)

    server.faults.clear()
    main(params(server.url), DS, paths)
    assert server.ranges(first) == [None, f"bytes={have}-"]
    assert_identical(paths, ref)


def test_corrupted_file_is_removed_and_nothing_lands(server, paths, ref, known_checksums):
    second = url_path(FILES[1])
    server.fault(second, corrupt=True)
    with pytest.raises(E2EError, match="checksum mismatch") as info:
        main(params(server.url), DS, paths)
    assert server.url + second in str(info.value) and "registry" in str(info.value)
    assert_nothing_in_raw(paths)
    assert not (partial_dir(paths, DS) / f"{FILES[1].name}.part").exists()
    assert (partial_dir(paths, DS) / f"{FILES[0].name}.part").exists()  # verified: no re-download

    server.faults.clear()
    main(params(server.url), DS, paths)
    assert_identical(paths, ref)
    assert len(server.ranges(url_path(FILES[0]))) == 1  # the complete .part was verified locally


def test_checksum_file_mismatch(server, paths, ref):
    sumfile = checksum_file(paths, DS)
    sumfile.parent.mkdir(parents=True)
    size = (ref / FILES[0].name).stat().st_size
    sumfile.write_text(f"{'0' * 64}  {FILES[0].name}  {size}\n")
    with pytest.raises(E2EError, match=f"checksum mismatch.*{sumfile}"):
        main(params(server.url), DS, paths)
    assert_nothing_in_raw(paths)
    assert not partial_dir(paths, DS).exists() or not any(partial_dir(paths, DS).iterdir())


@pytest.mark.parametrize("status", [404, 403])
def test_http_error_is_not_retried(server, paths, status):
    server.fault(url_path(FILES[0]), status=status)
    with pytest.raises(E2EError, match=f"HTTP {status}.*download.mode: archive") as info:
        main(params(server.url, mode="files"), DS, paths)
    assert server.url + url_path(FILES[0]) in str(info.value)
    assert len(server.seen) == 1
    assert_nothing_in_raw(paths)


def test_unreachable_host_gives_up_after_retries(paths):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    start = time.monotonic()
    with pytest.raises(E2EError, match="cannot reach .*Connection refused.*3 failed attempts") as info:
        main(params(url, retries=2), DS, paths)
    assert f"{url}/{FILES[0].share}/" in str(info.value)  # the share's listing, before any file
    assert time.monotonic() - start < 5
    assert_nothing_in_raw(paths)


def test_truncated_transfer_gives_up_after_retries(server, paths):
    server.fault(url_path(FILES[0]), cut_after=0, cut_times=100)
    with pytest.raises(E2EError, match="cut at byte 0 of .*3 failed attempts"):
        main(params(server.url, retries=2), DS, paths)
    assert len(server.seen) == 3
    assert_nothing_in_raw(paths)


def test_server_ignoring_range_restarts_from_zero(server, paths, ref):
    part = partial_dir(paths, DS) / f"{FILES[0].name}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"junk that must not survive" * 100)
    server.fault(url_path(FILES[0]), ignore_range=True)
    main(params(server.url), DS, paths)
    assert server.seen[0].range is not None and server.seen[0].status == 200
    assert_identical(paths, ref)


def test_complete_part_needs_no_request_and_gets_416_where_the_size_is_unknown(server, paths, ref):
    part = partial_dir(paths, DS) / f"{FILES[0].name}.part"
    part.parent.mkdir(parents=True)
    shutil.copyfile(ref / FILES[0].name, part)
    main(params(server.url), DS, paths)
    assert [s.path for s in server.seen] == [url_path(FILES[1])]  # the listing's size said it was complete
    assert_identical(paths, ref)
    assert FILES[0].name in read_checksums(checksum_file(paths, DS))

    # with no size known from anywhere, the complete part asks with Range and keeps itself on 416
    part.parent.mkdir(parents=True)
    shutil.copyfile(ref / FILES[0].name, part)
    got = fetch_mod.fetch(server.url + url_path(FILES[0]), part, params(server.url).download)
    size = (ref / FILES[0].name).stat().st_size
    assert server.seen[-1].range == f"bytes={size}-" and got == (sha256(ref / FILES[0].name), size)


def test_no_space_left_names_directory(server, paths, monkeypatch):
    class Full:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def full_open(path, mode="r", *args, **kwargs):
        fh = open(path, mode, *args, **kwargs)
        return Full(fh) if mode[0] in "wa" else fh

    monkeypatch.setattr(fetch_mod, "open", full_open, raising=False)
    with pytest.raises(E2EError, match=f"no space left on device in {partial_dir(paths, DS)}"):
        main(params(server.url), DS, paths)
    assert_nothing_in_raw(paths)


@pytest.fixture
def local_dir(tmp_path, ref) -> Path:
    src = tmp_path / "downloads"
    src.mkdir()
    for f in FILES:
        shutil.copyfile(ref / f.name, src / f.name)
    return src


def test_local_directory_is_hardlinked(local_dir, paths, ref):
    main(params("http://unused", source=str(local_dir)), DS, paths)
    assert_identical(paths, ref)
    for f in FILES:
        assert (paths.raw(DS) / f.name).stat().st_ino == (local_dir / f.name).stat().st_ino


def test_local_directory_verifies_known_checksums(local_dir, paths, ref, known_checksums):
    (local_dir / FILES[1].name).write_bytes(b"x" * (ref / FILES[1].name).stat().st_size)
    with pytest.raises(E2EError, match=f"{FILES[1].name}: sha256 .* does not match"):
        main(params("http://unused", source=str(local_dir)), DS, paths)
    assert_nothing_in_raw(paths)


def test_local_directory_missing_file(local_dir, paths):
    (local_dir / FILES[1].name).unlink()
    with pytest.raises(E2EError, match=f"{local_dir}: missing {FILES[1].name} "):
        main(params("http://unused", source=str(local_dir)), DS, paths)
    with pytest.raises(E2EError, match="not a directory; expected 'synthetic', 'cernbox'"):
        main(params("http://unused", source=str(local_dir / "nope")), DS, paths)
    assert_nothing_in_raw(paths)


def test_synthetic_source_builds_in_temp_dir(paths, monkeypatch):
    calls = []

    def generate(dataset, out_dir, cfg, seed, files):
        calls.append((dataset, out_dir, cfg, seed, files))
        assert out_dir != paths.raw(DS) and out_dir.is_dir()
        (out_dir / "made.txt").write_text("ok")
        if cfg.get("fail"):
            raise RuntimeError("generator crashed")

    fake = types.SimpleNamespace(generate=generate)
    monkeypatch.setitem(sys.modules, "e2e.sources.synthetic", fake)
    monkeypatch.setattr(e2e.sources, "synthetic", fake, raising=False)
    raw = {"data": {"source": "synthetic", "seed": 7}, "synthetic": {DS: {"n_per_class": 10}}}
    main(parse_params(raw), DS, paths)
    assert calls[0][0] == DS and calls[0][2:] == ({"n_per_class": 10}, 7, DATASETS[DS].files)
    assert (paths.raw(DS) / "made.txt").read_text() == "ok"

    raw["synthetic"][DS]["fail"] = True
    with pytest.raises(RuntimeError):
        main(parse_params(raw), DS, paths)
    assert (paths.raw(DS) / "made.txt").exists()  # the previous complete output is untouched
    assert sorted(p.name for p in paths.raw(DS).parent.iterdir()) == [DS]


def test_unknown_dataset(paths):
    with pytest.raises(E2EError, match="unknown dataset 'nope'"):
        main(params("http://unused"), "nope", paths)
