"""`contactgraph rebuild` as a user runs it (a subprocess): --max-errors
below, at and above the limit, the reject file, nothing written on failure,
Parquet input and the summary."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from graph.eventlog import read_event_file, write_edge_csv, write_edge_parquet, write_profile_csv
from graph.model import AccountState, AgeBand, MessagePrivacy, Profile
from service.cli.exit_codes import ExitCode

T0_MS = 1_714_564_800_000
EDGE_HEADER = "time_ms,event,actor_id,target_id,event_id"
ROOT = Path(__file__).resolve().parents[3]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "service.cli", "rebuild", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=240, check=False)


@pytest.fixture
def logs(tmp_path: Path) -> list[Path]:
    """A profile CSV, an edge CSV with two bad lines (3 and 6, after a blank
    line) and a JSON lines file with one (line 2): three bad lines in all."""
    profiles = write_profile_csv(tmp_path / "profiles.csv", [
        Profile(u, AgeBand.ADULT, MessagePrivacy.EVERYONE, AccountState.ACTIVE) for u in range(1, 7)])
    edges = tmp_path / "edges.csv"
    edges.write_text(
        f"{EDGE_HEADER}\n"
        f"{T0_MS},follow,1,2,e1\n"
        f"{T0_MS + 1},poke,1,3,e2\n"
        f"{T0_MS + 2},follow,2,1,e3\n"
        "\n"
        f"{T0_MS + 3},message,4,4,e4\n"
        f"{T0_MS + 4},message,3,1,e5\n"
    )
    jsonl = tmp_path / "more.jsonl"
    jsonl.write_text('{"eventId":"j1","follow":{"actorId":"5","targetId":"6"}}\n'
                     '{"eventId":"j2","follow":{"actorId":"5"}}\n'
                     '{"eventId":"j3","follow":{"actorId":"6","targetId":"5"}}\n')
    return [profiles, edges, jsonl]


class TestMaxErrors:
    def test_default_stops_at_the_first_bad_line(self, tmp_path: Path, logs: list[Path]) -> None:
        """Without --max-errors the first bad line stops the rebuild: exit 3
        (bad input, not the usage code 2), "file:line: reason" on stderr, no
        snapshot, no reject file."""
        out = tmp_path / "out" / "snap"
        result = _run("--events", *map(str, logs), "--out", str(out))
        assert result.returncode == ExitCode.BAD_INPUT, result.stderr
        assert f"{logs[1]}:3: event: unknown event name 'poke'" in result.stderr
        assert not (tmp_path / "out").exists()

    def test_above_the_limit_nothing_is_written(self, tmp_path: Path, logs: list[Path]) -> None:
        """One bad line more than --max-errors: exit 3, the skipped lines and
        the one over the limit on stderr, a clear message, and no snapshot,
        output directory or reject file."""
        out = tmp_path / "out" / "snap"
        result = _run("--events", *map(str, logs), "--out", str(out), "--max-errors", "2")
        assert result.returncode == ExitCode.BAD_INPUT, result.stderr
        lines = result.stderr.splitlines()
        assert lines[0].startswith(f"{logs[1]}:3: event: unknown event name 'poke'")
        assert lines[1] == f"{logs[1]}:6: interaction.target_id equals actor_id"
        assert f"{logs[2]}:2: follow.target_id must be a positive int64 user id, got 0" in lines[2]
        assert "(bad line 3; at most 2 may be skipped)" in lines[2]
        assert lines[-1] == "contactgraph rebuild: more than --max-errors 2 bad lines; nothing written"
        assert not (tmp_path / "out").exists()

    @pytest.mark.parametrize("limit", [3, 10])
    def test_at_or_below_the_limit_the_rest_is_built(self, tmp_path: Path, logs: list[Path], limit: int) -> None:
        """At or below --max-errors the bad lines are skipped: exit 0, each
        on stderr, in the reject file (default beside the snapshot) under
        its input's header, and the summary counts them per input."""
        out = tmp_path / "out" / "snap"
        result = _run("--events", *map(str, logs), "--out", str(out), "--max-errors", str(limit))
        assert result.returncode == 0, result.stderr
        phases = [line for line in result.stderr.splitlines() if line.startswith("contactgraph rebuild: ")]
        assert [line.split()[2] for line in phases] == ["read", "ranker", "fold", "embed", "index", "contacts"]
        assert [line for line in result.stderr.splitlines() if line not in phases] == [
            f"{logs[1]}:3: event: unknown event name 'poke' (expected one of follow, unfollow, block, unblock, "
            "mute, unmute, report, dismiss, message, share, comment, mention, like)",
            f"{logs[1]}:6: interaction.target_id equals actor_id",
            f"{logs[2]}:2: follow.target_id must be a positive int64 user id, got 0",
        ]
        assert (out / "manifest.json").exists()
        rejects = (tmp_path / "out" / "snap.rejects").read_text()
        body = [line for line in rejects.splitlines() if not line.startswith("# ")]
        assert body == [
            f"## {logs[1]}", EDGE_HEADER, f"{T0_MS + 1},poke,1,3,e2", f"{T0_MS + 3},message,4,4,e4",
            f"## {logs[2]}", '{"eventId":"j2","follow":{"actorId":"5"}}',
        ]
        assert f"# {logs[1]}:6: interaction.target_id equals actor_id\n{T0_MS + 3},message,4,4,e4\n" in rejects
        summary = result.stdout
        assert summary.splitlines()[0].split() == ["input", "read", "rejected", "kept", "seconds"]
        assert set(summary.splitlines()[1]) == {"-", " "}  # the rule under the header
        assert [line.split()[:4] for line in summary.splitlines()[2:6]] == [
            [str(logs[0]), "6", "0", "6"], [str(logs[1]), "5", "2", "3"], [str(logs[2]), "3", "1", "2"],
            ["all", "inputs", "14", "3"]]
        for phase in ("read", "fold", "embed", "index", "contacts", "write", "total"):
            assert any(line.split()[:1] == [phase] for line in summary.splitlines()), phase
        assert f"3 bad line(s) skipped, written to {out}.rejects" in summary

    def test_a_fixed_reject_section_can_be_fed_back(self, tmp_path: Path, logs: list[Path]) -> None:
        """A section of the reject file, with the "#" lines dropped, is a
        valid input of its format once its lines are fixed."""
        reject_file = tmp_path / "bad.txt"
        result = _run("--events", *map(str, logs), "--out", str(tmp_path / "snap"), "--max-errors", "3",
                      "--reject-file", str(reject_file))
        assert result.returncode == 0, result.stderr
        sections = reject_file.read_text().split("\n## ")[1:]
        edge_section = "\n".join(line for line in sections[0].splitlines()[1:] if not line.startswith("#"))
        fixed = tmp_path / "fixed.csv"
        fixed.write_text(edge_section.replace("poke", "follow").replace("message,4,4", "message,4,5") + "\n")
        table = read_event_file(fixed, now=T0_MS / 1000 + 10)
        assert table.actor.tolist() == [1, 4] and list(table.event_id) == ["e2", "e4"]


