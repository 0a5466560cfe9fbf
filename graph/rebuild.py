"""The offline rebuild job: event logs in, a snapshot directory out."""

from __future__ import annotations

import gc
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from .ann import build_index
from .clock import Clock, ManualClock, SystemClock
from .config import GraphConfig
from .contacts import ContactConfig, ContactGraph
from .embedding import EmbeddingConfig, embed
from .erasure import ErasureLedger
from .eventlog import BadLines, read_event_file
from .fold import fold
from .ranking import RankerTrainingConfig, RankingModel, before, train_ranker
from .snapshot import write_snapshot
from .store import GraphStore
from .table import EventTable
from .wal_format import is_wal_path, read_wal_table

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InputStats:
    """What reading one input gave: events (lines, rows, WAL events) read,
    of which ``rejected`` were bad and skipped; seconds spent."""

    path: str
    read: int
    rejected: int
    seconds: float

    @property
    def kept(self) -> int:
        return self.read - self.rejected


@dataclass
class RebuildReport:
    manifest: dict[str, Any]
    events: int
    timings: dict[str, float] = field(default_factory=dict)
    inputs: list[InputStats] = field(default_factory=list)
    rejected: int = 0


@dataclass
class Built:
    """Everything a snapshot holds, in memory."""

    store: GraphStore
    vectors: np.ndarray  # (n_rows, dim) float32
    index: faiss.Index
    contacts: ContactGraph
    model: RankingModel | None
    timings: dict[str, float] = field(default_factory=dict)


PhaseReport = Callable[[str, float], None]


def build(table: EventTable, as_of: float, *, config: GraphConfig | None = None,
          embedding: EmbeddingConfig | None = None, contact: ContactConfig | None = None,
          ranker: RankerTrainingConfig | None = None, train: bool = True,
          ledger: ErasureLedger | None = None, on_phase: PhaseReport | None = None) -> Built:
    """Fold the events strictly before ``as_of`` (clock set to ``as_of``),
    embed, index, build the contact graph and train the ranker on an inner
    split of the same events. Nothing at or after ``as_of`` is read: the
    evaluation builds its "as of the cut" snapshots with this. ``ledger``:
    users erased before, kept out (see ``fold``). ``on_phase(name,
    seconds)`` is called as each phase ends (progress for long rebuilds)."""
    config = config or GraphConfig()
    embedding = embedding or EmbeddingConfig()
    contact = contact or ContactConfig()
    ranker = ranker or RankerTrainingConfig()
    timings: dict[str, float] = {}
    started = time.perf_counter()

    def done(phase: str) -> None:
        nonlocal started
        now = time.perf_counter()
        timings[phase] = now - started
        started = now
        if on_phase is not None:
            on_phase(phase, timings[phase])

    history = before(table, as_of)
    model = None
    if train:
        # First, so that the inner split's store and contact graph are gone
        # before the snapshot's own are built: peak memory is the larger of
        # the two phases, not their sum.
        model = train_ranker(history, as_of, config, ranker, embedding, contact, ledger=ledger)
        gc.collect()
        done("ranker")
    store = fold(history, config, ManualClock(as_of), ledger=ledger)
    done("fold")
    vectors = embed(store, embedding, now=as_of)
    done("embed")
    index = build_index(vectors)
    done("index")
    contacts = ContactGraph.build(history, store, as_of, contact)
    done("contacts")
    return Built(store, vectors, index, contacts, model, timings)


def read_inputs(paths: list[Path], *, now: float, max_future_s: float, bad_lines: BadLines | None = None,
                progress: bool = False) -> EventTable:
    """Event log files and write-ahead log segments (a ``.wal`` file or a
    directory of them), concatenated in the order given; the fold keeps the
    first event of each id, so overlapping sources apply each event once.
    ``bad_lines``: how many bad lines may be skipped in all (default none:
    the first raises EventLogError); ``progress``: a bar per file on stderr
    when it is a terminal."""
    return read_inputs_counted(paths, now=now, max_future_s=max_future_s, bad_lines=bad_lines,
                               progress=progress)[0]


