"""The column-wise half of the JSON lines reader (``json_lines``): the
pyarrow schema a run of lines is parsed against, built from the
``GraphEvent`` descriptor, and the parsed table turned into event columns
with the array checks that flag rows for the line reader (kinds, int64
ids, enum names, RFC 3339 timestamps read with numpy, quote counts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
from google.protobuf.descriptor import FieldDescriptor

from contactgraph.v1 import graph_events_pb2 as pb

from ..events import event_times, invalid_events, kind_field
from ..model import EventKind, Profile
from ..table import EventColumns, EventTable

__all__ = ["PARSE_OPTIONS", "JsonColumns"]

_INT64_MAX = str(2**63 - 1)
# Timestamp.FromJsonString's range of seconds.
_TS_MIN = -62_135_596_800
_TS_MAX = 253_402_300_799


@dataclass(frozen=True)
class _Kind:
    """A GraphEvent oneof member pyarrow can read: its JSON key, the kind,
    the JSON keys of its actor, target (None: no target, e.g. erase_user)
    and enum detail (None: no detail), and the enum's name -> number."""

    key: str
    kind: EventKind
    actor: str
    target: str | None
    detail: str | None
    names: dict[str, int]


def _kinds() -> tuple[_Kind, ...]:
    """Every kind whose message holds only int64 ids and at most one enum,
    from the descriptor so that JSON keys follow the API."""
    kinds: list[_Kind] = []
    for kind in EventKind:
        member = pb.GraphEvent.DESCRIPTOR.fields_by_name[kind_field(kind)]
        ids: dict[str, str] = {}
        enums: list[tuple[str, dict[str, int]]] = []  # (JSON key, value by name)
        plain = True
        body = member.message_type
        if body is None:
            raise TypeError(f"GraphEvent.{member.name} is not a message")
        for sub in body.fields:
            if sub.type == FieldDescriptor.TYPE_INT64 and sub.name in ("actor_id", "target_id", "user_id"):
                ids[sub.name] = sub.json_name
            elif sub.type == FieldDescriptor.TYPE_ENUM and not sub.is_repeated and sub.enum_type is not None:
                enums.append((sub.json_name, {v.name: v.number for v in sub.enum_type.values}))
            else:
                plain = False
        actor = ids.get("actor_id", ids.get("user_id"))
        if not plain or actor is None or len(enums) > 1 or ("user_id" in ids) == ("target_id" in ids):
            continue  # profile: its rows go to the line reader
        detail, values = enums[0] if enums else (None, {})
        kinds.append(_Kind(member.json_name, kind, actor, ids.get("target_id"), detail, values))
    return tuple(kinds)


_KINDS = _kinds()
_S = pa.string()
_SCHEMA = pa.schema(
    [("eventId", _S), ("eventTime", _S)]
    + [(k.key, pa.struct([(name, _S) for name in (k.actor, k.target, k.detail) if name])) for k in _KINDS]
)
# Unknown keys are ignored here; the quote count flags their lines.
PARSE_OPTIONS = pa_json.ParseOptions(explicit_schema=_SCHEMA, unexpected_field_behavior="ignore")


