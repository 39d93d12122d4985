"""DPoP proofs at the resource server (RFC 9449): every check of section 4.3, framework-free.

:class:`DPoPVerifier` takes the values of the request's ``DPoP`` header, its method, its public
URL (built from configuration by :func:`request_url`, never from ``Host``), the access token and
the token's ``cnf.jkt``, and returns a :class:`DPoPProof` or raises:

1. exactly one ``DPoP`` header, holding one compact JWS, parsed as strictly as an access token
   (size, three segments, canonical base64url, JSON objects without duplicate names);
2. ``typ`` is ``dpop+jwt`` exactly; ``alg`` is an asymmetric algorithm from the allowlist (never
   ``none``, never HMAC); ``crit``/``b64``/``kid`` follow the token's header rules;
3. the key is the embedded ``jwk`` (``jku``, ``x5u`` and ``x5c`` are refused): a public key only
   (a private member refuses it), bound to ``alg`` and through the same key gate as any key
   (:func:`jwt_guard.keys.jwk.build_key`: RSA size and exponent, EC point on the curve,
   Ed25519/Ed448 canonical and not of small order);
4. the signature verifies with that key;
5. ``jti`` (a string of at most 256 characters), ``htm``, ``htu`` and ``iat`` are present and
   typed; ``htm`` equals the method exactly (methods are case-sensitive, RFC 9110 9.1);
   ``htu`` equals the URL without query and fragment after RFC 3986 normalisation;
6. with a nonce issuer, ``nonce`` is a current server nonce (else ``use_dpop_nonce`` with a
   fresh one);
7. ``iat`` is within ``iat_window`` plus ``leeway`` of the clock, either way;
8. with an access token, ``ath`` is base64url(SHA-256(token)), and the token's ``cnf.jkt`` equals
   the RFC 7638 thumbprint of the proof's key (else ``invalid_token``);
9. the ``jti`` is new for this key: the replay store remembers SHA-256(jkt, jti) for as long as
   the proof could be accepted (``2 * (iat_window + leeway)``).

Refusals are :mod:`jwt_guard.errors` classes: ``invalid_dpop_proof`` (401),
``invalid_token`` for a key-binding mismatch, ``use_dpop_nonce``, and ``StoreUnavailable`` (503)
when the replay store cannot answer. Nothing of a proof is ever cached except what its header
alone decides (the key built from ``jwk``): every request needs a fresh proof.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from .._codec import b64url_decode, b64url_encode, loads_object
from .._logsafe import header_safe, quoted, safe
from .._options import duration, positive_int
from ..core.jws import DEFAULT_MAX_TOKEN_SIZE, allowed_algorithms, check_header, parse
from ..errors import (
    ConfigurationError,
    DPoPBindingMismatch,
    DPoPProofExpired,
    DPoPProofMismatch,
    DPoPProofReplayed,
    InsufficientScope,
    InvalidDPoPProof,
    JWTGuardError,
    StoreUnavailable,
    UseDPoPNonce,
)
from ..keys.algorithms import ALGORITHMS
from ..keys.jwk import KeyRejected, build_key
from ..stores.base import ReplayStore
from ..stores.memory import MemoryReplayStore
from ._url import normalize_url, public_base_url, request_url, strip_query
from .nonce import DPoPNonces

__all__ = [
    "DEFAULT_DPOP_ALGORITHMS",
    "DPoPProof",
    "DPoPVerifier",
    "access_token_hash",
    "confirmation_jkt",
    "dpop_challenge",
    "jwk_thumbprint",
    "normalize_url",
    "public_base_url",
    "request_url",
]

DEFAULT_DPOP_ALGORITHMS: tuple[str, ...] = (
    "ES256",
    "EdDSA",
    "Ed25519",
    "ES384",
    "ES512",
    "PS256",
    "PS384",
    "PS512",
    "RS256",
    "RS384",
    "RS512",
    "ES256K",
    "Ed448",
)
"""Every asymmetric algorithm jwt_guard verifies, in the order the ``algs`` challenge lists them."""
MAX_JTI_LENGTH = 256
"""Longest ``jti`` accepted (RFC 9449 asks for 96 random bits or a UUID: 16 to 36 characters)."""
TYP = "dpop+jwt"

_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_KEY_URL_MEMBERS = ("jku", "x5u", "x5c")
_THUMB_MEMBERS = {
    "RSA": ("e", "kty", "n"),
    "EC": ("crv", "kty", "x", "y"),
    "OKP": ("crv", "kty", "x"),
    "oct": ("k", "kty"),
}
_JKT = re.compile(r"[A-Za-z0-9_-]{43}\Z").match
_HEADER_CACHE_SIZE = 1024
_isfinite = math.isfinite


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """The RFC 7638 SHA-256 thumbprint of a JWK, base64url (43 characters): DPoP's ``jkt``.

    Only the required members count (``e, kty, n`` / ``crv, kty, x, y`` / ``crv, kty, x`` /
    ``k, kty``), as JSON in that order without whitespace. Raises ``ValueError`` for an
    unknown ``kty`` or a missing or non-string member.
    """
    members = _THUMB_MEMBERS.get(jwk.get("kty"))  # type: ignore[arg-type]
    if members is None:
        raise ValueError("JWK has no known 'kty'")
    values = {m: jwk.get(m) for m in members}
    if not all(isinstance(v, str) for v in values.values()):
        raise ValueError("JWK lacks a member its thumbprint needs")
    canonical = json.dumps(values, separators=(",", ":"), sort_keys=True)
    return b64url_encode(hashlib.sha256(canonical.encode("utf-8")).digest())


def access_token_hash(access_token: str) -> str:
    """DPoP's ``ath``: base64url(SHA-256(the access token's ASCII bytes))."""
    return b64url_encode(hashlib.sha256(access_token.encode("utf-8", "surrogatepass")).digest())


def confirmation_jkt(claims: Mapping[str, Any]) -> str | None:
    """The ``cnf.jkt`` of a token's claims (RFC 9449 6.1); ``None`` when it has no ``jkt``.

    A ``cnf`` that is not an object, or a ``jkt`` that is not a 43-character base64url string,
    raises ``DPoPBindingMismatch`` (``invalid_token``): a malformed binding never counts as none.
    """
    cnf = claims.get("cnf")
    if cnf is None:
        return None
    if not isinstance(cnf, Mapping):
        raise DPoPBindingMismatch("the token's 'cnf' claim is not an object")
    jkt = cnf.get("jkt")
    if jkt is None:
        return None
    if not isinstance(jkt, str) or not _JKT(jkt):
        raise DPoPBindingMismatch("the token's 'cnf.jkt' is not a SHA-256 JWK thumbprint")
    return jkt


@dataclass(frozen=True)
class DPoPProof:
    """A verified DPoP proof.

    ``jkt`` is the RFC 7638 thumbprint of ``jwk`` (the public key, read-only), ``alg`` its
    algorithm, ``jti``/``iat``/``htm``/``htu`` the claims as sent, ``nonce`` the server nonce it
    carried (``None`` without one).
    """

    jkt: str
    jwk: Mapping[str, Any]
    alg: str
    jti: str
    iat: float
    htm: str
    htu: str
    nonce: str | None = None


@dataclass(frozen=True)
class _ProofKey:
    """What a proof's header alone decides, kept per distinct header segment."""

    alg: str
    verifier: Any  # the python-jose Key that verifies alg
    jkt: str
    jwk: Mapping[str, Any]


