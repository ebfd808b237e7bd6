"""IP locations in wire form: stored once at login, copied as they are into batch replies.

A timeline asks for the labels of hundreds of accounts at once. Building a protobuf message per
account and serializing the reply cost several times the lookups themselves, so each account keeps
its label as the encoded ``idverify.v1.IpLocation`` it was recorded with, and a
``GetIpLocationsResponse`` is assembled from those bytes by the few lines of wire format below.
"""

from __future__ import annotations

from collections.abc import Sequence

from idverify.flows.accounts import Located
from idverify.protobuf_wire import ONE_BYTE_LIMIT, length_delimited
from idverify.services.grpc_types import EncodedReply
from idverify.v1 import common_pb2

# GetIpLocationsResponse: map<string, IpLocation> locations = 1; repeated string unknown = 2.
# A map entry is a message of key = 1 and value = 2. All of them are length-delimited (type 2).
_LOCATIONS_TAG = b"\x0a"
_UNKNOWN_TAG = b"\x12"
_ENTRY_KEY_TAG = b"\x0a"
_ENTRY_VALUE_TAG = b"\x12"
# An entry whose lengths all fit in one-byte varints (below 128: every realistic one) is
# written by one formatting: tag, entry length, key tag, key length, key, value tag, length, value.
_SHORT_ENTRY = _LOCATIONS_TAG + b"%c" + _ENTRY_KEY_TAG + b"%c%b" + _ENTRY_VALUE_TAG + b"%c%b"
_ENTRY_TAGS_AND_LENGTHS = 4  # key tag, key length, value tag, value length inside the entry


def location_to_proto(location: Located) -> common_pb2.IpLocation:
    """The message of a display location."""
    return common_pb2.IpLocation(
        display=location.display,
        display_en=location.display_en,
        country_code=location.country_code,
        region_code=location.region_code,
        source=location.source,
        source_build_date=location.source_build_date,
    )


def encode_location(location: Located) -> bytes:
    """The ``IpLocation`` message of a display location, serialized."""
    message: bytes = location_to_proto(location).SerializeToString()
    return message


def encode_batch_reply(found: Sequence[tuple[str, bytes]], unknown: Sequence[str]) -> EncodedReply:
    """A serialized ``GetIpLocationsResponse`` of (account id, encoded location) pairs.

    Args:
        found: account ids with the ``IpLocation`` bytes of :func:`encode_location`; unique ids.
        unknown: account ids with no stored label.
    """
    parts: list[bytes] = []
    for account_id, location in found:
        key = account_id.encode()
        size = len(key) + len(location) + _ENTRY_TAGS_AND_LENGTHS
        if size < ONE_BYTE_LIMIT:
            parts.append(_SHORT_ENTRY % (size, len(key), key, len(location), location))
        else:
            entry = length_delimited(_ENTRY_KEY_TAG, key) + length_delimited(_ENTRY_VALUE_TAG, location)
            parts.append(length_delimited(_LOCATIONS_TAG, entry))
    parts += [length_delimited(_UNKNOWN_TAG, account_id.encode()) for account_id in unknown]
    return EncodedReply(b"".join(parts))
