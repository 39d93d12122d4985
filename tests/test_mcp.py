"""End to end with the Model Context Protocol SDK: ``examples/mcp_server.py`` (a real ``mcp``
server, streamable HTTP, behind ``JWTGuard``) in a uvicorn process, the ``mcp`` client in this
one, and an OAuth authorization server on loopback that mints with a ``LocalIssuer``'s key.

The dance an MCP client performs (MCP authorization, RFC 9728, RFC 8707): its call without a
token gets 401 with ``resource_metadata``; it reads that document, finds the authorization
server in it, asks there for a token for this resource (``resource=`` the server's URL, the
scopes the document lists), and calls again: 200, the tool runs. A token for another resource
is refused.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    import httpx2
    from mcp.shared.auth import OAuthClientInformationFull, OAuthToken

# The MCP SDK (and its httpx2) is imported inside the tests that use it: importing it takes
# most of a second, which every xdist worker would pay while collecting, and one runs them.

from _common import shared_key
from _hostile import challenge_params
from _servers import clean_env, free_port, run_uvicorn
from jwt_guard.testing import LocalIssuer
from jwt_guard.testing._server import ServingThread

CLIENT_ID, CLIENT_SECRET = "mcp-client", "client-secret"
SCOPES = ["mcp:tools"]


@dataclass
class AuthorizationServer:
    """A minimal OAuth authorization server: RFC 8414 metadata and a client-credentials token
    endpoint that honours RFC 8707 ``resource`` (it becomes the token's ``aud``)."""

    keys: LocalIssuer
    port: int
    token_requests: list[dict[str, str]] = field(default_factory=list)

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def metadata(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": self.issuer + "/authorize",
            "token_endpoint": self.issuer + "/token",
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
            "response_types_supported": ["code"],
            "jwks_uri": self.keys.jwks_url,
        }

    def token(self, form: dict[str, str], authorization: str | None) -> tuple[int, Any]:
        self.token_requests.append(form)
        expected = "Basic " + _basic(CLIENT_ID, CLIENT_SECRET)
        if authorization != expected or form.get("grant_type") != "client_credentials":
            return 401, {"error": "invalid_client"}
        if "resource" not in form:
            return 400, {"error": "invalid_target"}
        scope = form.get("scope", "")
        token = self.keys.mint(
            issuer=self.issuer, audience=form["resource"], subject=CLIENT_ID, scopes=scope.split()
        )
        return 200, {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": scope,
        }


def _basic(user: str, password: str) -> str:
    import base64

    return base64.b64encode(f"{user}:{password}".encode()).decode()


def _serve(server: AuthorizationServer) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            """Stay quiet."""

        def _send(self, status: int, document: Any) -> None:
            body = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/.well-known/oauth-authorization-server":
                self._send(200, server.metadata())
            else:
                self._send(404, {"error": "not_found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
            if self.path == "/token":
                self._send(*server.token(form, self.headers.get("Authorization")))
            else:
                self._send(404, {"error": "not_found"})

    httpd = ThreadingHTTPServer(("127.0.0.1", server.port), Handler)
    httpd.daemon_threads = True
    return httpd


@pytest.fixture(scope="module")
def authorization_server() -> Iterator[AuthorizationServer]:
    with LocalIssuer(keys=[shared_key()]) as keys:
        server = AuthorizationServer(keys, free_port())
        httpd = _serve(server)
        serving = ServingThread(httpd, "test-as")  # stops at once, not at a 0.5 s poll
        try:
            yield server
        finally:
            serving.stop()
            httpd.server_close()


@pytest.fixture(scope="module")
def mcp_url(
    authorization_server: AuthorizationServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``uvicorn examples.mcp_server:app`` configured from the environment alone."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    log = tmp_path_factory.mktemp("mcp") / "uvicorn.log"
    env = clean_env(
        JWT_GUARD_ISSUER=authorization_server.issuer,
        JWT_GUARD_JWKS_URL=authorization_server.keys.jwks_url,
        JWT_GUARD_RESOURCE=url,
        JWT_GUARD_RESOURCE_METADATA=json.dumps(
            {"scopes_supported": SCOPES, "resource_name": "jwt_guard example"}
        ),
    )
    with run_uvicorn("examples.mcp_server:app", log, env, port=port):
        yield url


class MemoryStorage:
    """The SDK's ``TokenStorage`` protocol, in memory."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


def _leaves(error: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups."""
    inner = getattr(error, "exceptions", None)
    return [leaf for e in inner for leaf in _leaves(e)] if inner else [error]


async def _call_add(url: str, http: httpx2.AsyncClient, tool: str = "add") -> Any:
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async with streamable_http_client(url, http_client=http) as streams:
        read, write = streams[0], streams[1]
        async with ClientSession(read, write) as session:
            await session.initialize()
            return await session.call_tool(tool, {"a": 2, "b": 3} if tool == "add" else {})


def test_the_mcp_client_discovers_gets_a_token_and_calls_a_tool(
    mcp_url: str, authorization_server: AuthorizationServer
) -> None:
    import httpx2
    from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider

    storage = MemoryStorage()
    provider = ClientCredentialsOAuthProvider(
        server_url=mcp_url,
        storage=storage,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        issuer=authorization_server.issuer,
    )

    async def run() -> tuple[Any, Any]:
        async with httpx2.AsyncClient(auth=provider, timeout=20) as http:
            return await _call_add(mcp_url, http), await _call_add(mcp_url, http, "whoami")

    before = len(authorization_server.token_requests)
    result, caller = asyncio.run(run())
    assert result.is_error is False
    assert result.structured_content == {"result": 5}
    assert caller.structured_content == {"result": CLIENT_ID}  # the tool saw the verified claims
    # The client asked for a token for exactly this resource, with the scopes the document lists.
    requests = authorization_server.token_requests[before:]
    assert requests == [
        {"grant_type": "client_credentials", "resource": mcp_url, "scope": " ".join(SCOPES)}
    ]
    assert storage.tokens is not None


def test_the_401_names_a_document_the_sdk_accepts(mcp_url: str) -> None:
    """What the SDK's own helpers make of the challenge and the document."""
    from mcp.client.auth.utils import build_protected_resource_metadata_discovery_urls
    from mcp.shared.auth import ProtectedResourceMetadata
    from mcp.shared.auth_utils import check_resource_allowed, resource_url_from_server_url

    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
    with httpx.Client(timeout=10) as http:
        refused = http.post(mcp_url, json=initialize)
        assert refused.status_code == 401
        named = challenge_params(refused.headers["www-authenticate"])["resource_metadata"]
        urls = build_protected_resource_metadata_discovery_urls(named, mcp_url)
        assert (
            urls[0] == named == mcp_url.replace("/mcp", "/.well-known/oauth-protected-resource/mcp")
        )
        document = http.get(named)
    assert document.status_code == 200
    metadata = ProtectedResourceMetadata.model_validate_json(document.content)
    assert str(metadata.resource) == mcp_url
    assert metadata.scopes_supported == SCOPES
    assert metadata.bearer_methods_supported == ["header"]
    assert check_resource_allowed(resource_url_from_server_url(mcp_url), str(metadata.resource))


def test_a_token_for_another_resource_is_refused(
    mcp_url: str, authorization_server: AuthorizationServer
) -> None:
    """Same authorization server, same key, another audience: 401, and the MCP client's own
    transport gets nowhere with it."""
    import httpx2
    from mcp.shared.exceptions import MCPError

    keys, issuer = authorization_server.keys, authorization_server.issuer
    elsewhere = keys.mint(issuer=issuer, audience="http://127.0.0.1:1/mcp", scopes=SCOPES)
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
    with httpx.Client(timeout=10) as http:
        refused = http.post(
            mcp_url, json=initialize, headers={"Authorization": f"Bearer {elsewhere}"}
        )
    assert refused.status_code == 401
    params = challenge_params(refused.headers["www-authenticate"])
    assert params["error"] == "invalid_token"
    assert params["resource_metadata"].endswith("/.well-known/oauth-protected-resource/mcp")

    async def run() -> Any:
        headers = {"Authorization": f"Bearer {elsewhere}"}
        async with httpx2.AsyncClient(headers=headers, timeout=20) as http:
            return await _call_add(mcp_url, http)

    with pytest.raises(Exception) as failed:  # noqa: PT011 - an exception group: checked below
        asyncio.run(run())
    assert any(isinstance(error, MCPError) for error in _leaves(failed.value))

    mine = keys.mint(issuer=issuer, audience=mcp_url, scopes=SCOPES)

    async def run_mine() -> Any:
        async with httpx2.AsyncClient(
            headers={"Authorization": f"Bearer {mine}"}, timeout=20
        ) as http:
            return await _call_add(mcp_url, http)

    assert asyncio.run(run_mine()).structured_content == {"result": 5}
