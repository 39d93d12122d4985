"""``TokenVerifier``: a bearer token in, verified ``Claims`` or a precise ``JWTGuardError`` out."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import inspect
import logging
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from .._codec import loads_counted, loads_object
from .._logsafe import safe
from .._options import duration, positive_int
from ..errors import (
    ConfigurationError,
    InvalidClaim,
    InvalidToken,
    JWTGuardError,
    MalformedToken,
    RevokedToken,
)
from ..events import GuardObserver, emit
from ..keys.jwk import KeySet
from ..sources.base import CheckedSource, KeySource
from ..sources.jwks import JWKSClient
from ..sources.options import JWKSOptions
from ..sources.static import StaticKeys
from ..stores._replica import Lookup
from ..stores.base import RevocationStore
from ..stores.fleet import Revocations, Stores
from ._env import template_options, verifier_options_from_env
from ._issuers import (
    Issuer,
    IssuerState,
    build_state,
    check_algorithms,
    check_callable,
    check_flag,
    check_issuer_fields,
    check_jwks_options,
    check_names,
    check_text,
    is_remote,
    jwks_defaults,
)
from ._tenants import AwaitTenant, IssuerTemplate, Tenancy, build_tenancy
from ._tokencache import DEFAULT_CACHE_BYTES, TokenCache
from .claims import (
    DEFAULT_SCOPE_CLAIMS,
    Claims,
    _adopt_claims,
    _claim_times,
    _issuer_mismatch,
    extract_scopes,
    set_tenant,
)
from .jws import (
    DEFAULT_MAX_TOKEN_SIZE,
    _split_jws,
    _verify_signature,
    check_header,
    normalize_typ,
    parse,
)

__all__ = ["Issuer", "TokenVerifier", "fingerprint"]

logger = logging.getLogger("jwt_guard.verifier")

Hook = Callable[[Claims], Any | Awaitable[Any]]


class _Unset:
    """The type of a required option left out."""


_UNSET = _Unset()


_Prepared = tuple[IssuerState, "str | None", str, bytes, bytes, dict[str, Any], bytes, int]
"""What ``_prepare`` hands ``_finish``: the issuer's state, kid, alg, signing input, signature,
payload (parsed and raw) and its bracket count. A tuple: nothing is built per token."""

_OBSERVER_EVENTS = tuple(name for name in vars(GuardObserver) if not name.startswith("_"))

# How long prefetch() waits for a shared deny-list's replica to load (it answers 503 until then).
_STORE_READY_TIMEOUT = 5.0
_REVOCATION_FIELDS = object()  # the Claims memo key of (jti, sub, iat)


def _revocation_fields(claims: Claims) -> tuple[str | None, str | None, float | None]:
    """What a deny-list looks up, computed once per verified token: ``jti`` and ``sub`` when
    they are strings, ``iat`` when it is a number (``None`` otherwise: a subject entry refuses a
    token without a usable ``iat``, since nothing shows it was issued after the sign-out)."""
    data = claims._data
    jti, sub, iat = data.get("jti"), data.get("sub"), data.get("iat")
    return (
        jti if isinstance(jti, str) else None,
        sub if isinstance(sub, str) else None,
        float(iat) if isinstance(iat, (int, float)) and not isinstance(iat, bool) else None,
    )


def _keyset_free(options: JWKSOptions) -> bool:
    """Whether ``options`` leave the key-set store to the verifier."""
    return options.keyset_store is None


def _fields(claims: Claims) -> tuple[str | None, str | None, float | None]:
    return claims.memo(_REVOCATION_FIELDS, _revocation_fields)


def _revoked() -> RevokedToken:
    return RevokedToken("the token is on the revocation list")


def _audiences(state: IssuerState) -> str:
    audiences = state.rules.audiences
    return "None" if audiences is None else repr(sorted(audiences))


def _source_kind(source: KeySource) -> str:
    """How an issuer's keys are found, never the keys (a static set may hold HMAC secrets)."""
    if isinstance(source, StaticKeys):
        return f"static({len(source.keyset)})"
    if isinstance(source, JWKSClient):
        return "jwks_url" if source.url is not None else "discovery"
    return repr(source.name)


