"""The key source's HTTP (``jwt_guard.sources._http``) against real servers on 127.0.0.1.

Which URLs may be fetched (a table of hostile ones: each is refused when configured, discovered
or reached by a redirect), redirects followed by hand and re-checked (never from https:// to
http://, checked against a real TLS server), outside bytes escaped in every log line of a failed
fetch (every control character), and connections of their own in a forked child.

``Scripted`` is a keep-alive HTTP/1.1 server answering each path as a test scripts it and
recording which client port every request came from.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import logging
import os
import ssl
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from requests.adapters import HTTPAdapter
from urllib3.util import parse_url

import jwt_guard
from _core_helpers import Clock, settle_jwks_threads
from _servers import free_port, wait_until_listening
from jwt_guard import ConfigurationError, KeysUnavailable, TokenVerifier
from jwt_guard.errors import UnknownKey
from jwt_guard.guard.health import health_wsgi_app
from jwt_guard.sources.jwks import JWKSClient, check_url
from jwt_guard.testing import LocalIssuer
from jwt_guard.testing._server import ServingThread

FAST: dict[str, Any] = {"timeout": (2.0, 2.0), "total_timeout": 5.0}

# Every character that can break or disguise a log line: C0, DEL, C1, LINE/PARAGRAPH SEPARATOR.
CONTROLS = [chr(c) for c in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)]
_CONTROL_SET = frozenset(CONTROLS)  # looked up for every character of every captured log line


Route = tuple[int, list[tuple[str, str]], bytes]


class Scripted:
    """A threaded HTTP/1.1 (keep-alive) server on 127.0.0.1; ``routes[path]`` is its answer.

    ``seen`` lists ``(path, client port)`` per request. With ``tls`` it speaks HTTPS.
    """

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, Route] = {}
        self.seen: list[tuple[str, int]] = []
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: with Nagle on, a kept-alive connection's
            # second write waits for the client's delayed ACK (~40 ms a request), as in LocalIssuer.
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                scripted.seen.append((self.path, self.client_address[1]))
                status, headers, body = scripted.routes.get(self.path, (404, [], b"no route"))
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Stay quiet."""

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        scheme = "https" if tls is not None else "http"
        self.origin = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}"
        self._serving = ServingThread(self.httpd, "scripted")

    def url(self, path: str) -> str:
        return self.origin + path

    def json(self, path: str, document: object, *headers: tuple[str, str]) -> None:
        self.routes[path] = (
            200,
            [("Content-Type", "application/json"), *headers],
            json.dumps(document).encode(),
        )

    def redirect(self, path: str, location: str, status: int = 302) -> None:
        self.routes[path] = (status, [("Location", location)], b"")

    def paths(self) -> list[str]:
        return [path for path, _ in self.seen]

    def close(self) -> None:
        self._serving.stop()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Scripted]:
    made = Scripted()
    yield made
    made.close()
    settle_jwks_threads()


@pytest.fixture(scope="module")
def keys() -> Iterator[LocalIssuer]:
    """Only for its JWKS document and for minting tokens."""
    with LocalIssuer(algorithms=("ES256",)) as local:
        yield local


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, Path]:
    """A server context for 127.0.0.1 and the path of the CA file that trusts it."""
    folder = tmp_path_factory.mktemp("tls")
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jwt_guard test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = folder / "ca.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    chain = folder / "leaf.pem"
    chain.write_bytes(
        leaf.public_bytes(serialization.Encoding.PEM)
        + leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain)
    return context, ca_path


@pytest.fixture
def tls_server(tls: tuple[ssl.SSLContext, Path]) -> Iterator[Scripted]:
    made = Scripted(tls[0])
    yield made
    made.close()
    settle_jwks_threads()


@pytest.fixture
def trusting(tls: tuple[ssl.SSLContext, Path]) -> Iterator[requests.Session]:
    """A session that trusts the test CA (the environment's CA bundle would win otherwise)."""
    with requests.Session() as session:
        session.verify = str(tls[1])
        session.trust_env = False
        yield session


# -- which URLs may be fetched ------------------------------------------------------------------


def test_the_two_parsers_really_disagree_on_a_backslash() -> None:
    """The premise of the rule: ``urlsplit`` sees loopback where requests connects elsewhere."""
    url = "http://169.254.169.254\\@127.0.0.1/jwks"
    assert urlsplit(url).hostname == "127.0.0.1"
    assert parse_url(url).host == "169.254.169.254"
    assert check_url(url, allow_http=False) is not None


