"""Social proof: how many friends the viewer has in common with each
suggestion, and the reasons shown with it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graph.store import GraphStore
from service.pipeline.candidates import SourceResult
from service.pipeline.reasons import SuggestionReason
from service.pipeline.steps import Shortlist
from service.safety.engine import SafetyEngine, member

FRIENDS_OF_FRIENDS = "friends_of_friends"


@dataclass(frozen=True)
class MutualFriends:
    """Fills ``mutual_counts``: friends in common with the viewer (0 for the
    viewer and the viewer's friends), counting only friends the viewer may
    be told of (``SafetyEngine.nameable_friends``): a hidden minor or a
    banned account among them would tell the viewer whom the candidate is
    friends with. ``fof_limit``: the friends-of-friends source's cut; when
    its answer is shorter it holds every friend of a friend, and is read
    instead of gathering the friend lists again."""

    store: GraphStore
    safety: SafetyEngine
    fof_limit: int | None = None
    name: str = "mutual_friends"

    def __call__(self, shortlist: Shortlist) -> None:
        rows = shortlist.rows
        through = self.safety.nameable_friends(shortlist.facts) if rows.shape[0] else None
        every_fof = shortlist.results.get(FRIENDS_OF_FRIENDS)
        if every_fof is not None and (self.fof_limit is None or every_fof.rows.shape[0] >= self.fof_limit):
            every_fof = None
        shortlist.mutual_counts = self.counts(shortlist.viewer_row, rows, every_fof, through=through)

    def counts(self, row: int, rows: np.ndarray, every_fof: SourceResult | None = None, *,
               through: np.ndarray | None = None) -> np.ndarray:
        """Friends in common with the viewer for each row (int64; distinct
        rows), as ``GraphStore.friends_of_friends`` counts. ``through``:
        count only these of the viewer's friends (sorted rows); None counts
        every friend. ``every_fof``: a complete friends-of-friends answer,
        read when every friend counts."""
        out = np.zeros(rows.shape[0], np.int64)
        friends = self.store.friends_of(row)
        every = through is None or through.shape[0] == friends.shape[0]
        if every_fof is not None and every:
            known = every_fof.rows
            hit = member(known, rows)
            out[hit] = every_fof.scores[known.searchsorted(rows[hit])].astype(np.int64)
            return out
        counted = friends if every else through
        assert counted is not None
        if counted.shape[0] == 0 or rows.shape[0] == 0:
            return out
        reach = self.store.gather_friends(counted)
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        pos = np.minimum(ordered.searchsorted(reach), ordered.shape[0] - 1)
        hit = ordered[pos] == reach
        out[order] = np.bincount(pos[hit], minlength=ordered.shape[0])
        out[(rows == row) | member(friends, rows)] = 0
        return out


@dataclass(frozen=True)
class Reasons:
    """Fills ``reasons``: one entry per reason of the sources that found the
    candidate (two sources may share one), "mutual friends" only when there
    are some to show (a contact-graph source can find people through
    message partners who are not friends). Runs after ``MutualFriends``."""

    name: str = "reasons"

    def __call__(self, shortlist: Shortlist) -> None:
        reason_of = {name: r.reason for name, r in shortlist.results.items()}
        hits = [(reason_of[name], found.tolist()) for name, found in shortlist.found_by.items()]
        mutual = shortlist.mutual_counts.tolist()
        reasons = []
        for rank in range(shortlist.rows.shape[0]):
            found_by = dict.fromkeys(r for r, hit in hits if hit[rank])
            if mutual[rank] == 0:
                found_by.pop(SuggestionReason.MUTUAL_FRIENDS, None)
            reasons.append(list(found_by))
        shortlist.reasons = reasons
