"""Configuration from environment variables (``JWT_GUARD_*`` by default).

Each variable maps to one option; values are parsed strictly and a bad value, or a variable
under the prefix that jwt_guard does not know (a typo), raises ``ConfigurationError`` naming
the variable.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import ConfigurationError
from ._issuers import Issuer
from ._tenants import IssuerTemplate

__all__ = [
    "ENV_VARIABLES",
    "middleware_options_from_env",
    "template_options",
    "verifier_options_from_env",
]


def _list(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _audience(value: str) -> str | list[str] | None:
    if value.strip().lower() == "none":
        return None
    items = _list(value)
    return items[0] if len(items) == 1 else items


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true/false")


def _float(value: str) -> float:
    number = float(value)
    if not 0 <= number < float("inf"):
        raise ValueError("expected a finite number >= 0")
    return number


def _int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError("expected an integer >= 0")
    return number


def _timeout(value: str) -> tuple[float, float]:
    parts = [_float(p) for p in _list(value)]
    if len(parts) == 1:
        return parts[0], parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise ValueError("expected 'seconds' or 'connect,read'")


def _mode(value: str) -> str:
    lowered = value.strip().lower()
    if lowered not in ("off", "allowed", "required"):
        raise ValueError("expected off, allowed or required")
    return lowered


def _urls(value: str) -> str | list[str]:
    items = _list(value)
    return items[0] if len(items) == 1 else items


def _issuers(value: str) -> list[Any]:
    items = json.loads(value)
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ValueError("expected a JSON list of objects")
    try:  # an object with "template" is an IssuerTemplate, any other an Issuer
        return [IssuerTemplate(**item) if "template" in item else Issuer(**item) for item in items]
    except TypeError as exc:
        raise ValueError(str(exc)) from None


def _json_object(value: str) -> dict[str, Any]:
    found = json.loads(value)
    if not isinstance(found, dict):
        raise ValueError("expected a JSON object")
    return found


Parser = Callable[[str], Any]

# variable suffix -> (where it goes, option name, parser, help)
ENV_VARIABLES: dict[str, tuple[str, str, Parser, str]] = {
    "ISSUER": ("verifier", "issuer", str, "the trusted issuer (exact 'iss')"),
    "AUDIENCE": (
        "verifier",
        "audience",
        _audience,
        "accepted audiences, comma-separated ('none': no audience check)",
    ),
    "JWKS_URL": ("verifier", "jwks_url", str, "JWKS URL (omit for OpenID discovery)"),
    "ISSUERS": (
        "verifier",
        "issuers",
        _issuers,
        "several issuers: JSON list of Issuer (or IssuerTemplate) fields",
    ),
    "ISSUER_TEMPLATE": (
        "template",
        "template",
        _list,
        "multi-tenant issuer template(s) with one {placeholder}, comma-separated",
    ),
    "TENANTS": ("template", "tenants", _list, "allowed tenants of the template, comma-separated"),
    "ANY_TENANT": ("template", "any_tenant", _bool, "accept every tenant of the template"),
    "TENANT_CLAIM": (
        "template",
        "claim",
        str,
        "claim holding the tenant ('iss': cut out of iss)",
    ),
    "TENANT_PATTERN": ("template", "tenant_pattern", str, "regular expression a tenant matches"),
    "ALGORITHMS": ("verifier", "algorithms", _list, "allowed algorithms, comma-separated"),
    "LEEWAY": ("verifier", "leeway", _float, "clock-skew leeway in seconds"),
    "MAX_AGE": ("verifier", "max_age", _float, "maximum token age from iat, seconds"),
    "REQUIRE_EXP": ("verifier", "require_exp", _bool, "refuse tokens without exp"),
    "REQUIRED_CLAIMS": ("verifier", "required_claims", _list, "claims that must be present"),
    "TYP": ("verifier", "typ", str, "required typ header, e.g. at+jwt"),
    "SCOPE_CLAIMS": ("verifier", "scope_claims", _list, "claim paths holding scopes"),
    "MAX_TOKEN_SIZE": ("verifier", "max_token_size", _int, "longest token accepted"),
    "TOKEN_CACHE_SIZE": ("verifier", "token_cache_size", _int, "verified tokens cached (0: off)"),
    "TOKEN_CACHE_BYTES": (
        "verifier",
        "token_cache_bytes",
        _int,
        "token cache memory budget, bytes (0: off)",
    ),
    "JWKS_TIMEOUT": ("jwks", "timeout", _timeout, "connect[,read] timeout in seconds"),
    "JWKS_TOTAL_TIMEOUT": ("jwks", "total_timeout", _float, "bound on one whole fetch"),
    "JWKS_MAX_BYTES": ("jwks", "max_bytes", _int, "largest JWKS response accepted"),
    "JWKS_DEFAULT_TTL": ("jwks", "default_ttl", _float, "key-set lifetime without max-age"),
    "JWKS_MIN_TTL": ("jwks", "min_ttl", _float, "lower bound on the key-set lifetime"),
    "JWKS_MAX_TTL": ("jwks", "max_ttl", _float, "upper bound on the key-set lifetime"),
    "JWKS_COOLDOWN": ("jwks", "cooldown", _float, "seconds between unknown-kid refetches"),
    "JWKS_MAX_STALE": ("jwks", "max_stale", _float, "serve keys this long past expiry"),
    "ALLOW_HTTP": ("jwks", "allow_http", _bool, "allow http:// key sources off loopback"),
    "EXCLUDE_PATHS": ("middleware", "exclude_paths", _list, "exact open paths"),
    "EXCLUDE_PREFIXES": ("middleware", "exclude_prefixes", _list, "open path prefixes"),
    "ALLOW_PREFLIGHT": ("middleware", "allow_preflight", _bool, "let CORS preflight through"),
    "OPTIONAL": ("middleware", "optional", _bool, "let requests without a token through"),
    "REALM": ("middleware", "realm", str, "WWW-Authenticate realm"),
    "PREFETCH": ("middleware", "prefetch", _bool, "fetch keys at start-up"),
    "RESOURCE": (
        "middleware",
        "resource",
        str,
        "this API's resource URI (RFC 9728 metadata, default audience)",
    ),
    "RESOURCE_METADATA": (
        "middleware",
        "resource_metadata",
        _json_object,
        "more RFC 9728 metadata fields, a JSON object",
    ),
    "DPOP": ("middleware", "dpop", _mode, "DPoP: off, allowed or required"),
    "DPOP_ALGORITHMS": ("dpop", "algorithms", _list, "DPoP proof algorithms, comma-separated"),
    "DPOP_IAT_WINDOW": ("dpop", "iat_window", _float, "DPoP proof iat window, seconds"),
    "DPOP_NONCE": ("middleware", "dpop_nonce", _bool, "DPoP server nonces, per-process secret"),
    "DPOP_NONCE_SECRET": (
        "middleware",
        "dpop_nonce",
        str,
        "DPoP server nonces, the secret all workers share",
    ),
    "PUBLIC_URL": ("middleware", "public_url", _urls, "URL(s) clients call, comma-separated"),
    "TRUSTED_PROXIES": ("middleware", "trusted_proxies", _list, "proxy addresses/networks"),
    "MTLS": ("middleware", "mtls", _mode, "certificate-bound tokens: off, allowed or required"),
    "MTLS_HEADER": ("middleware", "mtls_header", str, "header a trusted proxy sends the cert in"),
    # The shared store (TokenVerifier(store={...}), see jwt_guard.stores.fleet.Stores.from_url).
    "STORE_URL": (
        "store",
        "url",
        str,
        "shared store of a fleet: redis://, rediss:// or unix:// (unset: this process only)",
    ),
    "FLEET_SECRET": (
        "store",
        "secret",
        str,
        "fleet secret sealing shared key sets, 32+ bytes (unset: key sets not shared)",
    ),
    "STORE_NAMESPACE": ("store", "namespace", str, "prefix of every key in the store"),
    "STORE_TIMEOUT": ("store", "timeout", _float, "seconds allowed for each store call"),
    "STORE_MAX_STALENESS": (
        "store",
        "max_staleness",
        _float,
        "seconds the deny-list replica may go unconfirmed",
    ),
    "STORE_ON_STALE": (
        "store",
        "on_stale",
        str,
        "past max_staleness: refuse (503) or accept",
    ),
}


# Variables whose value never appears in a message (a URL may hold a password too).
_SECRET = frozenset({"FLEET_SECRET", "STORE_URL"})


def _read(prefix: str, environ: Mapping[str, str] | None) -> dict[str, dict[str, Any]]:
    env = os.environ if environ is None else environ
    found: dict[str, dict[str, Any]] = {
        "verifier": {},
        "jwks": {},
        "middleware": {},
        "template": {},
        "dpop": {},
        "store": {},
    }
    seen: dict[tuple[str, str], str] = {}
    for name, raw in env.items():
        if not name.startswith(prefix):
            continue
        suffix = name[len(prefix) :]
        spec = ENV_VARIABLES.get(suffix)
        if spec is None:
            close = difflib.get_close_matches(suffix, ENV_VARIABLES, n=1)
            hint = f"; did you mean {prefix}{close[0]}?" if close else ""
            raise ConfigurationError(f"unknown setting {name}{hint}")
        where, option, parse, _help = spec
        if (where, option) in seen:
            raise ConfigurationError(
                f"{seen[where, option]} and {name} both set {option}: set one of them"
            )
        seen[where, option] = name
        try:
            found[where][option] = parse(raw)
        except (ValueError, TypeError) as exc:
            shown = "<hidden>" if suffix in _SECRET else repr(raw[:80])
            raise ConfigurationError(f"{name}={shown}: {exc}") from None
    return found


def verifier_options_from_env(
    prefix: str = "JWT_GUARD_", environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """``TokenVerifier`` keyword arguments from the environment (middleware ones ignored).

    The ``IssuerTemplate`` variables come back under ``"issuer_template"`` (a dict of its
    options), for :func:`template_options` to turn into ``issuers=`` once the caller's
    overrides are in.
    """
    found = _read(prefix, environ)
    options = found["verifier"]
    if found["jwks"]:
        options["jwks_options"] = found["jwks"]
    if found["template"]:
        options["issuer_template"] = found["template"]
    if found["store"]:  # TokenVerifier builds the stores (a missing URL is named there)
        options["store"] = found["store"]
    return options


def template_options(
    prefix: str, options: dict[str, Any], template: dict[str, Any]
) -> dict[str, Any]:
    """``options`` with ``issuers=[IssuerTemplate(...)]`` built from the template variables,
    ``audience`` and ``jwks_url`` (the template's one key source)."""
    if "template" not in template:
        raise ConfigurationError(
            f"{prefix}{', '.join(_names(prefix, template))} need {prefix}ISSUER_TEMPLATE"
        )
    for other in ("issuer", "issuers"):
        if other in options:
            raise ConfigurationError(
                f"{prefix}ISSUER_TEMPLATE with {prefix}{other.upper()}: put every issuer into "
                f'{prefix}ISSUERS instead (an object with "template" is an IssuerTemplate)'
            )
    if "audience" not in options:
        raise ConfigurationError(
            f"set {prefix}AUDIENCE (the value 'none' turns the audience check off)"
        )
    rest = dict(options)
    fields = dict(template)
    fields["audience"] = rest.pop("audience")
    if "jwks_url" in rest:
        fields["jwks_url"] = rest.pop("jwks_url")
    else:
        raise ConfigurationError(
            f"set {prefix}JWKS_URL: the one key set every tenant of {prefix}ISSUER_TEMPLATE "
            "shares (Entra: https://login.microsoftonline.com/common/discovery/v2.0/keys)"
        )
    if len(fields["template"]) == 1:
        fields["template"] = fields["template"][0]
    rest["issuers"] = [IssuerTemplate(**fields)]
    return rest


def _names(prefix: str, template: dict[str, Any]) -> list[str]:
    by_option = {spec[1]: suffix for suffix, spec in ENV_VARIABLES.items() if spec[0] == "template"}
    return [by_option[name] for name in template]


def middleware_options_from_env(
    prefix: str = "JWT_GUARD_", environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The middleware's own keyword arguments from the environment (the sender-binding ones,
    ``dpop`` ..., included; ``JWT_GUARD_DPOP_*`` proof options as ``dpop_options``)."""
    found = _read(prefix, environ)
    options = found["middleware"]
    if found["dpop"]:
        options["dpop_options"] = found["dpop"]
    return options