_PLAIN = re.compile(r"[A-Za-z0-9.:_\-\[\]%]{1,64}\Z").match


def _log_safe(value: str | None) -> str | None:
    """An address as it is when it looks like one, else quoted: no log field can be forged."""
    return value if value is None or _PLAIN(value) else repr(value[:64])


def fingerprint(token: object) -> str:
    """A short, non-reversible fingerprint of a token for logs (never log the token)."""
    if isinstance(token, str):
        data = token.encode("utf-8", "replace")
    elif isinstance(token, bytes):
        data = token
    else:
        return "-"
    return "sha256:" + hashlib.sha256(data).hexdigest()[:12]


class TokenVerifier:
    """Verifies bearer tokens: signature, header rules, and claims, for one or more issuers.

    Args:
        issuer: the trusted ``iss`` (exact match). Or pass ``issuers=[Issuer(...), ...]``, which
            may hold :class:`~jwt_guard.core._tenants.IssuerTemplate` entries too (multi-tenant
            issuers, tried after every exact one).
        audience: accepted ``aud`` value(s); required. ``None`` disables the audience check.
        jwks_url: remote JWK Set; ``jwks``: a static JWK Set dict; ``key_source``: any
            :class:`~jwt_guard.sources.base.KeySource` (a ``JWKSFile``, your own); none of
            them: OpenID discovery.
        algorithms: allowlist (default: every supported algorithm; each key admits only
            the algorithms of its own type, so an RSA key never verifies an HS256 token).
        leeway: seconds of clock skew tolerated on ``exp``, ``nbf``, ``iat`` (default 60).
            Every duration takes seconds or a ``datetime.timedelta``.
        require_exp: refuse tokens without ``exp`` (default True).
        max_age: refuse tokens whose ``iat`` is older than this many seconds (the leeway is
            not added: ``now - iat <= max_age``).
        required_claims: claims that must be present.
        typ: required ``typ`` header, e.g. ``"at+jwt"`` (RFC 9068).
        scope_claims: claim paths scopes are read from (default ``("scope", "scp")``).
        claims_check: ``f(claims)``, sync or async; raise ``InvalidClaim`` or return ``False``
            to refuse.
        is_revoked: ``f(claims) -> bool``, sync or async (e.g. a ``jti`` deny list).
        max_token_size: longest accepted token, in characters (default 8192).
        token_cache_size: verified tokens remembered (0 turns the cache off). An entry never
            outlives the token's ``exp`` or the key that verified it; time claims and hooks are
            re-checked on every use.
        token_cache_ttl: longest time a verified token is remembered (default 300 s).
        token_cache_bytes: memory budget of the token cache (default 64 MiB), against an
            estimate of each entry made when it is stored that never falls below its real size.
        clock: ``time.time``-like callable: the wall clock, for ``exp``, ``nbf`` and ``iat``.
        monotonic: ``time.monotonic``-like callable every interval is measured on (key-set
            lifetimes, refresh, cool-down, back-off, the token cache's lifetime), so a step of
            the wall clock moves none of them. Inject both in tests.
        jwks_options: a :class:`~jwt_guard.sources.options.JWKSOptions` (or a dict of its
            fields) for each remote JWKS: timeouts, cache lifetimes, ``max_stale``,
            ``allow_http``, ``session``... A ``ConfigurationError`` when no issuer has a
            remote JWKS (they would do nothing).
        observer: a :class:`~jwt_guard.events.GuardObserver` that receives every outcome.
        store: the state a fleet shares (``jwt_guard.stores.fleet.Stores``): a ``Stores``, a
            URL (``"redis://host:6379/0"``) or a dict of ``Stores.from_url`` options. Its
            deny-list is checked on every request, cached tokens included (one lookup in a
            local replica), its key-set store shares JWKS fetches, its replay store serves
            DPoP. ``None``: this process's own deny-list in memory, made on first use of
            :attr:`revocations`.
        revocation: a ``RevocationStore`` of your own, checked like ``store``'s (give one or
            the other).

    Example::

        verifier = TokenVerifier(issuer="https://idp.example.com/", audience="my-api")
        claims = verifier.verify(token)        # or: await verifier.averify(token)
        claims.subject, claims.scopes
    """

    def __init__(
        self,
        *,
        issuer: str | None = None,
        audience: str | Sequence[str] | _Unset | None = _UNSET,
        jwks_url: str | None = None,
        jwks: Mapping[str, Any] | None = None,
        key_source: KeySource | None = None,
        algorithms: Sequence[str] | None = None,
        leeway: float | timedelta = 60,
        issuers: Iterable[Issuer | IssuerTemplate] | None = None,
        require_exp: bool = True,
        max_age: float | timedelta | None = None,
        required_claims: Sequence[str] = (),
        typ: str | None = None,
        scope_claims: Sequence[str] = DEFAULT_SCOPE_CLAIMS,
        claims_check: Hook | None = None,
        is_revoked: Hook | None = None,
        max_token_size: int = DEFAULT_MAX_TOKEN_SIZE,
        token_cache_size: int = 4096,
        token_cache_ttl: float | timedelta = 300.0,
        token_cache_bytes: int = DEFAULT_CACHE_BYTES,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        jwks_options: JWKSOptions | Mapping[str, Any] | None = None,
        observer: GuardObserver | None = None,
        store: Stores | str | Mapping[str, Any] | None = None,
        revocation: RevocationStore | None = None,
    ) -> None:
        own = "TokenVerifier"
        templates: list[IssuerTemplate] = []
        if issuers is not None:
            if any(v is not None for v in (issuer, jwks_url, jwks, key_source)):
                raise ConfigurationError("give issuer=... or issuers=[Issuer(...)], not both")
            if not isinstance(audience, _Unset):
                raise ConfigurationError(
                    "with issuers=, give each Issuer(...) its own audience, not audience="
                )
            if isinstance(issuers, (str, bytes, Mapping, Issuer, IssuerTemplate)) or not isinstance(
                issuers, Iterable
            ):
                raise ConfigurationError(
                    f"{own}(issuers=...): must be a list of Issuer(...), "
                    f"not {type(issuers).__name__!r}"
                )
            configs = []
            for cfg in issuers:
                if isinstance(cfg, IssuerTemplate):
                    templates.append(cfg)
                elif isinstance(cfg, Issuer):
                    configs.append(cfg)
                else:
                    raise ConfigurationError(
                        f"{own}(issuers=...): every item must be an Issuer(...) or an "
                        f"IssuerTemplate(...), not {type(cfg).__name__!r}"
                    )
        elif issuer is None:
            raise ConfigurationError("issuer= is required: the exact 'iss' your provider uses")
        elif isinstance(audience, _Unset):
            raise ConfigurationError(
                "audience= is required: the 'aud' your API expects "
                "(audience=None turns the check off; do that only if the issuer serves no one else)"
            )
        else:
            check_issuer_fields(
                own, issuer, audience, jwks_url, jwks, algorithms, key_source=key_source
            )
            configs = [Issuer(issuer, audience, jwks_url, jwks, algorithms, key_source=key_source)]
        if not configs and not templates:
            raise ConfigurationError("issuers= must name at least one Issuer")
        check_algorithms(own, algorithms)
        self.leeway = duration(own, "leeway", leeway)
        max_age = None if max_age is None else duration(own, "max_age", max_age, allow_zero=False)
        require_exp = check_flag(own, "require_exp", require_exp)
        required = check_names(own, "required_claims", required_claims) or ()
        scope_claims = check_names(own, "scope_claims", scope_claims) or ()
        self.typ = normalize_typ(check_text(own, "typ", typ, optional=True))
        check_callable(own, "claims_check", claims_check)
        check_callable(own, "is_revoked", is_revoked)
        check_callable(own, "clock", clock, optional=False)
        check_callable(own, "monotonic", monotonic, optional=False)
        if observer is not None and not all(
            callable(getattr(observer, event, None)) for event in _OBSERVER_EVENTS
        ):
            raise ConfigurationError(
                f"{own}(observer=...): must be a GuardObserver (or have its methods "
                f"{', '.join(_OBSERVER_EVENTS)}), not {type(observer).__name__!r}"
            )
        self.max_token_size = positive_int(own, "max_token_size", max_token_size, minimum=64)
        cache_size = positive_int(own, "token_cache_size", token_cache_size)
        cache_bytes = positive_int(own, "token_cache_bytes", token_cache_bytes)
        cache_ttl = duration(own, "token_cache_ttl", token_cache_ttl, allow_zero=False)
        options = check_jwks_options(own, jwks_options)
        given = jwks_options is not None and not (
            isinstance(jwks_options, Mapping) and not jwks_options  # {}: nothing given
        )
        remote_templates = any(t.jwks_url is not None or t.discovery is not None for t in templates)
        if given and not any(is_remote(cfg) for cfg in configs) and not remote_templates:
            raise ConfigurationError(
                f"{own}(jwks_options=...): jwks_options apply to a remote JWKS only (jwks_url= "
                "or discovery), and no issuer here has one: drop jwks_options"
            )
        self.clock, self.monotonic = clock, monotonic
        self.observer = observer
        stores = self._stores_option(own, store, revocation, clock)
        self._claims_check = claims_check
        self._is_revoked = is_revoked
        # Hooks declared async need averify(); the WSGI adapters refuse them at construction.
        self.async_hooks = any(inspect.iscoroutinefunction(h) for h in (claims_check, is_revoked))
        self._has_hooks = claims_check is not None or is_revoked is not None
        self._told_awaitable = False
        self._jwks_options = jwks_defaults(options, clock, monotonic, observer)
        if stores is not None and stores.keysets is not None and _keyset_free(self._jwks_options):
            self._jwks_options = dataclasses.replace(
                self._jwks_options, keyset_store=stores.keysets
            )
        self._issuers: dict[str, IssuerState] = {}
        for cfg in configs:
            if cfg.issuer in self._issuers:
                raise ConfigurationError(f"issuer {cfg.issuer!r} is configured twice")
            self._issuers[cfg.issuer] = build_state(
                cfg,
                algorithms,
                require_exp,
                max_age,
                required,
                scope_claims,
                leeway=self.leeway,
                monotonic=monotonic,
                jwks_options=self._jwks_options,
            )
        # Templates are tried only when no exact issuer matches (core/_tenants.py).
        self._tenancy: Tenancy | None = None
        if templates:
            self._tenancy = build_tenancy(
                templates,
                tuple(self._issuers),
                algorithms,
                require_exp,
                max_age,
                required,
                scope_claims,
                leeway=self.leeway,
                monotonic=monotonic,
                jwks_options=self._jwks_options,
            )
            self.async_hooks = self.async_hooks or self._tenancy.is_async
        self._allowed = frozenset().union(
            *(s.allowed for s in self._issuers.values()),
            *(t.allowed for t in (self._tenancy.issuers if self._tenancy else ())),
        )
        # First in first out with a deadline per entry, bounded in count and in bytes.
        self._cache = (
            TokenCache(cache_size, cache_bytes, cache_ttl, self.leeway, clock, monotonic)
            if cache_size > 0 and cache_bytes > 0
            else None
        )
        # The deny-list: its request-path lookup (None: no list yet, nothing to look up).
        self._store: Stores | None = stores
        # A store built here (from a URL or a dict) is the verifier's to close.
        self._owns_store = stores is not None and not isinstance(store, Stores)
        self._given_store = isinstance(store, Stores)
        self._store_lock = threading.Lock()
        self._revoked: Lookup | None = None
        if stores is not None:
            stores.observe(observer)
            self._revoked = stores.revocation.is_revoked
            stores.start()  # a shared deny-list starts loading now, in the background
        # What cached() asks: the cache, unless hooks must run on every use.
        self._answering_cache = None if self._has_hooks else self._cache

    def _stores_option(
        self,
        own: str,
        store: object,
        revocation: RevocationStore | None,
        clock: Callable[[], float],
    ) -> Stores | None:
        if revocation is not None:
            if store is not None:
                raise ConfigurationError(
                    f"{own}: give revocation= or store=, not both "
                    "(a deny-list of your own inside a bundle: store=Stores(revocation=...))"
                )
            return Stores(revocation=revocation)
        return Stores.coerce(own, store, clock=clock)

    def __repr__(self) -> str:
        issuers = ", ".join(
            [
                f"{iss!r}: audience={_audiences(state)}, keys={_source_kind(state.source)}"
                for iss, state in self._issuers.items()
            ]
            + (self._tenancy.describe() if self._tenancy is not None else [])
        )
        cache = "off" if self._cache is None else f"{self._cache.maxsize} tokens"
        store = "" if self._store is None else f", store={self._store!r}"
        return (
            f"TokenVerifier(issuers={{{issuers}}}, algorithms={len(self._allowed)} allowed, "
            f"leeway={self.leeway:g}s, cache={cache}{store})"
        )

    @classmethod
    def from_env(
        cls,
        prefix: str = "JWT_GUARD_",
        *,
        environ: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> TokenVerifier:
        """Build a verifier from ``JWT_GUARD_*`` environment variables (see the README table).

        Keyword ``overrides`` win over the environment. Bad values and unknown variables under
        the prefix raise ``ConfigurationError`` naming the variable.

        Example::

            # JWT_GUARD_ISSUER=https://idp.example.com/  JWT_GUARD_AUDIENCE=my-api
            verifier = TokenVerifier.from_env()
        """
        options = verifier_options_from_env(prefix, environ)
        from_env = options.pop("jwks_options", {})
        jwks_options = overrides.pop("jwks_options", None)
        if from_env and isinstance(jwks_options, Mapping):
            jwks_options = {**from_env, **jwks_options}
        elif from_env and jwks_options is not None:
            raise ConfigurationError(
                f"{prefix}JWKS_* variables are set and jwks_options= is not a dict to merge "
                "them with: give jwks_options as a dict, or unset the variables"
            )
        template = options.pop("issuer_template", None)
        options.update(overrides)
        jwks_options = jwks_options if jwks_options is not None else from_env or None
        if jwks_options is not None:
            options["jwks_options"] = jwks_options
        if template is not None:
            options = template_options(prefix, options, template)
        if "issuer" not in options and "issuers" not in options:
            raise ConfigurationError(
                f"set {prefix}ISSUER (or {prefix}ISSUERS, or {prefix}ISSUER_TEMPLATE) to "
                "configure jwt_guard"
            )
        if "issuer" in options and "audience" not in options:
            raise ConfigurationError(
                f"set {prefix}AUDIENCE (the value 'none' turns the audience check off)"
            )
        return cls(**options)

    # -- public API ------------------------------------------------------------------------

    @property
    def issuers(self) -> tuple[str, ...]:
        """The configured exact issuers (not the templates: see :attr:`templates`)."""
        return tuple(self._issuers)

    @property
    def templates(self) -> tuple[str, ...]:
        """The configured issuer templates (``IssuerTemplate``), each template string."""
        if self._tenancy is None:
            return ()
        return tuple(s.text for _, s in self._tenancy.shapes)

    def key_sources(self) -> dict[str, KeySource]:
        """The key source of each issuer (for health checks and prefetching): the one given
        as ``key_source=`` itself, or the one the verifier built; an ``IssuerTemplate``'s one
        shared source is named by its templates."""
        return {
            name: source.source if isinstance(source, CheckedSource) else source
            for name, source in self._sources().items()
        }

    def _sources(self) -> dict[str, KeySource]:
        """Every key source as the verifier calls it (an app's own behind its checker)."""
        sources = {iss: state.source for iss, state in self._issuers.items()}
        if self._tenancy is not None:
            sources.update(self._tenancy.key_sources())
        return sources

    def verify(self, token: str | bytes, *, client: str | None = None) -> Claims:
        """Verify ``token``: its ``Claims``, or a ``JWTGuardError`` (never any other exception).

        May block on a JWKS fetch; in async code use :meth:`averify`. ``client`` (an address)
        only goes into the rejection log line.

        Raises ``ConfigurationError`` on every call, whatever the token, when ``claims_check``
        or ``is_revoked`` is an ``async def`` (``async_hooks``): ``verify`` cannot await it. A
        hook that returns an awaitable without being declared async refuses every token it sees
        with ``InvalidToken`` instead (logged once at ERROR).
        """
        if self.async_hooks:
            raise ConfigurationError(
                "TokenVerifier.verify() cannot await the async claims_check/is_revoked hook (or "
                "IssuerTemplate tenants= function): call averify(), or give a synchronous one"
            )
        try:
            cache = self._cache
            claims = (
                cache.get(token)
                if cache is not None and type(token) is str and cache.holds(token)
                else None
            )
            cached = claims is not None
            if claims is None:
                try:
                    prepared = self._prepare(token)  # (state, kid, ...)
                except AwaitTenant as pending:  # an async tenant check: verify() cannot await
                    pending.refuse()
                    raise
                keyset = prepared[0].source.keys_for(prepared[1])
                claims = self._finish(token, prepared, keyset)
            revoked = self._revoked  # the deny-list: one lookup in a local replica
            if revoked is not None and revoked(*_fields(claims)):
                raise _revoked()
            if self._has_hooks:
                self._hooks_result(self._sync_results(self._call_hooks(claims)))
        except JWTGuardError as exc:  # every refusal is logged once, then raised
            self.rejected(exc, token, client)
            raise
        except Exception as exc:  # and any other exception becomes one
            error = self._unexpected(exc)
            self.rejected(error, token, client)
            raise error from exc
        if self.observer is not None:
            emit(self.observer.verified, claims["iss"], cached)
        return claims

    async def averify(self, token: str | bytes, *, client: str | None = None) -> Claims:
        """Verify ``token`` without blocking the event loop (JWKS fetches run in a thread)."""
        try:
            cache = self._cache
            claims = (
                cache.get(token)
                if cache is not None and type(token) is str and cache.holds(token)
                else None
            )
            cached = claims is not None
            if claims is None:
                try:
                    prepared = self._prepare(token)  # (state, kid, ...)
                except AwaitTenant as pending:  # an async tenant check, before any key fetch
                    prepared = await pending.resolve()
                keyset = await prepared[0].source.akeys_for(prepared[1])
                claims = self._finish(token, prepared, keyset)
            revoked = self._revoked  # the deny-list: one lookup in a local replica
            if revoked is not None and revoked(*_fields(claims)):
                raise _revoked()
            if self._has_hooks:
                results = self._call_hooks(claims)
                self._hooks_result([await r if inspect.isawaitable(r) else r for r in results])
        except JWTGuardError as exc:
            self.rejected(exc, token, client)
            raise
        except Exception as exc:
            error = self._unexpected(exc)
            self.rejected(error, token, client)
            raise error from exc
        if self.observer is not None:
            emit(self.observer.verified, claims["iss"], cached)
        return claims

    def cached(self, token: str, client: str | None = None) -> Claims | None:
        """The claims of ``token`` if the verified-token cache answers for it, else ``None``.

        The middlewares' fast path for repeated tokens: no coroutine, no parsing. Time-based
        claims are re-checked (a refusal raises and is logged like any other). ``None`` when
        the cache is off, does not hold the token, or hooks must run: call :meth:`verify` or
        :meth:`averify` then.
        """
        cache = self._answering_cache
        if cache is None or type(token) is not str:
            return None
        try:
            claims = cache.get(token)
            revoked = self._revoked  # the deny-list: one lookup in a local replica
            if revoked is not None and claims is not None:
                # (jti, sub, iat), worked out once per verified token and kept with its claims
                fields = claims._memo.get(_REVOCATION_FIELDS) or _fields(claims)
                if revoked(*fields):
                    raise _revoked()
        except JWTGuardError as exc:
            self.rejected(exc, token, client)
            raise
        if claims is not None and self.observer is not None:
            emit(self.observer.verified, claims["iss"], True)
        return claims

    def rejected(self, exc: JWTGuardError, token: object = None, client: str | None = None) -> None:
        """Log a refusal once and tell the observer (the middlewares call this for header errors).

        The log line holds the error code, the issuer and kid the token named, the client
        address and a fingerprint of the token, never the token itself.
        """
        level = logging.WARNING if exc.status >= 500 else logging.INFO
        log = logger.isEnabledFor(level)
        if not log and self.observer is None:
            return  # junk traffic costs no second parse when nobody listens
        issuer, kid = self._describe(token)
        if log:
            logger.log(
                level,
                "rejected code=%s status=%d iss=%s kid=%s client=%s token=%s detail=%s",
                exc.code,
                exc.status,
                issuer,
                kid,
                _log_safe(client),
                fingerprint(token),
                safe(exc.detail, 500),
            )
        if self.observer is not None:
            emit(self.observer.rejected, exc.code, issuer)

    def _describe(self, token: object) -> tuple[str | None, str | None]:
        """The configured issuer and the kid a token names, for the log (best effort)."""
        if not isinstance(token, str):
            return None, None
        try:
            parsed = parse(token, self.max_token_size)
            payload = loads_object(parsed.payload)
        except (JWTGuardError, ValueError):
            return None, None
        iss = payload.get("iss")
        kid = parsed.header.get("kid")
        return (
            iss if isinstance(iss, str) and self._is_known(iss) else None,
            repr(kid[:64]) if isinstance(kid, str) else None,
        )

    def _is_known(self, iss: str) -> bool:
        """A configured issuer, or a tenant's issuer a template admitted (safe to log)."""
        return iss in self._issuers or (self._tenancy is not None and self._tenancy.admitted(iss))

    def prefetch(self, *, store: bool = True) -> None:
        """Have every key source get its keys now (start-up): a remote JWKS is fetched, a file
        checked, a static set does nothing. Raises ``KeysUnavailable`` on failure.

        With a shared deny-list (and ``store``), also waits, at most 5 s, for its replica to
        load: until then requests would be refused with 503. A store that does not answer is
        not an error here: requests get its policy (``on_stale``), ``health()`` reports it.
        """
        if store and self._store is not None:
            self._store.wait_ready(_STORE_READY_TIMEOUT)
        for source in self._sources().values():
            source.prefetch()

    async def aprefetch(self, *, store: bool = True) -> None:
        """Like :meth:`prefetch`, without blocking the event loop."""
        if store and self._store is not None:
            await asyncio.to_thread(self._store.wait_ready, _STORE_READY_TIMEOUT)
        for source in self._sources().values():
            await source.aprefetch()

    def health(self) -> dict[str, Any]:
        """Per issuer: when its keys were fetched, their age, staleness, the last error; and
        the shared store, when there is one.

        ``{"ok": bool, "issuers": {iss: {...}}, "store": {...}}``; ``ok`` is false when an issuer
        has no usable keys, or while the deny-list refuses requests (its replica too old, with
        ``on_stale="refuse"``). ``"store"`` only when the verifier has one.
        """
        issuers = {name: source.status() for name, source in self._sources().items()}
        report: dict[str, Any] = {
            "ok": all(s["usable"] for s in issuers.values()),
            "issuers": issuers,
        }
        if self._store is not None:
            store = self._store.status()
            report["store"] = store
            report["ok"] = report["ok"] and bool(store["ok"])
        return report

    # -- the shared state (store=) ---------------------------------------------------------

    @property
    def configured_store(self) -> Stores | None:
        """The stores given as ``store=`` (a URL, a dict or a ``Stores``), or ``None``: unlike
        :attr:`store`, reading it makes nothing. The middlewares give its DPoP replay store to
        the proof checks, so a fleet on one store refuses a proof replayed to another worker."""
        return self._store if self._owns_store or self._given_store else None

    @property
    def store(self) -> Stores:
        """The verifier's stores: the one given as ``store=``, or this process's own (a
        deny-list and a DPoP replay store in memory, made on first use). From then on its
        deny-list is checked on every request."""
        store = self._store
        if store is None:
            with self._store_lock:
                if self._store is None:
                    built = Stores.memory(clock=self.clock)
                    self._store, self._owns_store = built, True
                    self._revoked = built.revocation.is_revoked
                store = self._store
        return store

    @property
    def revocations(self) -> Revocations:
        """Revoke tokens and subjects in the verifier's deny-list (``store``'s): refused as
        ``revoked`` (401) from then on, cached tokens included.

        Example::

            verifier.revocations.revoke(claims["jti"], until=claims["exp"])
            verifier.revocations.revoke_subject("alice")  # tokens alice was issued until now
        """
        return Revocations(self.store.revocation, clock=self.clock)

    def close(self) -> None:
        """Stop the background work of a store this verifier built (from a URL or a dict) and
        close its connections. A ``Stores`` given to it is yours to close."""
        if self._store is not None and self._owns_store:
            self._store.close()

    # -- the steps -------------------------------------------------------------------------

    def _prepare(self, token: Any) -> _Prepared:
        """Parse ``token`` and pick its issuer: what :meth:`_finish` needs once it has the key
        set (``brackets`` counts the ``{`` and ``[`` of the raw payload: 1, no nested value).

        An ``iss`` no exact issuer has goes to the issuer templates, whose tenant check runs
        here, before any key is fetched; an async one raises ``AwaitTenant``, and ``averify``
        carries on with what its ``resume`` makes of the admitted state."""
        header, raw_payload, signing_input, signature = _split_jws(token, self.max_token_size)
        alg, kid = check_header(header, self._allowed, self.typ)
        try:
            payload, brackets = loads_counted(raw_payload)
        except ValueError as exc:
            raise MalformedToken(f"payload is not a JSON object: {exc}") from None

        def prepared(state: IssuerState) -> _Prepared:
            if alg not in state.allowed:
                check_header(header, state.allowed)  # raises AlgorithmNotAllowed
            return state, kid, alg, signing_input, signature, payload, raw_payload, brackets

        iss = payload.get("iss")
        state = self._issuers.get(iss) if isinstance(iss, str) else None
        if state is None:
            tenancy = self._tenancy
            if tenancy is None:
                raise _issuer_mismatch(iss, tuple(self._issuers))
            try:
                state = tenancy.state_for(iss, payload)
            except AwaitTenant as pending:
                pending.resume = prepared  # averify carries on once the tenant check answered
                raise
        return prepared(state)

    def _finish(self, token: Any, prepared: _Prepared, keyset: KeySet) -> Claims:
        state, kid, alg, signing_input, signature, payload, raw_payload, brackets = prepared
        _verify_signature(signing_input, signature, keyset, alg, kid)
        now = self.clock()
        times = _claim_times(payload, state.rules, now)
        scopes = extract_scopes(payload, state.scope_claims)
        claims = _adopt_claims(payload, scopes, brackets == 1)
        if state.tenant is not None:
            set_tenant(claims, state.tenant)
        if self._cache is not None and isinstance(token, str):
            members = len(payload) if brackets == 1 else None  # flat: no need to count bytes
            self._cache.put(
                token, claims, scopes, state, kid, alg, keyset, times, raw_payload, members, now
            )
        return claims

    def _call_hooks(self, claims: Claims) -> list[Any]:
        results: list[Any] = []
        if self._is_revoked is not None:
            results.append(self._is_revoked(claims))
        if self._claims_check is not None:
            results.append(self._claims_check(claims))
        return results

    def _sync_results(self, results: list[Any]) -> list[Any]:
        """Hook results for ``verify``, which cannot await: an awaitable (from an async callable
        object, or a lambda returning a coroutine) refuses the token, never counts as a result
        (an un-awaited coroutine is truthy: a claims_check refusing everything would let all in).
        """
        for result in results:
            if inspect.isawaitable(result):
                for pending in results:
                    if inspect.iscoroutine(pending):
                        pending.close()
                if not self._told_awaitable:
                    self._told_awaitable = True  # a programming error: say it once, not per request
                    logger.error(
                        "a claims_check/is_revoked hook returned an awaitable under verify(), "
                        "which cannot await it: every token it sees is refused; call averify() "
                        "or make the hook synchronous"
                    )
                raise InvalidToken("a hook returned an awaitable, which verify() cannot await")
        return results

    def _hooks_result(self, results: list[Any]) -> None:
        index = 0
        if self._is_revoked is not None:
            if results[0]:
                raise RevokedToken("the revocation hook refused the token")
            index = 1
        if self._claims_check is not None and results[index] is False:
            raise InvalidClaim("the custom claims check refused the token")

    def _unexpected(self, exc: Exception) -> InvalidToken:
        logger.error(
            "unexpected error while verifying a token: %s", type(exc).__name__, exc_info=exc
        )
        return InvalidToken(f"token could not be verified ({type(exc).__name__})")
