"""Strict base64url and JSON decoding shared by the JWS and JWK parsers."""

from __future__ import annotations

import base64
import binascii
import json
import re
import sys
from array import array
from collections.abc import Callable
from itertools import accumulate
from typing import Any, NoReturn

# With 2 or 3 characters in the last quantum, the unused low bits of the last character must be 0.
_LAST_CHAR_OK = {2: frozenset("AQgw"), 3: frozenset("AEIMQUYcgkosw048")}

if sys.version_info >= (3, 11):
    _PAD_BYTES = (b"", b"", b"==", b"=")
    # base64url -> the alphabet binascii decodes; "+", "/" and "=" (not base64url) become "*",
    # which strict mode refuses like every other byte outside the alphabet.
    _TO_STANDARD = bytes.maketrans(b"-_+/=", b"+/***")
    _a2b = binascii.a2b_base64

    def b64url_decode(segment: str) -> bytes:
        """Decode canonical unpadded base64url; raise ``ValueError`` on anything else."""
        rem = len(segment) % 4
        if rem == 1:
            raise ValueError("not canonical base64url")
        try:
            data = segment.encode("ascii").translate(_TO_STANDARD) + _PAD_BYTES[rem]
            raw = _a2b(data, strict_mode=True)
        except (binascii.Error, UnicodeEncodeError):
            raise ValueError("not canonical base64url") from None
        if rem and segment[-1] not in _LAST_CHAR_OK[rem]:
            raise ValueError("non-zero trailing bits in base64url")
        return raw

    def b64url_decode_jws(
        token: str, header: str, payload: str, signature: str
    ) -> tuple[bytes, bytes, bytes, bytes] | None:
        """``b64url_decode`` of each segment of the compact JWS ``token`` (``header``,
        ``payload`` and ``signature``: its three dot-separated segments) and its signing input
        (the ASCII bytes of ``header.payload``), with one encoding and one translation of the
        whole token instead of one per segment.

        ``None`` exactly when ``b64url_decode`` refuses a segment: call it to learn which, and
        why. (A segment of ``4n + 1`` characters is refused by ``a2b_base64`` itself.)
        """
        h, p, s = len(header) % 4, len(payload) % 4, len(signature) % 4
        if (
            (h > 1 and header[-1] not in _LAST_CHAR_OK[h])
            or (p > 1 and payload[-1] not in _LAST_CHAR_OK[p])
            or (s > 1 and signature[-1] not in _LAST_CHAR_OK[s])
        ):
            return None
        start = len(header) + 1  # of the payload
        end = start + len(payload)  # the second dot
        try:
            raw = token.encode("ascii")
            std = raw.translate(_TO_STANDARD)  # the dots stay dots, sliced off below
            return (
                _a2b(std[: start - 1] + _PAD_BYTES[h], strict_mode=True),
                _a2b(std[start:end] + _PAD_BYTES[p], strict_mode=True),
                _a2b(std[end + 1 :] + _PAD_BYTES[s], strict_mode=True),
                raw[:end],
            )
        except (binascii.Error, UnicodeEncodeError):
            return None

else:  # pragma: no cover - Python 3.10 has no strict_mode; a regex checks the alphabet
    _B64URL = re.compile(r"[A-Za-z0-9_-]*\Z").match
    _PAD = ("", "", "==", "=")

    def b64url_decode(segment: str) -> bytes:
        """Decode canonical unpadded base64url; raise ``ValueError`` on anything else."""
        rem = len(segment) % 4
        if rem == 1 or _B64URL(segment) is None:
            raise ValueError("not canonical base64url")
        if rem and segment[-1] not in _LAST_CHAR_OK[rem]:
            raise ValueError("non-zero trailing bits in base64url")
        return base64.urlsafe_b64decode(segment + _PAD[rem])

    def b64url_decode_jws(
        token: str, header: str, payload: str, signature: str
    ) -> tuple[bytes, bytes, bytes, bytes] | None:
        """See the Python 3.11 version: here, one ``b64url_decode`` per segment."""
        try:
            return (
                b64url_decode(header),
                b64url_decode(payload),
                b64url_decode(signature),
                token[: len(header) + 1 + len(payload)].encode("ascii"),
            )
        except ValueError:
            return None