# -- the WWW-Authenticate challenge ---------------------------------------------------------


def dpop_challenge(
    exc: JWTGuardError | None,
    algs: Iterable[str],
    realm: str | None = "api",
    *,
    resource_metadata: str | None = None,
) -> str:
    """The ``WWW-Authenticate: DPoP ...`` value (RFC 9449 7.1) for ``exc`` (``None``: a bare one).

    ``DPoP realm="api", error="invalid_dpop_proof", error_description="...", algs="ES256 ..."``:
    the fixed description of the error class, never detail; every value quoted and escaped.
    A 403 lists the missing scopes like the Bearer challenge. ``resource_metadata``: the URL of
    the protected-resource metadata (RFC 9728 5.1, a parameter of every scheme's challenge).
    """
    parts = ["DPoP"] if realm is None else [f"DPoP realm={quoted(header_safe(realm))}"]
    params: list[str] = []
    if exc is not None and exc.error is not None:
        params.append(f"error={quoted(exc.error)}")
        params.append(f"error_description={quoted(exc.description)}")
        if isinstance(exc, InsufficientScope) and exc.scopes:
            params.append(f"scope={quoted(header_safe(' '.join(exc.scopes)))}")
    params.append(f"algs={quoted(header_safe(' '.join(algs)))}")
    if resource_metadata is not None:
        params.append(f"resource_metadata={quoted(header_safe(resource_metadata))}")
    if realm is None:
        return "DPoP " + ", ".join(params)
    return ", ".join([*parts, *params])


