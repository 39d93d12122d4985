"""The hostile corpus and the harness that runs a request through each jwt_guard entry point.

Shared by ``test_attacks.py`` (the named corpus), ``test_fuzz.py`` (hypothesis) and
``scripts/fuzz_long.py``. A case is a list of raw ``Authorization`` header lines (bytes, one per
header line, built against a live :class:`Kit`) and the refusal it must get: the exact
``JWTGuardError`` class, hence the status and the RFC 6750 error code. The harness drives:

* the core: ``bearer_token`` (the header rules both adapters share), then
  ``TokenVerifier.verify`` and ``averify``, then the route's scope check;
* ``JWTGuard`` (ASGI) with raw ASGI calls, so any byte can be sent and any exception escapes;
* ``JWTGuardWSGI`` through ``werkzeug.test.Client``, the header lines joined with ``,`` as
  WSGI servers join repeated headers.

Both apps serve ``/me`` (any valid token; echoes ``sub`` and ``jti``) and ``/admin`` (needs the
``admin`` scope, checked by ``require_scopes``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import functools
import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from werkzeug.test import Client
from werkzeug.wrappers import Request as WerkzeugRequest
from werkzeug.wrappers import Response as WerkzeugResponse

from jwt_guard import JWTGuard, TokenVerifier
from jwt_guard.decorators import check_scopes, require_scopes
from jwt_guard.errors import (
    AlgorithmNotAllowed,
    BadSignature,
    EncryptedToken,
    ExpiredToken,
    InsufficientScope,
    InvalidClaim,
    InvalidRequest,
    IssuedInFuture,
    JWTGuardError,
    MalformedToken,
    MissingClaim,
    MissingToken,
    NotYetValid,
    TokenTooLarge,
    UnknownKey,
    UnsupportedHeader,
    UseDPoPNonce,
    WrongAudience,
    WrongIssuer,
)
from jwt_guard.guard.middleware import CLAIMS_KEY, bearer_token, challenge, render_error
from jwt_guard.testing import LocalIssuer, SigningKey, generate_key
from jwt_guard.wsgi import JWTGuardWSGI

CANARY = "CANARY-7f3a"
"""Put into hostile values: no response may ever carry it."""
ECHO_MARKERS = (CANARY, "passwd", "DROP TABLE", "<script", "evil.example")

# -- the kit: a trusted issuer, an untrusted one, tokens --------------------------------------


@dataclass
class Kit:
    """A trusted ``issuer`` (RS256, ES256 and EdDSA keys, published at its JWKS URL) and an
    ``attacker``: a second live issuer the verifier does not trust, with keys of every family,
    whose server counts any request a verifier wrongly sends it."""

    issuer: LocalIssuer
    attacker: LocalIssuer

    def key(self, alg: str) -> SigningKey:
        return self.issuer.key(alg)

    def evil(self, alg: str) -> SigningKey:
        return self.attacker.key(alg)

    def claims(self, **changes: Any) -> dict[str, Any]:
        """A valid payload for the trusted issuer; ``changes`` (``None`` removes a claim)."""
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": self.issuer.issuer,
            "sub": "mallory",
            "aud": self.issuer.audience,
            "iat": now,
            "exp": now + 300,
            "jti": "jti-" + CANARY,
        }
        payload.update(changes)
        return {k: v for k, v in payload.items() if v is not None}

    def header(self, family: str = "RS256", **changes: Any) -> dict[str, Any]:
        """A header naming the trusted ``family`` key; ``changes`` (``None`` removes one)."""
        header: dict[str, Any] = {"alg": family, "typ": "JWT", "kid": self.key(family).kid}
        header.update(changes)
        return {k: v for k, v in header.items() if v is not None}

    def sign(
        self,
        header: dict[str, Any] | bytes,
        payload: dict[str, Any] | bytes | str,
        key: SigningKey | None = None,
    ) -> str:
        """Sign exactly these bytes with ``key`` (default: the trusted RS256 key)."""
        return self.issuer.sign_raw(header, payload, key=key or self.key("RS256"))

    def valid(self, **changes: Any) -> str:
        return self.sign(self.header(), self.claims(**changes))


def _named_keys(holder: str, *algs: str) -> list[SigningKey]:
    """Keys with the kids the cases name (``rs256-1``, ...): the issuer and the attacker share
    them on purpose, so a forged token can claim a trusted kid (generated keys would each get
    their own thumbprint kid). Each ``holder`` has keys of its own."""
    return [_named_key(holder, alg) for alg in algs]


@functools.cache
def _named_key(holder: str, alg: str) -> SigningKey:
    """One key per holder and algorithm for the whole run: every module's kit starts issuers of
    its own, and generating their RSA keys was most of what that cost."""
    return generate_key(alg, f"{alg.lower()}-1")


@contextlib.contextmanager
def make_kit() -> Iterator[Kit]:
    """Start both issuers; stop them afterwards."""
    with (
        LocalIssuer(keys=_named_keys("issuer", "RS256", "ES256", "EdDSA")) as issuer,
        LocalIssuer(
            keys=_named_keys("attacker", "RS256", "ES256", "EdDSA", "PS256", "HS256")
        ) as attacker,
    ):
        yield Kit(issuer, attacker)


@contextlib.contextmanager
def make_verifier(kit: Kit, **options: Any) -> Iterator[TokenVerifier]:
    """The verifier under attack: trusts ``kit.issuer`` via its JWKS URL, defaults otherwise."""
    with requests.Session() as session:
        jwks_options = {"session": session, **options.pop("jwks_options", {})}
        yield TokenVerifier(
            issuer=kit.issuer.issuer,
            audience=kit.issuer.audience,
            jwks_url=kit.issuer.jwks_url,
            jwks_options=jwks_options,
            **options,
        )


def b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def js(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def compact(header: dict[str, Any] | bytes, payload: dict[str, Any] | bytes, sig: bytes) -> str:
    h = header if isinstance(header, bytes) else js(header)
    p = payload if isinstance(payload, bytes) else js(payload)
    return f"{b64(h)}.{b64(p)}.{b64(sig)}"


def signing_input(header: dict[str, Any], payload: dict[str, Any] | bytes) -> bytes:
    p = payload if isinstance(payload, bytes) else js(payload)
    return f"{b64(js(header))}.{b64(p)}".encode()


def hmac_token(header: dict[str, Any], payload: dict[str, Any], secret: bytes) -> str:
    """HS* over ``secret`` (the key-confusion attack: a public key used as an HMAC secret)."""
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
    msg = signing_input(header, payload)
    sig = hmac.new(secret, msg, digest[header["alg"]]).digest()
    return f"{msg.decode()}.{b64(sig)}"


def with_signature(kit: Kit, header: dict[str, Any], sig: bytes, **claims: Any) -> str:
    return compact(header, kit.claims(**claims), sig)


def segment(token: str, index: int, new: str) -> str:
    parts = token.split(".")
    parts[index] = new
    return ".".join(parts)


def bump_last_char(seg: str) -> str:
    """Same decoded bytes, non-zero unused trailing bits (python-jose accepts these)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    assert len(seg) % 4 in (2, 3), "needs a partial last quantum"
    return seg[:-1] + alphabet[alphabet.index(seg[-1]) + 1]


# -- a key source that publishes keys no one should trust -----------------------------------


