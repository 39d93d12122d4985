"""``Claims`` (the verified claims, read-only) and the registered-claim rules.

``validate_claims`` checks ``exp``, ``nbf``, ``iat`` (JSON numbers, finite, with leeway), ``iss``
(exact), ``aud`` (any configured audience), the types of ``sub`` and ``jti``, the maximum age and
the required claims. Time comes from the caller, so tests inject a clock.

Verified claims are shared: the token cache hands the same ``Claims`` to every request that
carries the same token. So nothing reachable from a ``Claims`` can be changed: JSON objects are
``FrozenDict`` (a read-only mapping), JSON arrays ``FrozenList`` (a tuple), and both compare equal
to the plain ``dict`` / ``list`` they were parsed from. ``Claims.to_dict()`` gives a fresh, plain,
JSON-serialisable copy.
"""

from __future__ import annotations

import math
from collections.abc import (
    Callable,
    ItemsView,
    Iterable,
    Iterator,
    KeysView,
    Mapping,
    Sequence,
    ValuesView,
)
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, NoReturn, TypeVar

from .._codec import MAX_DEPTH
from .._logsafe import safe
from ..errors import (
    ExpiredToken,
    InvalidClaim,
    IssuedInFuture,
    MissingClaim,
    NotYetValid,
    TokenTooOld,
    WrongAudience,
    WrongIssuer,
)

__all__ = [
    "DEFAULT_SCOPE_CLAIMS",
    "ClaimRules",
    "Claims",
    "FrozenDict",
    "FrozenList",
    "extract_scopes",
    "validate_claims",
]

_isfinite = math.isfinite
_T = TypeVar("_T")

DEFAULT_SCOPE_CLAIMS: tuple[str, ...] = ("scope", "scp")
"""Default scope claims: ``scope`` (space-delimited) and ``scp`` (list or string)."""


_set = object.__setattr__  # how the read-only classes fill their own slots


def _read_only(self: object, *args: object) -> NoReturn:
    raise AttributeError(f"{type(self).__name__} is read-only (shared by every request)")


class FrozenList(tuple[Any, ...]):
    """A JSON array inside verified claims: a tuple that also equals the same ``list``.

    ``claims["roles"] == ["admin"]`` and ``== ("admin",)`` both hold; ``json.dumps`` writes it
    as an array. Use ``list(value)`` for a list of your own.
    """

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, list):
            return len(self) == len(other) and tuple.__eq__(self, tuple(other))
        return tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    __hash__ = tuple.__hash__


