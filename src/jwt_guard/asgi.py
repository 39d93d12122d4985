"""``JWTGuard``: the raw ASGI middleware (Starlette, FastAPI, any ASGI 3 app).

It translates only: the bearer token out of the scope's headers, the verdict of
:class:`~jwt_guard.core.verifier.TokenVerifier` back into the scope or into an RFC 6750 answer.
Everything else lives in :mod:`jwt_guard.guard.middleware`, shared with the WSGI middleware.
This module is also the Starlette side of ``require_scopes`` (:data:`ROUTE_ADAPTER`);
:func:`_to_response` is the one place an ``ErrorResponse`` becomes an ASGI answer.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from datetime import timedelta
from typing import Any

from starlette.authentication import AuthCredentials, BaseUser, UnauthenticatedUser
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.websockets import WebSocket, WebSocketState

from ._logsafe import exc_info, safe
from .binding.policy import BEARER, DPOP
from .core.claims import Claims
from .core.verifier import TokenVerifier
from .errors import InvalidToken, JWTGuardError
from .guard.middleware import (
    CLAIMS_KEY,
    GUARD_KEY,
    ErrorHandler,
    ErrorResponse,
    Guard,
    RouteRefusal,
    RouteRequest,
    check_option_names,
    flag_option,
    options_from_env,
)
from .guard.websocket import Sleep, WebSocketSession, read_handshake, websocket_options

__all__ = ["JWTGuard", "JWTUser"]

logger = logging.getLogger("jwt_guard.asgi")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_WS_DENIAL = "websocket.http.response"
_POLICY_VIOLATION = 1008


class JWTUser(BaseUser):
    """Starlette's ``request.user`` for a verified token: authenticated, named by ``sub``.

    Example::

        async def me(request):
            user = request.user                 # a JWTUser behind JWTGuard
            return JSONResponse({"sub": user.identity, "email": user.claims.get("email")})
    """

    claims: Claims

    def __init__(self, claims: Claims) -> None:
        object.__setattr__(self, "claims", claims)

    def __setattr__(self, name: str, value: object) -> None:
        # One JWTUser serves every request carrying the same token: it must not carry state.
        raise AttributeError(f"JWTUser is read-only (cannot set {name!r})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"JWTUser is read-only (cannot delete {name!r})")

    def __repr__(self) -> str:
        return f"JWTUser({self.identity!r})"

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.claims.subject or ""

    @property
    def identity(self) -> str:
        return self.claims.subject or ""


class _Credentials(AuthCredentials):
    """``request.auth`` for a verified token: the scopes as an immutable, sorted tuple.

    Shared by every request carrying the same token, so it is read-only: a view that assigns
    ``request.auth.scopes`` gets an ``AttributeError`` instead of granting later requests more.
    """

    def __init__(self, scopes: frozenset[str]) -> None:
        object.__setattr__(self, "scopes", tuple(sorted(scopes)))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"request.auth is read-only (cannot set {name!r})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"request.auth is read-only (cannot delete {name!r})")


_MEMO_KEY = object()  # this module's slot in Claims.memo: no other code can name it


def _derived(claims: Claims) -> tuple[JWTUser, _Credentials, bool]:
    """What each request with this token needs: its user, its credentials, and whether it is
    bound to a sender (``cnf``), so the guard's check of that costs nothing for the others."""
    return JWTUser(claims), _Credentials(claims.scopes), "cnf" in claims


