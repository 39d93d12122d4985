"""Trusted issuers: their configuration (``Issuer``), their key sources, and the state the
verifier builds once per issuer from them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .claims import ClaimRules
from .errors import ConfigurationError
from .jwks import JWKSClient
from .jws import allowed_algorithms
from .keys import KeySet

__all__ = ["Issuer", "IssuerState", "KeySource", "StaticKeys", "build_state", "names"]


@dataclass(frozen=True)
class Issuer:
    """One trusted issuer: its ``iss`` value, audience(s) and key source.

    Give ``jwks_url`` (remote JWKS), ``jwks`` (a static JWK Set dict), or neither (OpenID
    discovery from ``issuer``). ``audience=None`` turns the audience check off for this issuer:
    only do that when the issuer mints tokens for nobody else.
    """

    issuer: str
    audience: str | Sequence[str] | None
    jwks_url: str | None = None
    jwks: Mapping[str, Any] | None = None
    algorithms: Sequence[str] | None = None
    scope_claims: Sequence[str] | None = None
    allow_remote_oct: bool = False


class StaticKeys:
    """A key source that never changes: a ``KeySet`` built once from a JWK Set given in code."""

    name = "static"

    def __init__(self, keyset: KeySet) -> None:
        self.keyset = keyset

    def keys_for(self, kid: str | None) -> KeySet:
        """The fixed key set."""
        return self.keyset

    async def akeys_for(self, kid: str | None) -> KeySet:
        """The fixed key set."""
        return self.keyset

    def current(self, now: float | None = None) -> KeySet | None:
        """The fixed key set (``now``, a monotonic reading, does not matter)."""
        return self.keyset

    def status(self) -> dict[str, Any]:
        """Health snapshot."""
        return {
            "source": "static",
            "keys": len(self.keyset),
            "kids": sorted(self.keyset.kids),
            "stale": False,
            "usable": True,
            "last_error": None,
        }


KeySource = StaticKeys | JWKSClient


@dataclass(frozen=True)
class IssuerState:
    """What the verifier needs per issuer, built once."""

    rules: ClaimRules
    allowed: frozenset[str]
    source: KeySource
    scope_claims: tuple[str, ...]
    same_clock: bool = False  # the key source reads the verifier's monotonic clock: share it


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
    jwks_options: Mapping[str, Any],
) -> IssuerState:
    """Check one ``Issuer`` and build its claim rules, allowlist and key source."""
    allowed = allowed_algorithms(cfg.algorithms if cfg.algorithms is not None else algorithms)
    if isinstance(cfg.audience, str):
        audiences: frozenset[str] | None = frozenset([cfg.audience])
    else:
        audiences = None if cfg.audience is None else frozenset(cfg.audience)
        if audiences is not None and not audiences:
            raise ConfigurationError("audience must name at least one audience (or be None)")
    rules = ClaimRules(cfg.issuer, audiences, leeway, require_exp, max_age, required)
    source: KeySource
    if cfg.jwks is not None:
        if cfg.jwks_url is not None:
            raise ConfigurationError("give jwks= or jwks_url=, not both")
        try:
            keyset = KeySet.from_jwks(cfg.jwks, algorithms=allowed, strict=True)
        except ValueError as exc:
            raise ConfigurationError(f"jwks= for {cfg.issuer!r}: {exc}") from exc
        source = StaticKeys(keyset)
    elif cfg.jwks_url is not None:
        source = JWKSClient(
            cfg.jwks_url,
            algorithms=allowed,
            allow_oct=cfg.allow_remote_oct,
            **jwks_options,
        )
    else:
        source = JWKSClient(
            discovery_issuer=cfg.issuer,
            algorithms=allowed,
            allow_oct=cfg.allow_remote_oct,
            **jwks_options,
        )
    scopes = names(cfg.scope_claims if cfg.scope_claims is not None else scope_claims)
    same_clock = isinstance(source, StaticKeys) or source.monotonic is monotonic
    return IssuerState(rules, allowed, source, scopes, same_clock)
