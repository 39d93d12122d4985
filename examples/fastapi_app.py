"""A FastAPI app protected by jwt_guard: one public route, one needing a scope, one reading claims.

``/docs`` shows the Authorize button and, per operation, the scopes it needs. Run it against
your identity provider (from the repository root)::

    export JWT_GUARD_ISSUER=https://idp.example.com/
    export JWT_GUARD_AUDIENCE=my-api
    uvicorn examples.fastapi_app:app

The keys are found through OpenID discovery; any other ``JWT_GUARD_*`` variable of the README's
table works too (``JWT_GUARD_JWKS_URL`` to skip discovery). Without the two, ``app`` raises a
``ConfigurationError`` saying which variable to set.

    curl localhost:8000/health                                  # 200, no token needed
    curl -H "Authorization: Bearer $TOKEN" localhost:8000/me    # 200 with your claims
    curl -H "Authorization: Bearer $TOKEN" localhost:8000/items # 403 without read:items
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Security

from jwt_guard import Claims, JWTGuard, TokenVerifier
from jwt_guard.fastapi import docs_paths, document_refusals, jwt_claims

CurrentClaims = Annotated[Claims, Security(jwt_claims)]
ReadItems = Annotated[Claims, Security(jwt_claims, scopes=["read:items"])]


def create_app(verifier: TokenVerifier | None = None) -> FastAPI:
    """The example app, guarded by ``JWTGuard`` (``/health`` and the docs are left open).

    ``verifier`` defaults to ``TokenVerifier.from_env()`` (the ``JWT_GUARD_*`` variables).
    """
    app = FastAPI(title="jwt_guard example")
    app.add_middleware(
        JWTGuard,
        verifier=verifier if verifier is not None else TokenVerifier.from_env(),
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


def __getattr__(name: str) -> Any:
    """``app``, built from the environment when first asked for (``uvicorn ...:app``)."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    app = globals()["app"] = create_app()
    return app
