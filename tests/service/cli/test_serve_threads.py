"""`serve` limits BLAS/OpenMP thread pools in the process that serves."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from tests.conftest import TinyNetwork
from tests.support import server as server_support
from tests.support.server import REPO, ServerProcess

# Variables that would cap the pools on their own if they reached OpenBLAS
# before it loads: the test takes them away so that only the server's own
# limit can be seen.
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class TestServeThreadLimits:
    def test_every_loaded_pool_runs_one_thread(self, tiny_network: TinyNetwork, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
        """A real `serve` process logs, once loaded, threadpoolctl's view of
        each BLAS/OpenMP library it has loaded (numpy's OpenBLAS, FAISS's
        OpenBLAS and OpenMP): every one runs one thread."""
        command = tmp_path / "contactgraph"
        command.write_text(f'#!/bin/sh\ncd "{REPO}" && exec "{sys.executable}" -m service.cli "$@"\n')
        command.chmod(0o755)
        monkeypatch.setattr(server_support, "CONTACTGRAPH", command)
        for var in THREAD_VARS:
            monkeypatch.delenv(var, raising=False)
        log_path = tmp_path / "server.log"
        server = ServerProcess(tiny_network.snapshot_dir, log_path, "--no-wal", "--data-dir", str(tmp_path)).start()
        try:
            lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
        finally:
            assert server.stop() == 0
        pools = next(line["thread_pools"] for line in lines if line["msg"] == "thread pools limited")
        apis = {pool["api"] for pool in pools}
        assert {"openblas", "openmp"} <= apis, pools
        assert all(pool["num_threads"] == 1 for pool in pools), pools

    @pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: every pool runs one thread anyway")
    def test_without_a_limit_the_pools_would_use_more(self) -> None:
        """The check above means something: in a process that sets no
        limit, threadpoolctl reports more than one thread (so the log line
        reads the libraries, not a constant)."""
        import subprocess

        env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
        out = subprocess.run(
            [sys.executable, "-c", ("import numpy, faiss, json, threadpoolctl; "
                                    "print(json.dumps([p['num_threads'] for p in threadpoolctl.threadpool_info()]))")],
            env=env, capture_output=True, text=True, check=True, timeout=60).stdout
        assert max(json.loads(out)) > 1
