"""``JWTGuardWSGI``: the WSGI middleware, for Flask, Django (``wsgi.py``) and any WSGI app.

Translation only: the checks and the answers live in :class:`~jwt_guard.guard.middleware.Guard`.
:func:`guard_environ` is the whole per-request step, shared with the Django middleware. This
module is also the Werkzeug side of ``require_scopes`` (:data:`ROUTE_ADAPTER`);
:func:`_wsgi_answer` is the one place it turns an ``ErrorResponse`` into a response. Werkzeug
is imported only when a Werkzeug view refuses, not with the module.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from .core.verifier import TokenVerifier
from .errors import JWTGuardError
from .guard.middleware import (
    CLAIMS_KEY,
    GUARD_KEY,
    ErrorHandler,
    ErrorResponse,
    Guard,
    RouteRequest,
    check_option_names,
    flag_option,
    options_from_env,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from werkzeug.wrappers import Request as WerkzeugRequest
    from werkzeug.wrappers import Response as WerkzeugResponse

__all__ = ["JWTGuardWSGI", "guard_environ", "status_line"]


def status_line(status: int) -> str:
    """``"401 Unauthorized"``: a WSGI status line with its reason phrase."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Error"


def guard_environ(
    guard: Guard, environ: MutableMapping[str, Any], path: str | None = None
) -> ErrorResponse | None:
    """Check one request; put the guard and the claims into ``environ``; return any refusal.

    ``environ`` is a WSGI environ (or Django's ``request.META``); ``path`` defaults to its
    ``PATH_INFO``, the path inside the application. Afterwards ``environ[CLAIMS_KEY]`` holds the
    verified ``Claims``, or ``None`` when the request passed unchecked (an open path, a CORS
    preflight, no token in optional mode). A ``None`` result means "call the application"; with
    ``resource=``, a request for the protected-resource metadata gets its (200) answer here.
    """
    method = str(environ.get("REQUEST_METHOD", "GET"))
    if guard.resource is not None:  # RFC 9728 metadata: open to anyone, built from configuration
        full = f"{environ.get('SCRIPT_NAME', '')}{environ.get('PATH_INFO', '')}"
        answer = guard.metadata_answer(method, full)
        if answer is not None:
            return answer
    environ[GUARD_KEY] = guard
    environ[CLAIMS_KEY] = None

    def header(name: str) -> str | None:
        value = environ.get("HTTP_" + name.upper().replace("-", "_"))
        return value if isinstance(value, str) else None

    if guard.may_open(method):
        if path is None:
            path = str(environ.get("PATH_INFO", "")) or "/"
        if guard.is_open(method, path, header):
            return None
    value = environ.get("HTTP_AUTHORIZATION")
    authorization = [value] if isinstance(value, str) else []
    client = environ.get("REMOTE_ADDR")
    address = client if isinstance(client, str) else None
    try:
        # A server joins repeated headers with "," which is not token68: 400 invalid_request.
        credentials = guard.credentials(authorization, address)
        if credentials is not None:
            scheme, token = credentials
            claims = guard.verifier.verify(token, client=address)
            if guard.needs_binding(claims, scheme):  # the proof, the certificate: every request
                guard.bind(claims, scheme, token, _EnvironFacts(environ), address)
            environ[CLAIMS_KEY] = claims
    except JWTGuardError as exc:
        return guard.error_response(exc, authorization)
    return None