def b64url_encode(data: bytes) -> str:
    """Encode bytes as unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_uint(value: int, size: int | None = None) -> str:
    """RFC 7518 Base64urlUInt: big-endian in ``size`` bytes, or the fewest bytes (at least 1)."""
    if size is None:
        size = max(1, (value.bit_length() + 7) // 8)
    return b64url_encode(value.to_bytes(size, "big"))


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate member name")
    return obj


_decoder = json.JSONDecoder(object_pairs_hook=_unique_object, parse_constant=_reject_constant)
# What JSONDecoder.raw_decode calls, without its Python frame (set in __init__, not in the stubs).
_scan_once: Callable[[str, int], tuple[Any, int]] = _decoder.scan_once  # type: ignore[attr-defined]
_JSONDecodeError = json.JSONDecodeError
_WHITESPACE = " \t\n\r"  # JSON's whitespace (RFC 8259 section 2)

MAX_DEPTH = 32
"""Deepest JSON nesting accepted (the outer object is level 1): ``{"a": {"b": [1]}}`` is 3 deep.

Real tokens and key sets nest 2 to 5 levels; the bound is checked on the raw bytes before the
parser runs, so no parser, freezer or serialiser of jwt_guard ever recurses deeper than this."""

# A JSON string literal (quotes and escapes included), and the bracket bytes as +1 / -1.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")
_BRACKET_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")


def _check_depth(data: bytes) -> None:
    """Raise ``ValueError`` if JSON ``data`` nests deeper than ``MAX_DEPTH``.

    An upper bound of the depth the parser would reach, in C-speed passes: the string literals
    are dropped and the running sum of the brackets left gives the depth. Bytes are enough: a
    UTF-8 multi-byte character never holds an ASCII byte. (``loads_object`` calls this only when
    ``data`` holds more than ``MAX_DEPTH`` opening brackets, strings included: a token's few
    brackets cost two ``bytes.count`` calls.)
    """
    steps = _STRING.sub(b"", data).translate(_BRACKET_STEPS, _NOT_BRACKETS)
    if max(accumulate(array("b", steps)), default=0) > MAX_DEPTH:
        raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels")


def loads_object(data: bytes) -> dict[str, Any]:
    """Parse UTF-8 JSON that must be an object without duplicate names, NaN or Infinity.

    Raises ``ValueError`` for every bad input, including nesting deeper than ``MAX_DEPTH``
    (refused before the parser runs, so nothing downstream can recurse without bound).
    """
    return loads_counted(data)[0]


def loads_counted(data: bytes) -> tuple[dict[str, Any], int]:
    """:func:`loads_object`, and the number of ``{`` and ``[`` bytes in ``data``.

    The count is a by-product of the depth check. It is 1 when the object holds no nested
    object or array (each would need a ``{`` or ``[`` of its own), whatever its strings hold:
    the verifier then knows, without walking the claims, that no value needs freezing.
    """
    brackets = data.count(b"{") + data.count(b"[")
    if brackets > MAX_DEPTH:  # else it cannot be too deep
        _check_depth(data)
    try:
        text = data.decode("utf-8")
        # What JSONDecoder.decode does, without its two regex calls and raw_decode's frame.
        start = 0 if text[:1] == "{" else len(text) - len(text.lstrip(_WHITESPACE))
        try:
            obj, end = _scan_once(text, start)
        except StopIteration as err:
            raise _JSONDecodeError("Expecting value", text, err.value) from None
        if end != len(text) and text[end:].lstrip(_WHITESPACE):
            raise ValueError("extra data after the JSON value")
    except RecursionError as exc:  # pragma: no cover - _check_depth bounds the nesting first
        raise ValueError("JSON nested too deeply") from exc
    if type(obj) is not dict:
        raise ValueError("JSON value is not an object")
    return obj, brackets
