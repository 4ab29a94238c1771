"""Two gloo ranks of `train` under torchrun on the CPU (ddp_worker.py each), for test_ddp and test_gpu: what each
rank saw, and a run that hangs in a collective failed and killed rather than waited on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from support import processes

WORKER = Path(__file__).with_name("ddp_worker.py")


def run_ranks(
    tmp_path: Path, roots: list[Path], *, metrics=None, fail_at=None, timeout: int = 240
) -> tuple[int, str, list[dict]]:
    """tests/support/ddp_worker.py on 2 gloo ranks: (exit status, output, what each rank saw). A run that has not
    ended after `timeout` seconds (a rank waiting in a collective) fails the test, its processes killed."""
    out = tmp_path / f"ranks{len(list(tmp_path.glob('ranks*')))}"
    out.mkdir()
    cfg = {"roots": [str(r) for r in roots], "metrics": metrics, "fail_at": fail_at, "out": str(out)}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "E2E_DDP_TEST": json.dumps(cfg)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        text = proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        processes.kill(processes.under(tmp_path, os.environ[processes.MARK]))  # torchrun and its workers
        text = proc.communicate()[0]
        pytest.fail(f"the ranks did not finish within {timeout} s:\n{text[-3000:]}")
    return proc.returncode, text, [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
