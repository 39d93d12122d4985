"""``require_scopes``: one per-route scope check for Starlette, Flask, Django, DRF and Werkzeug
views (and functions taking a Litestar connection).

The decorator finds the request among the view's arguments, reads the claims the middleware put
there, and answers 401 (no verified claims) or 403 (``insufficient_scope``) in that framework's
own response type. Which framework a request belongs to is decided by an explicit table
(:data:`_FRAMEWORKS`): the request classes each adapter module handles, checked with
``isinstance`` and only once that framework is imported; the check itself and its answer are
:func:`jwt_guard.guard.middleware.check_route`, and each adapter module converts the answer in
one place.

FastAPI routes take the dependency :func:`jwt_guard.fastapi.require_scopes` instead: this
decorator on a FastAPI route fails when the route is defined, with a ``ConfigurationError``
saying so. Litestar route handlers take the guard :func:`jwt_guard.litestar.require_scopes`
(``guards=[...]``): Litestar builds its own model of a handler's signature and refuses the
parameter this decorator adds for FastAPI's sake, at start-up.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from .errors import ConfigurationError
from .guard.middleware import RouteAdapter, check_route, check_scopes, scope_names

__all__ = ["check_scopes", "require_scopes"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class _Framework:
    """One row of the table: requests of ``module.cls`` are handled by ``adapter``'s
    ``ROUTE_ADAPTER``."""

    module: str
    cls: str
    adapter: str

    def request_class(self) -> type | None:
        """The request class, if its framework is imported (else no request of it exists)."""
        module = sys.modules.get(self.module)
        found = getattr(module, self.cls, None) if module is not None else None
        return found if isinstance(found, type) else None

    def route_adapter(self) -> RouteAdapter:
        adapter: RouteAdapter = importlib.import_module(self.adapter).ROUTE_ADAPTER
        return adapter


_FRAMEWORKS = (
    _Framework("starlette.requests", "HTTPConnection", "jwt_guard.asgi"),
    _Framework("rest_framework.request", "Request", "jwt_guard.drf"),
    _Framework("django.http.request", "HttpRequest", "jwt_guard.django"),
    _Framework("litestar.connection.base", "ASGIConnection", "jwt_guard.litestar"),
    _Framework("werkzeug.wrappers.request", "Request", "jwt_guard.wsgi"),
)
"""Where ``require_scopes`` looks for the request, in order: a view argument that is one of
these classes. Failing that, Flask's request context (``jwt_guard.flask``)."""


def _find(args: tuple[Any, ...]) -> tuple[RouteAdapter, Any]:
    """The adapter and the request of one call of a decorated view."""
    for framework in _FRAMEWORKS:
        cls = framework.request_class()
        if cls is None:
            continue
        for arg in args:
            if isinstance(arg, cls):
                return framework.route_adapter(), arg
    flask = sys.modules.get("flask")
    if flask is not None and flask.has_request_context():
        from .flask import ROUTE_ADAPTER

        return ROUTE_ADAPTER, flask.request
    raise ConfigurationError(
        "require_scopes found no request: decorate a Starlette endpoint, a Flask view, a Django "
        "view (method_decorator for class-based views), a DRF view method or a Werkzeug view; "
        "on a FastAPI route use dependencies=[jwt_guard.fastapi.require_scopes(...)], on a "
        "Litestar handler guards=[jwt_guard.litestar.require_scopes(...)]"
    )


class _NotAFastAPIDependency:
    """The annotation of a parameter added to the signature of every decorated view.

    Starlette, Flask, Django and Werkzeug never look at a view's signature; FastAPI reads it when
    a route is defined and builds a validator for each parameter, which lands here and raises:
    ``jwt_guard.require_scopes`` on a FastAPI route fails at definition, not at the first request
    (where it could only answer 500).
    """

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        raise ConfigurationError(
            "jwt_guard.require_scopes cannot guard a FastAPI route (FastAPI passes no request "
            "to it): use the dependency instead, "
            '@app.get("/items", dependencies=[jwt_guard.fastapi.require_scopes("read:items")])'
        )


def _fastapi_refusing_signature(func: Callable[..., Any]) -> inspect.Signature | None:
    """``func``'s signature plus a keyword-only parameter FastAPI cannot accept."""
    if not inspect.isfunction(func):
        return None  # a partial (method_decorator) or other callable: never a FastAPI route
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return None
    params = list(signature.parameters.values())
    marker = inspect.Parameter(
        "_jwt_guard_require_scopes",
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=_NotAFastAPIDependency,
    )
    at = len(params) - (bool(params) and params[-1].kind is inspect.Parameter.VAR_KEYWORD)
    params.insert(at, marker)
    return signature.replace(parameters=params)


def require_scopes(*scopes: str, any_of: bool = False) -> Callable[[F], F]:
    """Decorate a view so it runs only when the verified token grants ``scopes``.

    All listed scopes are required; with ``any_of=True`` one of them is enough. A request
    without verified claims gets 401, one lacking a scope gets 403 ``insufficient_scope``; each
    refusal is logged once (client, subject, token fingerprint, missing scopes) and reported to
    the verifier's observer. A CORS preflight the guard let through gets an empty 204.

    Example::

        @require_scopes("read:items")
        async def list_items(request): ...          # Starlette

        @app.get("/items")
        @require_scopes("read:items", "admin", any_of=True)
        def items(): ...                             # Flask

        @method_decorator(require_scopes("read:items"), name="dispatch")
        class ItemsView(View): ...                   # Django

    On FastAPI use ``dependencies=[jwt_guard.fastapi.require_scopes(...)]``; this decorator on a
    FastAPI route raises ``ConfigurationError`` when the route is defined.
    """
    wanted = scope_names("require_scopes", scopes)

    def decorator(func: F) -> F:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                adapter, request = _find(args)
                route = adapter.route_request(request)
                answer = check_route(route, wanted, any_of)
                if answer is None:
                    return await func(*args, **kwargs)
                if route.websocket:  # before accept: the guard's own kind of refusal
                    websocket_adapter: Any = adapter
                    await websocket_adapter.refuse_websocket(request, answer)
                    return None
                return adapter.respond(request, answer)

            wrapper: Any = async_wrapper
        else:

            @functools.wraps(func)
            def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
                adapter, request = _find(args)
                answer = check_route(adapter.route_request(request), wanted, any_of)
                if answer is None:
                    return func(*args, **kwargs)
                return adapter.respond(request, answer)

            wrapper = sync_wrapper
        signature = _fastapi_refusing_signature(func)
        if signature is not None:
            wrapper.__signature__ = signature
        wrapper.required_scopes = wanted
        return wrapper  # type: ignore[no-any-return]

    return decorator
