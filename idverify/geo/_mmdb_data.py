"""Reads the few fields the display policy needs straight from an mmdb file's data section.

Decoding a whole GeoIP2 City record (eight languages of city, continent and country names)
costs far more than the answer needs; this reader skips what it does not need and decodes
each shared country or subdivision entry once, so that a whole file can be indexed at load.
The format is the MaxMind DB specification, version 2.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from idverify.geo.provider import SUBDIVIDED_COUNTRIES, GeoDatabaseError, RawGeo

__all__ = ["DataSection"]

_POINTER, _STRING, _DOUBLE, _BYTES, _UINT16, _UINT32, _MAP, _INT32 = 1, 2, 3, 4, 5, 6, 7, 8
_UINT64, _UINT128, _ARRAY, _BOOLEAN, _FLOAT = 9, 10, 11, 14, 15
# Added to a pointer's value by its size in bytes (the format's way of widening each size).
_POINTER_BIAS = (0, 2048, 526336, 0)
_WIDEST_POINTER = 3
_SIZE_FOLLOWS = 29
_SIZE_BIAS = (29, 285, 65821)
_INT32_BYTES = 4
_NO_PLACE = ("", "", "")
# Nesting deeper than this only happens in corrupt or hostile files.
_MAX_DEPTH = 64


class DataSection:
    """The data section of an mmdb file held in memory.

    Args:
        buffer: the whole file.
        start: where the data section begins (search tree size + 16).
        end: where it ends (the metadata marker).
    """

    def __init__(self, buffer: bytes, start: int, end: int) -> None:
        self._buffer = buffer
        self._start = start
        self._end = end
        self._keys: dict[int, str] = {}
        self._keys_by_encoding: dict[bytes, str] = {}
        self._places: dict[int, tuple[str, str, str]] = {}
        self._geos: dict[tuple[tuple[str, str, str], tuple[str, str, str]], RawGeo] = {}

    def raw_geo(self, offset: int) -> RawGeo | None:
        """The country, and for ``SUBDIVIDED_COUNTRIES`` the first subdivision, of a record.

        Equal answers come back as the same object, so callers may compare them with ``is``.

        Args:
            offset: the record's offset in the data section.

        Raises:
            GeoDatabaseError: the record is corrupt.
        """
        if not 0 <= offset < self._end - self._start:
            raise GeoDatabaseError(f"search tree points outside the data section (offset {offset})")
        try:
            return self._raw_geo(self._start + offset)
        except (IndexError, ValueError, UnicodeDecodeError, struct.error, RecursionError) as error:
            raise GeoDatabaseError(f"corrupt data record at offset {offset}: {error}") from error

    def _raw_geo(self, position: int) -> RawGeo | None:  # noqa: C901 - one loop, inlined: it runs per record at load
        buffer = self._buffer
        kind, size, position = self._header(self._follow(position))
        if kind != _MAP:
            return None
        keys = self._keys_by_encoding
        country = subdivision = _NO_PLACE
        for _ in range(size):
            control = buffer[position]
            if control >> 5 == _POINTER:
                # Keys are nearly always pointers to one shared string: cache by the pointer's bytes.
                end = position + 2 + ((control >> 3) & 0x3)
                encoded = buffer[position:end]
                key = keys.get(encoded)
                if key is None:
                    key = keys[encoded] = self._key(position)[0]
                position = end
            else:
                key, position = self._key(position)
            if key == "country":
                country = self._place(self._follow(position))
                if country[0].upper() not in SUBDIVIDED_COUNTRIES:
                    subdivision = _NO_PLACE
                    break
            elif key == "subdivisions":
                subdivision = self._first_place(self._follow(position))
            control = buffer[position]
            if control >> 5 == _POINTER:
                position += 2 + ((control >> 3) & 0x3)
            else:
                position = self._skip(position, 0)
        if country is _NO_PLACE and subdivision is _NO_PLACE:
            return None
        pair = (country, subdivision)
        geo = self._geos.get(pair)
        if geo is None:
            geo = self._geos[pair] = RawGeo(country[0].upper(), country[1], country[2], *subdivision)
        return geo

    def _first_place(self, position: int) -> tuple[str, str, str]:
        kind, size, position = self._header(position)
        if kind != _ARRAY or size == 0:
            return _NO_PLACE
        return self._place(self._follow(position))

    def _place(self, position: int) -> tuple[str, str, str]:
        """(iso_code, zh-CN name, en name) of a country or subdivision map, cached by position."""
        place = self._places.get(position)
        if place is None:
            value, _ = self._decode(position, 0)
            place = _NO_PLACE
            if isinstance(value, dict):
                names = value.get("names")
                names = names if isinstance(names, dict) else {}
                place = (_text(value.get("iso_code")), _text(names.get("zh-CN")), _text(names.get("en")))
            self._places[position] = place
        return place

    def _key(self, position: int) -> tuple[str, int]:
        """A map key (a string, often behind a pointer) and the position after it."""
        buffer = self._buffer
        control = buffer[position]
        if control >> 5 == _POINTER:
            target, after = self._pointer(control, position)
            key = self._keys.get(target)
            if key is None:
                kind, size, start = self._header(target)
                if kind != _STRING:
                    raise ValueError("map key is not a string")
                key = self._keys[target] = buffer[start : start + size].decode()
            return key, after
        kind, size, start = self._header(position)
        if kind != _STRING:
            raise ValueError("map key is not a string")
        return buffer[start : start + size].decode(), start + size

    def _pointer(self, control: int, position: int) -> tuple[int, int]:
        """Target (absolute) of the pointer at ``position`` and the position after it."""
        size = (control >> 3) & 0x3
        raw = self._buffer[position + 1 : position + 2 + size]
        value = int.from_bytes(raw, "big")
        if size < _WIDEST_POINTER:
            value |= (control & 0x7) << (8 * (size + 1))
        target = self._start + value + _POINTER_BIAS[size]
        if len(raw) != size + 1 or target >= self._end:
            raise ValueError("pointer out of the data section")
        return target, position + 2 + size

    def _follow(self, position: int) -> int:
        control = self._buffer[position]
        if control >> 5 == _POINTER:
            return self._pointer(control, position)[0]
        return position

    def _header(self, position: int) -> tuple[int, int, int]:
        """(type, size, payload position) of the value at ``position``."""
        buffer = self._buffer
        control = buffer[position]
        position += 1
        kind = control >> 5
        if kind == 0:
            kind = 7 + buffer[position]
            position += 1
        size = control & 0x1F
        if size >= _SIZE_FOLLOWS and kind != _POINTER:
            # Sizes 29, 30 and 31 say that 1, 2 or 3 more bytes hold the size.
            width = size - _SIZE_FOLLOWS + 1
            extra = int.from_bytes(buffer[position : position + width], "big")
            size = _SIZE_BIAS[width - 1] + extra
            position += width
        if position > self._end:
            raise ValueError("value header runs past the data section")
        return kind, size, position

    def _skip(self, position: int, depth: int) -> int:
        """The position just after the value at ``position``."""
        control = self._buffer[position]
        if control >> 5 == _POINTER:
            return position + 2 + ((control >> 3) & 0x3)
        if depth > _MAX_DEPTH:
            raise ValueError("values nested too deeply")
        kind, size, position = self._header(position)
        if kind == _MAP:
            for _ in range(2 * size):
                position = self._skip(position, depth + 1)
            return position
        if kind == _ARRAY:
            for _ in range(size):
                position = self._skip(position, depth + 1)
            return position
        if kind == _BOOLEAN:
            return position
        return position + size

    def _decode(self, position: int, depth: int) -> tuple[Any, int]:
        """The value at ``position`` (numbers and strings as Python values) and the position after it."""
        if depth > _MAX_DEPTH:
            raise ValueError("values nested too deeply")
        buffer = self._buffer
        control = buffer[position]
        if control >> 5 == _POINTER:
            target, after = self._pointer(control, position)
            return self._decode(target, depth + 1)[0], after
        kind, size, position = self._header(position)
        end = position + size
        if kind == _MAP:
            result: dict[str, Any] = {}
            for _ in range(size):
                key, position = self._key(position)
                result[key], position = self._decode(position, depth + 1)
            return result, position
        if kind == _ARRAY:
            items = []
            for _ in range(size):
                item, position = self._decode(position, depth + 1)
                items.append(item)
            return items, position
        if kind == _BOOLEAN:
            return bool(size), position
        scalar = _SCALARS.get(kind)
        if scalar is None:
            raise ValueError(f"unknown data type {kind}")
        return scalar(buffer[position:end]), end


def _int32(payload: bytes) -> int:
    # Shorter encodings of an int32 are always non-negative.
    return int.from_bytes(payload, "big", signed=len(payload) == _INT32_BYTES)


def _unsigned(payload: bytes) -> int:
    return int.from_bytes(payload, "big")


_SCALARS: dict[int, Callable[[bytes], Any]] = {
    _STRING: bytes.decode,
    _UINT16: _unsigned,
    _UINT32: _unsigned,
    _UINT64: _unsigned,
    _UINT128: _unsigned,
    _INT32: _int32,
    _DOUBLE: lambda payload: struct.unpack(">d", payload)[0],
    _FLOAT: lambda payload: struct.unpack(">f", payload)[0],
    _BYTES: bytes,
}


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""
