"""Untrusted bytes never execute, and a server never chooses where a download lands.

- Checkpoints load with torch.load(weights_only=True): one that carries a pickle payload is refused
  and the payload never runs (it would create a marker file; a control load with weights_only=False
  shows that it does).
- Data files load with allow_pickle=False: an object-dtype .npy in data/converted or data/splits is
  refused, and its payload never runs.
- Downloaded files land under the registry's names, whatever Content-Disposition the server sends,
  and only after verification; a share's listing never makes the download contact another host or
  leave the share (hrefs with `..` or an encoded `/` are refused), and an archive's member names never
  choose where a file lands (a `../../` member is extracted to the registry's name, inside the repo).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from e2e.config import Paths, parse_params
from e2e.errors import E2EError
from e2e.runtime.batches import Converted
from e2e.sources.registry import DATASETS
from e2e.stages import convert, split
from e2e.stages.download import main as download
from e2e.store.checkpoints import load_checkpoint
from e2e.store.splits import load_split

from support.http_server import FileServer

EG = "electron_photon"
# not about the file layouts: these run on the project's own files only ([shared] would repeat them)
OWN = pytest.mark.parametrize("formats_dir", ["own"], indirect=True)
PARAMS = {
    "split": {"seed": 3, "val_fraction": 0.25, "test_fraction": 0.25},
    "runtime": {"device": "cpu"},
    "train": {EG: {"model": "resnet15", "model_kwargs": {"width": 4}, "epochs": 1, "batch_size": 16}},
}


class Payload:
    """Unpickling this calls exec(): it writes `marker`, which the tests then look for."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('the payload ran')",)


def cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "e2e", "--params", str(root / "params.yaml"), "--root", str(root), *args]
    return subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=300)


def assert_payload_is_live(load_unsafely: str, marker: Path) -> None:
    """Control: the same file loaded the unsafe way does run the payload, so the refusal was real."""
    assert not marker.exists()
    subprocess.run([sys.executable, "-c", load_unsafely], check=True, capture_output=True)
    assert marker.read_text() == "the payload ran"


