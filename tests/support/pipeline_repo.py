"""Helpers for tests that drive real `dvc` commands: a tiny copy of the pipeline in a temporary git
repository, and checks of what DVC cached, recorded in dvc.lock and left in the workspace.

Not a test module: test_remote, test_queue, test_faults and test_security import it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
TASKS = ("electron_photon", "quark_gluon", "jet_mass")
BIN = Path(sys.executable).parent
# names that e2e.store.atomic (`.<name>.tmp-<pid>`), e2e.sources.fetch (`.part`) and DVC (`.<random>.tmp`)
# give files that are not complete yet
TEMP_NAME = re.compile(r"^\..*\.tmp(-\d+)?$|\.part$")


def tiny_params(**dotted) -> dict:
    """params.yaml shrunk to seconds of CPU per task (as in test_pipeline), then `dotted` overrides:
    tiny_params(**{"train.quark_gluon.epochs": 3})."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["synthetic"]["electron_photon"]["n_per_class"] = 150
    params["synthetic"]["quark_gluon"]["n_jets"] = 160
    params["synthetic"]["jet_mass"]["n_jets"] = 160
    params["runtime"]["convert_workers"] = 1
    params["runtime"]["threads"] = 1  # on a shared 2-core machine, spinning OpenMP threads cost 10x and more
    for task in TASKS:
        params["train"][task].update(epochs=1, batch_size=16)
    params["train"]["electron_photon"]["model_kwargs"] = {"width": 4}
    params["train"]["jet_mass"]["model_kwargs"] = {"width": 2}
    for key, value in dotted.items():
        set_param(params, key, value)
    return params


def set_param(params: dict, dotted: str, value) -> None:
    """params["a"]["b"]["c"] = value for dotted "a.b.c", making the sections that are missing."""
    *parents, last = dotted.split(".")
    node = params
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = copy.deepcopy(value)


def env(**extra: str) -> dict:
    """The stage commands call `python`: the venv's must come first on PATH."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "GIT_"))}
    return {
        **base,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "t@example.org",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "t@example.org",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        **extra,
    }


def run(cmd: list[str], cwd: Path, check: bool = True, timeout: float = 600, **extra_env: str) -> str:
    """Run a command to completion; return stdout + stderr; fail the test with its output if it fails."""
    proc = subprocess.run(cmd, cwd=cwd, env=env(**extra_env), capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    if check:
        assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{out[-4000:]}"
    return out


def failing(cmd: list[str], cwd: Path, timeout: float = 600, **extra_env: str) -> str:
    """Run a command that must fail; return its output."""
    proc = subprocess.run(cmd, cwd=cwd, env=env(**extra_env), capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, f"{' '.join(map(str, cmd))} succeeded but should have failed:\n{out[-3000:]}"
    return out


def write_params(repo: Path, params: dict) -> None:
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def make_repo(path: Path, params: dict | None = None) -> Path:
    """A git + DVC repository at `path` holding the pipeline (code, dvc.yaml, .dvc/config) and `params`.

    .dvc/config is the project's, so the default remote is `../e2e-dvc-storage` beside `path`: put each
    repository in a directory of its own under tmp_path and that remote stays inside it.
    """
    path.mkdir(parents=True)
    for name in ("dvc.yaml", ".gitignore", ".dvcignore", "presets", "src"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, path / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(src, path / name)
    write_params(path, params if params is not None else tiny_params())
    run(["git", "init", "-q"], path)
    identify(path)
    run(["dvc", "init", "-q"], path)
    for name in ("config", "offline_plots.html", "plots"):  # remote, offline page and custom plot templates
        src = ROOT / ".dvc" / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, path / ".dvc" / name)
    commit(path, "tiny pipeline")
    return path


def commit(repo: Path, message: str) -> None:
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", message, "--allow-empty"], repo)


def clone(src: Path, dest: Path) -> Path:
    run(["git", "clone", "-q", str(src), str(dest)], src.parent)
    identify(dest)
    return dest


def identify(repo: Path) -> None:
    """A committer identity in the repository itself: `dvc exp` commits through its own git library,
    which does not read the GIT_* variables of env(), and CI may have no global git config."""
    run(["git", "config", "user.name", "test"], repo)
    run(["git", "config", "user.email", "t@example.org"], repo)


def lock_outs(repo: Path) -> dict[str, str]:
    """Output path -> md5 as recorded in dvc.lock (directories end in .dir)."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return {o["path"]: o["md5"] for stage in lock["stages"].values() for o in stage.get("outs", [])}


def cache_dir(repo: Path) -> Path:
    return repo / ".dvc" / "cache" / "files" / "md5"


def stored_objects(store: Path) -> dict[str, Path]:
    """hash -> file for every object under a DVC cache or local remote (`<store>/ab/cdef...`)."""
    if not store.is_dir():
        return {}
    return {p.parent.name + p.name: p for p in store.rglob("*") if p.is_file()}