@dataclass
class JsonColumns(EventColumns):
    """A parsed table's rows as event columns, rows the array checks flag
    (``odd``) and the count of ``"`` each row's values account for
    (``quotes``)."""

    odd: npt.NDArray[np.bool_]
    quotes: npt.NDArray[np.int64]

    @staticmethod
    def of(table: pa.Table, now: float, max_future_s: float) -> JsonColumns:
        n = table.num_rows
        event_id = _array(table, "eventId")
        event_time = _array(table, "eventTime")
        quotes = 4 * (_valid(event_id).astype(np.int64) + _valid(event_time))
        kind = np.zeros(n, np.uint8)
        actor = np.zeros(n, np.int64)
        target = np.zeros(n, np.int64)
        detail = np.zeros(n, np.int16)
        kinds_set = np.zeros(n, np.int64)
        odd = np.zeros(n, np.bool_)
        for k in _KINDS:
            body = _array(table, k.key)
            has = _valid(body)
            if not has.any():
                continue
            kinds_set += has
            quotes += 2 * has
            kind[has] = int(k.kind)
            values, ok = _int64s(pc.struct_field(body, k.actor))
            actor[has] = values[has]
            odd |= has & ~ok
            quotes += 4 * _valid(pc.struct_field(body, k.actor))
            if k.target is not None:
                values, ok = _int64s(pc.struct_field(body, k.target))
                target[has] = values[has]
                odd |= has & ~ok
                quotes += 4 * _valid(pc.struct_field(body, k.target))
            if k.detail is not None:
                codes, ok = _enum_codes(pc.struct_field(body, k.detail), k.names)
                detail[has] = codes[has]
                odd |= has & ~ok
                quotes += 4 * _valid(pc.struct_field(body, k.detail))
        odd |= kinds_set != 1
        seconds, nanos, stamp_ok = _timestamps(event_time)
        has_time = _valid(event_time)
        # As event_from_proto: seconds + nanos / 1e9, clamped by event_time.
        when, refused = event_times(seconds.astype(np.float64) + nanos / 1e9, now, max_future_s)
        time = np.where(has_time, when, now)
        odd |= has_time & (~stamp_ok | refused)
        ids = event_id.fill_null("")
        id_length = pc.utf8_length(ids).to_numpy(zero_copy_only=False)
        odd |= invalid_events(kind, actor, target, detail, id_length)
        return JsonColumns(time, kind, actor, target, detail, ids.to_numpy(zero_copy_only=False),
                        odd, quotes)

    def table(self, keep: npt.NDArray[np.bool_], profiles: dict[int, Profile]) -> EventTable:
        """The rows kept, with the profiles of kept rows renumbered."""
        out = self.rows(keep)
        if profiles:
            position = np.cumsum(keep) - 1
            out.profiles = {int(position[i]): p for i, p in profiles.items()}
        return out


def _array(table: pa.Table, name: str) -> Any:
    """One column as a single pyarrow Array."""
    return table.column(name).combine_chunks()


def _valid(array: Any) -> npt.NDArray[np.bool_]:
    return np.asarray(array.is_valid().to_numpy(zero_copy_only=False), np.bool_)


def _int64s(array: Any) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """(values, int64 shape (n,); rows whose string is a plain decimal
    int64, bool shape (n,)): what ``int()`` reads the same. Other rows
    (null, signs, spaces, too long) are 0 and go to the line reader."""
    length = pc.binary_length(array)
    ok = pc.and_(
        pc.ascii_is_decimal(array),
        pc.or_(pc.less_equal(length, 18), pc.and_(pc.equal(length, 19), pc.less_equal(array, _INT64_MAX))),
    ).fill_null(False)
    values = pc.cast(pc.if_else(ok, array, pa.scalar("0")), pa.int64())
    return values.to_numpy(zero_copy_only=False), np.asarray(ok.to_numpy(zero_copy_only=False), np.bool_)


def _enum_codes(array: Any, names: dict[str, int]) -> tuple[npt.NDArray[np.int16], npt.NDArray[np.bool_]]:
    """(numbers of enum names, 0 where null, int16 shape (n,); rows that
    are null or a name, bool shape (n,)). Numbers written as strings ("1")
    and unknown names go to the line reader."""
    index = pc.index_in(array, value_set=pa.array(list(names), _S)).fill_null(-1).to_numpy(zero_copy_only=False)
    numbers = np.append(np.array(list(names.values()), np.int16), np.int16(0))
    present = _valid(array)
    return numbers[index], ~present | (index >= 0)


# Positions in "YYYY-MM-DDTHH:MM:SS" and what each holds.
_DIGITS = np.array([0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18])
_SEPARATORS = {4: ord("-"), 7: ord("-"), 10: ord("T"), 13: ord(":"), 16: ord(":")}
_MONTH_DAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], np.int64)
# The lengths of the plain form: 19 + fraction (0 or 2-10 with its ".") + zone (1 or 6).
_STAMP_LENGTHS = range(20, 36)


