"""The verified-token cache: bounded by count and by memory, first in first out.

The memory bound rests on ``entry_cost``, an estimate made once per entry; these tests measure
the real memory (tracemalloc) of entries of the worst shapes a token can take and check that the
estimate is never below it, and that a full cache never holds more than its byte budget.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from _core_helpers import (
    AUDIENCE,
    ISSUER,
    Clock,
    Key,
    claims_at,
    make_key,
    token,
    traced_memory,
)
from jwt_guard import JWTGuard, TokenVerifier
from jwt_guard.core._tokencache import DEFAULT_CACHE_BYTES

LIMIT = 8192  # the default max_token_size: the largest token an attacker can make us cache
ENTRIES = 6
"""Entries per shape measured: one warms up, the rest are traced. What an entry holds is the
same for each (measured: the held/estimate ratio agrees to three digits at 5, 7 and 15 traced
entries, every shape), and tracing is the slow part, so five measure it as well as fifteen."""


@pytest.fixture(scope="module")
def key() -> Key:
    return make_key("HS256", "hs-1")


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _claims(clock: Clock, i: int, **extra: Any) -> dict[str, Any]:
    return claims_at(clock(), jti=f"t-{i:06d}", **extra)


def _filled(
    key: Key, clock: Clock, i: int, item: str, *, claim: str = "x", wrap: str = "[]"
) -> str:
    """A token holding ``item`` repeated in one array (or object) until it is nearly LIMIT long."""
    head = json.dumps(_claims(clock, i), separators=(",", ":"))[:-1]

    def build(n: int) -> str:
        body = ",".join(item.replace("#", str(k)) for k in range(n))
        if not wrap:  # the items are members of the payload itself: it stays flat
            return token(key, f"{head},{body}}}".encode())
        return token(key, f'{head},"{claim}":{wrap[0]}{body}{wrap[1]}}}'.encode())

    fits = _FITS.get((item, claim, wrap))
    if fits is None:  # the largest n that fits, found once per shape (every i is as long)
        low, high = 1, LIMIT
        while low < high:
            middle = (low + high + 1) // 2
            low, high = (middle, high) if len(build(middle)) <= LIMIT else (low, middle - 1)
        fits = _FITS[item, claim, wrap] = low
    return build(fits)


_FITS: dict[tuple[str, str, str], int] = {}


# The worst shapes per byte of token, as measured: containers, numbers, short strings, scopes.
SHAPES: dict[str, Callable[[Key, Clock, int], str]] = {
    "typical": lambda k, c, i: token(
        k,
        _claims(
            c,
            i,
            scope="openid email read:items write:items",
            email="john.smith@example.com",
            name="John Smith",
            realm_access={"roles": ["offline_access", "uma_authorization", "admin"]},
            resource_access={"account": {"roles": ["manage-account", "view-profile"]}},
        ),
    ),
    "empty-objects": lambda k, c, i: _filled(k, c, i, "{}"),
    "one-member-objects": lambda k, c, i: _filled(k, c, i, '{"a":0}'),
    "distinct-member-objects": lambda k, c, i: _filled(k, c, i, '{"#":0}'),
    "objects-in-objects": lambda k, c, i: _filled(k, c, i, '{"a":{"b":1}}'),
    "arrays-of-one": lambda k, c, i: _filled(k, c, i, "[0]"),
    "deep-arrays": lambda k, c, i: _filled(k, c, i, "[" * 12 + "1" + "]" * 12),
    "small-numbers": lambda k, c, i: _filled(k, c, i, "1000"),
    "floats": lambda k, c, i: _filled(k, c, i, "0.5"),
    "short-strings": lambda k, c, i: _filled(k, c, i, '"ab"'),
    "non-ascii-strings": lambda k, c, i: _filled(k, c, i, '"\u0100"'),
    "astral-strings": lambda k, c, i: _filled(k, c, i, '"\U0001f600"'),
    "wide-object": lambda k, c, i: _filled(k, c, i, '"k#":"ab"', wrap="{}"),
    "scope-list": lambda k, c, i: _filled(k, c, i, '"s#"', claim="scp"),
    "scope-string": lambda k, c, i: token(
        k, _claims(c, i, scope=" ".join(f"s{n}" for n in range(1100)))
    ),
    # Flat payloads (no nested object or array) are costed from their member count, not their
    # bytes: many members, distinct numbers, and commas that are only text.
    "flat-wide": lambda k, c, i: _filled(k, c, i, '"k#":"ab"', wrap=""),
    "flat-numbers": lambda k, c, i: _filled(k, c, i, '"k#":1#', wrap=""),
    "flat-commas": lambda k, c, i: token(k, _claims(c, i, x="," * 5000)),
}


class _Requests:
    """The real ASGI middleware in front of a no-op app: what a cached entry holds in
    production, the adapter's per-token objects (``request.user``, ``request.auth``) included."""

    def __init__(self, verifier: TokenVerifier) -> None:
        async def app(scope: Any, receive: Any, send: Any) -> None:
            assert scope["user"].is_authenticated

        self.guard = JWTGuard(app, verifier=verifier)

    def run(self, tokens: list[str]) -> None:
        async def requests() -> None:
            for tok in tokens:
                scope = {
                    "type": "http",
                    "method": "GET",
                    "path": "/",
                    "headers": [(b"authorization", f"Bearer {tok}".encode())],
                }
                await self.guard(scope, _no_receive, _no_send)

        asyncio.run(requests())


