"""Event log files: the three formats, gzip, and a precise ``file:line:``
error for every kind of bad line."""

from __future__ import annotations

import gzip
import string
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graph.errors import EventLogError, InvalidEvent, TooManyBadLines
from graph.eventlog import (
    BadLines,
    RejectedLine,
    read_event_file,
    read_event_files,
    write_edge_csv,
    write_edge_parquet,
    write_profile_csv,
)
from graph.eventlog.csv_columns import read_edge_csv
from graph.eventlog.dispatch import read_text_file
from graph.events import event_time, event_times, invalid_events, validate
from graph.model import (
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
)
from graph.table import EventTable

NOW = 1_714_600_000.0  # 2024-05-01T21:46:40Z
T0 = 1_714_564_800.0  # 2024-05-01T12:00:00Z
T0_MS = int(T0 * 1000)


def _write(path: Path, text: str) -> Path:
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


class TestJsonLines:
    @pytest.mark.parametrize(
        ("line", "expected"),
        [
            (
                '{"eventId":"e-1","eventTime":"2024-05-01T12:00:00Z","follow":{"actorId":"1","targetId":"2"}}',
                Event("e-1", T0, EventKind.FOLLOW, 1, 2),
            ),
            ('{"eventId":"e","unfollow":{"actorId":"1","targetId":"2"}}', Event("e", NOW, EventKind.UNFOLLOW, 1, 2)),
            ('{"eventId":"e","block":{"actorId":"3","targetId":"4"}}', Event("e", NOW, EventKind.BLOCK, 3, 4)),
            ('{"eventId":"e","unblock":{"actorId":"3","targetId":"4"}}', Event("e", NOW, EventKind.UNBLOCK, 3, 4)),
            ('{"eventId":"e","mute":{"actorId":"3","targetId":"4"}}', Event("e", NOW, EventKind.MUTE, 3, 4)),
            ('{"eventId":"e","unmute":{"actorId":"3","targetId":"4"}}', Event("e", NOW, EventKind.UNMUTE, 3, 4)),
            (
                '{"eventId":"e","report":{"actorId":"5","targetId":"6","category":"REPORT_CATEGORY_HARASSMENT"}}',
                Event("e", NOW, EventKind.REPORT, 5, 6, int(ReportCategory.HARASSMENT)),
            ),
            (
                '{"eventId":"e","dismiss":{"actorId":"5","targetId":"6","surface":"SURFACE_SHARE_SHEET"}}',
                Event("e", NOW, EventKind.DISMISS, 5, 6, int(Surface.SHARE_SHEET)),
            ),
            (
                '{"eventId":"e","eventTime":"2024-05-01T12:00:00.250Z",'
                '"interaction":{"actorId":"7","targetId":"8","type":"INTERACTION_TYPE_MESSAGE"}}',
                Event("e", T0 + 0.25, EventKind.INTERACTION, 7, 8, int(InteractionType.MESSAGE)),
            ),
            (
                '{"eventId":"e","profile":{"userId":"9","ageBand":"AGE_BAND_16_17","regionCode":"GB",'
                '"discoverable":false}}',
                Event(
                    "e",
                    NOW,
                    EventKind.PROFILE,
                    9,
                    profile=Profile(9, age_band=AgeBand.AGE_16_17, region_code="GB", discoverable=False),
                ),
            ),
            ('{"eventId":"e","eraseUser":{"userId":"10"}}', Event("e", NOW, EventKind.ERASE_USER, 10)),
        ],
        ids=lambda v: v.kind.name if isinstance(v, Event) else "",
    )
    def test_each_kind(self, tmp_path: Path, line: str, expected: Event) -> None:
        """Every GraphEvent kind in protobuf JSON becomes the matching Event."""
        table = read_event_file(_write(tmp_path / "events.jsonl", line + "\n"), now=NOW)
        assert table.events() == [expected]

    @pytest.mark.parametrize("name", ["a.jsonl", "a.ndjson", "a.json", "a.jsonl.gz", "A.JSONL"])
    def test_extensions_and_blank_lines(self, tmp_path: Path, name: str) -> None:
        """Every JSON lines extension is accepted, .gz is read transparently,
        and blank lines are skipped."""
        text = (
            '{"eventId":"a","follow":{"actorId":"1","targetId":"2"}}\n'
            "\n   \n"
            '{"eventId":"b","profile":{"userId":"3","accountState":"ACCOUNT_STATE_ACTIVE"}}\n'
        )
        table = read_event_file(_write(tmp_path / name, text), now=NOW)
        assert list(table.event_id) == ["a", "b"]
        assert table.profiles == {1: Profile(3, account_state=AccountState.ACTIVE)}

    def test_small_clock_skew_is_clamped(self, tmp_path: Path) -> None:
        """A time a little after ``now`` is clamped to ``now``."""
        line = '{"eventTime":"2024-05-01T22:00:00Z","follow":{"actorId":"1","targetId":"2"}}'
        table = read_event_file(_write(tmp_path / "a.jsonl", line), now=NOW)
        assert table.time.tolist() == [NOW]


# (event name, kind, detail) straight from the file-format contract.
EDGE_NAMES = [
    ("follow", EventKind.FOLLOW, 0),
    ("unfollow", EventKind.UNFOLLOW, 0),
    ("block", EventKind.BLOCK, 0),
    ("unblock", EventKind.UNBLOCK, 0),
    ("mute", EventKind.MUTE, 0),
    ("unmute", EventKind.UNMUTE, 0),
    ("report", EventKind.REPORT, 0),
    ("dismiss", EventKind.DISMISS, 0),
    ("message", EventKind.INTERACTION, 1),
    ("share", EventKind.INTERACTION, 2),
    ("comment", EventKind.INTERACTION, 3),
    ("mention", EventKind.INTERACTION, 4),
    ("like", EventKind.INTERACTION, 5),
]