# (url, refused only because it is plain http off loopback)
HOSTILE_URLS = [
    pytest.param("http://169.254.169.254\\@127.0.0.1/jwks", False, id="backslash-to-metadata"),
    pytest.param("http://127.0.0.1:80\\@169.254.169.254/jwks", False, id="backslash-reversed"),
    pytest.param("https://idp.example.com\\.evil.example/jwks", False, id="backslash-in-host"),
    pytest.param("https://idp.example.com/a\\b", False, id="backslash-in-path"),
    pytest.param("http://user:secret@127.0.0.1/jwks", False, id="userinfo"),
    pytest.param("http://127.0.0.1@169.254.169.254/jwks", False, id="userinfo-lookalike"),
    pytest.param("https://idp.example.com;@evil.example/jwks", False, id="userinfo-semicolon"),
    pytest.param("https://idp.example.com%2f@evil.example/", False, id="userinfo-percent-slash"),
    pytest.param("https://idp%2eexample.com/jwks", False, id="percent-encoded-host"),
    pytest.param("http://127.0.0.1 /jwks", False, id="space"),
    pytest.param("http://127.0.0.1/\tjwks", False, id="tab"),
    pytest.param("http://127.0.0.1\n.evil.example/jwks", False, id="newline"),
    pytest.param("http://127.0.0.1/jwks\x1b[2J", False, id="escape-sequence"),
    pytest.param("https://idp.example.com/jwks\x00", False, id="nul"),
    pytest.param("https://idp.example.com/\u2028", False, id="line-separator"),
    pytest.param("https://b\u00fccher.example/jwks", False, id="non-ascii-host"),
    pytest.param("https://idp.example.com/\u00fc", False, id="non-ascii-path"),
    pytest.param("https://idp.example.com\u3002evil/", False, id="ideographic-full-stop"),
    pytest.param("http://127.1/jwks", False, id="ipv4-short-form"),
    pytest.param("http://2130706433/jwks", False, id="ipv4-as-integer"),
    pytest.param("http://0x7f.0.0.1/jwks", False, id="ipv4-hex"),
    pytest.param("http://0177.0.0.1/jwks", False, id="ipv4-octal"),
    pytest.param("http://127.0.0.1./jwks", False, id="ipv4-trailing-dot"),
    pytest.param("https://0xa9.254.169.254/latest/", False, id="metadata-hex"),
    pytest.param("https://169.254.169.254/latest/meta-data/", False, id="metadata-ipv4"),
    pytest.param("https://169.254.0.1/jwks", False, id="link-local-ipv4"),
    pytest.param("https://[fe80::1]/jwks", False, id="link-local-ipv6"),
    pytest.param("https://[fd00:ec2::254]/latest/", False, id="metadata-aws-ipv6"),
    pytest.param("https://100.100.100.200/latest/", False, id="metadata-alibaba"),
    pytest.param("https://[::ffff:169.254.169.254]/", False, id="metadata-ipv4-mapped"),
    pytest.param("https://[::ffff:a9fe:a9fe]/", False, id="metadata-ipv4-mapped-hex"),
    pytest.param("https://[64:ff9b::a9fe:a9fe]/", False, id="metadata-nat64"),
    pytest.param("https://[::a9fe:a9fe]/", False, id="metadata-ipv4-compatible"),
    pytest.param("https://[fe80::1%25eth0]/jwks", False, id="ipv6-zone"),
    pytest.param("https://0.0.0.0/jwks", False, id="unspecified-ipv4"),
    pytest.param("https://[::]/jwks", False, id="unspecified-ipv6"),
    pytest.param("http://127.0.0.1:0/jwks", False, id="port-zero"),
    pytest.param("http://127.0.0.1:65536/jwks", False, id="port-out-of-range"),
    pytest.param("https://a..b/jwks", False, id="empty-label"),
    pytest.param("https:///jwks", False, id="no-host"),
    pytest.param("file:///etc/passwd", False, id="file-scheme"),
    pytest.param("//idp.example.com/jwks", False, id="scheme-relative"),
    pytest.param("http://[::ffff:127.0.0.1]/jwks", True, id="http-ipv4-mapped-loopback"),
    pytest.param("http://localhost.evil.example/jwks", True, id="http-localhost-prefix"),
    pytest.param("http://127.0.0.1.evil.example/jwks", True, id="http-loopback-prefix"),
]


