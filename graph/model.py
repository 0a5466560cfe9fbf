"""Plain-Python mirrors of the v1 API enums and the profile record.

The integer values equal the protobuf enum numbers (a test checks), so
numpy columns of these values need no translation at the edge."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum


class AgeBand(IntEnum):
    UNSPECIFIED = 0
    UNDER_13 = 1
    AGE_13_15 = 2
    AGE_16_17 = 3
    ADULT = 4


class MessagePrivacy(IntEnum):
    UNSPECIFIED = 0
    EVERYONE = 1
    FRIENDS = 2
    NO_ONE = 3


class AccountState(IntEnum):
    UNSPECIFIED = 0
    ACTIVE = 1
    DEACTIVATED = 2
    SUSPENDED = 3
    BANNED = 4
    UNDER_REVIEW = 5


class AgeAssurance(IntEnum):
    UNSPECIFIED = 0
    DECLARED = 1
    ESTIMATED = 2
    VERIFIED = 3


class InteractionType(IntEnum):
    UNSPECIFIED = 0
    MESSAGE = 1
    SHARE = 2
    COMMENT = 3
    MENTION = 4
    LIKE = 5


class ReportCategory(IntEnum):
    UNSPECIFIED = 0
    SPAM = 1
    HARASSMENT = 2
    INAPPROPRIATE_CONTENT = 3
    IMPERSONATION = 4
    CHILD_SAFETY = 5
    OTHER = 6


class Surface(IntEnum):
    UNSPECIFIED = 0
    NEW_CONTACTS = 1
    SHARE_SHEET = 2


class EventKind(IntEnum):
    FOLLOW = 1
    UNFOLLOW = 2
    BLOCK = 3
    UNBLOCK = 4
    MUTE = 5
    UNMUTE = 6
    REPORT = 7
    DISMISS = 8
    INTERACTION = 9
    PROFILE = 10
    ERASE_USER = 11


# Event kinds that relate two distinct users.
PAIR_KINDS = frozenset(EventKind) - {EventKind.PROFILE, EventKind.ERASE_USER}

MAX_USER_ID = 2**63 - 1

_REGION = re.compile(r"^(?:[A-Z]{2}|[0-9]{3})$")


def encode_region(code: str) -> int:
    """A CLDR region code ("GB", "419") as a small non-zero integer; raises
    ValueError for anything else."""
    if not _REGION.match(code):
        raise ValueError(f"region_code {code!r} is not a CLDR region such as 'GB'")
    if code.isdigit():
        return 1000 + int(code)
    return (ord(code[0]) - 64) * 27 + (ord(code[1]) - 64)


def decode_region(value: int) -> str:
    """Inverse of encode_region; "" for 0 (unset)."""
    if value == 0:
        return ""
    if value >= 1000:
        return f"{value - 1000:03d}"
    return chr(value // 27 + 64) + chr(value % 27 + 64)


@dataclass(frozen=True, slots=True)
class Profile:
    """A (possibly partial) profile update: None means "not carried"."""

    user_id: int
    age_band: AgeBand | None = None
    message_privacy: MessagePrivacy | None = None
    account_state: AccountState | None = None
    region_code: str | None = None
    discoverable: bool | None = None
    age_assurance: AgeAssurance | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """One graph event, validated. ``time`` is Unix seconds, already clamped
    to the server clock. ``detail`` is the interaction type, report category
    or dismissal surface, 0 otherwise. ``target`` is 0 for profile and erase
    events, whose user is ``actor``."""

    event_id: str
    time: float
    kind: EventKind
    actor: int
    target: int = 0
    detail: int = 0
    profile: Profile | None = None