class PlantedKeysIssuer(LocalIssuer):
    """A real :class:`LocalIssuer` whose JWKS also carries ``planted`` JWKs (a compromised or
    broken provider, or a proxy in the path): the provider's own keys must keep serving, and no
    planted key may verify anything."""

    def __init__(self, planted: list[dict[str, Any]], **options: Any) -> None:
        self.planted = planted
        super().__init__(**options)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [*self.planted, *super().jwks()["keys"]]}


def small_order_forgery(
    header: dict[str, Any],
    claims: Callable[[int], dict[str, Any]],
    crv: str,
    raw: bytes,
    tries: int = 64,
) -> tuple[str, bool]:
    """The forgery a small-order EdDSA public key ``raw`` allows: ``R = raw, S = 0``.

    ``S = 0`` verifies when ``R + [k]A`` is the identity, ``k`` a hash of the token: for the
    identity always, for the other small-order points for about one claim set in eight. Tries
    ``claims(n)`` for n < ``tries`` and returns the token with whether a raw ``cryptography`` verify
    (no jwt_guard check in front) accepts it, proving the forgery works where the key is let in.
    """
    cls: Any = ed25519.Ed25519PublicKey if crv == "Ed25519" else ed448.Ed448PublicKey
    sig = raw + bytes(len(raw))
    forged = ""
    for n in range(tries):
        msg = signing_input(header, claims(n))
        forged = f"{msg.decode()}.{b64(sig)}"
        try:
            cls.from_public_bytes(raw).verify(sig, msg)
        except (InvalidSignature, ValueError):
            continue
        return forged, True
    return forged, False


# -- key material an attacker has -------------------------------------------------------------


def rsa_pem(kit: Kit, newline: bool = True, fmt: str = "spki") -> bytes:
    public = kit.key("RS256").public_key()
    if fmt == "pkcs1":
        pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
    else:
        pem = public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    return pem if newline else pem.rstrip(b"\n")


