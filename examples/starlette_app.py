"""A Starlette app guarded by jwt_guard: a public route, one needing a scope, one reading claims.

Run it against your identity provider (from the repository root)::

    export JWT_GUARD_ISSUER=https://idp.example.com/
    export JWT_GUARD_AUDIENCE=my-api
    uvicorn examples.starlette_app:app

    curl localhost:8000/health                                  # 200, no token needed
    curl -H "Authorization: Bearer $TOKEN" localhost:8000/me    # 200 with your claims
    curl -H "Authorization: Bearer $TOKEN" localhost:8000/items # 403 without read:items

The keys are found through OpenID discovery; any other ``JWT_GUARD_*`` variable of the README's
table works too (``JWT_GUARD_JWKS_URL`` to skip discovery). Without the two, ``app`` raises a
``ConfigurationError`` saying which variable to set.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from jwt_guard import JWTGuard, TokenVerifier
from jwt_guard.decorators import require_scopes


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


@require_scopes("read:items")
async def items(request: Request) -> JSONResponse:
    return JSONResponse({"items": ["apple", "pear"]})


async def me(request: Request) -> JSONResponse:
    # request.user is a JWTUser (request.user.claims holds every claim); request.auth.scopes
    # are the token's scopes, so starlette.authentication.requires(...) works too.
    return JSONResponse({"sub": request.user.identity, "scopes": request.auth.scopes})


def create_app(verifier: TokenVerifier | None = None) -> Starlette:
    """The example app, guarded by ``JWTGuard`` (``/health`` is left open).

    ``verifier`` defaults to ``TokenVerifier.from_env()`` (the ``JWT_GUARD_*`` variables).
    """
    guard = Middleware(
        JWTGuard,
        verifier=verifier if verifier is not None else TokenVerifier.from_env(),
        exclude_paths=["/health"],
    )
    routes = [Route("/health", health), Route("/items", items), Route("/me", me)]
    return Starlette(routes=routes, middleware=[guard])


def __getattr__(name: str) -> Any:
    """``app``, built from the environment when first asked for (``uvicorn ...:app``)."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    app = globals()["app"] = create_app()
    return app
