"""Real servers for the integration tests: in this process on a free
loopback port (``start_server``, behind the fixtures in tests/conftest.py),
or `contactgraph serve` as a child process (``ServerProcess``).

Both bind 127.0.0.1 only and pick their own port."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

from graph.clock import ManualClock
from graph.config import GraphConfig
from service.server.config import ServerConfig
from service.server.server import Server, build_safety, create_server
from service.server.state import ServingState

REPO = Path(__file__).resolve().parents[2]
CONTACTGRAPH = Path(sys.executable).parent / "contactgraph"
SERVING = re.compile(r"contactgraph serving snapshot (\S+) on ([0-9.]+):(\d+)")


def policy_text(version: str = "test-contract-1") -> str:
    """The policy file of every test server, named ``version``.

    The suggestion contract under test does not depend on how often a test
    has asked: impression fatigue and exposure caps are set out of reach
    (the minor cap at its ceiling). Everything else is the built-in
    policy."""
    return f"""\
version = "{version}"
[fatigue]
max_impressions = 1000000
[exposure]
daily_cap_adult = 1000000
daily_cap_minor = 200
"""


TEST_POLICY = policy_text()


class RunningServer(NamedTuple):
    server: Server
    port: int
    clock: ManualClock

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


def server_config(snapshot_dir: Path, **config: object) -> ServerConfig:
    """127.0.0.1, a free port, four workers, a one-second grace period and
    the test policy (written beside the snapshot); ``config`` overrides."""
    policy = snapshot_dir.parent / "test_policy.toml"
    if not policy.exists():
        policy.write_text(TEST_POLICY)
    settings: dict[str, object] = {"host": "127.0.0.1", "port": 0, "workers": 4, "grace_s": 1.0,
                                   "policy_path": policy}
    settings.update(config)
    return ServerConfig(snapshot=snapshot_dir, **settings)  # type: ignore[arg-type]


def load_state(snapshot_dir: Path, clock: ManualClock) -> ServingState:
    """A fresh serving state (its own store) over the snapshot, under the
    test policy."""
    return ServingState.load(snapshot_dir, GraphConfig(), clock,
                             safety=build_safety(server_config(snapshot_dir), clock))


def start_server(snapshot_dir: Path, clock: ManualClock, **config: object) -> RunningServer:
    """A real server on a free loopback port over a fresh state of the
    snapshot, on ``clock``; ``config`` as for ``server_config``. The caller
    stops it (``running.server.stop(0)``)."""
    cfg = server_config(snapshot_dir, **config)
    state = ServingState.load(snapshot_dir, cfg.graph, clock, safety=build_safety(cfg, clock))
    server, port = create_server(cfg, state)
    return RunningServer(server, port, clock)


class ServerProcess:
    """`contactgraph serve` on a free port, as a child process; its stderr
    (JSON log lines) goes to ``log_path``. ``workers`` None leaves the
    command's default."""

    def __init__(self, snapshot: Path, log_path: Path, *args: str, workers: int | None = 8) -> None:
        self.snapshot = snapshot
        self.log_path = log_path
        self.args = (*(("--workers", str(workers)) if workers is not None else ()), *args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.host = ""
        self.port = 0
        self.snapshot_id = ""

    def start(self, timeout_s: float = 30.0) -> ServerProcess:
        """Start the server and wait for its "serving" line (the port it
        chose); raises RuntimeError with the log's tail if it never comes."""
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(self.log_path, "ab") as err:
            self.proc = subprocess.Popen(
                [str(CONTACTGRAPH), "serve", "--snapshot", str(self.snapshot), "--port", "0", *self.args],
                stdout=subprocess.PIPE, stderr=err, cwd=REPO, env=env)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        line = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if ready:
                line = self.proc.stdout.readline()
                match = SERVING.search(line.decode())
                if match:
                    self.snapshot_id, self.host, self.port = match.group(1), match.group(2), int(match.group(3))
                    return self
            if self.proc.poll() is not None:
                break
        self.kill()
        raise RuntimeError(f"server did not start (exit {self.proc.returncode}, last line {line!r}); "
                           f"log tail:\n{self.log_tail()}")

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.wait()

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM and wait for a graceful exit; returns the exit code
        (subprocess.TimeoutExpired after ``timeout_s``)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout_s)

    def wait(self, timeout_s: float = 30.0) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout=timeout_s)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return code

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text().splitlines()[-lines:])
        except OSError:
            return ""
