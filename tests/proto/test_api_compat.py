"""The v1 API stays compatible with its committed baseline.

``proto/contactgraph_v1.binpb`` is a FileDescriptorSet of the released v1
API (regenerate it only for deliberate, compatible changes). Every message
field (name, number, type, label, type name, oneof, presence), every enum
value (name, number) and every service method (name, input and output
types, streaming) in it must still exist unchanged in the generated modules
``contactgraph.v1.*_pb2``. Additions are fine; removals, renames and
renumberings are not."""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

BASELINE = Path(__file__).resolve().parents[2] / "proto" / "contactgraph_v1.binpb"

FileProto = descriptor_pb2.FileDescriptorProto
_TYPE_NAME = {v: k for k, v in descriptor_pb2.FieldDescriptorProto.Type.items()}
_LABEL_NAME = {v: k for k, v in descriptor_pb2.FieldDescriptorProto.Label.items()}


# --- the checker ------------------------------------------------------------


def load_baseline(path: Path = BASELINE) -> list[FileProto]:
    """The committed descriptor set's files."""
    return list(descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes()).file)


def module_name(file_name: str) -> str:
    """The generated module of a .proto file (protoc's naming)."""
    return file_name.removesuffix(".proto").replace("/", ".") + "_pb2"


def current_files(names: Iterable[str]) -> dict[str, FileProto]:
    """The descriptors of the generated modules for these .proto files, as
    FileDescriptorProtos; a file whose module is gone is left out."""
    out: dict[str, FileProto] = {}
    for name in names:
        try:
            module = importlib.import_module(module_name(name))
        except ModuleNotFoundError:
            continue
        proto = FileProto()
        module.DESCRIPTOR.CopyToProto(proto)
        out[proto.name] = proto
    return out


def _messages(prefix: str, messages: Iterable[descriptor_pb2.DescriptorProto]
              ) -> Iterable[tuple[str, descriptor_pb2.DescriptorProto]]:
    for m in messages:
        name = f"{prefix}.{m.name}"
        yield name, m
        yield from _messages(name, m.nested_type)


def _enums(prefix: str, file: FileProto) -> Iterable[tuple[str, descriptor_pb2.EnumDescriptorProto]]:
    for e in file.enum_type:
        yield f"{prefix}.{e.name}", e
    for name, m in _messages(prefix, file.message_type):
        for e in m.enum_type:
            yield f"{name}.{e.name}", e


def _field_shape(message: descriptor_pb2.DescriptorProto, f: descriptor_pb2.FieldDescriptorProto) -> dict[str, object]:
    """What of a field the wire and the generated API depend on."""
    oneof = message.oneof_decl[f.oneof_index].name if f.HasField("oneof_index") and not f.proto3_optional else ""
    return {
        "name": f.name,
        "number": f.number,
        "type": _TYPE_NAME.get(f.type, f.type),
        "label": _LABEL_NAME.get(f.label, f.label),
        "type_name": f.type_name,
        "oneof": oneof,
        "proto3_optional": f.proto3_optional,
    }


