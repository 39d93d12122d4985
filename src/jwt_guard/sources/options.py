"""``JWKSOptions``: the settings of a remote JWKS source, typed and checked in one place.

``TokenVerifier(jwks_options=...)`` takes a ``JWKSOptions`` or a dict of its fields (the
environment variables build such a dict); ``JWKSClient`` takes ``options=`` or the same fields as
keyword arguments. Either way a misspelt name or a bad value is a ``ConfigurationError`` at
construction, saying what to write instead.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import requests

from .._options import duration, positive_int
from ..errors import ConfigurationError
from ..events import GuardObserver
from ..stores.base import KeySetStore

__all__ = ["JWKSOptions"]

_OWNER = "JWKSOptions"

Seconds = float | datetime.timedelta

# The JWKSClient arguments a verifier sets itself from the issuer's configuration.
SET_BY_VERIFIER = {
    "url": "jwks_url",
    "discovery_issuer": "issuer",
    "algorithms": "algorithms",
    "allow_oct": "Issuer(allow_remote_oct=...)",
    "discovery_templates": "IssuerTemplate(discovery=...)",
}

_OBSERVER_EVENTS = tuple(name for name in vars(GuardObserver) if not name.startswith("_"))


@dataclass(frozen=True)
class JWKSOptions:
    """How a remote JWK Set is fetched and cached (every field has a safe default).

    Durations take seconds or a ``datetime.timedelta`` and are stored as seconds (``float``).

    Args:
        allow_http: allow plain HTTP to hosts other than loopback (off: without TLS anyone on
            the path can swap the keys).
        allow_link_local: allow link-local and cloud metadata addresses (169.254.0.0/16,
            fe80::/10, fd00:ec2::254...) in the URL, a discovered ``jwks_uri`` or a redirect.
        session: the ``requests.Session`` to fetch with (proxies, CA bundles); one is made if
            omitted.
        timeout: ``(connect, read)`` timeouts.
        total_timeout: deadline of one whole fetch; no request waits on a fetch longer.
        max_bytes: the largest response body accepted.
        default_ttl: key-set lifetime without ``Cache-Control: max-age``; ``min_ttl`` and
            ``max_ttl`` bound whatever the provider says.
        refresh_ahead: fraction of the lifetime after which a background refresh starts.
        cooldown: at most one refetch caused by unknown kids per this many seconds.
        max_stale: how long past its lifetime the last good set keeps serving while fetches
            fail.
        backoff: ``(first, longest)`` wait between failed fetches, doubling in between.
        jitter: spread refreshes and retries so that workers started together do not fetch
            together: each refresh falls at a random point of the last quarter of its
            refresh-ahead interval, each back-off is ``uniform(0, wait)`` (full jitter).
            ``True`` (a system random source), ``False`` (the exact schedule), or a
            ``random()``-like callable in ``[0, 1)`` (deterministic tests, simulations).
        keyset_store: a :class:`~jwt_guard.stores.base.KeySetStore` that shares the last good
            key set with the rest of a fleet (one fetch per refresh for all; a cold worker
            serves while the provider is down). ``None``: the verifier's (``store=``).
        clock: ``time.time``-like; only stamps ``fetched_at`` in ``status()``. ``None``: the
            verifier's own clock (``time.time`` for a ``JWKSClient`` built directly).
        monotonic: ``time.monotonic``-like; every interval runs on it. ``None``: the
            verifier's own (``time.monotonic`` for a ``JWKSClient`` built directly).
        observer: a ``GuardObserver`` told of fetches, failures, stale keys and unknown kids.
            ``None``: the verifier's own.

    Example::

        verifier = TokenVerifier(
            issuer="https://idp.example.com/",
            audience="my-api",
            jwks_options=JWKSOptions(max_stale=timedelta(hours=6), cooldown=60.0),
        )
    """

    allow_http: bool = False
    allow_link_local: bool = False
    session: requests.Session | None = None
    timeout: tuple[Seconds, Seconds] = (3.0, 5.0)
    total_timeout: Seconds = 10.0
    max_bytes: int = 512 * 1024
    default_ttl: Seconds = 300.0
    min_ttl: Seconds = 30.0
    max_ttl: Seconds = 86400.0
    refresh_ahead: float = 0.8
    cooldown: Seconds = 30.0
    max_stale: Seconds = 3600.0
    backoff: tuple[Seconds, Seconds] = (1.0, 60.0)
    jitter: bool | Callable[[], float] = True
    keyset_store: KeySetStore | None = None
    clock: Callable[[], float] | None = None
    monotonic: Callable[[], float] | None = None
    observer: GuardObserver | None = None

    def __post_init__(self) -> None:
        own = _OWNER
        for name in ("allow_http", "allow_link_local"):
            if not isinstance(getattr(self, name), bool):
                raise _bad(name, "True or False", getattr(self, name))
        if self.session is not None and not isinstance(self.session, requests.Session):
            raise _bad("session", "a requests.Session or None", self.session)
        fix = self._fix
        fix("timeout", _pair("timeout", self.timeout))
        fix("total_timeout", duration(own, "total_timeout", self.total_timeout, allow_zero=False))
        positive_int(own, "max_bytes", self.max_bytes, minimum=1)
        for name in ("default_ttl", "min_ttl", "max_ttl", "cooldown", "max_stale"):
            fix(name, duration(own, name, getattr(self, name)))
        if not 0 < _float(self.min_ttl) <= _float(self.default_ttl) <= _float(self.max_ttl):
            raise ConfigurationError(f"{own}: need 0 < min_ttl <= default_ttl <= max_ttl")
        ahead = self.refresh_ahead
        if not isinstance(ahead, (int, float)) or isinstance(ahead, bool) or not 0 < ahead <= 1:
            raise ConfigurationError(f"{own}(refresh_ahead=...): must be a number in (0, 1]")
        fix("refresh_ahead", float(ahead))
        backoff = _pair("backoff", self.backoff)
        if backoff[1] < backoff[0]:
            raise ConfigurationError(f"{own}(backoff=...): the longest wait is below the first")
        fix("backoff", backoff)
        if not isinstance(self.jitter, bool) and not callable(self.jitter):
            raise _bad("jitter", "True, False or a random()-like callable", self.jitter)
        if self.keyset_store is not None and not all(
            callable(getattr(self.keyset_store, member, None))
            for member in ("get", "put", "try_lock", "unlock")
        ):
            raise _bad("keyset_store", "a KeySetStore or None", self.keyset_store)
        for name in ("clock", "monotonic"):
            if getattr(self, name) is not None and not callable(getattr(self, name)):
                raise _bad(name, "a callable or None", getattr(self, name))
        if self.observer is not None and not all(
            callable(getattr(self.observer, event, None)) for event in _OBSERVER_EVENTS
        ):
            raise _bad("observer", "a GuardObserver or None", self.observer)

    def _fix(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)  # frozen: store the normalised value once

    @classmethod
    def coerce(cls, owner: str, value: object) -> JWKSOptions:
        """``value`` as a ``JWKSOptions``: one already, or a mapping of its field names.

        ``owner`` names the option in messages (``"TokenVerifier(jwks_options=...)"``). A name
        the verifier sets itself says which option to use instead; an unknown name suggests
        the closest field; a bad value says what it must be.
        """
        if isinstance(value, JWKSOptions):
            return value
        if not isinstance(value, Mapping):
            raise ConfigurationError(
                f"{owner}: must be a JWKSOptions(...) or a dict of its fields, "
                f"not {type(value).__name__!r}"
            )
        known = [f.name for f in dataclasses.fields(cls)]
        for key in value:
            if key in SET_BY_VERIFIER:
                raise ConfigurationError(
                    f"{owner}: {key!r} is set by the verifier; use {SET_BY_VERIFIER[key]}= instead"
                )
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; known: {sorted(known)}"
                raise ConfigurationError(f"{owner}: unknown JWKS option {key!r:.60}{hint}")
        try:
            return cls(**value)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{owner}: {exc}") from None


def _bad(name: str, expected: str, value: object) -> ConfigurationError:
    return ConfigurationError(
        f"{_OWNER}({name}=...): must be {expected}, not {type(value).__name__!r}"
    )


def _float(value: Seconds) -> float:
    return value.total_seconds() if isinstance(value, datetime.timedelta) else float(value)


def _pair(name: str, value: object) -> tuple[float, float]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ConfigurationError(f"{_OWNER}({name}=...): must be a pair of durations")
    first, second = value
    return (
        duration(_OWNER, name, first, allow_zero=False),
        duration(_OWNER, name, second, allow_zero=False),
    )