def referenced_objects(repo: Path, store: Path | None = None) -> set[str]:
    """Every object dvc.lock needs: each output's hash and, for a directory, the hashes of its files."""
    store = store or cache_dir(repo)
    wanted = set()
    for md5 in lock_outs(repo).values():
        wanted.add(md5)
        if md5.endswith(".dir"):
            listing = json.loads((store / md5[:2] / md5[2:]).read_text())
            wanted.update(entry["md5"] for entry in listing)
    return wanted


DVC_TEMP = re.compile(r"^\.[\w-]{22}\.tmp$")  # dvc-objects copies to `.<22 chars>.tmp`, then renames


def assert_objects_intact(store: Path, allow_dvc_temp: bool = False) -> int:
    """Every object's content hashes to its name, and no temporary or partial file sits in the store.

    `allow_dvc_temp`: DVC's own half-copied `.<random>.tmp` files are tolerated (a `dvc push` that hits
    a full remote leaves them behind); DVC never lists them as objects.
    """
    objects = stored_objects(store)
    for name, path in objects.items():
        if allow_dvc_temp and DVC_TEMP.match(path.name):
            continue
        assert re.fullmatch(r"[0-9a-f]{32}(\.dir)?", name), f"{path}: not a DVC object name (a partial upload?)"
        digest = hashlib.md5(path.read_bytes()).hexdigest()
        if name.endswith(".dir"):  # DVC hashes the listing as it serialises it, not the file's bytes
            listing = json.loads(path.read_text())
            assert isinstance(listing, list) and all("md5" in e and "relpath" in e for e in listing), path
        else:
            assert digest == name, f"{path}: content hashes to {digest}: a corrupt object in the cache"
    return len(objects)


def temp_files(repo: Path) -> list[Path]:
    """Leftovers with a temporary name under the stage outputs' directories."""
    found = []
    for top in ("data", "models", "metrics"):
        if (repo / top).exists():
            found += [p for p in (repo / top).rglob("*") if TEMP_NAME.search(p.name)]
    return found


def status(repo: Path, *args: str, **extra_env: str) -> dict:
    """`dvc status --json`: {} when everything is up to date."""
    out = run(["dvc", "status", "--json", *args], repo, **extra_env)
    return json.loads(out[out.index("{") : out.rindex("}") + 1]) if "{" in out else {}


def start(cmd: list[str], cwd: Path, **extra_env: str) -> subprocess.Popen:
    """Start a command in a process group of its own, so that it and its children can be killed together."""
    return subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env(**extra_env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def kill_when(proc: subprocess.Popen, ready, timeout: float = 120, what: str = "the condition") -> None:
    """SIGKILL the whole process group (dvc and the stage it runs) as soon as `ready()` is true."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"finished before {what} (rc {proc.returncode}):\n{proc.stdout.read()[-3000:]}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()


def restrict_to(repo: Path, task: str) -> None:
    """Cut dvc.yaml down to the five stages of one dataset/task (and its metrics and plots), so a test
    can run the whole graph, `dvc status` and `dvc repro` included, in seconds rather than a minute."""
    path = repo / "dvc.yaml"
    spec = yaml.safe_load(path.read_text())
    for stage in spec["stages"].values():
        stage["foreach"] = [task]
    spec["metrics"] = [m for m in spec["metrics"] if f"/{task}/" in m]
    spec["plots"] = [p for p in spec["plots"] if f"/{task}/" in (p if isinstance(p, str) else next(iter(p)))]
    path.write_text(yaml.safe_dump(spec, sort_keys=False))


_GOLDEN: dict[str, Path] = {}


def golden_repo(tmp_path_factory, task: str = "electron_photon") -> Path:
    """One repository per test session whose `task` graph has been reproduced, committed and pushed to
    its default remote (`../e2e-dvc-storage`, beside it). Tests clone it into its parent directory
    (`clone(golden, golden.parent / name)`), so the clones resolve the same remote, and pull.
    Built once and shared by test_remote and test_queue, also across pytest-xdist workers (in the
    directory above the workers' temp dirs, under a file lock, as pytest-xdist's documentation does);
    never modify it."""
    if task not in _GOLDEN:

        def build(repo: Path) -> None:
            make_repo(repo)
            restrict_to(repo, task)
            commit(repo, f"only the {task} stages")
            run(["dvc", "repro"], repo)
            commit(repo, "results")
            run(["dvc", "push"], repo)

        _GOLDEN[task] = built_once(tmp_path_factory, f"golden-{task}", build)
    return _GOLDEN[task]


def built_once(tmp_path_factory, name: str, build) -> Path:
    """`<name>/repo`, made by `build(path)` once per test run, also across pytest-xdist workers: in the
    directory above the workers' temp dirs, under a file lock (as pytest-xdist's documentation does)."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    repo, done = shared / name / "repo", shared / f"{name}.done"
    with FileLock(str(done) + ".lock"):
        if not done.exists():
            shutil.rmtree(repo.parent, ignore_errors=True)  # a half-built one, from an interrupted run
            build(repo)
            done.touch()
    return repo


def remote_dir(repo: Path) -> Path:
    """The project's default local remote as it resolves for `repo`: `../e2e-dvc-storage` beside it."""
    return repo.parent / "e2e-dvc-storage" / "files" / "md5"