def rsa_der(kit: Kit) -> bytes:
    return (
        kit.key("RS256")
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def ec_pem(kit: Kit) -> bytes:
    return (
        kit.key("ES256")
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def ed_raw(kit: Kit) -> bytes:
    return (
        kit.key("EdDSA")
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )


def pss_signature(key: SigningKey, msg: bytes) -> bytes:
    return bytes(
        key.private_key.sign(
            msg,
            padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
            hashes.SHA256(),
        )
    )


def x5c_chain(key: SigningKey) -> list[str]:
    """A self-signed certificate for the attacker's key, as an ``x5c`` header carries it."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "evil.example")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.private_key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key.private_key, hashes.SHA256())
    )
    return [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]


P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


# -- the corpus -------------------------------------------------------------------------------

Lines = Callable[[Kit], list[bytes]]


@dataclass(frozen=True)
class Hostile:
    """One hostile request: its ``Authorization`` lines and the refusal it must get."""

    lines: Lines
    refusal: type[JWTGuardError]
    path: str = "/me"

    @property
    def status(self) -> int:
        return self.refusal.status

    @property
    def error(self) -> str | None:
        return self.refusal.error


def bearer(make: Callable[[Kit], str]) -> Lines:
    return lambda kit: [b"Bearer " + make(kit).encode("latin-1")]


def raw(*values: bytes | Callable[[Kit], bytes]) -> Lines:
    return lambda kit: [v(kit) if callable(v) else v for v in values]


def _valid(kit: Kit) -> bytes:
    return kit.valid().encode()


def _expired(kit: Kit) -> bytes:
    return kit.valid(exp=int(time.time()) - 3600).encode()


def _forged(kit: Kit) -> bytes:
    return kit.sign(kit.header(), kit.claims(), key=kit.evil("RS256")).encode()


CORPUS: list[Any] = []


def case(case_id: str, lines: Lines, refusal: type[JWTGuardError], path: str = "/me") -> None:
    CORPUS.append(pytest.param(Hostile(lines, refusal, path), id=case_id))


def token_case(
    case_id: str, make: Callable[[Kit], str], refusal: type[JWTGuardError], path: str = "/me"
) -> None:
    case(case_id, bearer(make), refusal, path)


# The Authorization header itself ----------------------------------------------------------

# Another auth-scheme (RFC 7235 syntax): the request holds no bearer credentials, so the answer
# is 401 with the bare challenge (RFC 6750 3.1), never 400 and never a hint of what was sent.
for _id, _lines in {
    "scheme-basic": raw(b"Basic dXNlcjpwYXNzd29yZA=="),
    "scheme-basic-alone": raw(b"Basic"),
    "scheme-digest": raw(b'Digest username="CANARY-7f3a", realm="api", nonce="abc"'),
    "scheme-negotiate": raw(b"Negotiate YIIFCANARY7f3aYIIF"),
    "scheme-token": raw(lambda k: b"Token " + _valid(k)),
    "scheme-jwt": raw(lambda k: b"JWT " + _valid(k)),
    "scheme-dpop": raw(lambda k: b"DPoP " + _valid(k)),
    "scheme-basic-with-controls": raw(b"Basic \x1b[31mCANARY-7f3a\x00"),
    "scheme-bearerx": raw(lambda k: b"Bearerx " + _valid(k)),
    "token-without-scheme": raw(_valid),
}.items():
    case(_id, _lines, MissingToken)

for _id, _lines in {
    "scheme-basic-then-bearer-joined": raw(
        lambda k: b"Basic dXNlcjpwYXNzd29yZA==, Bearer " + _valid(k)
    ),
    "scheme-bearer-equals": raw(lambda k: b"Bearer=" + _valid(k)),
    "scheme-bearer-colon": raw(lambda k: b"Bearer:" + _valid(k)),
    "scheme-only": raw(b"Bearer"),
    "scheme-only-trailing-space": raw(b"Bearer "),
    "scheme-tab-separator": raw(lambda k: b"Bearer\t" + _valid(k)),
    "empty-header": raw(b""),
    "blank-header": raw(b"   "),
    "space-inside-token": raw(lambda k: b"Bearer " + _valid(k).replace(b".", b" .", 1)),
    "two-tokens-space": raw(lambda k: b"Bearer " + _valid(k) + b" " + _valid(k)),
    "two-tokens-comma": raw(lambda k: b"Bearer " + _valid(k) + b", Bearer " + _valid(k)),
    "two-tokens-comma-tight": raw(lambda k: b"Bearer " + _valid(k) + b"," + _valid(k)),
    "quoted-token": raw(lambda k: b'Bearer "' + _valid(k) + b'"'),
    "auth-param-token": raw(lambda k: b'Bearer token="' + _valid(k) + b'"'),
    "non-ascii-utf8-in-token": raw(lambda k: b"Bearer " + _valid(k) + "é".encode()),
    "non-ascii-latin1-in-token": raw(lambda k: b"Bearer \xff" + _valid(k)),
    "non-ascii-in-scheme": raw(lambda k: "Béarer ".encode() + _valid(k)),
    "non-ascii-one-dot-leader": raw(
        lambda k: b"Bearer " + _valid(k).replace(b".", "\u2024".encode(), 1)
    ),
    "control-nul": raw(lambda k: b"Bearer " + _valid(k) + b"\x00"),
    "control-crlf-injection": raw(
        lambda k: b"Bearer " + _valid(k) + b"\r\nSet-Cookie: CANARY-7f3a=1"
    ),
    "control-lf": raw(lambda k: b"Bearer " + _valid(k) + b"\n"),
    "control-del": raw(lambda k: b"Bearer " + _valid(k) + b"\x7f"),
    "control-vertical-tab": raw(lambda k: b"Bearer " + _valid(k).replace(b".", b"\x0b.", 1)),
    "control-escape-sequence": raw(lambda k: b"Bearer \x1b[31m" + _valid(k)),
    "several-lines-same-token": raw(
        lambda k: b"Bearer " + _valid(k), lambda k: b"Bearer " + _valid(k)
    ),
    "several-lines-valid-and-junk": raw(lambda k: b"Bearer " + _valid(k), b"Bearer junk"),
    "several-lines-empty-first": raw(b"", lambda k: b"Bearer " + _valid(k)),
    "several-lines-basic-then-bearer": raw(
        b"Basic dXNlcjpwYXNzd29yZA==", lambda k: b"Bearer " + _valid(k)
    ),
    "several-lines-three": raw(
        lambda k: b"Bearer " + _valid(k),
        lambda k: b"Bearer " + _valid(k),
        lambda k: b"Bearer " + _valid(k),
    ),
    "padding-inside-token": raw(lambda k: b"Bearer " + _valid(k).replace(b".", b"=.", 1)),
    "stray-bang-in-signature": raw(lambda k: b"Bearer " + _valid(k) + b"!"),
}.items():
    case(_id, _lines, InvalidRequest)

# The scheme is case-insensitive and 1*SP may separate it (RFC 6750 2.1, RFC 7235): these
# headers parse, so the (expired) token itself is judged.
case("lower-case-scheme", raw(lambda k: b"bearer " + _expired(k)), ExpiredToken)
case("upper-case-scheme", raw(lambda k: b"BEARER " + _expired(k)), ExpiredToken)
case("extra-spaces-after-scheme", raw(lambda k: b"Bearer     " + _expired(k)), ExpiredToken)
case(
    "leading-and-trailing-spaces", raw(lambda k: b"   Bearer " + _forged(k) + b"   "), BadSignature
)

# alg: none in every casing, and other non-algorithms ----------------------------------------


def _none_token(alg: str, sig: str | None) -> Callable[[Kit], str]:
    def make(kit: Kit) -> str:
        head = f"{b64(js({'alg': alg, 'typ': 'JWT'}))}.{b64(js(kit.claims(sub='admin')))}"
        return head if sig is None else f"{head}.{sig}"

    return make


for _alg in ("none", "None", "NONE", "nOnE"):
    token_case(f"alg-{_alg}-empty-signature", _none_token(_alg, ""), MalformedToken)
    token_case(f"alg-{_alg}-stripped-signature", _none_token(_alg, None), MalformedToken)
    token_case(f"alg-{_alg}-junk-signature", _none_token(_alg, "AAAA"), AlgorithmNotAllowed)
token_case(
    "alg-none-with-real-signature",
    lambda k: k.sign({"alg": "none", "kid": k.key("RS256").kid}, k.claims()),
    AlgorithmNotAllowed,
)
for _id, _header_alg in {
    "alg-missing": None,
    "alg-null": "__null__",
    "alg-empty": "",
    "alg-list": ["RS256"],
    "alg-number": 256,
    "alg-lower-case-rs256": "rs256",
    "alg-trailing-space": "RS256 ",
    "alg-unknown-HS1": "HS1",
    "alg-jwe-RSA-OAEP": "RSA-OAEP",
    "alg-jwe-dir": "dir",
}.items():

    def _make(kit: Kit, alg: Any = _header_alg) -> str:
        header: dict[str, Any] = {"typ": "JWT", "kid": kit.key("RS256").kid}
        if alg == "__null__":
            header["alg"] = None
        elif alg is not None:
            header["alg"] = alg
        return kit.sign(header, kit.claims())

    token_case(_id, _make, AlgorithmNotAllowed)

# HS256 signed with the trusted public key as the secret (key confusion) ---------------------

_SECRETS: dict[str, Callable[[Kit], bytes]] = {
    "rsa-pem": lambda k: rsa_pem(k),
    "rsa-pem-no-newline": lambda k: rsa_pem(k, newline=False),
    "rsa-pkcs1-pem": lambda k: rsa_pem(k, fmt="pkcs1"),
    "rsa-der": rsa_der,
    "rsa-jwk-json": lambda k: json.dumps(k.key("RS256").public_jwk()).encode(),
    "rsa-jwk-json-compact": lambda k: js(k.key("RS256").public_jwk()),
    "rsa-modulus": lambda k: base64.urlsafe_b64decode(k.key("RS256").public_jwk()["n"] + "=="),
}
for _name, _secret in _SECRETS.items():
    for _hs in ("HS256", "HS384", "HS512"):
        if _hs != "HS256" and _name not in ("rsa-pem", "rsa-jwk-json"):
            continue
        token_case(
            f"{_hs.lower()}-with-{_name}-as-secret",
            lambda k, s=_secret, a=_hs: hmac_token(
                {"alg": a, "typ": "JWT", "kid": k.key("RS256").kid}, k.claims(), s(k)
            ),
            AlgorithmNotAllowed,
        )
token_case(
    "hs256-with-rsa-pem-as-secret-no-kid",
    lambda k: hmac_token({"alg": "HS256", "typ": "JWT"}, k.claims(), rsa_pem(k)),
    UnknownKey,
)
token_case(
    "hs256-with-ec-pem-as-secret",
    lambda k: hmac_token(
        {"alg": "HS256", "typ": "JWT", "kid": k.key("ES256").kid}, k.claims(), ec_pem(k)
    ),
    AlgorithmNotAllowed,
)
token_case(
    "hs256-with-ed25519-raw-as-secret",
    lambda k: hmac_token(
        {"alg": "HS256", "typ": "JWT", "kid": k.key("EdDSA").kid}, k.claims(), ed_raw(k)
    ),
    AlgorithmNotAllowed,
)

# Algorithm and key family swaps --------------------------------------------------------------

token_case(
    "es256-token-against-rsa-key",
    lambda k: k.sign(k.header("ES256", kid=k.key("RS256").kid), k.claims(), k.evil("ES256")),
    AlgorithmNotAllowed,
)
token_case(
    "es256-signed-by-trusted-ec-key-naming-rsa-kid",
    lambda k: k.sign(k.header("ES256", kid=k.key("RS256").kid), k.claims(), k.key("ES256")),
    AlgorithmNotAllowed,
)
token_case(
    "rs256-token-against-ec-key",
    lambda k: k.sign(k.header("RS256", kid=k.key("ES256").kid), k.claims(), k.evil("RS256")),
    AlgorithmNotAllowed,
)
token_case(
    "eddsa-token-against-rsa-key",
    lambda k: k.sign(k.header("EdDSA", kid=k.key("RS256").kid), k.claims(), k.evil("EdDSA")),
    AlgorithmNotAllowed,
)
token_case(
    "es384-header-on-es256-key",
    lambda k: with_signature(k, k.header("ES256", alg="ES384"), b"\x01" * 96),
    AlgorithmNotAllowed,
)
token_case(
    "es256k-header-on-p256-key",
    lambda k: with_signature(k, k.header("ES256", alg="ES256K"), b"\x01" * 64),
    AlgorithmNotAllowed,
)


def _ps_on_rs_key(kit: Kit) -> str:
    header = kit.header("RS256", alg="PS256")
    msg = signing_input(header, kit.claims())
    return f"{msg.decode()}.{b64(pss_signature(kit.key('RS256'), msg))}"


def _rs_header_pss_signature(kit: Kit) -> str:
    header = kit.header("RS256")
    msg = signing_input(header, kit.claims())
    return f"{msg.decode()}.{b64(pss_signature(kit.key('RS256'), msg))}"


def _ps_header_pkcs1_signature(kit: Kit) -> str:
    token = kit.sign(kit.header("RS256"), kit.claims())
    head = kit.header("RS256", alg="PS256")
    return segment(token, 0, b64(js(head)))


# The JWKS pins the key to RS256: a PS256 token signed by the real private key is refused.
token_case("ps256-on-rs256-pinned-key", _ps_on_rs_key, AlgorithmNotAllowed)
token_case("rs256-header-with-pss-signature", _rs_header_pss_signature, BadSignature)
token_case("ps256-header-with-pkcs1-signature", _ps_header_pkcs1_signature, AlgorithmNotAllowed)

# Keys offered by the token: jku, x5u, jwk, x5c (never used, never fetched) -------------------


def _embedded(member: str, own_kid: bool) -> Callable[[Kit], str]:
    def make(kit: Kit) -> str:
        evil = kit.evil("RS256")
        values: dict[str, Any] = {
            "jku": kit.attacker.jwks_url,
            "x5u": kit.attacker.url + "/cert.pem",
            "jwk": evil.public_jwk(),
            "x5c": x5c_chain(evil),
        }
        kid = evil.kid + "-" + CANARY if own_kid else kit.key("RS256").kid
        header = kit.header("RS256", kid=kid, **{member: values[member]})
        return kit.sign(header, kit.claims(sub="admin"), key=evil)

    return make


for _member in ("jku", "x5u", "jwk", "x5c"):
    token_case(f"{_member}-attacker-key-attacker-kid", _embedded(_member, True), UnknownKey)
    token_case(f"{_member}-attacker-key-trusted-kid", _embedded(_member, False), BadSignature)
token_case(
    "x5c-attacker-key-no-kid",
    lambda k: k.sign(
        {"alg": "RS256", "x5c": x5c_chain(k.evil("RS256"))}, k.claims(), key=k.evil("RS256")
    ),
    BadSignature,
)
token_case(
    "jwk-attacker-ec-key-no-kid",
    lambda k: k.sign(
        {"alg": "ES256", "jwk": k.evil("ES256").public_jwk()}, k.claims(), key=k.evil("ES256")
    ),
    BadSignature,
)

# crit and b64 (RFC 7515 4.1.11, RFC 7797): validly signed, refused for the header alone ------

for _id, _extra in {
    "crit-unknown-extension": {"crit": ["exp"], "exp": 1},
    "crit-empty-list": {"crit": []},
    "crit-not-a-list": {"crit": "x-" + CANARY},
    "crit-null": {"crit": None},
    "crit-b64-false": {"crit": ["b64"], "b64": False},
    "b64-false-without-crit": {"b64": False},
    "b64-string-false": {"b64": "false"},
    "b64-null": {"b64": None},
}.items():
    token_case(
        _id,
        lambda k, e=_extra: k.sign({**k.header(), **e}, k.claims()),
        UnsupportedHeader,
    )
token_case(
    "b64-false-detached-payload",
    lambda k: segment(k.sign({**k.header(), "b64": False, "crit": ["b64"]}, k.claims()), 1, ""),
    UnsupportedHeader,
)

# kid values (validly signed unless stated: the kid alone must make the refusal) -------------

for _id, (_kid, _refusal) in {
    "kid-huge-600": ("k" * 600, MalformedToken),
    "kid-huge-100k": ("k" * 100_000, TokenTooLarge),
    "kid-integer": (1, MalformedToken),
    "kid-float": (1.5, MalformedToken),
    "kid-bool": (True, MalformedToken),
    "kid-list": (["rs256-1"], MalformedToken),
    "kid-object": ({"$ne": None}, MalformedToken),
    "kid-path-traversal": ("../../../../../../etc/passwd", UnknownKey),
    "kid-dev-null": ("/dev/null", UnknownKey),
    "kid-file-url": ("file:///etc/passwd", UnknownKey),
    "kid-http-url": ("http://evil.example/key.pem", UnknownKey),
    "kid-sql-or": ("' OR '1'='1", UnknownKey),
    "kid-sql-drop": ("x'; DROP TABLE keys; --", UnknownKey),
    "kid-sql-union": ("' UNION SELECT 'secret' --" + CANARY, UnknownKey),
    "kid-empty": ("", UnknownKey),
    "kid-crlf": ("rs256-1\r\nX-Injected: " + CANARY, UnknownKey),
    "kid-nul": ("rs256-1\x00", UnknownKey),
    "kid-unicode-hyphen": ("rs256\u20101", UnknownKey),
    "kid-upper-case": ("RS256-1", UnknownKey),
    "kid-html": ("<script>alert(1)</script>", UnknownKey),
    "kid-format-string": ("%s%s%n{0}{kid!r}" + CANARY, UnknownKey),
    "kid-proto": ("__proto__", UnknownKey),
    "kid-shell": ("$(curl evil.example)", UnknownKey),
}.items():
    token_case(_id, lambda k, kid=_kid: k.sign(k.header(kid=kid), k.claims()), _refusal)
token_case(
    "kid-null-attacker-signature",
    lambda k: k.sign({"alg": "RS256", "kid": None}, k.claims(), key=k.evil("RS256")),
    BadSignature,
)

# JWE and nested tokens -----------------------------------------------------------------------

token_case(
    "jwe-five-segments",
    lambda k: ".".join(
        [b64(js({"alg": "RSA-OAEP", "enc": "A256GCM", "kid": k.key("RS256").kid}))]
        + [b64(b"\x01" * n) for n in (256, 12, 64, 16)]
    ),
    EncryptedToken,
)
token_case(
    "jwe-dir-five-segments",
    lambda k: f"{b64(js({'alg': 'dir', 'enc': 'A128CBC-HS256'}))}..{b64(b'iv')}.{b64(b'x')}.AA",
    EncryptedToken,
)
token_case("five-empty-segments", lambda k: "....", EncryptedToken)
token_case(
    "nested-jwt-as-payload",
    lambda k: k.sign(k.header(cty="JWT"), k.valid().encode()),
    MalformedToken,
)
token_case(
    "nested-jwt-as-json-string",
    lambda k: k.sign(k.header(cty="JWT"), js(k.valid())),
    MalformedToken,
)
token_case(
    "nested-jwe-as-payload",
    lambda k: k.sign(k.header(cty="JWT"), b"eyJhbGciOiJkaXIifQ..aXY.Y3Q.dGFn"),
    MalformedToken,
)
token_case("two-segments", lambda k: ".".join(k.valid().split(".")[:2]), MalformedToken)
token_case("four-segments", lambda k: k.valid() + ".AAAA", MalformedToken)
token_case("six-segments", lambda k: k.valid() + ".AA.AA.AA", MalformedToken)
token_case("one-segment", lambda k: k.valid().split(".")[0], MalformedToken)
token_case("only-dots", lambda k: "..", MalformedToken)
token_case("empty-header-segment", lambda k: segment(k.valid(), 0, ""), MalformedToken)

# ECDSA, EdDSA and RSA signature shapes -------------------------------------------------------


def _es(sig: Callable[[Kit, bytes], bytes]) -> Callable[[Kit], str]:
    def make(kit: Kit) -> str:
        header = kit.header("ES256")
        msg = signing_input(header, kit.claims())
        return f"{msg.decode()}.{b64(sig(kit, msg))}"

    return make


def _der(kit: Kit, msg: bytes) -> bytes:
    return bytes(kit.key("ES256").private_key.sign(msg, ec.ECDSA(hashes.SHA256())))


def _raw_es(kit: Kit, msg: bytes) -> bytes:
    return kit.key("ES256").sign(msg)


token_case("ecdsa-der-signature", _es(_der), BadSignature)
token_case("ecdsa-all-zero", _es(lambda k, m: b"\x00" * 64), BadSignature)
token_case("ecdsa-r-zero", _es(lambda k, m: b"\x00" * 32 + _raw_es(k, m)[32:]), BadSignature)
token_case("ecdsa-s-zero", _es(lambda k, m: _raw_es(k, m)[:32] + b"\x00" * 32), BadSignature)
token_case(
    "ecdsa-r-s-equal-order", _es(lambda k, m: P256_ORDER.to_bytes(32, "big") * 2), BadSignature
)
token_case("ecdsa-all-ones", _es(lambda k, m: b"\xff" * 64), BadSignature)
token_case("ecdsa-truncated-63", _es(lambda k, m: _raw_es(k, m)[:63]), BadSignature)
token_case("ecdsa-extended-65", _es(lambda k, m: _raw_es(k, m) + b"\x00"), BadSignature)
token_case(
    "ecdsa-zero-padded-66",
    _es(lambda k, m: b"\x00" + _raw_es(k, m)[:32] + b"\x00" + _raw_es(k, m)[32:]),
    BadSignature,
)
token_case("ecdsa-p521-length", _es(lambda k, m: b"\x01" * 132), BadSignature)
token_case("ecdsa-one-byte", _es(lambda k, m: b"\x01"), BadSignature)
token_case(
    "ecdsa-swapped-r-s", _es(lambda k, m: _raw_es(k, m)[32:] + _raw_es(k, m)[:32]), BadSignature
)
token_case(
    "eddsa-all-zero",
    lambda k: with_signature(k, k.header("EdDSA"), b"\x00" * 64),
    BadSignature,
)
token_case(
    "eddsa-short", lambda k: with_signature(k, k.header("EdDSA"), b"\x01" * 63), BadSignature
)
token_case("rsa-all-zero", lambda k: with_signature(k, k.header(), b"\x00" * 256), BadSignature)
token_case(
    "rsa-signature-is-modulus",
    lambda k: with_signature(
        k, k.header(), base64.urlsafe_b64decode(k.key("RS256").public_jwk()["n"] + "==")
    ),
    BadSignature,
)
token_case(
    "rsa-leading-zero-257",
    lambda k: segment(
        k.valid(), 2, b64(b"\x00" + base64.urlsafe_b64decode(k.valid().split(".")[2] + "=="))
    ),
    BadSignature,
)
token_case("rsa-one", lambda k: with_signature(k, k.header(), b"\x01"), BadSignature)

# base64url of the signature and the other segments ------------------------------------------

token_case("signature-padding-two", lambda k: k.valid() + "==", MalformedToken)
token_case("signature-padding-one", lambda k: k.valid() + "=", MalformedToken)
token_case("signature-standard-plus", lambda k: k.valid()[:-1] + "+", MalformedToken)
token_case(
    "signature-standard-slash",
    lambda k: segment(k.valid(), 2, "/" + k.valid().split(".")[2][1:]),
    MalformedToken,
)
token_case("signature-stray-tilde", lambda k: k.valid() + "~", MalformedToken)
token_case(
    "signature-flipped-trailing-bits",
    lambda k: segment(k.valid(), 2, bump_last_char(k.valid().split(".")[2])),
    MalformedToken,
)
token_case("signature-one-char-short", lambda k: k.valid()[:-1], MalformedToken)
token_case(
    "signature-three-bytes-short",
    lambda k: segment(
        k.valid(), 2, b64(base64.urlsafe_b64decode(k.valid().split(".")[2] + "==")[:-3])
    ),
    BadSignature,
)
token_case("signature-extra-quantum", lambda k: k.valid() + "AAAA", BadSignature)
token_case(
    "signature-from-another-token",
    lambda k: segment(k.valid(sub="admin"), 2, k.valid().split(".")[2]),
    BadSignature,
)
token_case(
    "payload-swapped-under-valid-signature",
    lambda k: segment(k.valid(), 1, b64(js(k.claims(sub="admin", scope="admin")))),
    BadSignature,
)


def _header_with_trailing_bits(kit: Kit) -> str:
    header = b'{"alg":"RS256","kid":"rs256-1"}'  # 31 bytes: a partial last quantum
    assert len(header) % 3
    return kit.sign(header, kit.claims())


token_case(
    "header-flipped-trailing-bits",
    lambda k: segment(
        _header_with_trailing_bits(k),
        0,
        bump_last_char(_header_with_trailing_bits(k).split(".")[0]),
    ),
    MalformedToken,
)


def _payload_with_trailing_bits(kit: Kit) -> str:
    claims = kit.claims()
    while len(js(claims)) % 3 == 0:
        claims["x"] = claims.get("x", "") + "x"
    token = kit.sign(kit.header(), claims)
    return segment(token, 1, bump_last_char(token.split(".")[1]))


token_case("payload-flipped-trailing-bits", _payload_with_trailing_bits, MalformedToken)

# Payloads that are not JSON objects (validly signed) ------------------------------------------

for _id, _payload in {
    "payload-array": b"[]",
    "payload-string": b'"' + CANARY.encode() + b'"',
    "payload-number": b"1",
    "payload-null": b"null",
    "payload-true": b"true",
    "payload-empty": b"",
    "payload-not-utf8": b'{"sub":"\xff\xfe"}',
    "payload-utf16": '{"sub":"x"}'.encode("utf-16"),
    "payload-trailing-garbage": b'{"sub":"x"} x',
    "payload-two-objects": b"{}{}",
    "payload-single-quotes": b"{'sub':'x'}",
    "payload-comment": b'{"sub":"x" /* CANARY-7f3a */}',
    "payload-deep-nesting": b'{"x":' + b"[" * 2000 + b"]" * 2000 + b"}",
}.items():
    token_case(_id, lambda k, p=_payload: k.sign(k.header(), p), MalformedToken)


def _with_bom(kit: Kit) -> str:
    return kit.sign(kit.header(), b"\xef\xbb\xbf" + js(kit.claims()))


token_case("payload-utf8-bom", _with_bom, MalformedToken)


def _raw_claims(text: str) -> Callable[[Kit], str]:
    """A payload built as text, so it can hold what ``json.dumps`` would never write."""

    def make(kit: Kit) -> str:
        now = int(time.time())
        body = text.format(
            iss=json.dumps(kit.issuer.issuer), aud=json.dumps(kit.issuer.audience), later=now + 300
        )
        return kit.sign(kit.header(), body.encode())

    return make


for _id, (_text, _refusal) in {
    "exp-nan": ('{{"iss":{iss},"aud":{aud},"exp":NaN}}', MalformedToken),
    "exp-infinity": ('{{"iss":{iss},"aud":{aud},"exp":Infinity}}', MalformedToken),
    "exp-minus-infinity": ('{{"iss":{iss},"aud":{aud},"exp":-Infinity}}', MalformedToken),
    "nbf-nan": ('{{"iss":{iss},"aud":{aud},"exp":{later},"nbf":NaN}}', MalformedToken),
    "exp-1e400": ('{{"iss":{iss},"aud":{aud},"exp":1e400}}', InvalidClaim),
    "exp-minus-1e400": ('{{"iss":{iss},"aud":{aud},"exp":-1e400}}', InvalidClaim),
    "exp-huge-integer": ('{{"iss":{iss},"aud":{aud},"exp":1' + "0" * 400 + "}}", InvalidClaim),
    "nbf-1e400": ('{{"iss":{iss},"aud":{aud},"exp":{later},"nbf":1e400}}', InvalidClaim),
    "iat-1e400": ('{{"iss":{iss},"aud":{aud},"exp":{later},"iat":1e400}}', InvalidClaim),
    "duplicate-sub": (
        '{{"iss":{iss},"aud":{aud},"exp":{later},"sub":"user","sub":"admin"}}',
        MalformedToken,
    ),
    "duplicate-iss": ('{{"iss":"https://evil.example","iss":{iss},"aud":{aud}}}', MalformedToken),
    "duplicate-scope-escaped-name": (
        '{{"iss":{iss},"aud":{aud},"exp":{later},"scope":"read","sc\\u006fpe":"admin"}}',
        MalformedToken,
    ),
    "duplicate-exp": ('{{"iss":{iss},"aud":{aud},"exp":1,"exp":{later}}}', MalformedToken),
}.items():
    token_case(_id, _raw_claims(_text), _refusal)
token_case(
    "duplicate-header-alg",
    lambda k: k.sign(b'{"alg":"none","alg":"RS256","kid":"rs256-1"}', k.claims()),
    MalformedToken,
)

# Claims of the wrong JSON type or value (validly signed) -------------------------------------

_FUTURE = 4_102_444_800  # 2100-01-01
for _id, (_changes, _refusal) in {
    "exp-numeric-string": ({"exp": str(_FUTURE)}, InvalidClaim),
    "exp-bool": ({"exp": True}, InvalidClaim),
    "exp-null": ({"exp": "__null__"}, InvalidClaim),
    "exp-list": ({"exp": [_FUTURE]}, InvalidClaim),
    "exp-object": ({"exp": {"$gt": 0}}, InvalidClaim),
    "exp-missing": ({"exp": None}, MissingClaim),
    "exp-past": ({"exp": 1_000_000_000}, ExpiredToken),
    "exp-zero": ({"exp": 0}, ExpiredToken),
    "exp-negative": ({"exp": -1}, ExpiredToken),
    "nbf-string": ({"nbf": "0"}, InvalidClaim),
    "nbf-future": ({"nbf": _FUTURE - 1000}, NotYetValid),
    "iat-string": ({"iat": "now"}, InvalidClaim),
    "iat-future": ({"iat": _FUTURE - 1000}, IssuedInFuture),
    "iss-list": ({"iss": ["__issuer__"]}, WrongIssuer),
    "iss-missing": ({"iss": None}, WrongIssuer),
    "iss-trailing-slash": ({"iss": "__issuer__/"}, WrongIssuer),
    "iss-upper-case": ({"iss": "__ISSUER__"}, WrongIssuer),
    "iss-number": ({"iss": 1}, WrongIssuer),
    "aud-missing": ({"aud": None}, WrongAudience),
    "aud-other": ({"aud": "https://evil.example/" + CANARY}, WrongAudience),
    "aud-prefix-lookalike": ({"aud": "__audience__.evil.example"}, WrongAudience),
    "aud-list-without-ours": ({"aud": ["https://evil.example"]}, WrongAudience),
    "aud-empty-list": ({"aud": []}, WrongAudience),
    "aud-number": ({"aud": 1}, InvalidClaim),
    "aud-object": ({"aud": {"__audience__": True}}, InvalidClaim),
    "aud-list-with-number": ({"aud": ["__audience__", 1]}, InvalidClaim),
    "sub-number": ({"sub": 1}, InvalidClaim),
    "sub-object": ({"sub": {"id": "admin"}}, InvalidClaim),
    "jti-number": ({"jti": 7}, InvalidClaim),
}.items():

    def _make_claims(kit: Kit, changes: dict[str, Any] = _changes) -> str:
        def fill(value: Any) -> Any:
            if value == "__null__":
                return None
            if isinstance(value, str):
                return (
                    value.replace("__issuer__", kit.issuer.issuer)
                    .replace("__ISSUER__", kit.issuer.issuer.upper())
                    .replace("__audience__", kit.issuer.audience)
                )
            if isinstance(value, list):
                return [fill(v) for v in value]
            if isinstance(value, dict):
                return {fill(k): fill(v) for k, v in value.items()}
            return value

        claims = kit.claims(**{k: v for k, v in changes.items() if v != "__null__"})
        for name, value in changes.items():
            if value == "__null__":
                claims[name] = None
            elif value is not None:
                claims[name] = fill(value)
        return kit.sign(kit.header(), claims)

    token_case(_id, _make_claims, _refusal)
token_case(
    "iss-of-the-attacker",
    lambda k: k.attacker.mint(kid=k.evil("RS256").kid, audience=k.issuer.audience),
    WrongIssuer,
)

# Size ----------------------------------------------------------------------------------------

token_case("token-8193-characters", lambda k: "a" * 8193, TokenTooLarge)
token_case(
    "token-100kb-claims",
    lambda k: k.sign(k.header(), k.claims(pad="x" * 100_000)),
    TokenTooLarge,
)
token_case(
    "token-1mb-junk",
    lambda k: b64(b"{" * 3) + "." + "A" * 1_000_000 + ".AAAA",
    TokenTooLarge,
)

# 403: valid tokens whose scope claims must not grant "admin" --------------------------------

for _id, _scope_claims in {
    "scope-missing": {},
    "scope-other": {"scope": "read write"},
    "scope-number": {"scope": 1},
    "scope-object": {"scope": {"admin": True}},
    "scope-list-of-junk": {"scope": [1, None, {"admin": True}, ["admin"]]},
    "scope-superstring": {"scope": "administrator"},
    "scope-upper-case": {"scope": "ADMIN"},
    "scope-comma-delimited": {"scope": "read,admin"},
    "scope-nbsp-delimited": {"scope": "read\u00a0admin"},
    "scope-tab-delimited": {"scope": "read\tadmin"},
    "scope-newline-delimited": {"scope": "read\nadmin"},
    "scope-in-unused-claim": {"scopes": "admin", "roles": ["admin"]},
    "scp-object": {"scp": {"admin": True}},
}.items():
    token_case(
        _id,
        lambda k, c=_scope_claims: k.sign(k.header(), k.claims(**c)),
        InsufficientScope,
        path="/admin",
    )


# -- the harness ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """One response from either adapter (header names lower-cased)."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    reached_app: bool

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k == name]
        assert len(values) <= 1, f"{name} sent {len(values)} times"
        return values[0] if values else None

    @property
    def text(self) -> str:
        return "\n".join(f"{k}: {v}" for k, v in self.headers) + "\n" + self.body.decode("latin-1")


_APP_REACHED = "x-app-reached"


async def _me(request: Request) -> JSONResponse:
    claims = request.scope[CLAIMS_KEY]
    return JSONResponse(
        {"sub": claims.get("sub"), "jti": claims.get("jti")}, headers={_APP_REACHED: "1"}
    )


@require_scopes("admin")
async def _admin(request: Request) -> JSONResponse:
    return JSONResponse({"admin": True}, headers={_APP_REACHED: "1"})


def asgi_app(verifier: TokenVerifier) -> JWTGuard:
    """A Starlette app with ``/me`` and ``/admin`` behind ``JWTGuard``."""
    app = Starlette(routes=[Route("/me", _me), Route("/admin", _admin)])
    return JWTGuard(app, verifier=verifier)


def _wsgi_inner(environ: dict[str, Any], start_response: Any) -> Any:
    request = WerkzeugRequest(environ)
    if request.path == "/admin":
        response = _wsgi_admin(request)
    else:
        claims = environ[CLAIMS_KEY]
        response = WerkzeugResponse(
            json.dumps({"sub": claims.get("sub"), "jti": claims.get("jti")}),
            content_type="application/json",
        )
    response.headers[_APP_REACHED] = "1"
    return response(environ, start_response)


@require_scopes("admin")
def _wsgi_admin(request: WerkzeugRequest) -> WerkzeugResponse:
    return WerkzeugResponse(json.dumps({"admin": True}), content_type="application/json")


def wsgi_app(verifier: TokenVerifier) -> JWTGuardWSGI:
    """A plain Werkzeug WSGI app with ``/me`` and ``/admin`` behind ``JWTGuardWSGI``."""
    return JWTGuardWSGI(_wsgi_inner, verifier=verifier)


class AsgiDriver:
    """Sends raw ASGI requests from sync code on one private event loop."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()

    def close(self) -> None:
        self.loop.close()

    def __call__(self, lines: Sequence[bytes], path: str = "/me") -> Answer:
        return self.loop.run_until_complete(call_asgi(self.app, lines, path))


async def call_asgi(app: Any, lines: Sequence[bytes], path: str = "/me") -> Answer:
    """One HTTP request straight into ``app``; every message it sends is checked."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), *((b"authorization", v) for v in lines)],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    inbox = [{"type": "http.request", "body": b"", "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return inbox.pop(0) if inbox else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    assert [m["type"] for m in sent][:1] == ["http.response.start"], sent
    assert all(m["type"] == "http.response.body" for m in sent[1:]), sent
    assert not sent[-1].get("more_body", False)
    headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in sent[0]["headers"]]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    reached = any(k == _APP_REACHED for k, _ in headers)
    return Answer(int(sent[0]["status"]), headers, body, reached)


