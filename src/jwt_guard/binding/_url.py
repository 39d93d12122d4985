"""URLs for DPoP's ``htu``: RFC 3986 normalisation, the configured public URL, the request URL.

``htu`` is compared with the URL of the request after syntax-based and scheme-based
normalisation (RFC 3986 6.2.2 and 6.2.3, as RFC 9449 4.3 advises), ignoring query and fragment:

* scheme and host are lower-cased; only ``http`` and ``https`` are accepted;
* the default port (80, 443) and an empty port are dropped; a port is a number up to 65535;
* percent-encoded unreserved characters are decoded (``%7E`` -> ``~``), other triplets get
  upper-case hex digits (``%2f`` -> ``%2F``, which stays distinct from ``/``);
* dot segments are removed (``/a/./b/../c`` -> ``/a/c``, after ``%2E`` became ``.``); an empty
  path is ``/``.

Nothing else is equivalent: a host with a trailing dot (``api.example.com.``) is another host,
userinfo (``user@``), a percent-encoded or non-ASCII host, and characters a URI cannot hold
are refused. The request side never comes from a ``Host`` header: :func:`public_base_url`
checks the configured public URL once and :func:`request_url` appends the request's path.
"""

from __future__ import annotations

import ipaddress
import re

from ..errors import ConfigurationError, InvalidRequest

__all__ = ["normalize_url", "public_base_url", "request_url", "strip_query"]

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://").match
_REG_NAME = re.compile(r"[a-z0-9\-._~]+\Z").match
_PORT = re.compile(r"[0-9]{0,5}\Z").match
_PATH = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*\Z").match
_TRIPLET = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
_UNRESERVED = frozenset(_UNRESERVED_BYTES)
_PATH_SAFE = _UNRESERVED_BYTES + b"!$&'()*+,;=:@/%"  # what request_url keeps of a raw path
_DEFAULT_PORTS = {"http": "80", "https": "443"}
MAX_URL_LENGTH = 8192


def strip_query(url: str) -> str:
    """``url`` without its query and fragment (RFC 9449 compares ``htu`` without them)."""
    cut = len(url)
    for mark in ("?", "#"):
        at = url.find(mark)
        if 0 <= at < cut:
            cut = at
    return url[:cut]


def _triplet(match: re.Match[str]) -> str:
    code = int(match.group(1), 16)
    return chr(code) if code in _UNRESERVED else "%" + match.group(1).upper()


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4 for an absolute path (one that starts with ``/``)."""
    segments = path[1:].split("/")
    if "." not in segments and ".." not in segments:
        return path
    out: list[str] = []
    last = len(segments) - 1
    for i, segment in enumerate(segments):
        if segment == "..":
            if out:
                out.pop()
        elif segment != ".":
            out.append(segment)
            continue
        if i == last:  # a final "." or ".." leaves a directory: "/a/b/.." -> "/a/"
            out.append("")
    return "/" + "/".join(out)


def _host(authority: str) -> tuple[str, str]:
    """``(host, port)`` of an authority without userinfo; host lower-cased, port as written."""
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise ValueError("unterminated IPv6 literal")
        literal, rest = authority[1:end].lower(), authority[end + 1 :]
        try:
            ipaddress.IPv6Address(literal)  # no zone ids, no IPvFuture
        except ValueError:
            raise ValueError("invalid IPv6 literal") from None
        host = f"[{literal}]"
        if rest and not rest.startswith(":"):
            raise ValueError("junk after the IPv6 literal")
        return host, rest[1:]
    host, _, port = authority.partition(":")
    host = host.lower()
    if not _REG_NAME(host):
        raise ValueError("host is empty or holds characters a host name cannot hold")
    return host, port


def normalize_url(url: str) -> str:
    """``scheme://host[:port]/path`` of an absolute ``http(s)`` URL, normalised (module doc).

    The query and fragment are dropped. Raises ``ValueError`` for anything that is not such a
    URL (no scheme, userinfo, a bad host or port, characters outside the URI syntax).
    """
    if not isinstance(url, str):
        raise ValueError(f"URL is not a string but {type(url).__name__}")
    if len(url) > MAX_URL_LENGTH or not url.isascii() or not url.isprintable() or " " in url:
        raise ValueError("URL is too long or holds characters a URI cannot hold")
    url = strip_query(url)
    match = _SCHEME(url)
    if match is None:
        raise ValueError("URL is not absolute (no scheme://)")
    scheme = match.group(1).lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError("URL scheme is not http or https")
    rest = url[match.end() :]
    slash = rest.find("/")
    authority, path = (rest, "/") if slash < 0 else (rest[:slash], rest[slash:])
    if "@" in authority:
        raise ValueError("URL holds userinfo")
    host, port = _host(authority)
    if not _PORT(port):
        raise ValueError("URL port is not a number")
    if port:
        number = int(port)
        if not 0 < number <= 65535:
            raise ValueError("URL port is out of range")
        port = str(number)
    if port == _DEFAULT_PORTS[scheme]:
        port = ""
    if not _PATH(path):
        raise ValueError("URL path holds characters a URI path cannot hold")
    if "%" in path:
        path = _TRIPLET.sub(_triplet, path)
    path = _remove_dot_segments(path)
    return f"{scheme}://{host}:{port}{path}" if port else f"{scheme}://{host}{path}"


def public_base_url(value: object, owner: str = "DPoPVerifier", name: str = "public_url") -> str:
    """Check a configured public URL (``https://api.example.com`` or with a path prefix) once.

    Returns it normalised without a trailing ``/``; anything but an absolute ``http(s)`` URL
    without query, fragment or userinfo is a ``ConfigurationError``.
    """
    where = f"{owner}({name}=...)"
    if not isinstance(value, str):
        raise ConfigurationError(f"{where}: must be a URL string, not {type(value).__name__!r}")
    if value != strip_query(value):
        raise ConfigurationError(f"{where}: {value!r} must not hold a query or fragment")
    try:
        normal = normalize_url(value)
    except ValueError as exc:
        raise ConfigurationError(
            f"{where}: {value!r} is not an absolute http(s) URL such as "
            f"'https://api.example.com' ({exc})"
        ) from None
    return normal.rstrip("/")


def request_url(base: str, path: str | bytes) -> str:
    """The public URL of a request: the checked ``base`` and the request's raw path.

    ``path`` is the path as received (percent-encoded, ASGI ``raw_path`` or WSGI
    ``REQUEST_URI``/``RAW_URI``); its query is dropped, and bytes a URI path cannot hold are
    percent-encoded (UTF-8 for ``str``). A target that is not a path (an absolute-form
    ``https://other.example/...`` or ``*``) raises ``InvalidRequest``: the host of the public
    URL is always the configured one.
    """
    raw = path.encode("utf-8") if isinstance(path, str) else bytes(path)
    if not raw.startswith(b"/"):
        raise InvalidRequest("request target is not an absolute path")
    for mark in (b"?", b"#"):
        at = raw.find(mark)
        if at >= 0:
            raw = raw[:at]
    if raw.translate(None, _PATH_SAFE):  # something to percent-encode
        return base + "".join(chr(b) if b in _PATH_SAFE else f"%{b:02X}" for b in raw)
    return base + raw.decode("ascii")