@pytest.mark.parametrize(("url", "http_only"), HOSTILE_URLS)
def test_hostile_urls_are_refused_when_configured(url: str, http_only: bool) -> None:
    for allow_http in (False, True) if not http_only else (False,):
        with pytest.raises(ConfigurationError, match="JWKS source"):
            JWKSClient(url, allow_http=allow_http)
        with pytest.raises(ConfigurationError, match="JWKS source"):
            JWKSClient(discovery_issuer=url, allow_http=allow_http)
    with pytest.raises(ConfigurationError):
        TokenVerifier(issuer="https://idp.example.com/", audience="api", jwks_url=url)
    if not http_only:
        with pytest.raises(ConfigurationError):
            TokenVerifier(issuer=url, audience="api")


@pytest.mark.parametrize(
    "url",
    [
        "https://idp.example.com/.well-known/jwks.json",
        "HTTPS://IDP.Example.COM:443/jwks",
        "https://xn--bcher-kva.example/jwks",
        "https://idp.example.com/jwks?tenant=a%20b#keys",
        "https://10.0.0.7:8443/jwks",
        "https://[2001:db8::1]/jwks",
        "http://127.0.0.1:9/jwks",
        "http://127.8.9.10/jwks",
        "http://localhost:9/jwks",
        "http://[::1]:9/jwks",
    ],
)
def test_ordinary_urls_are_accepted(url: str) -> None:
    assert check_url(url, allow_http=False) is None
    JWKSClient(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://169.254.169.254/jwks",
        "https://[fe80::1]/jwks",
        "https://[fd00:ec2::254]/jwks",
        "https://[::ffff:169.254.169.254]/jwks",
    ],
)
def test_allow_link_local_opens_link_local_and_metadata_addresses_only(url: str) -> None:
    with pytest.raises(ConfigurationError, match="allow_link_local"):
        JWKSClient(url)
    JWKSClient(url, allow_link_local=True)
    TokenVerifier(
        issuer="https://idp.example.com/",
        audience="api",
        jwks_url=url,
        jwks_options={"allow_link_local": True},
    )
    # It opens nothing else: the same host behind a backslash or user information stays refused.
    backslash = url.replace("https://", "https://idp.example.com\\@")
    assert "backslash" in str(check_url(backslash, allow_http=False, allow_link_local=True))
    userinfo = url.replace("https://", "https://idp.example.com@")
    assert "user information" in str(check_url(userinfo, allow_http=False, allow_link_local=True))


# -- redirects and discovery, each target checked ------------------------------------------------


def _client(url: str, **options: Any) -> JWKSClient:
    return JWKSClient(url, **{**FAST, **options})


def test_redirects_on_loopback_are_followed(server: Scripted, keys: LocalIssuer) -> None:
    server.redirect("/jwks", "/moved", status=301)
    server.redirect("/moved", server.url("/keys"), status=307)
    server.json("/keys", keys.jwks())
    client = _client(server.url("/jwks"))
    client.prefetch()
    assert client.status()["keys"] == len(keys.jwks()["keys"])
    assert server.paths() == ["/jwks", "/moved", "/keys"]


@pytest.mark.parametrize(
    "location",
    [
        pytest.param("http://169.254.169.254\\@127.0.0.1:{port}/keys", id="backslash"),
        pytest.param("http://127.0.0.1:{port}\\@169.254.169.254/keys", id="backslash-reversed"),
        pytest.param("\\\\169.254.169.254\\keys", id="backslashes-relative"),
        pytest.param("http://user@127.0.0.1:{port}/keys", id="userinfo"),
        pytest.param("http://169.254.169.254/latest/meta-data/", id="metadata-http"),
        pytest.param("https://169.254.169.254/latest/meta-data/", id="metadata-https"),
        pytest.param("https://[::ffff:169.254.169.254]/", id="metadata-mapped"),
        pytest.param("http://idp.example.com/keys", id="http-off-loopback"),
        pytest.param("http://2130706433:{port}/keys", id="ipv4-as-integer"),
        pytest.param("http://127.0.0.1:{port}/ke\tys", id="tab"),
        pytest.param("http://127.0.0.1:{port}/keys\x1b[2J", id="escape-sequence"),
        pytest.param("file:///etc/passwd", id="file-scheme"),
    ],
)
def test_a_redirect_to_a_refused_url_is_not_followed(
    server: Scripted, keys: LocalIssuer, location: str
) -> None:
    port = urlsplit(server.origin).port
    server.redirect("/jwks", location.format(port=port))
    server.json("/keys", keys.jwks())
    client = _client(server.url("/jwks"))
    with pytest.raises(KeysUnavailable):
        client.prefetch()
    assert server.paths() == ["/jwks"]
    assert "refused" in str(client.last_error)