def call_wsgi(app: Any, lines: Sequence[bytes], path: str = "/me") -> Answer:
    """One request through ``werkzeug.test.Client``; header lines joined as a server joins them."""
    overrides = {}
    if lines:
        overrides["HTTP_AUTHORIZATION"] = ",".join(v.decode("latin-1") for v in lines)
    response = Client(app).get(path, environ_overrides=overrides)
    headers = [(k.lower(), v) for k, v in response.headers.items()]
    reached = any(k == _APP_REACHED for k, _ in headers)
    return Answer(response.status_code, headers, response.get_data(), reached)


def core_outcome(verifier: TokenVerifier, lines: Sequence[bytes], path: str = "/me") -> Any:
    """What the framework-free core makes of a request: ``Claims`` or the ``JWTGuardError``.

    Any other exception propagates (and fails the caller).
    """
    try:
        token = bearer_token([v.decode("latin-1") for v in lines])
        claims = verifier.verify(token)
        if path == "/admin":
            check_scopes(claims, ["admin"])
    except JWTGuardError as exc:
        return exc
    return claims


async def acore_outcome(verifier: TokenVerifier, lines: Sequence[bytes], path: str = "/me") -> Any:
    try:
        token = bearer_token([v.decode("latin-1") for v in lines])
        claims = await verifier.averify(token)
        if path == "/admin":
            check_scopes(claims, ["admin"])
    except JWTGuardError as exc:
        return exc
    return claims