def compat_problems(baseline: Iterable[FileProto], current: Mapping[str, FileProto]) -> list[str]:
    """Every way ``current`` breaks ``baseline``, one line each; empty when
    compatible."""
    problems: list[str] = []
    for base in baseline:
        now = current.get(base.name)
        if now is None:
            problems.append(f"{base.name}: file removed")
            continue
        if now.package != base.package:
            problems.append(f"{base.name}: package {base.package!r} -> {now.package!r}")
        prefix = f".{base.package}" if base.package else ""
        now_messages = dict(_messages(prefix, now.message_type))
        for name, message in _messages(prefix, base.message_type):
            if name not in now_messages:
                problems.append(f"{name}: message removed or renamed")
                continue
            cur = now_messages[name]
            by_number = {f.number: f for f in cur.field}
            by_name = {f.name: f for f in cur.field}
            for f in message.field:
                where = f"{name}.{f.name} = {f.number}"
                match = by_number.get(f.number)
                if match is None:
                    moved = by_name.get(f.name)
                    problems.append(f"{where}: renumbered to {moved.number}" if moved is not None
                                    else f"{where}: field removed")
                    continue
                old, new = _field_shape(message, f), _field_shape(cur, match)
                for key in old:
                    if old[key] != new[key]:
                        problems.append(f"{where}: {key} {old[key]!r} -> {new[key]!r}")
        now_enums = dict(_enums(prefix, now))
        for name, enum in _enums(prefix, base):
            if name not in now_enums:
                problems.append(f"{name}: enum removed or renamed")
                continue
            values = {v.name: v.number for v in now_enums[name].value}
            for v in enum.value:
                if v.name not in values:
                    problems.append(f"{name}.{v.name} = {v.number}: enum value removed or renamed")
                elif values[v.name] != v.number:
                    problems.append(f"{name}.{v.name}: renumbered {v.number} -> {values[v.name]}")
        now_services = {s.name: s for s in now.service}
        for service in base.service:
            sname = f"{prefix}.{service.name}"
            if service.name not in now_services:
                problems.append(f"{sname}: service removed or renamed")
                continue
            methods = {m.name: m for m in now_services[service.name].method}
            for m in service.method:
                cur_m = methods.get(m.name)
                if cur_m is None:
                    problems.append(f"{sname}.{m.name}: method removed or renamed")
                    continue
                for key in ("input_type", "output_type", "client_streaming", "server_streaming"):
                    if getattr(m, key) != getattr(cur_m, key):
                        problems.append(f"{sname}.{m.name}: {key} {getattr(m, key)!r} -> {getattr(cur_m, key)!r}")
    return problems


# --- the check ------------------------------------------------------------


class TestCompatibility:
    def test_generated_code_keeps_every_baseline_element(self) -> None:
        """Every field, enum value and method of the committed baseline still
        exists unchanged in the generated contactgraph.v1 modules."""
        baseline = load_baseline()
        problems = compat_problems(baseline, current_files(f.name for f in baseline))
        assert not problems, "incompatible change to the v1 API:\n  " + "\n  ".join(problems)

    def test_baseline_holds_the_v1_contract(self) -> None:
        """The baseline covers the contract of issue 2, so the check above
        guards it: both services, the event oneof, the profile, the enums."""
        files = {f.name: f for f in load_baseline()}
        assert {f.package for f in files.values()} == {"contactgraph.v1"}
        methods = {(s.name, m.name) for f in files.values() for s in f.service for m in s.method}
        assert {("SuggestionService", "SuggestContacts"), ("GraphService", "ApplyEvents")} <= methods
        messages = {m.name: m for f in files.values() for m in f.message_type}
        fields = {name: {fd.name for fd in m.field} for name, m in messages.items()}
        assert fields["SuggestContactsRequest"] >= {"user_id", "page_size", "page_token", "surface"}
        assert fields["SuggestContactsResponse"] >= {"suggestions", "next_page_token", "snapshot_id",
                                                     "policy_version"}
        assert fields["Suggestion"] >= {"user_id", "score", "reasons", "mutual_friend_count"}
        assert fields["ApplyEventsResponse"] >= {"watermark", "applied", "duplicates"}
        assert fields["GraphEvent"] >= {"event_id", "event_time", "follow", "unfollow", "block", "unblock",
                                        "mute", "unmute", "report", "dismiss", "interaction", "profile",
                                        "erase_user"}
        assert fields["UserProfile"] >= {"user_id", "age_band", "message_privacy", "account_state",
                                         "region_code", "discoverable", "age_assurance"}
        enums = {e.name for f in files.values() for e in f.enum_type}
        assert enums >= {"Surface", "SuggestionReason", "FilterReason", "AgeBand", "MessagePrivacy",
                         "AccountState", "AgeAssurance", "InteractionType", "ReportCategory"}
        assert not any(f.HasField("source_code_info") for f in files.values()), \
            "the baseline should not carry comments (every comment edit would churn it)"


