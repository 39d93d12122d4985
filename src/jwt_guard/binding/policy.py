"""What a guard asks of a request whose token is sender-constrained: ``SenderConstraints``.

The guard verifies the access token first (or takes it from the token cache); then, for each
request, :meth:`SenderConstraints.check` decides whether the token may be used *by this sender*:

* **DPoP** (RFC 9449), ``dpop="off" | "allowed" | "required"``. A token bound to a key (its
  ``cnf.jkt``) must come as ``Authorization: DPoP <token>`` with a fresh ``DPoP`` proof signed
  by that key, for this method and this URL; one that comes as ``Bearer`` is refused, and so is
  an unbound token that comes as ``DPoP``. With ``"off"`` (the default) the ``DPoP`` scheme is
  not accepted and DPoP-bound tokens are refused: their holder is meant to prove the key, and
  nothing here would check it. ``"required"`` accepts only the ``DPoP`` scheme.
* **Certificate-bound tokens** (RFC 8705), ``mtls="off" | "allowed" | "required"``. A token's
  ``cnf["x5t#S256"]`` must be the SHA-256 thumbprint of the client certificate the TLS layer
  verified (the ASGI ``tls`` extension, WSGI ``SSL_CLIENT_CERT``) or that a trusted proxy
  reports in ``mtls_header``. With ``"off"`` (the default) certificate-bound tokens are refused;
  ``"required"`` refuses tokens that are not certificate-bound.

The proof's ``htu`` is compared with the request's public URL: ``public_url`` (one or several,
from configuration) followed by the path the server received, or, without ``public_url``, the
``Forwarded`` / ``X-Forwarded-Proto`` and ``X-Forwarded-Host`` headers of a request that came
from one of ``trusted_proxies``. Never from ``Host``. The client-certificate header, likewise, is
believed only from a trusted proxy; the TLS layer's certificate only from a request that did not
come through one (a proxy's own connection certificate is not the client's).

The adapters describe a request with a :class:`RequestFacts`; nothing here imports a framework.
"""

from __future__ import annotations

import functools
import ipaddress
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, Protocol

from .._logsafe import header_safe, quoted, safe
from ..core.claims import Claims
from ..errors import (
    CertificateBindingMismatch,
    ConfigurationError,
    DPoPBindingMismatch,
    InvalidDPoPProof,
    JWTGuardError,
    MissingToken,
    UseDPoPNonce,
)
from ._url import public_base_url, request_url
from .dpop import DPoPProof, DPoPVerifier, confirmation_jkt, dpop_challenge
from .mtls import (
    certificate_thumbprint,
    check_certificate_binding,
    client_cert_header,
    confirmation_x5t,
    load_certificate,
    xfcc_thumbprint,
)
from .nonce import DPoPNonces

__all__ = [
    "BEARER",
    "DPOP",
    "MODES",
    "SENDER_OPTIONS",
    "RequestFacts",
    "SenderConstraints",
]

BEARER = "bearer"
"""The ``Authorization`` scheme of a plain bearer token (RFC 6750), lower-case."""
DPOP = "dpop"
"""The ``Authorization`` scheme of a DPoP-bound token (RFC 9449 7.1), lower-case."""
MODES = ("off", "allowed", "required")
SENDER_OPTIONS = (
    "dpop",
    "dpop_options",
    "dpop_nonce",
    "public_url",
    "trusted_proxies",
    "mtls",
    "mtls_header",
)
"""The guard options that configure :class:`SenderConstraints` (the middlewares take them)."""

Mode = Literal["off", "allowed", "required"]

_DPOP_OPTIONS = frozenset(
    {
        "algorithms",
        "iat_window",
        "leeway",
        "max_proof_size",
        "min_rsa_bits",
        "replay_store",
        "nonces",
        "clock",
    }
)
_UNIX = "unix"  # trusted_proxies entry: requests without a peer address (a unix socket)
_CLIENT_CERT = "client-cert"
_XFCC = "x-forwarded-client-cert"
_MEMO = object()  # this module's slot in Claims.memo: the token's (jkt, x5t#S256)


class RequestFacts(Protocol):
    """One request as the sender checks see it; each adapter implements it over its request.

    Everything is read lazily: a request whose token is not sender-constrained never asks.
    """

    @property
    def method(self) -> str:
        """The request method, as received (``"GET"``)."""
        ...

    @property
    def peer(self) -> str | None:
        """The address the connection came from (not a forwarded one); ``None`` if unknown."""
        ...

    def target(self) -> str | bytes:
        """The request target's path as received (ASGI ``raw_path``, WSGI ``REQUEST_URI``)."""
        ...

    def header_values(self, name: str) -> list[str]:
        """Every value of the header ``name`` (lower-case), in order; ``[]`` when absent."""
        ...

    def tls_client_cert(self) -> str | bytes | None:
        """The client certificate the server's TLS layer verified (PEM or DER), or ``None``."""
        ...


