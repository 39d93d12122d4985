"""The token core: a token in, verified ``Claims`` or a precise ``JWTGuardError`` out.

Strict JWS parsing (``jws``), claims (``claims``), trusted issuers (``_issuers``), the
verified-token cache (``_tokencache``), ``TokenVerifier`` (``verifier``) and its configuration
from the environment (``_env``). Framework-free.

May import: ``sources``, ``keys`` and the foundation modules.
"""
