"""Verification keys: a JWK parsed strictly into key objects bound to their algorithms (``jwk``),
and the algorithm table (``algorithms``, the only module that imports python-jose).

May import: the foundation modules (``errors``, ``_codec``, ...).
"""
