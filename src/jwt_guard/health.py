"""Ready-made health endpoints for readiness probes: how each issuer's key source is doing.

The answer is ``TokenVerifier.health()`` as JSON: per issuer, when the keys were last fetched,
their age, whether they are stale (served past their lifetime while the provider is failing),
the last error. Status 200 while every issuer has usable keys, 503 otherwise. Nothing here
triggers a fetch. Mount the endpoint on an open path.

Example (Starlette)::

    guard = JWTGuard(app, verifier=verifier, exclude_paths=["/ready"])
    app.mount("/ready", health_asgi_app(verifier))          # or Route("/ready", ...)

Example (Flask, via Werkzeug's dispatcher)::

    from werkzeug.middleware.dispatcher import DispatcherMiddleware
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/ready": health_wsgi_app(verifier)})
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any

from .verifier import TokenVerifier

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["health_asgi_app", "health_wsgi_app"]

_HEADERS = [("content-type", "application/json"), ("cache-control", "no-store")]


def _report(verifier: TokenVerifier) -> tuple[int, bytes]:
    health = verifier.health()
    return (200 if health["ok"] else 503), json.dumps(health, default=str).encode()


def health_asgi_app(
    verifier: TokenVerifier,
) -> Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]:
    """An ASGI app answering every HTTP request with the verifier's health report."""

    async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        status, body = _report(verifier)
        headers = [(k.encode(), v.encode()) for k, v in _HEADERS]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def health_wsgi_app(verifier: TokenVerifier) -> WSGIApplication:
    """A WSGI app answering every request with the verifier's health report."""

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        status, body = _report(verifier)
        start_response("200 OK" if status == 200 else "503 Service Unavailable", list(_HEADERS))
        return [body]

    return app
