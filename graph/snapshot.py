"""The snapshot directory: graph arrays, profiles, pair logs, embeddings,
FAISS index and a manifest with the format version, counts, per-file
sha256 checksums and the watermark.

Size (over 400 lines): the writer and the reader of one on-disk format,
kept together so that the format lives in one file.

Written under a temporary name and renamed into place, so a reader never
sees half a snapshot; verified on load, so a corrupt one is refused."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from .ann import load_index, save_index
from .clock import Clock
from .config import GraphConfig
from .csr import CSR
from .durable import fsync_dir
from .erasure import (
    KEY_FILE,
    ErasureKeyError,
    ErasureLedger,
    key_id,
    ledger_with_key,
    load_or_create_key,
    read_key,
    read_ledger_file,
)
from .errors import SnapshotError
from .event_ids import EventIdSet
from .ids import IdMap
from .pairlog import PairLog
from .profiles import COLUMNS, OPTIONAL_COLUMNS, ProfileTable
from .relations import EdgeSet, WeightedEdges
from .store import EDGE_SETS, PAIR_LOGS, GraphStore

# 3: the erased users are a ledger of keyed hashes (``erasure.ledger``),
# never ids; 2 listed their ids (``erased``) and is still read.
FORMAT_VERSION = 3
READABLE_VERSIONS = (2, 3)
LEDGER = "erasure.ledger"
MANIFEST = "manifest.json"
INDEX_FILE = "index.faiss"
VECTORS_FILE = "embeddings.npy"
EVENT_IDS = "event_ids"
EVENT_DIGESTS = "event_ids.digest"
EXTRA_PREFIX = "extra."

log = logging.getLogger(__name__)


@dataclass
class Snapshot:
    store: GraphStore
    vectors: np.ndarray
    index: faiss.Index
    manifest: dict[str, Any]
    # Arrays other parts of the system store with the snapshot (the learned
    # ranker's contact graph), by name; memory-mapped.
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def snapshot_id(self) -> str:
        return str(self.manifest["snapshot_id"])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def store_arrays(store: GraphStore) -> dict[str, np.ndarray]:
    """Every array of the store's state, after folding overlays in."""
    store.compact()
    ext = store.ids.all_ext()
    erased_rows = np.array(sorted(store.erased_rows), np.int64)
    if erased_rows.shape[0]:
        # Rows never move, so an erased user's row stays; its id does not:
        # a distinct negative number no event can name.
        ext = ext.copy()
        ext[erased_rows] = -1 - erased_rows
    arrays: dict[str, np.ndarray] = {"ids.ext": ext}
    for name in EDGE_SETS:
        out, rev = getattr(store, name).base()
        arrays[f"{name}.out.indptr"] = out.indptr
        arrays[f"{name}.out.indices"] = out.indices
        if rev is not None:
            arrays[f"{name}.in.indptr"] = rev.indptr
            arrays[f"{name}.in.indices"] = rev.indices
    out, rev = store.interactions.base()
    arrays["interactions.out.indptr"] = out.indptr
    arrays["interactions.out.indices"] = out.indices
    arrays["interactions.out.strength"] = out.values["strength"]
    arrays["interactions.out.time"] = out.values["time"]
    arrays["interactions.in.indptr"] = rev.indptr
    arrays["interactions.in.indices"] = rev.indices
    for column, values in store.profiles.columns().items():
        arrays[f"profiles.{column}"] = values
    for name in PAIR_LOGS:
        for column, values in getattr(store, name).to_arrays().items():
            arrays[f"{name}.{column}"] = values
    # Sorted unique UTF-8 ids (S<n>) of every event applied: retries after
    # a restart, and overlapping rebuild inputs, stay duplicates.
    # With each, the digest of its event's content (uint64, 0 = not known):
    # the same id sent with other content is refused after a restart too.
    event_ids, digests = store.seen_ids.to_arrays()
    keep = _without_names(event_ids, store.ledger.known)
    arrays[EVENT_IDS] = event_ids if keep is None else event_ids[keep]
    arrays[EVENT_DIGESTS] = digests if keep is None else digests[keep]
    return arrays