def _where(owner: str, option: str) -> str:
    return f"{owner}[{option!r}]" if owner.startswith("settings.") else f"{owner}({option}=...)"


def _mode(owner: str, name: str, value: object) -> Mode:
    if value not in MODES:
        raise ConfigurationError(
            f"{_where(owner, name)}: must be 'off', 'allowed' or 'required', not {safe(value)!r}"
        )
    return value  # type: ignore[return-value]  # one of MODES, checked above


def _public_urls(owner: str, value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, Iterable) or isinstance(items, (bytes, Mapping)):
        raise ConfigurationError(
            f"{_where(owner, 'public_url')}: give the URL clients call, e.g. "
            f"'https://api.example.com' (or a list of them), not {type(value).__name__!r}"
        )
    bases = tuple(public_base_url(item, owner, "public_url") for item in items)
    if not bases:
        raise ConfigurationError(f"{_where(owner, 'public_url')}: the list is empty")
    return tuple(dict.fromkeys(bases))


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _proxies(owner: str, value: object) -> tuple[tuple[Network, ...], bool]:
    """``(networks, unix)``: the trusted proxy networks, and whether a peerless request (a unix
    socket) counts as coming from one."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ConfigurationError(
            f"{_where(owner, 'trusted_proxies')}: give a list of addresses or networks, e.g. "
            f"['10.0.0.7', '10.1.0.0/16'], not {type(value).__name__!r}"
        )
    networks: list[Network] = []
    unix = False
    for item in value:
        if item == _UNIX:
            unix = True
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=True))
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(
                f"{_where(owner, 'trusted_proxies')}: {safe(item)!r} is not an IP address or "
                f"network ({exc}); write e.g. '10.0.0.7', '10.1.0.0/16' or 'unix'"
            ) from None
    return tuple(networks), unix


def _mtls_header(owner: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(
            f"{_where(owner, 'mtls_header')}: the name of the header your proxy puts the client "
            f"certificate in ('Client-Cert', 'X-Forwarded-Client-Cert', ...), not {value!r}"
        )
    name = value.strip().lower()
    if not all(ch.isalnum() or ch in "-_" for ch in name):
        raise ConfigurationError(f"{_where(owner, 'mtls_header')}: {value!r} is no header name")
    return name


def _nonces(owner: str, value: object, clock: Callable[[], float]) -> DPoPNonces | None:
    if value is False or value is None:
        return None
    if isinstance(value, DPoPNonces):
        return value
    if value is True:
        return DPoPNonces(clock=clock)
    if isinstance(value, (str, bytes)):
        try:
            return DPoPNonces(value, clock=clock)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{_where(owner, 'dpop_nonce')}: {exc}") from None
    raise ConfigurationError(
        f"{_where(owner, 'dpop_nonce')}: True (a secret for this process), the secret every "
        f"worker shares (at least 32 bytes), or a DPoPNonces; not {type(value).__name__!r}"
    )


def _confirmations(claims: Claims) -> tuple[str | None, str | None]:
    """The token's ``cnf.jkt`` and ``cnf["x5t#S256"]``; a malformed one raises."""
    return confirmation_jkt(claims), confirmation_x5t(claims)


@functools.lru_cache(maxsize=128)
def _thumbprint(kind: str, value: str | bytes) -> str:
    """``x5t#S256`` of a certificate as a server or proxy hands it over; the same connection's
    certificate repeats on every request, so each distinct value is parsed once."""
    if kind == "tls":
        return certificate_thumbprint(load_certificate(value))
    if not isinstance(value, str):
        raise CertificateBindingMismatch("a certificate header is not text")
    if kind == _CLIENT_CERT:
        return certificate_thumbprint(client_cert_header(value))
    if kind == _XFCC:
        return xfcc_thumbprint(value)
    try:  # any other header: the URL-encoded PEM (nginx's $ssl_client_escaped_cert)
        pem = urllib.parse.unquote(value, errors="strict")
    except UnicodeDecodeError:
        raise CertificateBindingMismatch("the certificate header is not URL-encoded PEM") from None
    return certificate_thumbprint(load_certificate(pem))


@functools.lru_cache(maxsize=64)
def _forwarded_base(proto: str, host: str) -> str:
    try:
        return public_base_url(f"{proto}://{host}", "a trusted proxy", "Forwarded")
    except ConfigurationError:
        raise InvalidDPoPProof(
            f"the trusted proxy's forwarded scheme and host do not make a URL: "
            f"{safe(proto, 20)!r}, {safe(host, 100)!r}"
        ) from None


