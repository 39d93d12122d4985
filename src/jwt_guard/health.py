"""Ready-made health endpoints for readiness probes: how each issuer's key source is doing.

The answer is ``TokenVerifier.health()`` as JSON: per issuer, when the keys were last fetched,
their age, whether they are stale (served past their lifetime while the provider is failing),
the last error. Status 200 while every issuer has usable keys, 503 otherwise. When some issuer
has no usable keys the probe first tries one fetch (single flight, bounded by the JWKS timeouts,
never inside a back-off), so a pod that has served no request yet can become ready. Put the
endpoint on an open path.

Example (Starlette)::

    app = Starlette(routes=[Route("/ready", health_asgi_app(verifier)), ...])
    app.add_middleware(JWTGuard, verifier=verifier, exclude_paths=["/ready"])

Example (Flask, via Werkzeug's dispatcher)::

    from werkzeug.middleware.dispatcher import DispatcherMiddleware
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/ready": health_wsgi_app(verifier)})
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any

from .errors import JWTGuardError
from .verifier import TokenVerifier

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["health_asgi_app", "health_wsgi_app"]

_HEADERS = [("content-type", "application/json"), ("cache-control", "no-store")]


def _report(health: dict[str, Any]) -> tuple[int, bytes]:
    return (200 if health["ok"] else 503), json.dumps(health, default=str).encode()


class _HealthASGI:
    """An ASGI app (a class instance, so Starlette's ``Route`` treats it as one)."""

    def __init__(self, verifier: TokenVerifier) -> None:
        self.verifier = verifier

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if not self.verifier.health()["ok"]:
            with contextlib.suppress(JWTGuardError):
                await self.verifier.aprefetch()
        status, body = _report(self.verifier.health())
        headers = [(k.encode(), v.encode()) for k, v in _HEADERS]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def health_asgi_app(
    verifier: TokenVerifier,
) -> Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]:
    """An ASGI app answering every HTTP request with the verifier's health report."""
    return _HealthASGI(verifier)


def health_wsgi_app(verifier: TokenVerifier) -> WSGIApplication:
    """A WSGI app answering every request with the verifier's health report."""

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if not verifier.health()["ok"]:
            with contextlib.suppress(JWTGuardError):
                verifier.prefetch()
        status, body = _report(verifier.health())
        start_response("200 OK" if status == 200 else "503 Service Unavailable", list(_HEADERS))
        return [body]

    return app
