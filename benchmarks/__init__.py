"""jwt_guard benchmark suite (issue 5): ``python -m benchmarks [--quick] [--json PATH]``.

Every ratio is measured against its baseline in the same run, with the contenders interleaved
round by round; a contender's cost is its best (minimum) round, which is the figure least
disturbed by other work on a shared machine. Batches are timed with ``time.thread_time`` (the
CPU time of the benchmarking thread), so time spent descheduled does not count; the JWKS
section, which is about waiting, uses wall time. The printed table marks each target PASS or
FAIL and the JSON (``--json``, default ``benchmarks/results.json``) holds every figure.

Sections:

* :mod:`benchmarks.verify_bench` - ``TokenVerifier.verify`` per algorithm against the
  ``cryptography`` floor, python-jose and PyJWT; the token cache; 1 key vs 100 keys.
* :mod:`benchmarks.app_bench` - Starlette behind ``JWTGuard`` and Flask behind ``JWTGuardWSGI``,
  driven in process, against the bare app and the PyJWT reference middleware
  (:mod:`benchmarks.reference_pyjwt`); a minimal middleware (header -> dict -> scope, no
  verification) shows the ceiling any token middleware can reach on that app.
* :mod:`benchmarks.jwks_bench` - JWKS behaviour counted on the ``LocalIssuer`` server.
"""
