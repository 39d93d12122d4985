"""The key source's HTTP: URL policy, OpenID discovery, bounded JSON fetches, cache lifetimes.

``check_url`` decides which URLs may be fetched: HTTPS, or HTTP on loopback; no URL that two
parsers could read differently (a backslash, user information, whitespace, controls, non-ASCII,
a numeric host in a non-canonical form), and no link-local or cloud metadata address unless
allowed. ``HTTPFetcher`` gets one JSON object per call: redirects are followed by hand (at most
three, each target checked like the first URL, never from https:// to http://), the body is read
against a byte limit, and the whole fetch, headers included, ends by its deadline (it runs in a
worker thread whose connections are shut down at the deadline). Every failure is a
:class:`FetchError` whose text is escaped where it is made. ``ttl`` turns ``Cache-Control`` into a
cache lifetime. The state around the fetches (caching, back-off, single flight) is
:class:`~jwt_guard.sources.jwks.JWKSClient`'s.

Connections are per process: jwt_guard fetches through its own copy of each plain
``HTTPAdapter`` mounted on the session (same settings, its own connection pools, which watch
their sockets for the deadline), and a forked child starts with new pools, so the workers of a
``gunicorn --preload`` master never share the master's keep-alive connection.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import socket
import threading
import time
import weakref
from collections.abc import Iterator
from concurrent.futures import Future, wait
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from requests.adapters import BaseAdapter, HTTPAdapter
from requests.hooks import dispatch_hook
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util import parse_url

from .._codec import loads_object
from .._logsafe import safe

_MAX_AGE = re.compile(r"(?:^|[,\s])max-age\s*=\s*\"?(\d+)", re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|[,\s])(?:no-store|no-cache)\b", re.IGNORECASE)
_REDIRECTS = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 3

# -- which URLs may be fetched ------------------------------------------------------------------

# Anything but visible ASCII, and the backslash: the characters on which URL parsers disagree
# (urlsplit drops tabs and newlines, urllib3 reads a backslash as the end of the authority).
_UNSAFE_CHAR = re.compile(r"[^\x21-\x7e]|\\")
_HOST_NAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*\.?")
# A last label like this makes the whole host an IPv4 address for getaddrinfo (inet_aton reads
# 127.1, 0x7f.1, 0177.0.0.1 and 2130706433 as 127.0.0.1): only the canonical form is accepted.
_NUMERIC_LABEL = re.compile(r"0x[0-9a-f]*|[0-9]+")
_PORTS = {"http": 80, "https": 443}
_LINK_LOCAL = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))
# Cloud metadata services outside the link-local ranges: AWS's over IPv6, Alibaba Cloud's.
_METADATA = (ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("100.100.100.200"))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_COMPATIBLE = ipaddress.ip_network("::/96")

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_NEED_HTTPS = "must be an https:// URL (http:// only on loopback, or with allow_http=True)"
_UNSAFE = (
    "holds a backslash, whitespace, a control or a non-ASCII character "
    "(write host names in their xn-- form, percent-encode the rest)"
)


class FetchError(Exception):
    """Raised inside the key source when one fetch fails; never leaves jwt_guard.

    Its text is made with every outside part (URL, ``Location``, content type, exception text)
    passed through :func:`~jwt_guard._logsafe.safe`: it reaches log lines, ``health()`` and the
    ``detail=`` of the 503 log line as it is.
    """


def _is_loopback(host: str, address: _Address | None) -> bool:
    return host == "localhost" or (address is not None and address.is_loopback)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address reaches (mapped, compatible, NAT64, 6to4), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or (address in _COMPATIBLE and int(address) > 0xFFFF):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _is_link_local(address: _Address) -> bool:
    candidates: list[_Address] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            candidates.append(embedded)
    return any(
        a in _METADATA or any(a in net for net in _LINK_LOCAL if a.version == net.version)
        for a in candidates
    )


def _is_unspecified(address: _Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None and embedded.is_unspecified:
            return True
    return address.is_unspecified


def _judge_host(host: str) -> tuple[str | None, _Address | None]:
    """(why ``host`` may not be used, its IP address if it is one)."""
    if ":" in host:
        try:
            v6 = ipaddress.IPv6Address(host)
        except ValueError:
            return "has an invalid IPv6 address", None
        if v6.scope_id is not None:
            return "names an IPv6 zone (%...)", None
        return None, v6
    if not _HOST_NAME.fullmatch(host):
        return "has an invalid host name", None
    if _NUMERIC_LABEL.fullmatch(host.rstrip(".").rsplit(".", 1)[-1]):
        try:
            return None, ipaddress.IPv4Address(host)
        except ValueError:
            return "names an IPv4 address in a non-canonical form (write a.b.c.d in decimal)", None
    return None, None


def _endpoint(scheme: str | None, host: str | None, port: int | None) -> tuple[str, str, int]:
    """(scheme, host, port) as a connection sees them, to compare two parsers' readings."""
    scheme = (scheme or "").lower()
    name = (host or "").lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    with contextlib.suppress(ValueError):
        name = str(ipaddress.ip_address(name))
    return scheme, name, port if port is not None else _PORTS.get(scheme, -1)


