"""A Starlette app guarded by jwt_guard: a public route, one needing a scope, one reading claims.

Run it against your identity provider (from the repository root)::

    export JWT_GUARD_ISSUER=https://idp.example.com/
    export JWT_GUARD_AUDIENCE=my-api
    export JWT_GUARD_JWKS_URL=https://idp.example.com/.well-known/jwks.json
    uvicorn examples.starlette_app:app

    curl localhost:8000/health                                  # 200, no token needed
    curl -H "Authorization: Bearer $TOKEN" localhost:8000/me    # 200 with your claims
    curl -H "Authorization: Bearer $TOKEN" localhost:8000/items # 403 without read:items
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from jwt_guard import JWTGuard
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


def create_app(*, issuer: str, audience: str, jwks_url: str) -> Starlette:
    """The example app, guarded by ``JWTGuard`` (``/health`` is left open)."""
    guard = Middleware(
        JWTGuard,
        issuer=issuer,
        audience=audience,
        jwks_url=jwks_url,
        exclude_paths=["/health"],
    )
    routes = [Route("/health", health), Route("/items", items), Route("/me", me)]
    return Starlette(routes=routes, middleware=[guard])


if {"JWT_GUARD_ISSUER", "JWT_GUARD_AUDIENCE", "JWT_GUARD_JWKS_URL"} <= os.environ.keys():
    app = create_app(
        issuer=os.environ["JWT_GUARD_ISSUER"],
        audience=os.environ["JWT_GUARD_AUDIENCE"],
        jwks_url=os.environ["JWT_GUARD_JWKS_URL"],
    )