class TestEdgeCsv:
    @pytest.mark.parametrize(("name", "kind", "detail"), EDGE_NAMES)
    def test_each_event_name(self, tmp_path: Path, name: str, kind: EventKind, detail: int) -> None:
        """Each event name maps to its kind and detail code."""
        path = _write(tmp_path / "e.csv", f"time_ms,event,actor_id,target_id\n{T0_MS},{name},11,12\n")
        assert read_event_file(path, now=NOW).events() == [Event("", T0, kind, 11, 12, detail)]

    def test_event_id_column_in_any_order(self, tmp_path: Path) -> None:
        """Columns may come in any order; event_id is taken when present."""
        text = f"event_id,target_id,event,time_ms,actor_id\nx-1,2,follow,{T0_MS},1\nx-2,1,message,{T0_MS + 1500},2\n"
        table = read_event_file(_write(tmp_path / "e.csv", text), now=NOW)
        assert table.events() == [
            Event("x-1", T0, EventKind.FOLLOW, 1, 2),
            Event("x-2", T0 + 1.5, EventKind.INTERACTION, 2, 1, int(InteractionType.MESSAGE)),
        ]
        assert table.kind.dtype == np.uint8 and table.actor.dtype == np.int64 and table.detail.dtype == np.int16

    def test_without_event_id_ids_are_empty(self, tmp_path: Path) -> None:
        """Without an event_id column every event id is ""."""
        text = f"time_ms,event,actor_id,target_id\n{T0_MS},block,1,2\n\n{T0_MS},mute,1,3\n"
        table = read_event_file(_write(tmp_path / "e.csv.gz", text), now=NOW)
        assert list(table.event_id) == ["", ""]
        assert table.target.tolist() == [2, 3]

    @pytest.mark.parametrize("name", ["edges.csv", "edges.csv.gz"])
    @pytest.mark.parametrize("with_ids", [True, False])
    def test_writer_round_trip(self, tmp_path: Path, name: str, with_ids: bool) -> None:
        """write_edge_csv writes what read_event_file reads back."""
        names = ["follow", "like", "report", "unmute"]
        times = np.array([T0_MS, T0_MS + 1, T0_MS + 2, T0_MS + 3])
        ids = [f"w-{i}" for i in range(4)] if with_ids else None
        path = write_edge_csv(tmp_path / name, times, names, np.array([1, 2, 3, 4]), [5, 6, 7, 8], ids)
        table = read_event_file(path, now=NOW)
        assert table.kind.tolist() == [EventKind.FOLLOW, EventKind.INTERACTION, EventKind.REPORT, EventKind.UNMUTE]
        assert table.detail.tolist() == [0, int(InteractionType.LIKE), 0, 0]
        assert table.actor.tolist() == [1, 2, 3, 4] and table.target.tolist() == [5, 6, 7, 8]
        assert list(table.event_id) == (ids or [""] * 4)
        assert table.time.tolist() == pytest.approx([T0, T0 + 0.001, T0 + 0.002, T0 + 0.003])


class TestProfileCsv:
    def test_long_and_short_names_and_empty_cells(self, tmp_path: Path) -> None:
        """Enum cells take the proto name or its short form in any case; an
        empty cell means "not carried"; each row is a PROFILE event at now."""
        text = (
            "user_id,age_band,message_privacy,account_state,region_code,discoverable,age_assurance\n"
            "1,AGE_BAND_ADULT,MESSAGE_PRIVACY_EVERYONE,ACCOUNT_STATE_ACTIVE,GB,true,AGE_ASSURANCE_VERIFIED\n"
            "2,16_17,friends,Suspended,,0,declared\n"
            "3,,,,,,\n"
            "4,13_15,NO_ONE,UNDER_REVIEW,419,yes,\n"
            "5,under_13,,BANNED,US,No,ESTIMATED\n"
        )
        table = read_event_file(_write(tmp_path / "p.csv", text), now=NOW)
        assert table.events() == [
            Event("", NOW, EventKind.PROFILE, uid, profile=p)
            for uid, p in [
                (
                    1,
                    Profile(1, AgeBand.ADULT, MessagePrivacy.EVERYONE, AccountState.ACTIVE, "GB", True,
                            AgeAssurance.VERIFIED),
                ),
                (2, Profile(2, AgeBand.AGE_16_17, MessagePrivacy.FRIENDS, AccountState.SUSPENDED, None, False,
                            AgeAssurance.DECLARED)),
                (3, Profile(3)),
                (4, Profile(4, AgeBand.AGE_13_15, MessagePrivacy.NO_ONE, AccountState.UNDER_REVIEW, "419", True)),
                (5, Profile(5, AgeBand.UNDER_13, None, AccountState.BANNED, "US", False, AgeAssurance.ESTIMATED)),
            ]
        ]
        assert table.target.tolist() == [0] * 5

    def test_optional_columns_absent(self, tmp_path: Path) -> None:
        """Only the four required columns: the optional fields are None."""
        text = "account_state,user_id,message_privacy,age_band\nACTIVE,7,EVERYONE,ADULT\n"
        table = read_event_file(_write(tmp_path / "p.csv.gz", text), now=NOW)
        assert table.profiles == {0: Profile(7, AgeBand.ADULT, MessagePrivacy.EVERYONE, AccountState.ACTIVE)}

    @pytest.mark.parametrize("name", ["profiles.csv", "profiles.csv.gz"])
    def test_writer_round_trip(self, tmp_path: Path, name: str) -> None:
        """write_profile_csv writes what read_event_file reads back."""
        profiles = [
            Profile(1, AgeBand.ADULT, MessagePrivacy.EVERYONE, AccountState.ACTIVE, "GB", None, AgeAssurance.VERIFIED),
            Profile(2, AgeBand.AGE_16_17, MessagePrivacy.FRIENDS, AccountState.ACTIVE, "DE", False, None),
            Profile(3),
        ]
        table = read_event_file(write_profile_csv(tmp_path / name, profiles), now=NOW)
        assert [table.profiles[i] for i in range(3)] == profiles
        assert table.actor.tolist() == [1, 2, 3]