def test_at_most_three_redirects(server: Scripted, keys: LocalIssuer) -> None:
    for hop in range(4):
        server.redirect(f"/{hop}", f"/{hop + 1}")
    server.json("/4", keys.jwks())
    with pytest.raises(KeysUnavailable):
        _client(server.url("/0")).prefetch()
    assert server.paths() == ["/0", "/1", "/2", "/3"]
    server.seen.clear()
    _client(server.url("/1")).prefetch()  # three redirects are fine
    assert server.paths() == ["/1", "/2", "/3", "/4"]


def test_an_https_source_never_redirects_to_http_not_even_on_loopback(
    tls_server: Scripted, server: Scripted, keys: LocalIssuer, trusting: requests.Session
) -> None:
    server.json("/keys", keys.jwks())
    tls_server.json("/keys", keys.jwks())
    tls_server.redirect("/to-https", tls_server.url("/keys"))
    tls_server.redirect("/to-http", server.url("/keys"))
    # Over TLS, and an https -> https redirect is followed: the TLS set-up is sound...
    _client(tls_server.url("/to-https"), session=trusting).prefetch()
    # ...but not https -> http, although plain http to loopback is allowed as a source.
    client = _client(tls_server.url("/to-http"), session=trusting)
    with pytest.raises(KeysUnavailable):
        client.prefetch()
    assert "never redirects to http://" in str(client.last_error)
    assert server.seen == []
    # Not even with allow_http.
    client = _client(tls_server.url("/to-http"), session=trusting, allow_http=True)
    with pytest.raises(KeysUnavailable):
        client.prefetch()
    assert server.seen == []


def test_an_https_issuer_cannot_discover_an_http_jwks_uri(
    tls_server: Scripted, server: Scripted, keys: LocalIssuer, trusting: requests.Session
) -> None:
    server.json("/keys", keys.jwks())
    tls_server.json("/keys", keys.jwks())
    document = {"issuer": tls_server.origin, "jwks_uri": server.url("/keys")}
    tls_server.json("/.well-known/openid-configuration", document)
    client = JWKSClient(discovery_issuer=tls_server.origin, session=trusting, **FAST)
    with pytest.raises(KeysUnavailable):
        client.prefetch()
    assert "must be https://" in str(client.last_error)
    assert server.seen == []
    document["jwks_uri"] = tls_server.url("/keys")
    tls_server.json("/.well-known/openid-configuration", document)
    client = JWKSClient(discovery_issuer=tls_server.origin, session=trusting, **FAST)
    client.prefetch()
    assert client.status()["jwks_uri"] == tls_server.url("/keys")


@pytest.mark.parametrize(("jwks_uri", "http_only"), HOSTILE_URLS)
def test_a_discovered_jwks_uri_is_checked_like_a_configured_one(
    server: Scripted, keys: LocalIssuer, jwks_uri: str, http_only: bool
) -> None:
    server.json(
        "/.well-known/openid-configuration", {"issuer": server.origin, "jwks_uri": jwks_uri}
    )
    client = JWKSClient(discovery_issuer=server.origin, **FAST)
    with pytest.raises(KeysUnavailable):
        client.prefetch()
    assert server.paths() == ["/.well-known/openid-configuration"]
    assert "discovered jwks_uri" in str(client.last_error)
    assert client.status()["jwks_uri"] is None


# -- outside bytes in log lines -----------------------------------------------------------------


def _raw_controls(text: str) -> list[str]:
    return sorted({f"U+{ord(c):04X}" for c in text if c in _CONTROL_SET})


def _header_text(char: str) -> str:
    """``char`` as a header value can carry it: latin-1 as is, others as their UTF-8 bytes."""
    return char if ord(char) < 0x100 else char.encode().decode("latin-1")


