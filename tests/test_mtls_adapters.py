"""Certificate-bound tokens (RFC 8705) through every adapter: the certificate from the server's
TLS layer (the ASGI TLS extension, WSGI ``SSL_CLIENT_CERT``) or from a trusted proxy's header
(``Client-Cert``, Envoy's XFCC, nginx's URL-encoded PEM), believed only from the configured
proxy addresses. Real TLS handshakes are in ``tests/test_e2e_binding.py``."""

from __future__ import annotations

import base64
import hashlib
import urllib.parse
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from _binding_apps import FRAMEWORKS, Facts, driver
from _certs import client_certificate, pem
from _common import parse_challenge
from jwt_guard import TokenVerifier
from jwt_guard.testing import LocalIssuer
from jwt_guard.testing.dpop import DPoPClient

ALICE = client_certificate("alice")
MALLORY = client_certificate("mallory")
PROXY = "10.0.0.7"
CLIENT = "198.51.100.7"


@pytest.fixture(params=FRAMEWORKS)
def framework(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def refused(reply: Any, scheme_used: str = "Bearer") -> bool:
    """A 401 ``invalid_token`` saying the token is not bound to the client certificate, in the
    challenge of the scheme the request used."""
    value = {k.lower(): v for k, v in reply.headers.items()}.get("www-authenticate", "")
    scheme, params = parse_challenge(value)
    return (reply.status, scheme, params.get("error"), params.get("error_description")) == (
        401,
        scheme_used,
        "invalid_token",
        "The access token is not bound to the client certificate",
    )


def client_cert(cert: Any) -> str:
    return ":" + base64.b64encode(cert.public_bytes(Encoding.DER)).decode() + ":"


@pytest.mark.parametrize("mode", ["allowed", "required"])
def test_the_tls_layer_s_certificate_must_be_the_token_s(
    framework: str, verifier: TokenVerifier, issuer: LocalIssuer, mode: str
) -> None:
    guarded = driver(framework, verifier, mtls=mode)
    token = issuer.mint(certificate=ALICE)
    assert guarded.send("/me", bearer(token), facts=Facts(tls_cert=pem(ALICE))).status == 200
    assert refused(guarded.send("/me", bearer(token), facts=Facts(tls_cert=pem(MALLORY))))
    assert refused(guarded.send("/me", bearer(token)))  # no certificate
    # the server says the certificate did not verify: it does not count
    failed = Facts(tls_cert=pem(ALICE), tls_error="unable to get local issuer certificate")
    assert refused(guarded.send("/me", bearer(token), facts=failed))
    plain = guarded.send("/me", bearer(issuer.mint()), facts=Facts(tls_cert=pem(ALICE)))
    assert plain.status == (200 if mode == "allowed" else 401)


def test_with_mtls_off_a_certificate_bound_token_is_refused(
    framework: str, verifier: TokenVerifier, issuer: LocalIssuer
) -> None:
    guarded = driver(framework, verifier)  # mtls="off", the default
    token = issuer.mint(certificate=ALICE)
    assert refused(guarded.send("/me", bearer(token), facts=Facts(tls_cert=pem(ALICE))))
    assert guarded.send("/me", bearer(issuer.mint())).status == 200


def _xfcc_hash(cert: Any) -> str:
    digest = hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()
    return f'Hash={digest};Subject="CN=client";URI=spiffe://example/client'


def _xfcc_cert(cert: Any) -> str:
    return f'By=spiffe://example/api;Cert="{urllib.parse.quote(pem(cert), safe="")}"'


@pytest.mark.parametrize(
    ("header", "make"),
    [
        pytest.param("Client-Cert", client_cert, id="rfc9440"),
        pytest.param("X-Forwarded-Client-Cert", _xfcc_hash, id="envoy-xfcc-hash"),
        pytest.param("X-Forwarded-Client-Cert", _xfcc_cert, id="envoy-xfcc-cert"),
        pytest.param("X-SSL-Client-Cert", lambda c: urllib.parse.quote(pem(c)), id="nginx"),
    ],
)
def test_a_trusted_proxy_s_header_carries_the_certificate(
    framework: str, verifier: TokenVerifier, issuer: LocalIssuer, header: str, make: Any
) -> None:
    guarded = driver(
        framework, verifier, mtls="required", trusted_proxies=["10.0.0.0/24"], mtls_header=header
    )
    token = issuer.mint(certificate=ALICE)
    headers = {**bearer(token), header: make(ALICE)}
    assert guarded.send("/me", headers, facts=Facts(client=PROXY)).status == 200
    # the same header straight from a client is not believed: no certificate at all
    assert refused(guarded.send("/me", headers, facts=Facts(client=CLIENT)))
    # ... and a client reaching the app directly over TLS uses its own certificate
    own = Facts(client=CLIENT, tls_cert=pem(ALICE))
    assert guarded.send("/me", bearer(token), facts=own).status == 200
    # from the proxy, only the header counts (the proxy's own TLS certificate is not the client's)
    assert refused(
        guarded.send("/me", bearer(token), facts=Facts(client=PROXY, tls_cert=pem(ALICE)))
    )
    other = {**bearer(token), header: make(MALLORY)}  # the proxy saw another certificate
    assert refused(guarded.send("/me", other, facts=Facts(client=PROXY)))


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("", id="empty"),
        pytest.param(":not base64!:", id="not-base64"),
        pytest.param(":" + base64.b64encode(b"junk").decode() + ":", id="not-a-certificate"),
        pytest.param("x" * 70_000, id="huge"),
        pytest.param(":\u00e9:", id="latin-1"),
    ],
)
def test_a_malformed_certificate_header_is_a_401_never_a_500(
    framework: str, verifier: TokenVerifier, issuer: LocalIssuer, value: str
) -> None:
    guarded = driver(
        framework, verifier, mtls="allowed", trusted_proxies=[PROXY], mtls_header="Client-Cert"
    )
    token = issuer.mint(certificate=ALICE)
    reply = guarded.send("/me", {**bearer(token), "Client-Cert": value}, facts=Facts(client=PROXY))
    assert refused(reply)


