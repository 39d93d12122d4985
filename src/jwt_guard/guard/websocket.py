"""WebSocket connections, framework-free: where a handshake carries its token, what the app is
shown of the handshake, and how long the connection may live.

Browsers cannot set ``Authorization`` on a WebSocket, so a handshake may carry its bearer token
in one of three places (RFC 6750 2: a client uses one, never two):

* the ``Authorization`` header (non-browser clients), exactly as on HTTP;
* the ``Sec-WebSocket-Protocol`` header, the one header a browser lets a page set, in either of
  the two forms in use: a ``bearer`` marker followed by the token as the next value
  (``new WebSocket(url, ["chat", "bearer", token])``), or Kubernetes' single value
  ``base64url.bearer.authorization.k8s.io.<base64url of the token>``;
* a query parameter, only when the middleware is told its name (off by default: URLs land in
  access logs and proxies).

:func:`read_handshake` finds the token and rewrites the ASGI scope so the application never
sees it: the token entries leave ``scope["subprotocols"]`` and the ``Sec-WebSocket-Protocol``
header, the query parameter leaves ``scope["query_string"]``. :class:`WebSocketSession` stands
between the application and the server for one connection: the ``websocket.accept`` it sends
never names a token entry (when the app picks no subprotocol and the client sent the ``bearer``
marker, the marker is echoed, because a browser that offered subprotocols fails a handshake
whose answer names none), and from the accept on a watcher closes the connection with 1008
when the token expires (``exp`` plus the verifier's leeway) or when a re-verification every
``recheck`` seconds refuses it (revocation, ``claims_check``, a key withdrawn); 1013 when the
keys cannot be had. ASGI messages are plain dicts, so no web framework is imported here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from .._codec import b64url_decode
from .._logsafe import exc_info, safe
from .._options import duration
from ..core.claims import Claims
from ..core.verifier import TokenVerifier
from ..errors import (
    ConfigurationError,
    ExpiredToken,
    InvalidRequest,
    JWTGuardError,
    KeysUnavailable,
)
from .middleware import Guard, _is_token68

__all__ = [
    "BEARER_MARKER",
    "CLOSE_POLICY_VIOLATION",
    "CLOSE_TRY_AGAIN_LATER",
    "K8S_PREFIX",
    "Handshake",
    "Sleep",
    "WebSocketClosedByGuard",
    "WebSocketSession",
    "read_handshake",
    "websocket_options",
]

logger = logging.getLogger("jwt_guard.websocket")

BEARER_MARKER = "bearer"
"""The subprotocol value announcing that the next value is the bearer token."""
K8S_PREFIX = "base64url.bearer.authorization.k8s.io."
"""Kubernetes' form: this prefix, then the token in unpadded base64url, as one value."""
CLOSE_POLICY_VIOLATION = 1008
CLOSE_TRY_AGAIN_LATER = 1013
_CLOSE_INTERNAL_ERROR = 1011
_PROTOCOL_HEADER = b"sec-websocket-protocol"

Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]
Sleep = Callable[[float], Awaitable[Any]]
"""``asyncio.sleep``-like: how the watcher waits (inject one in tests to drive it)."""


_QUERY_NAME = re.compile(r"[A-Za-z0-9_.~-]{1,64}\Z").match


def websocket_options(
    owner: str, recheck: object, query_param: object, sleep: object
) -> tuple[float | None, str | None, Sleep]:
    """Check the middleware's websocket options: ``(recheck seconds or None, query parameter
    name or None, sleep)``; a bad value is a ``ConfigurationError`` naming the option."""
    seconds = (
        None if recheck is None else duration(owner, "websocket_recheck", recheck, allow_zero=False)
    )
    if query_param is not None and not (isinstance(query_param, str) and _QUERY_NAME(query_param)):
        raise ConfigurationError(
            f"{owner}(websocket_query_param=...): must be a parameter name such as "
            f"'access_token' (letters, digits, '_.~-'), not {query_param!r}"
        )
    if sleep is None:
        sleep = asyncio.sleep
    elif not callable(sleep):
        raise ConfigurationError(
            f"{owner}(websocket_sleep=...): must be an async function like asyncio.sleep, "
            f"not {type(sleep).__name__!r}"
        )
    return seconds, query_param, sleep


