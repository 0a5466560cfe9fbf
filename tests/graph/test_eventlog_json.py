"""JSON lines read column-wise (graph.eventlog.json_lines) against the line
reader (its read_json_line_by_line, the oracle): the same table bit for bit,
the same bad lines with the same ``file:line: reason``, in the same order."""

from __future__ import annotations

import datetime as dt
import functools
import gzip
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graph.eventlog.json_lines as eventlog_json
from graph.errors import EventLogError
from graph.eventlog import BadLines, RejectedLine, read_event_file
from graph.eventlog.dispatch import read_text_file
from graph.eventlog.json_lines import read_json_lines
from graph.model import EventKind, InteractionType
from graph.table import EventTable

NOW = 1_714_600_000.0  # 2024-05-01T21:46:40Z
MAX_FUTURE_S = 3600.0
T0 = 1_714_564_800  # 2024-05-01T12:00:00Z

_EDGE_KEYS = ("follow", "unfollow", "block", "unblock", "mute", "unmute")
_ENUMS = {
    "interaction": ("type", ["INTERACTION_TYPE_MESSAGE", "INTERACTION_TYPE_SHARE", "INTERACTION_TYPE_COMMENT",
                             "INTERACTION_TYPE_MENTION", "INTERACTION_TYPE_LIKE", "INTERACTION_TYPE_UNSPECIFIED"]),
    "report": ("category", ["REPORT_CATEGORY_SPAM", "REPORT_CATEGORY_OTHER", "REPORT_CATEGORY_UNSPECIFIED"]),
    "dismiss": ("surface", ["SURFACE_SHARE_SHEET", "SURFACE_NEW_CONTACTS", "SURFACE_UNSPECIFIED"]),
}


# --- the two readers ------------------------------------------------------------

Outcome = tuple[EventTable | tuple[str, str], list[tuple[str, int, str, str]]]


def _rejects(rejected: list[RejectedLine]) -> list[tuple[str, int, str, str]]:
    return [(str(r.error), r.error.line, r.text, r.header) for r in rejected]


def _oracle(path: Path, limit: int) -> Outcome:
    """The line reader: the table, or the error it raised; the lines it
    handed to the budget."""
    rejected: list[RejectedLine] = []
    try:
        table = read_text_file(path, str(path), NOW, MAX_FUTURE_S, BadLines(limit, rejected.append), None)
    except EventLogError as err:
        return (type(err).__name__, str(err)), _rejects(rejected)
    return table, _rejects(rejected)


@contextmanager
def _chunked(chunk_bytes: int) -> Iterator[None]:
    """read_event_file's JSON reader with chunks of ``chunk_bytes``."""
    with mock.patch.object(eventlog_json, "read_json_lines",
                           functools.partial(read_json_lines, chunk_bytes=chunk_bytes)):
        yield


def _read(path: Path, limit: int, chunk_bytes: int = eventlog_json.CHUNK_BYTES) -> Outcome:
    """read_event_file (the column-wise reader) like _oracle."""
    rejected: list[RejectedLine] = []
    try:
        with _chunked(chunk_bytes):
            table = read_event_file(path, now=NOW, max_future_s=MAX_FUTURE_S,
                                    bad_lines=BadLines(limit, rejected.append))
    except EventLogError as err:
        return (type(err).__name__, str(err)), _rejects(rejected)
    return table, _rejects(rejected)


def _same(got: Outcome, expected: Outcome) -> None:
    table, rejects = got
    expected_table, expected_rejects = expected
    assert rejects == expected_rejects
    if not isinstance(expected_table, EventTable):
        assert table == expected_table
        return
    assert isinstance(table, EventTable), table
    for name in ("time", "kind", "actor", "target", "detail", "event_id"):
        a, b = getattr(table, name), getattr(expected_table, name)
        assert a.dtype == b.dtype and a.shape == b.shape, name
        if name == "time":  # bit for bit
            assert a.view(np.int64).tolist() == b.view(np.int64).tolist()
        else:
            assert a.tolist() == b.tolist(), name
    assert table.profiles == expected_table.profiles


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


# --- random files ------------------------------------------------------------------


def _stamp(seconds: int, digits: str, zone: str) -> str:
    """An RFC 3339 time; ``zone`` is "Z" or "+HH:MM" / "-HH:MM" (the wall
    time shown is shifted so that the instant stays ``seconds``)."""
    shift = 0
    if zone != "Z":
        shift = (1 if zone[0] == "+" else -1) * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    wall = dt.datetime(1970, 1, 1) + dt.timedelta(seconds=seconds + shift)
    return wall.strftime("%Y-%m-%dT%H:%M:%S") + (f".{digits}" if digits else "") + zone


