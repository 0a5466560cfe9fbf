"""The erasure ledger: who has been erased, kept as keyed hashes, never as
ids.

An erased user must stay erased: a later event naming them, a rebuild fed
old raw logs, a snapshot written from the live store must neither bring
them back nor write their id down. The ledger answers "was this id
erased?" from keyed hashes (BLAKE2b-128 keyed with a 32-byte secret, hex),
so a snapshot or ledger file read without the key lists nobody.

The key lives in ``erasure.key`` in the data directory (beside the snapshot
directories, whose parent it is), is created the first time a ledger is
written there, and is read when a snapshot with a ledger is loaded. Ids
are small and guessable: whoever holds both the key and a ledger can test
whether a given id was erased, but nothing lists the ids.

In memory a ledger also remembers, in the clear, the ids erased by this
process (events it applied or folded): they are never written anywhere,
and they let a ledger that has no key yet (a fresh rebuild) work until it
is written under one."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import struct
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .durable import fsync_dir
from .errors import GraphError

__all__ = [
    "KEY_FILE",
    "ErasureKeyError",
    "ErasureLedger",
    "key_id",
    "ledger_with_key",
    "load_or_create_key",
    "read_key",
    "read_ledger_file",
    "write_ledger_file",
]

KEY_FILE = "erasure.key"
_KEY_BYTES = 32
# Domain separation: the same key must never hash anything else to the
# same values.
_PERSON = b"cg-erased-user1"
_DIGEST = np.dtype("S32")  # 16 bytes as lowercase hex: no NUL bytes for numpy to strip
_LEDGER_FORMAT = "contactgraph-erasure-ledger"


class ErasureKeyError(GraphError):
    """The erasure key is missing, unreadable, or not the one a ledger was
    made with."""


def key_id(key: bytes) -> str:
    """A short public fingerprint of a key (stored in manifests, so that a
    ledger is never checked against the wrong key)."""
    return hashlib.blake2b(b"key id", key=key, digest_size=8, person=_PERSON).hexdigest()


def read_key(directory: Path) -> bytes | None:
    """The erasure key of a data directory; None if it has none."""
    path = Path(directory) / KEY_FILE
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise ErasureKeyError(f"{path}: unreadable: {err}") from None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != _KEY_BYTES:
        raise ErasureKeyError(f"{path}: not an erasure key ({_KEY_BYTES} bytes as hex)")
    return key


def load_or_create_key(directory: Path, key: bytes | None = None) -> bytes:
    """The data directory's key, creating it (``key`` if given, else a new
    random one) when there is none. Created with a link so that two writers
    racing end up with the same key; readable by the owner only."""
    directory = Path(directory)
    found = read_key(directory)
    if found is not None:
        return found
    directory.mkdir(parents=True, exist_ok=True)
    key = key if key is not None else secrets.token_bytes(_KEY_BYTES)
    tmp = directory / f".{KEY_FILE}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, key.hex().encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, directory / KEY_FILE)
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    fsync_dir(directory)
    found = read_key(directory)
    assert found is not None
    return found


class ErasureLedger:
    """Membership of erased users by keyed hash.

    ``digests``: sorted unique ``S32`` array (hex of 16-byte keyed hashes)
    made with ``key``; it is never written to. ``in``, ``erased_among`` and
    ``subset`` test external ids; ``add`` records an erasure. Not
    thread-safe on its own: the store's lock guards it."""

    __slots__ = ("_added", "_base", "_key", "_known", "_pending")

    def __init__(self, key: bytes | None = None, digests: np.ndarray | None = None) -> None:
        base = np.zeros(0, _DIGEST) if digests is None else np.asarray(digests)
        if base.ndim != 1 or base.dtype != _DIGEST:
            raise ErasureKeyError(f"an erasure ledger is a vector of {_DIGEST}, got {base.dtype} {base.shape}")
        if base.shape[0] and key is None:
            raise ErasureKeyError("an erasure ledger with entries needs the key it was made with")
        self._key = key
        self._base = base
        self._added: set[bytes] = set()
        # Ids erased by this process, in the clear: memory only. Replaced,
        # never mutated, so ``known`` hands it out without a copy.
        self._known: frozenset[int] = frozenset()
        # Known ids not hashed yet, because there is no key yet.
        self._pending: set[int] = set()

    @property
    def key(self) -> bytes | None:
        return self._key

    @property
    def known(self) -> frozenset[int]:
        """Ids erased by this process (events applied or folded here), in
        the clear, never persisted. Ids erased before (in the ledger as
        hashes only) are not in it: ask ``in`` for those."""
        return self._known

    def __len__(self) -> int:
        return int(self._base.shape[0]) + len(self._added) + len(self._pending)

    def __bool__(self) -> bool:
        return len(self) > 0

    def copy(self) -> ErasureLedger:
        out = ErasureLedger(self._key, self._base)
        out._added = set(self._added)
        out._known = self._known
        out._pending = set(self._pending)
        return out

    # -- hashing -------------------------------------------------------
    def _hasher(self) -> hashlib.blake2b:
        assert self._key is not None
        return hashlib.blake2b(key=self._key, digest_size=16, person=_PERSON)

    def digest(self, ext: int) -> bytes:
        """The keyed hash of one external id (32 hex bytes)."""
        h = self._hasher()
        h.update(struct.pack("<q", ext))
        return h.hexdigest().encode()

    def digests_of(self, ext: np.ndarray) -> np.ndarray:
        """Keyed hashes of many ids (int64 array in, ``S32`` array out, same
        order)."""
        raw = np.ascontiguousarray(ext, "<i8").tobytes()
        base = self._hasher()
        out = []
        for i in range(0, len(raw), 8):
            h = base.copy()
            h.update(raw[i:i + 8])
            out.append(h.hexdigest())
        return np.array(out, _DIGEST) if out else np.zeros(0, _DIGEST)

    def _has_hashes(self) -> bool:
        return self._key is not None and (self._base.shape[0] > 0 or bool(self._added))

    def _has_digest(self, digest: bytes) -> bool:
        if digest in self._added:
            return True
        base = self._base
        i = int(base.searchsorted(digest))
        return i < base.shape[0] and bytes(base[i]) == digest

    # -- membership ----------------------------------------------------
    def __contains__(self, ext: object) -> bool:
        if not isinstance(ext, int):
            return False
        if ext in self._known:
            return True
        return self._has_hashes() and self._has_digest(self.digest(ext))

    def erased_among(self, ext: np.ndarray) -> np.ndarray:
        """Per id, was it erased (bool array, same shape)? Each distinct id
        not erased by this process is hashed once."""
        ext = np.asarray(ext, np.int64)
        out = np.zeros(ext.shape, bool)
        if self._known:
            out = np.isin(ext, np.fromiter(self._known, np.int64, len(self._known)))
        if self._has_hashes():
            rest = np.flatnonzero(~out)
            uniq, inverse = np.unique(ext[rest], return_inverse=True)
            hit = np.isin(self.digests_of(uniq), self._all_digests())
            out[rest] = hit[inverse]
        return out

    def subset(self, ext: Iterable[int]) -> set[int]:
        """The erased ones among ``ext``."""
        ids = np.fromiter(set(ext), np.int64)
        if not self or ids.shape[0] == 0:
            return set()
        return set(ids[self.erased_among(ids)].tolist())

    # -- changes -------------------------------------------------------
    def add(self, ext: int) -> bool:
        """Record an erasure; False if the id was already in the ledger."""
        new = ext not in self
        if ext not in self._known:
            self._known = self._known | {ext}
        if not new:
            return False
        if self._key is not None:
            self._added.add(self.digest(ext))
        else:
            self._pending.add(ext)
        return True

    def add_many(self, ext: np.ndarray) -> None:
        ext = np.unique(np.asarray(ext, np.int64))
        for value in ext[~self.erased_among(ext)].tolist():
            self.add(value)
        self._known = self._known | set(ext.tolist())

    def bind(self, key: bytes) -> None:
        """Hash everything under ``key`` from now on. Raises ErasureKeyError
        if the ledger already holds hashes made with another key (hashes
        cannot be re-keyed)."""
        if self._key is not None and self._key != key:
            if self._base.shape[0] or self._added:
                raise ErasureKeyError(f"the erasure ledger was made with key {key_id(self._key)}, not "
                                      f"{key_id(key)}: copy that data directory's {KEY_FILE} along with it")
            self._pending |= self._known
        self._key = key
        for ext in sorted(self._pending):
            self._added.add(self.digest(ext))
        self._pending.clear()

    def _all_digests(self) -> np.ndarray:
        if not self._added:
            base: np.ndarray = self._base
            return base
        added = np.array(sorted(self._added), _DIGEST)
        if self._base.shape[0] == 0:
            return added
        merged = np.concatenate([self._base, added])
        merged.sort()
        return merged

    def to_array(self) -> np.ndarray:
        """Every entry as a sorted unique ``S32`` vector (the on-disk form).
        Call ``bind`` first if any id is not hashed yet."""
        if self._pending:
            raise ErasureKeyError("the erasure ledger has no key yet; bind one before writing it")
        return np.unique(self._all_digests())


