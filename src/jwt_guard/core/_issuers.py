"""Trusted issuers: their configuration (``Issuer``), their key sources, and the state the
verifier builds once per issuer from them; and the checks of the options both take."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigurationError
from ..events import GuardObserver
from ..keys.jwk import KeySet
from ..sources.base import CheckedSource, KeySource, check_key_source
from ..sources.file import JWKSFile
from ..sources.jwks import JWKSClient
from ..sources.options import JWKSOptions
from ..sources.static import StaticKeys
from .claims import ClaimRules
from .jws import allowed_algorithms

__all__ = [
    "Issuer",
    "IssuerState",
    "build_state",
    "check_algorithms",
    "check_callable",
    "check_flag",
    "check_issuer_fields",
    "check_jwks_options",
    "check_names",
    "check_text",
    "is_remote",
    "jwks_defaults",
    "names",
]


def _bad(owner: str, name: str, expected: str, value: object) -> ConfigurationError:
    return ConfigurationError(
        f"{owner}({name}=...): must be {expected}, not {type(value).__name__!r}"
    )


def check_text(owner: str, name: str, value: object, *, optional: bool = False) -> str | None:
    """A non-empty string (or ``None`` when ``optional``), else ``ConfigurationError``."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise _bad(owner, name, "a non-empty string" + (" or None" * optional), value)
    if not value:
        raise ConfigurationError(f"{owner}({name}=...): must not be empty")
    return value


def check_flag(owner: str, name: str, value: object) -> bool:
    """``True`` or ``False`` (not a truthy string, not 1)."""
    if not isinstance(value, bool):
        raise _bad(owner, name, "True or False", value)
    return value


def check_callable(owner: str, name: str, value: object, *, optional: bool = True) -> None:
    """A callable (or ``None`` when ``optional``)."""
    if not (callable(value) or (optional and value is None)):
        raise _bad(owner, name, "a callable" + (" or None" * optional), value)


def check_names(
    owner: str, name: str, value: object, *, optional: bool = False, empty: bool = True
) -> tuple[str, ...] | None:
    """Names: one string is one name, else a list (or tuple...) of non-empty strings."""
    if value is None and optional:
        return None
    if isinstance(value, str):
        value = (value,)
    elif not isinstance(value, (list, tuple, set, frozenset)):
        raise _bad(owner, name, "a string or a list of strings" + (" or None" * optional), value)
    items = tuple(value)
    for item in items:
        if not isinstance(item, str) or not item:
            raise ConfigurationError(
                f"{owner}({name}=...): every item must be a non-empty string, got {item!r:.60}"
            )
    if not items and not empty:
        raise ConfigurationError(f"{owner}({name}=...): must name at least one")
    return items


def _audience(owner: str, value: object) -> str | tuple[str, ...] | None:
    if value is None or isinstance(value, str):
        return check_text(owner, "audience", value, optional=True)
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise _bad(owner, "audience", "a string, a list of strings or None", value)
    return check_names(owner, "audience", value, empty=False)


def check_issuer_fields(
    owner: str,
    issuer: object,
    audience: object,
    jwks_url: object = None,
    jwks: object = None,
    algorithms: object = None,
    scope_claims: object = None,
    key_source: KeySource | None = None,
) -> None:
    """The options an ``Issuer`` and a single-issuer ``TokenVerifier`` share."""
    check_text(owner, "issuer", issuer)
    _audience(owner, audience)
    check_text(owner, "jwks_url", jwks_url, optional=True)
    if jwks is not None and not isinstance(jwks, Mapping):
        raise _bad(owner, "jwks", "a JWK Set dict ({'keys': [...]}) or None", jwks)
    if key_source is not None:
        check_key_source(owner, key_source)
    given = [
        name
        for name, value in (("jwks", jwks), ("jwks_url", jwks_url), ("key_source", key_source))
        if value is not None
    ]
    if len(given) > 1:
        which = f"both {given[0]}= and {given[1]}=" if len(given) == 2 else "all three"
        raise ConfigurationError(
            f"{owner}: give one of jwks=, jwks_url= or key_source=, not {which}"
        )
    check_algorithms(owner, algorithms)
    check_names(owner, "scope_claims", scope_claims, optional=True)


def check_algorithms(owner: str, value: object) -> None:
    """``None`` (every supported algorithm), one name, or a list of supported names."""
    names_ = check_names(owner, "algorithms", value, optional=True)
    if names_ is not None:
        try:  # unknown names and 'none' are refused with the list of supported ones
            allowed_algorithms(names_)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{owner}(algorithms=...): {exc}") from None


def check_jwks_options(owner: str, value: object) -> JWKSOptions | None:
    """``jwks_options``: a ``JWKSOptions``, a dict of its fields (names and values checked), or
    ``None``."""
    if value is None:
        return None
    return JWKSOptions.coerce(f"{owner}(jwks_options=...)", value)


