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

Behind the middleware ``request.auth`` holds the verified :class:`~jwt_guard.core.claims.Claims`
(``None`` on an open path), and ``request.user`` is a :class:`TokenUser`: a Django-compatible
user that lives in the token, not in the database (``is_authenticated``, ``get_username()``
from ``sub``, ``has_perm("read:items")`` true for the token's scopes). Put the middleware
after ``AuthenticationMiddleware`` if you use both: a request with a verified token is that
token's user. Without claims, ``request.user`` is left as it is (or set to
:data:`ANONYMOUS`, when nothing set one).

Under ASGI (uvicorn, daphne) the middleware runs on the event loop: it is ``async_capable``, so
Django calls it without a thread hop, and it verifies with ``averify`` (a JWKS fetch runs in a
thread; a cached token costs a few lookups). Under WSGI it runs synchronously as before.

A refusal is logged once by jwt_guard (``rejected ...``, INFO); Django's own ``django.request``
WARNING for that 4xx is not repeated (the response is marked as logged). The claims are shared by
every request carrying the same token and are read-only. This module imports Django;
``import jwt_guard`` does not. Django REST framework: :mod:`jwt_guard.drf`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.utils.module_loading import import_string

from .core.claims import Claims
from .errors import ConfigurationError, InvalidToken, JWTGuardError
from .guard.middleware import (
    CLAIMS_KEY,
    GUARD_KEY,
    ErrorResponse,
    Guard,
    RouteRequest,
    flag_option,
)
from .wsgi import _EnvironFacts, guard_environ

_OWNER = "settings.JWT_GUARD"

__all__ = [
    "ANONYMOUS",
    "AnonymousTokenUser",
    "JWTGuardMiddleware",
    "TokenUser",
    "get_claims",
    "guard_from_settings",
    "to_response",
    "token_user",
]


def get_claims(request: HttpRequest) -> Claims | None:
    """The verified claims of ``request``, or ``None``.

    ``None`` when the request passed unchecked (an excluded path, a CORS preflight, no token in
    optional mode) or when neither ``JWTGuardMiddleware`` nor ``JWTGuardWSGI`` guards the app.
    """
    claims = request.META.get(CLAIMS_KEY)
    return claims if isinstance(claims, Claims) else None


