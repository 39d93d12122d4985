"""``require_scopes``: one per-route scope check for Starlette, Flask, Django and Werkzeug views.

The decorator finds the request among the view's arguments (a Starlette ``Request`` or
``WebSocket``, a Django ``HttpRequest``, a Werkzeug ``Request``) or, failing that, Flask's request
context, reads the claims the middleware put there, and answers 401 (no verified claims) or 403
(``insufficient_scope``) in that framework's own response type. Frameworks are imported only
when a request of theirs is seen.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from ._http import CLAIMS_KEY, GUARD_KEY, ErrorResponse, Guard, render_error
from .claims import Claims
from .errors import ConfigurationError, InsufficientScope, JWTGuardError, MissingToken

__all__ = ["check_scopes", "record_refusal", "require_scopes"]

F = TypeVar("F", bound=Callable[..., Any])


def check_scopes(claims: Claims | None, scopes: Iterable[str], *, any_of: bool = False) -> Claims:
    """Return ``claims`` if they grant ``scopes`` (all of them, or one with ``any_of``).

    Raises ``MissingToken`` when there are no verified claims (an open path, optional mode)
    and ``InsufficientScope`` when a scope is missing.
    """
    wanted = tuple(scopes)
    if claims is None:
        raise MissingToken("this route needs a verified token")
    granted = claims.scopes
    ok = (not granted.isdisjoint(wanted)) if any_of else granted.issuperset(wanted)
    if not ok and wanted:
        raise InsufficientScope("token lacks a required scope", scopes=wanted)
    return claims


def record_refusal(store: Any, exc: JWTGuardError) -> None:
    """Log a per-route refusal once and tell the observer, through the request's guard."""
    guard = store.get(GUARD_KEY)
    if isinstance(guard, Guard):
        guard.verifier.rejected(exc)


class _Found:
    __slots__ = ("framework", "request", "store")

    def __init__(self, framework: str, request: Any, store: Any) -> None:
        self.framework, self.request, self.store = framework, request, store


def _find(args: tuple[Any, ...]) -> _Found:
    from starlette.requests import HTTPConnection  # starlette is a runtime dependency

    for arg in args:
        if isinstance(arg, HTTPConnection):
            return _Found("starlette", arg, arg.scope)
        if hasattr(arg, "META") and hasattr(arg, "method"):
            return _Found("django", arg, arg.META)
        if hasattr(arg, "environ") and hasattr(arg, "method"):
            return _Found("werkzeug", arg, arg.environ)
    flask = sys.modules.get("flask")
    if flask is not None and flask.has_request_context():
        return _Found("flask", flask.request, flask.request.environ)
    raise TypeError(
        "require_scopes could not find the request: decorate a Starlette endpoint, a Flask "
        "view, a Django view (method_decorator for class-based views) or a Werkzeug view"
    )


_PREFLIGHT_OK = ErrorResponse(204)
"""The answer to a CORS preflight that reaches a decorated view: empty, for the CORS layer
(django-cors-headers, flask-cors...) to add its headers to. The view itself never runs: anyone can
send ``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``, with no token at all."""


def _is_preflight(found: _Found) -> bool:
    """A CORS preflight, which the guard lets through unauthenticated when so configured."""
    request = found.request
    if request.method != "OPTIONS":
        return False
    if found.framework == "django":
        meta = request.META
        return "HTTP_ORIGIN" in meta and "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in meta
    headers = request.headers
    return "origin" in headers and "access-control-request-method" in headers


def _render(found: _Found, exc: JWTGuardError) -> Any:
    guard = found.store.get(GUARD_KEY)
    response: ErrorResponse = (
        guard.error_response(exc) if isinstance(guard, Guard) else render_error(exc)
    )
    return _respond(found, response)


def _respond(found: _Found, response: ErrorResponse) -> Any:
    headers = dict(response.headers)
    if found.framework == "starlette":
        from starlette.responses import Response

        return Response(response.body, response.status, headers=headers)
    if found.framework == "django":
        from django.http import HttpResponse

        return HttpResponse(response.body, status=response.status, headers=headers)
    from werkzeug.wrappers import Response as WerkzeugResponse

    if found.framework == "flask":
        return sys.modules["flask"].current_app.response_class(
            response.body, response.status, headers
        )
    return WerkzeugResponse(response.body, response.status, headers)


def require_scopes(*scopes: str, any_of: bool = False) -> Callable[[F], F]:
    """Decorate a view so it runs only when the verified token grants ``scopes``.

    All listed scopes are required; with ``any_of=True`` one of them is enough. A request
    without verified claims gets 401, one lacking a scope gets 403 ``insufficient_scope``.

    Example::

        @require_scopes("read:items")
        async def list_items(request): ...          # Starlette

        @app.get("/items")
        @require_scopes("read:items", "admin", any_of=True)
        def items(): ...                             # Flask

        @method_decorator(require_scopes("read:items"), name="dispatch")
        class ItemsView(View): ...                   # Django
    """
    for scope in scopes:
        if not isinstance(scope, str) or not scope or any(c.isspace() for c in scope):
            raise ConfigurationError(f"scope {scope!r} must be a non-empty string without spaces")

    def refusal(args: tuple[Any, ...]) -> tuple[_Found, JWTGuardError | None, bool]:
        """``(found, error, preflight)``: the view runs only when both are false."""
        found = _find(args)
        guard = found.store.get(GUARD_KEY)
        if isinstance(guard, Guard) and guard.allow_preflight and _is_preflight(found):
            return found, None, True
        try:
            check_scopes(found.store.get(CLAIMS_KEY), scopes, any_of=any_of)
        except JWTGuardError as exc:
            record_refusal(found.store, exc)
            return found, exc, False
        return found, None, False

    def decorator(func: F) -> F:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                found, exc, preflight = refusal(args)
                if preflight:
                    return _respond(found, _PREFLIGHT_OK)
                if exc is None:
                    return await func(*args, **kwargs)
                if found.framework == "starlette" and found.request.scope["type"] == "websocket":
                    await found.request.close(code=1008)
                    return None
                return _render(found, exc)

            wrapper: Any = async_wrapper
        else:

            @functools.wraps(func)
            def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
                found, exc, preflight = refusal(args)
                if preflight:
                    return _respond(found, _PREFLIGHT_OK)
                if exc is None:
                    return func(*args, **kwargs)
                return _render(found, exc)

            wrapper = sync_wrapper
        wrapper.required_scopes = scopes
        return wrapper  # type: ignore[no-any-return]

    return decorator