def test_read_event_files_concatenates_in_order(tmp_path: Path) -> None:
    """Files are concatenated in the order given, profile rows re-indexed."""
    edges = _write(tmp_path / "e.csv", f"time_ms,event,actor_id,target_id\n{T0_MS},follow,1,2\n")
    profiles = _write(tmp_path / "p.csv", "user_id,age_band,message_privacy,account_state\n1,ADULT,,\n")
    table = read_event_files([edges, profiles, edges], now=NOW)
    assert table.kind.tolist() == [EventKind.FOLLOW, EventKind.PROFILE, EventKind.FOLLOW]
    assert table.profiles == {1: Profile(1, AgeBand.ADULT)}


EDGE_HEADER = "time_ms,event,actor_id,target_id,event_id\n"
EDGE_OK = f"{T0_MS},follow,1,2,ok\n"
PROFILE_HEADER = "user_id,age_band,message_privacy,account_state,region_code,discoverable,age_assurance\n"
PROFILE_OK = "1,ADULT,EVERYONE,ACTIVE,GB,,\n"
FAR_FUTURE_MS = int((NOW + 7200) * 1000)

# (file name, content, bad line, text the reason must contain)
BAD_LINES = [
    ("unknown event", "e.csv", EDGE_HEADER + EDGE_OK + f"{T0_MS},poke,1,2,x\n", 3, "event"),
    ("non-integer actor", "e.csv", EDGE_HEADER + f"{T0_MS},follow,1.5,2,x\n", 2, "actor_id"),
    ("non-integer target", "e.csv", EDGE_HEADER + f"{T0_MS},follow,1,two,x\n", 2, "target_id"),
    ("non-integer time", "e.csv", EDGE_HEADER + "2024-05-01,follow,1,2,x\n", 2, "time_ms"),
    ("missing column", "e.csv", "time_ms,event,actor_id\n" + f"{T0_MS},follow,1\n", 1, "target_id"),
    ("unknown column", "e.csv", "time_ms,event,actor_id,target_id,colour\n", 1, "colour"),
    ("duplicate column", "e.csv", "time_ms,event,actor_id,target_id,actor_id\n", 1, "actor_id"),
    ("too few cells", "e.csv", EDGE_HEADER + EDGE_OK + f"{T0_MS},follow,1,2\n", 3, "cells"),
    ("too many cells", "e.csv", EDGE_HEADER + f"{T0_MS},follow,1,2,x,y\n", 2, "cells"),
    ("zero actor", "e.csv", EDGE_HEADER + f"{T0_MS},follow,0,2,x\n", 2, "actor_id"),
    ("negative target", "e.csv", EDGE_HEADER + f"{T0_MS},block,1,-2,x\n", 2, "target_id"),
    ("self edge", "e.csv", EDGE_HEADER + f"{T0_MS},message,3,3,x\n", 2, "target_id"),
    ("id over int64", "e.csv", EDGE_HEADER + f"{T0_MS},follow,1,{2**63},x\n", 2, "target_id"),
    ("far future", "e.csv", EDGE_HEADER + EDGE_OK + EDGE_OK + f"{FAR_FUTURE_MS},follow,1,2,x\n", 4, "time_ms"),
    ("before 1970", "e.csv", EDGE_HEADER + "-5,follow,1,2,x\n", 2, "time_ms"),
    ("absurd time", "e.csv", EDGE_HEADER + f"{10**400},follow,1,2,x\n", 2, "time_ms"),
    ("event id too long", "e.csv", EDGE_HEADER + f"{T0_MS},follow,1,2,{'x' * 200}\n", 2, "event_id"),
    ("after blank lines", "e.csv.gz", EDGE_HEADER + "\n\n" + f"{T0_MS},follow,1,x,x\n", 4, "target_id"),
    ("unknown header", "x.csv", "a,b,c\n1,2,3\n", 1, "unknown format"),
    ("empty csv", "x.csv", "", 1, "header"),
    ("bad json", "e.jsonl", '{"follow":{"actorId":"1","targetId":"2"}}\n{"follow":\n', 2, "JSON"),
    ("unknown json field", "e.jsonl", '{"folow":{"actorId":"1","targetId":"2"}}\n', 1, "folow"),
    (
        "unknown json enum",
        "e.ndjson",
        '{"interaction":{"actorId":"1","targetId":"2","type":"INTERACTION_TYPE_HUG"}}\n',
        1,
        "type",
    ),
    ("json zero id", "e.jsonl", '\n{"follow":{"actorId":"0","targetId":"2"}}\n', 2, "follow.actor_id"),
    ("json no kind", "e.jsonl", '{"eventId":"a"}\n', 1, "kind"),
    ("json unset type", "e.jsonl", '{"interaction":{"actorId":"1","targetId":"2"}}\n', 1, "interaction.type"),
    (
        "json far future",
        "e.jsonl.gz",
        '{"eventTime":"2024-05-02T12:00:00Z","follow":{"actorId":"1","targetId":"2"}}\n',
        1,
        "event_time",
    ),
    ("unknown enum value", "p.csv", PROFILE_HEADER + PROFILE_OK + "2,ELDER,EVERYONE,ACTIVE,GB,,\n", 3, "age_band"),
    ("unspecified enum", "p.csv", PROFILE_HEADER + "2,ADULT,MESSAGE_PRIVACY_UNSPECIFIED,ACTIVE,,,\n", 2,
     "message_privacy"),
    ("wrong enum type", "p.csv", PROFILE_HEADER + "2,ADULT,EVERYONE,VERIFIED,,,\n", 2, "account_state"),
    ("bad assurance", "p.csv", PROFILE_HEADER + "2,ADULT,EVERYONE,ACTIVE,,,SWORN\n", 2, "age_assurance"),
    ("bad boolean", "p.csv", PROFILE_HEADER + "2,ADULT,EVERYONE,ACTIVE,,maybe,\n", 2, "discoverable"),
    ("bad region", "p.csv", PROFILE_HEADER + "2,ADULT,EVERYONE,ACTIVE,England,,\n", 2, "region_code"),
    ("non-integer user", "p.csv", PROFILE_HEADER + "u2,ADULT,EVERYONE,ACTIVE,,,\n", 2, "user_id"),
    ("zero user", "p.csv", PROFILE_HEADER + "0,ADULT,EVERYONE,ACTIVE,,,\n", 2, "user_id"),
    ("profile missing column", "p.csv", "user_id,age_band,account_state\n", 1, "message_privacy"),
    ("profile wrong cells", "p.csv", PROFILE_HEADER + "2,ADULT,EVERYONE\n", 2, "cells"),
]