_TIMES = st.one_of(
    st.builds(
        _stamp,
        st.one_of(st.integers(T0 - 10**8, int(NOW) + 7200), st.integers(-10**9, 10**10), st.integers(-1, 3)),
        st.text("0123456789", max_size=9),
        st.one_of(st.just("Z"), st.builds("{}{:02d}:{:02d}".format, st.sampled_from("+-"), st.integers(0, 23),
                                          st.integers(0, 59))),
    ),
    st.sampled_from([
        "2024-05-01T12:00:00.Z", "2024-5-1T12:00:00Z", "2024-05-01t12:00:00Z", "2024-05-01T12:00:00z",
        "2024-05-01T23:59:60Z", "2023-02-29T00:00:00Z", "2024-02-29T00:00:00Z", "2024-13-01T00:00:00Z",
        "0001-01-01T00:00:00+01:00", "0001-01-01T00:00:00-01:00", "0000-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z", "9999-12-31T23:59:59-00:01", "2024-05-01T12:00:00.1234567891Z",
        "2024-05-01T12:00:00+0500", "2024-05-01T12:00:00+05:00Z", "2024-05-01 12:00:00Z", "2024-05-01T12:00:00",
        "2024-05-01T12:00:00+99:99", "2024-05-01T12:00:00.000000001Z", "２０２４-05-01T12:00:00Z", "",
        "2000-02-29T00:00:00Z", "1900-02-29T00:00:00Z", "2100-02-29T00:00:00Z", "2024-04-31T00:00:00Z",
        "1970-01-01T00:00:00.000000003Z", "1970-01-01T00:00:00.7Z", "1970-01-01T01:00:00.000000007+01:00",
    ]),
)
_IDS = st.one_of(
    st.integers(1, 50).map(str),
    st.sampled_from(["0", "-3", " 4", "+4", "4_0", "abc", "", "1.0", "1e2", "٣", str(2**63 - 1), str(2**63),
                     "0000000000000000007", "0" * 19, "9" * 20, "00012"]),
    st.integers(-2, 50),  # a JSON number: protobuf takes it, pyarrow refuses the string column
)
_EVENT_IDS = st.one_of(
    st.text("abc-_ é", max_size=5),
    st.sampled_from(["x" * 128, "x" * 129, "é" * 129, "a\"b", "a\\b", "a\u00e9", "\U0001f600", "a\tb"]),
)


@st.composite
def _good_event(draw: st.DrawFn) -> dict[str, object]:
    """A GraphEvent as a JSON object (maybe invalid by its values)."""
    kind = draw(st.sampled_from([*_EDGE_KEYS, "interaction", "interaction", "report", "dismiss", "eraseUser",
                                 "profile"]))
    event: dict[str, object] = {}
    if draw(st.integers(0, 4)):
        event["eventId"] = draw(_EVENT_IDS)
    if draw(st.integers(0, 4)):
        event["eventTime"] = draw(_TIMES)
    actor = draw(_IDS) if draw(st.integers(0, 5)) == 0 else str(draw(st.integers(1, 6)))
    target = draw(_IDS) if draw(st.integers(0, 5)) == 0 else str(draw(st.integers(1, 6)))
    if kind == "eraseUser":
        event[kind] = {"userId": actor}
    elif kind == "profile":
        event[kind] = {"userId": actor, "ageBand": "AGE_BAND_16_17"}
    else:
        body: dict[str, object] = {"actorId": actor, "targetId": target}
        if kind in _ENUMS:
            field, names = _ENUMS[kind]
            if draw(st.integers(0, 5)):
                body[field] = draw(st.one_of(st.sampled_from(names), st.sampled_from(["NOPE", "1", "9"]),
                                             st.integers(0, 9)))
        event[kind] = body
    return event


