"""Certificate-bound tokens (RFC 8705) at the binding layer: the ``x5t#S256`` thumbprint from
PEM, DER, RFC 9440 ``Client-Cert`` and Envoy's ``X-Forwarded-Client-Cert``, and the constant-time
check against the token's ``cnf``. Certificates are made by ``cryptography`` in the test."""

from __future__ import annotations

import base64
import datetime
import hashlib
import urllib.parse
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from jwt_guard import TokenVerifier
from jwt_guard.binding.mtls import (
    certificate_thumbprint,
    check_certificate_binding,
    client_cert_header,
    confirmation_x5t,
    load_certificate,
    parse_xfcc,
    xfcc_thumbprint,
)
from jwt_guard.errors import CertificateBindingMismatch
from jwt_guard.testing import LocalIssuer


def _certificate(common_name: str = "client-1") -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


CERT = _certificate()
OTHER = _certificate("client-2")
DER = CERT.public_bytes(serialization.Encoding.DER)
PEM = CERT.public_bytes(serialization.Encoding.PEM).decode()
# computed here without jwt_guard: base64url(SHA-256(DER)) without padding
THUMB = base64.urlsafe_b64encode(hashlib.sha256(DER).digest()).decode().rstrip("=")
OTHER_THUMB = certificate_thumbprint(OTHER.public_bytes(serialization.Encoding.DER))


def test_thumbprint_is_base64url_sha256_of_the_der() -> None:
    assert certificate_thumbprint(DER) == THUMB
    assert len(THUMB) == 43
    assert THUMB != OTHER_THUMB
    # what cryptography itself says the SHA-256 fingerprint is
    assert base64.urlsafe_b64decode(THUMB + "=") == CERT.fingerprint(hashes.SHA256())


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(PEM, id="pem-str"),
        pytest.param(PEM.encode(), id="pem-bytes"),
        pytest.param(DER, id="der"),
        pytest.param("\n  " + PEM.replace("\n", "\r\n") + "\n", id="pem-crlf-and-space"),
    ],
)
def test_load_certificate_gives_the_der(value: str | bytes) -> None:
    assert load_certificate(value) == DER


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(PEM + OTHER.public_bytes(serialization.Encoding.PEM).decode(), id="chain"),
        pytest.param("not a certificate", id="text"),
        pytest.param(b"\x30\x03\x02\x01\x01", id="der-not-a-certificate"),
        pytest.param(DER[:-10], id="der-truncated"),
        pytest.param(DER + b"\x00", id="der-trailing-byte"),
        pytest.param(PEM.replace("MI", "M!", 1), id="pem-bad-base64"),
        pytest.param(PEM.replace("CERTIFICATE", "PRIVATE KEY"), id="pem-other-type"),
        pytest.param("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----", id="pem-junk"),
        pytest.param(b"\xff" * 70_000, id="too-large"),
        pytest.param("-----BEGIN CERTIFICATE-----\u00e9", id="non-ascii"),
        pytest.param(b"-----BEGIN CERTIFICATE-----\xff", id="pem-bytes-non-ascii"),
        pytest.param(None, id="none"),
        pytest.param(["-----BEGIN CERTIFICATE-----"], id="list"),
    ],
)
def test_malformed_certificates_refuse_without_a_500(value: str | bytes) -> None:
    with pytest.raises(CertificateBindingMismatch) as info:
        load_certificate(value)
    assert info.value.status == 401
    assert info.value.error == "invalid_token"


def test_client_cert_header_rfc_9440() -> None:
    value = ":" + base64.b64encode(DER).decode() + ":"
    assert client_cert_header(value) == DER
    assert client_cert_header(f" \t{value} ") == DER
    for bad in (
        base64.b64encode(DER).decode(),  # not a byte sequence
        ":" + base64.urlsafe_b64encode(DER).decode().replace("=", "") + ":",
        ":" + base64.b64encode(DER).decode()[:-4] + ":",
        ":" + base64.b64encode(DER).decode() + ":junk",
        ":" + "A" * 8 + ":",
        "::",
        ":" + base64.b64encode(b"x" * 50_000).decode() + ":",
    ):
        with pytest.raises(CertificateBindingMismatch):
            client_cert_header(bad)
    with pytest.raises(CertificateBindingMismatch):
        client_cert_header(b":AAAA:")  # type: ignore[arg-type]


# -- Envoy X-Forwarded-Client-Cert -----------------------------------------------------------

HASH = hashlib.sha256(DER).hexdigest()
CERT_FIELD = urllib.parse.quote(PEM, safe="")
OTHER_CERT_FIELD = urllib.parse.quote(
    OTHER.public_bytes(serialization.Encoding.PEM).decode(), safe=""
)
ENVOY = (
    f"By=spiffe://cluster.local/ns/default/sa/api;Hash={HASH};"
    f'Cert="{CERT_FIELD}";Subject="CN=client-1,O=\\"Example, Inc\\"";'
    "URI=spiffe://cluster.local/ns/default/sa/client;DNS=a.example;DNS=b.example"
)


