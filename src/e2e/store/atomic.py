"""Write-then-rename, so an interrupted stage never leaves a half file that DVC could cache."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path

from e2e.errors import E2EError


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, is_dir: bool = False):
    """Yield a temporary sibling of `final`; on success it replaces `final`, on any error it is removed.

    The temporary name lives in the same directory so the rename is atomic on POSIX.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".{final.name}.tmp-*"):  # left by a killed run (any pid)
        _remove(stale)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    if is_dir:
        tmp.mkdir()
    try:
        yield tmp
    except BaseException as exc:
        _remove(tmp)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:  # every stage writes through here
            raise E2EError(
                f"no space left on device in {final.parent} (writing {final.name}); free some space and re-run"
            ) from None
        raise
    _remove(final)
    os.replace(tmp, final)