class TestBadLines:
    @pytest.mark.parametrize(
        ("name", "content", "line", "fragment"), [case[1:] for case in BAD_LINES], ids=[c[0] for c in BAD_LINES]
    )
    def test_error_names_file_line_and_column(
        self, tmp_path: Path, name: str, content: str, line: int, fragment: str
    ) -> None:
        """A bad line raises EventLogError "file:line: reason" with the
        1-based line (header = line 1) and a reason naming the column."""
        path = _write(tmp_path / name, content)
        with pytest.raises(EventLogError) as info:
            read_event_file(path, now=NOW)
        err = info.value
        assert str(err).startswith(f"{path}:{line}: "), str(err)
        assert (err.path, err.line) == (str(path), line)
        assert fragment in err.reason, err.reason
        assert "\n" not in str(err)

    def test_corrupt_gzip(self, tmp_path: Path) -> None:
        """A file named .gz that is not gzip fails on line 1, not with a bare
        OSError."""
        path = tmp_path / "e.csv.gz"
        path.write_bytes(b"time_ms,event,actor_id,target_id\n")
        with pytest.raises(EventLogError) as info:
            read_event_file(path, now=NOW)
        assert info.value.line == 1

    def test_truncated_gzip(self, tmp_path: Path) -> None:
        """A truncated .gz names the line after the last one read whole."""
        path = tmp_path / "e.csv.gz"
        rows = "".join(f"{T0_MS},follow,{i},{i + 1},\n" for i in range(1, 20_000))
        _write(path, "time_ms,event,actor_id,target_id,event_id\n" + rows)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        with pytest.raises(EventLogError) as info:
            read_event_file(path, now=NOW)
        assert 1 < info.value.line < 20_001
        assert "cannot read" in info.value.reason

    def test_missing_file_is_an_os_error(self, tmp_path: Path) -> None:
        """A file that is not there is the usual FileNotFoundError."""
        with pytest.raises(FileNotFoundError):
            read_event_file(tmp_path / "nope.csv", now=NOW)


# --- column-wise reading, bad-line budgets, Parquet ------------------------------



def _line_reader(path: Path, limit: int = 0) -> tuple[EventTable, list[RejectedLine]]:
    """The per-line reader: the oracle the column-wise one must match."""
    rejected: list[RejectedLine] = []
    table = read_text_file(path, str(path), NOW, 3600.0, BadLines(limit, rejected.append), None)
    return table, rejected


def _columnar(path: Path, limit: int = 0, chunk_bytes: int = 1 << 26) -> tuple[EventTable, list[RejectedLine]]:
    rejected: list[RejectedLine] = []
    table = read_edge_csv(path, str(path), NOW, 3600.0, BadLines(limit, rejected.append), None,
                          chunk_bytes=chunk_bytes)
    assert table is not None, "the column-wise reader gave up on a file it should read"
    return table, rejected


def _same_tables(a: EventTable, b: EventTable) -> None:
    assert a.time.tolist() == b.time.tolist()
    for name in ("kind", "actor", "target", "detail"):
        assert getattr(a, name).tolist() == getattr(b, name).tolist(), name
        assert getattr(a, name).dtype == getattr(b, name).dtype, name
    assert list(a.event_id) == list(b.event_id)


def _rejects(rejected: list[RejectedLine]) -> list[tuple[str, str, str]]:
    return [(str(r.error), r.text, r.header) for r in rejected]


_TIME_CELLS = st.one_of(
    st.integers(T0_MS - 10**9, int(NOW * 1000) + 10**7).map(str),  # past, clamped, slightly and far future
    st.sampled_from(["-5", "0", " 5", "+5", "1_000", "0x10", "0X1F", "2024-05-01", "", "1.5", "١٢", "9" * 19,
                     str(2**53 + 1), str(10**400), "-" + "9" * 30, "00012"]),
)
_ID_CELLS = st.one_of(
    st.integers(-2, 6).map(str),
    st.sampled_from([" 3", "+4", "3_0", "0x2", "٣", "1.5", "", str(2**63 - 1), str(2**63), "-0"]),
)
_NAME_CELLS = st.sampled_from([*(n for n, _, _ in EDGE_NAMES), "poke", "", "Follow", " follow"])
_EVENT_ID_CELLS = st.one_of(
    st.text(string.ascii_letters + string.digits + "-_ .é", max_size=6),
    st.sampled_from(["x" * 128, "x" * 129, "é" * 128, "é" * 129, "0x1"]),
)


