"""Bounds on the work one suggestion request may do, whatever the degrees
it meets on the way (celebrities with millions of followers, accounts that
follow hundreds of thousands).

Three named caps, each ``None`` for "no cap" (``Bounds.off()``):

- ``hub_fanout``: at most this many neighbours are read through any one
  node when a source expands the graph: the viewer's own ties and each
  neighbour's, in friends-of-friends, contacts-of-contacts and every step
  of the random walk. In the contact graph a hub keeps its ``hub_fanout``
  strongest ties (tie weight: long-half-life strength both ways plus the
  follow bonus; ties to the lower row), chosen once per graph, so the cut
  drops the ties that say least about any one pair (the Adamic–Adar
  argument) and a request reads a fixed list. Friendships carry no
  strength, so friends-of-friends takes an evenly spaced sample of a hub's
  sorted friend list: deterministic, and not biased to old (low) rows as a
  prefix would be.
- ``source_pool``: at most this many entries gathered per source (per walk
  step) before scoring, the strongest seeds first; with ``hub_fanout`` the
  pool a source sorts and counts is at most this, not the sum of degrees.
- ``pre_rank_keep``: at most this many candidates reach the learned ranker;
  a cheap pre-rank (the linear blend of source scores) keeps the best.

The contact graph reads its bounds from ``ContactGraph.bounds`` (the ranker's
features and the sources must see the same 2-hop reach); the store's
friends-of-friends and the pre-rank read ``RetrievalConfig.bounds``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Bounds:
    hub_fanout: int | None = 200
    source_pool: int | None = 20_000
    # Off by default: the linear pre-rank is a poor proxy for the learned
    # ranker (bitcoin-otc @70%: Recall@20 0.320 -> 0.272 with 300 kept), and
    # the sources' own k already bound the pool (<= ~1,600). See
    # docs/performance.md, "Which cap costs quality".
    pre_rank_keep: int | None = None

    def __post_init__(self) -> None:
        for name in ("hub_fanout", "source_pool", "pre_rank_keep"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"Bounds.{name} must be a positive int or None, got {value!r}")

    @staticmethod
    def off() -> Bounds:
        """No caps: every source reads every tie (today's unbounded work)."""
        return Bounds(None, None, None)
