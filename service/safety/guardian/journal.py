"""The guardian journal on disk and its erasure scrubbing: the JSON-lines
file read and rewritten whole (temporary name, fsync, rename), the
``LOCK`` beside it, the user ids a record names, and the scrubber that
drops or pseudonymises an erased user's records (see the package
docstring). ``scrub_journal`` rewrites a journal no server has open
(``contactgraph wal compact``)."""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from graph.durable import fsync_dir
from graph.model import MAX_USER_ID

# Which of these user ids are erased? (the store's ledger answers)
ErasedOf = Callable[[Iterable[int]], set[int]]


def nobody(ids: Iterable[int]) -> set[int]:
    return set()


_USER_ID = re.compile(r"[1-9][0-9]{0,18}")
_NUMBER = re.compile(r"(?<![0-9])[1-9][0-9]{0,18}(?![0-9])")
ERASED_GUARDIAN_PREFIX = "erased-guardian-"


def _as_user(text: object) -> int | None:
    """The user id a guardian id or a number in a detail spells, if any."""
    if isinstance(text, str) and _USER_ID.fullmatch(text):
        value = int(text)
        if value <= MAX_USER_ID:
            return value
    return None


def named_ids(rec: dict[str, Any]) -> set[int]:
    """Every user id a journal record names: child, a guardian id that is a
    user id, removed contacts, numbers in an audit detail."""
    ids = {int(rec["child"])}
    guardian = _as_user(rec.get("guardian"))
    if guardian is not None:
        ids.add(guardian)
    ids.update(int(u) for u in rec.get("removed", ()))
    detail = rec.get("detail")
    if isinstance(detail, str):
        ids.update(u for u in (_as_user(m) for m in _NUMBER.findall(detail)) if u is not None)
    return {u for u in ids if 0 < u <= MAX_USER_ID}


class Scrubber:
    """One record without the ``erased`` users (None: drop it); erased
    guardians get the same pseudonym in every record."""

    def __init__(self, erased: set[int], pseudonyms: dict[str, str]) -> None:
        self.erased = erased
        self.pseudonyms = pseudonyms

    def __call__(self, rec: dict[str, Any]) -> dict[str, Any] | None:
        erased = self.erased
        if int(rec["child"]) in erased:
            return None
        out = rec
        guardian = rec.get("guardian")
        if _as_user(guardian) in erased:
            assert isinstance(guardian, str)
            alias = self.pseudonyms.setdefault(guardian, ERASED_GUARDIAN_PREFIX + secrets.token_hex(6))
            out = {**out, "guardian": alias}
        removed = rec.get("removed")
        if removed is not None and any(u in erased for u in removed):
            out = {**out, "removed": [u for u in removed if u not in erased]}
        detail = rec.get("detail")
        if isinstance(detail, str):
            new = _NUMBER.sub(lambda m: "an erased user" if _as_user(m.group()) in erased else m.group(), detail)
            if new != detail:
                out = {**out, "detail": new}
        return out


def scrub_all(records: list[dict[str, Any]], scrub: Scrubber) -> tuple[list[dict[str, Any]], int]:
    kept = []
    changed = 0
    for rec in records:
        new = scrub(rec)
        if new is not rec:
            changed += 1
        if new is not None:
            kept.append(new)
    return kept, changed


def read_journal(path: Path) -> list[dict[str, Any]]:
    """The journal's records up to the first unreadable line (a torn write,
    which replay ignores too)."""
    records: list[dict[str, Any]] = []
    if not path.exists():
        return records
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return records


def rewrite_journal(path: Path, records: list[dict[str, Any]]) -> None:
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, separators=(",", ":")) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def journal_lock(journal: Path, *, exclusive: bool, wait: bool = True) -> int:
    """Hold the ``LOCK`` beside the journal; -1 if ``wait`` is off and it
    is taken."""
    fd = os.open(journal.parent / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return -1
    return fd


def scrub_journal(path: Path, erased_of: ErasedOf) -> int | None:
    """Rewrite a guardian journal that no registry has open without the
    users ``erased_of`` says are erased (as ``forget_erased`` does).
    Returns how many records were dropped or changed; None if a server
    holds the journal (it scrubs it itself)."""
    path = Path(path)
    if not path.exists():
        return 0
    fd = journal_lock(path, exclusive=True, wait=False)
    if fd < 0:
        return None
    try:
        records = read_journal(path)
        erased = erased_of(set().union(*(named_ids(r) for r in records)))
        if not erased:
            return 0
        kept, changed = scrub_all(records, Scrubber(erased, {}))
        if changed:
            rewrite_journal(path, kept)
        return changed
    finally:
        os.close(fd)