@st.composite
def _edge_csv_files(draw: st.DrawFn) -> tuple[str, str]:
    """(file text, line terminator) of an edge CSV without quotes: the
    column order, blank lines, wrong widths and odd cells vary."""
    columns = list(EDGE_COLUMNS_ALL if draw(st.booleans()) else EDGE_COLUMNS_ALL[:4])
    columns = draw(st.permutations(columns))
    cell_of = {"time_ms": _TIME_CELLS, "event": _NAME_CELLS, "actor_id": _ID_CELLS, "target_id": _ID_CELLS,
               "event_id": _EVENT_ID_CELLS}
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    lines = [",".join(columns)]
    for _ in range(draw(st.integers(0, 25))):
        shape = draw(st.sampled_from(["row"] * 8 + ["blank", "short", "long", "spaces"]))
        if shape == "blank":
            lines.append("")
            continue
        if shape == "spaces":
            lines.append("   ")
            continue
        cells = [draw(cell_of[c]) for c in columns]
        if shape == "short":
            cells = cells[:-1]
        elif shape == "long":
            cells.append("extra")
        lines.append(",".join(cells))
    text = newline.join(lines) + (newline if draw(st.booleans()) else "")
    return text, newline


EDGE_COLUMNS_ALL = ("time_ms", "event", "actor_id", "target_id", "event_id")


class TestColumnarEdgeCsv:
    """The column-wise edge CSV reader against the per-line reader (the
    oracle): the same table, the same bad lines with the same messages."""

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(data=_edge_csv_files(), gz=st.booleans(), chunk_bytes=st.sampled_from([1, 7, 64, 1 << 20]))
    def test_same_as_the_line_reader(self, tmp_path_factory: pytest.TempPathFactory, data: tuple[str, str],
                                     gz: bool, chunk_bytes: int) -> None:
        """Any quote-free edge CSV (blank lines, CRLF, wrong widths, signs,
        underscores, hex, other digits, overflow, far future, long ids, any
        chunking, gzip) reads exactly as the per-line reader reads it."""
        text, _ = data
        path = _write(tmp_path_factory.mktemp("p") / ("e.csv.gz" if gz else "e.csv"), text)
        expected, expected_rejects = _line_reader(path, limit=10**6)
        table, rejects = _columnar(path, limit=10**6, chunk_bytes=chunk_bytes)
        _same_tables(table, expected)
        assert _rejects(rejects) == _rejects(expected_rejects)
        # Without a budget both stop at the same first bad line.
        first = expected_rejects[0].error if expected_rejects else None
        if first is None:
            _same_tables(_columnar(path, chunk_bytes=chunk_bytes)[0], expected)
        else:
            with pytest.raises(EventLogError) as info:
                _columnar(path, chunk_bytes=chunk_bytes)
            assert str(info.value) == str(first)

    def test_reads_bulk_files_column_wise(self, tmp_path: Path) -> None:
        """A file from write_edge_csv takes the column-wise path (the
        reader does not give up) and crosses chunk boundaries intact."""
        n = 5000
        rng = np.random.default_rng(1)
        names = np.array([n for n, _, _ in EDGE_NAMES])[rng.integers(0, 13, n)]
        actors = rng.integers(1, 100, n)
        path = write_edge_csv(tmp_path / "e.csv.gz", T0_MS + np.arange(n), names, actors, actors + 1,
                              [f"id-{i}" for i in range(n)])
        table, rejects = _columnar(path, chunk_bytes=4096)
        _same_tables(table, _line_reader(path)[0])
        assert len(table) == n and rejects == []

    @pytest.mark.parametrize(
        ("name", "content", "line", "reason"),
        [
            ("crlf blank lines", "time_ms,event,actor_id,target_id\r\n\r\n" + f"{T0_MS},follow,1,2\r\n\r\n"
             f"{T0_MS},follow,1,1\r\n", 5, "follow.target_id equals actor_id"),
            ("spaces only", EDGE_HEADER + EDGE_OK + "   \n", 3,
             "expected 5 cells (time_ms,event,actor_id,target_id,event_id), got 1"),
            ("hex is not an integer", EDGE_HEADER + f"{T0_MS},follow,0x10,2,x\n", 2,
             "actor_id is not an integer: '0x10'"),
            ("bom header", "\ufeff" + EDGE_HEADER + "\n" + f"{T0_MS},like,1,2,{'y' * 129}\n", 3,
             "event_id is longer than 128 characters"),
            ("quoted cell over two lines", EDGE_HEADER + f'{T0_MS},follow,1,2,"a\nb"\n{T0_MS},poke,1,2,x\n', 4,
             "event: unknown event name 'poke'"),
            ("quoted cell, error on it", EDGE_HEADER + f'{T0_MS},follow,1,"2\nx",x\n', 3,
             "target_id is not an integer: '2\\nx'"),
            ("bare carriage return", EDGE_HEADER + f"{T0_MS},follow,1,2,x\r{T0_MS},follow,1,-1,x\n", 3,
             "follow.target_id must be a positive int64 user id, got -1"),
            ("nul byte", EDGE_HEADER + f"{T0_MS},follow,1,2,a\0b\n{T0_MS},follow,1,2,{'x' * 129}\n", 3,
             "event_id is longer than 128 characters"),
            ("not utf-8", EDGE_HEADER + EDGE_OK + f"{T0_MS},follow,1,2,\udcff\n", 1, "cannot read line"),
        ],
        ids=lambda v: v if isinstance(v, str) and " " in v else "",
    )
    @pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
    def test_exact_lines_where_pyarrow_cannot_count(
        self, tmp_path: Path, name: str, content: str, line: int, reason: str, suffix: str
    ) -> None:
        """Blank lines, CRLF, a BOM, cells spanning lines (the row's last
        line counts, as in the csv module), bare CRs, NUL and non-UTF-8
        bytes: read_event_file names the same line as the line reader (which
        reports undecodable bytes where its decoder stopped: line 1)."""
        path = tmp_path / f"e{suffix}"
        raw = content.encode("utf-8", "surrogateescape")  # \udcff: the byte 0xff
        path.write_bytes(gzip.compress(raw) if suffix.endswith(".gz") else raw)
        with pytest.raises(EventLogError) as info:
            read_event_file(path, now=NOW)
        assert str(info.value).startswith(f"{path}:{line}: {reason}"), str(info.value)
        with pytest.raises(EventLogError) as oracle:
            _line_reader(path)
        assert str(info.value) == str(oracle.value)

    def test_odd_but_valid_cells_are_kept(self, tmp_path: Path) -> None:
        """Cells Python's int() takes and pyarrow does not (sign,
        underscores, padding, other digits) are read as the line reader
        reads them."""
        text = "time_ms,event,actor_id,target_id\n" + f"+{T0_MS},follow,1_0,\u0661\u0662\n {T0_MS} ,like, 3 ,+4\n"
        path = _write(tmp_path / "e.csv", text)
        table, rejects = _columnar(path)
        assert rejects == []
        assert table.actor.tolist() == [10, 3] and table.target.tolist() == [12, 4]
        _same_tables(table, _line_reader(path)[0])


