"""Protected-resource metadata (RFC 9728) for the middlewares' ``resource=`` option.

A resource server tells clients where to get tokens for it: the JSON document at
``/.well-known/oauth-protected-resource`` with the resource's path appended (RFC 9728 3.1:
``https://api.example.com/mcp`` -> ``https://api.example.com/.well-known/oauth-protected-resource/mcp``),
and a ``resource_metadata="<that URL>"`` parameter in every ``WWW-Authenticate`` challenge
(RFC 9728 5.1). MCP clients follow exactly this: the 401 names the document, the document names
the authorization server, whose token then carries the resource as its audience (RFC 8707).

Everything here is computed once from configuration: the URL from the resource URI itself, never
from a request's ``Host`` header (which anyone can set); the body is built on first use. The
document answers ``GET`` and ``HEAD`` at both the path-suffixed and the bare well-known path,
without any token; ``OPTIONS`` gets a CORS preflight answer (browser-based clients send a custom
header with their ``GET``), any other method 405.

DPoP (RFC 9449) fields come from the guard's DPoP settings when it has any: a ``dpop`` attribute
holding an object with ``algorithms`` (the proof algorithms accepted, e.g. a
``jwt_guard.binding.dpop.DPoPVerifier``) gives ``dpop_signing_alg_values_supported``, and a true
``dpop_required`` attribute (on the guard, or on that object as ``required``) gives
``dpop_bound_access_tokens_required: true``. Without them both fields are left out.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigurationError

__all__ = ["WELL_KNOWN", "Answer", "ProtectedResource", "check_resource", "dpop_fields"]

Answer = tuple[int, list[tuple[str, str]], bytes]
"""Status, headers, body: what the guard turns into an ``ErrorResponse`` (once)."""

WELL_KNOWN = "/.well-known/oauth-protected-resource"

_LOOPBACK = frozenset({"127.0.0.1", "localhost", "[::1]"})
_URL_CHARS = re.compile(r"[!#$&-;=?-\[\]_a-z~]+\Z", re.IGNORECASE).match  # RFC 3986, no space

# RFC 9728 section 2: the fields one may give, and what each value must be.
_STRINGS, _URL, _FLAG = "a list of strings", "an https URL", "True or False"
_FIELDS: dict[str, str] = {
    "authorization_servers": "a list of issuer URLs",
    "jwks_uri": _URL,
    "scopes_supported": _STRINGS,
    "resource_signing_alg_values_supported": _STRINGS,
    "resource_name": "a string",
    "resource_documentation": _URL,
    "resource_policy_uri": _URL,
    "resource_tos_uri": _URL,
    "tls_client_certificate_bound_access_tokens": _FLAG,
    "authorization_details_types_supported": _STRINGS,
    "signed_metadata": "a string (a JWT)",
}
# Fields jwt_guard writes itself, with where they come from.
_COMPUTED = {
    "resource": "resource=",
    "bearer_methods_supported": "the middleware (it reads the Authorization header only)",
    "dpop_signing_alg_values_supported": "the guard's DPoP settings",
    "dpop_bound_access_tokens_required": "the guard's DPoP settings",
}


def _where(owner: str, option: str) -> str:
    return f"{owner}[{option!r}]" if owner.startswith("settings.") else f"{owner}({option}=...)"


def check_resource(owner: str, value: object) -> str:
    """The resource URI (RFC 8707 2, RFC 9728 2): an absolute https URL without fragment, query
    or user information, host in lower case; plain http only on loopback (for tests)."""
    where = _where(owner, "resource")
    if not isinstance(value, str) or not value:
        raise ConfigurationError(
            f"{where}: must be this API's URL, e.g. 'https://api.example.com/mcp', "
            f"not {value!r:.80}"
        )
    if not _URL_CHARS(value):
        raise ConfigurationError(f"{where}: {value!r:.100} holds characters a URL cannot hold")
    parts = urlsplit(value)
    host = parts.hostname or ""
    if parts.scheme != "https" and not (
        parts.scheme == "http" and _host(parts.netloc) in _LOOPBACK
    ):
        raise ConfigurationError(
            f"{where}: {value!r:.100} must be an https:// URL (http:// only on loopback)"
        )
    if not host or parts.username is not None or parts.password is not None:
        raise ConfigurationError(f"{where}: {value!r:.100} needs a host and no user information")
    if parts.fragment or "#" in value:
        raise ConfigurationError(f"{where}: {value!r:.100} must not have a fragment (RFC 8707)")
    if parts.query or "?" in value:
        raise ConfigurationError(f"{where}: {value!r:.100} must not have a query")
    if parts.netloc != parts.netloc.lower():
        raise ConfigurationError(
            f"{where}: write the host of {value!r:.100} in lower case: clients compare the "
            "resource, and the audience is compared exactly"
        )
    if "/." in parts.path or "//" in parts.path:
        raise ConfigurationError(f"{where}: {value!r:.100} has a dot or empty path segment")
    return value


def _host(netloc: str) -> str:
    """``host`` of ``host:port`` (an IPv6 literal keeps its brackets)."""
    if netloc.startswith("["):
        return netloc[: netloc.find("]") + 1]
    return netloc.rsplit(":", 1)[0] if ":" in netloc else netloc


def _checked_fields(owner: str, fields: object) -> dict[str, Any]:
    where = _where(owner, "resource_metadata")
    if fields is None:
        return {}
    if not isinstance(fields, Mapping):
        raise ConfigurationError(
            f"{where}: must be a dict of RFC 9728 fields, e.g. "
            f"{{'scopes_supported': ['mcp:tools']}}, not {type(fields).__name__!r}"
        )
    checked: dict[str, Any] = {}
    for name, value in fields.items():
        if not isinstance(name, str):
            raise ConfigurationError(f"{where}: field names are strings, not {name!r:.60}")
        if name in _COMPUTED:
            raise ConfigurationError(f"{where}: {name!r} is written from {_COMPUTED[name]}")
        kind = _FIELDS.get(name)
        if kind is None:
            close = difflib.get_close_matches(name, [*_FIELDS, *_COMPUTED], n=1, cutoff=0.8)
            if close:
                raise ConfigurationError(
                    f"{where}: no RFC 9728 field {name!r:.60}; did you mean {close[0]!r}?"
                )
            try:  # an extension field: any JSON value
                json.dumps(value, allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise ConfigurationError(f"{where}[{name!r}]: not a JSON value ({exc})") from None
            checked[name] = value
            continue
        if not _fits(kind, value):
            raise ConfigurationError(f"{where}[{name!r}]: must be {kind}, not {value!r:.80}")
        checked[name] = list(value) if isinstance(value, (list, tuple)) else value
    return checked


def _fits(kind: str, value: object) -> bool:
    if kind == _FLAG:
        return isinstance(value, bool)
    if kind in (_STRINGS, "a list of issuer URLs"):
        return (
            isinstance(value, (list, tuple))
            and bool(value)
            and all(isinstance(v, str) and v and v.isprintable() for v in value)
        )
    if kind == _URL:
        return isinstance(value, str) and value.startswith(("https://", "http://"))
    return isinstance(value, str) and bool(value)


def dpop_fields(guard: object) -> dict[str, Any]:
    """The RFC 9728 DPoP fields from ``guard``'s DPoP settings (see the module docstring), or
    none."""
    dpop = getattr(guard, "dpop", None)
    if dpop is None:
        return {}
    fields: dict[str, Any] = {}
    algorithms = getattr(dpop, "algorithms", None)
    if isinstance(algorithms, (list, tuple)) and all(isinstance(a, str) for a in algorithms):
        fields["dpop_signing_alg_values_supported"] = list(algorithms)
    required = getattr(guard, "dpop_required", getattr(dpop, "required", False))
    if required is True:
        fields["dpop_bound_access_tokens_required"] = True
    return fields


class ProtectedResource:
    """One protected resource: its URI, its metadata URL, and the answers at the well-known
    paths.

    Args:
        owner: the middleware being configured, for messages.
        resource: the resource URI (see :func:`check_resource`).
        fields: more RFC 9728 fields (``scopes_supported``, ``resource_name``,
            ``resource_documentation``, ``authorization_servers``...).
        issuers: the verifier's exact issuers: ``authorization_servers`` unless given.
    """

    def __init__(
        self, owner: str, resource: object, fields: object, issuers: Sequence[str]
    ) -> None:
        self.resource = check_resource(owner, resource)
        parts = urlsplit(self.resource)
        suffix = "" if parts.path in ("", "/") else parts.path
        self.path = WELL_KNOWN + suffix
        self.paths = frozenset({self.path, WELL_KNOWN})
        self.url = f"{parts.scheme}://{parts.netloc}{self.path}"
        """The metadata URL: ``resource_metadata`` in every challenge."""
        self.fields = _checked_fields(owner, fields)
        if "authorization_servers" not in self.fields and issuers:
            self.fields["authorization_servers"] = list(issuers)

    def document(self, guard: object) -> dict[str, Any]:
        """The metadata document (``guard``'s DPoP settings included)."""
        servers = self.fields.get("authorization_servers")
        return {
            "resource": self.resource,
            **({"authorization_servers": servers} if servers is not None else {}),
            **self.fields,
            "bearer_methods_supported": ["header"],
            **dpop_fields(guard),
        }

    def answers(self, guard: object) -> dict[str, Answer]:
        """The answer to each method at the well-known paths (``""``: any other method)."""
        body = json.dumps(self.document(guard), separators=(",", ":")).encode()
        served = [
            ("content-type", "application/json"),
            ("cache-control", "public, max-age=3600"),
            ("access-control-allow-origin", "*"),
        ]
        document: Answer = (200, served, body)
        preflight: Answer = (
            204,
            [
                ("access-control-allow-origin", "*"),
                ("access-control-allow-methods", "GET, HEAD"),
                ("access-control-allow-headers", "*"),
                ("access-control-max-age", "86400"),
                ("allow", "GET, HEAD, OPTIONS"),
            ],
            b"",
        )
        refused: Answer = (
            405,
            [("allow", "GET, HEAD, OPTIONS"), ("content-type", "application/json")],
            b'{"error":"method_not_allowed"}',
        )
        return {"GET": document, "HEAD": document, "OPTIONS": preflight, "": refused}