def write_ledger_file(ledger: ErasureLedger, path: Path) -> None:
    """Write the ledger alone (JSON: format, key id and hex digests; never an
    id) atomically. Its key must be in ``erasure.key`` beside it: created
    from the ledger's own key if that directory has none."""
    path = Path(path)
    key = load_or_create_key(path.parent, ledger.key)
    ledger.bind(key)
    body = {"format": _LEDGER_FORMAT, "version": 1, "key_id": key_id(key),
            "digests": [d.decode() for d in ledger.to_array().tolist()]}
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(body, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def read_ledger_file(path: Path, key: bytes | None = None) -> ErasureLedger:
    """A ledger file, with its key from ``erasure.key`` beside it unless
    ``key`` is given."""
    path = Path(path)
    try:
        body = json.loads(path.read_text())
        digests = np.array([d.encode("ascii") for d in body["digests"]], _DIGEST)
        if body.get("format") != _LEDGER_FORMAT:
            raise ValueError(f"format {body.get('format')!r}")
    except (OSError, ValueError, KeyError, TypeError, UnicodeEncodeError) as err:
        raise ErasureKeyError(f"{path}: not an erasure ledger file: {err}") from None
    return ledger_with_key(np.unique(digests) if digests.shape[0] else np.zeros(0, _DIGEST),
                           str(body.get("key_id", "")), key if key is not None else read_key(path.parent),
                           str(path.parent / KEY_FILE))


def ledger_with_key(digests: np.ndarray, expected_key_id: str, key: bytes | None, where: str) -> ErasureLedger:
    """A ledger of ``digests`` checked against the key they were made with
    (``expected_key_id``); ``where`` names the key file in errors."""
    if digests.shape[0] == 0:
        return ErasureLedger(key)
    if key is None:
        raise ErasureKeyError(f"the erasure ledger needs its key {expected_key_id}: {where} is missing")
    if key_id(key) != expected_key_id:
        raise ErasureKeyError(f"the erasure ledger was made with key {expected_key_id}, {where} holds "
                              f"{key_id(key)}")
    return ErasureLedger(key, digests)
