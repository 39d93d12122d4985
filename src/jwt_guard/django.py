"""Django support: ``JWTGuardMiddleware`` and ``get_claims(request)``.

Configure once in ``settings.py``; the options are those of
:class:`~jwt_guard.wsgi.JWTGuardWSGI`::

    MIDDLEWARE = [
        "django.middleware.security.SecurityMiddleware",
        "jwt_guard.django.JWTGuardMiddleware",
        ...
    ]
    JWT_GUARD = {
        "issuer": "https://idp.example.com/",
        "audience": "my-api",
        "jwks_url": "https://idp.example.com/.well-known/jwks.json",
        "exclude_paths": ["/health"],
    }

Then, in views::

    from jwt_guard.decorators import require_scopes
    from jwt_guard.django import get_claims

    @require_scopes("read:items")
    def items(request): ...

    @method_decorator(require_scopes("read:items"), name="dispatch")
    class ItemsView(View): ...

    def me(request):
        claims = get_claims(request)       # Claims, or None on an excluded path

A refusal is logged once by jwt_guard (``rejected ...``, INFO); Django's own ``django.request``
WARNING for that 4xx is not repeated (the response is marked as logged). The claims are shared by
every request carrying the same token and are read-only. This module imports Django;
``import jwt_guard`` does not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.utils.module_loading import import_string

from .core.claims import Claims
from .errors import ConfigurationError
from .guard.middleware import CLAIMS_KEY, ErrorResponse, Guard, RouteRequest, flag_option
from .wsgi import guard_environ

_OWNER = "settings.JWT_GUARD"

__all__ = ["JWTGuardMiddleware", "get_claims", "guard_from_settings", "to_response"]


def get_claims(request: HttpRequest) -> Claims | None:
    """The verified claims of ``request``, or ``None``.

    ``None`` when the request passed unchecked (an excluded path, a CORS preflight, no token in
    optional mode) or when neither ``JWTGuardMiddleware`` nor ``JWTGuardWSGI`` guards the app.
    """
    claims = request.META.get(CLAIMS_KEY)
    return claims if isinstance(claims, Claims) else None


def guard_from_settings(options: Any = None) -> Guard:
    """Build the ``Guard`` from ``settings.JWT_GUARD`` (or ``options``).

    ``error_handler`` may be a callable or a dotted path to one; ``"prefetch": True`` fetches the
    key sets when Django loads its middleware, so a wrong JWKS URL fails the boot. Raises
    ``ImproperlyConfigured`` naming the setting when the options are missing or invalid (a
    misspelt key gets a "did you mean").
    """
    if options is None:
        options = getattr(settings, "JWT_GUARD", None)
    if not isinstance(options, Mapping):
        raise ImproperlyConfigured(
            "JWTGuardMiddleware needs settings.JWT_GUARD = {'issuer': ..., 'audience': ..., "
            "'jwks_url': ..., 'exclude_paths': [...]}"
        )
    kwargs = dict(options)
    try:
        prefetch = flag_option(_OWNER, "prefetch", kwargs.pop("prefetch", False))
        handler = kwargs.get("error_handler")
        if isinstance(handler, str):
            try:
                kwargs["error_handler"] = import_string(handler)
            except ImportError as exc:
                raise ConfigurationError(
                    f"{_OWNER}['error_handler']: cannot import {handler!r} ({exc})"
                ) from exc
        guard = Guard(owner=_OWNER, **kwargs)
        guard.require_sync()
        if prefetch:
            guard.prefetch()
    except ConfigurationError as exc:
        raise ImproperlyConfigured(str(exc)) from exc
    return guard


def to_response(answer: ErrorResponse) -> HttpResponse:
    """A Django ``HttpResponse`` carrying ``answer``: the one place this adapter converts a
    refusal, for the middleware and for ``require_scopes`` views.

    A refusal (4xx/5xx) was already logged by jwt_guard, so it is marked as logged: Django's
    ``django.request`` logger does not repeat it as a WARNING (``django.utils.log.log_response``
    skips responses with ``_has_been_logged``).
    """
    response = HttpResponse(answer.body, status=answer.status)
    for name in list(response.headers):
        del response.headers[name]
    for name, value in answer.headers:
        response[name] = value
    if answer.status >= 400:
        response._has_been_logged = True
    return response


class _DjangoRoutes:
    """The Django side of ``require_scopes``: an ``HttpRequest`` in, an ``HttpResponse`` out."""

    def route_request(self, request: HttpRequest) -> RouteRequest:
        meta = request.META
        return RouteRequest(
            store=meta,
            method=request.method or "GET",
            path=request.path,
            client=_text(meta.get("REMOTE_ADDR")),
            header=request.headers.get,
        )

    def respond(self, request: HttpRequest, answer: ErrorResponse) -> HttpResponse:
        return to_response(answer)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


ROUTE_ADAPTER = _DjangoRoutes()
"""How ``jwt_guard.require_scopes`` reads a Django request and answers it."""


class JWTGuardMiddleware:
    """Django middleware: every request needs a valid bearer token, unless its path is open.

    Built once from ``settings.JWT_GUARD`` (see the module docstring). It does exactly what
    ``JWTGuardWSGI`` does, but inside Django, so Django's test ``Client`` exercises it: the
    claims land in ``request.META["jwt_guard.claims"]`` (read them with :func:`get_claims`)
    and refusals are answered with an RFC 6750 ``HttpResponse``. Paths are matched against
    ``request.path_info``. Use this or ``JWTGuardWSGI`` in ``wsgi.py``, not both.

    Example::

        MIDDLEWARE = [..., "jwt_guard.django.JWTGuardMiddleware", ...]
        JWT_GUARD = {"issuer": "https://idp.example.com/", "audience": "my-api",
                     "jwks_url": "https://idp.example.com/.well-known/jwks.json"}
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.guard = guard_from_settings()

    def __call__(self, request: HttpRequest) -> HttpResponse:
        refusal = guard_environ(self.guard, request.META, request.path_info)
        if refusal is not None:
            return to_response(refusal)
        return self.get_response(request)
