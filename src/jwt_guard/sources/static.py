"""The static key source: a JWK Set given in code, checked once, never fetched."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigurationError
from ..keys.jwk import KeySet

__all__ = ["StaticKeys"]


class StaticKeys:
    """A :class:`~jwt_guard.sources.base.KeySource` that never changes: one ``KeySet``, no I/O.

    ``TokenVerifier(jwks={...})`` and ``Issuer(jwks={...})`` build one (the set is checked
    strictly there: a malformed or weak key is a ``ConfigurationError``). Build one yourself to
    hand a fixed set to code that takes a key source.

    Args:
        keyset: the keys, from ``KeySet.from_jwks(jwks, ...)``.

    Example::

        source = StaticKeys(KeySet.from_jwks({"keys": [jwk]}, algorithms=["ES256"], strict=True))
        Issuer("https://idp.example.com/", "my-api", key_source=source)
    """

    name = "static"

    def __init__(self, keyset: KeySet) -> None:
        if type(keyset) is not KeySet:
            raise ConfigurationError(
                f"StaticKeys(keyset=...): must be a KeySet (KeySet.from_jwks(...)), "
                f"not {type(keyset).__name__!r}"
            )
        self.keyset = keyset

    def __repr__(self) -> str:
        return f"StaticKeys(<{len(self.keyset)} keys>)"  # never the keys: HMAC secrets

    def keys_for(self, kid: str | None) -> KeySet:
        """The fixed key set."""
        return self.keyset

    async def akeys_for(self, kid: str | None) -> KeySet:
        """The fixed key set."""
        return self.keyset

    def current(self, now: float | None = None) -> KeySet:
        """The fixed key set (``now`` does not matter)."""
        return self.keyset

    def prefetch(self) -> None:
        """Nothing to fetch."""

    async def aprefetch(self) -> None:
        """Nothing to fetch."""

    def status(self) -> dict[str, Any]:
        """Health snapshot: always usable."""
        return {
            "source": "static",
            "keys": len(self.keyset),
            "kids": sorted(self.keyset.kids),
            "stale": False,
            "usable": True,
            "last_error": None,
        }
