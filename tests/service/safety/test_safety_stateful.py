"""A stateful property test (issue 20, item 1): random sequences of profile
changes (age bands, assurance, privacy, state, discoverable), follows and
unfollows, blocks and unblocks, reports, messages, guardian links and
controls, erasures and time passing, applied to a live GraphStore and
SafetyEngine (``safety_oracle.Harness``), with invariants checked after
every step:

* no adult, and no account that ever declared ADULT with weak assurance,
  may message a minor who does not follow it, and no such account and minor
  are suggested to each other unless they are friends;
* whatever the pipeline suggests may be messaged, and the oracle allows it;
* nothing a block (either way), a report (either way, for suggestions) or a
  guardian control in force forbids is ever allowed;
* the engine agrees with the independent oracle on every pair, for
  messaging (scalar and vectorised rules alike) and for suggestions.

"Minor" and "adult" in the first invariant are the plain facts the test
keeps itself (the band a user declares now, whether it ever declared ADULT
while weakly assured), not the engine's readings.

Examples: the ``stateful`` hypothesis profile in ``make test``; ``make
fuzz`` runs this file with HYPOTHESIS_PROFILE=fuzz (tests/conftest.py)."""

from __future__ import annotations

import contextlib
import os
from typing import Any

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from service.safety.guardian import GuardianError
from tests.support.safety_oracle import DAY, Harness

N_USERS = 6
USERS = list(range(1, N_USERS + 1))
MINOR_BANDS = ("UNDER_13", "13_15", "16_17")
WEAK = (None, "DECLARED")
# Small thresholds so that random sequences cross them.
POLICY: dict[str, Any] = {"suspicious_min_minors": 2, "suspicious_window_days": 10.0, "min_mutual_friends": 1,
                          "unblock_cooldown_days": 2.0, "unfollow_days": 2.0}

users = st.sampled_from(USERS)
# Mostly the bands and assurances that make ages uncertain.
bands = st.sampled_from(["ADULT", "16_17", "ADULT", "16_17", "13_15", "UNDER_13", None])
assurances = st.sampled_from([None, "DECLARED", "DECLARED", "VERIFIED", "ESTIMATED"])
privacies = st.sampled_from([None, None, None, "EVERYONE", "FRIENDS", "NO_ONE"])
states = st.sampled_from([None] * 8 + ["ACTIVE", "BANNED"])
discoverables = st.sampled_from([None, None, True, False])
first_profile = st.fixed_dictionaries({
    "age_band": st.sampled_from(["ADULT", "16_17", "ADULT", "16_17", "13_15"]),
    "assurance": assurances,
    "privacy": st.sampled_from(["EVERYONE"] * 5 + ["FRIENDS"]),
    "discoverable": st.sampled_from([True, True, None]),
})


class AgeSafetyMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.h = Harness(POLICY)
        # The test's own facts, kept apart from the engine and the oracle.
        self.band: dict[int, str | None] = {}
        self.assurance: dict[int, str | None] = {}
        self.ever_weak_adult: set[int] = set()
        self.follows: set[tuple[int, int]] = set()
        self.blocks: set[tuple[int, int]] = set()
        self.reports: set[tuple[int, int]] = set()
        self.erased: set[int] = set()

    # -- steps ------------------------------------------------------------
    @initialize(profiles=st.lists(first_profile, min_size=N_USERS, max_size=N_USERS))
    def start(self, profiles: list[dict[str, Any]]) -> None:
        for uid, p in zip(USERS, profiles, strict=True):
            self._profile(uid, {**p, "state": "ACTIVE"})

    def _profile(self, uid: int, fields: dict[str, Any]) -> None:
        self.h.update(uid, **fields)
        if fields.get("age_band") is not None:
            self.band[uid] = fields["age_band"]
        if fields.get("assurance") is not None:
            self.assurance[uid] = fields["assurance"]
        if self.band.get(uid) == "ADULT" and self.assurance.get(uid) in WEAK:
            self.ever_weak_adult.add(uid)

    def _live(self, *uids: int) -> bool:
        return not any(u in self.erased for u in uids)

    @rule(uid=users, band=bands, assurance=assurances, privacy=privacies, state=states,
          discoverable=discoverables)
    def change_profile(self, uid: int, band: str | None, assurance: str | None, privacy: str | None,
                       state: str | None, discoverable: bool | None) -> None:
        fields = {k: v for k, v in {"age_band": band, "assurance": assurance, "privacy": privacy, "state": state,
                                    "discoverable": discoverable}.items() if v is not None}
        if fields and self._live(uid):
            self._profile(uid, fields)

    @rule(a=users, b=users, kind=st.sampled_from(["follow", "follow", "befriend", "unfollow", "message"]))
    def relate(self, a: int, b: int, kind: str) -> None:
        if a == b or not self._live(a, b):
            return
        getattr(self.h, kind)(a, b)
        if kind in ("follow", "befriend"):
            self.follows.add((a, b))
        if kind == "befriend":
            self.follows.add((b, a))
        if kind == "unfollow":
            self.follows.discard((a, b))

    @rule(a=users, b=users, kind=st.sampled_from(["block", "block", "unblock", "report"]))
    def accuse(self, a: int, b: int, kind: str) -> None:
        if a == b or not self._live(a, b):
            return
        getattr(self.h, kind)(a, b)
        if kind == "block":
            self.blocks.add((a, b))
        elif kind == "unblock":
            self.blocks.discard((a, b))
        else:
            self.reports.add((a, b))

    @rule(child=users, suggestions=st.sampled_from([None, False]),
          messaging=st.sampled_from([None, "FRIENDS_ONLY", "NO_ONE", "PLATFORM_DEFAULT"]),
          removed=st.lists(users, max_size=2))
    def guardian(self, child: int, suggestions: bool | None, messaging: str | None, removed: list[int]) -> None:
        # Guardians link to minors only (the service refuses others).
        if not self._live(child) or not self.h.world.is_minor(child) or self.h.row(child) < 0:
            return
        # A loosening control is refused and changes nothing.
        with contextlib.suppress(GuardianError):
            self.h.guardian(child, suggestions=suggestions, messaging=messaging, removed=tuple(removed))

    @rule(uid=users)
    def erase(self, uid: int) -> None:
        if self._live(uid) and len(self.erased) < 2:  # leave most users alive
            self.h.erase(uid)
            self.erased.add(uid)
            for facts in (self.follows, self.blocks, self.reports):
                facts -= {pair for pair in facts if uid in pair}

    @rule(seconds=st.sampled_from([3600.0, DAY, 3 * DAY, 12 * DAY]))
    def wait(self, seconds: float) -> None:
        self.h.advance(seconds)

    # -- invariants ---------------------------------------------------------
    def _adultish(self, u: int) -> bool:
        return self.band.get(u) == "ADULT" or u in self.ever_weak_adult

    def _minor(self, u: int) -> bool:
        return self.band.get(u) in MINOR_BANDS

    def _friends(self, a: int, b: int) -> bool:
        return (a, b) in self.follows and (b, a) in self.follows

    def _guardian_forbids(self, a: int, b: int) -> bool:
        """A guardian control in force on either user forbids a <-> b."""
        for child, other in ((a, b), (b, a)):
            g = self.h.world.controls(child)
            if g is None:
                continue
            if other in g.removed or g.messaging == "NO_ONE":
                return True
            if g.messaging == "FRIENDS_ONLY" and not self._friends(a, b):
                return True
        return False

    @invariant()
    def messaging_is_safe_and_agrees(self) -> None:
        h = self.h
        for s in USERS:
            many = h.engine.check_messaging(h.store, s, USERS, h.now)
            for r, batch in zip(USERS, many, strict=True):
                one = h.check(s, r)
                assert one == batch, (s, r, one, batch)
                assert one.decision.name == h.world.message_decision(s, r), (s, r, one)
                if not one.allowed:
                    continue
                where = f"{s} may message {r}: {one}"
                assert self._live(s, r), where
                assert not (self._adultish(s) and self._minor(r) and (r, s) not in self.follows), where
                assert (s, r) not in self.blocks and (r, s) not in self.blocks, where
                assert not self._guardian_forbids(s, r), where

    @invariant()
    def suggestions_are_safe_and_agree(self) -> None:
        h = self.h
        pipeline = h.pipeline()
        rows = np.arange(h.store.n_rows, dtype=np.int32)
        ids = h.store.ids.ext(rows).tolist()
        for v in USERS:
            row = h.row(v)
            eligible = row >= 0 and h.engine.viewer_ineligibility(h.store, row) is None
            assert eligible == h.world.viewer_may_receive(v), v
            if eligible:
                verdict = h.engine.filter_suggestions(h.store, row, rows, h.now)
                for c, keep in zip(ids, verdict.keep.tolist(), strict=True):
                    assert keep == h.world.may_suggest(v, int(c)), (v, c, keep)
            g = h.world.controls(v)
            suggested = [int(c) for c in pipeline.suggest(v, _surface(), h.now).user_ids.tolist()]
            for c in suggested:
                where = f"{c} suggested to {v}"
                assert eligible, where
                assert h.check(v, c).allowed, where
                assert h.world.may_suggest(v, c), where
                mixed = (self._adultish(c) and self._minor(v)) or (self._adultish(v) and self._minor(c))
                assert not mixed or self._friends(v, c), where
                assert (v, c) not in self.reports and (c, v) not in self.reports, where
                assert not self._guardian_forbids(v, c), where
                assert g is None or g.suggestions, where
                gc = h.world.controls(c)
                assert gc is None or gc.suggestions, where


def _surface() -> Any:
    from graph.model import Surface

    return Surface.NEW_CONTACTS


# ``make fuzz`` sets HYPOTHESIS_PROFILE=fuzz; otherwise the bounded profile.
AgeSafetyMachine.TestCase.settings = settings.get_profile(
    "fuzz" if os.environ.get("HYPOTHESIS_PROFILE") == "fuzz" else "stateful")
TestAgeSafetyMachine = AgeSafetyMachine.TestCase