# -- what every refusal must look like -------------------------------------------------------

_PARAM = r'[a-z_]+="[\x20\x21\x23-\x5b\x5d-\x7e]*"'
CHALLENGE = re.compile(rf"Bearer {_PARAM}(, {_PARAM})*\Z")
"""RFC 6750 3: ``Bearer`` then quoted auth-params; no ``"`` or ``\\`` inside a value."""
_ERROR_CODES = {"invalid_request", "invalid_token", "insufficient_scope"}


def challenge_params(value: str) -> dict[str, str]:
    assert CHALLENGE.match(value), f"not an RFC 6750 challenge: {value!r}"
    return dict(re.findall(r'([a-z_]+)="([^"]*)"', value))


def fragments(lines: Sequence[bytes]) -> set[str]:
    """Pieces of the raw input long enough that seeing one in a response means an echo."""
    pieces: set[str] = set()
    for line in lines:
        text = line.decode("latin-1")
        for piece in re.split(r"[\s,\"'=.:;]+", text):
            if len(piece) >= 12:
                pieces.add(piece[:64])
        for seg in text.split("."):
            with contextlib.suppress(ValueError):
                decoded = base64.urlsafe_b64decode(seg.strip() + "==").decode("utf-8")
                pieces.update(m for m in re.findall(r"[^\"{}\[\],:]{12,}", decoded))
    return {p for p in pieces if not p.isspace()}


