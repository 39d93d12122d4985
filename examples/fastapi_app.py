"""A FastAPI app protected by jwt_guard: one public route, one needing a scope, one reading claims.

``/docs`` shows the Authorize button and, per operation, the scopes it needs. Run it against
your identity provider (from the repository root)::

    export JWT_GUARD_ISSUER=https://idp.example.com/
    export JWT_GUARD_AUDIENCE=my-api
    export JWT_GUARD_JWKS_URL=https://idp.example.com/.well-known/jwks.json
    uvicorn examples.fastapi_app:app

    curl localhost:8000/health                                  # 200, no token needed
    curl -H "Authorization: Bearer $TOKEN" localhost:8000/me    # 200 with your claims
    curl -H "Authorization: Bearer $TOKEN" localhost:8000/items # 403 without read:items
"""

from __future__ import annotations

import os
from typing import Annotated, Any

from fastapi import FastAPI, Security

from jwt_guard import Claims, JWTGuard
from jwt_guard.fastapi import docs_paths, document_refusals, jwt_claims

CurrentClaims = Annotated[Claims, Security(jwt_claims)]
ReadItems = Annotated[Claims, Security(jwt_claims, scopes=["read:items"])]


def create_app(*, issuer: str, audience: str, jwks_url: str) -> FastAPI:
    """The example app, guarded by ``JWTGuard`` (``/health`` and the docs are left open)."""
    app = FastAPI(title="jwt_guard example")
    app.add_middleware(
        JWTGuard,
        issuer=issuer,
        audience=audience,
        jwks_url=jwks_url,
        # /openapi.json, /docs, /docs/oauth2-redirect and /redoc: open because listed here
        exclude_paths=["/health", *docs_paths(app)],
    )
    document_refusals(app)  # each secured operation lists its 401/403 answers

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/items")
    async def items(claims: ReadItems) -> dict[str, Any]:
        return {"items": ["apple", "pear"]}

    @app.get("/me")
    async def me(claims: CurrentClaims) -> dict[str, Any]:
        return {"sub": claims.subject, "scopes": sorted(claims.scopes)}

    return app


if {"JWT_GUARD_ISSUER", "JWT_GUARD_AUDIENCE", "JWT_GUARD_JWKS_URL"} <= os.environ.keys():
    app = create_app(
        issuer=os.environ["JWT_GUARD_ISSUER"],
        audience=os.environ["JWT_GUARD_AUDIENCE"],
        jwks_url=os.environ["JWT_GUARD_JWKS_URL"],
    )