_BAD_LINES = [
    b'{"eventId":"x","follow":{"actorId":"1","targetId":"2"}',  # truncated
    b"not json",
    b'{"eventId":"x","bogus":1,"follow":{"actorId":"1","targetId":"2"}}',
    b'{"event_id":"x","follow":{"actor_id":"1","target_id":"2"}}',  # snake_case: protobuf takes it
    b'{"eventId":"x","erase_user":{"user_id":"3"}}',
    b'{"follow":{"actorId":"1","targetId":"2","type":"X"}}',
    b'{"follow":{"actorId":"7","targetId":"7"}}',
    b'{"follow":{"actorId":"1","targetId":"2"},"block":{"actorId":"1","targetId":"2"}}',
    b'{"follow":null,"block":{"actorId":"1","targetId":"2"}}',
    b'{"eventId":null,"eventTime":null,"mute":{"actorId":"1","targetId":"2"}}',
    b'{"follow":{"actorId":null,"targetId":"2"}}',
    b"{}",
    b'{"follow":{}}',
    b'{"eventId":"a","eventId":"b","follow":{"actorId":"1","targetId":"2"}}',
    b'{"follow":{"actorId":"1","actorId":"3","targetId":"2"}}',
    b'{"follow":{"actorId":"1","targetId":"2"}}{"block":{"actorId":"1","targetId":"2"}}',
    b'{"follow":{"actorId":"1","targetId":"2"}} {"block":{"actorId":"1","targetId":"3"}}',
    b'{"follow":{"actorId":"1","targetId":"2"}} x',
    b'{"follow":{"actorId":"1","targetId":"2"}',
    b'"follow"',
    b"[1]",
    b"1",
    b'{"follow":{"actorId":"1","targetId":"2"},"x":NaN}',
    b'{"follow":{"actorId":true,"targetId":"2"}}',
    b'{"follow":{"actorId":1.5,"targetId":"2"}}',
    b'{"eventId":"\\ud800","follow":{"actorId":"1","targetId":"2"}}',
    b'{"eventId":"\\ud83d\\ude00","follow":{"actorId":"1","targetId":"2"}}',
    b'{"eventId":"a\\u0000b","follow":{"actorId":"1","targetId":"2"}}',
    b'{"event\\u0049d":"k","follow":{"actorId":"1","targetId":"2"}}',
    b'{"eventId":"a\x01b","follow":{"actorId":"1","targetId":"2"}}',
    b'{"eventId":"a\x00b","follow":{"actorId":"1","targetId":"2"}}\x00{}',
    b'\t {"follow":{"actorId":"1","targetId":"2"}} \t',
    b'{"follow":\t{"actorId":"1","targetId":"2"}}\x0c',
    b'\xef\xbb\xbf{"follow":{"actorId":"1","targetId":"2"}}',
    b'{"eventId":"\xc3\xa9","follow":{"actorId":"1","targetId":"2"}}',
    b'{"follow":{"actorId":"1","targetId":"2"}}\r{"block":{"actorId":"1","targetId":"-2"}}',
    b'{"follow":{"actorId":"1",\n"targetId":"2"}}',
    b'{"follow":{"actorId":"1","targetId":"2"}\n}',
    b'{"interaction":{"actorId":"1","targetId":"2","type":"INTERACTION_TYPE_LIKE"}}',
    b'{"profile":{"userId":"0"}}',
    b'{"eventTime":"2024-05-01T12:00:00Z","eventTime":"2024-05-01T12:00:00Z","follow":{"actorId":"1","targetId":"2"}}',
    b'{"eventTime":1714564800,"follow":{"actorId":"1","targetId":"2"}}',
    b'{"eventTime":{"seconds":"1"},"follow":{"actorId":"1","targetId":"2"}}',
]
_BLANK_LINES = [b"", b"  ", b"\t", b" \t ", b"\x0c", b"\xc2\xa0"]