@pytest.fixture
def root(raw_root) -> Path:
    """A repo-like root with the reference e/gamma files converted and split, and params.yaml."""
    params = parse_params(PARAMS)
    convert.main(params, EG, Paths(raw_root))
    split.main(params, EG, Paths(raw_root))
    (raw_root / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    return raw_root


def malicious_checkpoint(path: Path, marker: Path) -> Path:
    """What a checkpoint looks like, plus an object whose unpickling runs code."""
    path.parent.mkdir(parents=True, exist_ok=True)
    spec = {
        "model": "resnet15",
        "model_kwargs": {"width": 4},
        "in_channels": 2,
        "image_size": [32, 32],
        "num_outputs": 1,
        "classification": True,
        "task": EG,
    }
    torch.save({"spec": spec, "state_dict": {}, "epoch": 0, "metrics": {}, "note": Payload(marker)}, path)
    return path


def test_malicious_checkpoint_is_refused_by_load_checkpoint(tmp_path):
    marker = tmp_path / "pwned"
    ckpt = malicious_checkpoint(tmp_path / "model.pt", marker)
    with pytest.raises(E2EError, match=r"model\.pt: refused to load checkpoint \(UnpicklingError"):
        load_checkpoint(ckpt)
    assert not marker.exists(), "the checkpoint's payload ran"
    assert_payload_is_live(f"import torch; torch.load({str(ckpt)!r}, weights_only=False)", marker)


@OWN
def test_evaluate_and_predict_refuse_a_malicious_model_and_exit_non_zero(root):
    marker = root / "pwned"
    ckpt = malicious_checkpoint(root / "models" / EG / "model.pt", marker)
    proc = cli(root, "evaluate", EG)
    assert proc.returncode != 0
    assert f"error: {ckpt}: refused to load checkpoint" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not (root / "metrics" / EG / "eval").exists()

    meta = json.loads((root / "data" / "converted" / EG / "meta.json").read_text())
    keys = ("dataset", "dtype", "channels", "channel_names", "preprocessing")  # what train writes beside it
    (ckpt.parent / "preprocessing.json").write_text(json.dumps({k: meta[k] for k in keys}))
    raw = root / "data" / "raw" / EG / DATASETS[EG].files[0].name
    proc = cli(root, "predict", EG, "--input", str(raw), "--model", str(ckpt), "--output", str(root / "p.parquet"))
    assert proc.returncode != 0 and "refused to load checkpoint" in proc.stderr, proc.stderr
    assert not (root / "p.parquet").exists()
    assert not marker.exists(), "the checkpoint's payload ran"


@OWN
def test_training_never_unpickles_a_planted_resume_checkpoint(root):
    """.cache/train/<task>/last.pt sits outside DVC's outputs, so anything could have put it there."""
    marker = root / "pwned"
    malicious_checkpoint(root / ".cache" / "train" / EG / "last.pt", marker)
    proc = cli(root, "train", EG)
    assert not marker.exists(), "the resume checkpoint's payload ran"
    if proc.returncode == 0:  # ignoring it and starting afresh is safe too
        assert "resuming" not in proc.stdout
        return
    assert not (root / "models" / EG).exists()
    assert "Traceback" not in proc.stderr and "error:" in proc.stderr, proc.stderr[-2000:]


def poison(path: Path, marker: Path) -> None:
    """Replace a .npy with an object array whose element runs code when unpickled."""
    np.save(path, np.array([Payload(marker)] * 4, dtype=object), allow_pickle=True)


@pytest.mark.parametrize(
    "name, stages", [("values.npy", ["train"]), ("offsets.npy", ["train"]), ("target.npy", ["split", "train"])]
)
@OWN
def test_object_dtype_array_in_converted_data_is_refused(root, name, stages):
    marker = root / "pwned"
    target = root / "data" / "converted" / EG / name
    poison(target, marker)
    with pytest.raises((ValueError, E2EError), match="(?i)pickle|object"):
        Converted(target.parent)
    assert not marker.exists()
    tracebacks = []
    for stage in stages:
        proc = cli(root, stage, EG)
        assert proc.returncode != 0, f"{stage} accepted an object array in {target}"
        tracebacks += [stage] if "Traceback" in proc.stderr else []
    assert not marker.exists(), f"the payload in {target} ran"
    assert_payload_is_live(f"import numpy; numpy.load({str(target)!r}, allow_pickle=True)", marker)
    assert not tracebacks, f"{tracebacks}: a traceback instead of a one-line error"


@OWN
def test_object_dtype_split_is_refused(root):
    marker = root / "pwned"
    poison(root / "data" / "splits" / EG / "train.npy", marker)
    with pytest.raises(E2EError, match="allow_pickle=False"):
        load_split(root / "data" / "splits" / EG)
    assert cli(root, "train", EG).returncode != 0
    assert not marker.exists()


# ---- where downloads land ---------------------------------------------------------------------------

HOSTILE_NAMES = [
    'attachment; filename="../../../../evil.hdf5"',
    "attachment; filename*=UTF-8''..%2F..%2F..%2Fevil.hdf5",
    'attachment; filename="/tmp/evil.hdf5"',
    'attachment; filename="SingleElectronPt50_IMGCROPS_n249k_RHv1.hdf5"',  # the *other* file's name
]


class DispositionServer(FileServer):
    """The loopback file server, adding a Content-Disposition header of our choosing to every response."""

    def __init__(self, directory: Path, disposition: str):
        super().__init__(directory)
        base = self._httpd.RequestHandlerClass

        class Handler(base):
            def end_headers(self):
                self.send_header("Content-Disposition", disposition)
                super().end_headers()

        self._httpd.RequestHandlerClass = Handler


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("disposition", HOSTILE_NAMES)
def test_content_disposition_never_chooses_the_file_name(tmp_path, formats_dir, disposition, monkeypatch):
    files = DATASETS[EG].files
    srv_dir = tmp_path / "srv"
    for f in files:
        (srv_dir / f.share).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(formats_dir / EG / f.name, srv_dir / f.share / f.name)
    # the registry knows the true checksums, so every file is verified before it is moved into place
    known = tuple(
        dataclasses.replace(
            f, sha256=sha256(formats_dir / EG / f.name), size=(formats_dir / EG / f.name).stat().st_size
        )
        for f in files
    )
    monkeypatch.setitem(DATASETS, EG, dataclasses.replace(DATASETS[EG], files=known))
    root = tmp_path / "work" / "repo"
    params = parse_params(
        {"data": {"source": "cernbox"}, "download": {"base_url": "", "retries": 1, "backoff_s": 0.01, "timeout_s": 5}}
    )
    before = {p for p in Path("/tmp").glob("evil*")}
    with DispositionServer(srv_dir, disposition) as srv:
        params = dataclasses.replace(params, download=dataclasses.replace(params.download, base_url=srv.url))
        # first a corrupted second file: verification fails and nothing lands anywhere
        srv.fault(f"/{files[1].share}/{files[1].name}", corrupt=True)
        with pytest.raises(E2EError, match="checksum mismatch"):
            download(params, EG, Paths(root))
        assert not (root / "data" / "raw" / EG).exists()
        srv.faults.clear()
        download(params, EG, Paths(root))
    raw = root / "data" / "raw" / EG
    assert sorted(p.name for p in raw.iterdir()) == sorted(f.name for f in files)
    for f in files:
        assert (raw / f.name).read_bytes() == (formats_dir / EG / f.name).read_bytes()
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file() and "srv" not in p.parts)
    assert written == sorted([f"work/repo/data/raw/{EG}/{f.name}" for f in files]), written
    assert {p for p in Path("/tmp").glob("evil*")} == before


