"""Review a policy change before it ships: on a seeded sample of viewers,
count the suggestions each reason would add or remove."""

from __future__ import annotations

import secrets
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate

from graph.ann import VectorSearch
from graph.clock import ManualClock
from graph.config import GraphConfig
from graph.model import Surface
from graph.snapshot import read_snapshot
from service.pipeline import Pipeline
from service.safety.engine import SafetyEngine
from service.safety.exposure import ImpressionLedger
from service.safety.guardian import GuardianRegistry
from service.safety.policy import PolicyHolder, load_policy


@dataclass
class PolicyDiff:
    old_version: str
    new_version: str
    viewers: int
    removed: Counter[str] = field(default_factory=Counter)  # reason under NEW that removes
    added: Counter[str] = field(default_factory=Counter)  # reason under OLD that had removed
    ineligible_changes: Counter[str] = field(default_factory=Counter)
    unchanged: int = 0


def policy_diff(old_path: Path, new_path: Path, snapshot_dir: Path, sample: int, seed: int) -> PolicyDiff:
    old, new = load_policy(old_path), load_policy(new_path)
    snapshot = read_snapshot(snapshot_dir, GraphConfig(), ManualClock(0.0))
    store = snapshot.store
    now = store.last_event_time
    store.clock = ManualClock(now)
    search = VectorSearch(snapshot.vectors, snapshot.index)
    guardians = GuardianRegistry(secrets.token_bytes(32), store.clock)

    def pipeline(policy_holder: PolicyHolder) -> Pipeline:
        return Pipeline(store, search, safety=SafetyEngine(policy_holder, guardians, ImpressionLedger()))

    before, after = pipeline(PolicyHolder(old)), pipeline(PolicyHolder(new))
    rng = np.random.default_rng(seed)
    users = store.ids.all_ext()
    viewers = rng.choice(users, size=min(sample, users.shape[0]), replace=False) if users.shape[0] else users
    diff = PolicyDiff(old.version, new.version, int(viewers.shape[0]))
    for viewer in viewers.tolist():
        a = before.suggest(viewer, Surface.NEW_CONTACTS, now)
        b = after.suggest(viewer, Surface.NEW_CONTACTS, now)
        if a.ineligible != b.ineligible:
            diff.ineligible_changes[f"{a.ineligible} -> {b.ineligible}"] += 1
        row = store.row(viewer)
        lost = np.setdiff1d(a.user_ids, b.user_ids)
        gained = np.setdiff1d(b.user_ids, a.user_ids)
        for user in lost.tolist():
            reasons = after.safety.suggestion_reasons(store, row, store.row(user), now)
            diff.removed[reasons[0].name if reasons else "RANKING"] += 1
        for user in gained.tolist():
            reasons = before.safety.suggestion_reasons(store, row, store.row(user), now)
            diff.added[reasons[0].name if reasons else "RANKING"] += 1
        diff.unchanged += int(np.intersect1d(a.user_ids, b.user_ids).shape[0])
    return diff


def format_diff(diff: PolicyDiff) -> str:
    lines = [f"policy {diff.old_version} -> {diff.new_version} on {diff.viewers} sampled viewers",
             f"unchanged suggestions: {diff.unchanged}", ""]
    reasons = sorted(set(diff.removed) | set(diff.added))
    lines.append(tabulate([[reason, diff.removed.get(reason, 0), diff.added.get(reason, 0)] for reason in reasons],
                          ["reason", "removed", "added"]))
    if not reasons:
        lines.append("(no suggestion changes)")
    for change, n in sorted(diff.ineligible_changes.items()):
        lines.append(f"viewer eligibility {change}: {n}")
    return "\n".join(lines)


def diff_document(diff: PolicyDiff) -> dict[str, Any]:
    """The diff as the JSON document `contactgraph policy diff --json` prints."""
    return {"old_version": diff.old_version, "new_version": diff.new_version, "viewers": diff.viewers,
            "unchanged": diff.unchanged, "removed": dict(diff.removed), "added": dict(diff.added),
            "ineligible_changes": dict(diff.ineligible_changes)}