def test_two_certificate_headers_are_refused(
    framework: str, verifier: TokenVerifier, issuer: LocalIssuer
) -> None:
    guarded = driver(
        framework, verifier, mtls="allowed", trusted_proxies=[PROXY], mtls_header="Client-Cert"
    )
    token = issuer.mint(certificate=ALICE)
    headers = [
        ("Authorization", f"Bearer {token}"),
        ("Client-Cert", client_cert(ALICE)),
        ("Client-Cert", client_cert(ALICE)),
    ]
    assert refused(guarded.send("/me", headers, facts=Facts(client=PROXY)))


def test_a_token_bound_to_both_a_dpop_key_and_a_certificate_needs_both(
    framework: str, verifier: TokenVerifier, issuer: LocalIssuer
) -> None:
    guarded = driver(
        framework, verifier, dpop="allowed", mtls="allowed", public_url="https://api.example.com"
    )
    client = DPoPClient(issuer=issuer)
    token = client.mint(certificate=ALICE)
    facts = Facts(tls_cert=pem(ALICE))
    assert guarded.send("/me", client.headers("GET", "/me", token), facts=facts).status == 200
    no_cert = guarded.send("/me", client.headers("GET", "/me", token))
    assert refused(no_cert, "DPoP")
    wrong = Facts(tls_cert=pem(MALLORY))
    assert refused(guarded.send("/me", client.headers("GET", "/me", token), facts=wrong), "DPoP")
    assert guarded.send("/me", bearer(token), facts=facts).status == 401  # DPoP-bound: no Bearer


def test_behind_werkzeug_proxy_fix_the_proxy_is_the_peer(
    verifier: TokenVerifier, issuer: LocalIssuer
) -> None:
    """ProxyFix replaces ``REMOTE_ADDR`` with the forwarded client; jwt_guard judges the
    connection by the address it saved in ``werkzeug.proxy_fix.orig``."""
    from werkzeug.middleware.proxy_fix import ProxyFix
    from werkzeug.test import Client

    from _adapter_apps import werkzeug_app

    guarded = werkzeug_app(
        verifier, mtls="required", trusted_proxies=[PROXY], mtls_header="Client-Cert"
    )
    app = ProxyFix(guarded, x_for=1)
    token = issuer.mint(certificate=ALICE)
    headers = {**bearer(token), "Client-Cert": client_cert(ALICE), "X-Forwarded-For": CLIENT}
    with Client(app).get("/me", headers=headers, environ_base={"REMOTE_ADDR": PROXY}) as reply:
        assert reply.status_code == 200
    forged = {**headers, "X-Forwarded-For": PROXY}  # a client posing as the proxy
    with Client(app).get("/me", headers=forged, environ_base={"REMOTE_ADDR": CLIENT}) as reply:
        assert reply.status_code == 401


def test_a_unix_socket_proxy(verifier: TokenVerifier, issuer: LocalIssuer) -> None:
    """``"unix"`` in trusted_proxies: requests that have no peer address (a server listening on
    a unix socket only the proxy can reach) come from the proxy."""
    guarded = driver(
        "starlette", verifier, mtls="required", trusted_proxies=["unix"], mtls_header="Client-Cert"
    )
    token = issuer.mint(certificate=ALICE)
    headers = {**bearer(token), "Client-Cert": client_cert(ALICE)}
    assert guarded.send("/me", headers, facts=Facts(client=None)).status == 200
    assert refused(guarded.send("/me", headers, facts=Facts(client=CLIENT)))