async def _no_receive() -> Any:
    raise AssertionError("the app reads no body")


async def _no_send(message: Any) -> None:
    raise AssertionError("an accepted request is answered by the app, which sends nothing")


def _held(run: Callable[[], None]) -> int:
    """Bytes still allocated after ``run()`` (tracemalloc), garbage collected first."""
    with traced_memory() as traced:
        before = traced()
        run()
        return traced() - before


def _verifier(key: Key, clock: Clock, **options: Any) -> TokenVerifier:
    return TokenVerifier(issuer=ISSUER, audience=AUDIENCE, jwks=key.jwks(), clock=clock, **options)


def _costs(verifier: TokenVerifier) -> Iterator[int]:
    cache = verifier._cache
    assert cache is not None
    return iter(cache.costs())


@pytest.mark.parametrize("shape", list(SHAPES))
def test_the_estimate_is_never_below_what_an_entry_holds(
    key: Key, clock: Clock, shape: str
) -> None:
    verifier = _verifier(key, clock, token_cache_size=100, token_cache_bytes=1 << 40)
    tokens = [SHAPES[shape](key, clock, i) for i in range(ENTRIES)]
    assert all(len(tok) <= LIMIT for tok in tokens)
    requests = _Requests(verifier)
    requests.run(tokens[:1])  # first-time allocations (loop machinery, caches) out of the count
    held = _held(lambda: requests.run(tokens[1:])) / (ENTRIES - 1)
    assert len(verifier._cache or ()) == ENTRIES
    assert held <= min(_costs(verifier)), f"{shape}: holds {held:.0f} bytes an entry"
    if shape == "typical":  # and a typical token is not counted many times over
        assert max(_costs(verifier)) <= 2.5 * held


def test_the_issue_case_a_token_of_empty_objects_holds_little(key: Key, clock: Clock) -> None:
    # A 7 KB token with 1,750 `{}` held 197 KB an entry (800 MB for 4,096): every empty object
    # and array is now one shared read-only object; what is left is the array's own slots.
    verifier = _verifier(key, clock, token_cache_bytes=1 << 40)
    tokens = [SHAPES["empty-objects"](key, clock, i) for i in range(ENTRIES)]
    requests = _Requests(verifier)
    requests.run(tokens[:1])
    held = _held(lambda: requests.run(tokens[1:])) / (ENTRIES - 1)
    assert held < 40_000


