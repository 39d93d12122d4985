"""``JWKSFault``: the ways the local issuer's endpoints can misbehave on demand."""

from __future__ import annotations

import enum
from typing import Any

from jwt_guard.errors import ConfigurationError

__all__ = ["BROKEN_JWKS", "DEFAULT_DELAY", "JWKSFault", "fault_named"]


class JWKSFault(enum.Enum):
    """What the JWKS (and discovery) endpoint of a :class:`LocalIssuer` does while set.

    ``DOWN`` closes the listening socket (connection refused) and clearing it listens again on
    the same port. ``HANG`` holds each request until ``delay`` passes or the fault is cleared,
    ``SLOW`` answers normally after ``delay``; both give way at once to ``stop()``.
    ``NO_KEYS`` and ``BROKEN_KEYS`` change the JWKS document only.

    Example::

        issuer.set_fault(JWKSFault.ERROR_500)
        ...                                  # the verifier should serve from cache or 503
        issuer.set_fault(None)
    """

    DOWN = "down"
    HANG = "hang"
    SLOW = "slow"
    ERROR_500 = "error_500"
    HTML = "html"
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    NO_KEYS = "no_keys"
    HUGE = "huge"
    BROKEN_KEYS = "broken_keys"
    REDIRECT_LOOP = "redirect_loop"


def fault_named(fault: object) -> JWKSFault | None:
    """``fault`` as a ``JWKSFault``: a member, its value (``"down"``, ``"error_500"``, any case),
    or ``None`` for no fault; anything else is a ``ConfigurationError`` listing the names.

    The one place a fault name is read, so no spelling can silently mean "no fault".
    """
    if fault is None or isinstance(fault, JWKSFault):
        return fault
    if isinstance(fault, str):
        try:
            return JWKSFault(fault.strip().lower())
        except ValueError:
            pass
    names = ", ".join(repr(member.value) for member in JWKSFault)
    raise ConfigurationError(
        f"unknown fault {fault!r}; choose from {names} (or a JWKSFault, or None for no fault)"
    )


DEFAULT_DELAY = {JWKSFault.HANG: 30.0, JWKSFault.SLOW: 1.0}

BROKEN_JWKS: list[dict[str, Any]] = [
    {
        "kty": "RSA",
        "kid": "broken-rsa-n",
        "use": "sig",
        "alg": "RS256",
        "n": "!!not*base64!!",
        "e": "AQAB",
    },
    {"kty": "RSA", "kid": "broken-rsa-no-e", "use": "sig", "alg": "RS256", "n": "sXch"},
    {
        "kty": "EC",
        "kid": "broken-ec-point",
        "use": "sig",
        "alg": "ES256",
        "crv": "P-256",
        "x": "A" * 42 + "E",
        "y": "A" * 42 + "E",
    },
    {"kty": "XYZ", "kid": "broken-kty", "use": "sig", "alg": "RS256"},
]
"""Keys the ``BROKEN_KEYS`` fault serves before the good ones (the EC point (1, 1) is off-curve)."""
