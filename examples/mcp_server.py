"""An MCP server (the ``mcp`` package's streamable HTTP app) guarded by jwt_guard.

Run it against your authorization server (from the repository root; TLS in front of it)::

    pip install -e ".[mcp]"
    export JWT_GUARD_ISSUER=https://auth.example.com/            # your authorization server
    export JWT_GUARD_RESOURCE=https://mcp.example.com/mcp        # this server's URL
    export JWT_GUARD_RESOURCE_METADATA='{"scopes_supported": ["mcp:tools"]}'
    uvicorn examples.mcp_server:app --port 8000

An MCP client that calls without a token gets a 401 naming the protected-resource metadata
(``resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp"``); the
document names the authorization server; the client gets a token for this resource there
(RFC 8707 ``resource``) and calls again. The resource URI is the audience every token must carry,
so a token minted for any other server is refused.
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import Context, MCPServer

from jwt_guard import JWTGuard
from jwt_guard.guard.middleware import CLAIMS_KEY


def build_server() -> MCPServer:
    """The MCP server itself: two tools."""
    server = MCPServer("jwt-guard-example")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    @server.tool()
    def whoami(ctx: Context) -> str:
        """The subject of the caller's token (verified by JWTGuard)."""
        request = ctx.request_context.request
        return str(request.scope[CLAIMS_KEY].subject)

    return server


def create_app(**guard_options: Any) -> JWTGuard:
    """The server's streamable HTTP app (``/mcp``) behind ``JWTGuard``.

    ``guard_options`` are ``JWTGuard``'s (``issuer=``, ``resource=``...); without any, it is
    configured from the ``JWT_GUARD_*`` variables.
    """
    app = build_server().streamable_http_app(stateless_http=True)
    if guard_options:
        return JWTGuard(app, **guard_options)
    return JWTGuard.from_env(app)


def __getattr__(name: str) -> Any:
    """``app``, built from the environment when first asked for (``uvicorn ...:app``)."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    app = globals()["app"] = create_app()
    return app