def check_url(url: str, *, allow_http: bool, allow_link_local: bool = False) -> str | None:
    """Return why ``url`` may not be fetched (``None`` when it may).

    HTTPS, or HTTP on loopback (anywhere with ``allow_http``). Refused whatever the options: a
    backslash, whitespace, a control or non-ASCII character, user information, an invalid or
    non-canonical numeric host, the unspecified address, and any URL whose scheme, host or port
    ``urlsplit``, urllib3 and requests do not all read the same. Link-local and cloud metadata
    addresses (169.254.0.0/16, fe80::/10, fd00:ec2::254, 100.100.100.200, and IPv6 forms that
    carry such an IPv4 address: mapped, compatible, NAT64, 6to4) only with
    ``allow_link_local``. Host names are judged as written, not as they resolve.
    """
    if not isinstance(url, str):
        return "is not a string"
    if _UNSAFE_CHAR.search(url):
        return _UNSAFE
    try:
        parts = urlsplit(url)
        ours = _endpoint(parts.scheme, parts.hostname, parts.port)
    except ValueError:
        return "is not a URL"
    if parts.scheme not in _PORTS:
        return _NEED_HTTPS
    if "@" in parts.netloc:
        return "holds user information (user@host)"
    host = parts.hostname
    if not host:
        return "has no host"
    try:
        theirs = parse_url(url)
        sent = parse_url(requests.Request("GET", url).prepare().url or "")
    except (ValueError, requests.RequestException):
        return "is not a URL for the HTTP client"
    for reading in (theirs, sent):
        other = _endpoint(reading.scheme, reading.host, reading.port)
        if other != ours:
            return f"is read as {ours} by one URL parser and as {other} by the HTTP client"
    problem, address = _judge_host(host)
    if problem:
        return problem
    if address is not None and _is_unspecified(address):
        return "names the unspecified address (0.0.0.0 or ::), which reaches this host"
    if address is not None and not allow_link_local and _is_link_local(address):
        return (
            "names a link-local or cloud metadata address "
            "(allow it with allow_link_local=True in the JWKS options)"
        )
    if parts.scheme == "http" and not (allow_http or _is_loopback(host, address)):
        return _NEED_HTTPS
    return None


def _is_https(url: str) -> bool:
    return urlsplit(url).scheme == "https"


def ttl(cache_control: str | None, *, default: float, minimum: float, maximum: float) -> float:
    """The cache lifetime for a response with ``cache_control``, clamped to the bounds."""
    seconds = default
    if cache_control:
        match = _MAX_AGE.search(cache_control)
        if _NO_CACHE.search(cache_control):
            seconds = minimum
        elif match:
            seconds = float(match.group(1))
    return min(maximum, max(minimum, seconds))


# -- connections: per process, and shut down at a fetch's deadline -------------------------------


