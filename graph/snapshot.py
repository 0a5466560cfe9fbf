"""The snapshot directory: graph arrays, profiles, pair logs, embeddings,
FAISS index and a manifest with the format version, counts, per-file
sha256 checksums and the watermark.

Written under a temporary name and renamed into place, so a reader never
sees half a snapshot; verified on load, so a corrupt one is refused."""

from __future__ import annotations

import hashlib
import json
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
from .errors import SnapshotError
from .event_ids import EventIdSet
from .ids import IdMap
from .pairlog import PairLog
from .profiles import COLUMNS, ProfileTable
from .relations import EdgeSet, WeightedEdges
from .store import EDGE_SETS, PAIR_LOGS, GraphStore

FORMAT_VERSION = 2
MANIFEST = "manifest.json"
INDEX_FILE = "index.faiss"
VECTORS_FILE = "embeddings.npy"
EVENT_IDS = "event_ids"
EXTRA_PREFIX = "extra."


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
    arrays: dict[str, np.ndarray] = {"ids.ext": store.ids.all_ext()}
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
    arrays["erased"] = np.array(sorted(store.erased), np.int64)
    # Sorted unique UTF-8 ids (S<n>) of every event applied: retries after
    # a restart, and overlapping rebuild inputs, stay duplicates.
    arrays[EVENT_IDS] = store.seen_ids.to_array()
    return arrays


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
        for name, values in store_arrays(store).items():
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
                "erased": len(store.erased),
                "event_ids": len(store.seen_ids),
            },
            "graph_config": {
                "half_life_s": store.config.half_life_s,
                "weights": {t.name: w for t, w in store.config.weights.items()},
            },
            "embedding_dim": int(vectors.shape[1]),
            "index_type": type(index).__name__,
            "files": files,
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
    if version != FORMAT_VERSION:
        raise SnapshotError(f"{directory}: snapshot format {version}, this build reads {FORMAT_VERSION}")
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
    return EventIdSet(ids)


def read_snapshot(directory: Path, config: GraphConfig, clock: Clock, *, check: bool = True) -> Snapshot:
    """Load a snapshot; big arrays are memory-mapped read-only."""
    directory = Path(directory)
    manifest = verify(directory) if check else read_manifest(directory)

    def arr(name: str, mmap: bool = True) -> np.ndarray:
        try:
            return np.load(directory / f"{name}.npy", mmap_mode="r" if mmap else None, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise SnapshotError(f"{directory}: {name}.npy unreadable: {err}") from None

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
    profiles = ProfileTable({c: arr(f"profiles.{c}", mmap=False) for c in COLUMNS})
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
        erased=set(arr("erased", mmap=False).tolist()),
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