def _vocabulary() -> str:
    """Everything a refusal may say whatever the input: text of every fixed answer."""
    classes: list[type[JWTGuardError]] = [JWTGuardError]
    for cls in classes:
        classes.extend(cls.__subclasses__())
    texts = []
    for cls in classes:
        if cls.__module__ != "jwt_guard.errors":
            continue  # only the package's own refusals, whatever else happens to be imported
        if cls is InsufficientScope:
            exc: JWTGuardError = InsufficientScope(scopes=("admin",))
        elif cls is UseDPoPNonce:
            exc = UseDPoPNonce(nonce="fresh-nonce")
        else:
            exc = cls()
        rendered = render_error(exc)
        headers = [(k, v) for k, v in rendered.headers]
        headers += [("content-length", str(len(rendered.body))), ("content-type", "")]
        texts.append(Answer(rendered.status, headers, rendered.body, False).text)
    return "\n".join(texts)


VOCABULARY = _vocabulary()


def assert_no_echo(answer: Answer, lines: Sequence[bytes]) -> None:
    """No marker and no long-enough piece of the input in the answer, unless the piece is
    itself part of the fixed vocabulary of refusals (an input may spell ``content-length``)."""
    text = answer.text
    for marker in ECHO_MARKERS:
        assert marker not in text, f"response echoes {marker!r}"
    for piece in fragments(lines):
        assert piece not in text or piece in VOCABULARY, f"response echoes input {piece!r}"
    for name, value in answer.headers:
        assert all(" " <= ch <= "~" or ch == "\t" for ch in name + value), (name, value)