class FrozenDict(Mapping[str, Any]):
    """A JSON object inside verified claims: a read-only mapping equal to the same ``dict``.

    ``claims["profile"] == {"email": "a@example.com"}`` holds; item assignment and attribute
    assignment raise. ``to_dict()`` gives a plain, JSON-serialisable deep copy.
    """

    __slots__ = ("_data",)
    _data: dict[str, Any]

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        frozen = {} if data is None else {k: _freeze(v, 1) for k, v in data.items()}
        _set(self, "_data", frozen)

    __setattr__ = _read_only
    __delattr__ = _read_only

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, or ``default``."""
        return self._data.get(key, default)

    def keys(self) -> KeysView[str]:
        """The names, as a read-only view."""
        return self._data.keys()

    def values(self) -> ValuesView[Any]:
        """The (read-only) values."""
        return self._data.values()

    def items(self) -> ItemsView[str, Any]:
        """``(name, value)`` pairs, as a read-only view."""
        return self._data.items()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrozenDict):
            return self._data == other._data
        if isinstance(other, dict):
            return self._data == other
        if isinstance(other, Mapping):
            return self._data == dict(other.items())
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    __hash__ = None  # type: ignore[assignment]  # equal to dicts, so unhashable like them

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._data!r})"

    def __copy__(self) -> FrozenDict:
        return self  # immutable: a copy would be the same thing

    def __deepcopy__(self, memo: dict[int, Any]) -> FrozenDict:
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (dict(self._data),))

    def to_dict(self) -> dict[str, Any]:
        """A fresh deep copy in plain JSON types (``dict``, ``list``), e.g. for ``json.dumps``."""
        return {k: _thaw(v) for k, v in self._data.items()}


_EMPTY_OBJECT = FrozenDict()  # every {} in every token: immutable, so one shared object
_EMPTY_ARRAY = FrozenList()


def _freeze(value: Any, depth: int) -> Any:
    """``value`` with every object and array (at any depth) made read-only.

    ``depth`` is the JSON level ``value`` sits at minus one (a claim's value: 1). Leaves are
    tested inline so the common case, a string or a number, costs no call.
    """
    kind = type(value)
    if kind is dict:
        if not value:
            return _EMPTY_OBJECT
        if depth >= MAX_DEPTH:
            raise ValueError(f"claims nested deeper than {MAX_DEPTH} levels")
        inner = depth + 1
        frozen = _new(FrozenDict)
        _set_data(
            frozen, {k: v if type(v) in _LEAVES else _freeze(v, inner) for k, v in value.items()}
        )
        return frozen
    if kind is list:
        if not value:
            return _EMPTY_ARRAY
        if depth >= MAX_DEPTH:
            raise ValueError(f"claims nested deeper than {MAX_DEPTH} levels")
        inner = depth + 1
        return _new_tuple(
            FrozenList, [v if type(v) in _LEAVES else _freeze(v, inner) for v in value]
        )
    if kind in _LEAVES or isinstance(value, (FrozenDict, FrozenList)):
        return value  # a JSON scalar, or frozen already
    if isinstance(value, Mapping):  # other mappings and sequences handed to Claims(...)
        return _freeze(dict(value), depth)
    if isinstance(value, (list, tuple)):
        return _freeze(list(value), depth)
    return value


_new = object.__new__
_new_tuple = tuple.__new__
# What the JSON parser makes besides dicts and lists, and the frozen types: kept as they are.
_LEAVES = frozenset({str, int, float, bool, type(None), FrozenList, FrozenDict})


def _thaw(value: Any) -> Any:
    """A frozen value back in plain JSON types (a fresh copy of every object and array)."""
    if isinstance(value, FrozenDict):
        return {k: _thaw(v) for k, v in value._data.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
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
    scopes = _NO_SCOPES
    for path in paths:
        value = data.get(path) if "." not in path else _lookup(data, path)
        if value is None:
            continue
        if isinstance(value, str):
            # RFC 6749 3.3: scope tokens are delimited by SP (%x20) only; a tab, newline or
            # no-break space is part of a (malformed) token, never a delimiter.
            found = frozenset(value.split(" "))  # the "" of doubled spaces goes below
        elif isinstance(value, (list, tuple)):
            found = frozenset([v for v in value if isinstance(v, str)])
        else:
            continue
        scopes = scopes | found if scopes else found
    return scopes - _BLANK if "" in scopes else scopes


_NO_SCOPES: frozenset[str] = frozenset()
_BLANK = frozenset([""])


def _timestamp(value: Any) -> datetime | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:  # NaN, infinities and integers beyond the float range all land in the except
            return datetime.fromtimestamp(value, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    return None


class Claims(FrozenDict):
    """The verified claims of a token: a read-only mapping with typed accessors.

    ``claims["sub"]``, ``claims.get("email")``, ``claims.subject``, ``claims.scopes``. One
    ``Claims`` is shared by every request carrying the same token, so nothing in it can be
    changed: nested objects are :class:`FrozenDict`, arrays :class:`FrozenList`, and both compare
    equal to plain dicts and lists (``claims["roles"] == ["admin"]``). ``to_dict()`` returns a
    fresh plain copy for JSON (``json.dumps``, ``jsonify``, ``JSONResponse``); ``dict(claims)``
    is only a shallow copy whose nested values stay read-only.

    Example::

        claims = verifier.verify(token)
        claims.subject, claims.scopes, claims.get("email")
        return JSONResponse(claims.to_dict())
    """

    __slots__ = ("_memo", "_scopes", "_tenant")
    _scopes: frozenset[str]
    _memo: dict[object, Any]
    _tenant: str  # set only for a token an IssuerTemplate admitted: see ``tenant``

    def __init__(
        self,
        data: Mapping[str, Any],
        scopes: frozenset[str] | None = None,
        tenant: str | None = None,
    ) -> None:
        frozen = {k: _freeze(v, 1) for k, v in data.items()}
        _set(self, "_data", frozen)
        _set(self, "_scopes", extract_scopes(frozen) if scopes is None else scopes)
        _set(self, "_memo", {})
        if tenant is not None:
            _set(self, "_tenant", tenant)

    def __repr__(self) -> str:
        return f"Claims(sub={self.subject!r}, iss={self.issuer!r}, scopes={sorted(self._scopes)})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (dict(self._data), self._scopes, self.tenant))

    def memo(self, key: object, factory: Callable[[Claims], _T]) -> _T:
        """What ``factory(self)`` gave the first time ``key`` was asked for, for this token.

        For adapters that derive an object once per verified token (a request user, say) and
        share it, as the ``Claims`` are shared, by every request carrying the token. The first
        value stored for ``key`` stays: nothing can replace it, so one request cannot change
        what a later one is given. Use a private object as ``key`` (a module-level
        ``object()``, never a string another module could name), and store only immutable
        values. Two threads racing on a new key may both call ``factory``; both get the value
        that was stored first.
        """
        memo = self._memo
        try:
            return memo[key]  # type: ignore[no-any-return]
        except KeyError:
            return memo.setdefault(key, factory(self))  # type: ignore[no-any-return]

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
    def tenant(self) -> str | None:
        """The tenant of a token an ``IssuerTemplate`` admitted (Entra's ``tid``, a Keycloak
        realm...): the value that filled the template's placeholder. ``None`` for a token of an
        exact issuer."""
        try:
            return self._tenant
        except AttributeError:  # the slot is filled only for templated tokens: no cost otherwise
            return None

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
    def confirmation(self) -> FrozenDict | None:
        """The ``cnf`` claim (RFC 7800): how the token is bound to its holder, or ``None``.

        ``{"jkt": ...}`` for a DPoP-bound token (RFC 9449: the thumbprint of the key its
        proofs are signed with), ``{"x5t#S256": ...}`` for a certificate-bound one (RFC 8705).
        Behind a guard the binding was checked for this request (a DPoP proof, the client
        certificate); ``TokenVerifier`` alone checks only the token.
        """
        value = self._data.get("cnf")
        return value if isinstance(value, FrozenDict) else None

    @property
    def scopes(self) -> frozenset[str]:
        """The token's scopes (from ``scope``/``scp`` or the configured claim paths)."""
        return self._scopes

    def has_scopes(self, *scopes: str) -> bool:
        """Whether every one of ``scopes`` was granted."""
        return self._scopes.issuperset(scopes)


# The slots' own setters: how the read-only classes fill themselves in (object.__setattr__
# would do too, at twice the cost on the path of every freshly verified token).
_set_data = FrozenDict.__dict__["_data"].__set__
_set_scopes = Claims.__dict__["_scopes"].__set__
_set_memo = Claims.__dict__["_memo"].__set__
set_tenant = Claims.__dict__["_tenant"].__set__
"""``set_tenant(claims, tenant)``: the verifier's way to record the tenant of fresh claims."""


def _adopt_claims(data: dict[str, Any], scopes: frozenset[str], flat: bool) -> Claims:
    """``Claims`` over ``data``, a dict fresh from the JSON parser that nothing else holds.

    Freezes nested objects and arrays in place instead of copying the whole mapping (the parser
    has bounded their depth already, ``_codec.MAX_DEPTH``). ``flat``: the parser saw no ``{`` or
    ``[`` besides the outer one (``_codec.loads_counted``), so no value needs freezing.
    """
    if not flat:
        for key, value in data.items():
            if type(value) is dict or type(value) is list:  # all the parser makes besides leaves
                data[key] = _freeze(value, 1)  # replaces a value: the dict's size never changes
    claims = _new(Claims)
    _set_data(claims, data)
    _set_scopes(claims, scopes)
    _set_memo(claims, {})
    return claims


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
    """Check the registered claims against ``rules`` at time ``now``; raise a ``ClaimError``.

    ``exp``, ``nbf`` and ``iat`` allow ``rules.leeway`` of clock skew. ``max_age`` does not:
    a token older than ``max_age`` seconds by this clock is refused.
    """
    _claim_times(payload, rules, now)


def _claim_times(
    payload: Mapping[str, Any], rules: ClaimRules, now: float
) -> tuple[float, float, float]:
    """:func:`validate_claims`, returning ``exp``, ``nbf`` and ``iat`` as the floats it checked
    (``inf``, ``-inf`` and ``nan`` for a claim left out), so the token cache need not read them
    again. An integer claim, the common case, is converted inline (``float`` of an int is finite
    or raises ``OverflowError``); anything else goes through ``_number``, which refuses booleans,
    nulls, strings and values that are not finite.
    """
    leeway = rules.leeway
    get = payload.get
    value = get("exp")
    if type(value) is int:  # the common case: float() of an int is finite or overflows
        try:
            number: float | None = float(value)
        except OverflowError:
            number = _number(payload, "exp")  # raises InvalidClaim
    else:
        number = _number(payload, "exp")
    if number is None:
        if rules.require_exp:
            raise MissingClaim("claim 'exp' is required")
        exp = _INF
    else:
        exp = number
        if now >= exp + leeway:
            raise ExpiredToken(f"token expired at {exp:.0f} (now {now:.0f}, leeway {leeway:g}s)")
    nbf = _NEG_INF
    if "nbf" in payload:
        number = _number(payload, "nbf")  # a number: a null raises
        if number is not None:
            nbf = number
            if now < nbf - leeway:
                raise NotYetValid(f"token not valid before {nbf:.0f} (now {now:.0f})")
    value = get("iat")
    if type(value) is int:  # the common case: float() of an int is finite or overflows
        try:
            number = float(value)
        except OverflowError:
            number = _number(payload, "iat")  # raises InvalidClaim
    else:
        number = _number(payload, "iat")
    if number is None:
        if rules.max_age is not None:
            raise MissingClaim("claim 'iat' is required when a maximum token age is set")
        iat = _NAN
    else:
        iat = number
        if iat > now + leeway:
            raise IssuedInFuture(f"token issued at {iat:.0f}, in the future (now {now:.0f})")
        if rules.max_age is not None and now - iat > rules.max_age:
            raise TokenTooOld(f"token issued {now - iat:.0f}s ago, max age {rules.max_age:g}s")
    if get("iss") != rules.issuer:
        raise _issuer_mismatch(get("iss"), (rules.issuer,))
    audiences = rules.audiences
    if audiences is not None:
        aud = get("aud")
        if type(aud) is not str or aud not in audiences:  # else: the common case, accepted
            _check_audience(payload, audiences)
    if not isinstance(get("sub", ""), str):  # present, and not a string (null included)
        raise InvalidClaim("claim 'sub' is not a string")
    if not isinstance(get("jti", ""), str):
        raise InvalidClaim("claim 'jti' is not a string")
    for name in rules.required:
        if name not in payload:
            raise MissingClaim(f"required claim {name!r} is missing")
    return exp, nbf, iat


_INF = math.inf
_NEG_INF = -math.inf
_NAN = math.nan


def _check_audience(payload: Mapping[str, Any], audiences: frozenset[str]) -> None:
    aud = payload.get("aud")
    if aud is None:
        raise WrongAudience(f"claim 'aud' is missing (expected {_shown(sorted(audiences))})")
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
    raise WrongAudience(
        f"claim 'aud' {_shown(aud)} names none of the accepted audiences "
        f"{_shown(sorted(audiences))}{_near_miss(aud, audiences)}"
    )


# -- values in error details -------------------------------------------------------------------
# A detail goes to str(exc), the log line and the CLI, never into an HTTP response. A value from
# the token is outside text: escaped by _logsafe.safe and cut, so it can neither forge a log line
# nor flood it. Showing it next to the expected value finds the classic trailing-slash mismatch.

_SHOWN_ITEMS = 3
_SHOWN_CHARS = 100


def _shown(value: object) -> str:
    """``value`` for an error detail: a string quoted, escaped and cut; a list's first items."""
    if isinstance(value, str):
        return "'" + safe(value, _SHOWN_CHARS) + "'"
    if isinstance(value, (list, tuple)):
        items = [_shown(v) if isinstance(v, str) else _kind(v) for v in value[:_SHOWN_ITEMS]]
        if len(value) > _SHOWN_ITEMS:
            items.append(f"... {len(value)} in all")
        return "[" + ", ".join(items) + "]"
    return _kind(value)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, (dict, FrozenDict)):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "an array"
    return "a " + type(value).__name__


def _near_miss(value: object, expected: Iterable[str]) -> str:
    """A hint when a token value and an expected one differ only in a trailing slash or case."""
    values = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    for got in values:
        if not isinstance(got, str):
            continue
        for want in expected:
            if got.rstrip("/") == want.rstrip("/"):
                return " (they differ only in a trailing slash)"
            if got.casefold() == want.casefold():
                return " (they differ only in letter case)"
    return ""


def _issuer_mismatch(iss: object, expected: Sequence[str]) -> WrongIssuer:
    """The ``WrongIssuer`` for a token whose ``iss`` is none of ``expected``."""
    if iss is None:
        return WrongIssuer("claim 'iss' is missing")
    want = _shown(expected[0]) if len(expected) == 1 else "one of " + _shown(sorted(expected))
    if not isinstance(iss, str):
        return WrongIssuer(f"claim 'iss' is {_kind(iss)}, not a string (expected {want})")
    return WrongIssuer(
        f"claim 'iss' {_shown(iss)} names no configured issuer "
        f"(expected {want}){_near_miss(iss, expected)}"
    )
