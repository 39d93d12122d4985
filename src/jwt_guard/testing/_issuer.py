"""``LocalIssuer``: keys, token minting and a JWKS + discovery server on 127.0.0.1."""

from __future__ import annotations

import datetime
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from jwt_guard._options import duration, positive_int
from jwt_guard.binding.mtls import certificate_thumbprint, load_certificate
from jwt_guard.errors import ConfigurationError

from ._faults import JWKSFault, fault_named
from ._keys import SigningKey, compact_jws, generate_key
from ._server import _LoopbackServer
from .dpop import DPoPKey

__all__ = ["IssuerSnapshot", "LocalIssuer"]


class _Default:
    def __repr__(self) -> str:
        return "<default>"


_DEFAULT: Any = _Default()
"""Sentinel for "use the issuer's default" where ``None`` means "leave the member out"."""


@dataclass(frozen=True)
class IssuerSnapshot:
    """What :meth:`LocalIssuer.snapshot` captured, for :meth:`LocalIssuer.restore`."""

    keys: tuple[SigningKey, ...]
    current: tuple[tuple[str, SigningKey], ...]
    audience: str
    cache_max_age: int | None
    include_secret_keys: bool


def _numeric(value: float) -> float:
    return int(value) if float(value).is_integer() else value


def _confirmation(
    dpop_key: DPoPKey | str | None, certificate: x509.Certificate | str | bytes | None
) -> dict[str, str]:
    """The ``cnf`` claim binding a token to a DPoP key and/or a client certificate."""
    cnf: dict[str, str] = {}
    if dpop_key is not None:
        cnf["jkt"] = dpop_key if isinstance(dpop_key, str) else dpop_key.jkt
    if certificate is not None:
        der = (
            certificate.public_bytes(Encoding.DER)
            if isinstance(certificate, x509.Certificate)
            else load_certificate(certificate)
        )
        cnf["x5t#S256"] = certificate_thumbprint(der)
    return cnf