def guard_from_settings(options: Any = None, *, sync: bool = True) -> Guard:
    """Build the ``Guard`` from ``settings.JWT_GUARD`` (or ``options``).

    ``error_handler`` may be a callable or a dotted path to one; ``"prefetch": True`` fetches the
    key sets when Django loads its middleware, so a wrong JWKS URL fails the boot. Raises
    ``ImproperlyConfigured`` naming the setting when the options are missing or invalid (a
    misspelt key gets a "did you mean"). ``sync=False`` (the middleware on an async chain)
    accepts async ``claims_check``/``is_revoked`` hooks, which only ``averify`` can run.
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
        if sync:
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


class TokenUser:
    """``request.user`` for a verified token: authenticated, named by ``sub``, not in the database.

    It quacks like ``django.contrib.auth`` users where views and templates look:
    ``is_authenticated`` (True), ``is_anonymous`` (False), ``is_active`` (True),
    ``is_staff``/``is_superuser`` (False), ``pk``/``id`` (None), ``username`` and
    ``get_username()`` (the ``sub`` claim), ``claims``.
    Permissions are the token's scopes: ``has_perm("read:items")`` is true when the token grants
    ``read:items``, ``has_perms`` needs all, ``get_all_permissions()`` is the scope set,
    ``has_module_perms("billing")`` is true for a scope ``billing.<something>``; object
    permissions are never granted. So ``permission_required("read:items")`` checks a scope.
    ``groups`` and ``user_permissions`` (database relations) do not exist; ``save()`` and
    ``delete()`` raise ``NotImplementedError``. Read-only: shared by every request carrying the
    same token.

    Example::

        def me(request):
            return JsonResponse({"sub": request.user.get_username(),
                                 "can_read": request.user.has_perm("read:items")})
    """

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    pk = None
    id = None
    claims: Claims
    username: str

    def __init__(self, claims: Claims) -> None:
        object.__setattr__(self, "claims", claims)
        object.__setattr__(self, "username", claims.subject or "")

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"TokenUser is read-only (cannot set {name!r})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"TokenUser is read-only (cannot delete {name!r})")

    def __str__(self) -> str:
        return self.username

    def __repr__(self) -> str:
        return f"TokenUser({self.username!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TokenUser) and other.claims is self.claims

    def __hash__(self) -> int:
        return id(self.claims)

    def get_username(self) -> str:
        """The ``sub`` claim (``""`` when the token has none)."""
        return self.username

    def has_perm(self, perm: str, obj: object = None) -> bool:
        """Whether the token grants the scope ``perm`` (never for an object)."""
        return obj is None and perm in self.claims.scopes

    def has_perms(self, perm_list: Any, obj: object = None) -> bool:
        """Whether the token grants every scope of ``perm_list``."""
        if isinstance(perm_list, str):
            raise ValueError("perm_list must be an iterable of permissions.")
        return all(self.has_perm(perm, obj) for perm in perm_list)

    def has_module_perms(self, app_label: str) -> bool:
        """Whether the token grants a scope named ``<app_label>.<something>``."""
        return any(scope.startswith(app_label + ".") for scope in self.claims.scopes)

    def get_all_permissions(self, obj: object = None) -> set[str]:
        """The token's scopes (none for an object)."""
        return set(self.claims.scopes) if obj is None else set()

    get_user_permissions = get_all_permissions

    def get_group_permissions(self, obj: object = None) -> set[str]:
        """Always empty: a token user has no groups."""
        return set()

    async def ahas_perm(self, perm: str, obj: object = None) -> bool:
        """:meth:`has_perm` for async views (no I/O either way)."""
        return self.has_perm(perm, obj)

    async def ahas_perms(self, perm_list: Any, obj: object = None) -> bool:
        """:meth:`has_perms` for async views."""
        return self.has_perms(perm_list, obj)

    async def ahas_module_perms(self, app_label: str) -> bool:
        """:meth:`has_module_perms` for async views."""
        return self.has_module_perms(app_label)

    async def aget_all_permissions(self, obj: object = None) -> set[str]:
        """:meth:`get_all_permissions` for async views."""
        return self.get_all_permissions(obj)

    def save(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("a TokenUser lives in the token, not in the database")

    def delete(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("a TokenUser lives in the token, not in the database")


class AnonymousTokenUser:
    """``request.user`` when nothing set one and the request has no verified token (an open
    path, optional mode): ``is_authenticated`` False, no permissions, like Django's
    ``AnonymousUser`` without needing ``django.contrib.auth`` installed."""

    is_authenticated = False
    is_anonymous = True
    is_active = False
    is_staff = False
    is_superuser = False
    pk = None
    id = None
    username = ""
    claims = None

    def __str__(self) -> str:
        return "AnonymousUser"

    def __repr__(self) -> str:
        return "AnonymousTokenUser()"

    def get_username(self) -> str:
        return ""

    def has_perm(self, perm: str, obj: object = None) -> bool:
        return False

    def has_perms(self, perm_list: Any, obj: object = None) -> bool:
        return False

    def has_module_perms(self, app_label: str) -> bool:
        return False

    def get_all_permissions(self, obj: object = None) -> set[str]:
        return set()

    async def ahas_perm(self, perm: str, obj: object = None) -> bool:
        return False

    async def ahas_perms(self, perm_list: Any, obj: object = None) -> bool:
        return False


ANONYMOUS = AnonymousTokenUser()
"""The one :class:`AnonymousTokenUser`."""

_MEMO_KEY = object()  # this module's slot in Claims.memo


def token_user(claims: Claims) -> TokenUser:
    """The :class:`TokenUser` of ``claims``, made once per verified token."""
    return claims.memo(_MEMO_KEY, TokenUser)


def _set_user(request: HttpRequest) -> None:
    """``request.auth`` and ``request.user`` from what the guard left in ``request.META``."""
    claims = get_claims(request)
    request.auth = claims
    if claims is not None:
        request.user = token_user(claims)
    elif not hasattr(request, "user"):
        request.user = ANONYMOUS


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
    claims land in ``request.auth`` and ``request.META["jwt_guard.claims"]`` (read them with
    :func:`get_claims`), ``request.user`` is a :class:`TokenUser`, and refusals are answered
    with an RFC 6750 ``HttpResponse``. Paths are matched against ``request.path_info``. Use
    this or ``JWTGuardWSGI`` in ``wsgi.py``, not both.

    Sync and async capable: on an async middleware chain (Django under ASGI) it is a coroutine
    function and verifies with ``averify`` on the event loop, so async ``claims_check`` and
    ``is_revoked`` hooks are accepted there.

    Example::

        MIDDLEWARE = [..., "jwt_guard.django.JWTGuardMiddleware", ...]
        JWT_GUARD = {"issuer": "https://idp.example.com/", "audience": "my-api",
                     "jwks_url": "https://idp.example.com/.well-known/jwks.json"}
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self._async = iscoroutinefunction(get_response)
        self.guard = guard_from_settings(sync=not self._async)
        if self._async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self._async:
            return self._acall(request)
        refusal = guard_environ(self.guard, request.META, request.path_info)
        if refusal is not None:
            return to_response(refusal)
        _set_user(request)
        return self.get_response(request)

    # -- the async path (Django under ASGI) ---------------------------------------------------

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        refusal = await self._aguard(request)
        if refusal is not None:
            return to_response(refusal)
        _set_user(request)
        response: Awaitable[HttpResponse] = self.get_response(request)
        return await response

    async def _aguard(self, request: HttpRequest) -> ErrorResponse | None:
        """:func:`~jwt_guard.wsgi.guard_environ` on the event loop: ``averify``, no thread."""
        guard, meta = self.guard, request.META
        meta[GUARD_KEY] = guard
        meta[CLAIMS_KEY] = None
        method = request.method or "GET"
        if guard.may_open(method) and guard.is_open(method, request.path_info, _header(meta)):
            return None
        value = meta.get("HTTP_AUTHORIZATION")
        authorization = [value] if isinstance(value, str) else []
        address = _text(meta.get("REMOTE_ADDR"))
        try:
            credentials = guard.credentials(authorization, address)
            if credentials is not None:
                scheme, token = credentials
                claims = guard.verifier.cached(token, address)
                if claims is None:
                    claims = await guard.verifier.averify(token, client=address)
                if guard.needs_binding(claims, scheme):  # the proof, the certificate
                    await guard.abind(claims, scheme, token, _EnvironFacts(meta), address)
                meta[CLAIMS_KEY] = claims
        except JWTGuardError as exc:
            return guard.error_response(exc, authorization)
        except Exception as exc:  # a duck-typed verifier: a 401, never a 500
            error = InvalidToken(f"token could not be verified ({type(exc).__name__})")
            guard.verifier.rejected(error, None, address)
            return guard.error_response(error)
        return None


def _header(meta: Mapping[str, Any]) -> Callable[[str], str | None]:
    def header(name: str) -> str | None:
        value = meta.get("HTTP_" + name.upper().replace("-", "_"))
        return value if isinstance(value, str) else None

    return header
