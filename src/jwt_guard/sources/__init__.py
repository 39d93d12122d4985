"""Key sources: where a verifier's keys come from.

``base.KeySource`` is the interface (a ``Protocol``) the verifier calls; three implementations
ship here: ``static.StaticKeys`` (a JWK Set given in code), ``jwks.JWKSClient`` (a remote JWK
Set, directly or through OpenID discovery, tuned by ``options.JWKSOptions``) and
``file.JWKSFile`` (a JWK Set in a local file, re-read when it changes). An app may pass its own
source (``Issuer(key_source=...)``). Every key of every source is built by
``keys.jwk.KeySet.from_jwks``, the one key gate.

Inside ``jwks``: ``_policy`` (the clock-driven cache policy, jittered), ``_sharing`` (the steps
of a fetch through a fleet's key-set store), ``_singleflight`` (one fetch in a worker thread,
shared) and ``_http`` (the HTTP of the key sources).

May import: ``stores``, ``keys`` and the foundation modules.
"""

from __future__ import annotations

from .base import KeySource
from .file import JWKSFile
from .jwks import JWKSClient
from .options import JWKSOptions
from .static import StaticKeys

__all__ = ["JWKSClient", "JWKSFile", "JWKSOptions", "KeySource", "StaticKeys"]
