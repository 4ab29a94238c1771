"""DVC remotes: what one clone reproduced and pushed, a fresh clone pulls complete, with nothing to rerun.

The source repository is pipeline_repo.golden_repo: the electron_photon graph (all five stages)
reproduced on tiny synthetic data and pushed to the project's default remote, `../e2e-dvc-storage`
as `.dvc/config` sets it. The S3 test runs moto's S3 server on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import os
import threading

import pytest

from support.pipeline_repo import (
    assert_objects_intact,
    clone,
    commit,
    lock_outs,
    referenced_objects,
    remote_dir,
    run,
    status,
    stored_objects,
)
from support.pipeline_repo import golden_repo as build_golden

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    return build_golden(tmp_path_factory)


def output_files(repo) -> dict[str, str]:
    """Relative path -> md5 of every file of every output in dvc.lock."""
    found = {}
    for out in lock_outs(repo):
        path = repo / out
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for f in files:
            found[str(f.relative_to(repo))] = hashlib.md5(f.read_bytes()).hexdigest()
    return found


def assert_complete_copy(repo, source) -> None:
    """Every output dvc.lock names is there, byte for byte the source's, and DVC has nothing to do."""
    assert lock_outs(repo) == lock_outs(source)
    missing = [out for out in lock_outs(repo) if not (repo / out).exists()]
    assert not missing, f"outputs not pulled: {missing}"
    assert output_files(repo) == output_files(source)
    assert status(repo) == {}, "dvc status is not clean after pull"
    out = run(["dvc", "repro"], repo)
    assert "Running stage" not in out, f"dvc repro recomputed after a pull:\n{out}"


def test_fresh_clone_pulls_every_output_from_the_default_local_remote(golden):
    """`git clone` + `dvc pull` next to the pushing clone resolves the same `../e2e-dvc-storage`."""
    store = remote_dir(golden)
    assert store.is_dir(), f"dvc push did not fill the default remote at {store.parent}"
    assert referenced_objects(golden, store) <= set(stored_objects(store))
    assert_objects_intact(store)

    colleague = clone(golden, golden.parent / "colleague")
    assert not any((colleague / out).exists() for out in lock_outs(colleague))  # git holds no data
    out = run(["dvc", "pull"], colleague)
    assert "fetched" in out.lower() or "added" in out.lower(), out
    assert_complete_copy(colleague, golden)
    assert status(colleague, "--cloud") == {}, "the default remote is not in sync with the pulled cache"


@pytest.fixture(scope="module")
def s3_endpoint():
    """moto's S3 server on 127.0.0.1 (an ephemeral port), for the duration of the module."""
    try:
        import boto3  # noqa: F401
        import dvc_s3  # noqa: F401
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        pytest.skip(f"S3 test needs moto[server], boto3 and dvc-s3 (pip install -r requirements.lock): {exc}")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    starter = threading.Thread(target=server.start, daemon=True)  # start() waits forever if the bind fails
    starter.start()
    starter.join(30)
    if starter.is_alive():
        pytest.skip("moto's S3 server did not start on 127.0.0.1 within 30 s")
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws_env(tmp_path) -> dict[str, str]:
    """Fake credentials, and no ~/.aws files, so nothing real can be reached or used."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
    }


def test_s3_remote_push_then_pull_into_a_clone_elsewhere(golden, s3_endpoint, aws_env, tmp_path, monkeypatch):
    """The README's S3 recipe against moto: dvc does not create buckets, so the test does first."""
    import boto3

    for key, value in aws_env.items():
        monkeypatch.setenv(key, value)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="e2e-test")

    a = clone(golden, golden.parent / "s3-pusher")
    run(["dvc", "pull"], a)  # from the local remote
    run(["dvc", "remote", "add", "-d", "store", "s3://e2e-test/e2e"], a)
    run(["dvc", "remote", "modify", "store", "endpointurl", s3_endpoint], a)
    commit(a, "S3 remote")
    run(["dvc", "push"], a, **aws_env)
    keys = {
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket="e2e-test")
        for o in page.get("Contents", [])
    }
    pushed = {k.removeprefix("e2e/files/md5/").replace("/", "") for k in keys}
    assert referenced_objects(a) <= pushed, "dvc push did not upload every object dvc.lock needs"
    assert status(a, "--cloud", **aws_env) == {}

    # a parent directory of its own: `../e2e-dvc-storage` does not exist there, so only S3 can serve it
    b = clone(a, tmp_path / "elsewhere" / "repo")
    assert not (b.parent / "e2e-dvc-storage").exists()
    run(["dvc", "pull"], b, **aws_env)
    assert_complete_copy(b, golden)
    assert status(b, "--cloud", **aws_env) == {}, "dvc status -c: cache and S3 remote differ"
    assert not (b.parent / "e2e-dvc-storage").exists()
    assert os.listdir(b / ".dvc" / "cache")  # the objects came from S3 into the new clone's cache