# --- the checker itself -------------------------------------------------------


def _current() -> dict[str, FileProto]:
    return copy.deepcopy(current_files(f.name for f in load_baseline()))


def _file(files: Mapping[str, FileProto], short: str) -> FileProto:
    return files[f"contactgraph/v1/{short}.proto"]


def _message(files: Mapping[str, FileProto], short: str, name: str) -> descriptor_pb2.DescriptorProto:
    return next(m for m in _file(files, short).message_type if m.name == name)


def _field(files: Mapping[str, FileProto], short: str, message: str, name: str
           ) -> descriptor_pb2.FieldDescriptorProto:
    return next(f for f in _message(files, short, message).field if f.name == name)


def _enum(files: Mapping[str, FileProto], short: str, name: str) -> descriptor_pb2.EnumDescriptorProto:
    return next(e for e in _file(files, short).enum_type if e.name == name)


def _rename_field(files: dict[str, FileProto]) -> None:
    _field(files, "suggestion_service", "SuggestContactsRequest", "page_size").name = "max_results"


def _renumber_field(files: dict[str, FileProto]) -> None:
    _field(files, "graph_events", "Edge", "target_id").number = 7


def _remove_field(files: dict[str, FileProto]) -> None:
    fields = _message(files, "graph_service", "ApplyEventsResponse").field
    del fields[[f.name for f in fields].index("duplicates")]


def _retype_field(files: dict[str, FileProto]) -> None:
    _field(files, "suggestion_service", "SuggestContactsRequest", "user_id").type = \
        descriptor_pb2.FieldDescriptorProto.TYPE_INT32


def _repeat_field(files: dict[str, FileProto]) -> None:
    _field(files, "suggestion_service", "SuggestContactsRequest", "surface").label = \
        descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED


def _leave_oneof(files: dict[str, FileProto]) -> None:
    _field(files, "graph_events", "GraphEvent", "erase_user").ClearField("oneof_index")


def _drop_presence(files: dict[str, FileProto]) -> None:
    # Turn `optional AgeBand age_band` into a plain field (no presence).
    message = _message(files, "user_profile", "UserProfile")
    f = next(f for f in message.field if f.name == "age_band")
    f.proto3_optional = False
    f.ClearField("oneof_index")


def _remove_method(files: dict[str, FileProto]) -> None:
    methods = next(s for s in _file(files, "graph_service").service if s.name == "GraphService").method
    del methods[[m.name for m in methods].index("ApplyEvents")]


def _rename_method(files: dict[str, FileProto]) -> None:
    service = next(s for s in _file(files, "suggestion_service").service if s.name == "SuggestionService")
    next(m for m in service.method if m.name == "SuggestContacts").name = "Suggest"


def _change_method_input(files: dict[str, FileProto]) -> None:
    service = next(s for s in _file(files, "graph_service").service if s.name == "GraphService")
    next(m for m in service.method if m.name == "ApplyEvents").input_type = ".contactgraph.v1.GraphEvent"


def _stream_method(files: dict[str, FileProto]) -> None:
    service = next(s for s in _file(files, "suggestion_service").service if s.name == "SuggestionService")
    next(m for m in service.method if m.name == "SuggestContacts").server_streaming = True


def _rename_enum_value(files: dict[str, FileProto]) -> None:
    next(v for v in _enum(files, "surface", "Surface").value if v.name == "SURFACE_SHARE_SHEET").name = \
        "SURFACE_QUICK_SEND"


def _renumber_enum_value(files: dict[str, FileProto]) -> None:
    next(v for v in _enum(files, "user_profile", "AgeBand").value if v.name == "AGE_BAND_ADULT").number = 9


def _remove_message(files: dict[str, FileProto]) -> None:
    messages = _file(files, "graph_events").message_type
    del messages[[m.name for m in messages].index("Dismiss")]


