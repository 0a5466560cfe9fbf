"""The plain-Python enums mirror the v1 proto enums exactly, so numpy
columns and reason codes cross the API edge without translation tables."""

from __future__ import annotations

from enum import Enum, IntEnum

import pytest
from google.protobuf.descriptor import EnumDescriptor

from contactgraph.v1 import filter_reason_pb2, graph_events_pb2, suggestion_service_pb2, surface_pb2, user_profile_pb2
from graph import model
from graph.events import kind_field
from service.pipeline import reasons

INT_MIRRORS: list[tuple[type[IntEnum], EnumDescriptor]] = [
    (model.AgeBand, user_profile_pb2.DESCRIPTOR.enum_types_by_name["AgeBand"]),
    (model.MessagePrivacy, user_profile_pb2.DESCRIPTOR.enum_types_by_name["MessagePrivacy"]),
    (model.AccountState, user_profile_pb2.DESCRIPTOR.enum_types_by_name["AccountState"]),
    (model.AgeAssurance, user_profile_pb2.DESCRIPTOR.enum_types_by_name["AgeAssurance"]),
    (model.InteractionType, graph_events_pb2.DESCRIPTOR.enum_types_by_name["InteractionType"]),
    (model.ReportCategory, graph_events_pb2.DESCRIPTOR.enum_types_by_name["ReportCategory"]),
    (model.Surface, surface_pb2.DESCRIPTOR.enum_types_by_name["Surface"]),
]

STR_MIRRORS: list[tuple[type[Enum], EnumDescriptor]] = [
    (reasons.FilterReason, filter_reason_pb2.DESCRIPTOR.enum_types_by_name["FilterReason"]),
    (reasons.SuggestionReason, suggestion_service_pb2.DESCRIPTOR.enum_types_by_name["SuggestionReason"]),
]


def _prefix(descriptor: EnumDescriptor) -> str:
    """The proto value prefix, e.g. "AGE_BAND_" (from the zero value)."""
    zero = descriptor.values_by_number[0].name
    assert zero.endswith("_UNSPECIFIED"), zero
    return zero.removesuffix("UNSPECIFIED")


def _same_name(model_name: str, short_proto_name: str) -> bool:
    # Python names cannot start with a digit: AgeBand.AGE_13_15 mirrors
    # AGE_BAND_13_15 (and AGE_16_17 mirrors AGE_BAND_16_17).
    return model_name == short_proto_name or (model_name.startswith("AGE_") and model_name[4:] == short_proto_name)


class TestIntEnums:
    @pytest.mark.parametrize(("enum", "descriptor"), INT_MIRRORS, ids=[e.__name__ for e, _ in INT_MIRRORS])
    def test_same_numbers_and_names(self, enum: type[IntEnum], descriptor: EnumDescriptor) -> None:
        """The model enum has exactly the proto enum's numbers (both ways,
        UNSPECIFIED = 0 included), each under the matching name."""
        proto = {v.number: v.name for v in descriptor.values}
        assert {m.value for m in enum} == set(proto), f"{enum.__name__} vs {descriptor.full_name}"
        prefix = _prefix(descriptor)
        for member in enum:
            short = proto[member.value].removeprefix(prefix)
            assert _same_name(member.name, short), f"{enum.__name__}.{member.name} = {member.value} " \
                                                   f"but {descriptor.full_name} {member.value} is {proto[member.value]}"

    def test_every_proto_enum_of_the_model_files_is_mirrored(self) -> None:
        """Each enum the profile, event and surface protos declare has a
        model mirror in the table above (a new proto enum needs one)."""
        declared = {d.full_name for f in (user_profile_pb2, graph_events_pb2, surface_pb2)
                    for d in f.DESCRIPTOR.enum_types_by_name.values()}
        assert declared == {d.full_name for _, d in INT_MIRRORS}

    def test_event_kinds_are_the_graph_event_oneof(self) -> None:
        """Every EventKind is carried by a GraphEvent oneof field and every
        oneof field has an EventKind."""
        oneof = graph_events_pb2.GraphEvent.DESCRIPTOR.oneofs_by_name["kind"]
        fields = {f.name for f in oneof.fields}
        assert {kind_field(k) for k in model.EventKind} == fields
        assert len(set(model.EventKind)) == len(fields)


class TestReasonEnums:
    @pytest.mark.parametrize(("enum", "descriptor"), STR_MIRRORS, ids=[e.__name__ for e, _ in STR_MIRRORS])
    def test_values_are_exactly_the_proto_names(self, enum: type[Enum], descriptor: EnumDescriptor) -> None:
        """Every Python member's value is a proto value name, and every proto
        value except *_UNSPECIFIED has a Python member."""
        proto = {v.name for v in descriptor.values if v.number != 0}
        python = {m.value for m in enum}
        assert python - proto == set(), f"{enum.__name__} members missing from {descriptor.full_name}"
        assert proto - python == set(), f"{descriptor.full_name} values missing from {enum.__name__}"

    @pytest.mark.parametrize(("enum", "descriptor"), STR_MIRRORS, ids=[e.__name__ for e, _ in STR_MIRRORS])
    def test_member_names_follow_the_values(self, enum: type[Enum], descriptor: EnumDescriptor) -> None:
        """FilterReason.BLOCKED is "FILTER_REASON_BLOCKED": the member name is
        the proto name without the enum's prefix."""
        prefix = _prefix(descriptor)
        for member in enum:
            assert member.value == prefix + member.name
