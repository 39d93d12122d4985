"""Flask helpers: the verified claims of the current request.

Protect the app with :class:`~jwt_guard.wsgi.JWTGuardWSGI`, then read the claims in views::

    from jwt_guard import JWTGuardWSGI
    from jwt_guard.decorators import require_scopes
    from jwt_guard.flask import current_claims, require_claims

    app.wsgi_app = JWTGuardWSGI(app.wsgi_app, issuer=..., audience=..., jwks_url=...)

    @app.get("/me")
    def me():
        claims = require_claims()          # Claims, or a 401 answer
        return {"sub": claims.subject}

    @app.get("/items")
    @require_scopes("read:items")          # 403 insufficient_scope without the scope
    def items(): ...

This module imports Flask; ``import jwt_guard`` does not.
"""

from __future__ import annotations

import flask
from werkzeug.exceptions import HTTPException

from ._http import CLAIMS_KEY, GUARD_KEY, Guard, render_error
from .claims import Claims
from .errors import MissingToken

__all__ = ["current_claims", "require_claims"]


def current_claims() -> Claims | None:
    """The verified claims of the current request, or ``None``.

    ``None`` when the request passed unchecked (an excluded path, a CORS preflight, no token in
    optional mode) or when the app is not behind ``JWTGuardWSGI``. Needs a request context.
    """
    claims = flask.request.environ.get(CLAIMS_KEY)
    return claims if isinstance(claims, Claims) else None


def require_claims() -> Claims:
    """The verified claims of the current request; without them, abort with the RFC 6750 401.

    The 401 is shaped like the middleware's own (its realm and ``error_handler``).
    """
    claims = current_claims()
    if claims is not None:
        return claims
    guard = flask.request.environ.get(GUARD_KEY)
    exc = MissingToken("this view needs a verified token")
    answer = guard.error_response(exc) if isinstance(guard, Guard) else render_error(exc)
    response = flask.current_app.response_class(answer.body, answer.status, answer.headers)
    raise HTTPException(response=response)
