"""Strict base64url and JSON: one accepted spelling for each value, ValueError for the rest."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jwt_guard._codec import (
    MAX_DEPTH,
    b64url_decode,
    b64url_decode_jws,
    b64url_encode,
    loads_counted,
    loads_object,
)

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@pytest.mark.parametrize(
    ("data", "encoded"),
    [
        pytest.param(b"", "", id="empty"),
        pytest.param(b"f", "Zg", id="one-byte"),
        pytest.param(b"fo", "Zm8", id="two-bytes"),
        pytest.param(b"foo", "Zm9v", id="three-bytes"),
        pytest.param(b"\xfb\xff", "-_8", id="url-alphabet"),
        pytest.param(b'{"alg":"HS256"}', "eyJhbGciOiJIUzI1NiJ9", id="jose-header"),
    ],
)
def test_b64url_round_trip(data: bytes, encoded: str) -> None:
    assert b64url_encode(data) == encoded
    assert b64url_decode(encoded) == data


@pytest.mark.parametrize(
    "segment",
    [
        pytest.param("Zg==", id="padding"),
        pytest.param("Zg=", id="partial-padding"),
        pytest.param("Zm9v=", id="padding-on-full-quantum"),
        pytest.param("+_8", id="plus"),
        pytest.param("-/8", id="slash"),
        pytest.param(" Zm9v", id="leading-space"),
        pytest.param("Zm9v\n", id="trailing-newline"),
        pytest.param("Zm\t9v", id="inner-tab"),
        pytest.param("Zm9vY", id="impossible-length"),
        pytest.param("Zh", id="trailing-bits-2"),
        pytest.param("Zm9", id="trailing-bits-3"),
        pytest.param("Zm9v\u00e9", id="non-ascii"),
        pytest.param("Zm9v.", id="dot"),
    ],
)
def test_b64url_rejects_non_canonical(segment: str) -> None:
    with pytest.raises(ValueError, match="base64url"):
        b64url_decode(segment)


@pytest.mark.parametrize("length", [1, 2], ids=["two-char-tail", "three-char-tail"])
def test_only_the_zero_padding_bits_spelling_decodes(length: int) -> None:
    data = bytes(range(200, 200 + length))
    canonical = b64url_encode(data)
    accepted = [c for c in _ALPHABET if _decodes(canonical[:-1] + c)]
    # Lenient decoders accept several last characters for the same bytes; exactly one is canonical.
    same_bytes = [
        c for c in _ALPHABET if base64.urlsafe_b64decode(canonical[:-1] + c + "==") == data
    ]
    assert len(same_bytes) > 1
    assert canonical[-1] in accepted
    assert [c for c in accepted if c in same_bytes] == [canonical[-1]]


def _decodes(segment: str) -> bool:
    try:
        b64url_decode(segment)
    except ValueError:
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=_ALPHABET + "=+/ ", max_size=12))
def test_decoding_is_injective(segment: str) -> None:
    # Canonical: whatever decodes re-encodes to exactly the same text.
    try:
        data = b64url_decode(segment)
    except ValueError:
        return
    assert b64url_encode(data) == segment


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_encode_decode_round_trip(data: bytes) -> None:
    assert b64url_decode(b64url_encode(data)) == data


def test_loads_object_returns_the_object() -> None:
    assert loads_object(b'{"a": [1, {"b": null}], "c": "\\u00e9"}') == {
        "a": [1, {"b": None}],
        "c": "\u00e9",
    }


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"[]", id="array"),
        pytest.param(b'"text"', id="string"),
        pytest.param(b"1", id="number"),
        pytest.param(b"null", id="null"),
        pytest.param(b"true", id="boolean"),
        pytest.param(b"", id="empty"),
        pytest.param(b"{", id="truncated"),
        pytest.param(b'{"a":1} {"b":2}', id="two-values"),
        pytest.param(b'{"a":1,"a":2}', id="duplicate-name"),
        pytest.param(b'{"a":{"b":1,"b":1}}', id="nested-duplicate-name"),
        pytest.param(b'{"a":NaN}', id="nan"),
        pytest.param(b'{"a":Infinity}', id="infinity"),
        pytest.param(b'{"a":-Infinity}', id="minus-infinity"),
        pytest.param(b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}", id="deep-nesting"),
        pytest.param(b'{"a":' + b"9" * 5000 + b"}", id="huge-integer-literal"),
        pytest.param(b'{"a":"\xff"}', id="invalid-utf8"),
        pytest.param(b"\xef\xbb\xbf{}", id="utf8-bom"),
    ],
)
def test_loads_object_rejects_with_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the contract is "ValueError, nothing else"
        loads_object(data)


def test_loads_object_keeps_out_of_range_floats_for_the_claim_rules() -> None:
    # 1e400 is a valid JSON number; it parses to inf and the claim rules refuse it.
    assert loads_object(b'{"exp":1e400}') == {"exp": float("inf")}


# -- nesting depth -----------------------------------------------------------------------------


def _nested(depth: int, pattern: str) -> bytes:
    """A JSON object ``depth`` levels deep (the outer object is level 1), cycling ``pattern``."""
    opens = [("{" if pattern[i % len(pattern)] == "o" else "[") for i in range(depth - 1)]
    inner = "".join('{"k":' if o == "{" else "[" for o in opens)
    outer = "".join("}" if o == "{" else "]" for o in reversed(opens))
    return ('{"a":' + inner + "1" + outer + "}").encode()


@pytest.mark.parametrize("pattern", ["a", "o", "ao"], ids=["arrays", "objects", "mixed"])
def test_nesting_up_to_max_depth_is_accepted_one_more_is_refused(pattern: str) -> None:
    assert loads_object(_nested(MAX_DEPTH, pattern))
    with pytest.raises(ValueError, match=f"nested deeper than {MAX_DEPTH} levels"):
        loads_object(_nested(MAX_DEPTH + 1, pattern))


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 500, 990, 100_000])
def test_deep_nesting_is_refused_before_the_parser_recurses(depth: int) -> None:
    # The message is the depth check's, not the parser's RecursionError turned into ValueError:
    # 500 levels parse fine in C and then made Claims._freeze (Python) recurse out of stack.
    with pytest.raises(ValueError, match=f"nested deeper than {MAX_DEPTH} levels"):
        loads_object(_nested(depth, "ao"))


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    # Escaped quotes and escaped backslashes decide where a string ends.
    text = '{"a":"' + "[{" * 500 + '","b":"\\"' + "[" * 40 + '","c":["x\\\\","' + "{" * 40 + '"]}'
    parsed = loads_object(text.encode())
    assert parsed["a"] == "[{" * 500
    assert parsed["b"] == '"' + "[" * 40
    assert parsed["c"] == ["x\\", "{" * 40]


def test_many_shallow_containers_are_not_deep() -> None:
    wide = b'{"a":[' + b",".join([b"{}", b"[]", b'{"b":[1]}'] * 1000) + b"]}"
    assert len(loads_object(wide)["a"]) == 3000


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


_tricky_text = st.text(alphabet='[]{}"\\ab\u00e9\U0001f600', max_size=6)
_values = st.recursive(
    st.none() | st.integers() | _tricky_text,
    lambda children: (
        st.lists(children, max_size=2) | st.dictionaries(_tricky_text, children, max_size=2)
    ),
    max_leaves=60,
)


@settings(max_examples=300, deadline=None)
@given(value=_values, depth=st.integers(min_value=0, max_value=2 * MAX_DEPTH))
def test_the_depth_check_agrees_with_the_real_depth(value: Any, depth: int) -> None:
    for _ in range(depth):
        value = [value]
    document = {"v": value}
    data = json.dumps(document, ensure_ascii=False).encode()
    if _depth(document) <= MAX_DEPTH:
        assert loads_object(data) == document
    else:
        with pytest.raises(ValueError, match="nested deeper"):
            loads_object(data)


# -- the verifier's fast paths agree with the plain functions -----------------------------------

_segment = st.text(alphabet=_ALPHABET + "=+/ .\u00e9", max_size=9) | st.sampled_from(
    ["Zg", "Zh", "Zm9", "Zm8", "Zm9vY", "", "eyJhIjoxfQ"]
)


@settings(max_examples=500, deadline=None)
@given(header=_segment, payload=_segment, signature=_segment)
def test_decoding_a_whole_token_agrees_with_decoding_each_segment(
    header: str, payload: str, signature: str
) -> None:
    # The verifier decodes the three segments with one encode and one translation of the token;
    # it must accept exactly what b64url_decode accepts, segment by segment, and nothing else.
    try:
        expected: tuple[bytes, ...] | None = (
            b64url_decode(header),
            b64url_decode(payload),
            b64url_decode(signature),
            f"{header}.{payload}".encode("ascii"),
        )
    except ValueError:
        expected = None
    assert b64url_decode_jws(f"{header}.{payload}.{signature}", header, payload, signature) == (
        expected
    )


@pytest.mark.parametrize(
    ("data", "brackets"),
    [
        pytest.param(b"{}", 1, id="empty"),
        pytest.param(b'{"a":1,"b":"x"}', 1, id="flat"),
        pytest.param(b'{"a":"{[}]"}', 3, id="brackets-in-a-string"),
        pytest.param(b'{"a":[1,{"b":[]}]}', 4, id="nested"),
    ],
)
def test_loads_counted_counts_every_opening_bracket(data: bytes, brackets: int) -> None:
    # 1 means no nested object or array (the verifier then skips freezing and byte counting);
    # brackets inside strings count too, so the count errs high, never low.
    assert loads_counted(data) == (loads_object(data), brackets)
