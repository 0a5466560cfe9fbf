"""The command line's conventions: each kind of failure has its own exit
code (2 usage, 3 bad input data, 4 unreachable server, 5 NOT_SERVING), run
as a user runs it (a subprocess); and every command that prints gives one
JSON document on stdout under --json."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from grpc_health.v1 import health_pb2

from contactgraph.v1 import wal_record_pb2
from graph.snapshot import read_manifest
from service.cli.exit_codes import ExitCode, epilog
from service.cli.main import build_parser, main
from service.durability.wal import WriteAheadLog
from service.server.config import WalConfig
from service.server.server import SERVICE_NAMES
from tests.conftest import TinyNetwork
from tests.support.durability import message
from tests.support.server import RunningServer

ROOT = Path(__file__).resolve().parents[3]
GOOD_POLICY = 'version = "v1"\n'
BAD_POLICY = 'version = "v"\n[age]\nmin_dm_band = "13_15"\n'


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "service.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=timeout, check=False)


def _closed_port() -> str:
    """A loopback address nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    """Run the command in this process; its exit code must be 0 and its
    stdout exactly one JSON document."""
    code = main(list(argv))
    out = capsys.readouterr()
    assert code == ExitCode.OK, out.err
    return json.loads(out.out)


def _write_wal(directory: Path, batches: int = 3) -> None:
    wal = WriteAheadLog.open(WalConfig(directory))
    for i in range(batches):
        record = wal_record_pb2.WalRecord(first_sequence=i + 1, server_time=1_750_000_060.0,
                                          events=[message(f"m{i}", 1, 2)])
        wal.sync(wal.append(record))
    wal.close()


class TestCodes:
    def test_values_are_the_documented_ones(self) -> None:
        """The numbers scripts depend on: changing one is a breaking change."""
        assert [(c.name, int(c)) for c in ExitCode] == [
            ("OK", 0), ("FAILURE", 1), ("USAGE", 2), ("BAD_INPUT", 3), ("UNREACHABLE", 4), ("NOT_SERVING", 5)]

    def test_every_command_documents_its_exit_codes(self) -> None:
        """Each subcommand's --help (nested ones too) ends with the exit
        codes paragraph: 0, 1 and 2 always, each with its meaning."""
        todo = [("contactgraph", build_parser({}))]
        commands = 0
        while todo:
            name, parser = todo.pop()
            for action in parser._actions:
                if isinstance(action, argparse._SubParsersAction):
                    todo += [(f"{name} {sub}", p) for sub, p in action.choices.items()]
            if name == "contactgraph":
                continue
            commands += 1
            assert re.fullmatch(r"exit codes: 0 ok.*, 1 failure.*, 2 usage error.*\.", parser.epilog or ""), name
        assert commands >= 20
        assert epilog({ExitCode.BAD_INPUT: "a bad file"}) == (
            "exit codes: 0 ok, 1 failure, 2 usage error, 3 bad input data (a bad file).")


class TestUsage:
    @pytest.mark.parametrize("args", [
        ("rebuild",),
        ("rebuild", "--events", "x.csv", "--out", "snap", "--max-errors", "-1"),
        ("serve", "--snapshot", "nowhere", "--client-role", "operator=ops"),
        ("probe", "health", "--timeout", "soon"),
    ], ids=["missing_flag", "negative_max_errors", "client_role_without_tls", "bad_flag_value"])
    def test_usage_errors_exit_2(self, args: tuple[str, ...]) -> None:
        """A command line that cannot run: exit 2 and a message, whether
        argparse or the command finds it (flags that do not go together)."""
        out = _cli(*args)
        assert out.returncode == ExitCode.USAGE, out.stderr
        assert out.stderr.strip() and "Traceback" not in out.stderr