class WebSocketClosedByGuard(OSError):
    """Raised when the application sends on a connection the guard has closed (the token
    expired or was revoked).

    An ``OSError``, as ASGI asks of a send on a closed connection: Starlette turns it into
    ``WebSocketDisconnect``, so an endpoint's usual disconnect handling covers it.
    """


@dataclass(frozen=True)
class Handshake:
    """What a websocket handshake carries, read once by :func:`read_handshake`.

    ``authorization`` holds the ``Authorization`` header values; ``protocol_token`` and
    ``query_token`` the token from the subprotocols and from the query parameter (``None``
    when absent); ``carriers`` the subprotocol values that carry a token (never echoed);
    ``marker`` the ``bearer`` marker as the client spelt it; ``error`` a malformed
    subprotocol or query token, raised only when the token is needed.
    """

    authorization: tuple[str, ...]
    protocol_token: str | None = None
    query_token: str | None = None
    carriers: frozenset[str] = frozenset()
    marker: str | None = None
    error: InvalidRequest | None = None

    def token(self, guard: Guard, client: str | None) -> str | None:
        """The bearer token to verify, or ``None`` to pass unauthenticated (optional mode, no
        credentials at all). Raises ``InvalidRequest`` when the handshake is malformed or
        carries a token in more than one place, ``MissingToken`` when it carries none; each
        refusal is logged once."""
        try:
            if self.error is not None:
                raise self.error
            found = [t for t in (self.protocol_token, self.query_token) if t is not None]
            if self.authorization and found:
                found.append("authorization")
            if len(found) > 1:
                raise InvalidRequest("the handshake carries a token in more than one place")
        except InvalidRequest as exc:
            guard.verifier.rejected(exc, None, client)
            raise
        if found:
            return found[0]
        return guard.bearer(self.authorization, client)


def read_handshake(scope: MutableMapping[str, Any], query_param: str | None = None) -> Handshake:
    """Read the token places of a ``websocket`` scope and take the token out of the app's view.

    Afterwards ``scope["subprotocols"]`` lists only the application's subprotocols (in the
    client's order), the ``Sec-WebSocket-Protocol`` header says the same, and the query
    parameter ``query_param`` (if given) is gone from ``scope["query_string"]``.
    """
    authorization: list[str] = []
    offered: list[str] = []
    kept: list[tuple[bytes, bytes]] = []
    for name, value in scope.get("headers", ()):
        if name == _PROTOCOL_HEADER:
            offered.extend(_split(value.decode("latin-1")))
            continue
        if name == b"authorization":
            authorization.append(value.decode("latin-1"))
        kept.append((name, value))
    if not offered:
        offered = [p for v in scope.get("subprotocols") or () for p in _split(str(v))]
    protocols, error = _protocol_token(offered)
    app_protocols = [p for p in offered if p not in protocols.carriers and p != protocols.marker]
    if protocols.carriers or protocols.marker is not None:
        scope["subprotocols"] = app_protocols
        if app_protocols:
            kept.append((_PROTOCOL_HEADER, ", ".join(app_protocols).encode("latin-1")))
        scope["headers"] = kept
    query_token: str | None = None
    if query_param is not None:
        query_token, query, query_error = _query_token(scope.get("query_string", b""), query_param)
        error = error or query_error
        if query is not None:
            scope["query_string"] = query
    return Handshake(
        tuple(authorization),
        protocols.token,
        query_token,
        protocols.carriers,
        protocols.marker,
        error,
    )


def _split(value: str) -> Iterable[str]:
    """One header value (or a server's list item) as subprotocol values: comma separated."""
    for item in value.split(","):
        item = item.strip(" \t")
        if item:
            yield item