@st.composite
def _files(draw: st.DrawFn) -> bytes:
    """A JSON lines file: good lines of every kind in varied spellings,
    blank lines and bad lines of many sorts; LF or CRLF; maybe a BOM, maybe
    no final newline, rarely a byte that is not UTF-8."""
    lines: list[bytes] = []
    for _ in range(draw(st.integers(0, 30))):
        shape = draw(st.sampled_from(["good"] * 5 + ["blank", "bad", "bad", "bad"]))
        if shape == "good":
            event = draw(_good_event())
            keys = draw(st.permutations(list(event)))
            spaced = draw(st.booleans())
            text = json.dumps({k: event[k] for k in keys}, ensure_ascii=draw(st.booleans()),
                              separators=(", ", ": ") if spaced else (",", ":"))
            lines.append(text.encode("utf-8"))
        elif shape == "blank":
            lines.append(draw(st.sampled_from(_BLANK_LINES)))
        else:
            lines.append(draw(st.sampled_from(_BAD_LINES)))
    newline = draw(st.sampled_from([b"\n", b"\n", b"\r\n"]))
    data = newline.join(lines) + (newline if draw(st.booleans()) else b"")
    if draw(st.integers(0, 9)) == 0:
        data = b"\xef\xbb\xbf" + data
    if lines and draw(st.integers(0, 29)) == 0:
        data = data[: len(data) // 2] + b"\xff" + data[len(data) // 2 :]
    return data


class TestSameAsTheLineReader:
    @settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(data=_files(), gz=st.booleans(), chunk_bytes=st.sampled_from([1, 40, 300, 1 << 20]),
           limit=st.sampled_from([0, 1, 3, 10**6]))
    def test_any_file(self, tmp_path_factory: pytest.TempPathFactory, data: bytes, gz: bool, chunk_bytes: int,
                      limit: int) -> None:
        """Any mix of good, blank and bad lines (bad JSON, unknown fields,
        snake_case keys, bad ids, self-loops, odd times, unknown enums, two
        kinds, numbers for strings, duplicates, escapes, control bytes,
        bare CRs, bytes that are not UTF-8), gzip or not, in chunks of any
        size, with any budget: the same table, rejects and error as the
        line reader."""
        path = _write(tmp_path_factory.mktemp("j") / ("e.jsonl.gz" if gz else "e.jsonl"), data)
        _same(_read(path, limit, chunk_bytes), _oracle(path, limit))


class TestEachOddLine:
    @pytest.mark.parametrize("line", _BAD_LINES + _BLANK_LINES, ids=lambda line: "")
    def test_between_good_lines(self, tmp_path: Path, line: bytes) -> None:
        """Every sort of bad or blank line, between good ones, in one chunk
        or a chunk per byte, with and without a budget: as the line reader."""
        good = b'{"eventId":"g","eventTime":"2024-05-01T12:00:00.5Z","follow":{"actorId":"1","targetId":"2"}}\n'
        path = _write(tmp_path / "e.jsonl", good + line + b"\n" + good + line + b"\n" + good)
        for limit in (0, 10):
            expected = _oracle(path, limit)
            for chunk_bytes in (1, 1 << 20):
                _same(_read(path, limit, chunk_bytes), expected)

    def test_lines_pyarrow_would_join_or_split(self, tmp_path: Path) -> None:
        """Two objects on one line and one object over two lines in the same
        run: pyarrow's row count matches the line count, its rows do not
        match the lines."""
        path = _write(tmp_path / "e.jsonl", b'{"follow":{"actorId":"1","targetId":"2"}}{"block":{"actorId":"1",'
                      b'"targetId":"2"}}\n{"mute":{"actorId":"1",\n"targetId":"3"}}\n')
        _same(_read(path, 10), _oracle(path, 10))


class TestMessages:
    @pytest.mark.parametrize(
        ("line", "reason"),
        [
            (b'{"follow":{"actorId":"7","targetId":"7"}}', "follow.target_id equals actor_id"),
            (b'{"block":{"actorId":"0","targetId":"7"}}', "block.actor_id must be a positive int64 user id, got 0"),
            (b'{"eventTime":"2024-05-02T12:00:00Z","mute":{"actorId":"1","targetId":"2"}}',
             "event_time is 51200s in the future (more than 3600s)"),
            (b'{"eventTime":"1969-12-31T23:59:59Z","mute":{"actorId":"1","targetId":"2"}}',
             "event_time is before 1970"),
            (b'{"interaction":{"actorId":"1","targetId":"2","type":"INTERACTION_TYPE_UNSPECIFIED"}}',
             "interaction.type must be set"),
            (b'{"interaction":{"actorId":"1","targetId":"2","type":9}}', "interaction.type has unknown value 9"),
            (b'{"eventId":"e"}', "event has no kind (follow, block, interaction, ...)"),
            (b'{"follow":{"actorId":"1","targetId":"2"},"block":{"actorId":"1","targetId":"2"}}',
             'invalid GraphEvent JSON: Message type "contactgraph.v1.GraphEvent" should not have multiple "kind" '
             'oneof fields at "GraphEvent".'),
            (b'{"eventId":"a","eventId":"b","follow":{"actorId":"1","targetId":"2"}}',
             "invalid GraphEvent JSON: Failed to load JSON: Failed to load JSON: duplicate key eventId.."),
            (b'{"follow":{"actorId":"x","targetId":"2"}}',
             "invalid GraphEvent JSON: Failed to parse actorId field: invalid literal for int() with base 10: 'x'."),
            (b'{"follow":{"actorId":1,"targetId":"2"},"x":1}',
             'invalid GraphEvent JSON: Message type "contactgraph.v1.GraphEvent" has no field named "x" at '
             '"GraphEvent". Available Fields(except extensions): '),
        ],
    )
    def test_reason_and_line(self, tmp_path: Path, line: bytes, reason: str) -> None:
        """A bad line after good and blank ones is reported on its own line
        with the line reader's reason."""
        good = b'{"eventId":"g","follow":{"actorId":"1","targetId":"2"}}\n'
        path = _write(tmp_path / "e.jsonl", good + b"\n" + good + line + b"\n" + good)
        expected = _oracle(path, 0)
        got = _read(path, 0)
        _same(got, expected)
        error = got[0]
        assert isinstance(error, tuple) and error[1].startswith(f"{path}:4: {reason}"), error

    def test_budget_skips_then_raises_on_the_next(self, tmp_path: Path) -> None:
        """With a budget of 2 the first two bad lines are handed over in line
        order and the third raises, as the line reader does."""
        good = b'{"follow":{"actorId":"1","targetId":"2"}}\n'
        bad = [b'{"follow":{"actorId":"3","targetId":"3"}}\n', b"nope\n", b'{"event_id":"x","mute":{}}\n']
        path = _write(tmp_path / "e.jsonl", good + bad[0] + good * 3 + bad[1] + good + bad[2] + good)
        got = _read(path, 2)
        _same(got, _oracle(path, 2))
        error, rejects = got
        assert [line for _, line, _, _ in rejects] == [2, 6]
        assert isinstance(error, tuple) and error[0] == "TooManyBadLines" and f"{path}:8:" in error[1]


class TestFastPath:
    def _bulk(self, path: Path, n: int) -> Path:
        rng = np.random.default_rng(3)
        actors, targets = rng.integers(1, 10**12, n), rng.integers(1, 10**12, n)
        lines = []
        for i in range(n):
            stamp = _stamp(T0 - int(rng.integers(0, 10**7)), f"{i % 1000:03d}", "Z")
            if i % 2:
                body = {"interaction": {"actorId": str(actors[i]), "targetId": str(targets[i]),
                                        "type": "INTERACTION_TYPE_MESSAGE"}}
            else:
                body = {_EDGE_KEYS[i % 6]: {"actorId": str(actors[i]), "targetId": str(targets[i])}}
            lines.append(json.dumps({"eventId": f"e-{i}", "eventTime": stamp, **body}, separators=(",", ":")))
        return _write(path, ("\n".join(lines) + "\n").encode())

    @pytest.mark.parametrize("name", ["e.jsonl", "e.ndjson.gz"])
    def test_clean_file_never_reaches_the_line_reader(self, tmp_path: Path, name: str) -> None:
        """A clean file of follows, mutes, blocks and interactions across
        several chunks is read without a single line going to the line
        reader (it is made to raise)."""
        path = self._bulk(tmp_path / name, 3000)
        expected = _oracle(path, 0)

        def refuse(*args: object) -> None:
            raise AssertionError("the line reader was asked")

        with mock.patch.object(eventlog_json, "read_json_line_by_line", refuse), \
                mock.patch("graph.eventlog.dispatch.read_text_file", refuse):
            got = _read(path, 0, chunk_bytes=50_000)
        _same(got, expected)
        table = got[0]
        assert isinstance(table, EventTable) and len(table) == 3000
        assert (table.kind[1::2] == int(EventKind.INTERACTION)).all()
        assert (table.detail[1::2] == int(InteractionType.MESSAGE)).all()

    def test_bad_lines_cost_only_their_lines(self, tmp_path: Path) -> None:
        """Lines pyarrow refuses (a number for an id) and lines it flags (a
        self-loop) go to the line reader one by one, not their chunk."""
        path = self._bulk(tmp_path / "e.jsonl", 2000)
        lines = path.read_bytes().splitlines(keepends=True)
        lines[500] = b'{"follow":{"actorId":1,"targetId":2}}\n'
        lines[1500] = b'{"follow":{"actorId":"5","targetId":"5"}}\n'
        path.write_bytes(b"".join(lines))
        asked: list[int] = []
        real = eventlog_json.read_json_line_by_line

        def counting(handle, *args):  # type: ignore[no-untyped-def]
            text = handle.getvalue()
            asked.append(text.count("\n"))
            handle.seek(0)
            return real(handle, *args)

        with mock.patch.object(eventlog_json, "read_json_line_by_line", counting):
            got = _read(path, 1)
        _same(got, _oracle(path, 1))
        assert sum(asked) == 2
        assert [line for _, line, _, _ in got[1]] == [1501]

    def test_undecodable_file_is_left_to_the_line_reader(self, tmp_path: Path) -> None:
        """Bytes that are not UTF-8: the line reader reports where its
        decoder stopped, and nothing is handed to the budget twice."""
        path = _write(tmp_path / "e.jsonl", b'{"follow":{"actorId":"1","targetId":"1"}}\n' + b"\xff\n")
        assert read_json_lines(path, str(path), NOW, MAX_FUTURE_S, BadLines(), None) is None
        _same(_read(path, 5), _oracle(path, 5))