class TestBadInput:
    def test_bad_policy_file(self, tmp_path: Path) -> None:
        """`policy check` of a file that breaks a rule: exit 3 naming the key."""
        (tmp_path / "bad.toml").write_text(BAD_POLICY)
        out = _cli("policy", "check", str(tmp_path / "bad.toml"))
        assert out.returncode == ExitCode.BAD_INPUT and "age.min_dm_band" in out.stderr, out.stderr

    def test_not_a_snapshot(self, tmp_path: Path) -> None:
        """`snapshot verify` of a directory that is no snapshot: exit 3."""
        out = _cli("snapshot", "verify", str(tmp_path))
        assert out.returncode == ExitCode.BAD_INPUT and "not a snapshot directory" in out.stderr, out.stderr

    def test_missing_wal_directory(self, tmp_path: Path) -> None:
        """`wal info` of a directory that does not exist: exit 3 (it used to
        report an empty log and exit 0)."""
        out = _cli("wal", "info", str(tmp_path / "absent"))
        assert out.returncode == ExitCode.BAD_INPUT and "no such directory" in out.stderr, out.stderr

    def test_missing_event_log(self, tmp_path: Path) -> None:
        """`rebuild` of an event log that does not exist: exit 3, not the
        code of a failed write."""
        out = _cli("rebuild", "--events", str(tmp_path / "absent.csv"), "--out", str(tmp_path / "snap"))
        assert out.returncode == ExitCode.BAD_INPUT, out.stderr
        assert "absent.csv" in out.stderr

    def test_load_with_too_few_user_ids(self, tmp_path: Path) -> None:
        """`probe load` with a user id file of one id: exit 3 before any
        connection is tried."""
        (tmp_path / "users.txt").write_text("7\n")
        out = _cli("probe", "load", "--users-file", str(tmp_path / "users.txt"), "--target", _closed_port(),
                   "--requests", "1")
        assert out.returncode == ExitCode.BAD_INPUT and "two user ids" in out.stderr, out.stderr

    def test_eval_without_its_data(self, tmp_path: Path) -> None:
        """`eval` with no data set under --data: exit 3 naming the file."""
        out = _cli("eval", "--data", str(tmp_path), "--datasets", "collegemsg")
        assert out.returncode == ExitCode.BAD_INPUT and "CollegeMsg" in out.stderr, out.stderr