class _Watch:
    """The sockets one fetch opened or reused; ``cut`` shuts them down from another thread.

    It holds a duplicate descriptor of each (closed when the fetch ends), so shutting one down
    never touches a descriptor number the process may have reused meanwhile.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._twins: list[socket.socket] = []
        self._cut = False
        self._closed = False

    def add(self, sock: socket.socket) -> None:
        try:
            twin = socket.fromfd(sock.fileno(), sock.family, sock.type)
        except OSError:
            return
        with self._lock:
            if not self._closed:
                self._twins.append(twin)
                if self._cut:
                    _shut(twin)
                return
        twin.close()

    def cut(self) -> None:
        """The deadline passed: end every connection of this fetch (the worker sees EOF)."""
        with self._lock:
            self._cut = True
            for twin in self._twins:
                _shut(twin)

    def close(self) -> None:
        """The fetch ended: let go of the duplicates (the connections stay as the pool has them)."""
        with self._lock:
            self._closed = True
            twins, self._twins = self._twins, []
            for twin in twins:
                twin.close()


# urllib3 starts its messages with the connection ("<...HTTPConnection object at 0x...>: " or
# "HTTPConnection(host='...', port=443): "), which the URL in the message already says.
_CONNECTION_PREFIX = re.compile(
    r"(?:<[\w.]+ object at 0x[0-9a-f]+>|\w+\(host='[^']*', port=\d+\)): "
)


def _reason(exc: BaseException) -> str:
    """The innermost cause of a requests/urllib3 error, as text (``Connection refused``...)."""
    inner: BaseException = exc
    for _ in range(8):
        reason = getattr(inner, "reason", None)  # urllib3's MaxRetryError and friends
        if not isinstance(reason, BaseException) and inner.args:
            reason = inner.args[0]  # requests wraps the urllib3 error as its first argument
        if not isinstance(reason, BaseException) or reason is inner:
            break
        inner = reason
    return _CONNECTION_PREFIX.sub("", str(inner)) or type(inner).__name__


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


_local = threading.local()


def _watched(sock: socket.socket | None) -> None:
    watch: _Watch | None = getattr(_local, "watch", None)
    if watch is not None and sock is not None:
        watch.add(sock)


class _HTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _watched(sock)  # before any TLS handshake, which a server can trickle too
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        _watched(self.sock)  # a kept-alive connection, reused
        super().request(*args, **kwargs)


class _HTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _watched(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        _watched(self.sock)
        super().request(*args, **kwargs)


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOL_CLASSES: dict[str, type[HTTPConnectionPool]] = {"http": _HTTPPool, "https": _HTTPSPool}


class _Adapter(HTTPAdapter):
    """An ``HTTPAdapter`` whose connections a fetch's deadline can shut down."""

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOL_CLASSES)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if isinstance(manager, urllib3.ProxyManager):  # not SOCKS: its pools are its own
            manager.pool_classes_by_scheme = dict(_POOL_CLASSES)
        return manager


class _Transports:
    """jwt_guard's adapters, per adapter mounted on a session it fetches with, per process."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pid = os.getpid()
        self.copies: weakref.WeakKeyDictionary[HTTPAdapter, _Adapter] = weakref.WeakKeyDictionary()
        self.subclassed: weakref.WeakSet[HTTPAdapter] = weakref.WeakSet()


_transports = _Transports()


def _rebuild(target: HTTPAdapter, source: HTTPAdapter) -> None:
    """``target`` gets ``source``'s settings and new pools: what requests does to unpickle one."""
    cast(Any, target).__setstate__(cast(Any, source).__getstate__())


# What a forked child inherited: kept, never closed or collected in the child. Closing a pool
# takes its lock, which a thread of the parent may have held at the fork; and the parent's
# sockets must not be shut down from here (close() in a child only drops its own descriptor).
_inherited: list[object] = []


