"""Compact JWS: strict parsing, header rules, and the signature check against a ``KeySet``.

Everything here runs before (parsing) or as (signature) the cryptographic check; nothing here
looks at claims. ``verify_jws`` is the public entry point for JWS that are not JWTs.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

from .._codec import b64url_decode, b64url_decode_jws, loads_counted
from .._logsafe import safe
from ..errors import (
    AlgorithmNotAllowed,
    BadSignature,
    ConfigurationError,
    EncryptedToken,
    MalformedToken,
    TokenTooLarge,
    UnsupportedHeader,
)
from ..keys.algorithms import ALGORITHMS
from ..keys.jwk import KeySet

__all__ = [
    "DEFAULT_MAX_TOKEN_SIZE",
    "ParsedJWS",
    "allowed_algorithms",
    "check_header",
    "check_signature",
    "parse",
    "verify_jws",
]

DEFAULT_MAX_TOKEN_SIZE = 8192
MAX_KID_LENGTH = 512


class ParsedJWS:
    """A compact JWS split and decoded, not yet verified."""

    __slots__ = ("header", "payload", "signature", "signing_input")

    def __init__(
        self, header: dict[str, Any], payload: bytes, signing_input: bytes, signature: bytes
    ) -> None:
        self.header = header
        self.payload = payload
        self.signing_input = signing_input
        self.signature = signature


def parse(token: Any, max_size: int = DEFAULT_MAX_TOKEN_SIZE) -> ParsedJWS:
    """Split and decode a compact JWS; raise ``MalformedToken`` (or a subclass) if it is not one."""
    return ParsedJWS(*_split_jws(token, max_size))


def _split_jws(token: Any, max_size: int) -> tuple[dict[str, Any], bytes, bytes, bytes]:
    """:func:`parse` as a plain tuple ``(header, payload, signing_input, signature)``, for the
    verifier (no object built per token)."""
    if isinstance(token, bytes):
        try:
            token = token.decode("ascii")
        except UnicodeDecodeError:
            raise MalformedToken("token is not ASCII") from None
    if not isinstance(token, str):
        raise MalformedToken(f"token must be a string, not {type(token).__name__}")
    if len(token) > max_size:
        raise TokenTooLarge(f"token of {len(token)} characters exceeds {max_size}")
    segments = token.split(".", 3)  # at most four pieces, whatever the token holds
    if len(segments) != 3:
        dots = token.count(".")
        if dots == 4:
            raise EncryptedToken("token has five segments (JWE)")
        raise MalformedToken(f"token has {dots + 1} segments, expected 3")
    header_seg, payload_seg, sig_seg = segments
    if not header_seg or not sig_seg:
        raise MalformedToken("token has an empty header or signature")
    decoded = b64url_decode_jws(token, header_seg, payload_seg, sig_seg)
    if decoded is not None:  # the common case: all three segments decode
        header_raw, payload, signature, signing_input = decoded
        try:
            header = loads_counted(header_raw)[0]
        except ValueError as exc:
            raise MalformedToken(f"token segment is malformed: {exc}") from None
        return header, payload, signing_input, signature
    # A segment does not decode: find the first bad one, in order, as the error names it.
    try:
        header = loads_counted(b64url_decode(header_seg))[0]
        payload = b64url_decode(payload_seg)
        signature = b64url_decode(sig_seg)
    except ValueError as exc:
        raise MalformedToken(f"token segment is malformed: {exc}") from None
    signing_input = token[: len(header_seg) + 1 + len(payload_seg)].encode("ascii")
    return header, payload, signing_input, signature


def check_header(
    header: Mapping[str, Any], allowed: Collection[str], typ: str | None = None
) -> tuple[str, str | None]:
    """Apply the header rules; return ``(alg, kid)``.

    ``alg`` must be allowlisted (``none`` never is); ``crit`` is refused unless it lists only
    ``b64`` with ``b64: true`` (RFC 7797's no-op); ``b64: false`` is refused; ``kid`` must be a
    short string; ``typ`` must match when required (``typ`` as :func:`normalize_typ` returns it).
    ``jku``, ``x5u``, ``jwk`` and ``x5c`` are ignored: keys never come from a token.
    """
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise AlgorithmNotAllowed("header has no string 'alg'")
    if alg not in allowed:
        raise AlgorithmNotAllowed(f"algorithm {alg[:20]!r} is not allowed")
    if "b64" in header and header["b64"] is not True:
        raise UnsupportedHeader("unencoded payloads (b64: false) are not accepted")
    if "crit" in header and header["crit"] != ["b64"]:
        raise UnsupportedHeader("header lists 'crit' extensions that are not understood")
    if "crit" in header and "b64" not in header:
        raise UnsupportedHeader("header 'crit' names 'b64', which the header lacks")
    kid = header.get("kid")
    if kid is not None and (not isinstance(kid, str) or len(kid) > MAX_KID_LENGTH):
        raise MalformedToken("header 'kid' is not a string of reasonable length")
    if typ is not None:
        got = header.get("typ")
        if not isinstance(got, str) or _media_type(got) != typ:
            raise UnsupportedHeader(f"header 'typ' is {_shown(got)}, expected '{safe(typ, 60)}'")
    return alg, kid


def _shown(value: Any) -> str:
    """A header value for an error detail (logs and the CLI only, never the HTTP body)."""
    if value is None:
        return "missing"
    if isinstance(value, str):
        return f"'{safe(value, 60)}'"
    return f"not a string ({type(value).__name__})"


def _media_type(value: str) -> str:
    # RFC 7515 4.1.9: "application/" may be left out only when no other "/" appears, so a
    # value without "/" means "application/<value>"; compared case-insensitively (RFC 2045).
    value = value.lower()
    return value if "/" in value else "application/" + value


def normalize_typ(typ: str | None) -> str | None:
    """A required ``typ`` as a full lower-case media type (``at+jwt`` -> ``application/at+jwt``).

    RFC 7515 4.1.9: ``application/`` is implied only when the value holds no ``/``; the token's
    ``typ`` is read the same way, so ``text/plain`` never matches ``application/text/plain``.
    """
    if typ is None:
        return None
    if not isinstance(typ, str) or not typ.strip() or typ != typ.strip():
        raise ConfigurationError(f"typ must be a media type such as 'at+jwt', not {typ!r}")
    return _media_type(typ)


def check_signature(parsed: ParsedJWS, keys: KeySet, alg: str, kid: str | None) -> None:
    """Verify the signature with the one key the kid and algorithm select."""
    _verify_signature(parsed.signing_input, parsed.signature, keys, alg, kid)


def _verify_signature(
    signing_input: bytes, signature: bytes, keys: KeySet, alg: str, kid: str | None
) -> None:
    """:func:`check_signature` over the parts :func:`_split_jws` returns."""
    if not keys.find(kid, alg).verify(signing_input, signature):
        raise BadSignature("signature does not verify")


def verify_jws(
    token: str | bytes,
    jwks: Mapping[str, Any] | KeySet,
    *,
    algorithms: Iterable[str] | None = None,
    max_size: int = DEFAULT_MAX_TOKEN_SIZE,
) -> tuple[dict[str, Any], bytes]:
    """Verify a compact JWS against a JWK Set; return ``(header, payload bytes)``.

    The signature layer alone: strict parsing, header rules, key choice by ``kid`` bound to the
    algorithm, one signature check. No claim is looked at. ``algorithms`` defaults to every
    supported algorithm; the key decides which of them can verify.

    >>> header, payload = verify_jws(token, {"keys": [jwk]}, algorithms=["ES256"])  # doctest: +SKIP
    """
    allowed = allowed_algorithms(algorithms)
    keys = jwks if isinstance(jwks, KeySet) else KeySet.from_jwks(jwks, algorithms=allowed)
    parsed = parse(token, max_size)
    alg, kid = check_header(parsed.header, allowed)
    check_signature(parsed, keys, alg, kid)
    return parsed.header, parsed.payload


def allowed_algorithms(algorithms: Iterable[str] | None) -> frozenset[str]:
    """Validate an algorithm allowlist (``None``: every supported algorithm)."""
    if algorithms is None:
        return frozenset(ALGORITHMS)
    if isinstance(algorithms, str):
        algorithms = [algorithms]
    allowed = frozenset(algorithms)
    unknown = sorted(allowed - ALGORITHMS.keys())
    if unknown:
        raise ConfigurationError(
            f"unsupported algorithms {unknown}; choose from {sorted(ALGORITHMS)}"
            + (" ('none' is never accepted)" if any(a.lower() == "none" for a in unknown) else "")
        )
    if not allowed:
        raise ConfigurationError("algorithms must name at least one algorithm")
    return allowed
