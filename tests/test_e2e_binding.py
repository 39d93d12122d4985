"""Sender-constrained tokens end to end, through real servers and real TLS handshakes.

- WSGI: werkzeug's server with an ``ssl_context`` that verifies client certificates puts the
  certificate in ``SSL_CLIENT_CERT``; a certificate-bound token works only over a connection
  made with its certificate.
- ASGI: uvicorn with ``--ssl-cert-reqs 1`` and a protocol that fills the ASGI TLS extension
  (``tests/_tls_uvicorn.py``: uvicorn and hypercorn do not); the same checks.
- The proxy path: a TLS-terminating proxy (``tests/_tls_proxy.py``) verifies the client and
  sends ``Client-Cert`` (RFC 9440) to uvicorn over plain HTTP; the app believes the header
  because the connection comes from its trusted proxy.
- DPoP through uvicorn with real request lines: ``htu`` is the configured public URL plus the
  path uvicorn received, whatever ``Host`` says; an absolute-form request line is refused.

Certificates are made by ``cryptography`` in the test; the issuer is a LocalIssuer here; the
servers listen on 127.0.0.1.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from _certs import Pki
from _servers import free_port, start, stop, wait_until_listening
from jwt_guard import JWTGuardWSGI, TokenVerifier
from jwt_guard.guard.middleware import CLAIMS_KEY
from jwt_guard.testing import LocalIssuer
from jwt_guard.testing._server import ServingThread
from jwt_guard.testing.dpop import DPoPClient

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def clients(pki: Pki) -> dict[str, Any]:
    """alice and mallory hold CA-signed client certificates; eve a self-signed one."""
    return {
        "alice": pki.client("alice"),
        "mallory": pki.client("mallory"),
        "eve": pki.client("eve", signed_by_ca=False),
    }


def _https(pki: Pki, who: tuple[Any, Path, Path] | None) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    if who is not None:
        context.load_cert_chain(str(who[1]), str(who[2]))
    return httpx.Client(verify=context, timeout=10)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- WSGI: werkzeug's TLS server -------------------------------------------------------------


@pytest.fixture(scope="module")
def werkzeug_tls(issuer: LocalIssuer, pki: Pki) -> Iterator[str]:
    @Request.application  # type: ignore[arg-type]
    def me(request: Request) -> Response:
        claims = request.environ[CLAIMS_KEY]
        return Response(claims.subject or "", content_type="text/plain")

    verifier = TokenVerifier(
        issuer=issuer.issuer, audience=issuer.audience, jwks_url=issuer.jwks_url
    )
    app = JWTGuardWSGI(me, verifier=verifier, mtls="allowed")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca_file))
    context.load_cert_chain(str(pki.server_cert_file), str(pki.server_key_file))
    context.verify_mode = ssl.CERT_OPTIONAL  # a client without a certificate connects too
    server = make_server("127.0.0.1", 0, app, threaded=True, ssl_context=context)
    serving = ServingThread(server, "werkzeug-tls")  # stops at once, not at a 0.5 s poll
    try:
        yield f"https://127.0.0.1:{server.port}"
    finally:
        serving.stop()
        server.server_close()


def test_werkzeug_tls_server_binds_tokens_to_the_client_certificate(
    werkzeug_tls: str, issuer: LocalIssuer, pki: Pki, clients: dict[str, Any]
) -> None:
    alice, mallory = clients["alice"], clients["mallory"]
    bound = issuer.mint(subject="alice", certificate=alice[0])
    with _https(pki, alice) as as_alice:
        reply = as_alice.get(werkzeug_tls + "/me", headers=_bearer(bound))
        assert (reply.status_code, reply.text) == (200, "alice")
        plain = as_alice.get(werkzeug_tls + "/me", headers=_bearer(issuer.mint(subject="bob")))
        assert plain.status_code == 200  # mtls="allowed": unbound tokens pass as before
    with _https(pki, mallory) as as_mallory:  # the stolen token over another certificate
        reply = as_mallory.get(werkzeug_tls + "/me", headers=_bearer(bound))
        assert reply.status_code == 401
        assert 'error="invalid_token"' in reply.headers["www-authenticate"]
        assert "not bound to the client certificate" in reply.headers["www-authenticate"]
    with _https(pki, None) as anonymous:  # no certificate at all
        assert anonymous.get(werkzeug_tls + "/me", headers=_bearer(bound)).status_code == 401


def test_werkzeug_tls_server_refuses_a_certificate_the_ca_did_not_sign(
    werkzeug_tls: str, pki: Pki, clients: dict[str, Any]
) -> None:
    with _https(pki, clients["eve"]) as as_eve, pytest.raises(httpx.HTTPError):
        as_eve.get(werkzeug_tls + "/me")  # the handshake fails: no request reaches the app


# -- ASGI: uvicorn ---------------------------------------------------------------------------


def _uvicorn(
    issuer: LocalIssuer, log: Path, port: int, env: dict[str, str], *options: str
) -> subprocess.Popen[bytes]:
    python_path = os.pathsep.join(
        [str(ROOT / "src"), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]
    )
    environ = {
        **os.environ,
        "PYTHONPATH": python_path,
        "JWT_GUARD_ISSUER": issuer.issuer,
        "JWT_GUARD_AUDIENCE": issuer.audience,
        "JWT_GUARD_JWKS_URL": issuer.jwks_url,
        **env,
    }
    command = [sys.executable, "-m", "uvicorn", "_binding_app:app", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--log-level", "warning", *options]
    return start(command, log, cwd=ROOT, env=environ)


@pytest.fixture(scope="module")
def uvicorn_tls(
    issuer: LocalIssuer, pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("uvicorn-tls") / "uvicorn.log"
    process = _uvicorn(
        issuer,
        log,
        port,
        {"JWT_GUARD_MTLS": "required"},
        "--ssl-certfile",
        str(pki.server_cert_file),
        "--ssl-keyfile",
        str(pki.server_key_file),
        "--ssl-ca-certs",
        str(pki.ca_file),
        "--ssl-cert-reqs",
        str(int(ssl.CERT_OPTIONAL)),
        "--http",
        "_tls_uvicorn:TLSExtensionProtocol",
    )
    try:
        wait_until_listening(port, process, log, "uvicorn (TLS)")
        yield f"https://127.0.0.1:{port}"
    finally:
        stop(process)


def test_uvicorn_over_tls_binds_tokens_to_the_client_certificate(
    uvicorn_tls: str, issuer: LocalIssuer, pki: Pki, clients: dict[str, Any]
) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    from jwt_guard.binding.mtls import certificate_thumbprint

    alice, mallory = clients["alice"], clients["mallory"]
    bound = issuer.mint(subject="alice", certificate=alice[0])
    thumbprint = certificate_thumbprint(alice[0].public_bytes(Encoding.DER))
    with _https(pki, alice) as as_alice:
        reply = as_alice.get(uvicorn_tls + "/me", headers=_bearer(bound))
        assert reply.status_code == 200, reply.text
        assert reply.json() == {"sub": "alice", "cnf": {"x5t#S256": thumbprint}}
        # mtls="required" (from JWT_GUARD_MTLS): a token that is not bound is refused
        assert as_alice.get(uvicorn_tls + "/me", headers=_bearer(issuer.mint())).status_code == 401
    with _https(pki, mallory) as as_mallory:
        assert as_mallory.get(uvicorn_tls + "/me", headers=_bearer(bound)).status_code == 401
    with _https(pki, None) as anonymous:
        assert anonymous.get(uvicorn_tls + "/me", headers=_bearer(bound)).status_code == 401


# -- the proxy path: a TLS-terminating proxy in front of plain-HTTP uvicorn -------------------


@pytest.fixture(scope="module")
def behind_proxy(
    issuer: LocalIssuer, pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    from _tls_proxy import TLSProxy

    port = free_port()
    log = tmp_path_factory.mktemp("uvicorn-proxy") / "uvicorn.log"
    env = {
        "JWT_GUARD_MTLS": "required",
        "JWT_GUARD_TRUSTED_PROXIES": "127.0.0.1",
        "JWT_GUARD_MTLS_HEADER": "Client-Cert",
    }
    process = _uvicorn(issuer, log, port, env)
    try:
        wait_until_listening(port, process, log, "uvicorn (behind the proxy)")
        with TLSProxy(port, pki.server_cert_file, pki.server_key_file, pki.ca_file) as proxy:
            yield proxy.url, f"http://127.0.0.1:{port}"
    finally:
        stop(process)


def test_a_trusted_proxy_s_client_cert_header_binds_tokens(
    behind_proxy: tuple[str, str], issuer: LocalIssuer, pki: Pki, clients: dict[str, Any]
) -> None:
    proxy, _ = behind_proxy
    alice, mallory = clients["alice"], clients["mallory"]
    bound = issuer.mint(subject="alice", certificate=alice[0])
    with _https(pki, alice) as as_alice:
        reply = as_alice.get(proxy + "/me", headers=_bearer(bound))
        assert (reply.status_code, reply.json()["sub"]) == (200, "alice")
    with _https(pki, mallory) as as_mallory:
        assert as_mallory.get(proxy + "/me", headers=_bearer(bound)).status_code == 401
        # mallory writes alice's certificate into Client-Cert herself: the proxy replaces it
        import base64

        from cryptography.hazmat.primitives.serialization import Encoding

        forged = ":" + base64.b64encode(alice[0].public_bytes(Encoding.DER)).decode() + ":"
        headers = {**_bearer(bound), "Client-Cert": forged}
        assert as_mallory.get(proxy + "/me", headers=headers).status_code == 401
    with _https(pki, None) as anonymous:
        assert anonymous.get(proxy + "/me", headers=_bearer(bound)).status_code == 401


# -- DPoP through uvicorn: real request lines ---------------------------------------------------


@pytest.fixture(scope="module")
def uvicorn_dpop(issuer: LocalIssuer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("uvicorn-dpop") / "uvicorn.log"
    env = {"JWT_GUARD_DPOP": "required", "JWT_GUARD_PUBLIC_URL": "https://api.example.com"}
    process = _uvicorn(issuer, log, port, env)
    try:
        wait_until_listening(port, process, log, "uvicorn (DPoP)")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)


def _raw(base: str, request: bytes) -> bytes:
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_dpop_through_uvicorn(uvicorn_dpop: str, issuer: LocalIssuer) -> None:
    client = DPoPClient(issuer=issuer, public_url="https://api.example.com")
    token = client.mint(subject="alice")
    with httpx.Client(base_url=uvicorn_dpop, timeout=10) as http:
        reply = http.get("/me", headers=client.headers("GET", "/me", token))
        assert reply.status_code == 200, reply.text
        assert reply.json() == {"sub": "alice", "cnf": {"jkt": client.jkt}}
        # Host says evil.example: a proof for the evil URL is refused, one for ours accepted
        evil = {
            "Authorization": f"DPoP {token}",
            "Host": "evil.example",
            "DPoP": client.proof("GET", "https://evil.example/me", token),
        }
        assert http.get("/me", headers=evil).status_code == 401
        ours = {**client.headers("GET", "/me", token), "Host": "evil.example"}
        assert http.get("/me", headers=ours).status_code == 200
        assert http.get("/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    # an absolute-form request line: uvicorn hands the target over as the path; refused (400)
    proof = client.proof("GET", "https://evil.example/me", token)
    answer = _raw(
        uvicorn_dpop,
        b"GET https://evil.example/me HTTP/1.1\r\nHost: evil.example\r\n"
        + f"Authorization: DPoP {token}\r\nDPoP: {proof}\r\nConnection: close\r\n\r\n".encode(),
    )
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
