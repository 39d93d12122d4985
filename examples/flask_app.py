"""A Flask app protected by jwt_guard: one public route, one needing a scope, one reading claims.

Run it against your identity provider (from the ``examples/`` directory)::

    export JWT_GUARD_ISSUER=https://idp.example.com/
    export JWT_GUARD_AUDIENCE=my-api
    flask --app flask_app run

    curl localhost:5000/health                                  # 200, no token needed
    curl -H "Authorization: Bearer $TOKEN" localhost:5000/me    # 200 with your claims
    curl -H "Authorization: Bearer $TOKEN" localhost:5000/items # 403 without read:items

The keys are found through OpenID discovery; any other ``JWT_GUARD_*`` variable of the README's
table works too (``JWT_GUARD_JWKS_URL`` to skip discovery). Without the two, ``app`` (and
``create_app()``, which ``flask --app`` calls) raises a ``ConfigurationError`` saying which
variable to set.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from jwt_guard import JWTGuardWSGI, TokenVerifier
from jwt_guard.decorators import require_scopes
from jwt_guard.flask import current_claims


def create_app(verifier: TokenVerifier | None = None) -> Flask:
    """The example app, guarded by ``JWTGuardWSGI`` (``/health`` is left open).

    ``verifier`` defaults to ``TokenVerifier.from_env()`` (the ``JWT_GUARD_*`` variables).
    """
    app = Flask(__name__)
    app.wsgi_app = JWTGuardWSGI(  # type: ignore[method-assign]
        app.wsgi_app,
        verifier=verifier if verifier is not None else TokenVerifier.from_env(),
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


def __getattr__(name: str) -> Any:
    """``app``, built from the environment when first asked for (``gunicorn flask_app:app``)."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    app = globals()["app"] = create_app()
    return app
