"""The event interface: every outcome of verification and of the key sources, for metrics.

Subclass :class:`GuardObserver` and override what you need; pass it as
``TokenVerifier(..., observer=...)``. Every method is called synchronously on the thread that
saw the event, so keep it cheap (increment a counter). Exceptions raised by an observer are
logged and swallowed: metrics never decide whether a request is let in. With no observer
configured the hooks cost one ``is None`` test.

Example with ``prometheus_client``::

    from prometheus_client import Counter

    VERIFIED = Counter("jwt_verified_total", "Verified tokens", ["issuer", "cached"])
    REJECTED = Counter("jwt_rejected_total", "Rejected tokens", ["code"])

    class Metrics(GuardObserver):
        def verified(self, issuer: str, cached: bool) -> None:
            VERIFIED.labels(issuer, str(cached).lower()).inc()

        def rejected(self, code: str, issuer: str | None) -> None:
            REJECTED.labels(code).inc()

    verifier = TokenVerifier(issuer=..., audience=..., observer=Metrics())
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import ParamSpec

from ._logsafe import exc_info, safe

__all__ = ["GuardObserver", "emit"]

logger = logging.getLogger("jwt_guard.events")


class GuardObserver:
    """Receives jwt_guard's events; every method is a no-op until overridden."""

    def verified(self, issuer: str, cached: bool) -> None:
        """A token was accepted; ``cached`` when the verified-token cache answered."""

    def rejected(self, code: str, issuer: str | None) -> None:
        """A token (or a request without one) was refused with error ``code``.

        ``issuer`` is the configured issuer the token named, or ``None``.
        """

    def keys_fetched(self, source: str, keys: int, seconds: float) -> None:
        """A key set was fetched from ``source`` holding ``keys`` usable keys."""

    def keys_failed(self, source: str, error: str) -> None:
        """A fetch from ``source`` failed with ``error`` (a short description)."""

    def keys_stale(self, source: str, age: float) -> None:
        """A request was answered with a key set past its lifetime (``age`` seconds old)."""

    def unknown_kid(self, source: str, kid: str | None) -> None:
        """A token named a kid the key set does not hold."""

    # -- the shared stores (``store=``): ``store`` is ``"revocation"``, ``"replay"`` or
    # ``"keysets"``, never a URL or a key, so it makes a bounded metric label.

    def store_latency(self, store: str, operation: str, seconds: float) -> None:
        """A call to a shared store answered after ``seconds`` (``operation``: what was asked,
        e.g. ``"first_use"``, ``"get"``, ``"revoke"``, ``"resync"``)."""

    def store_error(self, store: str, operation: str, error: str) -> None:
        """A call to a shared store failed or timed out (``error``: a short description)."""

    def replica_lag(self, store: str, seconds: float) -> None:
        """A change to the shared deny-list reached this process's replica ``seconds`` after it
        was made (clocks of two hosts: small negative skews read as 0)."""

    def replica_resync(self, store: str, reason: str) -> None:
        """This process's replica reloaded the whole list (a reconnect, a missed change, a
        restarted or flushed store)."""


P = ParamSpec("P")


def emit(hook: Callable[P, object], *args: P.args, **kwargs: P.kwargs) -> None:
    """Call one observer method, ``emit(observer.rejected, code, issuer)``; log and swallow
    anything it raises.

    ``hook`` is the bound method itself, so mypy checks the arguments against
    :class:`GuardObserver`'s signature (a misspelt event is an attribute error, not a silent
    no-op).
    """
    if isinstance(hook, GuardObserver):  # the old emit(observer, "name", ...) form
        raise TypeError("emit() takes a bound observer method: emit(observer.rejected, ...)")
    try:
        hook(*args, **kwargs)
    except Exception as exc:
        owner = getattr(hook, "__self__", hook)
        logger.error(
            "observer %s.%s raised; ignored: %s",
            type(owner).__name__,
            getattr(hook, "__name__", "?"),
            safe(exc),
            exc_info=exc_info(exc),
        )
