"""``jwt-guard inspect``: decode a token without verifying it, and say what a verifier would refuse.

Nothing here trusts the token: it is decoded leniently so that even a broken token can be looked
at, and every deviation from what :class:`~jwt_guard.TokenVerifier` accepts by default becomes a
warning.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .._codec import b64url_decode, loads_object
from ..core.jws import DEFAULT_MAX_TOKEN_SIZE, MAX_KID_LENGTH, check_header, normalize_typ
from ..errors import UnsupportedHeader
from ..keys.algorithms import ALGORITHMS

__all__ = ["Expected", "Inspection", "inspect_token", "relative", "render"]

_DEFAULT_LEEWAY = 60.0
_KEY_HEADERS = ("jku", "x5u", "jwk", "x5c")
_PHRASES = {
    ("exp", True): "expired {} ago",
    ("exp", False): "expires in {}",
    ("nbf", True): "valid since {} ago",
    ("nbf", False): "not valid for another {}",
    ("iat", True): "issued {} ago",
    ("iat", False): "issued {} in the future",
}


@dataclass
class Inspection:
    """What a token says about itself, unverified."""

    header: dict[str, Any]
    claims: dict[str, Any] | None
    times: dict[str, dict[str, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The inspection as one JSON-ready object (``verified`` is always false)."""
        return {
            "header": self.header,
            "claims": self.claims,
            "times": self.times,
            "warnings": self.warnings,
            "verified": False,
        }


def _lenient_b64(segment: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not base64url: {exc}") from None


def _decode(segment: str, name: str, warnings: list[str]) -> Any:
    """Decode one JSON segment leniently, recording what the strict parser would refuse."""
    try:
        b64url_decode(segment)
    except ValueError as exc:
        warnings.append(f"{name}: {exc} (a verifier refuses the token as malformed)")
    raw = _lenient_b64(segment.rstrip("="))
    try:
        loads_object(raw)
    except ValueError as exc:
        warnings.append(f"{name}: {exc} (a verifier refuses the token as malformed)")
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"the {name} is not JSON") from exc