def assert_refusal(answer: Answer, refusal: type[JWTGuardError], lines: Sequence[bytes]) -> None:
    """The exact RFC 6750 answer for ``refusal``; the app never ran; nothing echoed."""
    assert answer.status == refusal.status, (answer.status, answer.body)
    assert not answer.reached_app or refusal is InsufficientScope
    assert answer.header("cache-control") == "no-store"
    assert (answer.header("content-type") or "").startswith("application/json")
    value = answer.header("www-authenticate")
    assert value is not None, "no WWW-Authenticate"
    params = challenge_params(value)
    assert params["realm"] == "api"
    assert params.get("error") == refusal.error
    assert refusal.error is None or refusal.error in _ERROR_CODES
    body = json.loads(answer.body)
    assert body == {
        "error": refusal.error or "unauthorized",
        "error_description": refusal.description,
    }
    if refusal.error is not None:
        assert params["error_description"] == refusal.description
    if refusal is InsufficientScope:
        assert params["scope"] == "admin"
        assert value == challenge(InsufficientScope(scopes=("admin",)))
    else:
        assert value == challenge(refusal())
    assert_no_echo(answer, lines)


def assert_4xx_refusal(answer: Answer, lines: Sequence[bytes]) -> None:
    """For fuzzing: some well-formed RFC 6750 refusal, whichever it is."""
    assert answer.status in (400, 401, 403), (answer.status, answer.body)
    assert not answer.reached_app or answer.status == 403
    value = answer.header("www-authenticate")
    assert value is not None
    params = challenge_params(value)
    assert params.get("error", "invalid_token") in _ERROR_CODES
    body = json.loads(answer.body)
    assert set(body) == {"error", "error_description"}
    assert_no_echo(answer, lines)


