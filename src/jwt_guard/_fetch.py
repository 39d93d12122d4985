"""The key source's HTTP: URL policy, OpenID discovery, bounded JSON fetches, cache lifetimes.

``check_url`` decides which URLs may be fetched (HTTPS, or HTTP on loopback). ``HTTPFetcher``
gets one JSON object per call: redirects are followed by hand (at most three, each target
checked like the first URL), the body is read against a byte limit and a deadline for the whole
fetch, and every failure is a :class:`FetchError`. ``ttl`` turns ``Cache-Control`` into a cache
lifetime. The state around the fetches (caching, back-off, single flight) is
:class:`~jwt_guard.jwks.JWKSClient`'s.
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3

from ._codec import loads_object

_MAX_AGE = re.compile(r"(?:^|[,\s])max-age\s*=\s*\"?(\d+)", re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|[,\s])(?:no-store|no-cache)\b", re.IGNORECASE)
_REDIRECTS = (301, 302, 303, 307, 308)


class FetchError(Exception):
    """Raised inside the key source when one fetch fails; never leaves jwt_guard."""


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, *, allow_http: bool) -> str | None:
    """Return why ``url`` may not be fetched (``None`` when it may): HTTPS, or HTTP on loopback."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "not a URL"
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname and (allow_http or _is_loopback(parts.hostname)):
        return None
    return "must be an https:// URL (http:// only on loopback, or with allow_http=True)"


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


@dataclass(frozen=True)
class HTTPFetcher:
    """One key source's HTTP settings; ``deadline`` (``time.monotonic``) bounds a whole fetch."""

    session: requests.Session
    timeout: tuple[float, float]
    total_timeout: float
    max_bytes: int
    allow_http: bool

    def discover(self, issuer: str | None, deadline: float) -> str:
        """The ``jwks_uri`` of ``issuer``'s OpenID discovery document (which must name it)."""
        url = str(issuer).rstrip("/") + "/.well-known/openid-configuration"
        document, _ = self.get_json(url, deadline)
        if document.get("issuer") != issuer:
            raise FetchError("discovery document 'issuer' differs from the configured issuer")
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise FetchError("discovery document has no 'jwks_uri'")
        problem = check_url(jwks_uri, allow_http=self.allow_http)
        if problem:
            raise FetchError(f"discovered jwks_uri {problem}")
        return jwks_uri

    def get_json(self, url: str, deadline: float) -> tuple[dict[str, Any], Any]:
        """The JSON object at ``url`` and the response headers, following redirects by hand."""
        for _hop in range(4):
            try:
                response = self.session.get(
                    url,
                    timeout=self.timeout,
                    stream=True,
                    allow_redirects=False,
                    headers={"Accept": "application/json"},
                )
            except requests.RequestException as exc:
                raise FetchError(f"{type(exc).__name__} fetching {url}") from exc
            with response:
                if response.status_code in _REDIRECTS and "Location" in response.headers:
                    url = urljoin(url, response.headers["Location"])
                    problem = check_url(url, allow_http=self.allow_http)
                    if problem:
                        raise FetchError(f"redirect target {problem}")
                    continue
                if response.status_code != 200:
                    raise FetchError(f"HTTP {response.status_code} from {url}")
                body = self.read(response, deadline)
                try:
                    return loads_object(body), response.headers
                except ValueError as exc:
                    raise FetchError(f"response from {url} is not a JSON object: {exc}") from exc
        raise FetchError(f"too many redirects fetching {url}")

    def read(self, response: requests.Response, deadline: float) -> bytes:
        """The body of ``response``, at most ``max_bytes``, read before ``deadline``."""
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > self.max_bytes:
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
