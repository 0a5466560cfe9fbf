"""Rebuild at scale (issues #5 and #6): a synthetic history of 1M users and
~21M edge events (follows, interactions, blocks; profiles in their own CSV)
written once as CSV and as Parquet, then rebuilt into a full snapshot by
`contactgraph rebuild` in a child process, once per format: wall time, the
child's peak resident memory (from wait4) and the time of each phase (the
manifest's ``timings_s``). Then the server starts on that snapshot with 1M
write-ahead-log events to replay.

Baselines in the same run: the 5-minute / 8 GiB / 30 s targets, and for
start-up the same server with an empty log.

    python -m tests.bench.rebuild_bench [--users N] [--formats csv,parquet]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from graph.snapshot import read_manifest
from graph.synthetic import NetworkSpec, generate_network, write_event_logs
from tests.bench.durability_bench import STARTUP_TARGET_S, _print_table, startup

CACHE = Path(".data/bench")
SEED = 3
REBUILD_TARGET_S = 300.0
MEMORY_TARGET_GIB = 8.0
PHASES = ("read", "ranker", "fold", "embed", "index", "contacts")


def spec_for(users: int) -> NetworkSpec:
    """~21 edge events per user: 14 follows, 4 messages, 2 reactions, a
    few blocks (the issue's 1M users / 20M edges at the default size)."""
    return NetworkSpec(n_users=users, avg_follows=14.0, messages_per_user=4.0, reactions_per_user=2.0, seed=SEED)


def ensure_logs(users: int, fmt: str, cache: Path = CACHE) -> list[Path]:
    """The cached input files of that size and format (profiles first),
    written on first use."""
    out = cache / f"rebuild-u{users}-s{SEED}"
    name = {"csv": "events.csv", "parquet": "events.parquet"}[fmt]
    paths = [out / "profiles.csv", out / name]
    if all(p.exists() for p in paths):
        return paths
    t = time.perf_counter()
    print(f"writing the {users:,}-user synthetic history as {out / name} (once; cached)", flush=True)
    net = generate_network(spec_for(users))
    tmp = out / f".{name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    written = write_event_logs(net, tmp, events_name=name)
    for path in written:
        os.replace(path, out / path.name)
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"  written in {time.perf_counter() - t:.0f}s", flush=True)
    return paths


def rebuild(paths: list[Path], out: Path, log: Path) -> tuple[float, float, dict[str, float], int]:
    """Run `contactgraph rebuild` as a child process: (wall seconds, peak
    RSS GiB, phase timings, events). Raises if it fails."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "service.cli", "rebuild", "--events", *map(str, paths), "--out", str(out)]
    t = time.perf_counter()
    with open(log, "w") as sink:
        child = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"rebuild failed (exit {os.waitstatus_to_exitcode(status)}); see {log}:\n"
                           + log.read_text()[-3000:])
    manifest = read_manifest(out)
    peak_gib = usage.ru_maxrss * 1024 / 2**30  # ru_maxrss is in KiB on Linux
    return wall, peak_gib, dict(manifest.get("timings_s", {})), int(manifest["watermark"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--formats", default="csv,parquet", help="comma-separated: csv, parquet")
    parser.add_argument("--wal-events", type=int, default=1_000_000, help="WAL events replayed at start-up")
    parser.add_argument("--skip-startup", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    rows: list[tuple[str, ...]] = []
    phase_rows: list[tuple[str, ...]] = []
    figures: dict[str, object] = {"users": args.users}
    with tempfile.TemporaryDirectory(prefix="rebuild-bench-", dir=str(CACHE.resolve().parent)
                                     if CACHE.parent.exists() else None) as tmp:
        work = Path(tmp)
        snapshot: Path | None = None
        for fmt in formats:
            paths = ensure_logs(args.users, fmt)
            size_gib = sum(p.stat().st_size for p in paths) / 2**30
            out = work / f"snapshot-{fmt}"
            print(f"rebuilding from {', '.join(p.name for p in paths)} ({size_gib:.2f} GiB) ...", flush=True)
            wall, peak, timings, events = rebuild(paths, out, work / f"rebuild-{fmt}.log")
            print(f"  {events:,} events in {wall:.0f}s, peak RSS {peak:.2f} GiB", flush=True)
            figures[fmt] = {"wall_s": wall, "peak_rss_gib": peak, "events": events, "timings_s": timings}
            rows.append((f"rebuild from {fmt}, {events / 1e6:.1f}M events (s)", f"{wall:.0f}",
                         f"< {REBUILD_TARGET_S:.0f}", f"{wall / REBUILD_TARGET_S:.2f} of target"))
            rows.append(("  peak RSS of the rebuild (GiB)", f"{peak:.2f}", f"< {MEMORY_TARGET_GIB:.0f}",
                         f"{peak / MEMORY_TARGET_GIB:.2f} of target"))
            rest = wall - sum(timings.get(p, 0.0) for p in PHASES)
            phase_rows.append((fmt, *(f"{timings.get(p, 0.0):.1f}" for p in PHASES), f"{rest:.1f}", f"{wall:.1f}"))
            snapshot = out
        if snapshot is not None and not args.skip_startup:
            with_log, without, written = startup(snapshot, work, args.wal_events, args.users)
            print(f"wrote {args.wal_events:,} WAL events in {written:.1f}s", flush=True)
            figures["startup"] = {"with_wal_s": with_log, "empty_wal_s": without}
            rows.append((f"start-up, snapshot + {args.wal_events:,} WAL events (s)", f"{with_log:.1f}",
                         f"< {STARTUP_TARGET_S:.0f}", f"{with_log / without:.2f} of empty-WAL start "
                         f"({without:.1f}s)" if without else "-"))
    if phase_rows:
        # "rest": interpreter start-up, imports and writing the snapshot.
        _print_table(("input", *PHASES, "rest", "wall"), phase_rows)
    _print_table(("figure", "measured", "target", "ratio"), rows)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
