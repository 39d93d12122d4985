"""``TokenVerifier``: a bearer token in, verified ``Claims`` or a precise ``JWTGuardError`` out."""

from __future__ import annotations

import hashlib
import inspect
import logging
import re
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
from ..sources.jwks import JWKSClient
from ._env import verifier_options_from_env
from ._issuers import (
    Issuer,
    IssuerState,
    KeySource,
    StaticKeys,
    build_state,
    check_algorithms,
    check_callable,
    check_flag,
    check_issuer_fields,
    check_jwks_options,
    check_names,
    check_text,
)
from ._tokencache import DEFAULT_CACHE_BYTES, TokenCache
from .claims import (
    DEFAULT_SCOPE_CLAIMS,
    Claims,
    _adopt_claims,
    _claim_times,
    _issuer_mismatch,
    extract_scopes,
)
from .jws import (
    DEFAULT_MAX_TOKEN_SIZE,
    _split_jws,
    _verify_signature,
    check_header,
    normalize_typ,
    parse,
)

__all__ = ["Issuer", "StaticKeys", "TokenVerifier", "fingerprint"]

logger = logging.getLogger("jwt_guard.verifier")

Hook = Callable[[Claims], Any | Awaitable[Any]]


class _Unset:
    """The type of a required option left out."""


_UNSET = _Unset()


_Prepared = tuple[IssuerState, "str | None", str, bytes, bytes, dict[str, Any], bytes, int]
"""What ``_prepare`` hands ``_finish``: the issuer's state, kid, alg, signing input, signature,
payload (parsed and raw) and its bracket count. A tuple: nothing is built per token."""

_OBSERVER_EVENTS = tuple(name for name in vars(GuardObserver) if not name.startswith("_"))


def _audiences(state: IssuerState) -> str:
    audiences = state.rules.audiences
    return "None" if audiences is None else repr(sorted(audiences))