class TestBadLineBudget:
    def _read(self, paths: list[Path], limit: int) -> tuple[EventTable, list[RejectedLine]]:
        rejected: list[RejectedLine] = []
        table = read_event_files(paths, now=NOW, bad_lines=BadLines(limit, rejected.append))
        return table, rejected

    def _files(self, tmp_path: Path) -> list[Path]:
        edges = _write(tmp_path / "e.csv.gz", EDGE_HEADER + EDGE_OK + f"{T0_MS},poke,1,2,a\n" + EDGE_OK
                       + f"{T0_MS},follow,3,3,b\n")
        jsonl = _write(tmp_path / "e.jsonl", '{"follow":{"actorId":"1","targetId":"2"}}\n{"follow":\n')
        profiles = _write(tmp_path / "p.csv", PROFILE_HEADER + "0,ADULT,,,,,\n" + PROFILE_OK)
        return [edges, jsonl, profiles]

    @pytest.mark.parametrize("limit", [4, 5])
    def test_up_to_the_limit_bad_lines_are_skipped(self, tmp_path: Path, limit: int) -> None:
        """Below or at the limit every bad line of every format is skipped
        and reported once, in file then line order, with its text and
        header; the good lines are kept."""
        paths = self._files(tmp_path)
        table, rejected = self._read(paths, limit)
        assert [(r.error.path, r.error.line) for r in rejected] == [
            (str(paths[0]), 3), (str(paths[0]), 5), (str(paths[1]), 2), (str(paths[2]), 2)]
        assert [r.text for r in rejected] == [f"{T0_MS},poke,1,2,a", f"{T0_MS},follow,3,3,b", '{"follow":',
                                              "0,ADULT,,,,,"]
        assert [r.header for r in rejected] == [EDGE_HEADER.strip(), EDGE_HEADER.strip(), "",
                                                PROFILE_HEADER.strip()]
        assert table.kind.tolist() == [EventKind.FOLLOW] * 3 + [EventKind.PROFILE]

    def test_over_the_limit_stops_at_the_next_bad_line(self, tmp_path: Path) -> None:
        """Past the limit TooManyBadLines names the first line over it."""
        paths = self._files(tmp_path)
        with pytest.raises(TooManyBadLines) as info:
            self._read(paths, 3)
        assert (info.value.path, info.value.line, info.value.limit) == (str(paths[2]), 2, 3)
        assert str(info.value).startswith(f"{paths[2]}:2: profile.user_id must be a positive int64 user id")

    def test_no_line_is_reported_twice_when_the_reader_falls_back(self, tmp_path: Path) -> None:
        """A bad line found column-wise before a quote sends the file to the
        line reader is reported once."""
        rows = "".join(f"{T0_MS},follow,{i},{i + 1},\n" for i in range(1, 2000))
        text = EDGE_HEADER + f"{T0_MS},poke,1,2,a\n" + rows + f'{T0_MS},follow,1,2,"q"\n{T0_MS},follow,1,1,z\n'
        path = _write(tmp_path / "e.csv", text)
        rejected: list[RejectedLine] = []
        table = read_event_file(path, now=NOW, bad_lines=BadLines(5, rejected.append))
        assert [r.error.line for r in rejected] == [2, 2003]
        assert len(table) == 2000

    def test_header_problems_are_never_skipped(self, tmp_path: Path) -> None:
        """A bad header is not a bad line: it raises whatever the budget."""
        path = _write(tmp_path / "e.csv", "time_ms,event,actor_id\n1,follow,2\n")
        with pytest.raises(EventLogError) as info:
            read_event_file(path, now=NOW, bad_lines=BadLines(100))
        assert info.value.line == 1 and not isinstance(info.value, TooManyBadLines)


PARQUET_OK = {"time_ms": T0_MS, "event": "follow", "actor_id": 1, "target_id": 2, "event_id": "ok"}


def _parquet(path: Path, rows: list[dict[str, object]], schema: pa.Schema | None = None) -> Path:
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


_EDGE_SCHEMA = pa.schema([("time_ms", pa.int64()), ("event", pa.string()), ("actor_id", pa.int64()),
                          ("target_id", pa.int64()), ("event_id", pa.string())])

