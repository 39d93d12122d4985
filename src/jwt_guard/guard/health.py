"""Ready-made health endpoints for readiness probes: is each issuer's key source usable?

A readiness path is open to anyone, so by default the answer says only that:
``{"ok": true, "issuers": {"https://idp.example.com/": {"ready": true}}}``, status 200 while
every issuer has usable keys, 503 otherwise. A verifier with a shared store adds
``"store": {"ready": ...}``: not ready while its deny-list refuses requests (its replica older
than ``max_staleness`` with ``on_stale="refuse"``). What an operator needs to know why (fetch
errors, the ``jwks_uri``, kids, ages, failure counts) goes to the log (a WARNING when the answer
turns to not ready, an INFO when it is ready again) and stays in ``TokenVerifier.health()``;
pass ``details=True`` to put that full report in the body as well, on a path only your own
infrastructure reaches. When some issuer has no usable keys the probe first tries one fetch
(single flight, bounded by the JWKS timeouts, never inside a back-off), so a pod that has served
no request yet can become ready. Put the endpoint on an open path.

Example (Starlette)::

    app = Starlette(routes=[Route("/ready", health_asgi_app(verifier))])
    app.add_middleware(JWTGuard, verifier=verifier, exclude_paths=["/ready"])

Example (Flask, via Werkzeug's dispatcher)::

    from werkzeug.middleware.dispatcher import DispatcherMiddleware
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/ready": health_wsgi_app(verifier)})
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any

from .._logsafe import safe
from ..core.verifier import TokenVerifier
from ..errors import ConfigurationError, JWTGuardError

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["health_asgi_app", "health_wsgi_app"]

logger = logging.getLogger("jwt_guard.health")

_HEADERS = [("content-type", "application/json"), ("cache-control", "no-store")]


class _Probe:
    """Turns ``verifier.health()`` into the answer, and logs when readiness changes."""

    def __init__(self, verifier: TokenVerifier, details: bool) -> None:
        if not isinstance(details, bool):
            raise ConfigurationError(f"health app: details must be True or False, not {details!r}")
        self.verifier = verifier
        self.details = details
        self._ready: bool | None = None

    def report(self) -> tuple[int, bytes]:
        health = self.verifier.health()
        ok = bool(health["ok"])
        self._log_change(ok, health)
        body = health if self.details else _bare(health)
        return (200 if ok else 503), json.dumps(body, default=str).encode()

    def _log_change(self, ok: bool, health: dict[str, Any]) -> None:
        was, self._ready = self._ready, ok
        if ok == was or (ok and was is None):
            return  # once per change: a probe polled every second must not flood the log
        if ok:
            logger.info("health ready again")
            return
        store = health.get("store")
        if store is not None and not store.get("ok", True):
            revocation = store.get("revocation", {})
            logger.warning(
                "health not ready store=%s staleness=%s last_error=%s",
                safe(revocation.get("url", store.get("kind"))),
                revocation.get("staleness"),
                safe(revocation.get("last_error")),
            )
        for iss, status in health["issuers"].items():
            if not status["usable"]:
                # Why is in the key source's own lines (``jwks fetch failed ... error=...``).
                logger.warning(
                    "health not ready issuer=%s source=%s failures=%s",
                    safe(iss),
                    safe(status.get("source")),
                    status.get("failures"),
                )


def _keys_ready(verifier: TokenVerifier) -> bool:
    return all(status["usable"] for status in verifier.health()["issuers"].values())


def _bare(health: dict[str, Any]) -> dict[str, Any]:
    """Ready or not, per issuer (and the store): nothing about sources, errors or keys."""
    bare: dict[str, Any] = {
        "ok": bool(health["ok"]),
        "issuers": {
            iss: {"ready": bool(status["usable"])} for iss, status in health["issuers"].items()
        },
    }
    if "store" in health:
        bare["store"] = {"ready": bool(health["store"]["ok"])}
    return bare


class _HealthASGI:
    """An ASGI app (a class instance, so Starlette's ``Route`` treats it as one)."""

    def __init__(self, verifier: TokenVerifier, details: bool) -> None:
        self.verifier = verifier
        self._probe = _Probe(verifier, details)

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if not _keys_ready(self.verifier):
            with contextlib.suppress(JWTGuardError):
                await self.verifier.aprefetch(store=False)  # a probe never waits on the store
        status, body = self._probe.report()
        headers = [(k.encode(), v.encode()) for k, v in _HEADERS]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def health_asgi_app(
    verifier: TokenVerifier, *, details: bool = False
) -> Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]:
    """An ASGI app answering every HTTP request with whether each issuer's keys are usable.

    Args:
        verifier: the verifier whose key sources to report on.
        details: put the full ``verifier.health()`` report (sources, errors, kids, ages) in the
            body. Off: an open readiness path would tell anyone which URLs the server fetches
            and what went wrong with them.
    """
    return _HealthASGI(verifier, details)


def health_wsgi_app(verifier: TokenVerifier, *, details: bool = False) -> WSGIApplication:
    """A WSGI app answering every request like :func:`health_asgi_app` (same ``details``)."""
    probe = _Probe(verifier, details)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if not _keys_ready(verifier):
            with contextlib.suppress(JWTGuardError):
                verifier.prefetch(store=False)  # a probe never waits on the store
        status, body = probe.report()
        start_response("200 OK" if status == 200 else "503 Service Unavailable", list(_HEADERS))
        return [body]

    return app
