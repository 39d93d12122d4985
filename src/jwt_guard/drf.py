"""Django REST framework: ``JWTGuardAuthentication`` and the scope permission ``HasScopes``.

As defaults for every API view, in ``settings.py``::

    REST_FRAMEWORK = {
        "DEFAULT_AUTHENTICATION_CLASSES": ["jwt_guard.drf.JWTGuardAuthentication"],
        "DEFAULT_PERMISSION_CLASSES": ["jwt_guard.drf.HasScopes"],  # each view's required_scopes
        "UNAUTHENTICATED_USER": None,  # without django.contrib.auth installed
    }
    JWT_GUARD = {"issuer": "https://idp.example.com/", "audience": "my-api"}  # as the middleware

and per view::

    class ItemList(APIView):
        required_scopes = ["read:items"]            # read by HasScopes (the default above)

    class Admin(APIView):
        permission_classes = [HasScopes("admin", "ops", any_of=True)]

``request.user`` is then a :class:`~jwt_guard.django.TokenUser` and ``request.auth`` the
verified :class:`~jwt_guard.core.claims.Claims`. When ``JWTGuardMiddleware`` (or
``JWTGuardWSGI``) runs in front, the authentication class takes the claims it verified; alone,
it verifies the ``Authorization: Bearer`` header itself with a verifier built once from
``settings.JWT_GUARD``. A request without bearer credentials is left to the next authentication
class (anonymous at the end); DRF's own handling then answers: 401 with the RFC 6750
``WWW-Authenticate`` challenge (``authenticate_header``), 400 for a malformed ``Authorization``
header, 403 with ``error="insufficient_scope"`` for a missing scope, 503 with ``Retry-After``
when no keys can be had. The body is DRF's ``{"detail": ...}`` with the fixed description,
never detail from the token. Each refusal is logged once by jwt_guard.

With drf-spectacular installed, the schema names the bearer scheme (``JWTGuard``: ``http``,
``bearer``, ``JWT``) for every view using the authentication class; the extension is defined only
when drf-spectacular can be imported. This module imports Django REST framework;
``import jwt_guard`` does not.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission, OperationHolderMixin
from rest_framework.request import Request

from ._logsafe import safe
from .core.claims import Claims
from .django import ROUTE_ADAPTER as DJANGO_ROUTES
from .django import guard_from_settings, to_response, token_user
from .errors import (
    InsufficientScope,
    JWTGuardError,
    KeysUnavailable,
    MissingToken,
)
from .guard.middleware import (
    CLAIMS_KEY,
    GUARD_KEY,
    ErrorResponse,
    Guard,
    RouteRequest,
    bearer_token,
    challenge,
    check_scopes,
    refuse,
    scope_names,
)

__all__ = ["HasScopes", "JWTGuardAuthentication", "TokenRefused"]

logger = logging.getLogger("jwt_guard.drf")

_ERROR = "_jwt_guard_error"  # where authenticate() leaves its refusal for authenticate_header()


class TokenRefused(exceptions.APIException):  # type: ignore[misc]
    """Raised when the bearer token of a DRF request is refused: DRF answers with its status
    (400, 401, 403 or 503), the fixed description as ``detail`` and, as ``WWW-Authenticate``,
    the RFC 6750 challenge (``Retry-After`` for a 503)."""

    def __init__(self, exc: JWTGuardError, realm: str = "api") -> None:
        super().__init__(detail=exc.description, code=exc.code)
        self.status_code = exc.status
        self.error = exc
        if isinstance(exc, KeysUnavailable):
            self.wait = exc.retry_after
        else:
            self.auth_header = challenge(exc, realm)


_settings_guard: tuple[object, Guard] | None = None
_settings_lock = threading.Lock()


def _guard() -> Guard:
    """The guard built from ``settings.JWT_GUARD``, once per value of the setting."""
    global _settings_guard
    options = getattr(settings, "JWT_GUARD", None)
    with _settings_lock:
        cached = _settings_guard
        if cached is None or cached[0] is not options:
            cached = _settings_guard = (options, guard_from_settings(options))
        return cached[1]


class JWTGuardAuthentication(BaseAuthentication):  # type: ignore[misc]
    """DRF authentication by bearer token: ``request.user`` a ``TokenUser``, ``request.auth``
    the verified ``Claims``.

    Uses the claims ``JWTGuardMiddleware`` or ``JWTGuardWSGI`` verified when one runs in front;
    otherwise verifies ``Authorization: Bearer <token>`` itself (``settings.JWT_GUARD``). No
    bearer credentials: ``None``, so the next authentication class may try (``Basic ...``
    stays free for ``BasicAuthentication``). A refused token raises :class:`TokenRefused`.

    Example::

        class ItemList(APIView):
            authentication_classes = [JWTGuardAuthentication]
            permission_classes = [HasScopes("read:items")]
    """

    def authenticate(self, request: Request) -> tuple[Any, Claims] | None:
        django_request = request._request
        meta = django_request.META
        if isinstance(meta.get(GUARD_KEY), Guard) and CLAIMS_KEY in meta:
            claims = meta[CLAIMS_KEY]  # the middleware decided
            return (token_user(claims), claims) if isinstance(claims, Claims) else None
        guard = _guard()
        meta[GUARD_KEY], meta[CLAIMS_KEY] = guard, None
        header = meta.get("HTTP_AUTHORIZATION")
        if not isinstance(header, str):
            return None
        address = meta.get("REMOTE_ADDR")
        client = address if isinstance(address, str) else None
        try:
            token = bearer_token([header])  # the header rules of every adapter
        except MissingToken:
            return None  # another scheme: for another authentication class
        except JWTGuardError as exc:
            guard.verifier.rejected(exc, None, client)
            setattr(request, _ERROR, exc)
            raise TokenRefused(exc, guard.realm) from None
        try:
            claims = guard.verifier.verify(token, client=client)  # logs its own refusals
        except JWTGuardError as exc:
            setattr(request, _ERROR, exc)
            raise TokenRefused(exc, guard.realm) from None
        meta[CLAIMS_KEY] = claims
        return token_user(claims), claims

    def authenticate_header(self, request: Request) -> str:
        """The ``WWW-Authenticate`` value of DRF's 401: the RFC 6750 challenge."""
        guard = request._request.META.get(GUARD_KEY)
        realm = guard.realm if isinstance(guard, Guard) else "api"
        error = getattr(request, _ERROR, None)
        return challenge(error if isinstance(error, JWTGuardError) else MissingToken(), realm)


