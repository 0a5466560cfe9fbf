"""Pair features for the learned ranker, computed "as of" a moment from the
contact graph and the embeddings only: the same function serves training
(as of the inner cut) and ranking (as of now), so a model never sees a
feature computed differently from the one it was trained on.

Nothing here depends on which source found a candidate."""

from __future__ import annotations

import numpy as np

from .contacts import DAY, ContactGraph

FEATURES: tuple[str, ...] = (
    "waa", "aa", "common", "walk", "waa_rank", "walk_rank", "recent_walk",
    "embedding",
    "out_short", "out_long", "in_short", "in_long",
    "out_count", "in_count",
    "unanswered_inbound",
    "pair_age_days", "inbound_age_days",
    "viewer_follows", "follows_viewer",
    "cand_degree", "cand_out_partners", "cand_in_partners", "cand_reply_rate", "cand_idle_days",
    "cand_sent_short", "cand_received_short",
    "viewer_degree", "viewer_out_partners", "viewer_reply_rate", "viewer_idle_days", "viewer_sent_short",
)

_NEVER_DAYS = 3650.0  # "no interaction" reads as ten years ago


def _age_days(when: np.ndarray, now: float) -> np.ndarray:
    age = np.where(when > 0, np.maximum(now - when, 0.0) / DAY, _NEVER_DAYS)
    return np.log1p(np.minimum(age, _NEVER_DAYS))


