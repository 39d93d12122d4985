"""JWKS behaviour, counted on the ``LocalIssuer`` server: requests it served, loop lag, waits.

The verifier's clocks are a :class:`ManualClock` (real time plus an offset, for the wall clock
and the monotonic clock alike) so the run can step past the cool-down and the refresh-ahead point
without waiting for them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from typing import Any

from jwt_guard import JWTGuardError, TokenVerifier
from jwt_guard.testing import JWKSFault, LocalIssuer

from ._fixtures import Bench, unknown_kid_token
from ._report import Row, verdict

SECTION = "JWKS behaviour (counted on the LocalIssuer server)"
COOLDOWN = 30.0


class ManualClock:
    """``time.time()`` (call it) and ``time.monotonic()`` (:meth:`monotonic`), plus an offset
    that only :meth:`advance` changes."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


async def _gather(
    verifier: TokenVerifier, tokens: list[str], chunk: int
) -> collections.Counter[str]:
    outcomes: collections.Counter[str] = collections.Counter()
    for i in range(0, len(tokens), chunk):
        results = await asyncio.gather(
            *(verifier.averify(t) for t in tokens[i : i + chunk]), return_exceptions=True
        )
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, JWTGuardError):
                raise r
            outcomes["verified" if not isinstance(r, BaseException) else type(r).__name__] += 1
    return outcomes


def _outcomes(counter: collections.Counter[str]) -> str:
    return ", ".join(f"{n} {k}" for k, n in counter.most_common())


