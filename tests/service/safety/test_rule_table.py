"""The rule tables assembled in ``service/safety/rules/`` (issue 14): the
order of the rules is the order they had in ``service/safety/engine.py``
(the first rule that removes a suggestion is its reported reason, so order
is behaviour), each rule lives in the file of its family ("where is the
block rule?" takes one guess), and the engine serves the same tables.

The tables below are written out on purpose: a change to them is a change
of behaviour and must show up here."""

from __future__ import annotations

import importlib
import pkgutil

import service.safety.rules as rules_package
from service.safety import engine
from service.safety.reasons import FilterReason
from service.safety.rules import NAMEABLE_RULES, SEND_RULES, SUGGESTION_ONLY_RULES, SUGGESTION_RULES
from service.safety.rules.common import Rule

# (name, reason, family file under service/safety/rules/), in table order.
SEND = [
    ("self", FilterReason.SELF, "identity"),
    ("missing_profile", FilterReason.MISSING_PROFILE, "identity"),
    ("account_state", FilterReason.ACCOUNT_STATE, "moderation"),
    ("under_16", FilterReason.UNDER_16, "age"),
    ("blocked", FilterReason.BLOCKED, "blocks"),
    ("message_privacy", FilterReason.MESSAGE_PRIVACY, "privacy"),
    ("adult_to_minor_not_followed", FilterReason.ADULT_TO_MINOR_NOT_FOLLOWED, "age"),
    ("suspicious_adult", FilterReason.SUSPICIOUS_ADULT, "moderation"),
    ("guardian_removed_contact", FilterReason.GUARDIAN_REMOVED_CONTACT, "guardian"),
    ("guardian_messaging", FilterReason.GUARDIAN_MESSAGING_RESTRICTED, "guardian"),
]
SUGGESTION_ONLY = [
    ("under_suggestion_age", FilterReason.UNDER_16, "age"),
    ("minor_adult_not_friends", FilterReason.MINOR_ADULT_NOT_FRIENDS, "age"),
    ("minor_no_safe_connection", FilterReason.MINOR_NO_SAFE_CONNECTION, "age"),
    ("muted", FilterReason.MUTED, "blocks"),
    ("reported", FilterReason.REPORTED, "moderation"),
    ("dismissed", FilterReason.DISMISSED, "feedback"),
    ("recently_unfollowed", FilterReason.RECENTLY_UNFOLLOWED, "feedback"),
    ("unblock_cooldown", FilterReason.UNBLOCK_COOLDOWN, "blocks"),
    ("not_discoverable", FilterReason.NOT_DISCOVERABLE, "privacy"),
    ("guardian_suggestions_off", FilterReason.GUARDIAN_SUGGESTIONS_OFF, "guardian"),
    ("impression_fatigue", FilterReason.IMPRESSION_FATIGUE, "exposure"),
    ("exposure_cap", FilterReason.EXPOSURE_CAP, "exposure"),
]
NAMEABLE = [
    "self", "missing_profile", "account_state", "under_16", "blocked", "adult_to_minor_not_followed",
    "suspicious_adult", "guardian_removed_contact", "under_suggestion_age", "not_discoverable",
    "guardian_suggestions_off",
]
# The rules that skip work for candidates an earlier rule removed.
NARROWING = {"suspicious_adult", "minor_no_safe_connection", "impression_fatigue"}


def _names(table: tuple[Rule, ...]) -> list[str]:
    return [rule.name for rule in table]


class TestOrder:
    def test_send_rules(self) -> None:
        """The send rules, names and reasons, in today's order."""
        assert [(r.name, r.reason) for r in SEND_RULES] == [(n, reason) for n, reason, _ in SEND]

    def test_suggestion_only_rules(self) -> None:
        """The suggestion-only rules, names and reasons, in today's order."""
        assert [(r.name, r.reason) for r in SUGGESTION_ONLY_RULES] == [(n, reason) for n, reason, _ in SUGGESTION_ONLY]

    def test_suggestion_rules_are_send_then_suggestion_only(self) -> None:
        """Suggestions apply every send rule first, then the suggestion-only
        rules, so whatever is suggested can be messaged."""
        assert _names(SUGGESTION_RULES) == [n for n, _, _ in SEND + SUGGESTION_ONLY]

    def test_nameable_rules(self) -> None:
        """The rules that decide who may be named as a friend in common, in
        suggestion order."""
        assert _names(NAMEABLE_RULES) == NAMEABLE

    def test_engine_serves_the_same_tables(self) -> None:
        """``service.safety.engine`` hands out the assembled tables
        themselves, not copies that could drift."""
        assert engine.SEND_RULES is SEND_RULES
        assert engine.SUGGESTION_ONLY_RULES is SUGGESTION_ONLY_RULES
        assert engine.SUGGESTION_RULES is SUGGESTION_RULES
        assert engine.NAMEABLE_RULES is NAMEABLE_RULES


class TestWhereEachRuleLives:
    def test_each_rule_is_in_its_family_file(self) -> None:
        """A rule's vectorised form and scalar twin are in
        ``service/safety/rules/<family>.py``, and so is its row."""
        family_of = {name: family for name, _, family in SEND + SUGGESTION_ONLY}
        for rule in SUGGESTION_RULES:
            module = f"service.safety.rules.{family_of[rule.name]}"
            assert rule.reject.__module__ == module, rule.name
            if rule.reject_one is not None:
                assert rule.reject_one.__module__ == module, rule.name
            rows = [value for value in vars(importlib.import_module(module)).values() if value is rule]
            assert rows, f"{rule.name}: its row is not in {module}"

    def test_every_row_in_a_family_file_is_in_the_tables(self) -> None:
        """No rule is written in a family file and left out of the tables."""
        tabled = {id(rule) for rule in SUGGESTION_RULES}
        for info in pkgutil.iter_modules(rules_package.__path__):
            module = importlib.import_module(f"service.safety.rules.{info.name}")
            for name, value in vars(module).items():
                if isinstance(value, Rule):
                    assert id(value) in tabled, f"service.safety.rules.{info.name}.{name} is in no table"

    def test_send_rules_have_scalar_twins(self) -> None:
        """Every send rule has a scalar twin (the one-recipient send path);
        the suggestion-only rules have none."""
        assert all(rule.reject_one is not None for rule in SEND_RULES)
        assert all(rule.reject_one is None for rule in SUGGESTION_ONLY_RULES)

    def test_narrowing_rules(self) -> None:
        """Only the heavy rules skip candidates removed already."""
        assert {rule.name for rule in SUGGESTION_RULES if rule.narrows} == NARROWING