def _timestamps(array: Any) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """RFC 3339 strings as Timestamp.FromJsonString reads them: (seconds,
    nanos, int64 shape (n,); rows of the plain form
    ``YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|+HH:MM|-HH:MM)`` with a valid date and
    time in Timestamp's range, bool shape (n,)). Other rows (nulls too) are
    not ok: the line reader has the last word on them. Rows are parsed in
    groups of one length, each a (rows, length) uint8 block of the bytes."""
    n = len(array)
    seconds = np.zeros(n, np.int64)
    nanos = np.zeros(n, np.int64)
    ok = np.zeros(n, np.bool_)
    buffers = array.buffers()
    if not n or buffers[2] is None:
        return seconds, nanos, ok
    offsets = np.frombuffer(buffers[1], np.int32, count=n + 1, offset=array.offset * 4).astype(np.int64)
    data = np.frombuffer(buffers[2], np.uint8)
    start, length = offsets[:-1], np.diff(offsets)
    length = np.where(_valid(array), length, 0)
    uniform = length[0] if (length == length[0]).all() else -1
    for size in _STAMP_LENGTHS:
        if uniform >= 0:
            if uniform != size:
                continue
            # One length throughout: the values lie back to back.
            rows = slice(None)
            block = data[start[0] : start[0] + n * size].reshape(n, size)
        else:
            at = np.flatnonzero(length == size)
            if not at.shape[0]:
                continue
            rows = at  # type: ignore[assignment]
            block = data[start[at][:, None] + np.arange(size)]
        seconds[rows], nanos[rows], ok[rows] = _stamp_block(block)
    return seconds, nanos, ok


def _stamp_block(block: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64],
                                                         npt.NDArray[np.bool_]]:
    """``_timestamps`` of strings of one length: ``block`` uint8 shape
    (rows, length), 20 <= length <= 35."""
    size = block.shape[1]
    digit = block.astype(np.int64) - ord("0")
    is_digit = (digit >= 0) & (digit <= 9)
    ok = is_digit[:, _DIGITS].all(axis=1)
    for at, char in _SEPARATORS.items():
        ok &= block[:, at] == char

    def number(*at: int) -> npt.NDArray[np.int64]:
        out = np.zeros(block.shape[0], np.int64)
        for i in at:
            out = out * 10 + digit[:, i]
        return out

    def fraction(zone: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
        """(nanos, rows whose fraction is well formed) for a zone of ``zone``
        characters."""
        width = size - 19 - zone  # with its "."
        if width == 0:
            return np.zeros(block.shape[0], np.int64), np.ones(block.shape[0], np.bool_)
        if not 2 <= width <= 10:
            return np.zeros(block.shape[0], np.int64), np.zeros(block.shape[0], np.bool_)
        places = width - 1
        fine = (block[:, 19] == ord(".")) & is_digit[:, 20 : 20 + places].all(axis=1)
        # As many places as given, scaled to nanoseconds (".5" is 500000000).
        return number(*range(20, 20 + places)) * 10 ** (9 - places), fine

    zulu = block[:, size - 1] == ord("Z")
    nanos_zulu, fine_zulu = fraction(1)
    nanos_offset, fine_offset = fraction(6)
    sign = block[:, size - 6]
    offset_form = ((sign == ord("+")) | (sign == ord("-"))) & (block[:, size - 3] == ord(":")) & is_digit[
        :, [size - 5, size - 4, size - 2, size - 1]].all(axis=1)
    ok &= np.where(zulu, fine_zulu, offset_form & fine_offset)
    nanos = np.where(zulu, nanos_zulu, nanos_offset)
    # Timestamp.FromJsonString: "+HH:MM" is subtracted, "-HH:MM" added.
    shift = number(size - 5, size - 4) * 3600 + number(size - 2, size - 1) * 60
    shift = np.where(zulu, 0, np.where(sign == ord("+"), -shift, shift))
    year, month, day = number(0, 1, 2, 3), number(5, 6), number(8, 9)
    hour, minute, second = number(11, 12), number(14, 15), number(17, 18)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_ok = (month >= 1) & (month <= 12)
    month = np.where(month_ok, month, 1)
    ok &= (year >= 1) & month_ok & (day >= 1) & (day <= _MONTH_DAYS[month] + (leap & (month == 2)))
    ok &= (hour <= 23) & (minute <= 59) & (second <= 59)
    seconds = _days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second + shift
    ok &= (seconds >= _TS_MIN) & (seconds <= _TS_MAX)
    return seconds, nanos, ok


def _days_from_civil(year: npt.NDArray[np.int64], month: npt.NDArray[np.int64],
                     day: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Days since 1970-01-01 of proleptic Gregorian dates (year >= 0),
    int64 shape (n,); H. Hinnant's ``days_from_civil``."""
    y = year - (month <= 2)
    era = y // 400
    year_of_era = y - era * 400
    day_of_year = (153 * np.where(month > 2, month - 3, month + 9) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    days: npt.NDArray[np.int64] = era * 146_097 + day_of_era - 719_468
    return days
