"""What the observability, events, health and environment tests share: an observer that counts
every event, and a small Starlette app behind ``JWTGuard`` (``/me``, and ``/admin`` needing the
``admin`` scope)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from _asgi_helpers import bearer
from jwt_guard import GuardObserver, JWTGuard, TokenVerifier, require_scopes

__all__ = ["Recorder", "bearer", "make_app"]


class Recorder(GuardObserver):
    """Counts every event, the way a Prometheus/StatsD adapter would."""

    def __init__(self) -> None:
        self.events: Counter[tuple[Any, ...]] = Counter()

    def verified(self, issuer: str, cached: bool) -> None:
        self.events["verified", cached] += 1

    def rejected(self, code: str, issuer: str | None) -> None:
        self.events["rejected", code] += 1

    def keys_fetched(self, source: str, keys: int, seconds: float) -> None:
        self.events["keys_fetched",] += 1

    def keys_failed(self, source: str, error: str) -> None:
        self.events["keys_failed",] += 1

    def keys_stale(self, source: str, age: float) -> None:
        self.events["keys_stale",] += 1

    def unknown_kid(self, source: str, kid: str | None) -> None:
        self.events["unknown_kid",] += 1


def make_app(verifier: TokenVerifier, **options: Any) -> Starlette:
    async def me(request: Request) -> JSONResponse:
        return JSONResponse({"sub": request.user.identity})

    @require_scopes("admin")
    async def admin(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/me", me), Route("/admin", admin)])
    app.add_middleware(JWTGuard, verifier=verifier, **options)
    return app
