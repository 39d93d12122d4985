"""Certificate-bound access tokens (RFC 8705): the ``x5t#S256`` thumbprint and its check.

A token bound to a client certificate carries ``cnf: {"x5t#S256": base64url(SHA-256(DER))}``;
the resource server compares it with the certificate the TLS layer verified. This module turns
what a server or proxy hands over into that thumbprint, and compares:

* :func:`load_certificate`: one PEM certificate (WSGI ``SSL_CLIENT_CERT``, ASGI
  ``scope["extensions"]["tls"]["client_cert_chain"][0]``) or DER bytes;
* :func:`client_cert_header`: RFC 9440 ``Client-Cert: :<base64 DER>:``;
* :func:`xfcc_thumbprint`: Envoy's ``X-Forwarded-Client-Cert`` (``Hash=<hex>`` and/or
  ``Cert="<url-encoded PEM>"``);
* :func:`check_certificate_binding`: the token's thumbprint against the certificate's, in
  constant time.

No trust decision is made here: whether a header may be believed (it came from a configured
proxy address) is for the caller to decide before calling. Every failure raises
:class:`~jwt_guard.errors.CertificateBindingMismatch` (401 ``invalid_token``), so a
malformed certificate never becomes a 500.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

from cryptography import x509

from .._codec import b64url_encode
from ..errors import CertificateBindingMismatch

__all__ = [
    "certificate_thumbprint",
    "check_certificate_binding",
    "client_cert_header",
    "confirmation_x5t",
    "load_certificate",
    "parse_xfcc",
    "xfcc_thumbprint",
]

MAX_CERTIFICATE_SIZE = 65536
"""Longest certificate input accepted, in bytes or characters (PEM, DER or a header value)."""
_PEM = re.compile(
    r"-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+)-----END CERTIFICATE-----", re.ASCII
)
_SF_BINARY = re.compile(r":([A-Za-z0-9+/]*={0,2}):\Z").match
_HEX_SHA256 = re.compile(r"[0-9A-Fa-f]{64}\Z").match
_X5T = re.compile(r"[A-Za-z0-9_-]{43}\Z").match
_XFCC_UNIQUE = frozenset({"hash", "cert", "by", "subject"})


def certificate_thumbprint(der: bytes) -> str:
    """``x5t#S256``: base64url(SHA-256(the DER certificate)), 43 characters (RFC 8705 3.1)."""
    return b64url_encode(hashlib.sha256(der).digest())


def _checked_der(der: bytes) -> bytes:
    """``der`` if it is one X.509 certificate, else ``CertificateBindingMismatch``."""
    try:
        x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise CertificateBindingMismatch(f"client certificate is not X.509 DER: {exc}") from None
    return der


def load_certificate(value: str | bytes) -> bytes:
    """The DER bytes of one certificate given as PEM (``str`` or ``bytes``) or as DER ``bytes``.

    A PEM input must hold exactly one ``CERTIFICATE`` block (a chain is ambiguous: pass its
    first element, the client's own certificate).
    """
    if not isinstance(value, (str, bytes)) or len(value) > MAX_CERTIFICATE_SIZE:
        raise CertificateBindingMismatch(
            "client certificate input is not PEM or DER of a sane size"
        )
    if isinstance(value, bytes) and not value.lstrip().startswith(b"-----BEGIN"):
        return _checked_der(value)
    try:
        text = value if isinstance(value, str) else value.decode("ascii")
    except UnicodeDecodeError:
        raise CertificateBindingMismatch("PEM client certificate is not ASCII") from None
    blocks = _PEM.findall(text)
    if len(blocks) != 1:
        raise CertificateBindingMismatch(
            f"PEM input holds {len(blocks)} CERTIFICATE blocks, expected exactly one"
        )
    body = "".join(blocks[0].split())
    try:
        der = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise CertificateBindingMismatch("PEM client certificate is not valid base64") from None
    return _checked_der(der)


def client_cert_header(value: str) -> bytes:
    """The DER certificate of an RFC 9440 ``Client-Cert`` value: ``:<base64 of the DER>:``.

    The value is an RFC 8941 byte sequence: standard base64 with padding between colons.
    """
    if not isinstance(value, str) or len(value) > MAX_CERTIFICATE_SIZE:
        raise CertificateBindingMismatch("Client-Cert header is not text of a reasonable size")
    match = _SF_BINARY(value.strip(" \t"))
    if match is None:
        raise CertificateBindingMismatch("Client-Cert header is not an RFC 8941 byte sequence")
    try:
        der = base64.b64decode(match.group(1), validate=True)
    except (binascii.Error, ValueError):
        raise CertificateBindingMismatch("Client-Cert header is not valid base64") from None
    return _checked_der(der)