def relative(seconds: float) -> str:
    """A duration for people: ``"45 s"``, ``"12 min"``, ``"3 h"``, ``"9 d"``."""
    seconds = abs(seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


def _time(name: str, value: Any, now: float) -> tuple[dict[str, Any] | None, str | None]:
    """``(time entry, warning)`` for a registered time claim."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None, f"claim {name!r} is not a finite JSON number: a verifier refuses it"
    try:
        utc = datetime.fromtimestamp(value, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None, f"claim {name!r} is not a representable time"
    delta = value - now
    phrase = _PHRASES[name, delta < 0].format(relative(delta))
    entry = {"value": value, "utc": utc.strftime("%Y-%m-%d %H:%M:%S UTC"), "relative": phrase}
    warning = None
    if name == "exp" and now >= value + _DEFAULT_LEEWAY:
        warning = f"the token expired {relative(delta)} ago"
    elif name == "nbf" and now < value - _DEFAULT_LEEWAY:
        warning = f"the token is not valid for another {relative(delta)}"
    elif name == "iat" and value > now + _DEFAULT_LEEWAY:
        warning = f"the token was issued {relative(delta)} in the future"
    if warning is not None:
        warning += f": a verifier refuses it (beyond the default {_DEFAULT_LEEWAY:.0f} s leeway)"
    return entry, warning


def _header_warnings(header: dict[str, Any], warnings: list[str]) -> None:
    alg = header.get("alg")
    if not isinstance(alg, str):
        warnings.append("header has no 'alg': a verifier refuses the token")
    elif alg.lower() == "none":
        warnings.append("alg 'none' (an unsigned token): a verifier always refuses it")
    elif alg not in ALGORITHMS:
        warnings.append(f"alg {alg!r} is not a supported algorithm: a verifier refuses it")
    elif alg.startswith("HS"):
        warnings.append(
            f"alg {alg} is symmetric: accepted only with a shared secret given as jwks= "
            "(a remote JWKS never supplies one unless allow_remote_oct)"
        )
    if "crit" in header and not (header["crit"] == ["b64"] and header.get("b64") is True):
        warnings.append("header has 'crit': a verifier refuses extensions it does not understand")
    if "b64" in header and header["b64"] is not True:
        warnings.append("header has 'b64: false' (unencoded payload): a verifier refuses it")
    for name in _KEY_HEADERS:
        if name in header:
            warnings.append(
                f"header has {name!r}: keys never come from the token; the verifier ignores it "
                "and uses only the issuer's JWKS (a token that relies on it will not verify)"
            )
    kid = header.get("kid")
    if kid is None:
        warnings.append("no 'kid': accepted only when the key set holds one key for this alg")
    elif not isinstance(kid, str) or len(kid) > MAX_KID_LENGTH:
        warnings.append("'kid' is not a string of reasonable length: a verifier refuses it")


def _claim_warnings(claims: dict[str, Any], now: float, result: Inspection) -> None:
    warnings = result.warnings
    for name in ("iat", "nbf", "exp"):
        if name in claims:
            entry, warning = _time(name, claims[name], now)
            if entry is not None:
                result.times[name] = entry
            if warning is not None:
                warnings.append(warning)
    if "exp" not in claims:
        warnings.append("no 'exp': a verifier refuses it (require_exp=True by default)")
    if not isinstance(claims.get("iss"), str):
        warnings.append("no string 'iss': a verifier refuses it (iss picks the trusted issuer)")
    aud = claims.get("aud")
    if aud is None:
        warnings.append("no 'aud': refused whenever an audience is configured")
    elif not isinstance(aud, str) and not (
        isinstance(aud, list) and all(isinstance(a, str) for a in aud)
    ):
        warnings.append("'aud' is neither a string nor a list of strings: a verifier refuses it")
    for name in ("sub", "jti"):
        if name in claims and not isinstance(claims[name], str):
            warnings.append(f"claim {name!r} is not a string: a verifier refuses it")


@dataclass(frozen=True)
class Expected:
    """What the user expects (``inspect --issuer/--audience/--typ``): compared with the token's
    values, each mismatch a warning that shows both (a trailing ``/`` is the classic trap)."""

    issuer: str | None = None
    audiences: Sequence[str] = ()
    typ: str | None = None


def _near(got: str, wanted: str) -> str:
    if got != wanted and got.rstrip("/") == wanted.rstrip("/"):
        return " (they differ only in a trailing '/': the match is exact)"
    if got != wanted and got.lower() == wanted.lower():
        return " (they differ only in case: the match is exact)"
    return ""


def _expected_warnings(
    header: dict[str, Any], claims: dict[str, Any] | None, expected: Expected, warnings: list[str]
) -> None:
    if expected.typ is not None:
        got = header.get("typ")
        try:  # the verifier's own typ rule (RFC 7515 4.1.9), nothing else of the header
            check_header({"alg": "RS256", "typ": got}, ("RS256",), normalize_typ(expected.typ))
        except UnsupportedHeader:
            hint = _near(got, expected.typ) if isinstance(got, str) else ""
            warnings.append(
                f"header 'typ' is {got!r}, not the expected {expected.typ!r}{hint}: "
                "a verifier refuses it"
            )
    if claims is None:
        return
    iss = claims.get("iss")
    if expected.issuer is not None and iss != expected.issuer:
        hint = _near(iss, expected.issuer) if isinstance(iss, str) else ""
        warnings.append(
            f"'iss' is {iss!r}, not the expected {expected.issuer!r}{hint}: a verifier refuses it"
        )
    aud = claims.get("aud")
    if expected.audiences:
        names = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if not set(expected.audiences) & {a for a in names if isinstance(a, str)}:
            hints = {_near(a, e) for a in names if isinstance(a, str) for e in expected.audiences}
            hint = next((h for h in sorted(hints) if h), "")
            wanted = ", ".join(repr(a) for a in expected.audiences)
            warnings.append(
                f"'aud' is {aud!r}, none of the expected {wanted}{hint}: a verifier refuses it"
            )


def inspect_token(token: str, now: float, expected: Expected | None = None) -> Inspection:
    """Decode ``token`` without verification; ``ValueError`` when it cannot be decoded at all.

    ``expected`` values are compared with the token's, each mismatch a warning naming both.
    """
    token = token.strip()
    if token[:7].lower() == "bearer ":
        token = token[7:].strip()
    warnings: list[str] = []
    if len(token) > DEFAULT_MAX_TOKEN_SIZE:
        warnings.append(
            f"the token has {len(token)} characters: over the default max_token_size "
            f"({DEFAULT_MAX_TOKEN_SIZE}), a verifier refuses it"
        )
    segments = token.split(".")
    if len(segments) == 5:
        header = _decode(segments[0], "header", warnings)
        warnings.append("five segments: an encrypted token (JWE); a verifier accepts only JWS")
        return Inspection(header if isinstance(header, dict) else {}, None, warnings=warnings)
    if len(segments) != 3:
        raise ValueError(f"not a JWT: {len(segments)} segment(s), expected 3 separated by '.'")
    header = _decode(segments[0], "header", warnings)
    claims = _decode(segments[1], "payload", warnings)
    if not isinstance(header, dict):
        raise ValueError("not a JWT: the header is not a JSON object")
    result = Inspection(header, None, warnings=warnings)
    _header_warnings(header, warnings)
    if not segments[2]:
        warnings.append("the signature is empty: a verifier refuses it")
    else:
        try:
            b64url_decode(segments[2])
        except ValueError as exc:
            warnings.append(f"signature: {exc} (a verifier refuses the token as malformed)")
    if isinstance(claims, dict):
        result.claims = claims
        _claim_warnings(claims, now, result)
    else:
        warnings.append("the payload is not a JSON object: a verifier refuses it")
    if expected is not None:
        _expected_warnings(header, result.claims, expected, warnings)
    return result


def render(result: Inspection) -> str:
    """The inspection as text for a terminal."""
    lines = ["header (not verified):", _indent(json.dumps(result.header, indent=2))]
    if result.claims is not None:
        lines += ["claims (not verified):", _indent(json.dumps(result.claims, indent=2))]
    if result.times:
        lines.append("times:")
        for name, entry in result.times.items():
            lines.append(f"  {name}  {entry['utc']}  ({entry['relative']})")
    if result.warnings:
        lines.append("warnings:")
        lines += [f"  ! {warning}" for warning in result.warnings]
    lines.append("signature: not checked (use `jwt-guard verify` for that)")
    return "\n".join(lines)


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())
