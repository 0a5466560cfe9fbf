"""The safety rules, one family per file, and the rule tables assembled
from them. Where a rule lives:

- ``identity.py``: ``self``, ``missing_profile``;
- ``moderation.py``: ``account_state``, ``suspicious_adult``, ``reported``;
- ``age.py``: ``under_16``, ``adult_to_minor_not_followed``,
  ``under_suggestion_age``, ``minor_adult_not_friends``,
  ``minor_no_safe_connection``;
- ``blocks.py``: ``blocked``, ``muted``, ``unblock_cooldown``;
- ``privacy.py``: ``message_privacy``, ``not_discoverable``;
- ``guardian.py``: ``guardian_removed_contact``, ``guardian_messaging``,
  ``guardian_suggestions_off``;
- ``feedback.py``: ``dismissed``, ``recently_unfollowed``;
- ``exposure.py``: ``impression_fatigue``, ``exposure_cap``.

Each file holds its rules' vectorised forms, the scalar twins of its send
rules and their ``Rule`` rows (``common.py``); the tables below only put
the rows in order. The order matters: a removed suggestion reports the
first rule that removes it, and the send path lists reasons in this order.
Suggestion rules = every send rule + the suggestion-only rules, so a
suggested user can always be messaged (a property test checks)."""

from __future__ import annotations

from service.safety.rules import age, blocks, exposure, feedback, guardian, identity, moderation, privacy
from service.safety.rules.common import Rule

# Send rules: they answer CheckMessaging and are also applied to every
# suggestion (viewer as sender). Each has a scalar twin.
SEND_RULES: tuple[Rule, ...] = (
    identity.SELF,
    identity.MISSING_PROFILE,
    moderation.ACCOUNT_STATE,
    age.UNDER_16,
    blocks.BLOCKED,
    privacy.MESSAGE_PRIVACY,
    age.ADULT_TO_MINOR_NOT_FOLLOWED,
    moderation.SUSPICIOUS_ADULT,
    guardian.GUARDIAN_REMOVED_CONTACT,
    guardian.GUARDIAN_MESSAGING,
)

SUGGESTION_ONLY_RULES: tuple[Rule, ...] = (
    age.UNDER_SUGGESTION_AGE,
    age.MINOR_ADULT_NOT_FRIENDS,
    age.MINOR_NO_SAFE_CONNECTION,
    blocks.MUTED,
    moderation.REPORTED,
    feedback.DISMISSED,
    feedback.RECENTLY_UNFOLLOWED,
    blocks.UNBLOCK_COOLDOWN,
    privacy.NOT_DISCOVERABLE,
    guardian.GUARDIAN_SUGGESTIONS_OFF,
    exposure.IMPRESSION_FATIGUE,
    exposure.EXPOSURE_CAP,
)

SUGGESTION_RULES: tuple[Rule, ...] = SEND_RULES + SUGGESTION_ONLY_RULES


# Who may be counted or named to a viewer as a friend in common with
# someone else ("mutual friends"). Naming M as a friend of T tells the
# viewer something about M that M's own settings and the minors' rules
# guard, so M must be someone the viewer could be shown as a stranger:
# these rules run with ``Context.stranger`` (the viewer's own friendship
# with M does not count, as ``not_discoverable`` and the adult/minor rules
# would otherwise let every friend through): no minor is named to an adult
# (``adult_to_minor_not_followed``), nor anyone under the DM or suggestion
# age, banned or otherwise inactive, without a profile, blocked either way,
# not discoverable, removed by a guardian or with suggestions turned off by
# one, nor a suspicious adult to a minor. The rules left out are about
# messaging (privacy setting, guardian messaging limits), the viewer's own
# history (mutes, reports, dismissals, fatigue, exposure caps), or
# introducing strangers (``minor_adult_not_friends`` would also hide an
# adult friend from a minor viewer, which protects no minor;
# ``minor_no_safe_connection``), none of which says whether M may be
# disclosed.
_NAMEABLE = frozenset({
    "self", "missing_profile", "account_state", "under_16", "blocked", "adult_to_minor_not_followed",
    "suspicious_adult", "guardian_removed_contact", "under_suggestion_age", "not_discoverable",
    "guardian_suggestions_off",
})
NAMEABLE_RULES: tuple[Rule, ...] = tuple(r for r in SUGGESTION_RULES if r.name in _NAMEABLE)
assert len(NAMEABLE_RULES) == len(_NAMEABLE), "a nameable rule is missing from SUGGESTION_RULES"

__all__ = ["NAMEABLE_RULES", "SEND_RULES", "SUGGESTION_ONLY_RULES", "SUGGESTION_RULES", "Rule"]