# -- the verifier ----------------------------------------------------------------------------


def _one_value(proof: str | bytes | Sequence[str]) -> str:
    values: Sequence[Any] = (proof,) if isinstance(proof, (str, bytes)) else proof
    if len(values) != 1:
        raise InvalidDPoPProof(
            "the request has no DPoP header"
            if not values
            else "the request has several DPoP headers"
        )
    value = values[0]
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not isinstance(value, str):
        raise InvalidDPoPProof(f"the DPoP header value is a {type(value).__name__}, not text")
    value = value.strip(" \t")
    if not value:
        raise InvalidDPoPProof("the DPoP header is empty")
    if "," in value:  # a server joins repeated header fields with ","; a JWS never holds one
        raise InvalidDPoPProof("the request has several DPoP header values")
    return value


class DPoPVerifier:
    """Checks DPoP proofs (RFC 9449 4.3) for a resource server; see the module docstring.

    Parameters:
        algorithms: the proof algorithms accepted (default :data:`DEFAULT_DPOP_ALGORITHMS`,
            every asymmetric algorithm jwt_guard supports). HMAC and ``none`` are refused here
            with a ``ConfigurationError``: a proof is signed with the client's private key.
        iat_window: how far a proof's ``iat`` may lie from the clock, either way (default 60 s;
            seconds or a ``timedelta``).
        leeway: clock skew tolerated on top of ``iat_window`` (default 5 s).
        max_proof_size: the longest proof accepted, in characters (default 8192, the token's).
        min_rsa_bits: the smallest RSA key accepted in a proof's ``jwk`` (default 2048).
        replay_store: where each proof's ``jti`` is remembered (a
            :class:`~jwt_guard.stores.base.ReplayStore`; default a fresh
            :class:`~jwt_guard.stores.memory.MemoryReplayStore`, which protects one process
            only: with several workers use a shared one,
            :class:`~jwt_guard.stores.redis.RedisReplayStore`).
        nonces: a :class:`~jwt_guard.binding.nonce.DPoPNonces` to require server nonces
            (RFC 9449 section 9); ``None`` (default) requires none.
        clock: the ``time.time``-like wall clock ``iat`` is compared with.

    Example::

        dpop = DPoPVerifier()
        base = public_base_url("https://api.example.com")        # once, from configuration
        proof = dpop.verify(
            request.headers.getlist("dpop"),
            method=request.method,
            url=request_url(base, request.scope["raw_path"]),
            access_token=token,
            expected_jkt=confirmation_jkt(claims),
        )
        proof.jkt, proof.jti
    """

    def __init__(
        self,
        *,
        algorithms: Iterable[str] | None = None,
        iat_window: float | datetime.timedelta = 60,
        leeway: float | datetime.timedelta = 5,
        max_proof_size: int = DEFAULT_MAX_TOKEN_SIZE,
        min_rsa_bits: int = 2048,
        replay_store: ReplayStore | None = None,
        nonces: DPoPNonces | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        owner = "DPoPVerifier"
        names = DEFAULT_DPOP_ALGORITHMS if algorithms is None else _names(algorithms)
        allowed = allowed_algorithms(names)
        symmetric = sorted(a for a in allowed if ALGORITHMS[a].kty == "oct")
        if symmetric:
            raise ConfigurationError(
                f"{owner}(algorithms=...): {symmetric} are HMAC; a DPoP proof is signed with the "
                "client's private key, so only asymmetric algorithms can verify it"
            )
        self.algorithms: tuple[str, ...] = tuple(dict.fromkeys(names))
        self._allowed = allowed
        self.iat_window = duration(owner, "iat_window", iat_window, allow_zero=False)
        self.leeway = duration(owner, "leeway", leeway)
        self.max_proof_size = positive_int(owner, "max_proof_size", max_proof_size, minimum=256)
        self.min_rsa_bits = positive_int(owner, "min_rsa_bits", min_rsa_bits, minimum=2048)
        if replay_store is None:
            replay_store = MemoryReplayStore()
        elif not (
            callable(getattr(replay_store, "first_use", None))
            and callable(getattr(replay_store, "afirst_use", None))
        ):
            raise ConfigurationError(
                f"{owner}(replay_store=...): needs first_use(key, ttl) and afirst_use(key, ttl), "
                f"not {type(replay_store).__name__!r}"
            )
        self.replay_store = replay_store
        if nonces is not None and not isinstance(nonces, DPoPNonces):
            raise ConfigurationError(
                f"{owner}(nonces=...): must be a DPoPNonces, not {type(nonces).__name__!r}"
            )
        self.nonces = nonces
        if not callable(clock):
            raise ConfigurationError(f"{owner}(clock=...): must be a time.time-like callable")
        self.clock = clock
        self.replay_ttl = 2 * (self.iat_window + self.leeway)
        self._keys: dict[str, _ProofKey] = {}
        self._keys_lock = threading.Lock()

    def challenge(self, exc: JWTGuardError | None = None, realm: str | None = "api") -> str:
        """The ``WWW-Authenticate: DPoP`` value for ``exc``, listing this verifier's ``algs``."""
        return dpop_challenge(exc, self.algorithms, realm)

    def verify(
        self,
        proof: str | bytes | Sequence[str],
        *,
        method: str,
        url: str | Sequence[str],
        access_token: str | None = None,
        expected_jkt: str | None = None,
    ) -> DPoPProof:
        """Check one request's proof; return it verified or raise (module docstring).

        ``proof`` is the list of the request's ``DPoP`` header values (a single string counts as
        one). ``url`` is the request's public URL from :func:`request_url` (its query is
        ignored), or a list of them when the API is reachable under several public URLs: the
        proof's ``htu`` must be one of them. ``access_token`` is the token of
        ``Authorization: DPoP <token>``, and ``expected_jkt`` that token's ``cnf.jkt``
        (:func:`confirmation_jkt`): give both at a resource server.
        """
        checked, replay_key = self._check(proof, method, url, access_token, expected_jkt)
        try:
            new = self.replay_store.first_use(replay_key, self.replay_ttl)
        except JWTGuardError:
            raise
        except Exception as exc:
            raise StoreUnavailable(f"replay store failed: {safe(exc)}") from exc
        if new is not True:
            raise DPoPProofReplayed(f"DPoP proof jti {safe(checked.jti, 60)!r} was used before")
        return checked

    async def averify(
        self,
        proof: str | bytes | Sequence[str],
        *,
        method: str,
        url: str | Sequence[str],
        access_token: str | None = None,
        expected_jkt: str | None = None,
    ) -> DPoPProof:
        """:meth:`verify` for async callers: the replay store is asked with ``afirst_use``."""
        checked, replay_key = self._check(proof, method, url, access_token, expected_jkt)
        try:
            new = await self.replay_store.afirst_use(replay_key, self.replay_ttl)
        except JWTGuardError:
            raise
        except Exception as exc:
            raise StoreUnavailable(f"replay store failed: {safe(exc)}") from exc
        if new is not True:
            raise DPoPProofReplayed(f"DPoP proof jti {safe(checked.jti, 60)!r} was used before")
        return checked

    # -- the checks ----------------------------------------------------------------------------

    def _check(
        self,
        proof: str | bytes | Sequence[str],
        method: str,
        url: str | Sequence[str],
        access_token: str | None,
        expected_jkt: str | None,
    ) -> tuple[DPoPProof, str]:
        token = _one_value(proof)
        key, signing_input, payload, signature = self._split(token)
        if not key.verifier.verify(signing_input, signature):
            raise InvalidDPoPProof("DPoP proof signature does not verify with its jwk")
        try:
            claims = loads_object(payload)
        except ValueError as exc:
            raise InvalidDPoPProof(f"DPoP proof payload is not a JSON object: {exc}") from None

        jti, htm, htu = claims.get("jti"), claims.get("htm"), claims.get("htu")
        iat: Any = claims.get("iat")
        if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_LENGTH:
            raise InvalidDPoPProof(
                f"DPoP proof 'jti' is missing or not a string of 1 to {MAX_JTI_LENGTH} characters"
            )
        if not isinstance(htm, str):
            raise InvalidDPoPProof("DPoP proof 'htm' is missing or not a string")
        if not isinstance(htu, str):
            raise InvalidDPoPProof("DPoP proof 'htu' is missing or not a string")
        if not (type(iat) is int or (type(iat) is float and _isfinite(iat))):
            raise InvalidDPoPProof("DPoP proof 'iat' is missing or not a finite number")
        if htm != method:
            raise DPoPProofMismatch(
                f"DPoP proof htm {safe(htm, 20)!r} is not the request method {safe(method, 20)!r}"
            )
        if not _htu_matches(htu, url):
            shown = url if isinstance(url, str) else " or ".join(url)
            raise DPoPProofMismatch(
                f"DPoP proof htu {safe(htu, 200)!r} is not the request URL {safe(shown, 400)!r}"
            )
        nonce = claims.get("nonce")
        if self.nonces is not None and (not isinstance(nonce, str) or not self.nonces.check(nonce)):
            raise UseDPoPNonce(
                "DPoP proof has no nonce" if nonce is None else "DPoP proof nonce is not current",
                nonce=self.nonces.current(),
            )
        now = self.clock()
        span = self.iat_window + self.leeway
        if not now - span <= iat <= now + span:  # int against float: exact, never overflows
            shown = f"{iat - now:+.0f} s" if abs(iat) < 1e15 else "far"
            raise DPoPProofExpired(f"DPoP proof iat is {shown} from now (accepted: +/-{span:g} s)")
        if access_token is not None:
            ath = claims.get("ath")
            if not isinstance(ath, str):
                raise InvalidDPoPProof("DPoP proof has no string 'ath' though an access token came")
            expected = access_token_hash(access_token).encode("ascii")
            if not hmac.compare_digest(ath.encode("utf-8", "surrogatepass"), expected):
                raise DPoPProofMismatch("DPoP proof 'ath' is not the hash of the access token")
        if expected_jkt is not None and not _same_jkt(expected_jkt, key.jkt):
            raise DPoPBindingMismatch(
                f"the token is bound to another key than the proof's ({key.jkt[:16]})"
            )
        replay_key = "dpop:" + b64url_encode(
            hashlib.sha256(f"{key.jkt}.{jti}".encode("utf-8", "surrogatepass")).digest()
        )
        checked = DPoPProof(
            key.jkt,
            key.jwk,
            key.alg,
            jti,
            float(iat),
            htm,
            htu,
            nonce if isinstance(nonce, str) else None,
        )
        return checked, replay_key

    def _split(self, token: str) -> tuple[_ProofKey, bytes, bytes, bytes]:
        """The proof's key, signing input, payload and signature, parsed as strictly as a token.

        A header segment seen before (a client's next proof) skips its decoding and the key
        gate: the same segment always decodes to the same header and key. Everything else, and
        every first sight of a header, goes through :func:`jwt_guard.core.jws.parse`.
        """
        header_segment, _, rest = token.partition(".")
        key = self._keys.get(header_segment)
        if key is not None and len(token) <= self.max_proof_size:
            payload_segment, dot, signature_segment = rest.partition(".")
            if dot and signature_segment and "." not in signature_segment:
                try:
                    payload = b64url_decode(payload_segment)
                    signature = b64url_decode(signature_segment)
                except ValueError as exc:
                    raise InvalidDPoPProof(f"DPoP proof segment is malformed: {exc}") from None
                signing_input = token[: len(header_segment) + 1 + len(payload_segment)]
                return key, signing_input.encode("ascii"), payload, signature
        try:  # the full parse, which also names what is wrong with a malformed proof
            parsed = parse(token, self.max_proof_size)
        except JWTGuardError as exc:
            raise InvalidDPoPProof(f"DPoP proof is not a compact JWS: {exc.detail}") from None
        if key is None:
            key = self._proof_key(parsed.header)
            self._remember_key(header_segment, key)
        return key, parsed.signing_input, parsed.payload, parsed.signature

    def _proof_key(self, header: Mapping[str, Any]) -> _ProofKey:
        """The header rules and the key gate: everything the header alone decides."""
        typ = header.get("typ")
        if typ != TYP:
            shown = "missing" if typ is None else repr(safe(typ, 40))
            raise InvalidDPoPProof(f"DPoP proof 'typ' is {shown}, expected '{TYP}'")
        try:
            alg, _kid = check_header(header, self._allowed)
        except JWTGuardError as exc:
            raise InvalidDPoPProof(f"DPoP proof header: {exc.detail}") from None
        for name in _KEY_URL_MEMBERS:
            if name in header:
                raise InvalidDPoPProof(
                    f"DPoP proof header has '{name}': the key must be the embedded 'jwk'"
                )
        jwk = header.get("jwk")
        if not isinstance(jwk, dict):
            raise InvalidDPoPProof("DPoP proof header has no 'jwk' object")
        private = sorted(_PRIVATE_MEMBERS & jwk.keys())
        if private:
            raise InvalidDPoPProof(f"DPoP proof 'jwk' holds private key members {private}")
        try:
            built = build_key(jwk, allowed=(alg,), allow_oct=False, min_rsa_bits=self.min_rsa_bits)
            jkt = jwk_thumbprint(jwk)
        except (KeyRejected, ValueError) as exc:
            raise InvalidDPoPProof(f"DPoP proof 'jwk' is not acceptable: {safe(exc)}") from None
        return _ProofKey(alg, built.verifiers[alg], jkt, MappingProxyType(dict(jwk)))

    def _remember_key(self, header_segment: str, key: _ProofKey) -> None:
        with self._keys_lock:
            keys = self._keys
            while len(keys) >= _HEADER_CACHE_SIZE:
                del keys[next(iter(keys))]  # the oldest first
            keys[header_segment] = key


def _same_jkt(expected: object, jkt: str) -> bool:
    if not isinstance(expected, str):
        return False
    return hmac.compare_digest(expected.encode("utf-8", "surrogatepass"), jkt.encode("ascii"))


def _htu_matches(htu: str, url: str | Sequence[str]) -> bool:
    """Whether ``htu`` is ``url`` (or one of several), exactly or after normalisation."""
    urls = (url,) if isinstance(url, str) else url
    for candidate in urls:
        if htu == candidate or strip_query(htu) == strip_query(candidate):
            return True
    return any(_same_url(htu, candidate) for candidate in urls)


def _same_url(htu: str, url: str) -> bool:
    try:
        return normalize_url(htu) == normalize_url(url)
    except ValueError:
        return False


def _names(algorithms: Iterable[str]) -> tuple[str, ...]:
    if isinstance(algorithms, str):
        return (algorithms,)
    if not isinstance(algorithms, Iterable):
        raise ConfigurationError(
            f"DPoPVerifier(algorithms=...): give a list of algorithm names, not "
            f"{type(algorithms).__name__!r}"
        )
    names = tuple(algorithms)
    if not all(isinstance(n, str) for n in names):
        raise ConfigurationError("DPoPVerifier(algorithms=...): every name must be a string")
    return names
