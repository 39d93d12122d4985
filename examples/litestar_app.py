"""A Litestar app guarded by jwt_guard: ``JWTGuard`` as middleware, scopes as Litestar guards.

Run it against your identity provider (from the repository root)::

    export JWT_GUARD_ISSUER=https://idp.example.com/
    export JWT_GUARD_AUDIENCE=my-api
    uvicorn examples.litestar_app:app

    curl localhost:8000/health                                  # 200, no token needed
    curl -H "Authorization: Bearer $TOKEN" localhost:8000/me    # 200 with your claims
    curl -H "Authorization: Bearer $TOKEN" localhost:8000/items # 403 without read:items
"""

from __future__ import annotations

from typing import Any

from litestar import Litestar, Request, get
from litestar.middleware import DefineMiddleware

from jwt_guard import JWTGuard, TokenVerifier
from jwt_guard.litestar import get_claims, require_scopes


@get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@get("/items", guards=[require_scopes("read:items")])
async def items() -> dict[str, list[str]]:
    return {"items": ["apple", "pear"]}


@get("/me")
async def me(request: Request[Any, Any, Any]) -> dict[str, Any]:
    claims = get_claims(request)  # None only on excluded paths
    return {"sub": claims.subject if claims else None, "scopes": sorted(request.auth.scopes)}


def create_app(verifier: TokenVerifier | None = None) -> Litestar:
    """The example app, guarded by ``JWTGuard`` (``/health`` is left open).

    ``verifier`` defaults to ``TokenVerifier.from_env()`` (the ``JWT_GUARD_*`` variables).
    """
    guard = DefineMiddleware(
        JWTGuard,
        verifier=verifier if verifier is not None else TokenVerifier.from_env(),
        exclude_paths=["/health"],
    )
    return Litestar([health, items, me], middleware=[guard])


def __getattr__(name: str) -> Any:
    """``app``, built from the environment when first asked for (``uvicorn ...:app``)."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    app = globals()["app"] = create_app()
    return app