def test_a_full_cache_holds_no_more_than_its_byte_budget(key: Key, clock: Clock) -> None:
    budget = 2 * 1024 * 1024
    verifier = _verifier(key, clock, token_cache_bytes=budget)  # count limit: 4096, far off
    # 24 x ~175 KB: twice the budget, had the cache no byte bound (it would hold all 24)
    worst = [SHAPES["one-member-objects"](key, clock, i) for i in range(24)]
    requests = _Requests(verifier)
    held = _held(lambda: requests.run(worst))
    cache = verifier._cache
    assert cache is not None
    assert cache.bytes <= budget
    assert cache.bytes == sum(_costs(verifier))
    assert 0 < len(cache) < 20
    assert held <= budget


def test_the_default_budget_holds_the_default_count_of_typical_tokens(
    key: Key, clock: Clock
) -> None:
    verifier = _verifier(key, clock)
    tok = SHAPES["typical"](key, clock, 0)
    verifier.verify(tok)
    (cost,) = _costs(verifier)
    assert 4096 * cost <= DEFAULT_CACHE_BYTES


def test_the_oldest_tokens_go_first(key: Key, clock: Clock) -> None:
    tokens = [token(key, _claims(clock, i)) for i in range(4)]
    probe = _verifier(key, clock)
    probe.verify(tokens[0])
    (cost,) = _costs(probe)
    verifier = _verifier(key, clock, token_cache_bytes=3 * cost + cost // 2)
    first = [verifier.verify(tok) for tok in tokens]
    again = [verifier.verify(tok) for tok in tokens[1:]]
    assert again == first[1:]
    assert all(a is b for a, b in zip(again, first[1:], strict=True))  # from the cache
    assert verifier.verify(tokens[0]) is not first[0]  # pushed out by the fourth, verified anew


def test_a_token_over_the_whole_budget_is_verified_every_time(key: Key, clock: Clock) -> None:
    small = token(key, _claims(clock, 0))
    big = SHAPES["one-member-objects"](key, clock, 1)
    verifier = _verifier(key, clock, token_cache_bytes=64 * 1024)
    assert verifier.verify(small) is verifier.verify(small)
    assert verifier.verify(big) is not verifier.verify(big)
    assert verifier.verify(small) is verifier.verify(small)  # not pushed out by the big one


def test_a_byte_budget_of_zero_turns_the_cache_off(key: Key, clock: Clock) -> None:
    verifier = _verifier(key, clock, token_cache_bytes=0)
    tok = token(key, _claims(clock, 0))
    assert verifier.verify(tok) is not verifier.verify(tok)
    assert "cache=off" in repr(verifier)


def test_entries_dropped_on_expiry_leave_the_accounting(key: Key, clock: Clock) -> None:
    verifier = _verifier(key, clock, leeway=0)
    tok = token(key, _claims(clock, 0))
    verifier.verify(tok)
    cache = verifier._cache
    assert cache is not None
    assert cache.bytes > 0
    clock.advance(300)
    assert cache.get(tok, clock(), clock.monotonic()) is None
    assert (len(cache), cache.bytes) == (0, 0)


def test_concurrent_inserts_keep_both_bounds(key: Key, clock: Clock) -> None:
    tokens = [[token(key, _claims(clock, 100 * t + i)) for i in range(40)] for t in range(8)]
    probe = _verifier(key, clock)
    probe.verify(tokens[0][0])
    (cost,) = _costs(probe)
    verifier = _verifier(key, clock, token_cache_size=50, token_cache_bytes=12 * cost)
    start = threading.Barrier(len(tokens))

    def work(batch: list[str]) -> None:
        start.wait(10)
        for tok in batch:
            verifier.verify(tok)

    threads = [threading.Thread(target=work, args=(batch,)) for batch in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    cache = verifier._cache
    assert cache is not None
    assert cache.bytes == sum(_costs(verifier)) <= 12 * cost
    assert 0 < len(cache) <= 12
