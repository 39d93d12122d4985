"""A Flask app protected by jwt_guard: one public route, one needing a scope, one reading claims.

Run it against your identity provider (from the ``examples/`` directory)::

    export JWT_GUARD_ISSUER=https://idp.example.com/
    export JWT_GUARD_AUDIENCE=my-api
    export JWT_GUARD_JWKS_URL=https://idp.example.com/.well-known/jwks.json
    flask --app flask_app run

    curl localhost:5000/health                                  # 200, no token needed
    curl -H "Authorization: Bearer $TOKEN" localhost:5000/me    # 200 with your claims
    curl -H "Authorization: Bearer $TOKEN" localhost:5000/items # 403 without read:items
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask

from jwt_guard import JWTGuardWSGI
from jwt_guard.decorators import require_scopes
from jwt_guard.flask import current_claims


def create_app(*, issuer: str, audience: str, jwks_url: str) -> Flask:
    """The example app, guarded by ``JWTGuardWSGI`` (``/health`` is left open)."""
    app = Flask(__name__)
    app.wsgi_app = JWTGuardWSGI(  # type: ignore[method-assign]
        app.wsgi_app,
        issuer=issuer,
        audience=audience,
        jwks_url=jwks_url,
        exclude_paths=["/health"],
    )

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/items")
    @require_scopes("read:items")
    def items() -> dict[str, Any]:
        return {"items": ["apple", "pear"]}

    @app.get("/me")
    def me() -> dict[str, Any]:
        claims = current_claims()  # None only on excluded paths (or with optional=True)
        if claims is None:
            return {"authenticated": False}
        return {"authenticated": True, "sub": claims.subject, "scopes": sorted(claims.scopes)}

    return app


if {"JWT_GUARD_ISSUER", "JWT_GUARD_AUDIENCE", "JWT_GUARD_JWKS_URL"} <= os.environ.keys():
    app = create_app(
        issuer=os.environ["JWT_GUARD_ISSUER"],
        audience=os.environ["JWT_GUARD_AUDIENCE"],
        jwks_url=os.environ["JWT_GUARD_JWKS_URL"],
    )
