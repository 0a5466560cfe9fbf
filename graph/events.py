"""Validation of graph events and their conversion from and to the v1
protobuf messages (plain messages, no gRPC)."""

from __future__ import annotations

from enum import IntEnum
from typing import TypeVar, cast

import numpy as np
import numpy.typing as npt
from google.protobuf import timestamp_pb2

from contactgraph.v1 import graph_events_pb2 as pb
from contactgraph.v1 import surface_pb2 as surface_pb
from contactgraph.v1 import user_profile_pb2 as profile_pb

from .errors import InvalidEvent
from .model import (
    MAX_USER_ID,
    AccountState,
    AgeAssurance,
    AgeBand,
    Event,
    EventKind,
    InteractionType,
    MessagePrivacy,
    Profile,
    ReportCategory,
    Surface,
    encode_region,
)

# Client clocks drift: a little skew is clamped, more is a bad event.
DEFAULT_MAX_FUTURE_S = 3600.0
MAX_EVENT_ID_LEN = 128

EDGE_KINDS = {
    "follow": EventKind.FOLLOW,
    "unfollow": EventKind.UNFOLLOW,
    "block": EventKind.BLOCK,
    "unblock": EventKind.UNBLOCK,
    "mute": EventKind.MUTE,
    "unmute": EventKind.UNMUTE,
}
_KIND_FIELD = {kind: name for name, kind in EDGE_KINDS.items()} | {
    EventKind.REPORT: "report",
    EventKind.DISMISS: "dismiss",
    EventKind.INTERACTION: "interaction",
    EventKind.PROFILE: "profile",
    EventKind.ERASE_USER: "erase_user",
}


def kind_field(kind: EventKind) -> str:
    """The name of the GraphEvent oneof field that carries this kind."""
    return _KIND_FIELD[kind]


def check_user_id(value: int, field: str) -> None:
    if value <= 0 or value > MAX_USER_ID:
        raise InvalidEvent(f"{field} must be a positive int64 user id, got {value}", field=field)


# Codes of each enum checked here: a set lookup instead of building the
# enum (a third of a microsecond per event on the ApplyEvents path).
_KNOWN_CODES: dict[type, frozenset[int]] = {}


def _enum(enum_type: type[IntEnum], value: int, field: str, *, allow_unset: bool = False) -> int:
    if value == 0 and not allow_unset:
        raise InvalidEvent(f"{field} must be set", field=field)
    known = _KNOWN_CODES.get(enum_type)
    if known is None:
        known = _KNOWN_CODES[enum_type] = frozenset(int(v) for v in enum_type)
    if value not in known:
        raise InvalidEvent(f"{field} has unknown value {value}", field=field)
    return int(value)


def event_time(stamp_seconds: float | None, now: float, max_future_s: float) -> float:
    """The time an event feeds into decay: the client's time clamped to the
    server clock; a missing time means now."""
    if stamp_seconds is None:
        return now
    if stamp_seconds < 0:
        raise InvalidEvent("event_time is before 1970", field="event_time")
    if stamp_seconds > now + max_future_s:
        raise InvalidEvent(
            f"event_time is {stamp_seconds - now:.0f}s in the future (more than {max_future_s:.0f}s)",
            field="event_time",
        )
    return min(stamp_seconds, now)


