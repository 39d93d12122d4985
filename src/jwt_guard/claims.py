"""``Claims`` (the verified claims, read-only) and the registered-claim rules.

``validate_claims`` checks ``exp``, ``nbf``, ``iat`` (JSON numbers, finite, with leeway), ``iss``
(exact), ``aud`` (any configured audience), the types of ``sub`` and ``jti``, the maximum age and
the required claims. Time comes from the caller, so tests inject a clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any

from .errors import (
    ExpiredToken,
    InvalidClaim,
    IssuedInFuture,
    MissingClaim,
    NotYetValid,
    TokenTooOld,
    WrongAudience,
    WrongIssuer,
)

__all__ = ["DEFAULT_SCOPE_CLAIMS", "ClaimRules", "Claims", "extract_scopes", "validate_claims"]

_isfinite = math.isfinite

DEFAULT_SCOPE_CLAIMS: tuple[str, ...] = ("scope", "scp")
"""Default scope claims: ``scope`` (space-delimited) and ``scp`` (list or string)."""


def _freeze(value: Any) -> Any:
    if type(value) is dict:
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if type(value) is list:
        return tuple(_freeze(v) for v in value)
    return value


def _lookup(data: Mapping[str, Any], path: str) -> Any:
    value: Any = data
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def extract_scopes(
    data: Mapping[str, Any], paths: Sequence[str] = DEFAULT_SCOPE_CLAIMS
) -> frozenset[str]:
    """Collect scopes from each claim path: a space-delimited string or a list of strings.

    Paths may be dotted (``realm_access.roles``); values of other types are ignored.
    """
    scopes: set[str] = set()
    for path in paths:
        value = data.get(path) if "." not in path else _lookup(data, path)
        if isinstance(value, str):
            # RFC 6749 3.3: scope tokens are delimited by SP (%x20) only; a tab, newline or
            # no-break space is part of a (malformed) token, never a delimiter.
            scopes.update(value.split(" "))  # the empty strings of doubled spaces go below
        elif isinstance(value, (list, tuple)):
            scopes.update(v for v in value if isinstance(v, str))
    scopes.discard("")
    return frozenset(scopes)


def _timestamp(value: Any) -> datetime | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:  # NaN, infinities and integers beyond the float range all land in the except
            return datetime.fromtimestamp(value, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    return None


class Claims(Mapping[str, Any]):
    """The verified claims of a token: a read-only mapping with typed accessors.

    ``claims["sub"]``, ``claims.get("email")``, ``claims.subject``, ``claims.scopes``. Nested
    objects are read-only views and lists are tuples: one request cannot alter what another sees.
    """

    __slots__ = ("_data", "_memo", "_scopes")

    def __init__(self, data: Mapping[str, Any], scopes: frozenset[str] | None = None) -> None:
        self._data: Mapping[str, Any] = {k: _freeze(v) for k, v in data.items()}
        self._scopes = extract_scopes(self._data) if scopes is None else scopes
        self._memo: Any = None  # adapters keep what they derive once per token here

    @classmethod
    def _adopt(cls, data: dict[str, Any], scopes: frozenset[str]) -> Claims:
        """Claims over ``data``, a dict fresh from the JSON parser that nothing else holds.

        Freezes nested objects and arrays in place instead of copying the whole mapping.
        """
        for key, value in data.items():
            if type(value) is dict or type(value) is list:
                data[key] = _freeze(value)  # replaces a value: the dict's size never changes
        claims = cls.__new__(cls)
        claims._data = data
        claims._scopes = scopes
        claims._memo = None
        return claims

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"Claims(sub={self.subject!r}, iss={self.issuer!r}, scopes={sorted(self._scopes)})"

    @property
    def subject(self) -> str | None:
        """The ``sub`` claim."""
        value = self._data.get("sub")
        return value if isinstance(value, str) else None

    @property
    def issuer(self) -> str | None:
        """The ``iss`` claim."""
        value = self._data.get("iss")
        return value if isinstance(value, str) else None

    @property
    def audience(self) -> tuple[str, ...]:
        """The ``aud`` claim as a tuple (a single string becomes a 1-tuple)."""
        value = self._data.get("aud")
        if isinstance(value, str):
            return (value,)
        if isinstance(value, tuple):
            return tuple(v for v in value if isinstance(v, str))
        return ()

    @property
    def expires_at(self) -> datetime | None:
        """``exp`` as an aware UTC datetime."""
        return _timestamp(self._data.get("exp"))

    @property
    def issued_at(self) -> datetime | None:
        """``iat`` as an aware UTC datetime."""
        return _timestamp(self._data.get("iat"))

    @property
    def token_id(self) -> str | None:
        """The ``jti`` claim."""
        value = self._data.get("jti")
        return value if isinstance(value, str) else None

    @property
    def scopes(self) -> frozenset[str]:
        """The token's scopes (from ``scope``/``scp`` or the configured claim paths)."""
        return self._scopes

    def has_scopes(self, *scopes: str) -> bool:
        """Whether every one of ``scopes`` was granted."""
        return self._scopes.issuperset(scopes)