@dataclass
class Tally:
    """Outcome counts of a fuzz run."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, outcome: str) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())


# -- multi-tenant issuers (IssuerTemplate) ------------------------------------------------------
# An Entra-like provider on loopback: one key set, one ``iss`` per tenant
# (``{url}/{tid}/v2.0``, and ``{url}/sts/{tid}/`` for v1 tokens). The verifier trusts two of its
# tenants. Every case below is a token *signed by the provider's own key* (a tenant admin of a
# multi-tenant provider gets those): only the tenant rules stand between it and the API.

TENANT_A = "0a5e0b1d-2c3f-4a5b-8c6d-7e8f9a0b1c2d"
TENANT_B = "1b6f1c2e-3d40-4b6c-9d7e-8f9a0b1c2d3e"
TENANT_EVIL = "e7e7e7e7-0000-4000-8000-000000000bad"


@dataclass
class TenantKit:
    """``provider`` (the shared key set and the tenants' issuers) and an ``attacker`` issuer."""

    provider: LocalIssuer
    attacker: LocalIssuer
    audience: str = "api://tenants-test"

    def v2(self, tid: str) -> str:
        return f"{self.provider.url}/{tid}/v2.0"

    def v1(self, tid: str) -> str:
        return f"{self.provider.url}/sts/{tid}/"

    @property
    def templates(self) -> list[str]:
        return [self.v2("{tid}"), self.v1("{tid}")]

    def token(
        self, tid: Any = TENANT_A, iss: str | None = None, key: SigningKey | None = None
    ) -> str:
        """A token of the provider's key (or ``key``) naming tenant ``tid`` (``None``: no tid
        claim) and ``iss`` (default: the v2 issuer filled with ``tid``)."""
        return self.provider.mint(
            {"tid": tid},
            issuer=self.v2(str(tid)) if iss is None else iss,
            audience=self.audience,
            key=key,
        )


@contextlib.contextmanager
def make_tenant_kit() -> Iterator[TenantKit]:
    with (
        LocalIssuer(keys=_named_keys("tenant-provider", "RS256")) as provider,
        LocalIssuer(keys=_named_keys("tenant-attacker", "RS256")) as attacker,
    ):
        yield TenantKit(provider, attacker)


TenantLines = Callable[[TenantKit], str]


@dataclass(frozen=True)
class TenantHostile:
    """A token an ``IssuerTemplate`` must refuse, with the refusal."""

    make: TenantLines
    refusal: type[JWTGuardError] = WrongIssuer
    fetches: bool = False  # whether the refusal may come after the key set was asked for

    def lines(self, kit: TenantKit) -> list[bytes]:
        return [b"Bearer " + self.make(kit).encode("latin-1")]


TENANT_CORPUS: list[Any] = []


def tenant_case(
    case_id: str, make: TenantLines, refusal: type[JWTGuardError] = WrongIssuer
) -> None:
    fetches = refusal is not WrongIssuer
    TENANT_CORPUS.append(pytest.param(TenantHostile(make, refusal, fetches), id=case_id))


# A tid that would fill the template into another host, port, user, path, query or encoding;
# the token's iss is the template filled with exactly that value, so only the value rules
# refuse it.
for _id, _tid in {
    "tid-slash": "x/y",
    "tid-slash-only": "/",
    "tid-dot-dot": "..",
    "tid-dot-dot-slash": "../admin",
    "tid-dot": ".",
    "tid-percent-2f": "a%2Fb",
    "tid-percent-2e": "%2e%2e",
    "tid-at": "user@evil.example",
    "tid-colon-port": "evil.example:8443",
    "tid-query": "a?x=1",
    "tid-fragment": "a#b",
    "tid-backslash": "a\\b",
    "tid-unicode-fullwidth": "\uff10a5e0b1d-2c3f-4a5b-8c6d-7e8f9a0b1c2d",
    "tid-unicode-slash": "a\u2215b",
    "tid-empty": "",
    "tid-space": "a b",
    "tid-newline": f"{TENANT_A}\nCANARY-7f3a",
    "tid-nul": f"{TENANT_A}\x00",
    "tid-very-long": "a" * 1000,
    "tid-upper-case-guid": TENANT_A.upper(),
    "tid-braces": "{tid}",
    "tid-canary": "CANARY-7f3a",
}.items():
    tenant_case(_id, lambda k, t=_tid: k.token(t))

# The claim and iss disagree, or one of them is not what a tenant's token holds.
tenant_case("iss-and-tid-disagree", lambda k: k.token(TENANT_A, iss=k.v2(TENANT_B)))
tenant_case("iss-of-evil-tid-of-allowed", lambda k: k.token(TENANT_A, iss=k.v2(TENANT_EVIL)))
tenant_case("tid-missing", lambda k: k.token(None, iss=k.v2(TENANT_A)))
tenant_case("tid-number", lambda k: k.token(12345, iss=k.v2("12345")))
tenant_case("tid-list", lambda k: k.token([TENANT_A], iss=k.v2(TENANT_A)))
tenant_case("tid-object", lambda k: k.token({"id": TENANT_A}, iss=k.v2(TENANT_A)))
tenant_case("tenant-not-allowed", lambda k: k.token(TENANT_EVIL))
tenant_case("iss-template-text-itself", lambda k: k.token("{tid}", iss=k.v2("{tid}")))
tenant_case(
    "iss-another-host", lambda k: k.token(TENANT_A, iss=f"http://evil.example/{TENANT_A}/v2.0")
)
tenant_case(
    "iss-host-prefix-trick",
    lambda k: k.token(TENANT_A, iss=k.v2(TENANT_A).replace("127.0.0.1", "127.0.0.1.evil.example")),
)
tenant_case("iss-path-extended", lambda k: k.token(TENANT_A, iss=k.v2(TENANT_A) + "/extra"))
tenant_case("iss-trailing-slash", lambda k: k.token(TENANT_A, iss=k.v2(TENANT_A) + "/"))
tenant_case("iss-v1-with-evil-tid", lambda k: k.token(TENANT_EVIL, iss=k.v1(TENANT_EVIL)))
tenant_case("iss-v1-tid-disagree", lambda k: k.token(TENANT_B, iss=k.v1(TENANT_A)))
tenant_case(
    "iss-not-a-string",
    lambda k: k.provider.mint({"tid": TENANT_A, "iss": [k.v2(TENANT_A)]}, audience=k.audience),
)
# An allowed tenant, but a key the shared source does not hold: the usual key rules refuse.
tenant_case(
    "allowed-tenant-attacker-key-same-kid",
    lambda k: k.token(TENANT_A, key=k.attacker.key("RS256")),
    BadSignature,
)
tenant_case(
    "allowed-tenant-unknown-kid",
    lambda k: k.provider.sign_raw(
        {"alg": "RS256", "typ": "JWT", "kid": "rs256-evil"},
        {
            "iss": k.v2(TENANT_A),
            "tid": TENANT_A,
            "aud": k.audience,
            "sub": "mallory",
            "iat": int(time.time()),
            "exp": int(time.time()) + 300,
        },
        key=k.attacker.key("RS256"),
    ),
    UnknownKey,
)
