"""Stored key sets, sealed with a fleet secret: the store is a trust boundary.

A stored value has the shape of a compact JWS, checked the same way (authenticate first, parse
after)::

    v1.<base64url HMAC-SHA256>.<base64url header JSON>.<JWKS document JSON>

The MAC covers a fixed label, the encoded header (issuer, fetch time, lifetime) and the
document's bytes, so a value cannot move to another issuer, be stretched in time or have its
keys changed without the secret. A value that fails any check is refused like hostile input
from the wire: :func:`open_sealed` raises ``ValueError`` with a log-safe reason.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from .._codec import b64url_encode, loads_object
from .._logsafe import safe
from ..errors import ConfigurationError
from .base import StoredKeySet

__all__ = ["MIN_SECRET_BYTES", "check_secrets", "open_sealed", "seal"]

MIN_SECRET_BYTES = 32
_PREFIX = b"v1"
_LABEL = b"jwt_guard keyset v1\x00"
# A stored fetch time may run ahead of this worker's clock by at most this much (clock skew
# between hosts); further ahead, the value was not written by an honest worker.
_SKEW = 300.0


def check_secrets(owner: str, value: object) -> tuple[bytes, ...]:
    """``secret=``: bytes or text of at least 32 bytes, or a sequence of them (the first signs,
    every one verifies: rotate by putting the new secret first); ``None`` for no sharing."""
    if value is None:
        return ()
    candidates: Sequence[object]
    if isinstance(value, (bytes, str)):
        candidates = [value]
    elif isinstance(value, Sequence) and value:
        candidates = value
    else:
        raise ConfigurationError(
            f"{owner}(secret=...): must be bytes or text of at least {MIN_SECRET_BYTES} bytes, "
            f"or a list of them, not {type(value).__name__!r}"
        )
    found = []
    for candidate in candidates:
        raw = candidate.encode("utf-8") if isinstance(candidate, str) else candidate
        if not isinstance(raw, bytes) or len(raw) < MIN_SECRET_BYTES:
            raise ConfigurationError(
                f"{owner}(secret=...): each secret must be at least {MIN_SECRET_BYTES} bytes "
                '(python -c "import secrets; print(secrets.token_urlsafe(32))" makes one)'
            )
        found.append(raw)
    return tuple(found)


def _mac(secret: bytes, signed: bytes) -> bytes:
    return hmac.new(secret, _LABEL + signed, hashlib.sha256).digest()


def seal(
    secret: bytes, issuer: str, document: Mapping[str, Any], fetched_at: float, lifetime: float
) -> bytes:
    """The stored form of ``document``. Raises ``ValueError`` if it is not plain JSON."""
    try:
        body = json.dumps(
            document, separators=(",", ":"), sort_keys=True, ensure_ascii=False, allow_nan=False
        ).encode("utf-8")
    except (TypeError, ValueError, RecursionError, UnicodeEncodeError) as exc:
        raise ValueError(f"the key set is not plain JSON: {safe(exc)}") from exc
    header = json.dumps(
        {"iss": issuer, "at": fetched_at, "ttl": lifetime}, separators=(",", ":"), allow_nan=False
    ).encode("utf-8")
    signed = b64url_encode(header).encode("ascii") + b"." + body
    return _PREFIX + b"." + b64url_encode(_mac(secret, signed)).encode("ascii") + b"." + signed


def _b64url(data: bytes) -> bytes:
    if not data or b"=" in data or len(data) % 4 == 1:
        raise ValueError("not canonical base64url")
    try:
        decoded = base64.urlsafe_b64decode(data + b"=" * (-len(data) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64url") from exc
    if b64url_encode(decoded).encode("ascii") != data:
        raise ValueError("not canonical base64url")
    return decoded


def _time(header: Mapping[str, Any], name: str) -> float:
    number = header.get(name)
    if (
        not isinstance(number, (int, float))
        or isinstance(number, bool)
        or not math.isfinite(number)
        or number < 0
    ):
        raise ValueError(f"header {name} is not a time: {safe(number)}")
    return float(number)


def open_sealed(
    raw: object,
    secrets: Sequence[bytes],  # the configured secrets: any one verifies
    issuer: str,
    *,
    now: float,
    max_age: float,
    max_bytes: int,
) -> StoredKeySet:
    """The key set sealed in ``raw`` for ``issuer``, or ``ValueError`` saying why not."""
    if not isinstance(raw, bytes):
        raise ValueError(f"a {type(raw).__name__} where bytes were stored")
    if len(raw) > max_bytes:
        raise ValueError(f"{len(raw)} bytes, more than max_bytes={max_bytes}")
    parts = raw.split(b".", 3)
    if len(parts) != 4 or parts[0] != _PREFIX:
        raise ValueError("not a sealed key set")
    mac, signed = _b64url(parts[1]), parts[2] + b"." + parts[3]
    if not any(hmac.compare_digest(mac, _mac(secret, signed)) for secret in secrets):
        raise ValueError("the MAC does not verify (another secret, or a forged value)")
    # Authentic: written by a worker holding the secret. Still checked field by field.
    header = loads_object(_b64url(parts[2]))
    stored_issuer = header.get("iss")
    if stored_issuer != issuer:
        raise ValueError(f"sealed for another issuer ({safe(stored_issuer)})")
    at, ttl = _time(header, "at"), _time(header, "ttl")
    if at > now + _SKEW:
        raise ValueError(f"fetched {at - now:.0f}s in the future")
    if now - at > max_age:
        raise ValueError(f"fetched {now - at:.0f}s ago, older than max_age={max_age:g}s")
    document = loads_object(parts[3])
    if not isinstance(document.get("keys"), list):
        raise ValueError("the document has no 'keys' list")
    return StoredKeySet(issuer=issuer, document=document, fetched_at=at, lifetime=ttl)