class _EnvironFacts:
    """One WSGI request (or Django's ``request.META``) as the sender checks see it
    (:class:`~jwt_guard.binding.policy.RequestFacts`): read only when a bound token asks.

    The peer is ``REMOTE_ADDR``, or the one werkzeug's ``ProxyFix`` saved before rewriting it;
    the target is ``REQUEST_URI`` / ``RAW_URI`` (what the server received), else
    ``SCRIPT_NAME`` + ``PATH_INFO``; the client certificate is ``SSL_CLIENT_CERT`` (mod_wsgi,
    werkzeug's server), unless ``SSL_CLIENT_VERIFY`` says it was not verified.
    """

    __slots__ = ("_environ",)

    def __init__(self, environ: Mapping[str, Any]) -> None:
        self._environ = environ

    @property
    def method(self) -> str:
        method = self._environ.get("REQUEST_METHOD", "GET")
        return method if isinstance(method, str) else "GET"

    @property
    def peer(self) -> str | None:
        original = self._environ.get("werkzeug.proxy_fix.orig")
        if isinstance(original, Mapping) and "REMOTE_ADDR" in original:
            peer = original.get("REMOTE_ADDR")
        else:
            peer = self._environ.get("REMOTE_ADDR")
        return peer if isinstance(peer, str) else None

    def target(self) -> str | bytes:
        for name in ("REQUEST_URI", "RAW_URI"):
            raw = self._environ.get(name)
            if isinstance(raw, str) and raw:
                return _wsgi_bytes(raw)
        parts = (self._environ.get("SCRIPT_NAME"), self._environ.get("PATH_INFO"))
        joined = "".join(part for part in parts if isinstance(part, str))
        return _wsgi_bytes(joined or "/")

    def header_values(self, name: str) -> list[str]:
        value = self._environ.get("HTTP_" + name.upper().replace("-", "_"))
        return [value] if isinstance(value, str) else []

    def tls_client_cert(self) -> str | bytes | None:
        verify = self._environ.get("SSL_CLIENT_VERIFY")
        if verify is not None and verify != "SUCCESS":
            return None
        cert = self._environ.get("SSL_CLIENT_CERT")
        return cert if isinstance(cert, (str, bytes)) and cert else None