@dataclass(frozen=True)
class _Protocols:
    token: str | None = None
    carriers: frozenset[str] = frozenset()
    marker: str | None = None


def _protocol_token(offered: Sequence[str]) -> tuple[_Protocols, InvalidRequest | None]:
    tokens: list[str] = []
    carriers: set[str] = set()
    marker: str | None = None
    error: InvalidRequest | None = None
    index = 0
    while index < len(offered):
        value = offered[index]
        if value.lower() == BEARER_MARKER:
            marker = value
            if index + 1 == len(offered):
                error = InvalidRequest("the 'bearer' subprotocol is not followed by a token")
            else:
                tokens.append(offered[index + 1])
                carriers.add(offered[index + 1])
                index += 1
        elif value.startswith(K8S_PREFIX):
            carriers.add(value)
            try:
                tokens.append(b64url_decode(value[len(K8S_PREFIX) :]).decode("ascii"))
            except (ValueError, UnicodeDecodeError):
                error = InvalidRequest("the k8s bearer subprotocol is not canonical base64url")
        index += 1
    if error is None and len(tokens) > 1:
        error = InvalidRequest("the subprotocols carry more than one token")
    token = tokens[0] if tokens and error is None else None
    if token is not None and not _is_token68(token):
        error, token = InvalidRequest("the subprotocol token is not one token68 credential"), None
    return _Protocols(token, frozenset(carriers), marker), error


def _query_token(query: bytes, name: str) -> tuple[str | None, bytes | None, InvalidRequest | None]:
    """The token in parameter ``name`` and the query string without it (``None``: unchanged)."""
    if not query:
        return None, None, None
    values: list[str] = []
    kept: list[bytes] = []
    for pair in query.split(b"&"):
        key, _, value = pair.partition(b"=")
        if unquote_plus(key.decode("latin-1")) == name:
            values.append(unquote_plus(value.decode("latin-1")))
        else:
            kept.append(pair)
    if not values:
        return None, None, None
    rest = b"&".join(kept)
    if len(values) > 1:
        return None, rest, InvalidRequest(f"the query parameter {name!r} is given twice")
    if not _is_token68(values[0]):
        return None, rest, InvalidRequest("the query token is not one token68 credential")
    return values[0], rest, None