def _after_fork_in_child() -> None:
    """Give this (new) process connections of its own: new pools for every adapter used."""
    global _transports
    old = _transports
    _inherited.append(list(old.copies.values()))
    for adapter in list(old.subclassed):
        # An HTTPAdapter subclass mounted by the user is used as is; it gets new pools the way
        # requests rebuilds an unpickled adapter (its init_poolmanager runs again).
        _inherited.append((adapter.poolmanager, adapter.proxy_manager))
        with contextlib.suppress(Exception):  # user code; an at-fork hook must not raise
            _rebuild(adapter, adapter)
    fresh = _Transports()
    fresh.subclassed = old.subclassed  # keep them known for a later fork
    _transports = fresh


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


_PLACEHOLDER = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]{0,63}\}")


def _template_form(text: str) -> str:
    """``text`` with every ``{name}`` placeholder written ``{}``: Entra's ``{tenantid}`` and an
    ``IssuerTemplate``'s ``{tid}`` compare equal."""
    return _PLACEHOLDER.sub("{}", text)


def _adapter_for(session: requests.Session, url: str) -> BaseAdapter:
    """The adapter jwt_guard sends ``url`` through: its own copy of a plain ``HTTPAdapter``."""
    if _transports.pid != os.getpid():  # a fork that skipped the at-fork hooks
        _after_fork_in_child()
    mounted = session.get_adapter(url)
    transports = _transports
    if type(mounted) is HTTPAdapter:
        with transports.lock:
            copy = transports.copies.get(mounted)
            if copy is None:
                copy = _Adapter.__new__(_Adapter)
                _rebuild(copy, mounted)
                transports.copies[mounted] = copy
        return copy
    if isinstance(mounted, HTTPAdapter):
        with transports.lock:
            transports.subclassed.add(mounted)
    return mounted


# -- fetching -----------------------------------------------------------------------------------

_Result = tuple[dict[str, Any], Any]


