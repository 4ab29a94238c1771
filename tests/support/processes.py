"""Processes started by tests: each carries a per-session mark in its environment, so that those still
alive when they should not be (a daemonised `dvc exp queue-worker`, a killed test's children) are found
however they were started, and killed.

Not a test module: conftest.py checks the whole session, test fixtures clean up after themselves.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

MARK = "E2E_TEST_SESSION"


def _environ(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:  # gone, or another user's
        return b""


def marked(mark: str) -> dict[int, str]:
    """{pid: command line} of the live processes whose environment holds MARK=mark, but this one."""
    needle = f"{MARK}={mark}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid() and needle in _environ(int(entry.name)).split(b"\0"):
            try:
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                continue
            if state != "Z":  # a zombie has ended; only its parent's wait() is missing
                found[int(entry.name)] = cmd
    return found


def ends_with_us(pid: int, cmd: str) -> bool:
    """multiprocessing's resource tracker, started by a spawn-based pool run in this process (convert's
    workers): it serves this process and exits with it, so it is no leftover."""
    try:
        ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return False
    return ppid == os.getpid() and "multiprocessing.resource_tracker" in cmd


def kill(pids) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def under(path: Path, mark: str) -> list[int]:
    """The marked processes whose working directory is inside `path` (a test's repository)."""
    path, pids = Path(path).resolve(), []
    for pid in marked(mark):
        try:
            cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
        except OSError:
            continue
        if cwd == path or path in cwd.parents:
            pids.append(pid)
    return pids
