"""End to end: WebSockets through a real uvicorn server, driven by the ``websockets`` client.

Two set-ups: uvicorn serving in this process (on the tests' event loop, so a
:class:`~jwt_guard.testing.ManualClock` drives the token's expiry) with each of uvicorn's
websocket implementations, and ``examples/websocket_app.py`` under ``uvicorn`` in its own
process. The handshake tests share one server per implementation (each opens and closes its
own connections); the expiry test, which moves the server's clock, gets a server of its own.
What uvicorn hands the app: ``scope["subprotocols"]`` is the header split at commas, each value
stripped, and the ``websocket.http.response`` extension, so a refused handshake gets the
RFC 6750 answer as an HTTP response.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
import uvicorn
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError, InvalidStatus
from websockets.typing import Subprotocol

from _common import parse_challenge, verifier_for
from _servers import ROOT, STARTUP_DEADLINE, free_port, issuer_env, run_uvicorn
from jwt_guard.guard.websocket import K8S_PREFIX
from jwt_guard.testing import LocalIssuer, ManualClock

sys.path.insert(0, str(ROOT / "examples"))

from websocket_app import create_app

IMPLEMENTATIONS = ["auto", "wsproto"]  # auto: websockets (sans-I/O) where installed

# Every test on the module's event loop: the shared servers run on it.
pytestmark = pytest.mark.asyncio(loop_scope="module")


def k8s(token: str) -> str:
    return K8S_PREFIX + base64.urlsafe_b64encode(token.encode()).rstrip(b"=").decode()


def protocols(*values: str) -> list[Subprotocol]:
    return [Subprotocol(v) for v in values]


class Served:
    """A guarded app served by uvicorn on this event loop."""

    def __init__(self, url: str, clock: ManualClock) -> None:
        self.url, self.clock = url, clock

    def open(self, *values: str, **kwargs: Any) -> Any:
        offered = protocols(*values) or None  # none: no Sec-WebSocket-Protocol header at all
        return connect(self.url + "/ws", subprotocols=offered, open_timeout=30, **kwargs)


@contextlib.asynccontextmanager
async def serving(issuer: LocalIssuer, ws: str) -> AsyncIterator[Served]:
    """The example app, its verifier on a ManualClock, served by uvicorn (``ws``) on the running
    event loop until the block ends."""
    clock = ManualClock()
    with verifier_for(issuer, clock=clock, monotonic=clock.monotonic) as verifier:
        app = create_app(verifier, websocket_sleep=clock.sleep)  # the watcher waits on it
        port = free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, ws=ws, lifespan="off", log_level="warning"
        )
        server = uvicorn.Server(config)
        task = asyncio.get_running_loop().create_task(server.serve())
        for _ in range(int(STARTUP_DEADLINE / 0.01)):  # readiness poll, bounded
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        assert server.started, "uvicorn did not start"
        try:
            yield Served(f"ws://127.0.0.1:{port}", clock)
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, 30)


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=IMPLEMENTATIONS)
async def served(request: pytest.FixtureRequest, issuer: LocalIssuer) -> AsyncIterator[Served]:
    """One server per implementation for the handshake tests (its clock is never moved)."""
    async with serving(issuer, request.param) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="module", params=IMPLEMENTATIONS)
async def own_served(request: pytest.FixtureRequest, issuer: LocalIssuer) -> AsyncIterator[Served]:
    """A server for one test that moves its clock."""
    async with serving(issuer, request.param) as running:
        yield running


async def greeting(ws: ClientConnection) -> str:
    message = await asyncio.wait_for(ws.recv(), 30)
    assert isinstance(message, str)
    return message


@pytest.mark.parametrize(
    ("form", "chosen"),
    [
        pytest.param("marker", "chat", id="bearer-marker"),
        pytest.param("marker-alone", "bearer", id="bearer-marker-alone"),
        pytest.param("k8s", "chat", id="k8s"),
    ],
)
async def test_a_browser_style_handshake_through_uvicorn(
    form: str, chosen: str, served: Served, issuer: LocalIssuer
) -> None:
    token = issuer.mint(subject="uvi")
    values = {
        "marker": ("chat", "bearer", token),
        "marker-alone": ("bearer", token),
        "k8s": (k8s(token), "chat"),
    }[form]
    async with served.open(*values) as ws:
        assert ws.subprotocol == chosen
        answered = ws.response.headers.get_all("Sec-WebSocket-Protocol")
        assert answered == [chosen]
        assert token not in str(ws.response.headers)
        assert await greeting(ws) == "hello uvi"
        await ws.send("ping")
        assert await greeting(ws) == "ping"


async def test_the_authorization_header_through_uvicorn(
    served: Served, issuer: LocalIssuer
) -> None:
    headers = {"Authorization": f"Bearer {issuer.mint(subject='cli')}"}
    async with served.open(additional_headers=headers) as ws:
        assert ws.subprotocol is None
        assert await greeting(ws) == "hello cli"


@pytest.mark.parametrize(
    ("values", "headers", "status", "error"),
    [
        pytest.param(("chat",), {}, 401, None, id="no-token"),
        pytest.param(("chat", "bearer", "a.b.c"), {}, 401, "invalid_token", id="junk-token"),
        pytest.param(
            ("bearer", "TOKEN"),
            {"Authorization": "Bearer TOKEN"},
            400,
            "invalid_request",
            id="two-places",
        ),
        pytest.param(("chat", "bearer"), {}, 400, "invalid_request", id="marker-without-token"),
    ],
)
async def test_a_refused_handshake_gets_the_rfc6750_answer(
    values: tuple[str, ...],
    headers: dict[str, str],
    status: int,
    error: str | None,
    served: Served,
    issuer: LocalIssuer,
) -> None:
    token = issuer.mint()
    values = tuple(token if v == "TOKEN" else v for v in values)
    headers = {k: v.replace("TOKEN", token) for k, v in headers.items()}
    with pytest.raises(InvalidStatus) as refused:
        async with served.open(*values, additional_headers=headers):
            pass  # pragma: no cover - refused
    response = refused.value.response
    assert response.status_code == status
    params = parse_challenge(response.headers["WWW-Authenticate"])[1]
    assert params.get("error") == error
    assert response.headers["Cache-Control"] == "no-store"


async def test_the_connection_closes_with_1008_when_the_token_expires(
    own_served: Served, issuer: LocalIssuer
) -> None:
    clock = own_served.clock
    token = issuer.mint(issued_at=clock.now, expires_in=120)  # + leeway 60
    async with own_served.open("chat", "bearer", token) as ws:
        assert await greeting(ws) == "hello user-1"
        await clock.sleepers()
        clock.advance(120)  # a re-check at +60: still valid
        await clock.sleepers()
        await ws.send("still here")
        assert await greeting(ws) == "still here"
        clock.advance(60)
        with pytest.raises(ConnectionClosedError) as closed:
            await asyncio.wait_for(ws.recv(), 30)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, "The access token expired")


# -- the example in its own uvicorn process ---------------------------------------------------


@pytest.fixture(scope="module")
def example(issuer: LocalIssuer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("uvicorn-ws") / "uvicorn.log"
    env = issuer_env(issuer)
    with run_uvicorn("examples.websocket_app:app", log, env) as port:
        yield f"127.0.0.1:{port}"


async def test_the_example_under_uvicorn(example: str, issuer: LocalIssuer) -> None:
    async with httpx.AsyncClient() as http:
        page = await http.get(f"http://{example}/", timeout=10)
    assert page.status_code == 200
    assert 'new WebSocket(url, ["chat", "bearer", token])' in page.text
    token = issuer.mint(subject="browser")
    url = f"ws://{example}/ws"
    async with connect(url, subprotocols=protocols("chat", "bearer", token), open_timeout=30) as ws:
        assert ws.subprotocol == "chat"
        assert await greeting(ws) == "hello browser"
        await ws.send("ping")
        assert await greeting(ws) == "ping"
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, subprotocols=protocols("chat"), open_timeout=30):
            pass  # pragma: no cover - refused
    assert refused.value.response.status_code == 401