class JWTGuard:
    """ASGI middleware that lets through only requests carrying a valid bearer token.

    It guards ``http`` and ``websocket`` scopes; ``lifespan`` and any other scope type pass
    straight through. On success the verified :class:`~jwt_guard.core.claims.Claims` are in
    ``scope["jwt_guard.claims"]``, ``request.user`` is a :class:`JWTUser` and ``request.auth``
    holds the token's scopes, so ``starlette.authentication.requires("read:items")`` works
    unchanged. A refused HTTP request gets an RFC 6750 answer (400, 401, 403 or 503 with
    ``Retry-After``); a refused websocket is turned away before the app sees it (an HTTP
    denial response where the server supports it, else a close with code 1008).

    Args:
        app: the ASGI app to protect.
        verifier: a :class:`~jwt_guard.core.verifier.TokenVerifier`; or leave it out and pass its
            options (``issuer=``, ``audience=``, ``jwks_url=``...) as keyword arguments.
        exclude_paths: exact paths that pass without a token (e.g. ``"/health"``).
        exclude_prefixes: path prefixes that pass without a token (``"/docs"`` opens
            ``/docs`` and ``/docs/...``, not ``/docsx``). Paths holding ``//`` or ``/.``
            segments are never open.
        allow_preflight: let CORS preflights (``OPTIONS`` with ``Origin`` and
            ``Access-Control-Request-Method``) through unauthenticated, for a CORS layer *inside*
            the guard to answer (default False: anyone can forge a preflight, and a view that
            acts on OPTIONS would run for it; put the CORS middleware outside the guard).
        optional: let requests *without* an ``Authorization`` header through, unauthenticated;
            a token that is present must still be valid.
        realm: the ``realm`` of the ``WWW-Authenticate`` challenge (default ``"api"``).
        error_handler: ``f(exc, response) -> ErrorResponse | None`` to reshape refusals.
        prefetch: fetch every remote key set during the ASGI lifespan start-up, so the first
            request does not pay for it and a wrong JWKS URL fails the boot (default False).
        resource: this API's resource URI (RFC 8707/9728), e.g.
            ``"https://api.example.com/mcp"``: the middleware serves its protected-resource
            metadata at ``/.well-known/oauth-protected-resource/mcp`` (and the bare
            well-known path) to anyone, names that URL in every challenge
            (``resource_metadata="..."``), and, unless ``audience=`` is given, requires tokens
            whose ``aud`` holds the resource URI.
        resource_metadata: more RFC 9728 fields for that document (``scopes_supported``,
            ``resource_name``, ``resource_documentation``, ``authorization_servers``, which
            defaults to the configured issuers...).
        websocket_recheck: seconds (or a ``timedelta``) between re-verifications of the token
            of an open websocket, which close it with 1008 once the token is revoked or no
            longer passes the checks (default 60; ``None``: only its expiry closes it).
        websocket_query_param: the name of a query parameter a websocket handshake may carry
            its token in (default ``None``: off; URLs end up in access logs and proxies).
        websocket_sleep: how the websocket watcher waits, ``asyncio.sleep`` by default; tests
            pass one they control, together with the verifier's ``clock``.

    A websocket handshake carries its token in ``Authorization``, or (browsers) in
    ``Sec-WebSocket-Protocol`` (see :mod:`jwt_guard.guard.websocket`); the connection is
    closed with 1008 when the token expires or is revoked, without the app doing anything.

    Example::

        app = Starlette(routes=[...])
        app.add_middleware(
            JWTGuard,
            issuer="https://idp.example.com/",
            audience="my-api",
            jwks_url="https://idp.example.com/.well-known/jwks.json",
            exclude_paths=["/health"],
        )
        # or: app = JWTGuard(app, verifier=TokenVerifier(...))
    """

    def __init__(
        self,
        app: ASGIApp,
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
        websocket_recheck: float | timedelta | None = 60.0,
        websocket_query_param: str | None = None,
        websocket_sleep: Sleep | None = None,
        **verifier_options: Any,
    ) -> None:
        self.app = app
        check_option_names("JWTGuard", verifier_options)  # before Guard(owner=...) sees them
        self.guard = Guard(
            owner="JWTGuard",
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
        self.prefetch = flag_option("JWTGuard", "prefetch", prefetch)
        self.verifier = self.guard.verifier
        self._cached = self.verifier.cached
        self._ws_recheck, self._ws_query_param, self._ws_sleep = websocket_options(
            "JWTGuard", websocket_recheck, websocket_query_param, websocket_sleep
        )
        self._bearer, self._dpop = self.guard.bearer_scheme, self.guard.dpop_scheme
        self._bind_all = self.guard.sender.always  # a "required" mode: check every token
        # Whether any request may pass unchecked (open paths, CORS preflights): may_open() is
        # false for every method when it is false for OPTIONS.
        self._opens = self.guard.may_open("OPTIONS")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await self._websocket(scope, receive, send)
                return
            if scope["type"] == "lifespan" and self.prefetch:
                send = self._prefetching(send)
            await self.app(scope, receive, send)
            return
        guard = self.guard
        if guard.resource is not None and scope["type"] == "http":
            answer = guard.metadata_answer(scope.get("method", "GET"), scope.get("path", ""))
            if answer is not None:  # RFC 9728 metadata: open to anyone, built from configuration
                await _to_response(answer)(scope, receive, send)
                return
        scope[GUARD_KEY] = guard
        bearer = b""  # the Authorization value, when there is exactly one
        count = 0  # Authorization headers
        origin = request_method = None
        if self._opens:  # open paths or preflights: the CORS headers may matter too
            for name, value in scope.get("headers", ()):
                if name == b"authorization":
                    bearer = value
                    count += 1
                elif name == b"origin":
                    origin = value
                elif name == b"access-control-request-method":
                    request_method = value
        else:  # every request needs its token: only Authorization matters
            for name, value in scope.get("headers", ()):
                if name == b"authorization":
                    bearer = value
                    count += 1
        client = scope.get("client")
        address = client[0] if client else None  # a str, per the ASGI spec
        claims: Claims | None = None
        try:
            if (
                self._opens
                and guard.may_open(method := scope.get("method", "GET"))
                and guard.is_open(
                    method,
                    scope.get("path", ""),
                    {
                        "origin": _text(origin),
                        "access-control-request-method": _text(request_method),
                    }.get,
                )
            ):
                pass
            else:
                scheme = BEARER
                token = ""
                if count == 1:  # a token verified before? (the cache holds only well-formed
                    if bearer.startswith(b"Bearer ") and self._bearer:  # tokens: no parse here)
                        token = bearer[7:].decode("latin-1")
                        claims = self._cached(token, address)
                    elif bearer.startswith(b"DPoP ") and self._dpop:
                        scheme, token = DPOP, bearer[5:].decode("latin-1")
                        claims = self._cached(token, address)
                if claims is None:
                    verified = await self._verify(_authorization(scope), address)
                    if verified is not None:
                        scheme, token, claims = verified
                if claims is not None:
                    # Derived once per verified token, immutable, shared like the claims.
                    user, auth, bound = claims.memo(_MEMO_KEY, _derived)
                    if bound or self._bind_all or scheme == DPOP:
                        # the proof and the certificate: checked on every request, never cached
                        await guard.abind(claims, scheme, token, _ScopeFacts(scope), address)
        except JWTGuardError as exc:
            await self._refuse(scope, receive, send, exc)
            return
        if claims is None:
            scope[CLAIMS_KEY] = None
            scope["user"] = UnauthenticatedUser()
            scope["auth"] = AuthCredentials()
        else:
            scope[CLAIMS_KEY] = claims
            scope["user"], scope["auth"] = user, auth
        try:
            await self.app(scope, receive, send)
        except RouteRefusal as refusal:  # a FastAPI dependency refused (and logged) the request
            await _to_response(refusal.response)(scope, receive, send)

    @classmethod
    def from_env(
        cls,
        app: ASGIApp,
        prefix: str = "JWT_GUARD_",
        *,
        environ: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> JWTGuard:
        """Build the middleware from ``JWT_GUARD_*`` environment variables (README table).

        Example: ``app = JWTGuard.from_env(app)``; with ``add_middleware`` pass
        ``verifier=TokenVerifier.from_env()`` instead.
        """
        return cls(app, **options_from_env("JWTGuard.from_env", prefix, environ, overrides))

    def _prefetching(self, send: Send) -> Send:
        """Fetch the key sets before the server is told start-up is complete.

        On failure the server gets ``lifespan.startup.failed`` with the reason, and the app's
        lifespan is stopped with a ``RuntimeError``; what the app then reports is not repeated.
        """
        failed = False

        async def send_after_prefetch(message: Message) -> None:
            nonlocal failed
            if failed:
                return
            if message["type"] == "lifespan.startup.complete":
                try:
                    await self.verifier.aprefetch()
                except JWTGuardError as exc:
                    failed = True
                    text = f"jwt_guard: could not fetch signing keys: {safe(exc.detail)}"
                    await send({"type": "lifespan.startup.failed", "message": text})
                    raise RuntimeError(text) from exc
            await send(message)

        return send_after_prefetch

    async def _verify(
        self, authorization: list[str], address: str | None
    ) -> tuple[str, str, Claims] | None:
        """``(scheme, token, claims)``, ``None`` to pass unauthenticated, or a ``JWTGuardError``."""
        credentials = self.guard.credentials(authorization, address)
        if credentials is None:
            return None
        scheme, token = credentials
        try:
            return scheme, token, await self.verifier.averify(token, client=address)
        except JWTGuardError:
            raise
        except Exception as exc:  # a duck-typed verifier; never let it become a 500
            logger.error(
                "verifier raised %s: %s", type(exc).__name__, safe(exc), exc_info=exc_info(exc)
            )
            raise InvalidToken(f"token could not be verified ({type(exc).__name__})") from exc

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, exc: JWTGuardError) -> None:
        if scope["type"] == "websocket":
            if (await receive())["type"] != "websocket.connect":
                return  # the client left before the handshake
            if _WS_DENIAL not in (scope.get("extensions") or {}):
                await send({"type": "websocket.close", "code": _POLICY_VIOLATION, "reason": ""})
                return
        authorization = [
            value.decode("latin-1")
            for name, value in scope.get("headers", ())
            if name == b"authorization"
        ]
        # Starlette's Response sends "websocket.http.response.*" for a websocket scope
        await _to_response(self.guard.error_response(exc, authorization))(scope, receive, send)

    # -- websockets: the handshake's token places, the app's view of them, the lifetime -------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """One websocket connection: check its token, then run the app behind a
        :class:`~jwt_guard.guard.websocket.WebSocketSession` that closes the connection when
        the token stops being valid."""
        guard = self.guard
        scope[GUARD_KEY] = guard
        handshake = read_handshake(scope, self._ws_query_param)
        client = scope.get("client")
        address = client[0] if client else None
        token: str | None = None
        claims: Claims | None = None
        try:
            if not (guard.may_open("GET") and guard.is_open("GET", scope.get("path", ""), _none)):
                token = handshake.token(guard, address)
                if token is not None:
                    claims = await self._averify(token, address)
                    if guard.needs_binding(claims, BEARER):  # a bound token: proof or certificate
                        await guard.abind(claims, BEARER, token, _ScopeFacts(scope), address)
        except JWTGuardError as exc:
            await self._refuse(scope, receive, send, exc)
            return
        if claims is None:
            scope[CLAIMS_KEY] = None
            scope["user"] = UnauthenticatedUser()
            scope["auth"] = AuthCredentials()
        else:
            scope[CLAIMS_KEY] = claims
            scope["user"], scope["auth"], _ = claims.memo(_MEMO_KEY, _derived)
        session = WebSocketSession(
            send,
            handshake,
            self.verifier,
            token,
            claims,
            address,
            self._ws_recheck,
            self._ws_sleep,
        )
        try:
            await self.app(scope, receive, session.send)
        except RouteRefusal as refusal:  # a FastAPI dependency refused (and logged) it
            await _to_response(refusal.response)(scope, receive, session.send)
        finally:
            await session.stop()

    async def _averify(self, token: str, address: str | None) -> Claims:
        try:
            return await self.verifier.averify(token, client=address)
        except JWTGuardError:
            raise
        except Exception as exc:  # a duck-typed verifier; never let it become a 500
            logger.error(
                "verifier raised %s: %s", type(exc).__name__, safe(exc), exc_info=exc_info(exc)
            )
            raise InvalidToken(f"token could not be verified ({type(exc).__name__})") from exc


def _none(name: str) -> str | None:
    return None  # a websocket handshake is never a CORS preflight


def _authorization(scope: Scope) -> list[str]:
    """Every ``Authorization`` value of the request, in order."""
    return [v.decode("latin-1") for n, v in scope.get("headers", ()) if n == b"authorization"]


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


class _ScopeFacts:
    """One ASGI request as the sender checks see it (:class:`~jwt_guard.binding.policy.
    RequestFacts`): read from the scope only when a bound token asks."""

    __slots__ = ("_scope",)

    def __init__(self, scope: Scope) -> None:
        self._scope = scope

    @property
    def method(self) -> str:
        method = self._scope.get("method", "GET")
        return method if isinstance(method, str) else "GET"

    @property
    def peer(self) -> str | None:
        client = self._scope.get("client")
        return client[0] if client and isinstance(client[0], str) else None

    def target(self) -> str | bytes:
        raw = self._scope.get("raw_path")
        if isinstance(raw, bytes):
            return raw  # as received: percent-encoding kept, never the Host
        path = self._scope.get("path", "")
        return path if isinstance(path, str) else ""

    def header_values(self, name: str) -> list[str]:
        wanted = name.encode("latin-1")
        return [v.decode("latin-1") for n, v in self._scope.get("headers", ()) if n == wanted]

    def tls_client_cert(self) -> str | bytes | None:
        """``client_cert_chain[0]`` of the ASGI TLS extension, when the server verified it
        (``client_cert_error`` is ``None``). uvicorn and hypercorn do not provide the extension
        (a proxy's ``Client-Cert`` header is the way there)."""
        extensions = self._scope.get("extensions")
        tls = extensions.get("tls") if isinstance(extensions, dict) else None
        if not isinstance(tls, dict) or tls.get("client_cert_error") is not None:
            return None
        chain = tls.get("client_cert_chain")
        if not isinstance(chain, (list, tuple)) or not chain:
            return None
        first = chain[0]
        return first if isinstance(first, (str, bytes)) else None


def _to_response(answer: ErrorResponse) -> Response:
    """``answer`` as a Starlette ``Response`` (itself an ASGI app): the one place this adapter
    converts a refusal, for the middleware, ``require_scopes`` views and FastAPI dependencies.

    The headers are sent exactly as given (repeated names kept), with a correct Content-Length.
    """
    response = Response(answer.body, int(answer.status))
    headers = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in answer.headers
        if name.lower() != "content-length"
    ]
    headers.append((b"content-length", str(len(answer.body)).encode("latin-1")))
    response.raw_headers = headers
    return response


class _StarletteRoutes:
    """The Starlette side of ``require_scopes``: a ``Request`` or ``WebSocket`` in, a
    ``Response`` out."""

    def route_request(self, request: HTTPConnection) -> RouteRequest:
        scope = request.scope
        client = scope.get("client")
        return RouteRequest(
            store=scope,
            method=scope.get("method", "GET"),
            path=scope.get("path", ""),
            client=client[0] if client else None,
            header=request.headers.get,
            websocket=scope["type"] == "websocket",
        )

    def respond(self, request: HTTPConnection, answer: ErrorResponse) -> Response:
        return _to_response(answer)

    async def refuse_websocket(self, websocket: WebSocket, answer: ErrorResponse) -> None:
        """A websocket route's refusal, as the middleware's own: the RFC 6750 answer as an
        HTTP denial response where the server supports it (before accept), else close 1008."""
        if websocket.client_state is WebSocketState.CONNECTING and _WS_DENIAL in (
            websocket.scope.get("extensions") or {}
        ):
            await websocket.send_denial_response(_to_response(answer))
        else:
            await websocket.close(code=_POLICY_VIOLATION)


ROUTE_ADAPTER = _StarletteRoutes()
"""How ``jwt_guard.require_scopes`` reads a Starlette request and answers it."""