@pytest.mark.parametrize("char", CONTROLS, ids=[f"U+{ord(c):04X}" for c in CONTROLS])
def test_outside_bytes_reach_no_log_line_raw(
    server: Scripted, keys: LocalIssuer, char: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A provider's bytes in every fetch failure that quotes them: a discovered ``jwks_uri``, a
    discovery ``issuer``, a redirect ``Location``, a ``Content-Type``. They reach the ``jwks fetch
    failed`` warning, the 503 line's ``detail=``, the health log line and ``health()``, escaped."""
    issuer = server.origin
    evil = f"http://127.0.0.1:9/x{char}[31mred{char}"
    header = _header_text(char)
    cases: dict[str, Route] = {
        "/discovered/.well-known/openid-configuration": (
            200,
            [("Content-Type", "application/json")],
            json.dumps({"issuer": issuer + "/discovered", "jwks_uri": evil}).encode(),
        ),
        "/issuer/.well-known/openid-configuration": (
            200,
            [("Content-Type", "application/json")],
            json.dumps({"issuer": f"{issuer}/i{char}ssuer", "jwks_uri": "/k"}).encode(),
        ),
    }
    if char not in "\r\n":  # these two end a header line: a header value cannot hold them
        cases["/redirect/.well-known/jwks.json"] = (302, [("Location", f"/x{header}[31m")], b"")
        cases["/content-type/.well-known/jwks.json"] = (
            200,
            [("Content-Type", f"text/html{header}[31m")],
            b"<html>",
        )
    server.routes.update(cases)
    # The probe fetches when the back-off has passed; jittered, it can be a few microseconds. On
    # a clock that stands still it never has: each case is fetched once, whatever the timing.
    still = Clock()
    for path in cases:
        name = path.split("/")[1]
        configured = f"{issuer}/{name}"
        options: dict[str, Any] = {"jwks_options": FAST, "monotonic": still.monotonic}
        if path.endswith("jwks.json"):
            options["jwks_url"] = server.url(path)
        verifier = TokenVerifier(issuer=configured, audience="api", **options)
        probe = health_wsgi_app(verifier)
        with caplog.at_level(logging.DEBUG, logger="jwt_guard"):
            with pytest.raises(KeysUnavailable):
                verifier.verify(keys.mint(issuer=configured, audience="api"))
            probe({"REQUEST_METHOD": "GET", "PATH_INFO": "/"}, lambda status, headers: None)
        (status,) = verifier.health()["issuers"].values()
        assert status["last_error"], name
        assert _raw_controls(status["last_error"]) == [], name
    assert server.paths() == [*cases]  # each case was fetched and failed on its own bytes
    lines = [record.getMessage() for record in caplog.records]
    assert _raw_controls("".join(lines)) == []
    for needle in ("jwks fetch failed", "rejected code=keys_unavailable", "health not ready"):
        assert caplog.text.count(needle) >= len(cases), needle
    if char == "\x1b":  # not vacuous: the bytes did arrive, escaped
        assert caplog.text.count("\\x1b") >= 2 * len(cases)


@pytest.mark.parametrize("char", CONTROLS, ids=[f"U+{ord(c):04X}" for c in CONTROLS])
def test_a_stale_set_and_hostile_kids_reach_no_log_line_raw(
    server: Scripted, char: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The lines of a warm key source: kids from the JWKS (``fetched ... added=``), a token's
    unknown kid, and the stale-serving warning quoting the error of a hostile redirect."""
    clock = Clock(now=time.time())
    with LocalIssuer(algorithms=("ES256",), clock=clock) as local:
        document = local.jwks()
        hostile_kid = dict(document["keys"][0], kid=f"k{char}[31m")
        server.json("/jwks", {"keys": [*document["keys"], hostile_kid]})
        verifier = TokenVerifier(
            issuer=local.issuer,
            audience=local.audience,
            jwks_url=server.url("/jwks"),
            clock=clock,
            jwks_options={**FAST, "cooldown": 0},
            token_cache_size=0,
        )
        token = local.mint(expires_in=7200)
        with caplog.at_level(logging.DEBUG, logger="jwt_guard"):
            assert verifier.verify(token).subject == "user-1"
            if char in "\r\n":
                server.routes["/jwks"] = (500, [], b"")
            else:
                server.redirect("/jwks", f"/x{_header_text(char)}[31m")
            clock.advance(400)  # past the 300 s lifetime: refreshes fail, the stale set serves
            verifier.prefetch()
            assert verifier.verify(token).subject == "user-1"
            with pytest.raises(UnknownKey):
                verifier.verify(local.mint(kid=f"new{char}[31m", expires_in=7200))
        settle_jwks_threads()
    lines = [record.getMessage() for record in caplog.records]
    assert _raw_controls("".join(lines)) == []
    assert any("stale" in line for line in lines)
    assert len(server.seen) >= 2  # the first fetch and the failed refresh


# -- one process, its own connections ------------------------------------------------------------


class _Subclassed(HTTPAdapter):
    """A user's adapter subclass: jwt_guard uses it as it is."""


def _session(kind: str) -> requests.Session | None:
    if kind == "default":
        return None
    session = requests.Session()
    if kind == "adapter-subclass":
        session.mount("http://", _Subclassed())
    return session


@pytest.mark.parametrize("kind", ["default", "own-session", "adapter-subclass"])
def test_a_forked_child_fetches_over_a_connection_of_its_own(
    server: Scripted, keys: LocalIssuer, kind: str
) -> None:
    """``gunicorn --preload``: the master fetched (its keep-alive connection sits in the pool),
    then forked. The child must open its own connection, and leave the master's working."""
    server.json("/jwks", keys.jwks())
    client = JWKSClient(server.url("/jwks"), session=_session(kind), **FAST)
    client.refresh()
    ((_, master_port),) = server.seen
    read, write = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns that forking a process with threads (the server's) may deadlock
        # the child; the child here only fetches and reports, then leaves with os._exit.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child
        outcome = b"ok"
        try:
            client.refresh()
        except BaseException as exc:  # reported to the parent, which fails the test
            outcome = repr(exc).encode()
        finally:
            os.write(write, outcome)
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        outcome = pipe.read()
    os.waitpid(pid, 0)
    assert outcome == b"ok"
    assert len(server.seen) == 2
    child_port = server.seen[1][1]
    assert child_port != master_port
    # The master's connection was neither taken nor closed by the child: it is reused.
    client.refresh()
    assert server.seen[2][1] == master_port


PRELOADED_APP = """
import os

from jwt_guard import JWTGuardWSGI, TokenVerifier

verifier = TokenVerifier(
    issuer=os.environ["TEST_ISSUER"],
    audience=os.environ["TEST_AUDIENCE"],
    jwks_url=os.environ["TEST_JWKS_URL"],
    jwks_options={"cooldown": 0, "timeout": (2.0, 2.0), "total_timeout": 5.0},
)
verifier.prefetch()  # in the master (--preload): its keep-alive connection is pooled at the fork


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]


app = JWTGuardWSGI(hello, verifier=verifier)
"""


@pytest.mark.parametrize("worker", ["sync", "gthread"])
def test_gunicorn_preload_workers_fetch_over_connections_of_their_own(
    server: Scripted, tmp_path: Path, worker: str
) -> None:
    """The production shape of the fork test: ``gunicorn --preload`` with recycled workers
    (``--max-requests``). After a rotation every worker refetches; none may do it over the
    master's pooled connection (before the fix they did, and read each other's answers)."""
    with LocalIssuer(algorithms=("ES256",)) as local:
        server.json("/jwks", local.jwks())
        port = free_port()
        source = Path(jwt_guard.__file__).resolve().parent.parent
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(source), str(tmp_path)]),
            "TEST_ISSUER": local.issuer,
            "TEST_AUDIENCE": local.audience,
            "TEST_JWKS_URL": server.url("/jwks"),
        }
        (tmp_path / "preloaded_app.py").write_text(PRELOADED_APP)
        log = tmp_path / "gunicorn.log"
        command = [sys.executable, "-m", "gunicorn", "--preload", "--workers", "2"]
        command += ["--worker-class", worker, "--threads", "2", "--max-requests", "3"]
        command += ["--bind", f"127.0.0.1:{port}", "preloaded_app:app"]
        with log.open("wb") as output:
            process = subprocess.Popen(
                command, cwd=tmp_path, env=env, stdout=output, stderr=subprocess.STDOUT
            )
        try:
            wait_until_listening(port, process, log, "gunicorn")
            ((_, master_port),) = server.seen  # the master's prefetch, before the fork
            local.rotate("ES256")
            server.json("/jwks", local.jwks())
            token = local.mint()
            pids = set()
            # A worker answers at most 3 requests (4 if a gthread worker took one more before
            # it stopped): 9 are answered by at least 3 workers, one of them a recycled one.
            for _ in range(9):
                with requests.Session() as http:
                    answer = http.get(
                        f"http://127.0.0.1:{port}/",
                        headers={"Authorization": f"Bearer {token}", "Connection": "close"},
                        timeout=10,
                    )
                assert answer.status_code == 200, (answer.text, log.read_text())
                pids.add(answer.text)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
    worker_ports = [client_port for _, client_port in server.seen[1:]]
    assert len(pids) >= 3  # several workers, recycled ones among them, answered...
    assert len(worker_ports) >= 3  # ...and each fetched the rotated keys itself
    assert master_port not in worker_ports
