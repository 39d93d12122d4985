"""Flask helpers: the verified claims of the current request.

Protect the app with :class:`~jwt_guard.wsgi.JWTGuardWSGI`, then read the claims in views::

    from jwt_guard import JWTGuardWSGI, require_scopes
    from jwt_guard.flask import current_claims, require_claims

    app.wsgi_app = JWTGuardWSGI(app.wsgi_app, issuer=..., audience=..., jwks_url=...)

    @app.get("/me")
    def me():
        claims = require_claims()          # Claims, or a 401 answer
        return {"sub": claims.subject}

    @app.get("/items")
    @require_scopes("read:items")          # 403 insufficient_scope without the scope
    def items(): ...

The claims are shared by every request carrying the same token and are read-only (assigning to
them raises). This module imports Flask; ``import jwt_guard`` does not.
"""

from __future__ import annotations

import flask
from werkzeug.exceptions import HTTPException

from .core.claims import Claims
from .errors import MissingToken
from .guard.middleware import CLAIMS_KEY, ErrorResponse, RouteRequest, refuse

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

    The 401 is shaped like the middleware's own (its realm and ``error_handler``) and, like
    every refusal, logged once and reported to the verifier's observer.
    """
    claims = current_claims()
    if claims is not None:
        return claims
    exc = MissingToken("this view needs a verified token")
    answer = refuse(ROUTE_ADAPTER.route_request(flask.request), exc)
    raise HTTPException(response=_to_response(answer))


def _to_response(answer: ErrorResponse) -> flask.Response:
    """``answer`` as the app's ``response_class``: the one place this adapter converts a
    refusal, for ``require_claims()`` and ``require_scopes`` views."""
    response: flask.Response = flask.current_app.response_class(answer.body, answer.status)
    response.headers.clear()
    response.headers.extend(answer.headers)
    return response


class _FlaskRoutes:
    """The Flask side of ``require_scopes``: the request of the current context in, the app's
    ``response_class`` out."""

    def route_request(self, request: flask.Request) -> RouteRequest:
        environ = request.environ
        return RouteRequest(
            store=environ,
            method=request.method,
            path=f"{environ.get('SCRIPT_NAME', '')}{environ.get('PATH_INFO', '')}",
            client=request.remote_addr,
            header=request.headers.get,
        )

    def respond(self, request: flask.Request, answer: ErrorResponse) -> flask.Response:
        return _to_response(answer)


ROUTE_ADAPTER = _FlaskRoutes()
"""How ``jwt_guard.require_scopes`` reads the Flask request and answers it."""