def parse_xfcc(value: str) -> list[dict[str, list[str]]]:
    """Envoy's ``X-Forwarded-Client-Cert``: one mapping per element (one per proxy hop).

    Elements are separated by ``,``, pairs by ``;``, key from value by ``=``; a value may be
    double-quoted (``\\"`` inside for a quote). Keys are lower-cased; ``URI`` and ``DNS`` may
    repeat, the others appear at most once per element.
    """
    if not isinstance(value, str) or len(value) > MAX_CERTIFICATE_SIZE * 2:
        raise CertificateBindingMismatch("X-Forwarded-Client-Cert is not text of a reasonable size")
    elements: list[dict[str, list[str]]] = []
    element: dict[str, list[str]] = {}
    i, n = 0, len(value)
    while True:
        # key
        end = i
        while end < n and value[end] not in "=;,":
            end += 1
        key = value[i:end].strip(" \t").lower()
        if end >= n or value[end] != "=" or not key:
            raise CertificateBindingMismatch("X-Forwarded-Client-Cert pair has no key=value")
        i = end + 1
        # value
        if i < n and value[i] == '"':
            chars: list[str] = []
            i += 1
            while i < n and value[i] != '"':
                if value[i] == "\\" and i + 1 < n:
                    i += 1
                chars.append(value[i])
                i += 1
            if i >= n:
                raise CertificateBindingMismatch("X-Forwarded-Client-Cert has an unclosed quote")
            item = "".join(chars)
            i += 1
            while i < n and value[i] in " \t":
                i += 1
            if i < n and value[i] not in ";,":
                raise CertificateBindingMismatch("X-Forwarded-Client-Cert: junk after a quote")
        else:
            end = i
            while end < n and value[end] not in ";,":
                end += 1
            item = value[i:end].strip(" \t")
            i = end
        if key in element and key in _XFCC_UNIQUE:
            raise CertificateBindingMismatch(f"X-Forwarded-Client-Cert repeats {key!r}")
        element.setdefault(key, []).append(item)
        if i >= n:
            elements.append(element)
            return elements
        if value[i] == ",":
            elements.append(element)
            element = {}
        i += 1


def xfcc_thumbprint(value: str, *, hop: int | None = None) -> str:
    """The ``x5t#S256`` of the client certificate an ``X-Forwarded-Client-Cert`` reports.

    ``hop=None`` (default) requires exactly one element (Envoy's ``SANITIZE_SET`` at the edge);
    with several proxies appending (``APPEND_FORWARD``) give the index of the element the
    proxy that terminated the client's TLS wrote (``0``: the first). The thumbprint comes from
    ``Cert`` (the url-encoded PEM) when present, else from ``Hash`` (hex SHA-256 of the DER);
    when both are present they must agree.
    """
    elements = parse_xfcc(value)
    if hop is None:
        if len(elements) != 1:
            raise CertificateBindingMismatch(
                f"X-Forwarded-Client-Cert has {len(elements)} elements; configure which hop "
                "terminated the client's TLS"
            )
        element = elements[0]
    else:
        try:
            element = elements[hop]
        except IndexError:
            raise CertificateBindingMismatch(
                f"X-Forwarded-Client-Cert has {len(elements)} elements, no hop {hop}"
            ) from None
    from_hash = None
    if "hash" in element:
        digest = element["hash"][0]
        if not _HEX_SHA256(digest):
            raise CertificateBindingMismatch("X-Forwarded-Client-Cert Hash is not a hex SHA-256")
        from_hash = b64url_encode(bytes.fromhex(digest))
    if "cert" in element:
        try:
            pem = urllib.parse.unquote(element["cert"][0], errors="strict")
        except UnicodeDecodeError:
            raise CertificateBindingMismatch("X-Forwarded-Client-Cert Cert is not UTF-8") from None
        thumb = certificate_thumbprint(load_certificate(pem))
        if from_hash is not None and not hmac.compare_digest(thumb, from_hash):
            raise CertificateBindingMismatch("X-Forwarded-Client-Cert Hash and Cert disagree")
        return thumb
    if from_hash is None:
        raise CertificateBindingMismatch("X-Forwarded-Client-Cert element has no Hash or Cert")
    return from_hash


def confirmation_x5t(claims: Mapping[str, Any]) -> str | None:
    """The ``cnf["x5t#S256"]`` of a token's claims; ``None`` when the token has none.

    A ``cnf`` that is not an object, or a thumbprint that is not 43 base64url characters,
    raises ``CertificateBindingMismatch``: a malformed binding never counts as none.
    """
    cnf = claims.get("cnf")
    if cnf is None:
        return None
    if not isinstance(cnf, Mapping):
        raise CertificateBindingMismatch("the token's 'cnf' claim is not an object")
    x5t = cnf.get("x5t#S256")
    if x5t is None:
        return None
    if not isinstance(x5t, str) or not _X5T(x5t):
        raise CertificateBindingMismatch("the token's 'cnf' x5t#S256 is not a SHA-256 thumbprint")
    return x5t


def check_certificate_binding(expected: object, thumbprint: str | None) -> None:
    """Refuse unless ``expected`` (the token's ``cnf["x5t#S256"]``) equals ``thumbprint`` (the
    client certificate's, ``None`` when there is none), compared in constant time."""
    if not isinstance(expected, str) or not _X5T(expected):
        raise CertificateBindingMismatch("the token's x5t#S256 is not a SHA-256 thumbprint")
    if thumbprint is None:
        raise CertificateBindingMismatch("the token is certificate-bound; no client certificate")
    if not hmac.compare_digest(expected.encode("ascii"), thumbprint.encode("ascii", "replace")):
        raise CertificateBindingMismatch("the token is bound to another client certificate")
