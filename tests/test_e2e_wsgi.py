"""End to end: the Flask example in a real WSGI server process, real HTTP, a real JWKS fetch."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from _servers import free_port, start, stop, wait_until_listening
from _wsgi_helpers import parse_challenge
from jwt_guard.testing import LocalIssuer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

SERVE = """
import sys
from werkzeug.serving import make_server
from flask_app import app

server = make_server("127.0.0.1", int(sys.argv[1]), app, threaded=True)
server.serve_forever()
"""


@pytest.fixture(scope="module")
def server(issuer: LocalIssuer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of the Flask example served by Werkzeug in a subprocess."""
    port = free_port()
    env = {
        **os.environ,
        "JWT_GUARD_ISSUER": issuer.issuer,
        "JWT_GUARD_AUDIENCE": issuer.audience,
        "JWT_GUARD_JWKS_URL": issuer.jwks_url,
    }
    log = tmp_path_factory.mktemp("e2e") / "server.log"
    process = start([sys.executable, "-c", SERVE, str(port)], log, cwd=EXAMPLES, env=env)
    try:
        wait_until_listening(port, process, log, "the WSGI server")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def test_public_route(server: str, http: requests.Session) -> None:
    response = http.get(f"{server}/health", timeout=5)
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_claims_route(server: str, http: requests.Session, issuer: LocalIssuer) -> None:
    token = issuer.mint(subject="jo", scopes=["read:items"])
    response = http.get(f"{server}/me", headers={"Authorization": f"Bearer {token}"}, timeout=5)
    assert response.status_code == 200
    assert response.json() == {"authenticated": True, "sub": "jo", "scopes": ["read:items"]}
    assert issuer.jwks_requests >= 1  # the server process fetched the keys itself


@pytest.mark.parametrize(
    ("scopes", "status", "error"),
    [
        pytest.param(["read:items"], 200, None, id="granted"),
        pytest.param(["other"], 403, "insufficient_scope", id="missing-scope"),
        pytest.param(None, 401, None, id="no-token"),
    ],
)
def test_scoped_route(
    scopes: list[str] | None,
    status: int,
    error: str | None,
    server: str,
    http: requests.Session,
    issuer: LocalIssuer,
) -> None:
    headers = {} if scopes is None else {"Authorization": f"Bearer {issuer.mint(scopes=scopes)}"}
    response = http.get(f"{server}/items", headers=headers, timeout=5)
    assert response.status_code == status
    if status == 200:
        assert response.json() == {"items": ["apple", "pear"]}
        return
    scheme, params = parse_challenge(response.headers["WWW-Authenticate"])
    assert (scheme, params.get("realm"), params.get("error")) == ("Bearer", "api", error)
    assert response.headers["Cache-Control"] == "no-store"


def test_repeated_authorization_headers_are_a_bad_request(server: str, issuer: LocalIssuer) -> None:
    token = issuer.mint()
    request = (
        f"GET /me HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Authorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    ).encode()
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(request)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    status_line, _, rest = reply.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 400 ")
    assert b'error="invalid_request"' in rest