# ---- what a share's listing and archive may name ---------------------------------------------------------

QG = "quark_gluon"


class ListingServer(FileServer):
    """The loopback file server, answering every PROPFIND with the multistatus body of our choosing."""

    def __init__(self, directory: Path, hrefs: list[str]):
        super().__init__(directory)
        base = self._httpd.RequestHandlerClass
        body = (
            '<?xml version="1.0"?><d:multistatus xmlns:d="DAV:">'
            + "".join(
                f"<d:response><d:href>{h}</d:href><d:propstat><d:prop><d:resourcetype/></d:prop>"
                "<d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>"
                for h in hrefs
            )
            + "</d:multistatus>"
        ).encode()

        class Handler(base):
            def do_PROPFIND(self):
                self.send_response(207)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._httpd.RequestHandlerClass = Handler


def share_params(url: str, **download):
    return parse_params(
        {
            "data": {"source": "cernbox"},
            "download": {
                "base_url": url,
                "archive_url": f"{url}/index.php/s",
                "retries": 1,
                "backoff_s": 0.01,
                "timeout_s": 5,
                **download,
            },
        }
    )


@OWN
def test_listing_hrefs_never_choose_the_host_or_leave_the_share(tmp_path, formats_dir):
    files = DATASETS[QG].files
    share = files[0].share
    (tmp_path / "srv" / share).mkdir(parents=True)
    for f in files:
        shutil.copyfile(formats_dir / QG / f.name, tmp_path / "srv" / share / f.name)
    root = tmp_path / "repo"
    # another host in the href: only its path inside the share is used, fetched from download.base_url
    with ListingServer(tmp_path / "srv", [f"http://evil.invalid/{share}/{f.name}" for f in files]) as srv:
        download(share_params(srv.url), QG, Paths(root))
    assert [s.path for s in srv.seen] == [f"/{share}/{f.name}" for f in files]
    name = files[0].name
    for hostile in (f"/{share}/../other/{name}", f"/{share}/a%2F..%2F{name}", f"/other/{name}"):
        with ListingServer(tmp_path / "srv", [hostile]) as srv, pytest.raises(E2EError, match="the listing names"):
            download(share_params(srv.url), QG, Paths(tmp_path / "repo2"))
        assert srv.seen == [] and not (tmp_path / "repo2" / "data").exists()


@OWN
def test_archive_member_names_never_choose_where_a_file_lands(tmp_path, formats_dir):
    import zipfile

    files = DATASETS[QG].files
    srv_dir = tmp_path / "srv"
    archive = srv_dir / "index.php" / "s" / files[0].share / "download"
    archive.parent.mkdir(parents=True)
    with zipfile.ZipFile(archive, "w") as zf:
        for f in files:
            zf.write(formats_dir / QG / f.name, f"../../../../{f.name}")
    root = tmp_path / "work" / "repo"
    with FileServer(srv_dir) as srv:
        download(share_params(srv.url, mode="archive"), QG, Paths(root))
    raw = root / "data" / "raw" / QG
    for f in files:
        assert (raw / f.name).read_bytes() == (formats_dir / QG / f.name).read_bytes()
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file() and "srv" not in p.parts)
    expected = [f"work/repo/checksums/{QG}.sha256"] + [f"work/repo/data/raw/{QG}/{f.name}" for f in files]
    assert written == sorted(expected)
