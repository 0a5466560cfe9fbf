"""Swapping the served snapshot under load.

A new snapshot is read, verified and caught up with the write-ahead log in
the caller's thread while the old one keeps serving; then, with commits
held for the moment it takes, the last few records are replayed, the
journal moves to the new store and the state is swapped in one assignment.
Calls in flight finish on the state they started with."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from graph.errors import SnapshotError
from graph.snapshot import MANIFEST, read_manifest
from service.durability.journal import Journal
from service.durability.wal_replay import replay
from service.server.config import ServerConfig
from service.server.state import ServingState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Swapped:
    snapshot_id: str
    watermark: int
    replayed: int


class SnapshotSwapper:
    """Loads snapshots into a running server. ``current`` reads the served
    state; ``publish`` installs a new one (called with commits held)."""

    def __init__(self, config: ServerConfig, journal: Journal, current: Callable[[], ServingState],
                 publish: Callable[[ServingState], None]) -> None:
        self._config = config
        self._journal = journal
        self._current = current
        self._publish = publish
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def load(self, path: Path) -> Swapped:
        """Swap in the snapshot at ``path``. Raises SnapshotError (corrupt,
        truncated, other format or graph config) or WalError (the log does
        not continue from its watermark); the current state keeps serving."""
        if self._config.stream is not None:
            # The new snapshot would drop what the stream applied since the
            # old one: swaps at a stream sequence are not built yet.
            raise SnapshotError(f"{path}: snapshots cannot be swapped in while the log is a stream (serve --log); "
                                "restart the server on the new snapshot")
        with self._lock:
            started = time.perf_counter()
            current = self._current()
            _check_compatible(Path(path), current)
            wal_dir = self._config.wal.directory if self._config.wal is not None else None
            state = ServingState.load(Path(path), self._config.graph, current.store.clock, current.safety,
                                      wal_dir=wal_dir)
            replayed = state.replayed.events if state.replayed is not None else 0
            held = time.perf_counter()
            with self._journal.exclusive():
                if wal_dir is not None and state.replayed is not None:
                    rest = replay(wal_dir, state.store, start=state.replayed.position)
                    replayed += rest.events
                self._journal.attach(state.store)
                self._publish(state)
            done = time.perf_counter()
            log.info("swapped in snapshot %s (watermark %d after %d replayed events) in %.2fs; commits held %.3fs",
                     state.snapshot_id, state.store.watermark, replayed, done - started, done - held)
            return Swapped(state.snapshot_id, state.store.watermark, replayed)

    def watch(self, directory: Path, interval_s: float) -> None:
        """Look at ``directory`` every ``interval_s`` seconds and swap in a
        snapshot renamed into place there with another id. A refused one is
        logged and not retried until it changes again."""
        manifest = Path(directory) / MANIFEST

        def loop() -> None:
            refused: str | None = None
            while not self._stop.wait(interval_s):
                try:
                    # Just the id: load() checks the rest and says why it refuses.
                    snapshot_id = str(json.loads(manifest.read_text())["snapshot_id"])
                except (OSError, ValueError, KeyError, TypeError) as err:
                    log.debug("watch %s: %s", manifest, err)
                    continue
                if snapshot_id in (self._current().snapshot_id, refused):
                    continue
                try:
                    self.load(Path(directory))
                    refused = None
                except Exception as err:
                    refused = snapshot_id
                    log.error("watch: snapshot %s in %s refused, keeping %s: %s", snapshot_id, directory,
                              self._current().snapshot_id, err)

        self._watcher = threading.Thread(target=loop, name="snapshot-watch", daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)


def _check_compatible(path: Path, current: ServingState) -> None:
    """Refuse a snapshot built with another decay or weights: its stored
    interaction strengths would mean something else here."""
    manifest = read_manifest(path)
    ours = current.snapshot.manifest.get("graph_config")
    theirs = manifest.get("graph_config")
    if ours is not None and theirs != ours:
        raise SnapshotError(f"{path}: built with graph config {theirs}, the server runs {ours}")