def _without_names(event_ids: np.ndarray, erased: frozenset[int]) -> np.ndarray | None:
    """Event ids are the clients' strings and may spell a user id. A store
    does not know which ids were an erased user's events (a rebuild does,
    and drops them): leave out those that spell the id of a user erased in
    this process. A retry of such an event is then applied again, and
    changes nothing, since it names an erased user. Returns the bool mask
    of ids to keep, or None to keep them all."""
    if not erased or event_ids.shape[0] == 0:
        return None
    keep = np.ones(event_ids.shape[0], bool)
    for ext in erased:
        keep &= np.char.find(event_ids, str(ext).encode()) < 0
    return None if keep.all() else keep


def write_snapshot(store: GraphStore, vectors: np.ndarray, index: faiss.Index, out_dir: Path,
                   *, extra: dict[str, Any] | None = None,
                   arrays: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Write a snapshot to ``out_dir`` atomically (replacing any old one).
    ``arrays`` are stored as ``extra.<name>.npy``, checksummed like the rest."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}-{threading.get_ident()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        files: dict[str, str] = {}
        with store.lock:
            ledger_arrays, erasure = _ledger_for(store.ledger, out_dir.parent)
        for name, values in {**store_arrays(store), **ledger_arrays}.items():
            path = tmp / f"{name}.npy"
            np.save(path, np.ascontiguousarray(values), allow_pickle=False)
        np.save(tmp / VECTORS_FILE, np.ascontiguousarray(vectors, np.float32), allow_pickle=False)
        save_index(index, tmp / INDEX_FILE)
        for name, values in (arrays or {}).items():
            np.save(tmp / f"{EXTRA_PREFIX}{name}.npy", np.ascontiguousarray(values), allow_pickle=False)
        for path in sorted(tmp.iterdir()):
            files[path.name] = _sha256(path)
        stats = store.degree_stats()
        content = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
        manifest = {
            "format_version": FORMAT_VERSION,
            "snapshot_id": f"snap-{content[:16]}",
            "created_time": time.time(),
            "watermark": store.watermark,
            "last_event_time": store.last_event_time,
            "counts": {
                "users": stats.users,
                "follow_edges": stats.follow_edges,
                "friend_pairs": stats.friend_pairs,
                "interaction_pairs": stats.interaction_pairs,
                "erased": len(store.ledger),
                "event_ids": len(store.seen_ids),
            },
            "graph_config": {
                "half_life_s": store.config.half_life_s,
                "weights": {t.name: w for t, w in store.config.weights.items()},
            },
            "embedding_dim": int(vectors.shape[1]),
            "index_type": type(index).__name__,
            "files": files,
            **erasure,
            **(extra or {}),
        }
        with open(tmp / MANIFEST, "w") as f:
            json.dump(manifest, f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        old = None
        if out_dir.exists():
            old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
            os.rename(out_dir, old)
        os.rename(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return manifest
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_manifest(directory: Path) -> dict[str, Any]:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise SnapshotError(f"{directory}: no {MANIFEST}; not a snapshot directory")
    try:
        manifest: dict[str, Any] = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise SnapshotError(f"{path}: unreadable manifest: {err}") from None
    version = manifest.get("format_version")
    if version not in READABLE_VERSIONS:
        raise SnapshotError(f"{directory}: snapshot format {version}, this build reads "
                            f"{' and '.join(map(str, READABLE_VERSIONS))}")
    return manifest


def verify(directory: Path) -> dict[str, Any]:
    """Check every file against the manifest's sha256; raise SnapshotError."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    for name, digest in manifest["files"].items():
        path = directory / name
        if not path.is_file():
            raise SnapshotError(f"{directory}: {name} is missing")
        if _sha256(path) != digest:
            raise SnapshotError(f"{directory}: {name} does not match its checksum (corrupt)")
    return manifest


def _event_ids(directory: Path, arr: Callable[[str], np.ndarray]) -> EventIdSet:
    if not (directory / f"{EVENT_IDS}.npy").is_file():
        raise SnapshotError(f"{directory}: no {EVENT_IDS}.npy (written by an older build; rebuild it)")
    ids = arr(EVENT_IDS)
    if ids.ndim != 1 or ids.dtype.kind != "S":
        raise SnapshotError(f"{directory}: {EVENT_IDS}.npy holds {ids.dtype} {ids.shape}, not a bytes vector")
    # Snapshots written before digests were kept have none: their ids stay
    # duplicates whatever content is sent with them (EventIdSet.UNKNOWN).
    digests = None
    if (directory / f"{EVENT_DIGESTS}.npy").is_file():
        digests = arr(EVENT_DIGESTS)
        if digests.dtype != np.uint64 or digests.shape != ids.shape:
            raise SnapshotError(f"{directory}: {EVENT_DIGESTS}.npy holds {digests.dtype} {digests.shape}, "
                                f"not uint64 {ids.shape}")
    return EventIdSet(ids, digests)


def _profiles(directory: Path, arr: Callable[..., np.ndarray]) -> ProfileTable:
    """The profile columns; those an older build did not write are filled
    as ``OPTIONAL_COLUMNS`` says (a column named there is copied, an empty
    name means zeros)."""
    columns: dict[str, np.ndarray] = {}
    for c in COLUMNS:
        if c not in OPTIONAL_COLUMNS or (directory / f"profiles.{c}.npy").is_file():
            columns[c] = arr(f"profiles.{c}", mmap=False)
    for c, source in OPTIONAL_COLUMNS.items():
        if c not in columns:
            log.warning("%s: no profiles.%s (older snapshot); the age history before it is taken as the "
                        "current band; rebuild from the event logs to restore it", directory, c)
            base = columns[source] if source else np.zeros(columns["has_profile"].shape[0])
            columns[c] = np.asarray(base, COLUMNS[c])
    return ProfileTable(columns)


def read_snapshot(directory: Path, config: GraphConfig, clock: Clock, *, check: bool = True) -> Snapshot:
    """Load a snapshot; big arrays are memory-mapped read-only."""
    directory = Path(directory)
    manifest = verify(directory) if check else read_manifest(directory)

    def arr(name: str, mmap: bool = True) -> np.ndarray:
        try:
            loaded = np.load(directory / f"{name}.npy", mmap_mode="r" if mmap else None, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise SnapshotError(f"{directory}: {name}.npy unreadable: {err}") from None
        # A plain ndarray view of the same mapped pages: every slice of an
        # np.memmap builds another memmap object, a cost paid on each read
        # in serving.
        return np.asarray(loaded)

    lock = threading.RLock()
    ids = IdMap(arr("ids.ext", mmap=False))
    n = len(ids)
    edge_sets = {}
    for name in EDGE_SETS:
        out = CSR(arr(f"{name}.out.indptr"), arr(f"{name}.out.indices"))
        with_in = name != "friends"
        rev = CSR(arr(f"{name}.in.indptr"), arr(f"{name}.in.indices")) if with_in else None
        edge_sets[name] = EdgeSet(out, rev, lock, with_in=with_in)
    interactions = WeightedEdges(
        CSR(arr("interactions.out.indptr"), arr("interactions.out.indices"),
            {"strength": arr("interactions.out.strength"), "time": arr("interactions.out.time")}),
        CSR(arr("interactions.in.indptr"), arr("interactions.in.indices")),
        lock, config.half_life_s)
    profiles = _profiles(directory, arr)
    if len(profiles) != n:
        raise SnapshotError(f"{directory}: {len(profiles)} profiles for {n} users")
    logs = {
        name: PairLog.from_arrays({c: arr(f"{name}.{c}", mmap=False) for c in ("actor", "target", "time", "detail")})
        for name in PAIR_LOGS
    }
    store = GraphStore(
        config, clock, ids, profiles, edge_sets, interactions, logs, lock,
        watermark=int(manifest["watermark"]),
        last_event_time=float(manifest["last_event_time"]),
        ledger=_read_ledger(directory, manifest, arr),
        seen_ids=_event_ids(directory, arr),
    )
    vectors = arr(VECTORS_FILE.removesuffix(".npy"))
    if vectors.shape[0] != n:
        raise SnapshotError(f"{directory}: {vectors.shape[0]} embeddings for {n} users")
    try:
        index = load_index(directory / INDEX_FILE)
    except RuntimeError as err:
        raise SnapshotError(f"{directory}: {INDEX_FILE} unreadable: {err}") from None
    extras = {
        name.removeprefix(EXTRA_PREFIX).removesuffix(".npy"): arr(name.removesuffix(".npy"))
        for name in manifest["files"] if name.startswith(EXTRA_PREFIX)
    }
    return Snapshot(store, vectors, index, manifest, extras)


def _ledger_for(ledger: ErasureLedger, data_dir: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The ledger's array and manifest entry, hashed under the data
    directory's key (created with the first erasure written there). An
    empty ledger needs no key."""
    if not ledger:
        return {LEDGER: np.zeros(0, "S32")}, {}
    try:
        key = load_or_create_key(data_dir, ledger.key)
        ledger.bind(key)
    except ErasureKeyError as err:
        raise SnapshotError(f"{data_dir}: {err}") from None
    return {LEDGER: ledger.to_array()}, {"erasure": {"key_id": key_id(key)}}


def _read_ledger(directory: Path, manifest: dict[str, Any], arr: Callable[..., np.ndarray]) -> ErasureLedger:
    """The erased users: a format 3 snapshot's ledger, checked against the
    key beside it; a format 2 snapshot's plain id list (kept in memory
    only, hashed when next written)."""
    try:
        key = read_key(directory.parent)
        if manifest["format_version"] == 2:
            ledger = ErasureLedger(key)
            ledger.add_many(arr("erased", mmap=False))
            return ledger
        digests = arr(LEDGER, mmap=False)
        if digests.ndim != 1 or digests.dtype != np.dtype("S32"):
            raise SnapshotError(f"{directory}: {LEDGER}.npy holds {digests.dtype} {digests.shape}, not a ledger")
        expected = str(manifest.get("erasure", {}).get("key_id", ""))
        return ledger_with_key(digests, expected, key, str(directory.parent / KEY_FILE))
    except ErasureKeyError as err:
        raise SnapshotError(f"{directory}: {err}") from None


def load_ledger(path: Path) -> ErasureLedger:
    """The erasure ledger of a snapshot directory (verified) or of a ledger
    file (``graph.erasure.write_ledger_file``); its key is read from
    ``erasure.key`` beside it. For a rebuild that must not bring erased
    users back from older logs. Raises SnapshotError."""
    path = Path(path)
    if not path.is_dir():
        try:
            return read_ledger_file(path)
        except ErasureKeyError as err:
            raise SnapshotError(str(err)) from None
    manifest = verify(path)

    def arr(name: str, mmap: bool = False) -> np.ndarray:
        try:
            loaded = np.load(path / f"{name}.npy", allow_pickle=False)
        except (OSError, ValueError) as err:
            raise SnapshotError(f"{path}: {name}.npy unreadable: {err}") from None
        if not isinstance(loaded, np.ndarray):  # an .npz archive under the .npy name
            raise SnapshotError(f"{path}: {name}.npy unreadable: not one array")
        return loaded

    return _read_ledger(path, manifest, arr)


def snapshots_naming(data_dir: Path, ledger: ErasureLedger, *, keep: Path) -> list[Path]:
    """Snapshot directories under ``data_dir`` (finished, or left half
    written by a crash) other than ``keep`` that still hold an erased
    user's id in the clear: in their id map, or in a format 2 erased
    list."""
    found: list[Path] = []
    if not ledger or not Path(data_dir).is_dir():
        return found
    keep = Path(keep).resolve()
    for path in sorted(Path(data_dir).iterdir()):
        if not path.is_dir() or path.resolve() == keep or not (path / "ids.ext.npy").is_file():
            continue
        ids = [np.load(path / "ids.ext.npy", allow_pickle=False)]
        if (path / "erased.npy").is_file():
            ids.append(np.load(path / "erased.npy", allow_pickle=False))
        values = np.unique(np.concatenate([np.asarray(i, np.int64).ravel() for i in ids]))
        values = values[values > 0]
        if ledger.erased_among(values).any():
            found.append(path)
    return found


def remove_snapshot(path: Path) -> None:
    """Remove a snapshot directory so that it is gone at once for readers
    (renamed away, then deleted)."""
    path = Path(path)
    doomed = path.parent / f".{path.name}.removing-{os.getpid()}"
    os.rename(path, doomed)
    fsync_dir(path.parent)
    shutil.rmtree(doomed)
