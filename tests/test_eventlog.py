"""Event log files: the three formats, gzip, and a precise ``file:line:``
error for every kind of bad line."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from graph.errors import EventLogError
from graph.eventlog import read_event_file, read_event_files, write_edge_csv, write_profile_csv
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