def test_parquet_and_csv_inputs_build_the_same_graph(tmp_path: Path) -> None:
    """A rebuild from an edge Parquet file counts what the same rows as an
    edge CSV give, bad rows reported as "file:row N"."""
    n = 400
    rng = np.random.default_rng(5)
    actors = rng.integers(1, 40, n)
    targets = actors + rng.integers(1, 5, n)
    targets[7] = actors[7]  # one self edge: row 8
    names = rng.choice(["follow", "message", "like"], n)
    times = T0_MS + np.arange(n) * 1000
    ids = [f"p-{i}" for i in range(n)]
    profiles = write_profile_csv(tmp_path / "profiles.csv", [
        Profile(u, AgeBand.ADULT, MessagePrivacy.EVERYONE, AccountState.ACTIVE) for u in range(1, 50)])
    parquet = write_edge_parquet(tmp_path / "e.parquet", times, names, actors, targets, ids, row_group_rows=64)
    csv = write_edge_csv(tmp_path / "e.csv.gz", times, names, actors, targets, ids)
    counts = []
    for edges in (parquet, csv):
        result = _run("--events", str(profiles), str(edges), "--out", str(tmp_path / f"snap-{edges.name}"),
                      "--max-errors", "1")
        assert result.returncode == 0, result.stderr
        counts.append(result.stdout.split("events, ", 1)[1].splitlines()[0])
        where = "row 8" if edges == parquet else "9"
        assert result.stderr.startswith(f"{edges}:{where}: "), result.stderr
    assert counts[0] == counts[1]


class TestLedger:
    def test_erased_user_stays_out_of_a_rebuild_from_old_logs(self, tmp_path: Path) -> None:
        """`rebuild --ledger FILE` drops every event naming a user the ledger
        holds (as a keyed hash), so old raw logs cannot bring them back;
        without the ledger the same logs do."""
        from graph.clock import ManualClock
        from graph.config import GraphConfig
        from graph.erasure import ErasureLedger, load_or_create_key, write_ledger_file
        from graph.snapshot import read_snapshot

        erased = 3
        profiles = write_profile_csv(tmp_path / "profiles.csv", [
            Profile(u, AgeBand.ADULT, MessagePrivacy.EVERYONE, AccountState.ACTIVE) for u in range(1, 6)])
        edges = write_edge_csv(tmp_path / "edges.csv", [T0_MS + k for k in range(4)],
                               ["follow", "message", "follow", "message"], [1, 3, 2, 1], [2, 1, 3, 4],
                               ["e1", "e2", "e3", "e4"])
        ledger = ErasureLedger(load_or_create_key(tmp_path))
        ledger.add(erased)
        write_ledger_file(ledger, tmp_path / "erased.ledger")

        kept = _run("--events", str(profiles), str(edges), "--out", str(tmp_path / "with"),
                    "--ledger", str(tmp_path / "erased.ledger"))
        assert kept.returncode == 0, kept.stderr
        again = _run("--events", str(profiles), str(edges), "--out", str(tmp_path / "without"))
        assert again.returncode == 0, again.stderr
        clock = ManualClock(T0_MS / 1000.0)
        with_ledger = read_snapshot(tmp_path / "with", GraphConfig(), clock).store
        without = read_snapshot(tmp_path / "without", GraphConfig(), clock).store
        assert with_ledger.row(erased) == -1 and erased not in with_ledger.ids.all_ext().tolist()
        assert without.row(erased) >= 0
        assert with_ledger.follows.contains(with_ledger.row(1), with_ledger.row(2))

    def test_an_unreadable_ledger_stops_before_reading(self, tmp_path: Path, logs: list[Path]) -> None:
        """A ledger that cannot be read is bad input (exit 3) naming the flag."""
        (tmp_path / "bad.ledger").write_text("not a ledger")
        result = _run("--events", str(logs[0]), "--out", str(tmp_path / "snap"), "--ledger",
                      str(tmp_path / "bad.ledger"))
        assert result.returncode == ExitCode.BAD_INPUT and "--ledger" in result.stderr
        assert not (tmp_path / "snap").exists()