class WebSocketSession:
    """One accepted-or-not websocket connection between the application and the server.

    Pass :meth:`send` to the application instead of the server's ``send``. The first
    ``websocket.accept`` starts the watcher (when there are claims to watch); the app's
    ``websocket.close`` or the end of the connection (:meth:`stop`) ends it. After the guard
    closed the connection the app's sends raise :class:`WebSocketClosedByGuard`.

    Args:
        send: the server's ``send``.
        handshake: what :func:`read_handshake` found.
        verifier: the verifier that accepted the token (its ``clock`` and ``leeway`` set the
            deadline; ``averify`` re-checks the token).
        token: the verified token; ``claims``: its claims (``None``: nothing to watch).
        client: the client's address, for the log.
        recheck: seconds between re-verifications of an open connection (``None``: only the
            expiry is watched).
        sleep: how the watcher waits (``asyncio.sleep``).
    """

    def __init__(
        self,
        send: Send,
        handshake: Handshake,
        verifier: TokenVerifier,
        token: str | None,
        claims: Claims | None,
        client: str | None,
        recheck: float | None,
        sleep: Sleep,
    ) -> None:
        self._send = send
        self._handshake = handshake
        self._verifier = verifier
        self._token = token
        self._claims = claims
        self._client = client
        self._recheck = recheck
        self._sleep = sleep
        self._lock = asyncio.Lock()
        self._watcher: asyncio.Task[None] | None = None
        self._ended = False  # the app closed, the server answered, or the guard closed
        self.closed_by_guard: JWTGuardError | None = None
        """Why the guard closed the connection, if it did."""

    async def send(self, message: Message) -> None:
        """The application's ``send``: passes messages on, vets the accept."""
        async with self._lock:
            if self.closed_by_guard is not None:
                raise WebSocketClosedByGuard(
                    f"jwt_guard closed this websocket ({self.closed_by_guard.code})"
                )
            kind = message.get("type")
            if kind == "websocket.accept":
                message = self._vetted_accept(message)
                await self._send(message)
                self._start_watcher()
                return
            if kind == "websocket.close" or kind == "websocket.http.response.start":
                self._ended = True
            await self._send(message)
        if self._ended:
            self._cancel_watcher()

    async def stop(self) -> None:
        """The application returned: end the watcher (and wait for it)."""
        self._ended = True
        watcher = self._cancel_watcher()
        if watcher is not None:
            try:
                await watcher
            except asyncio.CancelledError:
                if not watcher.cancelled():
                    raise  # our own task was cancelled, not (only) the watcher

    def _vetted_accept(self, message: Message) -> Message:
        handshake = self._handshake
        if not handshake.carriers and handshake.marker is None:
            return message
        chosen = message.get("subprotocol")
        if chosen is not None and (chosen in handshake.carriers or chosen.startswith(K8S_PREFIX)):
            logger.error(
                "the application accepted a websocket with a token-carrying subprotocol; "
                "jwt_guard does not echo it (choose one of scope['subprotocols'])"
            )
            chosen = None
        if chosen is None:
            chosen = handshake.marker  # a browser fails a handshake that answers none
        headers = [
            (name, value)
            for name, value in message.get("headers") or ()
            if bytes(name).lower() != _PROTOCOL_HEADER
        ]
        return {**message, "subprotocol": chosen, "headers": headers}

    def _start_watcher(self) -> None:
        if self._claims is None or self._token is None or self._watcher is not None:
            return
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    def _cancel_watcher(self) -> asyncio.Task[None] | None:
        watcher = self._watcher
        if watcher is not None and not watcher.done() and watcher is not asyncio.current_task():
            watcher.cancel()
        return watcher

    async def _watch(self) -> None:
        """Close the connection when the token stops being valid."""
        verifier, token, claims = self._verifier, self._token, self._claims
        if token is None or claims is None:
            return
        exp = claims.get("exp")
        deadline = float(exp) + verifier.leeway if type(exp) in (int, float) else None
        try:
            while not self._ended:
                now = verifier.clock()
                if deadline is not None and now >= deadline:
                    expired = ExpiredToken(
                        f"token expired at {deadline - verifier.leeway:.0f} (now {now:.0f}, "
                        f"leeway {verifier.leeway:g}s) while its websocket was open"
                    )
                    verifier.rejected(expired, token, self._client)
                    raise expired
                wait = self._recheck
                if deadline is not None:
                    wait = deadline - now if wait is None else min(wait, deadline - now)
                if wait is None:
                    return  # no exp (require_exp=False) and no re-checks: nothing to watch
                await self._sleep(wait)
                if self._ended:
                    return
                if deadline is None or verifier.clock() < deadline:
                    await verifier.averify(token, client=self._client)  # logs its own refusal
        except JWTGuardError as exc:
            await self._close(exc)
        except Exception as exc:  # a broken sleep or observer: fail closed, never linger
            logger.error(
                "websocket watcher failed: %s: %s",
                type(exc).__name__,
                safe(exc),
                exc_info=exc_info(exc),
            )
            await self._close(None)

    async def _close(self, exc: JWTGuardError | None) -> None:
        async with self._lock:
            if self._ended or self.closed_by_guard is not None:
                return
            if exc is None:
                code, reason = _CLOSE_INTERNAL_ERROR, ""
                self.closed_by_guard = JWTGuardError("the websocket watcher failed")
            else:
                code = (
                    CLOSE_TRY_AGAIN_LATER
                    if isinstance(exc, KeysUnavailable)
                    else CLOSE_POLICY_VIOLATION
                )
                reason = exc.description  # fixed text, never the detail
                self.closed_by_guard = exc
            with contextlib.suppress(OSError):  # the client left first
                await self._send({"type": "websocket.close", "code": code, "reason": reason})
