"""Key sources: where a verifier's keys come from. The remote JWKS client (``jwks``) and its HTTP
(``_http``: the only network I/O of the package).

May import: ``keys`` and the foundation modules.
"""