def _remove_file(files: dict[str, FileProto]) -> None:
    del files["contactgraph/v1/surface.proto"]


BREAKING: list[tuple[Callable[[dict[str, FileProto]], None], str]] = [
    (_rename_field, "SuggestContactsRequest.page_size = 2: name 'page_size' -> 'max_results'"),
    (_renumber_field, "Edge.target_id = 2: renumbered to 7"),
    (_remove_field, "ApplyEventsResponse.duplicates = 3: field removed"),
    (_retype_field, "SuggestContactsRequest.user_id = 1: type 'TYPE_INT64' -> 'TYPE_INT32'"),
    (_repeat_field, "SuggestContactsRequest.surface = 4: label 'LABEL_OPTIONAL' -> 'LABEL_REPEATED'"),
    (_leave_oneof, "GraphEvent.erase_user = 20: oneof 'kind' -> ''"),
    (_drop_presence, "UserProfile.age_band = 2: proto3_optional True -> False"),
    (_remove_method, "GraphService.ApplyEvents: method removed"),
    (_rename_method, "SuggestionService.SuggestContacts: method removed"),
    (_change_method_input, "GraphService.ApplyEvents: input_type"),
    (_stream_method, "SuggestionService.SuggestContacts: server_streaming False -> True"),
    (_rename_enum_value, "Surface.SURFACE_SHARE_SHEET = 2: enum value removed"),
    (_renumber_enum_value, "AgeBand.AGE_BAND_ADULT: renumbered 4 -> 9"),
    (_remove_message, "contactgraph.v1.Dismiss: message removed"),
    (_remove_file, "contactgraph/v1/surface.proto: file removed"),
]


class TestChecker:
    def test_identical_descriptors_pass(self) -> None:
        """The baseline is compatible with itself."""
        baseline = load_baseline()
        assert compat_problems(baseline, {f.name: f for f in copy.deepcopy(baseline)}) == []

    @pytest.mark.parametrize(("mutate", "expected"), BREAKING, ids=[m.__name__.lstrip("_") for m, _ in BREAKING])
    def test_breaking_change_is_reported(self, mutate: Callable[[dict[str, FileProto]], None],
                                         expected: str) -> None:
        """A renamed, renumbered, removed or retyped field, a field moved out
        of its oneof or losing presence, a removed, renamed, retyped or
        streaming method, a renamed or renumbered enum value, a removed
        message or file: each is reported, naming the element."""
        files = _current()
        assert compat_problems(load_baseline(), files) == [], "the unmutated descriptors must pass"
        mutate(files)
        problems = compat_problems(load_baseline(), files)
        assert problems, "the checker missed a breaking change"
        assert any(expected in p for p in problems), problems

    def test_additions_pass(self) -> None:
        """New fields, enum values, messages and methods are compatible."""
        files = _current()
        request = _message(files, "suggestion_service", "SuggestContactsRequest")
        request.field.add(name="locale", number=99, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
                          label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL, json_name="locale")
        _enum(files, "surface", "Surface").value.add(name="SURFACE_SEARCH", number=9)
        _file(files, "graph_events").message_type.add(name="Brand")
        service = next(s for s in _file(files, "graph_service").service if s.name == "GraphService")
        service.method.add(name="Ping", input_type=".contactgraph.v1.Edge", output_type=".contactgraph.v1.Edge")
        assert compat_problems(load_baseline(), files) == []

    def test_checker_reads_the_generated_modules(self) -> None:
        """current_files maps each baseline file to its generated module's
        descriptor, and a file without a module is reported removed."""
        names = [f.name for f in load_baseline()]
        files = current_files([*names, "contactgraph/v1/no_such_file.proto"])
        assert set(files) == set(names)
        gone = FileProto(name="contactgraph/v1/no_such_file.proto", package="contactgraph.v1")
        assert compat_problems([gone], files) == ["contactgraph/v1/no_such_file.proto: file removed"]