async def _scenario(issuer: LocalIssuer, mode: Any, results: dict[str, Any]) -> list[Row]:
    clock = ManualClock()
    verifier = TokenVerifier(
        issuer=issuer.issuer,
        audience=issuer.audience,
        jwks_url=issuer.jwks_url,
        algorithms=["RS256"],
        clock=clock,
        monotonic=clock.monotonic,
        jwks_options={"cooldown": COOLDOWN},
    )
    source: Any = verifier.key_sources()[issuer.issuer]
    mint = issuer.mint
    rows: list[Row] = []

    # 1. a cold start: N concurrent averify, one fetch
    pool = [mint(expires_in=3600) for _ in range(min(mode.cold_start, 20))]
    tokens = [pool[i % len(pool)] for i in range(mode.cold_start)]
    before = issuer.jwks_requests
    outcomes = await _gather(verifier, tokens, chunk=len(tokens))
    fetches = issuer.jwks_requests - before
    ok = fetches == 1 and outcomes["verified"] == len(tokens)
    results["cold_start"] = {"requests": len(tokens), "fetches": fetches, "outcomes": outcomes}
    rows.append(
        Row(
            "jwks.cold_start",
            SECTION,
            f"{len(tokens)} concurrent averify at a cold start: JWKS fetches",
            f"{fetches} fetch",
            baseline=_outcomes(outcomes),
            target="exactly 1",
            status=verdict(ok),
        )
    )

    # 2. random unknown kids inside one cool-down: at most one extra fetch
    clock.advance(COOLDOWN + 1)  # (the start-up fetch starts no cool-down anyway)
    unknown = [unknown_kid_token(issuer.issuer, issuer.audience) for _ in range(mode.unknown_kids)]
    before = issuer.jwks_requests
    outcomes = await _gather(verifier, unknown, chunk=500)
    extra = issuer.jwks_requests - before
    ok = extra <= 1 and outcomes["UnknownKey"] == len(unknown)
    results["unknown_kids"] = {"tokens": len(unknown), "extra_fetches": extra, "outcomes": outcomes}
    rows.append(
        Row(
            "jwks.unknown_kids",
            SECTION,
            f"{len(unknown)} tokens with random unknown kids in one cool-down: extra fetches",
            f"{extra} fetch",
            baseline=_outcomes(outcomes),
            target="<= 1",
            status=verdict(ok),
        )
    )

    # 3. the JWKS endpoint takes `slow_delay` to answer a refetch for an unknown kid
    clock.advance(COOLDOWN + 1)
    known = [mint(expires_in=3600) for _ in range(40 if not mode.quick else 10)]
    lags: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            start = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append(time.perf_counter() - start - 0.001)

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)
    issuer.set_fault(JWKSFault.SLOW, delay=mode.slow_delay)
    before = issuer.jwks_requests
    started = time.perf_counter()
    slow = asyncio.create_task(verifier.averify(unknown_kid_token(issuer.issuer, issuer.audience)))
    await asyncio.sleep(0.01)
    during = 0
    latencies: list[float] = []
    spacing = mode.slow_delay / (2 * len(known))
    for token in known:  # fresh tokens (not in the token cache) whose key is cached
        t0 = time.perf_counter()
        await verifier.averify(token)
        latencies.append(time.perf_counter() - t0)
        during += not slow.done()
        await asyncio.sleep(spacing)
    with contextlib.suppress(JWTGuardError):  # UnknownKey, after the slow refetch
        await slow
    slow_seconds = time.perf_counter() - started
    await asyncio.sleep(0.01)
    stop.set()
    await tick
    issuer.set_fault(None)
    max_lag = max(lags) if lags else float("nan")
    fetched = issuer.jwks_requests - before
    results["slow_jwks"] = {
        "delay_s": mode.slow_delay,
        "refetch_seconds": slow_seconds,
        "refetches": fetched,
        "max_loop_lag_ms": max_lag * 1000,
        "ticks": len(lags),
        "cached_key_requests": len(known),
        "completed_during_fetch": during,
        "max_latency_ms": max(latencies) * 1000,
    }
    rows.append(
        Row(
            "jwks.slow_loop_lag",
            SECTION,
            f"JWKS answers in {mode.slow_delay:g}s: max event-loop lag (1 ms ticker)",
            f"{max_lag * 1000:.2f} ms",
            baseline=f"{len(lags)} ticks over {slow_seconds:.2f}s",
            target="<= 10 ms",
            status=verdict(max_lag <= 0.010 and slow_seconds >= 0.9 * mode.slow_delay),
        )
    )
    rows.append(
        Row(
            "jwks.slow_cached_requests",
            SECTION,
            "  ...meanwhile, requests whose keys are cached: completed",
            f"{during}/{len(known)}",
            baseline=f"max {max(latencies) * 1000:.2f} ms each",
            target="all",
            status=verdict(during == len(known) and fetched == 1),
        )
    )

    # 4. after warm-up, past refresh-ahead: the refresh runs in the background
    # The set lives cache_max_age seconds (the issuer's Cache-Control) and is due for a refresh
    # after refresh_ahead of that: step to halfway between refresh-ahead and expiry.
    fetched_at = source.status()["fetched_at"]
    ttl = float(issuer.cache_max_age or 300)
    clock.advance(ttl * (1 + source.refresh_ahead) / 2 - source.status()["age"])
    issuer.set_fault(JWKSFault.SLOW, delay=mode.slow_delay)  # a waiting request would show
    before = issuer.jwks_requests
    fresh = [mint(expires_in=3600) for _ in range(20 if not mode.quick else 5)]
    waits: list[float] = []
    for token in fresh:
        t0 = time.perf_counter()
        await verifier.averify(token)
        waits.append(time.perf_counter() - t0)
    deadline = time.perf_counter() + mode.slow_delay + 10
    while source.status()["fetched_at"] == fetched_at and time.perf_counter() < deadline:
        await asyncio.sleep(0.02)
    issuer.set_fault(None)
    refreshed = source.status()["fetched_at"] != fetched_at
    background = issuer.jwks_requests - before
    waited = sum(w >= mode.slow_delay / 2 for w in waits)
    results["refresh_ahead"] = {
        "requests": len(fresh),
        "waited_on_fetch": waited,
        "max_latency_ms": max(waits) * 1000,
        "background_fetches": background,
        "refreshed": refreshed,
    }
    rows.append(
        Row(
            "jwks.refresh_ahead",
            SECTION,
            "clock past refresh-ahead: requests that waited on a fetch",
            f"{waited}/{len(fresh)} waited",
            baseline=f"max {max(waits) * 1000:.2f} ms; {background} background fetch",
            target="0 wait, refreshed",
            status=verdict(waited == 0 and refreshed and background == 1),
        )
    )
    return rows


def run_jwks(bench: Bench, results: dict[str, Any]) -> list[Row]:
    """The JWKS behaviours, on an issuer of their own (its request counts start at zero)."""
    issuer = bench.rsa_issuer()
    try:
        section: dict[str, Any] = {}
        rows = asyncio.run(_scenario(issuer, bench.mode, section))
        results["jwks"] = section
        return rows
    finally:
        issuer.stop()