@dataclass(frozen=True)
class HTTPFetcher:
    """One key source's HTTP settings; ``deadline`` (``time.monotonic``) bounds a whole fetch."""

    session: requests.Session
    timeout: tuple[float, float]
    total_timeout: float
    max_bytes: int
    allow_http: bool
    allow_link_local: bool = False

    def check(self, url: str) -> str | None:
        """Why ``url`` may not be fetched with these settings (``None`` when it may)."""
        return check_url(url, allow_http=self.allow_http, allow_link_local=self.allow_link_local)

    def discover(self, issuer: str | None, deadline: float, templates: tuple[str, ...] = ()) -> str:
        """The ``jwks_uri`` of ``issuer``'s OpenID discovery document, which must name
        ``issuer``, or one of ``templates`` (a placeholder matching one of any name)."""
        url = str(issuer).rstrip("/") + "/.well-known/openid-configuration"
        document, _ = self.get_json(url, deadline)
        named = document.get("issuer")
        if named != issuer and not (
            isinstance(named, str)
            and _template_form(named) in {_template_form(t) for t in templates}
        ):
            raise FetchError(
                f"discovery document 'issuer' {safe(document.get('issuer'))} differs from "
                f"the configured issuer {safe(issuer)}"
            )
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise FetchError("discovery document has no 'jwks_uri' string")
        problem = self.check(jwks_uri)
        if problem is None and _is_https(url) and not _is_https(jwks_uri):
            problem = "must be https:// (the issuer is)"
        if problem:
            raise FetchError(f"discovered jwks_uri {safe(jwks_uri)} refused: it {problem}")
        return jwks_uri

    def get_json(self, url: str, deadline: float) -> tuple[dict[str, Any], Any]:
        """The JSON object at ``url`` and the response headers, by ``deadline`` at the latest.

        The fetch runs in a worker thread; at the deadline its connections are shut down and
        this raises, whatever the server is doing (trickling headers, a TLS handshake).
        """
        watch = _Watch()
        outcome: Future[_Result] = Future()

        def work() -> None:
            _local.watch = watch
            try:
                outcome.set_result(self._follow(url, deadline))
            except BaseException as exc:  # handed to the caller
                outcome.set_exception(exc)
            finally:
                _local.watch = None
                watch.close()

        threading.Thread(target=work, name="jwt_guard-fetch", daemon=True).start()
        done, _ = wait([outcome], timeout=max(0.0, deadline - time.monotonic()))
        if not done:
            watch.cut()
            raise FetchError(f"fetch took longer than {self.total_timeout}s (total_timeout)")
        return outcome.result()

    def _follow(self, url: str, deadline: float) -> _Result:
        """Fetch ``url``, following at most ``MAX_REDIRECTS`` redirects, each target checked."""
        problem = self.check(url)
        if problem:
            raise FetchError(f"URL {safe(url)} refused: it {problem}")
        secure = _is_https(url)
        for _hop in range(MAX_REDIRECTS + 1):
            with self._send(url) as response:
                if response.status_code in _REDIRECTS:
                    url = self._redirect(url, response.headers.get("Location"), secure)
                    continue
                if response.status_code != 200:
                    raise FetchError(f"HTTP {response.status_code} from {safe(url)}")
                body = self.read(response, deadline)
                try:
                    return loads_object(body), response.headers
                except ValueError as exc:
                    kind = response.headers.get("Content-Type")
                    raise FetchError(
                        f"response from {safe(url)} (Content-Type {safe(kind)}) is not a JSON "
                        f"object: {safe(exc)}"
                    ) from exc
        raise FetchError(f"more than {MAX_REDIRECTS} redirects fetching {safe(url)}")

    def _redirect(self, url: str, location: str | None, secure: bool) -> str:
        if location is None:
            raise FetchError(f"redirect without a Location from {safe(url)}")
        target = location
        problem: str | None = _UNSAFE
        if not _UNSAFE_CHAR.search(location):  # checked before urljoin, which drops tabs and CRLF
            target = urljoin(url, location)
            problem = self.check(target)
        if problem is None and secure and not _is_https(target):
            problem = "leaves https:// (an https source never redirects to http://)"
        if problem:
            raise FetchError(f"redirect from {safe(url)} to {safe(target)} refused: it {problem}")
        return target

    def _send(self, url: str) -> requests.Response:
        """One GET of ``url`` through the session's settings, without following redirects."""
        session = self.session
        try:
            request = requests.Request("GET", url, headers={"Accept": "application/json"})
            prepared = session.prepare_request(request)
            settings = session.merge_environment_settings(prepared.url or url, {}, True, None, None)
            options: dict[str, Any] = {
                "stream": True,
                "timeout": self.timeout,
                "verify": settings["verify"],
                "cert": settings["cert"],
                "proxies": settings["proxies"],
            }
            response = _adapter_for(session, prepared.url or url).send(prepared, **options)
            hooked: requests.Response = dispatch_hook(  # type: ignore[no-untyped-call]
                "response", prepared.hooks, response, **options
            )
            return hooked
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise FetchError(
                f"{type(exc).__name__} fetching {safe(url)}: {safe(_reason(exc), limit=240)}"
            ) from exc

    def read(self, response: requests.Response, deadline: float) -> bytes:
        """The body of ``response``, at most ``max_bytes``, read before ``deadline``."""
        length = response.headers.get("Content-Length", "")
        if length.isascii() and length.isdigit() and int(length) > self.max_bytes:
            raise FetchError(f"response of {length} bytes exceeds {self.max_bytes}")
        chunks: list[bytes] = []
        size = 0
        raw = response.raw
        pieces: Iterator[bytes]
        if hasattr(raw, "read1"):
            # urllib3 >= 2: at most one socket read per call, so the deadline is checked between
            # reads. iter_content(n) blocks until n bytes arrive: a server trickling one byte
            # per read timeout would hold a fetch far past total_timeout.
            pieces = iter(lambda: raw.read1(65536, decode_content=True) or b"", b"")
        else:  # pragma: no cover - urllib3 1.x
            pieces = response.iter_content(65536)
        try:
            for chunk in pieces:
                size += len(chunk)
                if size > self.max_bytes:
                    raise FetchError(f"response exceeds {self.max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise FetchError(f"fetch took longer than {self.total_timeout}s")
                chunks.append(chunk)
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise FetchError(f"{type(exc).__name__} reading the response") from exc
        return b"".join(chunks)
