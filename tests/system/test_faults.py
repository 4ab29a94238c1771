"""Faults with real processes: `dvc repro` killed with SIGKILL mid-download, mid-conversion and
mid-training, and stages run out of disk space on a small tmpfs.

After each fault the next `dvc repro` must finish with the outputs an uninterrupted run gives (same
md5 in dvc.lock), and DVC must never have cached or pushed a partial file: the cache holds exactly
the objects the final dvc.lock references, each one hashing to its name, and no temporary name is
left under data/, models/ or metrics/.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from e2e.sources.registry import DATASETS

from support.http_server import FileServer
from support.pipeline_repo import (
    assert_objects_intact,
    cache_dir,
    commit,
    failing,
    kill_when,
    lock_outs,
    make_repo,
    referenced_objects,
    remote_dir,
    run,
    set_param,
    start,
    status,
    stored_objects,
    temp_files,
    tiny_params,
    write_params,
)

pytestmark = pytest.mark.slow
EG, QG = "electron_photon", "quark_gluon"
# the download's faults are not about the file layouts: the project's own files only ([shared] would repeat them)
OWN = pytest.mark.parametrize("formats_dir", ["own"], indirect=True)


def assert_cache_is_exactly_the_lock(repo: Path) -> None:
    """Nothing but complete objects that the final dvc.lock references: no partial file was cached."""
    assert_objects_intact(cache_dir(repo))
    assert set(stored_objects(cache_dir(repo))) == referenced_objects(repo)
    assert temp_files(repo) == []


def cernbox_params(base_url: str) -> dict:
    return tiny_params(
        **{
            "data.source": "cernbox",
            "download.base_url": base_url,
            "download.retries": 2,
            "download.backoff_s": 0.01,
            "download.timeout_s": 10,
            "download.chunk_mb": 0.0625,
        }
    )


@pytest.fixture
def egamma_server(tmp_path, formats_dir):
    """The reference e/gamma files, laid out as CERNBox serves them (<share>/<registry name>)."""
    for f in DATASETS[EG].files:
        (tmp_path / "srv" / f.share).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(formats_dir / EG / f.name, tmp_path / "srv" / f.share / f.name)
    with FileServer(tmp_path / "srv") as srv:
        yield srv


def assert_reference_files(repo: Path, formats_dir: Path) -> None:
    raw = repo / "data" / "raw" / EG
    assert sorted(p.name for p in raw.iterdir()) == sorted(f.name for f in DATASETS[EG].files)
    for f in DATASETS[EG].files:
        assert (raw / f.name).read_bytes() == (formats_dir / EG / f.name).read_bytes()


@OWN
def test_download_killed_midway_resumes_and_caches_only_the_verified_files(tmp_path, egamma_server, formats_dir):
    first = DATASETS[EG].files[0]
    url_path = f"/{first.share}/{first.name}"
    size = (formats_dir / EG / first.name).stat().st_size
    repo = make_repo(tmp_path / "repo", cernbox_params(egamma_server.url))
    egamma_server.fault(url_path, delay_s=0.2)  # ~2.6 s for the first file (~210 kB): time to kill it part-way
    part = repo / ".cache" / "partial" / EG / f"{first.name}.part"
    proc = start(["dvc", "repro", f"download@{EG}"], repo)
    kill_when(proc, lambda: part.exists() and part.stat().st_size >= 50_000, what="a part-way download")

    have = part.stat().st_size
    assert 0 < have < size
    assert not (repo / "data" / "raw" / EG).exists(), "a killed download left files where DVC looks"
    assert temp_files(repo) == [] and stored_objects(cache_dir(repo)) == {}
    assert f"download@{EG}" in status(repo)

    egamma_server.faults.clear()
    run(["dvc", "repro", f"download@{EG}"], repo)
    assert egamma_server.ranges(url_path)[-1] == f"bytes={have}-", "the download did not resume"
    assert_reference_files(repo, formats_dir)
    assert not part.exists()
    assert_cache_is_exactly_the_lock(repo)
    assert status(repo, f"download@{EG}") == {}
    resumed = lock_outs(repo)[f"data/raw/{EG}"]

    run(["dvc", "repro", "-f", "--no-run-cache", f"download@{EG}"], repo)  # uninterrupted, from byte 0
    assert egamma_server.ranges(url_path)[-1] is None
    assert lock_outs(repo)[f"data/raw/{EG}"] == resumed
    assert_cache_is_exactly_the_lock(repo)

    run(["dvc", "push"], repo)
    assert set(stored_objects(remote_dir(repo))) == referenced_objects(repo)
    assert_objects_intact(remote_dir(repo))


def test_conversion_killed_after_the_first_file_resumes_with_it(tmp_path):
    """SIGKILL once the first of three files is converted: the rerun reuses that file's part (outside the
    DVC outputs), converts the other two, and gives the md5s of an uninterrupted run."""
    repo = make_repo(
        tmp_path / "repo",
        tiny_params(**{f"synthetic.{QG}.n_jets": 900, f"convert.{QG}.batch_rows": 8, "runtime.convert_workers": 1}),
    )
    run(["dvc", "repro", f"download@{QG}"], repo)
    parts = repo / ".cache" / "convert" / QG
    first, *rest = [parts / f.name / "part.json" for f in DATASETS[QG].files]

    proc = start(["dvc", "repro", f"convert@{QG}"], repo)
    kill_when(proc, first.exists, what="the first file's part")
    assert not (repo / "data" / "converted" / QG).exists()
    assert not any(p.exists() for p in rest), "the kill came too late to test a resume"
    assert set(stored_objects(cache_dir(repo))) == referenced_objects(repo)  # the download's objects only
    assert f"convert@{QG}" in status(repo)

    out = run(["dvc", "repro", f"convert@{QG}"], repo)
    assert "1 of 3 files resumed" in out, out[-3000:]
    assert not parts.exists(), "the parts outlived a complete conversion"
    assert_cache_is_exactly_the_lock(repo)
    assert status(repo, f"convert@{QG}") == {}
    converted = lock_outs(repo)[f"data/converted/{QG}"]

    run(["dvc", "repro", "-f", "--no-run-cache", "-s", f"convert@{QG}"], repo)  # uninterrupted
    assert lock_outs(repo)[f"data/converted/{QG}"] == converted
    assert_cache_is_exactly_the_lock(repo)


def history(repo: Path) -> dict[str, str]:
    """Per-epoch metrics as DVCLive logged them, without wall-clock columns."""
    base = repo / "metrics" / EG / "train" / "plots" / "metrics"
    return {str(p.relative_to(base)): p.read_text() for p in sorted(base.rglob("*.tsv")) if "seconds" not in p.name}


def model_files(repo: Path) -> list[str]:
    """What train left in models/<task>/ (DVC's .gitignore aside): nothing while a training is unfinished."""
    return sorted(p.name for p in (repo / "models" / EG).glob("*") if p.name != ".gitignore")


def test_training_killed_midway_resumes_to_the_same_model(tmp_path):
    params = tiny_params(**{f"synthetic.{EG}.n_per_class": 400, f"train.{EG}.epochs": 3})  # ~1 s per epoch
    repo = make_repo(tmp_path / "repo", params)
    run(["dvc", "repro", f"split@{EG}"], repo)
    last = repo / ".cache" / "train" / EG / "last.pt"
    proc = start(["dvc", "repro", f"train@{EG}"], repo)
    kill_when(proc, last.exists, what="the first epoch's resumable checkpoint")
    assert not model_files(repo)
    assert not (repo / "metrics" / EG / "train").exists(), "a killed training left a stray metrics output"
    assert f"train@{EG}" in status(repo)
    assert_cache_is_exactly_the_lock(repo)  # download, convert and split only

    out = run(["dvc", "repro", f"train@{EG}"], repo)
    assert "resuming after epoch" in out, out[-3000:]
    assert not last.exists()
    assert_cache_is_exactly_the_lock(repo)
    model, logged = lock_outs(repo)[f"models/{EG}/model.pt"], history(repo)
    assert len(logged["train/loss.tsv"].splitlines()) == 1 + 3  # header and one row per epoch

    run(["dvc", "repro", "-f", "--no-run-cache", "-s", f"train@{EG}"], repo)  # uninterrupted
    assert lock_outs(repo)[f"models/{EG}/model.pt"] == model, "the resumed run trained a different model"
    assert history(repo) == logged

    # a changed experiment killed midway: DVC had deleted the outputs; `dvc checkout` brings the last good back
    params["train"][EG]["lr"] = 3e-4
    write_params(repo, params)
    proc = start(["dvc", "repro", f"train@{EG}"], repo)
    kill_when(proc, last.exists, what="the changed run's first checkpoint")
    assert not (repo / "metrics" / EG / "train").exists() and not model_files(repo)
    run(["dvc", "checkout", f"train@{EG}"], repo)  # the README's recovery command
    assert history(repo) == logged
    # only the param is stale: the outputs are the lock's again
    assert status(repo)[f"train@{EG}"] == [{"changed deps": {"params.yaml": {f"train.{EG}": "modified"}}}]


# ---- a full disk ------------------------------------------------------------------------------------


@pytest.fixture
def small_fs(tmp_path):
    """A 24 MiB tmpfs. Mounting needs root (CAP_SYS_ADMIN); without it the test skips and says why."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m", "e2e-test", str(mnt)], capture_output=True, text=True
    )
    if proc.returncode:
        pytest.skip(f"cannot mount a size-limited tmpfs at {mnt} (needs root): {proc.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(fs: Path, leave: int) -> Path:
    """Take all but `leave` bytes of the filesystem with a file outside the repository."""
    st = os.statvfs(fs)
    filler = fs / "filler"
    with open(filler, "wb") as fh:
        os.posix_fallocate(fh.fileno(), 0, st.f_bavail * st.f_frsize - leave)
    return filler


NO_SPACE = re.compile("no space left on device", re.I)


def test_full_disk_during_conversion_and_push_leaves_cache_and_workspace_consistent(small_fs):
    repo = make_repo(small_fs / "repo")
    run(["dvc", "repro", f"convert@{EG}"], repo)
    commit(repo, "results")
    before = lock_outs(repo)

    params = tiny_params()
    set_param(params, f"convert.{EG}.dtype", "float32")  # more bytes than are left
    write_params(repo, params)
    filler = fill(small_fs, leave=128 * 1024)  # the sparse output of 300 crops is ~0.4 MB
    convert_out = failing(["dvc", "repro", f"convert@{EG}"], repo)
    assert NO_SPACE.search(convert_out), convert_out[-3000:]
    assert not (repo / "data" / "converted" / EG).exists() and temp_files(repo) == []
    assert lock_outs(repo) == before  # nothing recorded for the failed run
    assert f"convert@{EG}" in status(repo)
    assert_objects_intact(cache_dir(repo))
    assert referenced_objects(repo) <= set(stored_objects(cache_dir(repo)))
    run(["dvc", "checkout", f"convert@{EG}"], repo)  # the last good output comes back from the cache, intact
    changed = status(repo, f"convert@{EG}")[f"convert@{EG}"]
    assert changed == [{"changed deps": {"params.yaml": {f"convert.{EG}": "modified"}}}], changed

    filler.unlink()  # "free some space and re-run"
    run(["dvc", "repro", f"convert@{EG}"], repo)
    assert status(repo, f"convert@{EG}") == {} and lock_outs(repo) != before
    assert_objects_intact(cache_dir(repo))
    commit(repo, "float32")

    # the default remote (../e2e-dvc-storage) is on the same small filesystem: fill it, then push
    filler = fill(small_fs, leave=256 * 1024)
    out = failing(["dvc", "push"], repo)
    assert NO_SPACE.search(out) or "failed to push" in out.lower(), out[-3000:]
    assert_objects_intact(remote_dir(repo), allow_dvc_temp=True)  # whatever got there under a hash is complete
    filler.unlink()
    run(["dvc", "push"], repo)
    assert status(repo, "--cloud") == {}
    assert_objects_intact(remote_dir(repo), allow_dvc_temp=True)
    assert "Traceback" not in convert_out and "no space left on device" in convert_out, convert_out[-2000:]


@OWN
def test_full_disk_during_download_fails_clearly_and_resumes_once_space_is_freed(small_fs, egamma_server, formats_dir):
    repo = make_repo(small_fs / "repo", cernbox_params(egamma_server.url))
    filler = fill(small_fs, leave=128 * 1024)  # the first e/gamma file is ~210 kB
    out = failing(["dvc", "repro", f"download@{EG}"], repo)
    assert re.search(r"error: no space left on device in .*partial.*; free some space and re-run", out), out
    assert "Traceback" not in out
    assert not (repo / "data" / "raw" / EG).exists() and temp_files(repo) == []
    assert stored_objects(cache_dir(repo)) == {}

    filler.unlink()  # first: the kept partial file left no byte, and `dvc status` itself writes to .dvc/tmp
    assert f"download@{EG}" in status(repo)
    run(["dvc", "repro", f"download@{EG}"], repo)
    first = DATASETS[EG].files[0]
    assert egamma_server.ranges(f"/{first.share}/{first.name}")[-1].startswith("bytes=")  # resumed
    assert_reference_files(repo, formats_dir)
    assert_cache_is_exactly_the_lock(repo)


def test_full_disk_during_synthetic_generation_leaves_nothing_behind(small_fs):
    repo = make_repo(small_fs / "repo", tiny_params(**{f"synthetic.{EG}.n_per_class": 2000}))
    fill(small_fs, leave=8 * 2**20)  # each e/gamma file needs 16 MB; 8 MB in, h5py's cleanup fails too
    out = failing(["dvc", "repro", f"download@{EG}"], repo)
    assert not (repo / "data" / "raw" / EG).exists() and temp_files(repo) == []
    assert stored_objects(cache_dir(repo)) == {}
    assert f"download@{EG}" in status(repo)
    assert re.search(r"error: no space left on device in .*; free some space and re-run", out), out[-2000:]