@pytest.mark.integration
class TestServer:
    @pytest.mark.parametrize("args", [("health",), ("suggest", "1"), ("check", "1", "2")])
    def test_closed_port_is_unreachable(self, args: tuple[str, ...]) -> None:
        """A probe of a port nothing listens on: exit 4 and "cannot reach"."""
        out = _cli("probe", *args, "--target", _closed_port(), "--timeout", "5")
        assert out.returncode == ExitCode.UNREACHABLE, out.stderr
        assert "cannot reach" in out.stderr

    def test_load_against_a_closed_port_is_unreachable(self, tmp_path: Path) -> None:
        (tmp_path / "users.txt").write_text("1\n2\n3\n")
        out = _cli("probe", "load", "--users-file", str(tmp_path / "users.txt"), "--target", _closed_port(),
                   "--requests", "5", "--quiet")
        assert out.returncode == ExitCode.UNREACHABLE and "cannot reach" in out.stderr, out.stderr

    def test_health_not_serving(self, server_factory: Any) -> None:
        """`probe health` when one service says NOT_SERVING: exit 5, the
        table (and the JSON) naming it; SERVING again: exit 0."""
        running: RunningServer = server_factory()
        graph = next(name for name in SERVICE_NAMES if name.endswith("GraphService"))
        running.server.health.set(graph, health_pb2.HealthCheckResponse.NOT_SERVING)
        out = _cli("probe", "health", "--target", running.target)
        assert out.returncode == ExitCode.NOT_SERVING, out.stderr
        assert any(graph in line and "NOT_SERVING" in line for line in out.stdout.splitlines()), out.stdout
        out = _cli("probe", "health", "--target", running.target, "--json")
        assert out.returncode == ExitCode.NOT_SERVING
        document = json.loads(out.stdout)
        assert document["ok"] is False and document["services"][graph] == "NOT_SERVING"
        running.server.health.set(graph, health_pb2.HealthCheckResponse.SERVING)
        assert _cli("probe", "health", "--target", running.target).returncode == ExitCode.OK

    def test_probe_commands_print_json(self, server: RunningServer, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
        """Every probe command prints one JSON document under --json."""
        target = ("--target", server.target)
        assert "suggestions" in _json(capsys, "probe", "suggest", "1", "--json", *target)
        assert "allowed" in _json(capsys, "probe", "check", "1", "2", "--json", *target)
        assert isinstance(_json(capsys, "probe", "explain", "1", "10", "--json", *target), dict)
        assert isinstance(_json(capsys, "probe", "relationship", "1", "2", "--json", *target), dict)
        assert isinstance(_json(capsys, "probe", "guardian", "transparency", "1", "--json", *target), dict)
        assert _json(capsys, "probe", "health", "--json", *target)["ok"] is True
        (tmp_path / "users.txt").write_text("1\n2\n3\n")
        load = _json(capsys, "probe", "load", "--users-file", str(tmp_path / "users.txt"), "--requests", "20",
                     "--concurrency", "2", "--quiet", "--json", *target)
        assert load["requests"] == 20 and load["ok"] > 0


class TestJson:
    def test_rebuild(self, tmp_path: Path, tiny_network: TinyNetwork, capsys: pytest.CaptureFixture[str]) -> None:
        """`rebuild --json`: the report (inputs, counts, phases) as JSON,
        naming the snapshot it wrote."""
        document = _json(capsys, "rebuild", "--events", *map(str, tiny_network.log_paths), "--out",
                         str(tmp_path / "snap"), "--json")
        assert document["snapshot_id"] == read_manifest(tmp_path / "snap")["snapshot_id"]
        assert [i["path"] for i in document["inputs"]] == [str(p) for p in tiny_network.log_paths]
        assert document["events"] == sum(i["kept"] for i in document["inputs"])
        assert "total" in document["seconds"] and document["reject_file"] is None

    def test_snapshot_info_and_verify(self, tiny_network: TinyNetwork, capsys: pytest.CaptureFixture[str]) -> None:
        snapshot = str(tiny_network.snapshot_dir)
        manifest = read_manifest(tiny_network.snapshot_dir)
        assert _json(capsys, "snapshot", "info", snapshot, "--json")["snapshot_id"] == manifest["snapshot_id"]
        verified = _json(capsys, "snapshot", "verify", snapshot, "--json")
        assert verified == {"dir": snapshot, "ok": True, "files": len(manifest["files"])}

    def test_policy_check_and_diff(self, tmp_path: Path, tiny_network: TinyNetwork,
                                   capsys: pytest.CaptureFixture[str]) -> None:
        (tmp_path / "p.toml").write_text(GOOD_POLICY)
        checked = _json(capsys, "policy", "check", str(tmp_path / "p.toml"), "--json")
        assert checked == {"file": str(tmp_path / "p.toml"), "ok": True, "version": "v1", "region_overrides": 0}
        diff = _json(capsys, "policy", "diff", str(tmp_path / "p.toml"), str(tmp_path / "p.toml"), "--snapshot",
                     str(tiny_network.snapshot_dir), "--json")
        assert diff["old_version"] == diff["new_version"] == "v1"
        assert diff["removed"] == diff["added"] == {} and diff["viewers"] > 0

    def test_wal_info_compact_and_repair(self, tmp_path: Path, tiny_network: TinyNetwork,
                                         capsys: pytest.CaptureFixture[str]) -> None:
        """`wal info/compact/repair --json` on a three-record log; `wal
        info` text lists the segments in a table."""
        wal = tmp_path / "data" / "wal"
        _write_wal(wal)
        info = _json(capsys, "wal", "info", str(wal), "--json")
        assert (info["records"], info["events"], info["first_sequence"], info["last_sequence"]) == (3, 3, 1, 3)
        assert len(info["segments"]) == 1 and info["segments"][0]["bytes"] > 0 and info["torn"] is None
        assert main(["wal", "info", str(wal)]) == ExitCode.OK
        text = capsys.readouterr().out.splitlines()
        assert text[1].split() == ["segment", "first", "sequence", "bytes"]
        assert text[3].split()[:2] == [info["segments"][0]["name"], "1"]

        repaired = _json(capsys, "wal", "repair", "--wal-dir", str(wal), "--json")
        assert repaired["changed"] is False and repaired["losses"] == [] and repaired["lost_events"] == 0

        snapshot = tmp_path / "data" / "snapshot"
        shutil.copytree(tiny_network.snapshot_dir, snapshot)
        compacted = _json(capsys, "wal", "compact", "--wal-dir", str(wal), "--snapshot", str(snapshot), "--json")
        assert compacted["watermark"] == read_manifest(snapshot)["watermark"]
        assert compacted["kept"] == 1 and compacted["removed"] == []

    def test_demo_already_built(self, tmp_path: Path, tiny_network: TinyNetwork,
                                capsys: pytest.CaptureFixture[str]) -> None:
        """`demo --json` where the snapshot exists: says so, as JSON (the
        build itself reports as `rebuild --json` does)."""
        shutil.copytree(tiny_network.snapshot_dir, tmp_path / "snapshot")
        document = _json(capsys, "demo", "--out", str(tmp_path), "--json")
        assert document["built"] is False
        assert document["snapshot_id"] == read_manifest(tmp_path / "snapshot")["snapshot_id"]