class _DRFRoutes:
    """The DRF side of ``jwt_guard.require_scopes``: a DRF ``Request`` in, a Django
    ``HttpResponse`` out (DRF passes it through)."""

    def route_request(self, request: Request) -> RouteRequest:
        return DJANGO_ROUTES.route_request(request._request)

    def respond(self, request: Request, answer: ErrorResponse) -> Any:
        return to_response(answer)


ROUTE_ADAPTER = _DRFRoutes()
"""How ``jwt_guard.require_scopes`` reads a DRF request (on an ``APIView`` method) and answers."""


def _claims(request: Request) -> Claims | None:
    auth = getattr(request, "auth", None)
    if isinstance(auth, Claims):
        return auth
    claims = request._request.META.get(CLAIMS_KEY)
    return claims if isinstance(claims, Claims) else None


class HasScopes(OperationHolderMixin, BasePermission):  # type: ignore[misc]
    """DRF permission: the request's verified token grants ``scopes`` (all, or one with
    ``any_of=True``).

    ``HasScopes("read:items")`` goes straight into ``permission_classes`` (and combines with
    ``&``, ``|``, ``~``); the bare class (``"jwt_guard.drf.HasScopes"`` in
    ``DEFAULT_PERMISSION_CLASSES``) reads each view's ``required_scopes`` instead, and refuses
    (403, logged at ERROR) a view that declares none, so a forgotten declaration fails closed.
    No verified token: DRF's 401 with the challenge; a missing scope: 403 with
    ``error="insufficient_scope"`` and the scopes in the challenge.

    Example::

        class ItemDetail(APIView):
            permission_classes = [HasScopes("read:items")]

        class Moderate(APIView):
            permission_classes = [HasScopes("admin", "moderator", any_of=True)]
    """

    def __init__(self, *scopes: str, any_of: bool = False) -> None:
        self.scopes = scope_names("HasScopes", scopes)
        self.any_of = any_of

    def __call__(self) -> HasScopes:
        return self  # DRF instantiates each entry of permission_classes

    def __repr__(self) -> str:
        any_of = ", any_of=True" if self.any_of else ""
        return f"HasScopes({', '.join(map(repr, self.scopes))}{any_of})"

    def has_permission(self, request: Request, view: Any) -> bool:
        claims = _claims(request)
        if claims is None:
            self._log(request, MissingToken("this view needs a verified token"))
            return False  # DRF: NotAuthenticated (401 + authenticate_header) or 403
        wanted = self.scopes or self._view_scopes(view)
        if wanted is None:
            raise exceptions.PermissionDenied()
        try:
            check_scopes(claims, wanted, any_of=self.any_of)
        except InsufficientScope as exc:
            guard = self._log(request, exc)
            raise TokenRefused(exc, guard.realm if guard is not None else "api") from None
        return True

    def _view_scopes(self, view: Any) -> Sequence[str] | None:
        declared = getattr(view, "required_scopes", None)
        if declared is None or isinstance(declared, str):
            logger.error(
                "HasScopes() on %s without scopes: give the view required_scopes = [...] "
                "(a list) or use HasScopes('scope'); refused",
                safe(type(view).__name__),
            )
            return None
        return scope_names(f"{type(view).__name__}.required_scopes", declared)

    @staticmethod
    def _log(request: Request, exc: JWTGuardError) -> Guard | None:
        route = DJANGO_ROUTES.route_request(request._request)
        guard = route.store.get(GUARD_KEY)
        if isinstance(guard, Guard):
            refuse(route, exc)  # logged once, told to the observer
            return guard
        return None


def _schema_extension() -> None:
    """drf-spectacular's description of the scheme, defined only when it can be imported
    (defining the subclass is what registers it)."""
    try:
        from drf_spectacular.extensions import OpenApiAuthenticationExtension
    except ImportError:
        return

    class JWTGuardScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
        """The OpenAPI security scheme of ``JWTGuardAuthentication``."""

        target_class = "jwt_guard.drf.JWTGuardAuthentication"
        name = "JWTGuard"

        def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
            return {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}


_schema_extension()