class LocalIssuer:
    """A real token issuer for tests and demos: signing keys, minting, JWKS and discovery.

    It publishes its keys at ``jwks_url`` and an OpenID discovery document at
    ``discovery_url`` from an HTTP server bound to 127.0.0.1 only, counts the requests it serves,
    and can misbehave on demand (:meth:`set_fault` with a :class:`JWKSFault` or its name).

    Parameters:
        algorithms: one signing key is generated per name; the first is the default for
            :meth:`mint`. Default ``("RS256",)``. Every generated key is named by its RFC 7638
            thumbprint, so a new key always has a new ``kid``.
        keys: publish these :class:`SigningKey` objects instead of generating any (the first
            key of each algorithm is its current key); not together with ``algorithms``.
        audience: the ``aud`` minted by default.
        path: appended to the server URL to form ``issuer`` (e.g. ``"/realms/demo"``).
        port: the port to listen on at 127.0.0.1 (default 0: any free port, kept across
            :meth:`stop` and :meth:`start`).
        cache_max_age: ``Cache-Control: public, max-age=<n>`` on 200 responses; ``None`` omits
            the header. Settable at any time.
        clock: the time source for ``iat`` (and so ``exp``).
        include_secret_keys: publish HS* secrets (``kty: oct``) in the JWKS; off by default.

    Example::

        with LocalIssuer(algorithms=("RS256", "ES256")) as issuer:
            token = issuer.mint({"role": "admin"}, scopes=["read"])
            requests.get(issuer.jwks_url, timeout=1).json()    # {"keys": [...]}
            old = issuer.key("RS256")
            issuer.rotate("RS256")                 # a new kid; old.kid leaves the JWKS
            issuer.set_fault("down")               # connection refused until set_fault(None)
    """

    def __init__(
        self,
        *,
        algorithms: Sequence[str] | None = None,
        keys: Sequence[SigningKey] | None = None,
        audience: str = "https://api.example.test",
        path: str = "",
        port: int = 0,
        cache_max_age: int | None = 300,
        clock: Callable[[], float] = time.time,
        include_secret_keys: bool = False,
    ) -> None:
        if keys is not None and algorithms is not None:
            raise ConfigurationError("LocalIssuer: give algorithms= or keys=, not both")
        if keys is None and (isinstance(algorithms, str) or algorithms == ()):
            raise ConfigurationError(
                'LocalIssuer(algorithms=...): must be a non-empty sequence, e.g. ("RS256",)'
            )
        if keys is not None and (
            isinstance(keys, (str, bytes))
            or not keys
            or not all(isinstance(k, SigningKey) for k in keys)
        ):
            raise ConfigurationError(
                "LocalIssuer(keys=...): must be a non-empty sequence of SigningKey"
            )
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigurationError(f"LocalIssuer(port=...): must be 0..65535, got {port!r}")
        self.audience = audience
        self.path = "/" + path.strip("/") if path.strip("/") else ""
        self.cache_max_age = cache_max_age
        self.include_secret_keys = include_secret_keys
        self._clock = clock
        self._lock = threading.RLock()
        self._keys: list[SigningKey] = []
        self._current: dict[str, SigningKey] = {}
        if keys is not None:
            self._keys = list(keys)
            for key in self._keys:
                self._current.setdefault(key.alg, key)
        else:
            for alg in algorithms or ("RS256",):
                self.add_key(alg)
        self._server = _LoopbackServer(
            jwks_path=self.path + "/.well-known/jwks.json",
            discovery_path=self.path + "/.well-known/openid-configuration",
            jwks=self.jwks,
            discovery=self.discovery,
            cache_max_age=lambda: self.cache_max_age,
            port=port,
        )

    def __repr__(self) -> str:
        return f"LocalIssuer(keys={self.keys!r})"

    # -- server lifecycle

    def start(self) -> LocalIssuer:
        """Start serving (idempotent); after :meth:`stop` it listens on the same port again."""
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop serving promptly, releasing held (``HANG``/``SLOW``) requests and connections."""
        self._server.stop()

    def __enter__(self) -> LocalIssuer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``; raises ``RuntimeError`` before the first start()."""
        return f"http://127.0.0.1:{self._server.port}"

    @property
    def issuer(self) -> str:
        """``url + path``: the ``iss`` minted and the discovery ``issuer``."""
        return self.url + self.path

    @property
    def jwks_url(self) -> str:
        return self.issuer + "/.well-known/jwks.json"

    @property
    def discovery_url(self) -> str:
        return self.issuer + "/.well-known/openid-configuration"

    # -- keys

    @property
    def keys(self) -> list[SigningKey]:
        """The published keys, in order (a copy: change them with add_key/rotate/remove_key)."""
        with self._lock:
            return list(self._keys)

    def key(self, alg: str | None = None) -> SigningKey:
        """The current key for ``alg``, or for the first algorithm that has one if ``None``."""
        with self._lock:
            if alg is None:
                if not self._current:
                    raise LookupError("the issuer has no keys; call add_key() first")
                return next(iter(self._current.values()))
            if alg not in self._current:
                raise LookupError(f"the issuer has no {alg} key; call add_key({alg!r}) first")
            return self._current[alg]

    def add_key(self, alg: str, kid: str | None = None, **kw: Any) -> SigningKey:
        """Generate a key (``kw`` go to :func:`generate_key`) and publish it.

        Its ``kid`` is its RFC 7638 thumbprint unless given; an explicit duplicate ``kid`` is
        allowed on purpose (for key-set tests). It becomes current for ``alg`` only if ``alg``
        had no key.
        """
        with self._lock:
            key = generate_key(alg, kid, **kw)
            self._keys.append(key)
            self._current.setdefault(alg, key)
            return key

    def rotate(self, alg: str | None = None, *, keep_old: bool = False, **kw: Any) -> SigningKey:
        """Make a new key current for ``alg``; the old one leaves the JWKS unless ``keep_old``."""
        with self._lock:
            old = self.key(alg)
            new = self.add_key(old.alg, **kw)
            self._current[old.alg] = new
            if not keep_old:
                self._keys.remove(old)
            return new

    def remove_key(self, kid: str) -> None:
        """Unpublish every key with ``kid``; the newest remaining key of its alg becomes current."""
        with self._lock:
            gone = [k for k in self._keys if k.kid == kid]
            if not gone:
                raise KeyError(kid)
            self._keys = [k for k in self._keys if k.kid != kid]
            for key in gone:
                if self._current.get(key.alg) is key:
                    rest = [k for k in self._keys if k.alg == key.alg]
                    if rest:
                        self._current[key.alg] = rest[-1]
                    else:
                        del self._current[key.alg]

    def jwks(self) -> dict[str, Any]:
        """``{"keys": [...]}`` of the public JWKs; HS* keys only with ``include_secret_keys``."""
        keys = self.keys
        return {
            "keys": [k.public_jwk() for k in keys if k.kty != "oct" or self.include_secret_keys]
        }

    def discovery(self) -> dict[str, Any]:
        """The OpenID discovery document served at ``discovery_url``."""
        algs = list(dict.fromkeys(k.alg for k in self.keys))
        return {
            "issuer": self.issuer,
            "jwks_uri": self.jwks_url,
            "id_token_signing_alg_values_supported": algs,
        }

    # -- tokens

    def mint(
        self,
        claims: Mapping[str, Any] | None = None,
        *,
        alg: str | None = None,
        kid: str | None = _DEFAULT,
        subject: str | None = "user-1",
        audience: str | list[str] | None = _DEFAULT,
        scopes: Iterable[str] | str | None = None,
        expires_in: float | None = 300,
        issued_at: float | None = None,
        not_before: float | None = None,
        issuer: str | None = _DEFAULT,
        headers: Mapping[str, Any] | None = None,
        key: SigningKey | None = None,
        dpop_key: DPoPKey | str | None = None,
        certificate: x509.Certificate | str | bytes | None = None,
    ) -> str:
        """Mint a signed compact JWS.

        Header: ``alg``, ``typ: JWT``, ``kid`` (the key's unless given; ``None`` leaves it out),
        then ``headers`` (a ``None`` value removes that member). Payload: ``iss``, ``sub``,
        ``aud``, ``iat`` (``clock()`` by default), ``nbf`` if given, ``exp = iat + expires_in``
        (left out when ``None``), ``scope`` (space-joined) if scopes, a random ``jti``, ``cnf``
        (below), then ``claims`` (a ``None`` value removes that claim). ``issuer``/``audience``/
        ``subject`` set to ``None`` leave the claim out. ``key`` signs with a given (maybe
        unpublished) key.

        Sender-constrained tokens: ``dpop_key`` (a :class:`~jwt_guard.testing.dpop.DPoPKey`, or
        its ``jkt``) binds the token to a DPoP key, ``cnf.jkt`` (RFC 9449 6); ``certificate``
        (PEM, DER or a ``cryptography`` certificate) binds it to a client certificate,
        ``cnf["x5t#S256"]`` (RFC 8705 3.1). Both may be given.
        """
        signing_key = key if key is not None else self.key(alg)
        if alg is not None and alg != signing_key.alg:
            raise ConfigurationError(
                f"key {signing_key.kid!r} is {signing_key.alg}, not {alg}; "
                "to lie about the algorithm pass headers={'alg': ...}"
            )
        header: dict[str, Any] = {"alg": signing_key.alg, "typ": "JWT"}
        header["kid"] = signing_key.kid if kid is _DEFAULT else kid
        header.update(headers or {})
        iat = _numeric(int(self._clock()) if issued_at is None else issued_at)
        payload: dict[str, Any] = {
            "iss": self.issuer if issuer is _DEFAULT else issuer,
            "sub": subject,
            "aud": self.audience if audience is _DEFAULT else audience,
            "iat": iat,
            "nbf": None if not_before is None else _numeric(not_before),
            "exp": None if expires_in is None else _numeric(iat + expires_in),
        }
        if scopes:
            payload["scope"] = scopes if isinstance(scopes, str) else " ".join(scopes)
        payload["jti"] = secrets.token_urlsafe(16)
        cnf = _confirmation(dpop_key, certificate)
        if cnf:
            payload["cnf"] = cnf
        payload.update(claims or {})
        header = {k: v for k, v in header.items() if v is not None}
        payload = {k: v for k, v in payload.items() if v is not None}
        return self.sign_raw(header, payload, key=signing_key)

    def sign_raw(
        self,
        header: Mapping[str, Any] | bytes,
        payload: bytes | str | Mapping[str, Any],
        *,
        key: SigningKey | None = None,
    ) -> str:
        """Sign exactly ``header`` and ``payload`` (for hostile-token tests).

        Nothing is added or checked: a mapping is JSON-encoded compactly, ``bytes`` are used as
        they are (e.g. a header with duplicate members), ``str`` is UTF-8 encoded. Signs with
        ``key`` or the default key.
        """
        return compact_jws(header, payload, key if key is not None else self.key())

    # -- observation and faults

    def request_count(self, path: str | None = None) -> int:
        """Requests received for ``path`` (a URL path or full URL), or in all if ``None``."""
        return self._server.count(path)

    def reset_counts(self) -> None:
        self._server.reset_counts()

    def wait_for_requests(
        self, count: int, path: str | None = None, *, timeout: float = 10.0
    ) -> int:
        """Wait until :meth:`request_count` for ``path`` reaches ``count``, at most ``timeout``
        seconds, and return it.

        For a test whose client can give up before the server's thread has counted its
        request: a fetch that times out on a ``HANG`` fault after a fraction of a second.
        """
        return self._server.wait_count(count, path, timeout)

    @property
    def jwks_requests(self) -> int:
        return self._server.count(self.path + "/.well-known/jwks.json")

    @property
    def discovery_requests(self) -> int:
        return self._server.count(self.path + "/.well-known/openid-configuration")

    def set_fault(
        self,
        fault: JWKSFault | str | None,
        *,
        delay: float | datetime.timedelta | None = None,
        body_size: int = 50 * 1024 * 1024,
        endpoint: Literal["jwks", "discovery"] | None = None,
    ) -> None:
        """Make the JWKS and discovery endpoints misbehave (``None`` restores them).

        ``fault`` is a :class:`JWKSFault` or its name (``"down"``, ``"error_500"``, ...); an
        unknown name is a ``ConfigurationError`` listing the names. ``delay`` is for ``HANG``
        (default 30 s) and ``SLOW`` (default 1 s); ``body_size`` for ``HUGE``; ``endpoint``
        limits the fault to one endpoint (``DOWN`` always takes the whole server down). A new
        fault releases requests held by a ``HANG``.
        """
        chosen = fault_named(fault)
        seconds = None if delay is None else duration("set_fault", "delay", delay)
        size = positive_int("set_fault", "body_size", body_size)
        if endpoint not in (None, "jwks", "discovery"):
            raise ConfigurationError(
                f"set_fault(endpoint=...): must be 'jwks', 'discovery' or None, not {endpoint!r}"
            )
        self._server.set_fault(chosen, seconds, size, endpoint)

    # -- snapshots

    def snapshot(self) -> IssuerSnapshot:
        """Capture the keys (and which is current per algorithm) and the settable options."""
        with self._lock:
            return IssuerSnapshot(
                keys=tuple(self._keys),
                current=tuple(self._current.items()),
                audience=self.audience,
                cache_max_age=self.cache_max_age,
                include_secret_keys=self.include_secret_keys,
            )

    def restore(self, snapshot: IssuerSnapshot) -> None:
        """Put back what :meth:`snapshot` captured: keys, current keys and options.

        Faults, counters and serving are separate: ``set_fault(None)``, ``reset_counts()``,
        ``start()``.
        """
        with self._lock:
            self._keys = list(snapshot.keys)
            self._current = dict(snapshot.current)
            self.audience = snapshot.audience
            self.cache_max_age = snapshot.cache_max_age
            self.include_secret_keys = snapshot.include_secret_keys
