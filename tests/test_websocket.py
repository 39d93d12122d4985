"""WebSockets behind JWTGuard: the token in the handshake (Authorization, the two
``Sec-WebSocket-Protocol`` forms, the opt-in query parameter), the app's view of the handshake
without the token, the accepted subprotocol, and a connection that lives no longer than its token.

The lifetime tests drive the guard's watcher with :class:`jwt_guard.testing.ManualClock` (the
verifier's clock and the watcher's sleep), through raw ASGI messages on the test's own event loop;
``test_e2e_websocket.py`` does the same through a real uvicorn server.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import timedelta
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from _asgi_helpers import TestClient, WebSocketDenialResponse, parse_challenge, verifier_for
from _hostile import CORPUS, Answer, Hostile, Kit, assert_refusal, make_kit, make_verifier
from jwt_guard import ConfigurationError, JWTGuard, JWTGuardWSGI, TokenVerifier
from jwt_guard.decorators import require_scopes
from jwt_guard.errors import InvalidRequest, KeysUnavailable
from jwt_guard.guard.middleware import CLAIMS_KEY
from jwt_guard.guard.websocket import K8S_PREFIX, read_handshake
from jwt_guard.keys.jwk import KeySet
from jwt_guard.testing import LocalIssuer, ManualClock

# -- the app behind the guard -------------------------------------------------------------------

EVENTS: list[tuple[str, Any]] = []
"""What the endpoints saw: ("disconnect", code), ("send-failed", code)..."""


async def chat(websocket: WebSocket) -> None:
    """Accepts the first offered subprotocol, reports what it was shown, then echoes."""
    # (Starlette's TestClient offers [""] when given no subprotocols)
    offered = [p for p in websocket.scope.get("subprotocols") or [] if p]
    await websocket.accept(subprotocol=offered[0] if offered else None)
    claims = websocket.scope[CLAIMS_KEY]
    await websocket.send_json(
        {
            "sub": None if claims is None else claims.subject,
            "user": websocket.user.display_name if websocket.user.is_authenticated else None,
            "scopes": list(websocket.auth.scopes),
            "subprotocols": offered,
            "protocol_header": websocket.headers.get("sec-websocket-protocol"),
            "query": websocket.scope.get("query_string", b"").decode(),
        }
    )
    try:
        while True:
            await websocket.send_text(await websocket.receive_text())
    except WebSocketDisconnect as gone:
        EVENTS.append(("disconnect", gone.code))


PUSH = asyncio.Queue[str]


async def push(websocket: WebSocket) -> None:
    """Server push: sends whatever the test queues, never reads."""
    await websocket.accept()
    queue: PUSH = websocket.app.state.push
    try:
        while True:
            await websocket.send_text(await queue.get())
    except WebSocketDisconnect as gone:
        EVENTS.append(("send-failed", gone.code))


ECHO_TOKEN: list[str] = []


async def leaky(websocket: WebSocket) -> None:
    """A careless app that accepts with the token itself as its subprotocol."""
    await websocket.accept(subprotocol=ECHO_TOKEN[0])
    await websocket.close()


@require_scopes("read:items")
async def scoped(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json({"ok": True})
    await websocket.close()


@requires("read:items")
async def starlette_scoped(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json({"ok": True})
    await websocket.close()


def inner_app() -> Starlette:
    app = Starlette(
        routes=[
            WebSocketRoute("/ws", chat),
            WebSocketRoute("/open/ws", chat),
            WebSocketRoute("/push", push),
            WebSocketRoute("/leaky", leaky),
            WebSocketRoute("/scoped", scoped),
            WebSocketRoute("/starlette-scoped", starlette_scoped),
        ]
    )
    app.state.push = PUSH()
    return app


def guarded(verifier: TokenVerifier, **options: Any) -> JWTGuard:
    return JWTGuard(inner_app(), verifier=verifier, exclude_prefixes=["/open"], **options)


@pytest.fixture
def client(verifier: TokenVerifier) -> Iterator[TestClient]:
    EVENTS.clear()
    with TestClient(guarded(verifier)) as c:
        yield c


def k8s(token: str) -> str:
    return K8S_PREFIX + base64.urlsafe_b64encode(token.encode()).rstrip(b"=").decode()


# -- reading the handshake ----------------------------------------------------------------------


def scope_with(
    protocols: Sequence[str] = (), *, header: bool = True, query: bytes = b""
) -> dict[str, Any]:
    headers = [(b"host", b"testserver")]
    if protocols and header:
        headers.append((b"sec-websocket-protocol", ", ".join(protocols).encode()))
    return {
        "type": "websocket",
        "headers": headers,
        "subprotocols": list(protocols),
        "query_string": query,
    }


@pytest.mark.parametrize(
    ("offered", "token", "app_sees", "marker"),
    [
        pytest.param(["bearer", "tok.en.x"], "tok.en.x", [], "bearer", id="marker-only"),
        pytest.param(["chat", "bearer", "a.b.c"], "a.b.c", ["chat"], "bearer", id="app-first"),
        pytest.param(
            ["bearer", "a.b.c", "chat", "v2"], "a.b.c", ["chat", "v2"], "bearer", id="app-after"
        ),
        pytest.param(["Bearer", "a.b.c"], "a.b.c", [], "Bearer", id="marker-any-case"),
        pytest.param(
            [k8s("a.b.c"), "v4.channel.k8s.io"], "a.b.c", ["v4.channel.k8s.io"], None, id="k8s"
        ),
        pytest.param(["chat", "v2"], None, ["chat", "v2"], None, id="no-token"),
    ],
)
def test_the_token_leaves_the_apps_view_of_the_handshake(
    offered: list[str], token: str | None, app_sees: list[str], marker: str | None
) -> None:
    scope = scope_with(offered)
    handshake = read_handshake(scope)
    assert (handshake.protocol_token, handshake.marker, handshake.error) == (token, marker, None)
    assert scope["subprotocols"] == app_sees
    header = [v for k, v in scope["headers"] if k == b"sec-websocket-protocol"]
    assert header == ([", ".join(app_sees).encode()] if app_sees else [])
    assert (b"host", b"testserver") in scope["headers"]


def test_a_server_that_passes_the_header_unsplit_is_read_the_same() -> None:
    scope = scope_with(["chat,  bearer ,a.b.c"], header=False)
    handshake = read_handshake(scope)
    assert (handshake.protocol_token, scope["subprotocols"]) == ("a.b.c", ["chat"])


@pytest.mark.parametrize(
    "offered",
    [
        pytest.param(["chat", "bearer"], id="marker-without-token"),
        pytest.param(["bearer", "a.b.c", "bearer", "d.e.f"], id="two-markers"),
        pytest.param(["bearer", "a.b.c", k8s("d.e.f")], id="both-forms"),
        pytest.param([k8s("a.b.c"), k8s("a.b.c")], id="k8s-twice"),
        pytest.param([K8S_PREFIX + "a.b.c"], id="k8s-not-base64url"),
        pytest.param([K8S_PREFIX + "YWJj="], id="k8s-padded"),
        pytest.param([k8s("a b")], id="k8s-not-token68"),
        pytest.param(
            [K8S_PREFIX + base64.urlsafe_b64encode(b"\xff\xfe").decode()], id="k8s-binary"
        ),
        pytest.param(["bearer", "a$b"], id="marker-not-token68"),
    ],
)
def test_a_malformed_subprotocol_token_is_an_invalid_request(offered: list[str]) -> None:
    scope = scope_with(offered)
    handshake = read_handshake(scope)
    assert isinstance(handshake.error, InvalidRequest)
    assert handshake.protocol_token is None
    assert all("a.b.c" not in p and "d.e.f" not in p for p in scope["subprotocols"])


@pytest.mark.parametrize(
    ("query", "name", "token", "rest"),
    [
        pytest.param(b"room=1&access_token=a.b.c", "access_token", "a.b.c", b"room=1", id="found"),
        pytest.param(b"access_token=a.b.c", "access_token", "a.b.c", b"", id="alone"),
        pytest.param(
            b"room=1&access_token=a.b.c", None, None, b"room=1&access_token=a.b.c", id="off"
        ),
        pytest.param(b"room=1", "access_token", None, b"room=1", id="absent"),
        pytest.param(b"access%5Ftoken=a.b%2Ec", "access_token", "a.b.c", b"", id="percent-encoded"),
    ],
)
def test_the_query_token_is_read_only_when_named_and_then_removed(
    query: bytes, name: str | None, token: str | None, rest: bytes
) -> None:
    scope = scope_with(query=query)
    handshake = read_handshake(scope, name)
    assert (handshake.query_token, handshake.error) == (token, None)
    assert scope["query_string"] == rest


@pytest.mark.parametrize(
    "query", [b"t=a.b.c&t=d.e.f", b"t=a%20b", b"t="], ids=["twice", "not-token68", "empty"]
)
def test_a_malformed_query_token_is_an_invalid_request(query: bytes) -> None:
    scope = scope_with(query=query)
    handshake = read_handshake(scope, "t")
    assert isinstance(handshake.error, InvalidRequest)
    assert b"a.b.c" not in scope["query_string"]


# -- through the guard: where the token may be --------------------------------------------------


@pytest.mark.parametrize(
    ("how", "accepted"),
    [
        pytest.param("marker", "chat", id="bearer-marker"),
        pytest.param("marker-alone", "bearer", id="bearer-marker-alone"),
        pytest.param("k8s", "v4.channel.k8s.io", id="k8s"),
        pytest.param("authorization", None, id="authorization-header"),
    ],
)
def test_a_browser_or_a_client_opens_a_guarded_socket(
    how: str, accepted: str | None, client: TestClient, issuer: LocalIssuer
) -> None:
    token = issuer.mint(subject="wes", scopes=["read:items"])
    subprotocols, headers = {
        "marker": (["chat", "bearer", token], {}),
        "marker-alone": (["bearer", token], {}),
        "k8s": ([k8s(token), "v4.channel.k8s.io"], {}),
        "authorization": ([], {"Authorization": f"Bearer {token}"}),
    }[how]
    with client.websocket_connect("/ws", subprotocols=subprotocols, headers=headers) as ws:
        assert (ws.accepted_subprotocol or None) == accepted
        seen = ws.receive_json()
        ws.send_text("ping")
        assert ws.receive_text() == "ping"
    assert seen["sub"] == seen["user"] == "wes"
    assert seen["scopes"] == ["read:items"]
    assert token not in str(seen), "the app was shown the token"
    assert seen["subprotocols"] == [p for p in [accepted] if p not in (None, "bearer")]


def test_the_accepted_subprotocol_is_never_the_token(
    client: TestClient, issuer: LocalIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    token = issuer.mint()
    ECHO_TOKEN[:] = [token]
    with client.websocket_connect("/leaky", subprotocols=["bearer", token]) as ws:
        assert ws.accepted_subprotocol == "bearer"
    assert "token-carrying subprotocol" in caplog.text
    assert token not in caplog.text
    ECHO_TOKEN[:] = [k8s(token)]
    with client.websocket_connect("/leaky", subprotocols=[k8s(token)]) as ws:
        assert not ws.accepted_subprotocol


def deny(client: TestClient, path: str = "/ws", **kwargs: Any) -> tuple[int, dict[str, str]]:
    with pytest.raises(WebSocketDenialResponse) as denied, client.websocket_connect(path, **kwargs):
        pass  # pragma: no cover - the handshake is refused
    response = denied.value
    return response.status_code, parse_challenge(response.headers["www-authenticate"])[1]


@pytest.mark.parametrize(
    ("make", "status", "error"),
    [
        pytest.param(lambda t: {"subprotocols": ["chat"]}, 401, None, id="no-token"),
        pytest.param(
            lambda t: {"subprotocols": ["bearer", t], "headers": {"Authorization": f"Bearer {t}"}},
            400,
            "invalid_request",
            id="subprotocol-and-header",
        ),
        pytest.param(
            lambda t: {"subprotocols": ["bearer", t, k8s(t)]},
            400,
            "invalid_request",
            id="two-forms",
        ),
        pytest.param(
            lambda t: {"subprotocols": ["chat", "bearer"]}, 400, "invalid_request", id="marker-only"
        ),
        pytest.param(
            lambda t: {"subprotocols": ["bearer", t[:-3] + "AAA"]},
            401,
            "invalid_token",
            id="forged",
        ),
        pytest.param(
            lambda t: {"subprotocols": [k8s(t[:-3] + "AAA")]}, 401, "invalid_token", id="k8s-forged"
        ),
    ],
)
def test_a_bad_handshake_is_refused_before_the_app(
    make: Any, status: int, error: str | None, client: TestClient, issuer: LocalIssuer
) -> None:
    answer_status, params = deny(client, **make(issuer.mint()))
    assert (answer_status, params.get("error")) == (status, error)
    assert EVENTS == []


def test_an_expired_token_in_the_subprotocol_is_refused(
    client: TestClient, issuer: LocalIssuer
) -> None:
    status, params = deny(client, subprotocols=["bearer", issuer.mint(expires_in=-3600)])
    assert (status, params["error"], params["error_description"]) == (
        401,
        "invalid_token",
        "The access token expired",
    )


def test_a_sender_bound_token_is_no_bearer_token_on_a_websocket(
    client: TestClient, issuer: LocalIssuer
) -> None:
    """A handshake carries no DPoP proof: a token bound to a key (``cnf.jkt``) is refused
    there as it is on HTTP (found at the merge of the websocket and DPoP work), and the DPoP
    scheme itself is a malformed handshake."""
    from jwt_guard.testing.dpop import DPoPKey

    bound = issuer.mint(dpop_key=DPoPKey.generate("ES256"))
    for place in (
        {"subprotocols": ["bearer", bound]},
        {"headers": {"Authorization": f"Bearer {bound}"}},
    ):
        status, params = deny(client, **place)
        assert (status, params["error"]) == (401, "invalid_token")
    status, params = deny(client, headers={"Authorization": f"DPoP {bound}"})
    assert status in (400, 401)
    assert EVENTS == []


def test_query_tokens_are_off_by_default(client: TestClient, issuer: LocalIssuer) -> None:
    assert deny(client, "/ws?access_token=" + issuer.mint())[0] == 401


def test_the_opt_in_query_token_works_and_the_app_never_sees_it(
    verifier: TokenVerifier, issuer: LocalIssuer
) -> None:
    token = issuer.mint(subject="q")
    with TestClient(guarded(verifier, websocket_query_param="access_token")) as client:
        with client.websocket_connect(f"/ws?room=7&access_token={token}") as ws:
            seen = ws.receive_json()
        assert (seen["sub"], seen["query"]) == ("q", "room=7")
        both = {"headers": {"Authorization": f"Bearer {token}"}}
        assert deny(client, f"/ws?access_token={token}", **both)[0] == 400


def test_an_open_path_takes_no_token_but_still_hides_one(
    client: TestClient, issuer: LocalIssuer
) -> None:
    token = issuer.mint()
    with client.websocket_connect("/open/ws", subprotocols=["chat", "bearer", token]) as ws:
        assert ws.accepted_subprotocol == "chat"
        seen = ws.receive_json()
    assert (seen["sub"], seen["subprotocols"], seen["protocol_header"]) == (None, ["chat"], "chat")


@pytest.mark.parametrize("path", ["/scoped", "/starlette-scoped"])
def test_scopes_on_websocket_routes(path: str, client: TestClient, issuer: LocalIssuer) -> None:
    reader = issuer.mint(scopes=["read:items"])
    with client.websocket_connect(path, subprotocols=["bearer", reader]) as ws:
        assert ws.receive_json() == {"ok": True}
    other = ["bearer", issuer.mint(scopes=["profile"])]
    if path == "/scoped":  # require_scopes answers like the guard: 403 where the server can
        status, params = deny(client, path, subprotocols=other)
        assert (status, params["error"], params["scope"]) == (
            403,
            "insufficient_scope",
            "read:items",
        )
    else:  # Starlette's own @requires closes the socket
        with pytest.raises(WebSocketDisconnect), client.websocket_connect(path, subprotocols=other):
            pass  # pragma: no cover


# -- options --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"websocket_recheck": 0}, "websocket_recheck=...", id="recheck-zero"),
        pytest.param({"websocket_recheck": "60"}, "websocket_recheck=...", id="recheck-text"),
        pytest.param({"websocket_query_param": ""}, "websocket_query_param", id="query-empty"),
        pytest.param({"websocket_query_param": "a b"}, "websocket_query_param", id="query-space"),
        pytest.param({"websocket_sleep": 5}, "websocket_sleep", id="sleep-not-callable"),
    ],
)
def test_bad_websocket_options(options: dict[str, Any], message: str, verifier: Any) -> None:
    with pytest.raises(ConfigurationError, match=message):
        JWTGuard(inner_app(), verifier=verifier, **options)


def test_websocket_options_take_a_timedelta_and_none(verifier: TokenVerifier) -> None:
    assert JWTGuard(inner_app(), verifier=verifier, websocket_recheck=timedelta(minutes=2))
    assert JWTGuard(inner_app(), verifier=verifier, websocket_recheck=None)


def test_websocket_options_belong_to_the_asgi_middleware(verifier: TokenVerifier) -> None:
    with pytest.raises(
        ConfigurationError, match=r"JWTGuardWSGI\(websocket_recheck=\.\.\.\).*JWTGuard"
    ):
        JWTGuardWSGI(lambda e, s: [], verifier=verifier, websocket_recheck=10)


def test_websocket_options_from_the_environment_overrides(issuer: LocalIssuer) -> None:
    env = {"JWT_GUARD_ISSUER": issuer.issuer, "JWT_GUARD_AUDIENCE": issuer.audience}
    guard = JWTGuard.from_env(inner_app(), environ=env, websocket_recheck=5)
    assert guard._ws_recheck == 5


# -- the connection's lifetime --------------------------------------------------------------------


class Peer:
    """A websocket client speaking raw ASGI to ``app`` on this event loop."""

    def __init__(self, app: Any, path: str = "/ws", protocols: Sequence[str] = ()) -> None:
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.inbox.put_nowait({"type": "websocket.connect"})
        scope = {
            "type": "websocket",
            "asgi": {"version": "3.0"},
            "scheme": "ws",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [(b"sec-websocket-protocol", ", ".join(protocols).encode())],
            "subprotocols": list(protocols),
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
            "extensions": {"websocket.http.response": {}},
        }
        self.closed = False
        self.task = asyncio.get_running_loop().create_task(app(scope, self._receive, self._send))

    async def _receive(self) -> dict[str, Any]:
        return await self.inbox.get()

    async def _send(self, message: dict[str, Any]) -> None:
        if self.closed:
            raise OSError("the server's connection is closed")
        if message["type"] == "websocket.close":
            self.closed = True
            # the client answers the close frame: the server tells the app
            self.inbox.put_nowait({"type": "websocket.disconnect", "code": message["code"]})
        self.outbox.put_nowait(message)

    async def next(self) -> dict[str, Any]:
        # a hang guard only (generous for a loaded machine), not synchronisation
        return await asyncio.wait_for(self.outbox.get(), 30)

    async def finish(self) -> None:
        await asyncio.wait_for(self.task, 30)


@contextlib.asynccontextmanager
async def lifetime_app(
    issuer: LocalIssuer, **options: Any
) -> AsyncIterator[tuple[JWTGuard, ManualClock]]:
    clock = ManualClock()
    verifier_options = {k: options.pop(k) for k in ("is_revoked", "require_exp") if k in options}
    with verifier_for(
        issuer, clock=clock, monotonic=clock.monotonic, **verifier_options
    ) as verifier:
        EVENTS.clear()
        yield guarded(verifier, websocket_sleep=clock.sleep, **options), clock


async def opened(app: JWTGuard, token: str, path: str = "/ws") -> Peer:
    peer = Peer(app, path, ["chat", "bearer", token])
    assert (await peer.next())["type"] == "websocket.accept"
    return peer


async def test_the_connection_closes_with_1008_when_the_token_expires(
    issuer: LocalIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="jwt_guard")
    async with lifetime_app(issuer) as (app, clock):
        token = issuer.mint(issued_at=clock.now, expires_in=300)  # leeway 60: closed at +360
        peer = await opened(app, token)
        await peer.next()  # what the app saw
        await clock.sleepers()
        clock.advance(300)  # re-checked at +60, +120... still valid
        await clock.sleepers()
        peer.inbox.put_nowait({"type": "websocket.receive", "text": "still here"})
        assert (await peer.next())["text"] == "still here"
        clock.advance(59)
        await clock.sleepers()
        assert peer.outbox.empty()
        clock.advance(1)
        assert await peer.next() == {
            "type": "websocket.close",
            "code": 1008,
            "reason": "The access token expired",
        }
        await peer.finish()
    assert EVENTS == [("disconnect", 1008)]
    assert clock.pending == 0
    assert "rejected code=expired" in caplog.text
    assert token not in caplog.text


async def test_a_push_only_app_learns_of_the_close_on_its_next_send(issuer: LocalIssuer) -> None:
    async with lifetime_app(issuer, websocket_recheck=None) as (app, clock):
        peer = await opened(app, issuer.mint(issued_at=clock.now, expires_in=10), "/push")
        await clock.sleepers()
        clock.advance(70)
        assert (await peer.next())["code"] == 1008
        app.app.state.push.put_nowait("too late")  # type: ignore[attr-defined]
        await peer.finish()
    assert EVENTS == [("send-failed", 1006)]  # Starlette's disconnect for a send that failed


async def test_a_revoked_token_closes_the_connection_at_the_next_recheck(
    issuer: LocalIssuer,
) -> None:
    revoked: set[str] = set()
    async with lifetime_app(
        issuer, is_revoked=lambda claims: claims.token_id in revoked, websocket_recheck=30
    ) as (app, clock):
        token = issuer.mint(issued_at=clock.now, expires_in=3600, claims={"jti": "r-1"})
        peer = await opened(app, token)
        await peer.next()
        await clock.sleepers()
        clock.advance(30)
        await clock.sleepers()  # re-checked: fine
        assert peer.outbox.empty()
        revoked.add("r-1")
        clock.advance(30)
        assert await peer.next() == {
            "type": "websocket.close",
            "code": 1008,
            "reason": "The access token has been revoked",
        }
        await peer.finish()


async def test_an_async_revocation_hook_is_awaited_on_the_event_loop(issuer: LocalIssuer) -> None:
    revoked: set[str | None] = set()

    async def is_revoked(claims: Any) -> bool:
        await asyncio.sleep(0)
        return claims.token_id in revoked

    async with lifetime_app(issuer, is_revoked=is_revoked, websocket_recheck=30) as (app, clock):
        token = issuer.mint(issued_at=clock.now, expires_in=3600, claims={"jti": "j-1"})
        peer = await opened(app, token)
        await clock.sleepers()
        revoked.add("j-1")
        clock.advance(30)
        while (message := await peer.next())["type"] != "websocket.close":
            pass
        assert message["code"] == 1008
        await peer.finish()


async def test_without_rechecks_only_the_expiry_is_watched(issuer: LocalIssuer) -> None:
    revoked: set[str | None] = set()
    async with lifetime_app(
        issuer, is_revoked=lambda c: c.token_id in revoked, websocket_recheck=None
    ) as (app, clock):
        peer = await opened(
            app, issuer.mint(issued_at=clock.now, expires_in=600, claims={"jti": "x"})
        )
        await peer.next()
        await clock.sleepers()
        revoked.add("x")
        clock.advance(659)  # no re-check before the deadline (600 + leeway 60)
        await clock.sleepers()
        assert peer.outbox.empty()
        clock.advance(1)
        assert (await peer.next())["reason"] == "The access token expired"
        await peer.finish()


async def test_a_token_without_exp_and_no_rechecks_is_not_watched(issuer: LocalIssuer) -> None:
    async with lifetime_app(issuer, require_exp=False, websocket_recheck=None) as (app, clock):
        peer = await opened(app, issuer.mint(expires_in=None))
        await peer.next()
        peer.inbox.put_nowait({"type": "websocket.disconnect", "code": 1000})
        await peer.finish()
        assert clock.pending == 0
    assert EVENTS == [("disconnect", 1000)]


async def test_the_watcher_ends_with_the_connection(issuer: LocalIssuer) -> None:
    async with lifetime_app(issuer) as (app, clock):
        peer = await opened(app, issuer.mint(issued_at=clock.now, expires_in=30))
        await peer.next()
        await clock.sleepers()
        peer.inbox.put_nowait({"type": "websocket.disconnect", "code": 1001})
        await peer.finish()
        assert clock.pending == 0
        clock.advance(3600)
        await asyncio.sleep(0)
        assert peer.outbox.empty()  # no close after the client left
    assert EVENTS == [("disconnect", 1001)]


class SwitchableKeys:
    """A key source that can lose its keys (``down``), for the 1013 close."""

    name = "switchable"

    def __init__(self, keyset: KeySet) -> None:
        self.keyset, self.down = keyset, False

    def keys_for(self, kid: str | None) -> KeySet:
        if self.down:
            raise KeysUnavailable("the key store is down")
        return self.keyset

    async def akeys_for(self, kid: str | None) -> KeySet:
        return self.keys_for(kid)

    def current(self, now: float | None = None) -> KeySet | None:
        return None if self.down else self.keyset

    def prefetch(self) -> None:
        self.keys_for(None)

    async def aprefetch(self) -> None:
        self.keys_for(None)

    def status(self) -> dict[str, Any]:
        return {"source": self.name, "usable": not self.down}


async def test_keys_that_cannot_be_had_close_with_1013(issuer: LocalIssuer) -> None:
    clock = ManualClock()
    source = SwitchableKeys(KeySet.from_jwks(issuer.jwks()))
    verifier = TokenVerifier(
        issuer=issuer.issuer,
        audience=issuer.audience,
        key_source=source,
        clock=clock,
        monotonic=clock.monotonic,
    )
    app = guarded(verifier, websocket_sleep=clock.sleep, websocket_recheck=10)
    peer = await opened(app, issuer.mint(issued_at=clock.now, expires_in=600))
    await clock.sleepers()
    source.down = True
    clock.advance(10)
    while (message := await peer.next())["type"] != "websocket.close":
        pass
    assert (message["code"], message["reason"]) == (1013, KeysUnavailable.description)
    await peer.finish()


async def test_the_app_closing_first_gets_no_second_close(issuer: LocalIssuer) -> None:
    async with lifetime_app(issuer) as (app, clock):
        token = issuer.mint(issued_at=clock.now, expires_in=30, scopes=["read:items"])
        peer = await opened(app, token, "/scoped")
        assert (await peer.next())["type"] == "websocket.send"
        assert (await peer.next())["code"] == 1000
        await peer.finish()
        clock.advance(3600)
        await asyncio.sleep(0)
        assert peer.outbox.empty()


# -- the hostile corpus through the websocket path ------------------------------------------------


@pytest.fixture(scope="module")
def kit() -> Iterator[Kit]:
    with make_kit() as started:
        yield started


async def _me_ws(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.close()


@require_scopes("admin")
async def _admin_ws(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.close()


@pytest.fixture(scope="module")
def corpus_app(kit: Kit) -> Iterator[JWTGuard]:
    app = Starlette(routes=[WebSocketRoute("/me", _me_ws), WebSocketRoute("/admin", _admin_ws)])
    with make_verifier(kit) as verifier:
        yield JWTGuard(app, verifier=verifier)


async def handshake(
    app: JWTGuard, path: str, lines: Sequence[bytes], protocols: Sequence[str] = ()
) -> Answer:
    """One websocket handshake into ``app``; its denial response as an ``Answer``."""
    headers = [(b"authorization", line) for line in lines]
    if protocols:
        headers.append((b"sec-websocket-protocol", ", ".join(protocols).encode("latin-1")))
    scope = {
        "type": "websocket",
        "path": path,
        "query_string": b"",
        "headers": headers,
        "subprotocols": list(protocols),
        "client": ("127.0.0.1", 50000),
        "extensions": {"websocket.http.response": {}},
    }
    inbox = [{"type": "websocket.connect"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return inbox.pop(0) if inbox else {"type": "websocket.disconnect", "code": 1006}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    kinds = [m["type"] for m in sent]
    assert kinds[0] == "websocket.http.response.start", kinds
    assert set(kinds[1:]) == {"websocket.http.response.body"}, kinds
    start = sent[0]
    headers_out = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in start["headers"]]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return Answer(int(start["status"]), headers_out, body, False)


@pytest.mark.parametrize("hostile", CORPUS)
async def test_hostile_corpus_in_the_authorization_header(
    hostile: Hostile, kit: Kit, corpus_app: JWTGuard
) -> None:
    lines = hostile.lines(kit)
    assert_refusal(await handshake(corpus_app, hostile.path, lines), hostile.refusal, lines)


async def test_hostile_corpus_in_the_subprotocol(kit: Kit, corpus_app: JWTGuard) -> None:
    """Every corpus case whose one header line is ``Bearer <one value>`` (the token cases, not
    the header-syntax ones): the same value as a subprotocol token, in either form, gets the
    same refusal."""
    carried = 0
    for param in CORPUS:
        hostile: Hostile = param.values[0]
        lines = hostile.lines(kit)
        if len(lines) != 1 or not lines[0].startswith(b"Bearer "):
            continue
        value = lines[0][7:].decode("latin-1")
        if not value or any(ch in value for ch in ", \t") or not value.isprintable():
            continue
        carried += 1
        for protocols in (["chat", "bearer", value], [k8s(value)]):
            answer = await handshake(corpus_app, hostile.path, [], protocols)
            try:
                assert_refusal(answer, hostile.refusal, [value.encode("latin-1")])
            except AssertionError as failure:
                raise AssertionError(f"{param.id} via {protocols[-2:][0]}: {failure}") from None
    assert carried >= 150, carried