def test_xfcc_as_envoy_writes_it() -> None:
    (element,) = parse_xfcc(ENVOY)
    assert element["subject"] == ['CN=client-1,O="Example, Inc"']
    assert element["dns"] == ["a.example", "b.example"]
    assert element["by"] == ["spiffe://cluster.local/ns/default/sa/api"]
    assert xfcc_thumbprint(ENVOY) == THUMB


def test_xfcc_hash_or_cert_alone() -> None:
    assert xfcc_thumbprint(f"Hash={HASH}") == THUMB
    assert xfcc_thumbprint(f"hash={HASH.upper()}") == THUMB
    assert xfcc_thumbprint(f'Cert="{CERT_FIELD}"') == THUMB
    assert xfcc_thumbprint(f"Cert={CERT_FIELD}") == THUMB


def test_xfcc_hops() -> None:
    other_hash = hashlib.sha256(OTHER.public_bytes(serialization.Encoding.DER)).hexdigest()
    two = f"Hash={HASH};By=edge,Hash={other_hash};By=sidecar"
    with pytest.raises(CertificateBindingMismatch, match="2 elements"):
        xfcc_thumbprint(two)
    assert xfcc_thumbprint(two, hop=0) == THUMB
    assert xfcc_thumbprint(two, hop=-1) == OTHER_THUMB
    with pytest.raises(CertificateBindingMismatch, match="no hop 2"):
        xfcc_thumbprint(two, hop=2)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(
            f"Hash={HASH};Cert={OTHER_CERT_FIELD}",
            id="hash-and-cert-disagree",
        ),
        pytest.param(f"Hash={HASH};Hash={HASH}", id="repeated-hash"),
        pytest.param(f"Hash={HASH[:-2]}", id="short-hash"),
        pytest.param(f"Hash={HASH[:-1]}g", id="hash-not-hex"),
        pytest.param("By=spiffe://x;URI=spiffe://y", id="no-hash-or-cert"),
        pytest.param('Cert="-----BEGIN', id="unclosed-quote"),
        pytest.param('Cert="abc"x;Hash=1', id="junk-after-quote"),
        pytest.param("Hash", id="no-equals"),
        pytest.param("", id="empty"),
        pytest.param(f"Hash={HASH};", id="trailing-semicolon"),
        pytest.param("Cert=%ff%fe", id="cert-not-utf8"),
        pytest.param("Cert=not-a-pem", id="cert-not-pem"),
        pytest.param("=x", id="empty-key"),
        pytest.param("Hash=" + "a" * 200_000, id="too-long"),
    ],
)
def test_malformed_xfcc_is_refused(value: str) -> None:
    with pytest.raises(CertificateBindingMismatch):
        xfcc_thumbprint(value)


# -- the token's cnf and the check ----------------------------------------------------------


def test_confirmation_x5t() -> None:
    assert confirmation_x5t({}) is None
    assert confirmation_x5t({"cnf": {"jkt": "a" * 43}}) is None
    assert confirmation_x5t({"cnf": {"x5t#S256": THUMB}}) == THUMB
    for bad in ({"cnf": []}, {"cnf": {"x5t#S256": 1}}, {"cnf": {"x5t#S256": THUMB + "="}}):
        with pytest.raises(CertificateBindingMismatch):
            confirmation_x5t(bad)


@pytest.mark.parametrize(
    ("expected", "presented", "ok"),
    [
        pytest.param(THUMB, THUMB, True, id="same"),
        pytest.param(THUMB, OTHER_THUMB, False, id="other"),
        pytest.param(THUMB, None, False, id="none-presented"),
        pytest.param(THUMB, THUMB.lower(), False, id="case"),
        pytest.param(THUMB, "\u00e9" * 43, False, id="non-ascii"),
        pytest.param(None, THUMB, False, id="none-expected"),
        pytest.param(42, THUMB, False, id="not-a-string"),
        pytest.param("short", "short", False, id="short"),
    ],
)
def test_check_certificate_binding(expected: Any, presented: str | None, ok: bool) -> None:
    if ok:
        check_certificate_binding(expected, presented)
        return
    with pytest.raises(CertificateBindingMismatch) as info:
        check_certificate_binding(expected, presented)
    assert info.value.description == "The access token is not bound to the client certificate"


def test_a_certificate_bound_token_from_the_local_issuer() -> None:
    with LocalIssuer() as issuer:
        token = issuer.mint(claims={"cnf": {"x5t#S256": certificate_thumbprint(DER)}})
        claims = TokenVerifier(
            issuer=issuer.issuer, audience=issuer.audience, jwks=issuer.jwks()
        ).verify(token)
    expected = confirmation_x5t(claims)
    check_certificate_binding(expected, certificate_thumbprint(load_certificate(PEM)))
    check_certificate_binding(expected, xfcc_thumbprint(ENVOY))
    check_certificate_binding(
        expected, certificate_thumbprint(client_cert_header(f":{base64.b64encode(DER).decode()}:"))
    )
    with pytest.raises(CertificateBindingMismatch):
        check_certificate_binding(expected, OTHER_THUMB)