def _last_element(values: list[str]) -> str:
    """The last comma-separated element of a header: the one the nearest proxy wrote."""
    return ",".join(values).rsplit(",", 1)[-1].strip(" \t")


def _forwarded_pairs(element: str) -> dict[str, str]:
    """``proto=https;host="api.example.com"`` (one RFC 7239 element) as a dict."""
    pairs: dict[str, str] = {}
    for pair in element.split(";"):
        name, sep, value = pair.strip(" \t").partition("=")
        if sep:
            value = value.strip(" \t")
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
            pairs[name.strip().lower()] = value
    return pairs


class SenderConstraints:
    """DPoP and certificate binding for one guard: options in, a per-request check out.

    The middlewares build one from their keyword arguments (``JWTGuard(app, ..., dpop=...)``,
    ``JWTGuardWSGI``, Django's ``settings.JWT_GUARD``); see the module docstring for what each
    mode does.

    Args:
        dpop: ``"off"`` (default), ``"allowed"`` or ``"required"``.
        dpop_options: keyword arguments for the :class:`~jwt_guard.binding.dpop.DPoPVerifier`
            (``algorithms``, ``iat_window``, ``leeway``, ``max_proof_size``, ``min_rsa_bits``,
            ``replay_store``, ``nonces``, ``clock``). Its ``replay_store`` defaults to a
            :class:`~jwt_guard.stores.memory.MemoryReplayStore` of this process: with several
            workers give a shared one (:class:`~jwt_guard.stores.redis.RedisReplayStore`), or a
            proof can be replayed to another worker.
        dpop_nonce: server nonces (RFC 9449 9): ``True`` with a secret drawn for this process,
            or the secret every worker shares (text or bytes, at least 32 bytes), or a ready
            :class:`~jwt_guard.binding.nonce.DPoPNonces`. Default ``False``.
        public_url: the URL clients call, ``"https://api.example.com"`` (with the path prefix a
            proxy strips, if any), or a list of them; the proof's ``htu`` must be one of them
            followed by the request's path.
        trusted_proxies: addresses and networks of your proxies (``["10.0.0.7",
            "10.1.0.0/16"]``, ``"unix"`` for a unix socket): only their forwarded headers are
            believed (the public URL when ``public_url`` is not set, and ``mtls_header``).
        mtls: ``"off"`` (default), ``"allowed"`` or ``"required"``.
        mtls_header: the header a trusted proxy puts the client certificate in:
            ``"Client-Cert"`` (RFC 9440), ``"X-Forwarded-Client-Cert"`` (Envoy), or any other
            name for a URL-encoded PEM (nginx's ``$ssl_client_escaped_cert``).
        owner: how error messages name the thing being configured.
        clock: the wall clock DPoP's ``iat`` and nonces follow (the guard passes its verifier's).

    Example::

        app = JWTGuard(
            app,
            issuer="https://idp.example.com/",
            audience="my-api",
            dpop="required",
            public_url="https://api.example.com",
        )
    """

    def __init__(
        self,
        *,
        dpop: Mode = "off",
        dpop_options: Mapping[str, Any] | None = None,
        dpop_nonce: bool | str | bytes | DPoPNonces = False,
        public_url: str | Sequence[str] | None = None,
        trusted_proxies: Iterable[str] = (),
        mtls: Mode = "off",
        mtls_header: str | None = None,
        owner: str = "SenderConstraints",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.dpop: Mode = _mode(owner, "dpop", dpop)
        self.mtls: Mode = _mode(owner, "mtls", mtls)
        self.public_urls = _public_urls(owner, public_url)
        self._networks, self._unix = _proxies(owner, trusted_proxies)
        self.mtls_header = _mtls_header(owner, mtls_header)
        if not isinstance(dpop_options, (Mapping, type(None))):
            raise ConfigurationError(
                f"{_where(owner, 'dpop_options')}: a dict of DPoPVerifier options, not "
                f"{type(dpop_options).__name__!r}"
            )
        options = dict(dpop_options or {})
        unknown = sorted(set(options) - _DPOP_OPTIONS)
        if unknown:
            raise ConfigurationError(
                f"{_where(owner, 'dpop_options')}: no such DPoPVerifier option {unknown[0]!r} "
                f"(known: {', '.join(sorted(_DPOP_OPTIONS))})"
            )
        options.setdefault("clock", clock)
        nonces = _nonces(owner, dpop_nonce, options["clock"])
        if nonces is not None:
            if "nonces" in options:
                raise ConfigurationError(
                    f"{_where(owner, 'dpop_nonce')}: give dpop_nonce or dpop_options['nonces'], "
                    "not both"
                )
            options["nonces"] = nonces
        self.verifier: DPoPVerifier | None = None
        if self.dpop != "off":
            if not self.public_urls and not (self._networks or self._unix):
                raise ConfigurationError(
                    f"{_where(owner, 'dpop')}: DPoP compares each proof with the URL clients "
                    "call, which this server cannot know by itself (and never takes from the "
                    "Host header): set public_url='https://api.example.com' (or a list), or "
                    "trusted_proxies=[...] whose X-Forwarded-Proto/-Host (or Forwarded) say it"
                )
            try:
                self.verifier = DPoPVerifier(**options)
            except ConfigurationError as exc:
                raise ConfigurationError(f"{_where(owner, 'dpop_options')}: {exc}") from None
        elif dpop_options or nonces is not None:
            raise ConfigurationError(
                f"{_where(owner, 'dpop_options')}: DPoP options have no effect with "
                "dpop='off'; set dpop='allowed' or 'required'"
            )
        if self.mtls_header is not None:
            if self.mtls == "off":
                raise ConfigurationError(
                    f"{_where(owner, 'mtls_header')}: has no effect with mtls='off'; set "
                    "mtls='allowed' or 'required'"
                )
            if not (self._networks or self._unix):
                raise ConfigurationError(
                    f"{_where(owner, 'mtls_header')}: a certificate header is believed only "
                    "from your proxies: list their addresses in trusted_proxies=[...]"
                )
        self.schemes = (
            frozenset({BEARER})
            if self.dpop == "off"
            else frozenset({DPOP})
            if self.dpop == "required"
            else frozenset({BEARER, DPOP})
        )
        self.always = self.dpop == "required" or self.mtls == "required"
        """Whether every request has something to check (a ``"required"`` mode)."""

    def __repr__(self) -> str:
        return (
            f"SenderConstraints(dpop={self.dpop!r}, mtls={self.mtls!r}, "
            f"public_url={list(self.public_urls)!r}, trusted_proxies="
            f"{[str(n) for n in self._networks] + ([_UNIX] if self._unix else [])!r}, "
            f"mtls_header={self.mtls_header!r})"
        )

    @property
    def algorithms(self) -> tuple[str, ...]:
        """The proof algorithms accepted (the ``algs`` of the ``DPoP`` challenge)."""
        return () if self.verifier is None else self.verifier.algorithms

    # -- per request ----------------------------------------------------------------------------

    def needs_check(self, claims: Claims, scheme: str) -> bool:
        """Whether :meth:`check` has anything to do for this token and scheme: a plain bearer
        token under the default modes costs this one test."""
        return self.always or scheme == DPOP or "cnf" in claims

    def check(
        self, claims: Claims, scheme: str, token: str, request: RequestFacts
    ) -> DPoPProof | None:
        """Refuse unless the sender of ``request`` may use this token; the verified proof for
        the ``DPoP`` scheme, else ``None``. Raises a ``JWTGuardError`` (401, or 503 when the
        replay store cannot answer)."""
        jkt, x5t = self._bindings(claims, scheme)
        if x5t is not None:
            check_certificate_binding(x5t, self._client_thumbprint(request))
        if jkt is None or self.verifier is None:
            return None
        return self.verifier.verify(
            request.header_values(DPOP),
            method=request.method,
            url=self._urls(request),
            access_token=token,
            expected_jkt=jkt,
        )

    async def acheck(
        self, claims: Claims, scheme: str, token: str, request: RequestFacts
    ) -> DPoPProof | None:
        """:meth:`check` for async callers (the replay store is asked with ``afirst_use``)."""
        jkt, x5t = self._bindings(claims, scheme)
        if x5t is not None:
            check_certificate_binding(x5t, self._client_thumbprint(request))
        if jkt is None or self.verifier is None:
            return None
        return await self.verifier.averify(
            request.header_values(DPOP),
            method=request.method,
            url=self._urls(request),
            access_token=token,
            expected_jkt=jkt,
        )

    def challenge(
        self,
        exc: JWTGuardError | None,
        scheme: str | None,
        realm: str,
        bearer: str,
        resource_metadata: str | None = None,
    ) -> str:
        """The ``WWW-Authenticate`` value: ``bearer`` (the RFC 6750 challenge the guard made for
        ``exc``) alone with ``dpop="off"``, the ``DPoP`` challenge alone with ``"required"``, and
        both otherwise, the error in the challenge of the scheme the request used (``scheme``;
        DPoP's own errors always in the ``DPoP`` one, RFC 9449 7.1). ``resource_metadata``
        (RFC 9728 5.1) goes into every challenge, as it does into ``bearer``."""
        if self.dpop == "off":
            return bearer
        dpop = functools.partial(dpop_challenge, algs=self.algorithms, realm=realm)
        if self.dpop == "required":
            return dpop(exc, resource_metadata=resource_metadata)
        if scheme == DPOP or isinstance(exc, (InvalidDPoPProof, UseDPoPNonce)):
            plain = f"Bearer realm={quoted(realm)}"
            if resource_metadata is not None:
                plain += f", resource_metadata={quoted(header_safe(resource_metadata))}"
            return f"{dpop(exc, resource_metadata=resource_metadata)}, {plain}"
        return f"{bearer}, {dpop(None, resource_metadata=resource_metadata)}"

    # -- the steps ------------------------------------------------------------------------------

    def _bindings(self, claims: Claims, scheme: str) -> tuple[str | None, str | None]:
        """The token's bindings, after every check that needs nothing of the request."""
        if scheme != DPOP and self.dpop == "required":
            raise MissingToken("only the DPoP scheme is accepted (dpop='required')")
        jkt, x5t = claims.memo(_MEMO, _confirmations)
        if scheme == DPOP:
            if jkt is None:
                raise DPoPBindingMismatch(
                    "the DPoP scheme came with a token that is not DPoP-bound (no cnf.jkt)"
                )
        elif jkt is not None:
            raise DPoPBindingMismatch(
                "a DPoP-bound token (cnf.jkt) came with the Bearer scheme"
                if self.dpop != "off"
                else "a DPoP-bound token (cnf.jkt), and this API does not accept DPoP (dpop='off')"
            )
        if x5t is None:
            if self.mtls == "required":
                raise CertificateBindingMismatch(
                    "the token is not certificate-bound (no cnf x5t#S256) and mtls='required'"
                )
        elif self.mtls == "off":
            raise CertificateBindingMismatch(
                "a certificate-bound token (cnf x5t#S256), and this API does not check client "
                "certificates (mtls='off')"
            )
        return jkt, x5t

    def _trusted(self, peer: str | None) -> bool:
        if peer is None or peer == "":
            return self._unix
        if not self._networks:
            return False
        return _in_networks(peer, self._networks)

    def _client_thumbprint(self, request: RequestFacts) -> str | None:
        """The ``x5t#S256`` of the client's certificate: from the trusted proxy's header when
        the request came through one, else from the server's TLS layer."""
        if self.mtls_header is not None and self._trusted(request.peer):
            values = request.header_values(self.mtls_header)
            if not values:
                return None
            if len(values) != 1:
                raise CertificateBindingMismatch(
                    f"the request has {len(values)} {self.mtls_header} headers"
                )
            return _thumbprint(self.mtls_header, values[0])
        cert = request.tls_client_cert()
        if cert is None:
            return None
        return _thumbprint("tls", cert)

    def _urls(self, request: RequestFacts) -> str | tuple[str, ...]:
        """The public URL(s) the request may have been made to: ``public_url`` and the path, or
        the trusted proxy's forwarded scheme and host and the path."""
        target = request.target()
        if self.public_urls:
            if len(self.public_urls) == 1:
                return request_url(self.public_urls[0], target)
            return tuple(request_url(base, target) for base in self.public_urls)
        if not self._trusted(request.peer):
            raise InvalidDPoPProof(
                f"no public URL for this request: public_url is not set and the request came "
                f"from {safe(request.peer or '-', 60)}, not a trusted proxy"
            )
        forwarded = request.header_values("forwarded")
        if forwarded:
            pairs = _forwarded_pairs(_last_element(forwarded))
            proto, host = pairs.get("proto", ""), pairs.get("host", "")
        else:
            proto = _last_element(request.header_values("x-forwarded-proto"))
            host = _last_element(request.header_values("x-forwarded-host"))
        if not proto or not host:
            raise InvalidDPoPProof(
                "the trusted proxy sent no forwarded scheme and host (Forwarded: proto=...;"
                "host=..., or X-Forwarded-Proto and X-Forwarded-Host), and public_url is not set"
            )
        return request_url(_forwarded_base(proto.lower(), host), target)


@functools.lru_cache(maxsize=1024)
def _address(peer: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(peer)
    except ValueError:
        return None


def _in_networks(peer: str, networks: tuple[Network, ...]) -> bool:
    address = _address(peer[:64])
    if address is None:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:10.0.0.7 is 10.0.0.7
    return any(address in network for network in networks)