@dataclass(frozen=True)
class ClaimRules:
    """The claim checks for one issuer."""

    issuer: str
    audiences: frozenset[str] | None
    leeway: float = 60.0
    require_exp: bool = True
    max_age: float | None = None
    required: tuple[str, ...] = ()


def _number(payload: Mapping[str, Any], name: str) -> float | None:
    value = payload.get(name)
    if type(value) is int or type(value) is float:  # the common case, checked first
        try:
            number = float(value)  # an integer beyond the float range raises OverflowError
        except OverflowError:
            number = math.inf
        if _isfinite(number):
            return number
        raise InvalidClaim(f"claim {name!r} is not a finite JSON number")
    if value is None:
        if name in payload:
            raise InvalidClaim(f"claim {name!r} is null")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidClaim(f"claim {name!r} is not a finite JSON number")
    try:
        number = float(value)  # an integer beyond the float range raises OverflowError
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise InvalidClaim(f"claim {name!r} is not a finite JSON number")
    return number


def validate_claims(payload: Mapping[str, Any], rules: ClaimRules, now: float) -> None:
    """Check the registered claims against ``rules`` at time ``now``; raise a ``ClaimError``."""
    leeway = rules.leeway
    exp = _number(payload, "exp")
    if exp is None:
        if rules.require_exp:
            raise MissingClaim("claim 'exp' is required")
    elif now >= exp + leeway:
        raise ExpiredToken(f"token expired at {exp:.0f} (now {now:.0f}, leeway {leeway:g}s)")
    nbf = _number(payload, "nbf")
    if nbf is not None and now < nbf - leeway:
        raise NotYetValid(f"token not valid before {nbf:.0f} (now {now:.0f})")
    iat = _number(payload, "iat")
    if iat is not None and iat > now + leeway:
        raise IssuedInFuture(f"token issued at {iat:.0f}, in the future (now {now:.0f})")
    if rules.max_age is not None:
        if iat is None:
            raise MissingClaim("claim 'iat' is required when a maximum token age is set")
        if now - iat > rules.max_age + leeway:
            raise TokenTooOld(f"token issued {now - iat:.0f}s ago, max age {rules.max_age:g}s")
    if payload.get("iss") != rules.issuer:
        raise WrongIssuer("claim 'iss' does not match the issuer")
    if rules.audiences is not None:
        _check_audience(payload, rules.audiences)
    for name in ("sub", "jti"):
        if name in payload and not isinstance(payload[name], str):
            raise InvalidClaim(f"claim {name!r} is not a string")
    for name in rules.required:
        if name not in payload:
            raise MissingClaim(f"required claim {name!r} is missing")


def _check_audience(payload: Mapping[str, Any], audiences: frozenset[str]) -> None:
    aud = payload.get("aud")
    if aud is None:
        raise WrongAudience("claim 'aud' is missing")
    if isinstance(aud, str):
        if aud in audiences:
            return
    elif isinstance(aud, list):
        if not all(isinstance(a, str) for a in aud):
            raise InvalidClaim("claim 'aud' holds a non-string")
        if not audiences.isdisjoint(aud):
            return
    else:
        raise InvalidClaim("claim 'aud' is neither a string nor a list of strings")
    raise WrongAudience("claim 'aud' names none of the accepted audiences")
