"""Batch replies assembled from stored wire forms parse as the messages protobuf would build."""

from __future__ import annotations

import pytest

from idverify.flows.accounts import StoredLocation
from idverify.services.location_wire import encode_batch_reply, encode_location, location_to_proto
from idverify.v1 import account_pb2, common_pb2

GUANGDONG = StoredLocation("广东", "Guangdong", "CN", "CN-GD", "GeoLite2-City", "2019-12-24", 0)
UNKNOWN = StoredLocation("未知", "Unknown", "", "", "GeoLite2-City", "2019-12-24", 0)
LONG = StoredLocation("长" * 60, "L" * 300, "XX", "", "s" * 20000, "2026-01-01", 0)


def expected(
    found: dict[str, common_pb2.IpLocation], unknown: list[str]
) -> account_pb2.GetIpLocationsResponse:
    reply = account_pb2.GetIpLocationsResponse(unknown_account_ids=unknown)
    for account_id, location in found.items():
        reply.locations[account_id].CopyFrom(location)
    return reply


class TestEncodeBatchReply:
    @pytest.mark.parametrize(
        ("found", "unknown"),
        [
            ({}, []),
            ({"a": GUANGDONG}, []),
            ({}, ["x", "y"]),
            ({"a": GUANGDONG, "账户-二": UNKNOWN, "c" * 200: LONG}, ["nobody", "无人" * 100]),
        ],
    )
    def test_parses_as_the_message_protobuf_builds(
        self, found: dict[str, StoredLocation], unknown: list[str]
    ) -> None:
        """Entries, unknown ids, non-ASCII ids and lengths of one, two and three varint bytes."""
        wire = encode_batch_reply([(a, encode_location(loc)) for a, loc in found.items()], unknown)
        parsed = account_pb2.GetIpLocationsResponse.FromString(wire.wire)
        assert parsed == expected({a: location_to_proto(loc) for a, loc in found.items()}, unknown)

    def test_empty_fields_are_left_out_as_protobuf_leaves_them(self) -> None:
        """A location's wire form is protobuf's own, so empty fields cost nothing."""
        assert encode_location(UNKNOWN) == location_to_proto(UNKNOWN).SerializeToString()
        assert b"CN-" not in encode_location(UNKNOWN)

    def test_entries_on_either_side_of_the_one_byte_length(self) -> None:
        """Entries of 124 to 131 bytes: the short form up to 127, varint lengths from 128."""
        location = encode_location(GUANGDONG)
        for entry_size in range(124, 132):
            account_id = "k" * (entry_size - len(location) - 4)
            wire = encode_batch_reply([(account_id, location)], []).wire

            assert (
                wire[1] == entry_size
                if entry_size < 128
                else wire[1:3] == bytes((entry_size & 0x7F | 0x80, 1))
            )
            parsed = account_pb2.GetIpLocationsResponse.FromString(wire)
            assert parsed == expected({account_id: location_to_proto(GUANGDONG)}, [])