# (case, rows, bad row, reason)
BAD_PARQUET_ROWS = [
    ("unknown event", [PARQUET_OK, PARQUET_OK | {"event": "poke"}], 2, "event: unknown event name 'poke'"),
    ("null event", [PARQUET_OK | {"event": None}], 1, "event is null"),
    ("null actor", [PARQUET_OK, PARQUET_OK, PARQUET_OK | {"actor_id": None}], 3, "actor_id is null"),
    ("null time", [PARQUET_OK | {"time_ms": None}], 1, "time_ms is null"),
    ("zero actor", [PARQUET_OK | {"actor_id": 0}], 1, "follow.actor_id must be a positive int64 user id, got 0"),
    ("self edge", [PARQUET_OK | {"event": "like", "target_id": 1}], 1, "interaction.target_id equals actor_id"),
    ("far future", [PARQUET_OK | {"time_ms": FAR_FUTURE_MS}], 1,
     "time_ms: event_time is 7200s in the future (more than 3600s)"),
    ("before 1970", [PARQUET_OK | {"time_ms": -5}], 1, "time_ms: event_time is before 1970"),
    ("absurd time", [PARQUET_OK | {"time_ms": 2**62 + 1}], 1, "time_ms is out of range"),
    ("long event id", [PARQUET_OK | {"event_id": "é" * 129}], 1, "event_id is longer than 128 characters"),
]


class TestParquet:
    @pytest.mark.parametrize(("rows", "row", "reason"), [c[1:] for c in BAD_PARQUET_ROWS],
                             ids=[c[0] for c in BAD_PARQUET_ROWS])
    def test_bad_row_names_file_row_and_reason(self, tmp_path: Path, rows: list[dict[str, object]], row: int,
                                               reason: str) -> None:
        """A bad Parquet row raises "file:row N: reason", rows counting
        from 1, with the edge CSV's reasons."""
        path = _parquet(tmp_path / "e.parquet", rows, _EDGE_SCHEMA)
        with pytest.raises(EventLogError) as info:
            read_event_file(path, now=NOW)
        assert str(info.value).startswith(f"{path}:row {row}: {reason}"), str(info.value)
        assert (info.value.line, info.value.unit) == (row, "row")

    def test_id_beyond_int64_in_an_unsigned_column(self, tmp_path: Path) -> None:
        """An unsigned id past int64 is refused like the CSV's."""
        schema = pa.schema([("time_ms", pa.int64()), ("event", pa.string()), ("actor_id", pa.uint64()),
                            ("target_id", pa.uint64())])
        path = _parquet(tmp_path / "e.parquet", [{"time_ms": T0_MS, "event": "follow", "actor_id": 1,
                                                  "target_id": 2**63}], schema)
        with pytest.raises(EventLogError, match=r":row 1: follow.target_id must be a positive int64 user id, "
                                                r"got 9223372036854775808"):
            read_event_file(path, now=NOW)

    @pytest.mark.parametrize(
        ("columns", "reason"),
        [
            ({"time_ms": [T0_MS], "event": ["follow"], "actor_id": [1]}, "missing column(s) target_id"),
            ({**{k: [v] for k, v in PARQUET_OK.items()}, "colour": ["red"]}, "unknown column(s) 'colour'"),
            ({**{k: [v] for k, v in PARQUET_OK.items()}, "actor_id": ["1"]}, "column actor_id has type string"),
        ],
    )
    def test_schema_problems_name_the_file(self, tmp_path: Path, columns: dict[str, list[object]],
                                           reason: str) -> None:
        """Missing, unknown or mistyped columns: "file: reason"."""
        path = tmp_path / "e.parquet"
        pq.write_table(pa.table(columns), path)
        with pytest.raises(EventLogError) as info:
            read_event_file(path, now=NOW, bad_lines=BadLines(10))
        assert str(info.value).startswith(f"{path}: ") and reason in info.value.reason, str(info.value)

    def test_not_a_parquet_file(self, tmp_path: Path) -> None:
        """A file named .parquet that is not one fails as a whole."""
        path = tmp_path / "e.parquet"
        path.write_bytes(b"time_ms,event\n")
        with pytest.raises(EventLogError, match="cannot read Parquet"):
            read_event_file(path, now=NOW)

    @pytest.mark.parametrize("with_ids", [True, False])
    def test_writer_round_trip_in_row_groups(self, tmp_path: Path, with_ids: bool) -> None:
        """write_edge_parquet writes what read_event_file reads back, the
        same table the edge CSV of the same rows gives, over many row
        groups."""
        n = 2500
        rng = np.random.default_rng(3)
        names = np.array([n for n, _, _ in EDGE_NAMES])[rng.integers(0, 13, n)]
        times = T0_MS + rng.integers(-10**6, 10**6, n)
        actors = rng.integers(1, 50, n)
        ids = [f"w-{i}" for i in range(n)] if with_ids else None
        parquet = write_edge_parquet(tmp_path / "e.parquet", times, names, actors, actors + 7, ids,
                                     row_group_rows=300)
        assert pq.ParquetFile(parquet).num_row_groups == 9
        _same_tables(read_event_file(parquet, now=NOW),
                     read_event_file(write_edge_csv(tmp_path / "e.csv", times, names, actors, actors + 7, ids),
                                     now=NOW))

    def test_bad_rows_skipped_and_rendered_as_csv(self, tmp_path: Path) -> None:
        """With a budget, bad rows are skipped and handed over as edge CSV
        lines under the edge CSV header, so they can be fixed and re-fed."""
        path = _parquet(tmp_path / "e.parquet", [PARQUET_OK, PARQUET_OK | {"actor_id": None, "event_id": "a,b"},
                                                 PARQUET_OK | {"event": "poke"}], _EDGE_SCHEMA)
        rejected: list[RejectedLine] = []
        table = read_event_file(path, now=NOW, bad_lines=BadLines(2, rejected.append))
        assert len(table) == 1
        assert [(str(r.error), r.text) for r in rejected] == [
            (f"{path}:row 2: actor_id is null", f'{T0_MS},follow,,2,"a,b"'),
            (f"{path}:row 3: event: unknown event name 'poke' (expected one of "
             f"{', '.join(n for n, _, _ in EDGE_NAMES)})", f"{T0_MS},poke,1,2,ok"),
        ]
        assert rejected[0].header == "time_ms,event,actor_id,target_id,event_id"


