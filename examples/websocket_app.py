"""A guarded WebSocket a browser can open: the token travels in ``Sec-WebSocket-Protocol``.

Run it against your identity provider (from the repository root)::

    export JWT_GUARD_ISSUER=https://idp.example.com/
    export JWT_GUARD_AUDIENCE=my-api
    uvicorn examples.websocket_app:app

then open ``http://localhost:8000/#<your access token>``: the page (public) opens
``ws://localhost:8000/ws`` with ``new WebSocket(url, ["chat", "bearer", token])``, and the server
answers with the ``chat`` subprotocol, never the token. ``/ws`` greets the caller by ``sub``
and echoes what it is sent until the token expires, when jwt_guard closes it with 1008. A
non-browser client may send ``Authorization: Bearer <token>`` instead.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from jwt_guard import JWTGuard, TokenVerifier

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>jwt_guard websocket</title></head>
<body><pre id="log">connecting</pre>
<script>
const log = (line) => { document.getElementById("log").textContent += "\\n" + line; };
const token = location.hash.slice(1);             // never put a token in the query string
const url = location.origin.replace(/^http/, "ws") + "/ws";
const socket = new WebSocket(url, ["chat", "bearer", token]);
socket.onopen = () => { log("open protocol=" + socket.protocol); socket.send("ping"); };
socket.onmessage = (event) => log("message " + event.data);
socket.onclose = (event) => log("close " + event.code + " " + event.reason);
socket.onerror = () => log("error");
</script></body></html>
"""


async def page(request: Request) -> HTMLResponse:
    return HTMLResponse(PAGE)


async def chat(websocket: WebSocket) -> None:
    # The guard took the token out of the subprotocols: only the application's are left.
    offered = websocket.scope["subprotocols"]
    await websocket.accept(subprotocol="chat" if "chat" in offered else None)
    await websocket.send_text(f"hello {websocket.user.display_name}")
    try:
        while True:
            await websocket.send_text(await websocket.receive_text())
    except WebSocketDisconnect:
        pass  # the client left, or the guard closed the connection (1008: token expired)


def create_app(verifier: TokenVerifier | None = None, **options: Any) -> Starlette:
    """The example app, guarded by ``JWTGuard`` (the page ``/`` is left open).

    ``verifier`` defaults to ``TokenVerifier.from_env()`` (the ``JWT_GUARD_*`` variables);
    ``options`` go to ``JWTGuard`` (``websocket_recheck=30``, say).
    """
    guard = Middleware(
        JWTGuard,
        verifier=verifier if verifier is not None else TokenVerifier.from_env(),
        exclude_paths=["/"],
        **options,
    )
    routes = [Route("/", page), WebSocketRoute("/ws", chat)]
    return Starlette(routes=routes, middleware=[guard])


def __getattr__(name: str) -> Any:
    """``app``, built from the environment when first asked for (``uvicorn ...:app``)."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    app = globals()["app"] = create_app()
    return app
