"""Shared helpers for the ASGI tests: a verifier bound to a LocalIssuer, a raw ASGI driver,
and a parser for ``WWW-Authenticate`` challenges."""

from __future__ import annotations

import warnings
from typing import Any

from _common import parse_challenge, verifier_for

with warnings.catch_warnings():
    # Starlette 1.x prefers httpx2 for its TestClient and warns (at import) when it falls back
    # to httpx, which is what the test extras install.
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`", UserWarning)
    from starlette.testclient import TestClient, WebSocketDenialResponse

__all__ = [
    "RawResult",
    "TestClient",
    "WebSocketDenialResponse",
    "bearer",
    "call_raw",
    "parse_challenge",
    "verifier_for",
]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class RawResult:
    """What an ASGI app sent back, for driving it without a test client."""

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self.messages = messages

    @property
    def types(self) -> list[str]:
        return [m["type"] for m in self.messages]

    @property
    def status(self) -> int:
        return int(next(m["status"] for m in self.messages if "status" in m))

    @property
    def headers(self) -> dict[str, str]:
        start = next(m for m in self.messages if m["type"].endswith("response.start"))
        return {k.decode("latin-1"): v.decode("latin-1") for k, v in start["headers"]}

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages)


async def call_raw(
    app: Any,
    *,
    path: str = "/",
    headers: list[tuple[bytes, bytes]] | None = None,
    scope_type: str = "http",
    method: str = "GET",
    extensions: dict[str, Any] | None = None,
) -> RawResult:
    """Send one request (or websocket handshake) straight to ``app``; collect what it sends."""
    scope: dict[str, Any] = {
        "type": scope_type,
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": "http" if scope_type == "http" else "ws",
        "path": path,
        "raw_path": path.encode("latin-1"),
        "root_path": "",
        "query_string": b"",
        "headers": headers or [],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "extensions": extensions or {},
    }
    if scope_type == "http":
        scope["method"] = method
        inbox: list[dict[str, Any]] = [{"type": "http.request", "body": b"", "more_body": False}]
    else:
        inbox = [{"type": "websocket.connect"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if inbox:
            return inbox.pop(0)
        return {"type": "http.disconnect" if scope_type == "http" else "websocket.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return RawResult(sent)