def event_times(
    stamp_seconds: npt.NDArray[np.float64], now: float, max_future_s: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """``event_time`` over a column: (times clamped to ``now``, float64 shape
    (n,); rows ``event_time`` refuses, bool shape (n,)). The same comparisons
    as the scalar rule; a bulk reader asks ``event_time`` itself for the
    reason of a refused row."""
    refused = (stamp_seconds < 0) | (stamp_seconds > now + max_future_s)
    return np.minimum(stamp_seconds, now), refused


def _codes(enum_type: type[IntEnum], *, allow_unset: bool) -> npt.NDArray[np.int64]:
    """The codes ``_enum`` accepts for this enum."""
    return np.array([int(v) for v in enum_type if allow_unset or int(v) != 0], np.int64)


def invalid_events(
    kind: npt.NDArray[np.uint8],
    actor: npt.NDArray[np.int64],
    target: npt.NDArray[np.int64],
    detail: npt.NDArray[np.integer],
    event_id_length: npt.NDArray[np.integer],
) -> npt.NDArray[np.bool_]:
    """Rows ``validate`` refuses, as a bool mask of shape (n,), for events in
    columns (kind uint8, ids int64, detail int, event id lengths in
    characters). Each rule of ``validate``, in array form; a bulk reader
    asks ``validate`` itself for the reason of a refused row."""
    refused = event_id_length > MAX_EVENT_ID_LEN
    refused |= (actor <= 0) | (actor > MAX_USER_ID)
    pair = (kind != int(EventKind.PROFILE)) & (kind != int(EventKind.ERASE_USER))
    refused |= pair & ((target <= 0) | (target > MAX_USER_ID) | (actor == target))
    for enum_kind, enum_type, allow_unset in (
        (EventKind.INTERACTION, InteractionType, False),
        (EventKind.REPORT, ReportCategory, True),
        (EventKind.DISMISS, Surface, True),
    ):
        refused |= (kind == int(enum_kind)) & ~np.isin(detail, _codes(enum_type, allow_unset=allow_unset))
    return refused


def validate(event: Event) -> None:
    """Raise InvalidEvent if the event's ids or codes are not acceptable."""
    if len(event.event_id) > MAX_EVENT_ID_LEN:
        raise InvalidEvent(f"event_id is longer than {MAX_EVENT_ID_LEN} characters", field="event_id")
    actor, target = event.actor, event.target
    # Field names are formatted only for an error: on the ApplyEvents path
    # the f-strings cost more than the checks.
    if event.kind in (EventKind.PROFILE, EventKind.ERASE_USER):
        if not 0 < actor <= MAX_USER_ID:
            check_user_id(actor, f"{_KIND_FIELD[event.kind]}.user_id")
        return
    if not (0 < actor <= MAX_USER_ID and 0 < target <= MAX_USER_ID and actor != target):
        name = _KIND_FIELD[event.kind]
        check_user_id(actor, f"{name}.actor_id")
        check_user_id(target, f"{name}.target_id")
        raise InvalidEvent(f"{name}.target_id equals actor_id", field=f"{name}.target_id")
    if event.kind == EventKind.INTERACTION:
        _enum(InteractionType, event.detail, "interaction.type")
    elif event.kind == EventKind.REPORT:
        _enum(ReportCategory, event.detail, "report.category", allow_unset=True)
    elif event.kind == EventKind.DISMISS:
        _enum(Surface, event.detail, "dismiss.surface", allow_unset=True)


def profile_from_proto(msg: profile_pb.UserProfile, field: str = "profile") -> Profile:
    check_user_id(msg.user_id, f"{field}.user_id")
    region = None
    if msg.HasField("region_code"):
        try:
            encode_region(msg.region_code)
        except ValueError as err:
            raise InvalidEvent(str(err), field=f"{field}.region_code") from None
        region = msg.region_code
    return Profile(
        user_id=msg.user_id,
        age_band=AgeBand(_enum(AgeBand, msg.age_band, f"{field}.age_band"))
        if msg.HasField("age_band") else None,
        message_privacy=MessagePrivacy(_enum(MessagePrivacy, msg.message_privacy, f"{field}.message_privacy"))
        if msg.HasField("message_privacy") else None,
        account_state=AccountState(_enum(AccountState, msg.account_state, f"{field}.account_state"))
        if msg.HasField("account_state") else None,
        region_code=region,
        discoverable=msg.discoverable if msg.HasField("discoverable") else None,
        age_assurance=AgeAssurance(_enum(AgeAssurance, msg.age_assurance, f"{field}.age_assurance"))
        if msg.HasField("age_assurance") else None,
    )


def event_from_proto(msg: pb.GraphEvent, now: float, max_future_s: float = DEFAULT_MAX_FUTURE_S, *,
                     require_time: bool = True) -> Event:
    """Convert and validate one GraphEvent; raises InvalidEvent naming the
    field. ``require_time``: an event without ``event_time`` is refused (the
    API's rule: a client knows when its event happened, and a time made up
    on arrival would skew decay after any delay or retry). Readers of what
    was accepted earlier (the write-ahead log, old JSON lines logs) pass
    False: a missing time then means ``now``."""
    which = msg.WhichOneof("kind")
    if which is None:
        raise InvalidEvent("event has no kind (follow, block, interaction, ...)", field="kind")
    stamp = None
    if msg.HasField("event_time"):
        sent = msg.event_time
        stamp = sent.seconds + sent.nanos / 1e9
    elif require_time:
        raise InvalidEvent("event_time must be set (when the event happened, by the client's clock)",
                           field="event_time")
    when = event_time(stamp, now, max_future_s)
    body = getattr(msg, which)
    event: Event
    if which == "interaction":  # the commonest kind first
        event = Event(msg.event_id, when, EventKind.INTERACTION, body.actor_id, body.target_id, body.type)
    elif which in EDGE_KINDS:
        event = Event(msg.event_id, when, EDGE_KINDS[which], body.actor_id, body.target_id)
    elif which == "report":
        event = Event(msg.event_id, when, EventKind.REPORT, body.actor_id, body.target_id, body.category)
    elif which == "dismiss":
        event = Event(msg.event_id, when, EventKind.DISMISS, body.actor_id, body.target_id, body.surface)
    elif which == "profile":
        profile = profile_from_proto(body)
        event = Event(msg.event_id, when, EventKind.PROFILE, profile.user_id, profile=profile)
    else:
        event = Event(msg.event_id, when, EventKind.ERASE_USER, body.user_id)
    validate(event)
    return event


_ProtoEnum = TypeVar("_ProtoEnum", bound=int)


def _proto_enum(value: int, enum: type[_ProtoEnum]) -> _ProtoEnum:
    """``value`` for a proto enum field of type ``enum``. protoc's .pyi
    types such a field as the enum's wrapper class, but at runtime the
    field holds (and takes) the plain int; our model enums share the
    proto's numbers."""
    return cast(_ProtoEnum, int(value))


def profile_to_proto(profile: Profile) -> profile_pb.UserProfile:
    msg = profile_pb.UserProfile(user_id=profile.user_id)
    if profile.age_band is not None:
        msg.age_band = _proto_enum(profile.age_band, profile_pb.AgeBand)
    if profile.message_privacy is not None:
        msg.message_privacy = _proto_enum(profile.message_privacy, profile_pb.MessagePrivacy)
    if profile.account_state is not None:
        msg.account_state = _proto_enum(profile.account_state, profile_pb.AccountState)
    if profile.region_code is not None:
        msg.region_code = profile.region_code
    if profile.discoverable is not None:
        msg.discoverable = profile.discoverable
    if profile.age_assurance is not None:
        msg.age_assurance = _proto_enum(profile.age_assurance, profile_pb.AgeAssurance)
    return msg


def event_to_proto(event: Event) -> pb.GraphEvent:
    msg = pb.GraphEvent(event_id=event.event_id)
    stamp = timestamp_pb2.Timestamp()
    # float(): under numpy 1.x round() of a numpy scalar is not an int.
    stamp.FromNanoseconds(round(float(event.time) * 1e9))
    msg.event_time.CopyFrom(stamp)
    kind = event.kind
    if kind in _KIND_FIELD and _KIND_FIELD[kind] in EDGE_KINDS:
        getattr(msg, _KIND_FIELD[kind]).CopyFrom(pb.Edge(actor_id=event.actor, target_id=event.target))
    elif kind == EventKind.REPORT:
        msg.report.CopyFrom(pb.Report(actor_id=event.actor, target_id=event.target,
                                     category=_proto_enum(event.detail, pb.ReportCategory)))
    elif kind == EventKind.DISMISS:
        msg.dismiss.CopyFrom(pb.Dismiss(actor_id=event.actor, target_id=event.target,
                                       surface=_proto_enum(event.detail, surface_pb.Surface)))
    elif kind == EventKind.INTERACTION:
        msg.interaction.CopyFrom(pb.Interaction(actor_id=event.actor, target_id=event.target,
                                               type=_proto_enum(event.detail, pb.InteractionType)))
    elif kind == EventKind.PROFILE:
        assert event.profile is not None
        msg.profile.CopyFrom(profile_to_proto(event.profile))
    else:
        msg.erase_user.CopyFrom(pb.EraseUser(user_id=event.actor))
    return msg
