"""What the server serves: the loaded snapshot, the live store on top of it
(with the write-ahead log replayed into it) and the pipeline over both."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graph.ann import VectorSearch
from graph.clock import Clock
from graph.config import GraphConfig
from graph.contacts import ContactConfig, ContactGraph
from graph.model import AccountState, Event, EventKind
from graph.ranking import RankingModel
from graph.retrieval import fold_in_user
from graph.snapshot import Snapshot, read_snapshot
from graph.store import GraphStore
from service.durability.journal import Journal
from service.durability.wal import WriteAheadLog
from service.durability.wal_replay import Replayed, replay
from service.pipeline import Pipeline
from service.safety.engine import SafetyEngine
from service.server.config import ServerConfig

log = logging.getLogger(__name__)


@dataclass
class ServingState:
    snapshot: Snapshot
    pipeline: Pipeline
    # What was replayed from the write-ahead log on top of the snapshot.
    replayed: Replayed | None = None

    @property
    def store(self) -> GraphStore:
        return self.snapshot.store

    @property
    def snapshot_id(self) -> str:
        return self.snapshot.snapshot_id

    @staticmethod
    def load(directory: Path, config: GraphConfig, clock: Clock,
             safety: SafetyEngine | None = None, *, wal_dir: Path | None = None) -> ServingState:
        """Read and verify the snapshot, then replay the log in ``wal_dir``
        after its watermark (up to what is written now).

        ``safety`` outlives snapshots (policy, guardians, impressions):
        the server passes its own so a swap keeps them.
        Raises SnapshotError for a snapshot that is missing, corrupt or of
        another format; WalError if the log cannot be replayed onto it."""
        started = time.perf_counter()
        snapshot = read_snapshot(directory, config, clock)
        loaded = time.perf_counter()
        replayed = replay(wal_dir, snapshot.store) if wal_dir is not None else None
        search = VectorSearch(snapshot.vectors, snapshot.index)
        state = ServingState(snapshot, pipeline_for(snapshot, search, safety), replayed)
        if replayed is not None and replayed.events:
            state.fold_in_new_users()
        state.apply_erasures()
        log.info("loaded snapshot %s (watermark %d) in %.2fs; replayed %d WAL events in %.2fs, watermark %d",
                 snapshot.snapshot_id, int(snapshot.manifest["watermark"]), loaded - started,
                 replayed.events if replayed else 0, time.perf_counter() - loaded, snapshot.store.watermark)
        return state

    @property
    def safety(self) -> SafetyEngine:
        return self.pipeline.safety

    def update_search(self, events: list[Event]) -> None:
        """After events are applied: users newer than the snapshot get a
        fold-in embedding from their neighbours and become searchable at
        once; erased, banned, suspended or deactivated users are hidden
        from the search (the safety filters drop them anyway; hiding keeps
        them from taking candidate slots)."""
        search, store = self.pipeline.search, self.store
        known = search.vectors.shape[0]
        new_rows: set[int] = set()
        # Rows past the vectors exist only once a user newer than the
        # snapshot arrived: until then the batch's ends need no lookup
        # (which was a tenth of ApplyEvents' CPU).
        if store.n_rows > known:
            edges = [e for e in events if e.kind in (EventKind.FOLLOW, EventKind.INTERACTION)]
            ends = np.fromiter((ext for e in edges for ext in (e.actor, e.target)), np.int64, 2 * len(edges))
            rows = store.rows_of(ends) if ends.shape[0] else np.zeros(0, np.int64)
            new_rows = set(rows[rows >= known].tolist())
        for e in events:
            if e.kind == EventKind.ERASE_USER or (
                    e.kind == EventKind.PROFILE and e.profile is not None
                    and e.profile.account_state in _HIDDEN_STATES):
                row = store.ids.row(e.actor)
                if row >= 0:
                    search.hide(np.array([row]))
        now = store.clock.now()
        for row in sorted(new_rows):
            fold_in_user(search, store, row, now)
        # A redacted event (actor 0) erases nobody.
        if any(e.kind == EventKind.ERASE_USER and e.actor > 0 for e in events):
            self._forget_in_guardians()

    def apply_erasures(self) -> None:
        """On load: hide the rows of erased users (erased in the snapshot's
        live history, or by the log just replayed) and drop them from the
        guardian records."""
        store = self.store
        rows = store.erased_rows
        if rows:
            self.pipeline.search.hide(np.fromiter(rows, np.int64, len(rows)))
        if store.ledger:
            self._forget_in_guardians()

    def _forget_in_guardians(self) -> None:
        try:
            self.safety.guardians.forget_erased(self.store.erased_subset)
        except OSError:
            # The erasure stands; the journal is scrubbed on the next load
            # or by `contactgraph wal compact`.
            log.exception("could not scrub the guardian journal of erased users")

    def fold_in_new_users(self) -> int:
        """Fold in every user the write-ahead log added after the snapshot
        (at start-up, after replay). Returns how many became searchable."""
        search, store = self.pipeline.search, self.store
        now = store.clock.now()
        return sum(fold_in_user(search, store, row, now) for row in range(search.vectors.shape[0], store.n_rows))


_HIDDEN_STATES = (AccountState.BANNED, AccountState.SUSPENDED, AccountState.DEACTIVATED)


def pipeline_for(snapshot: Snapshot, search: VectorSearch, safety: SafetyEngine | None) -> Pipeline:
    """The learned ranker when the snapshot carries a model and its contact
    graph; the linear ranker otherwise (older snapshots, short histories)."""
    model_json = snapshot.manifest.get("ranker_model")
    contact_arrays = {k.removeprefix("contacts."): v for k, v in snapshot.arrays.items() if k.startswith("contacts.")}
    model = contacts = None
    if model_json and contact_arrays and "contacts_as_of" in snapshot.manifest:
        config = ContactConfig(**snapshot.manifest.get("contact_config", {}))
        contacts = ContactGraph.from_arrays(contact_arrays, float(snapshot.manifest["contacts_as_of"]), config)
        model = RankingModel.from_json(model_json)
    return Pipeline.of(snapshot.store, search, contacts, model, safety=safety)


def open_serving(config: ServerConfig, clock: Clock,
                 safety: SafetyEngine | None = None) -> tuple[ServingState, Journal]:
    """Start-up: open the write-ahead log (cutting off a torn tail), load the
    snapshot, replay the log after its watermark, and return the state with
    the journal that commits on top of it."""
    wal = WriteAheadLog.open(config.wal) if config.wal is not None else None
    try:
        state = ServingState.load(config.snapshot, config.graph, clock, safety,
                                  wal_dir=config.wal.directory if config.wal is not None else None)
        journal = Journal(state.store, wal)
        journal.attach(state.store)
    except BaseException:
        if wal is not None:
            wal.close()
        raise
    return state, journal
