"""Sender-constrained tokens: DPoP proofs (RFC 9449) and certificate-bound tokens (RFC 8705).

Framework-free checks that take a request's method, public URL, header values and TLS facts;
the guard and the adapters decide where those come from (never from a raw ``Host`` header, and a
client-certificate header only from a trusted proxy).

* :mod:`jwt_guard.binding.dpop`: ``DPoPVerifier`` (every check of RFC 9449 section 4.3), the
  RFC 7638 thumbprint, the ``ath`` hash and the ``DPoP`` challenge;
* :mod:`jwt_guard.binding.nonce`: ``DPoPNonces``, stateless server nonces (RFC 9449 section 9);
* :mod:`jwt_guard.binding.mtls`: the ``x5t#S256`` thumbprint of a client certificate and its
  check against the token's ``cnf`` (RFC 8705), from PEM, DER, ``Client-Cert`` (RFC 9440) or
  Envoy's ``X-Forwarded-Client-Cert``.

The replay store a ``DPoPVerifier`` remembers proofs in is a :mod:`jwt_guard.stores` one
(:class:`~jwt_guard.stores.memory.MemoryReplayStore` by default, or
:class:`~jwt_guard.stores.redis.RedisReplayStore` for a fleet); the errors are in
:mod:`jwt_guard.errors`.
"""