def read_inputs_counted(paths: list[Path], *, now: float, max_future_s: float, bad_lines: BadLines | None = None,
                        progress: bool = False) -> tuple[EventTable, list[InputStats]]:
    """``read_inputs``, and what each input gave."""
    bad_lines = bad_lines if bad_lines is not None else BadLines()
    tables: list[EventTable] = []
    stats: list[InputStats] = []
    for path in paths:
        started = time.perf_counter()
        rejected_before = bad_lines.count
        with _ProgressBar(Path(path).name, enabled=progress) as bar:
            if is_wal_path(path):
                table = read_wal_table([path])
            else:
                table = read_event_file(path, now=now, max_future_s=max_future_s, bad_lines=bad_lines,
                                        progress=bar.update)
        rejected = bad_lines.count - rejected_before
        tables.append(table)
        stats.append(InputStats(str(path), len(table) + rejected, rejected, time.perf_counter() - started))
    return EventTable.concat(tables), stats


class _ProgressBar:
    """A tqdm bar on stderr for one input, made on its first update (only
    then is the unit known), and only when stderr is a terminal."""

    def __init__(self, name: str, *, enabled: bool) -> None:
        self._name = name
        self._enabled = enabled and sys.stderr.isatty()
        self._bar: Any = None

    def update(self, done: int, total: int, unit: str) -> None:
        if not self._enabled:
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit=unit, unit_scale=True, unit_divisor=1024 if unit == "B" else 1000,
                             desc=self._name, file=sys.stderr, leave=False, dynamic_ncols=True)
        # Absolute: a reader that starts over (a CSV left to the line reader)
        # goes back.
        self._bar.update(done - self._bar.n)

    def __enter__(self) -> _ProgressBar:
        return self

    def __exit__(self, *_: object) -> None:
        if self._bar is not None:
            self._bar.close()


def rebuild(paths: list[Path], out_dir: Path, *, config: GraphConfig | None = None,
            embedding: EmbeddingConfig | None = None, clock: Clock | None = None,
            ranker: RankerTrainingConfig | None = None, bad_lines: BadLines | None = None,
            progress: bool = False, ledger: ErasureLedger | None = None,
            on_phase: PhaseReport | None = None) -> RebuildReport:
    """Read the logs in order, fold them, embed, index, train the ranker on
    an inner split of the history and write the snapshot (the model goes in
    the manifest as ``ranker_model``, None when the history is too short).
    A bad line raises EventLogError before anything is written, unless
    ``bad_lines`` allows skipping it (past its limit: TooManyBadLines,
    nothing written); ``progress`` shows reading progress on a terminal.
    ``ledger``: users erased before (``graph.snapshot.load_ledger``); no
    event naming them is applied or trained on, so old raw logs cannot
    bring them back."""
    config = config or GraphConfig()
    embedding = embedding or EmbeddingConfig()
    clock = clock or SystemClock()
    contact = ContactConfig()
    started = time.perf_counter()
    bad_lines = bad_lines if bad_lines is not None else BadLines()
    table, inputs = read_inputs_counted(paths, now=clock.now(), max_future_s=config.max_future_s,
                                        bad_lines=bad_lines, progress=progress)
    read_s = time.perf_counter() - started
    # Every event read is history: decay, windows and the model's inner
    # split are computed "as of" just after the newest event in the logs.
    as_of = float(np.nextafter(table.time.max(initial=0.0), np.inf))
    if on_phase is not None:
        on_phase("read", read_s)
    built = build(table, as_of, config=config, embedding=embedding, contact=contact, ranker=ranker, ledger=ledger,
                  on_phase=on_phase)
    n_events = len(table)
    del table
    t = time.perf_counter()
    # The learned ranker's features come from the contact graph as of the
    # snapshot: it travels with the snapshot so serving uses the model.
    manifest = write_snapshot(built.store, built.vectors, built.index, out_dir, arrays={
        f"contacts.{name}": values for name, values in built.contacts.to_arrays().items()}, extra={
        "contacts_as_of": as_of,
        "sources": [str(p) for p in paths],
        "embedding_config": embedding.__dict__,
        "contact_config": contact.__dict__,
        "ranker_model": built.model.to_json() if built.model is not None else None,
        # Seconds per phase before the write, for `snapshot info` and the
        # benchmarks.
        "timings_s": {"read": read_s, **built.timings},
    })
    timings = {"read": read_s, **built.timings, "write": time.perf_counter() - t,
               "total": time.perf_counter() - started}
    log.info("rebuilt %s from %d events in %.1fs", manifest["snapshot_id"], n_events, timings["total"])
    return RebuildReport(manifest, n_events, timings, inputs, bad_lines.count)
