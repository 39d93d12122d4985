"""uvicorn's h11 protocol with the ASGI TLS extension, for the end-to-end mTLS test.

uvicorn (0.54) does not fill ``scope["extensions"]["tls"]``, the ASGI TLS extension, nor does
hypercorn (0.18). This protocol does what a server that implements the extension does: on a
TLS connection it puts the client certificate the handshake verified, as PEM, into
``client_cert_chain`` of every request's scope. Run uvicorn with
``--http _tls_uvicorn:TLSExtensionProtocol`` (this directory on ``PYTHONPATH``).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol


class TLSExtensionProtocol(H11Protocol):
    """``H11Protocol`` whose requests carry the ASGI TLS extension (spec version 0.2)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is None:
            return
        der = ssl_object.getpeercert(binary_form=True)
        tls = {
            "server_cert": None,
            "client_cert_chain": [] if der is None else [ssl.DER_cert_to_PEM_cert(der)],
            "client_cert_name": None,
            "client_cert_error": None,  # the handshake verified it, or there is none
            "tls_version": None,
            "cipher_suite": None,
        }
        app = self.app

        async def with_tls(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] in ("http", "websocket"):
                scope.setdefault("extensions", {})["tls"] = tls
            await app(scope, receive, send)

        self.app = with_tls
