"""Helpers every adapter test uses: a verifier trusting a local issuer, the challenge parser."""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Iterator
from typing import Any

import requests

from jwt_guard import TokenVerifier
from jwt_guard.testing import LocalIssuer, SigningKey, generate_key

__all__ = ["parse_challenge", "shared_key", "verifier_for"]


# Flags for a test session run inside this one (pytester): the plugins this process does not
# load (pyproject's addopts; the inner session reads no pyproject) stay out of it too. pytester
# restores sys.modules after each run, so a plugin it loaded would be imported again every time.
INNER_PYTEST = (
    "-p",
    "no:cacheprovider",
    "-p",
    "no:asyncio",
    "-p",
    "no:hypothesispytest",
    "-p",
    "no:anyio",
    "-p",
    "no:faker",
)


def shared_key(alg: str = "RS256") -> SigningKey:
    """One generated key per algorithm for the whole run, for a ``LocalIssuer(keys=[...])``
    whose test needs its server rather than a fresh key: generating an RSA key is most of what
    starting an issuer costs. Not for two issuers in one test (they would share a kid)."""
    return _generated(alg)  # shared_key() and shared_key("RS256") are one key


@functools.cache
def _generated(alg: str) -> SigningKey:
    return generate_key(alg)


@contextlib.contextmanager
def verifier_for(issuer: LocalIssuer, **options: Any) -> Iterator[TokenVerifier]:
    """A verifier trusting ``issuer`` whose JWKS session is closed afterwards."""
    with requests.Session() as session:
        yield TokenVerifier(
            issuer=issuer.issuer,
            audience=issuer.audience,
            jwks_url=issuer.jwks_url,
            jwks_options={"session": session},
            **options,
        )


_PARAM = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_challenge(value: str) -> tuple[str, dict[str, str]]:
    """``'Bearer realm="api", error="x"'`` -> ``("Bearer", {"realm": "api", "error": "x"})``."""
    scheme, _, rest = value.partition(" ")
    return scheme, {k: re.sub(r"\\(.)", r"\1", v) for k, v in _PARAM.findall(rest)}