def _source_kind(source: KeySource) -> str:
    """How an issuer's keys are found, never the keys (a static set may hold HMAC secrets)."""
    if isinstance(source, StaticKeys):
        return f"static({len(source.keyset)})"
    return "jwks_url" if source.url is not None else "discovery"


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
        issuer: the trusted ``iss`` (exact match). Or pass ``issuers=[Issuer(...), ...]``.
        audience: accepted ``aud`` value(s); required. ``None`` disables the audience check.
        jwks_url: remote JWK Set; ``jwks``: a static JWK Set dict; neither: OpenID discovery.
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
        jwks_options: keyword arguments for each :class:`~jwt_guard.sources.jwks.JWKSClient`
            (timeouts, cache lifetimes, ``max_stale``, ``allow_http``, ``session``...).
        observer: a :class:`~jwt_guard.events.GuardObserver` that receives every outcome.

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
        algorithms: Sequence[str] | None = None,
        leeway: float | timedelta = 60,
        issuers: Iterable[Issuer] | None = None,
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
        jwks_options: Mapping[str, Any] | None = None,
        observer: GuardObserver | None = None,
    ) -> None:
        own = "TokenVerifier"
        if issuers is not None:
            if issuer is not None or jwks_url is not None or jwks is not None:
                raise ConfigurationError("give issuer=... or issuers=[Issuer(...)], not both")
            if not isinstance(audience, _Unset):
                raise ConfigurationError(
                    "with issuers=, give each Issuer(...) its own audience, not audience="
                )
            if isinstance(issuers, (str, bytes, Mapping, Issuer)) or not isinstance(
                issuers, Iterable
            ):
                raise ConfigurationError(
                    f"{own}(issuers=...): must be a list of Issuer(...), "
                    f"not {type(issuers).__name__!r}"
                )
            configs = list(issuers)
            for cfg in configs:
                if not isinstance(cfg, Issuer):
                    raise ConfigurationError(
                        f"{own}(issuers=...): every item must be an Issuer(...), "
                        f"not {type(cfg).__name__!r}"
                    )
        elif issuer is None:
            raise ConfigurationError("issuer= is required: the exact 'iss' your provider uses")
        elif isinstance(audience, _Unset):
            raise ConfigurationError(
                "audience= is required: the 'aud' your API expects "
                "(audience=None turns the check off; do that only if the issuer serves no one else)"
            )
        else:
            check_issuer_fields(own, issuer, audience, jwks_url, jwks, algorithms)
            configs = [Issuer(issuer, audience, jwks_url, jwks, algorithms)]
        if not configs:
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
        self._jwks_options = check_jwks_options(own, jwks_options)
        self.clock, self.monotonic = clock, monotonic
        self.observer = observer
        self._claims_check = claims_check
        self._is_revoked = is_revoked
        # Hooks declared async need averify(); the WSGI adapters refuse them at construction.
        self.async_hooks = any(inspect.iscoroutinefunction(h) for h in (claims_check, is_revoked))
        self._has_hooks = claims_check is not None or is_revoked is not None
        self._told_awaitable = False
        self._jwks_options.setdefault("clock", clock)
        self._jwks_options.setdefault("monotonic", monotonic)
        self._jwks_options.setdefault("observer", observer)
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
        self._allowed = frozenset().union(*(s.allowed for s in self._issuers.values()))
        # First in first out with a deadline per entry, bounded in count and in bytes.
        self._cache = (
            TokenCache(cache_size, cache_bytes, cache_ttl, self.leeway, clock, monotonic)
            if cache_size > 0 and cache_bytes > 0
            else None
        )
        # What cached() asks: the cache, unless hooks must run on every use.
        self._answering_cache = None if self._has_hooks else self._cache

    def __repr__(self) -> str:
        issuers = ", ".join(
            f"{iss!r}: audience={_audiences(state)}, keys={_source_kind(state.source)}"
            for iss, state in self._issuers.items()
        )
        cache = "off" if self._cache is None else f"{self._cache.maxsize} tokens"
        return (
            f"TokenVerifier(issuers={{{issuers}}}, algorithms={len(self._allowed)} allowed, "
            f"leeway={self.leeway:g}s, cache={cache})"
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
        jwks_options = {**options.pop("jwks_options", {}), **overrides.pop("jwks_options", {})}
        options.update(overrides)
        if jwks_options:
            options["jwks_options"] = jwks_options
        if "issuer" not in options and "issuers" not in options:
            raise ConfigurationError(
                f"set {prefix}ISSUER (or {prefix}ISSUERS) to configure jwt_guard"
            )
        if "issuer" in options and "audience" not in options:
            raise ConfigurationError(
                f"set {prefix}AUDIENCE (the value 'none' turns the audience check off)"
            )
        return cls(**options)

    # -- public API ------------------------------------------------------------------------

    @property
    def issuers(self) -> tuple[str, ...]:
        """The configured issuers."""
        return tuple(self._issuers)

    def key_sources(self) -> dict[str, KeySource]:
        """The key source of each issuer (for health checks and prefetching)."""
        return {iss: state.source for iss, state in self._issuers.items()}

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
                "TokenVerifier.verify() cannot await the async claims_check/is_revoked hook: "
                "call averify(), or give a synchronous hook"
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
                prepared = self._prepare(token)  # (state, kid, ...)
                keyset = prepared[0].source.keys_for(prepared[1])
                claims = self._finish(token, prepared, keyset)
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
                prepared = self._prepare(token)  # (state, kid, ...)
                keyset = await prepared[0].source.akeys_for(prepared[1])
                claims = self._finish(token, prepared, keyset)
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
            iss if isinstance(iss, str) and iss in self._issuers else None,
            repr(kid[:64]) if isinstance(kid, str) else None,
        )

    def prefetch(self) -> None:
        """Fetch every remote key set now (start-up); raise ``KeysUnavailable`` on failure."""
        for source in self.key_sources().values():
            if isinstance(source, JWKSClient):
                source.prefetch()

    async def aprefetch(self) -> None:
        """Like :meth:`prefetch`, without blocking the event loop."""
        for source in self.key_sources().values():
            if isinstance(source, JWKSClient):
                await source.aprefetch()

    def health(self) -> dict[str, Any]:
        """Per issuer: when its keys were fetched, their age, staleness, the last error.

        ``{"ok": bool, "issuers": {iss: {...}}}``; ``ok`` is false when an issuer has no
        usable keys.
        """
        issuers = {iss: source.status() for iss, source in self.key_sources().items()}
        return {"ok": all(s["usable"] for s in issuers.values()), "issuers": issuers}

    # -- the steps -------------------------------------------------------------------------

    def _prepare(self, token: Any) -> _Prepared:
        """Parse ``token`` and pick its issuer: what :meth:`_finish` needs once it has the key
        set (``brackets`` counts the ``{`` and ``[`` of the raw payload: 1, no nested value)."""
        header, raw_payload, signing_input, signature = _split_jws(token, self.max_token_size)
        alg, kid = check_header(header, self._allowed, self.typ)
        try:
            payload, brackets = loads_counted(raw_payload)
        except ValueError as exc:
            raise MalformedToken(f"payload is not a JSON object: {exc}") from None
        iss = payload.get("iss")
        state = self._issuers.get(iss) if isinstance(iss, str) else None
        if state is None:
            raise _issuer_mismatch(iss, tuple(self._issuers))
        if alg not in state.allowed:
            check_header(header, state.allowed)  # raises AlgorithmNotAllowed
        return state, kid, alg, signing_input, signature, payload, raw_payload, brackets

    def _finish(self, token: Any, prepared: _Prepared, keyset: KeySet) -> Claims:
        state, kid, alg, signing_input, signature, payload, raw_payload, brackets = prepared
        _verify_signature(signing_input, signature, keyset, alg, kid)
        now = self.clock()
        times = _claim_times(payload, state.rules, now)
        scopes = extract_scopes(payload, state.scope_claims)
        claims = _adopt_claims(payload, scopes, brackets == 1)
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
