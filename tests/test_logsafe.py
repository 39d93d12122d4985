"""``jwt_guard._logsafe.safe``: every log field holding outside bytes goes through it."""

from __future__ import annotations

import pytest

from jwt_guard._logsafe import safe

CONTROLS = [chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)]] + [
    "\u2028",
    "\u2029",
    "\u202e",
    "\u2066",
    "\u200b",
    "\ufeff",
]


@pytest.mark.parametrize("ch", CONTROLS, ids=[f"U+{ord(c):04X}" for c in CONTROLS])
def test_every_control_character_is_escaped(ch: str) -> None:
    out = safe(f"a{ch}b")
    assert ch not in out
    assert out.isprintable()
    assert out.startswith("a\\")
    assert out.endswith("b")


def test_backslash_is_escaped_so_an_escape_cannot_be_faked() -> None:
    assert safe("\\x0a") == "\\\\x0a"
    assert safe("\n") != safe("\\x0a")


def test_plain_text_passes_unchanged() -> None:
    assert safe("https://issuer.example/jwks.json kid=rs-1") == (
        "https://issuer.example/jwks.json kid=rs-1"
    )


def test_none_is_a_dash_and_other_objects_are_formatted() -> None:
    assert safe(None) == "-"
    assert safe(ValueError("bad\r\nline")) == "bad\\x0d\\x0aline"


def test_long_values_are_cut() -> None:
    out = safe("x" * 10_000)
    assert len(out) <= 203
    assert out.endswith("...")