class TestColumnRules:
    """The array forms of the event rules against the scalar rules."""

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.tuples(
        st.sampled_from(list(EventKind)),
        st.sampled_from([-1, 0, 1, 2, 2**63 - 1]),
        st.sampled_from([-1, 0, 1, 2, 2**63 - 1]),
        st.integers(-1, 8),
        st.sampled_from([0, 1, 128, 129]),
    ), max_size=30))
    def test_invalid_events_is_validate(self, rows: list[tuple[EventKind, int, int, int, int]]) -> None:
        """invalid_events flags exactly the rows validate() refuses."""
        expected = []
        for kind, actor, target, detail, id_length in rows:
            try:
                validate(Event("x" * id_length, NOW, kind, actor, target, detail,
                               profile=Profile(actor) if kind == EventKind.PROFILE else None))
                expected.append(False)
            except InvalidEvent:
                expected.append(True)
        columns = list(zip(*rows, strict=True)) or [[], [], [], [], []]
        refused = invalid_events(np.array(columns[0], np.uint8), np.array(columns[1], np.int64),
                                 np.array(columns[2], np.int64), np.array(columns[3], np.int16),
                                 np.array(columns[4], np.int64))
        assert refused.tolist() == expected

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.floats(-10.0, NOW + 10_000, allow_nan=False), max_size=30), st.floats(0, 7200))
    def test_event_times_is_event_time(self, stamps: list[float], max_future_s: float) -> None:
        """event_times clamps and refuses exactly as event_time does."""
        times, refused = event_times(np.array(stamps, np.float64), NOW, max_future_s)
        for stamp, when, bad in zip(stamps, times.tolist(), refused.tolist(), strict=True):
            try:
                assert (when, bad) == (event_time(stamp, NOW, max_future_s), False)
            except InvalidEvent:
                assert bad


class TestProfileParquet:
    def test_same_profiles_as_the_csv(self, tmp_path: Path) -> None:
        """A profile Parquet file (strings spelt as in the CSV, discoverable
        boolean, nulls for "not carried") gives the profiles the CSV gives."""
        rows = [
            {"user_id": 1, "age_band": "ADULT", "message_privacy": "everyone", "account_state": "ACTIVE",
             "region_code": "GB", "discoverable": True, "age_assurance": "VERIFIED"},
            {"user_id": 2, "age_band": "16_17", "message_privacy": None, "account_state": "ACTIVE",
             "region_code": None, "discoverable": None, "age_assurance": None},
            {"user_id": 3, "age_band": None, "message_privacy": None, "account_state": None,
             "region_code": None, "discoverable": False, "age_assurance": None},
        ]
        path = tmp_path / "p.parquet"
        pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=2)
        table = read_event_file(path, now=NOW)
        assert table.profiles == {
            0: Profile(1, AgeBand.ADULT, MessagePrivacy.EVERYONE, AccountState.ACTIVE, "GB", True,
                       AgeAssurance.VERIFIED),
            1: Profile(2, AgeBand.AGE_16_17, None, AccountState.ACTIVE),
            2: Profile(3, discoverable=False),
        }
        assert table.kind.tolist() == [EventKind.PROFILE] * 3 and table.time.tolist() == [NOW] * 3

    def test_bad_rows_are_skipped_as_profile_csv_lines(self, tmp_path: Path) -> None:
        """Bad profile rows: "file:row N: reason" with the CSV's reasons,
        rendered as profile CSV lines; the profiles after them keep their
        rows in the table."""
        path = tmp_path / "p.parquet"
        pq.write_table(pa.table({"user_id": [1, None, 3, 4], "age_band": ["ADULT", "ADULT", "ELDER", "ADULT"],
                                 "message_privacy": [None] * 4, "account_state": [None] * 4}), path)
        rejected: list[RejectedLine] = []
        table = read_event_file(path, now=NOW, bad_lines=BadLines(2, rejected.append))
        assert [(str(r.error)[: str(r.error).find(" (")] if "(" in str(r.error) else str(r.error), r.text)
                for r in rejected] == [
            (f"{path}:row 2: user_id is null", ",ADULT,,"),
            (f"{path}:row 3: age_band: unknown value 'ELDER'", "3,ELDER,,"),
        ]
        assert rejected[0].header == "user_id,age_band,message_privacy,account_state"
        assert table.actor.tolist() == [1, 4]
        assert table.profiles == {0: Profile(1, AgeBand.ADULT), 1: Profile(4, AgeBand.ADULT)}

    def test_edge_columns_of_nulls_only(self, tmp_path: Path) -> None:
        """A column holding only nulls (Parquet's null type) makes bad rows,
        not a schema error."""
        path = tmp_path / "e.parquet"
        pq.write_table(pa.table({"time_ms": [T0_MS], "event": ["follow"], "actor_id": [1], "target_id": [None]}),
                       path)
        with pytest.raises(EventLogError, match=r":row 1: target_id is null$"):
            read_event_file(path, now=NOW)