def _log_rank(rows: np.ndarray, scores: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """log2(1 + rank) of each candidate among ``rows`` by score (best is
    rank 1, ties to the lower row); log2(2 + len(rows)) when not reached."""
    out = np.full(candidates.shape[0], np.log2(2.0 + rows.shape[0]))
    if rows.shape[0] == 0:
        return out
    rank = np.empty(rows.shape[0])
    rank[np.lexsort((rows, -scores))] = np.arange(1, rows.shape[0] + 1)
    pos = np.minimum(np.searchsorted(rows, candidates), rows.shape[0] - 1)
    hit = rows[pos] == candidates
    out[hit] = np.log2(1.0 + rank[pos[hit]])
    return out


def pair_features(contacts: ContactGraph, vectors: np.ndarray, row: int, candidates: np.ndarray,
                  now: float) -> np.ndarray:
    """Features of (viewer ``row``, each candidate), shape
    (len(candidates), len(FEATURES)) float64, columns in ``FEATURES`` order.
    Strengths are decayed from the contact graph's moment to ``now``."""
    candidates = np.asarray(candidates, np.int64)
    n = candidates.shape[0]
    out = np.zeros((n, len(FEATURES)), np.float64)
    if n == 0:
        return out
    col = {name: i for i, name in enumerate(FEATURES)}
    hop = contacts.two_hop(row)
    common, aa, waa = hop.lookup(candidates)
    out[:, col["waa"]] = np.log1p(waa)
    out[:, col["aa"]] = np.log1p(aa)
    out[:, col["common"]] = np.log1p(common)
    # Ranks within the viewer's own reach: scales differ between viewers.
    out[:, col["waa_rank"]] = _log_rank(hop.rows, hop.waa, candidates)
    walk_rows, walk_scores = contacts.walk(row)
    out[:, col["walk_rank"]] = _log_rank(walk_rows, walk_scores, candidates)
    if walk_rows.shape[0]:
        pos = np.minimum(np.searchsorted(walk_rows, candidates), walk_rows.shape[0] - 1)
        reached = walk_rows[pos] == candidates
        out[reached, col["walk"]] = np.log1p(1000.0 * walk_scores[pos[reached]])
    recent_rows, recent_scores = contacts.recent_walk(row)
    if recent_rows.shape[0]:
        pos = np.minimum(np.searchsorted(recent_rows, candidates), recent_rows.shape[0] - 1)
        reached = recent_rows[pos] == candidates
        out[reached, col["recent_walk"]] = np.log1p(1000.0 * recent_scores[pos[reached]])
    inside = (candidates >= 0) & (candidates < vectors.shape[0])
    if 0 <= row < vectors.shape[0]:
        out[inside, col["embedding"]] = vectors[candidates[inside]] @ vectors[row]
    # Direct pair statistics.
    pos = contacts.pair_positions(row, candidates)
    hit = pos >= 0
    p = pos[hit]
    elapsed = max(now - contacts.as_of, 0.0)
    decay = np.array([np.exp2(-elapsed / contacts.config.short_half_life_s),
                      np.exp2(-elapsed / contacts.config.long_half_life_s)])
    out_s = np.zeros((n, 2))
    in_s = np.zeros((n, 2))
    out_s[hit] = contacts.out_s[p] * decay
    in_s[hit] = contacts.in_s[p] * decay
    out[:, col["out_short"]] = np.log1p(out_s[:, 0])
    out[:, col["out_long"]] = np.log1p(out_s[:, 1])
    out[:, col["in_short"]] = np.log1p(in_s[:, 0])
    out[:, col["in_long"]] = np.log1p(in_s[:, 1])
    out_n = np.zeros(n)
    in_n = np.zeros(n)
    out_n[hit] = contacts.out_n[p]
    in_n[hit] = contacts.in_n[p]
    out[:, col["out_count"]] = np.log1p(out_n)
    out[:, col["in_count"]] = np.log1p(in_n)
    out[:, col["unanswered_inbound"]] = (in_n > 0) & (out_n == 0)
    last = np.zeros(n)
    last_in = np.zeros(n)
    last[hit] = contacts.last[p]
    last_in[hit] = contacts.last_in[p]
    out[:, col["pair_age_days"]] = _age_days(last, now)
    out[:, col["inbound_age_days"]] = _age_days(last_in, now)
    follow = np.zeros(n, np.uint8)
    follow[hit] = contacts.follow[p]
    out[:, col["viewer_follows"]] = follow & 1
    out[:, col["follows_viewer"]] = (follow >> 1) & 1
    # Node statistics of the candidate and of the viewer.
    known = (candidates >= 0) & (candidates < contacts.n_rows)
    c = np.where(known, candidates, 0)

    def node(values: np.ndarray) -> np.ndarray:
        return np.where(known, values[c].astype(np.float64), 0.0)

    cand_out = node(contacts.out_partners)
    cand_in = node(contacts.in_partners)
    cand_answered = node(contacts.answered)
    out[:, col["cand_degree"]] = np.log1p(node(contacts.degree))
    out[:, col["cand_out_partners"]] = np.log1p(cand_out)
    out[:, col["cand_in_partners"]] = np.log1p(cand_in)
    out[:, col["cand_reply_rate"]] = cand_answered / np.maximum(cand_in, 1.0)
    out[:, col["cand_idle_days"]] = _age_days(node(contacts.last_active), now)
    out[:, col["cand_sent_short"]] = np.log1p(node(contacts.out_short) * decay[0])
    out[:, col["cand_received_short"]] = np.log1p(node(contacts.in_short) * decay[0])
    if 0 <= row < contacts.n_rows:
        v_in = float(contacts.in_partners[row])
        out[:, col["viewer_degree"]] = np.log1p(float(contacts.degree[row]))
        out[:, col["viewer_out_partners"]] = np.log1p(float(contacts.out_partners[row]))
        out[:, col["viewer_reply_rate"]] = float(contacts.answered[row]) / max(v_in, 1.0)
        out[:, col["viewer_idle_days"]] = _age_days(np.array([contacts.last_active[row]]), now)[0]
        out[:, col["viewer_sent_short"]] = np.log1p(float(contacts.out_short[row]) * decay[0])
    else:
        out[:, col["viewer_idle_days"]] = np.log1p(_NEVER_DAYS)
    return out