@dataclass(frozen=True)
class Issuer:
    """One trusted issuer: its ``iss`` value, audience(s) and key source.

    Give ``jwks_url`` (remote JWKS), ``jwks`` (a static JWK Set dict), ``key_source`` (any
    :class:`~jwt_guard.sources.base.KeySource`: a ``JWKSFile``, your own), or none of them
    (OpenID discovery from ``issuer``). ``audience=None`` turns the audience check off for this
    issuer: only do that when the issuer mints tokens for nobody else.
    """

    issuer: str
    audience: str | Sequence[str] | None
    jwks_url: str | None = None
    jwks: Mapping[str, Any] | None = None
    algorithms: Sequence[str] | None = None
    scope_claims: Sequence[str] | None = None
    allow_remote_oct: bool = False
    key_source: KeySource | None = None

    def __post_init__(self) -> None:
        check_issuer_fields(
            "Issuer",
            self.issuer,
            self.audience,
            self.jwks_url,
            self.jwks,
            self.algorithms,
            self.scope_claims,
            self.key_source,
        )
        check_flag("Issuer", "allow_remote_oct", self.allow_remote_oct)

    def __repr__(self) -> str:
        # Never the static key set itself: it may hold HMAC secrets.
        keys = self.jwks.get("keys") if self.jwks is not None else None
        source = (
            f"jwks=<{len(keys) if isinstance(keys, list) else '?'} keys>"
            if self.jwks is not None
            else f"key_source={self.key_source.name!r}"
            if self.key_source is not None
            else f"jwks_url={_redacted(self.jwks_url)!r}"
            if self.jwks_url is not None
            else "discovery"
        )
        extra = "".join(
            f", {name}={value!r}"
            for name, value in (
                ("algorithms", self.algorithms),
                ("scope_claims", self.scope_claims),
            )
            if value is not None
        )
        oct_ = ", allow_remote_oct=True" if self.allow_remote_oct else ""
        return f"Issuer({self.issuer!r}, {self.audience!r}, {source}{extra}{oct_})"


def _redacted(url: str) -> str:
    """A URL without its query and fragment (which could hold an API key)."""
    parts = urlsplit(url)
    return parts._replace(query="...", fragment="").geturl() if parts.query else url


@dataclass(frozen=True)
class IssuerState:
    """What the verifier needs per issuer, built once."""

    rules: ClaimRules
    allowed: frozenset[str]
    source: KeySource
    scope_claims: tuple[str, ...]
    same_clock: bool = False  # the key source reads the verifier's monotonic clock: share it
    tenant: str | None = None  # the tenant an IssuerTemplate admitted (core/_tenants.py)


def names(value: str | Sequence[str]) -> tuple[str, ...]:
    """Claim names: one string is one name (not a sequence of letters)."""
    return (value,) if isinstance(value, str) else tuple(value)


def build_state(
    cfg: Issuer,
    algorithms: Sequence[str] | None,
    require_exp: bool,
    max_age: float | None,
    required: tuple[str, ...],
    scope_claims: Sequence[str],
    *,
    leeway: float,
    monotonic: Callable[[], float],
    jwks_options: JWKSOptions,
) -> IssuerState:
    """Check one ``Issuer`` and build its claim rules, allowlist and key source
    (:func:`build_source`)."""
    allowed = allowed_algorithms(cfg.algorithms if cfg.algorithms is not None else algorithms)
    if isinstance(cfg.audience, str):
        audiences: frozenset[str] | None = frozenset([cfg.audience])
    else:
        audiences = None if cfg.audience is None else frozenset(cfg.audience)
        if audiences is not None and not audiences:
            raise ConfigurationError("audience must name at least one audience (or be None)")
    rules = ClaimRules(cfg.issuer, audiences, leeway, require_exp, max_age, required)
    source = build_source(
        cfg.issuer,
        allowed,
        jwks_options,
        key_source=cfg.key_source,
        jwks=cfg.jwks,
        jwks_url=cfg.jwks_url,
        discovery=cfg.issuer,
        allow_oct=cfg.allow_remote_oct,
    )
    scopes = names(cfg.scope_claims if cfg.scope_claims is not None else scope_claims)
    same_clock = getattr(source, "monotonic", None) is monotonic
    return IssuerState(rules, allowed, source, scopes, same_clock)


def build_source(
    name: str,
    allowed: frozenset[str],
    jwks_options: JWKSOptions,
    *,
    key_source: KeySource | None = None,
    jwks: Mapping[str, Any] | None = None,
    jwks_url: str | None = None,
    discovery: str | None = None,
    discovery_templates: Sequence[str] = (),
    allow_oct: bool = False,
) -> KeySource:
    """The key source of one issuer (or issuer template, ``name``), from the first of
    ``key_source``, ``jwks``, ``jwks_url`` and ``discovery`` that is given.

    A source the app brought is called through a ``CheckedSource`` (held to the contract at
    run time); the package's own are called directly (nothing between the token cache and
    their ``current()``)."""
    if key_source is not None:
        return key_source if type(key_source) in _OWN_SOURCES else CheckedSource(key_source)
    if jwks is not None:
        try:
            keyset = KeySet.from_jwks(jwks, algorithms=allowed, strict=True)
        except ValueError as exc:
            raise ConfigurationError(f"jwks= for {name!r}: {exc}") from exc
        return StaticKeys(keyset)
    if jwks_url is not None:
        return JWKSClient(jwks_url, algorithms=allowed, allow_oct=allow_oct, options=jwks_options)
    return JWKSClient(
        discovery_issuer=discovery,
        discovery_templates=discovery_templates,
        algorithms=allowed,
        allow_oct=allow_oct,
        options=jwks_options,
    )


# The package's own sources: called directly. Exact types: a subclass is the app's code.
_OWN_SOURCES = frozenset({StaticKeys, JWKSClient, JWKSFile})


def is_remote(cfg: Issuer) -> bool:
    """Whether ``cfg``'s keys come from a remote JWKS (``jwks_url`` or discovery)."""
    return cfg.jwks is None and cfg.key_source is None


def jwks_defaults(
    options: JWKSOptions | None,
    clock: Callable[[], float],
    monotonic: Callable[[], float],
    observer: GuardObserver | None,
) -> JWKSOptions:
    """``options`` with the verifier's clocks and observer where it leaves them ``None``."""
    options = options if options is not None else JWKSOptions()
    return dataclasses.replace(
        options,
        clock=options.clock if options.clock is not None else clock,
        monotonic=options.monotonic if options.monotonic is not None else monotonic,
        observer=options.observer if options.observer is not None else observer,
    )