def _wsgi_bytes(text: str) -> bytes:
    """A WSGI string back to the bytes the server received (one char per byte, PEP 3333); a
    server that decoded UTF-8 instead (Django's ASGI handler) gets its text re-encoded."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape")


class JWTGuardWSGI:
    """WSGI middleware: every request needs a valid bearer token, unless its path is open.

    Verified claims go to ``environ["jwt_guard.claims"]`` (Django shows them in
    ``request.META``; read them with :func:`jwt_guard.flask.current_claims` or
    :func:`jwt_guard.django.get_claims`). A refused request is answered here with the RFC 6750
    response and never reaches the application.

    Args:
        app: the WSGI application to protect.
        verifier: a ready :class:`~jwt_guard.TokenVerifier`; or pass its options instead
            (``issuer=``, ``audience=``, ``jwks_url=``, ...) and one is built.
        exclude_paths: exact paths left open, e.g. ``["/health"]`` (``PATH_INFO``, the path
            inside the app). Paths with ``/.`` or ``//`` are never open.
        exclude_prefixes: path prefixes left open, e.g. ``["/static"]`` opens ``/static`` and
            ``/static/...`` but not ``/staticfiles``.
        allow_preflight: let CORS preflights (``OPTIONS`` with ``Origin`` and
            ``Access-Control-Request-Method``) through unauthenticated, for a CORS layer *inside*
            the guard to answer (default False: anyone can forge a preflight, and a view that
            acts on OPTIONS would run for it; put the CORS middleware outside the guard).
        optional: let requests without any ``Authorization`` header through with claims
            ``None``; a token that is present must still be valid.
        realm: the ``realm`` of the ``WWW-Authenticate`` challenge (default ``"api"``).
        error_handler: ``f(exc, response) -> ErrorResponse | None`` to reshape refusals.
        prefetch: fetch every remote key set now, at construction, so the first request does
            not pay for it and a wrong JWKS URL fails the boot with ``ConfigurationError``.
        resource: this API's resource URI (RFC 8707/9728): the metadata document at
            ``/.well-known/oauth-protected-resource{path}``, ``resource_metadata`` in every
            challenge, and the required audience unless ``audience=`` is given (see
            ``JWTGuard``). The well-known path is matched against ``SCRIPT_NAME + PATH_INFO``.
        resource_metadata: more RFC 9728 fields for that document.

    Example::

        app = Flask(__name__)
        app.wsgi_app = JWTGuardWSGI(
            app.wsgi_app,
            issuer="https://idp.example.com/",
            audience="my-api",
            jwks_url="https://idp.example.com/.well-known/jwks.json",
            exclude_paths=["/health"],
        )

        # Django, in wsgi.py:
        application = JWTGuardWSGI(get_wsgi_application(), issuer=..., audience=...)
    """

    def __init__(
        self,
        app: WSGIApplication,
        *,
        verifier: TokenVerifier | None = None,
        exclude_paths: Iterable[str] = (),
        exclude_prefixes: Iterable[str] = (),
        allow_preflight: bool = False,
        optional: bool = False,
        realm: str = "api",
        error_handler: ErrorHandler | None = None,
        prefetch: bool = False,
        resource: str | None = None,
        resource_metadata: Mapping[str, Any] | None = None,
        **verifier_options: Any,
    ) -> None:
        self.app = app
        check_option_names("JWTGuardWSGI", verifier_options)  # before Guard(owner=...) sees them
        self.guard = Guard(
            owner="JWTGuardWSGI",
            verifier=verifier,
            exclude_paths=exclude_paths,
            exclude_prefixes=exclude_prefixes,
            allow_preflight=allow_preflight,
            optional=optional,
            realm=realm,
            error_handler=error_handler,
            resource=resource,
            resource_metadata=resource_metadata,
            **verifier_options,
        )
        self.verifier = self.guard.verifier
        self.guard.require_sync()
        if flag_option("JWTGuardWSGI", "prefetch", prefetch):
            self.guard.prefetch()

    @classmethod
    def from_env(
        cls,
        app: WSGIApplication,
        prefix: str = "JWT_GUARD_",
        *,
        environ: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> JWTGuardWSGI:
        """Build the middleware from ``JWT_GUARD_*`` environment variables (README table).

        Example: ``application = JWTGuardWSGI.from_env(get_wsgi_application())``.
        """
        return cls(app, **options_from_env("JWTGuardWSGI.from_env", prefix, environ, overrides))

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        refusal = guard_environ(self.guard, environ)
        if refusal is None:
            return self.app(environ, start_response)
        status, headers, body = _wsgi_answer(refusal)
        start_response(status, headers)
        # HEAD: the GET's headers (Content-Length included), no content (RFC 9110 9.3.2).
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]


def _wsgi_answer(answer: ErrorResponse) -> tuple[str, list[tuple[str, str]], bytes]:
    """``answer`` as WSGI values: the one place this adapter converts a refusal, for the
    middleware (sent as is) and for ``require_scopes`` views (wrapped in a Werkzeug response).

    The status line carries its reason phrase (``401 Unauthorized``); the headers are the
    answer's, with a correct Content-Length.
    """
    headers = [(name, value) for name, value in answer.headers if name.lower() != "content-length"]
    headers.append(("content-length", str(len(answer.body))))
    return status_line(answer.status), headers, answer.body


class _WerkzeugRoutes:
    """The Werkzeug side of ``require_scopes``: a ``werkzeug.wrappers.Request`` in, a
    ``Response`` out."""

    def route_request(self, request: WerkzeugRequest) -> RouteRequest:
        environ = request.environ
        return RouteRequest(
            store=environ,
            method=request.method,
            path=f"{environ.get('SCRIPT_NAME', '')}{environ.get('PATH_INFO', '')}",
            client=request.remote_addr,
            header=request.headers.get,
        )

    def respond(self, request: WerkzeugRequest, answer: ErrorResponse) -> WerkzeugResponse:
        from werkzeug.wrappers import Response

        status, headers, body = _wsgi_answer(answer)
        return Response(body, status, headers)


ROUTE_ADAPTER = _WerkzeugRoutes()
"""How ``jwt_guard.require_scopes`` reads a Werkzeug request and answers it."""
