"""The JWKS cache policy on its own: no threads, no network, no clock but the ``now`` passed in.

Key sets are frozensets of kids. Each case builds a history of fetch events on the monotonic
clock, asks one question, and reads the answer as a short phrase (``describe``). The times:
a set fetched at 1000 with a 300 s lifetime is due for a refresh at 1240 (refresh_ahead 0.8),
past its lifetime at 1300 and unusable at 1900 (max_stale 600); fetches time out after 10 s,
the cool-down is 30 s, failures back off 1, 2, 4 ... 60 s.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from jwt_guard.sources._policy import (
    PACED,
    REFRESH_SPREAD,
    Action,
    Attempt,
    Backoff,
    Decision,
    FullJitter,
    JWKSPolicy,
    Reason,
)

Keys = frozenset[str]
Event = Callable[["JWKSPolicy[Keys]"], object]

COLD, REFRESH, UNKNOWN, EXPLICIT = (
    Reason.COLD,
    Reason.REFRESH,
    Reason.UNKNOWN_KID,
    Reason.EXPLICIT,
)


def policy(**overrides: object) -> JWKSPolicy[Keys]:
    options: dict[str, object] = {
        "refresh_ahead": 0.8,
        "cooldown": 30.0,
        "max_stale": 600.0,
        "fetch_timeout": 10.0,
        "backoff": Backoff(1.0, 60.0),
    }
    options.update(overrides)
    return JWKSPolicy(**options)  # type: ignore[arg-type]


def ok(
    t: float, kids: tuple[str, ...] = ("a",), ttl: float = 300.0, why: Reason = EXPLICIT
) -> Event:
    """A fetch for ``why`` started and brought ``kids`` at ``t``."""

    def apply(p: JWKSPolicy[Keys]) -> None:
        assert p.fetched(t, p.start(t, why), frozenset(kids), ttl)

    return apply


def fail(t: float, why: Reason = EXPLICIT) -> Event:
    """A fetch for ``why`` started and failed at ``t``."""

    def apply(p: JWKSPolicy[Keys]) -> None:
        assert p.failed(t, p.start(t, why), "HTTP 500")

    return apply


def flying(t: float, why: Reason = REFRESH) -> Event:
    """A fetch for ``why`` started at ``t`` and is still in flight."""
    return lambda p: p.start(t, why)


def describe(d: Decision[Keys]) -> str:
    if d.action is Action.SERVE:
        words = ["serve"]
        if d.stale is not None:
            words.append(f"stale {d.stale:g}")
        if d.unknown_kid:
            words.append("unknown kid")
        if d.start is not None:
            words.append(f"+ start {d.start.reason.value}")
        return " ".join(words)
    if d.action is Action.WAIT:
        assert d.attempt is not None
        how = "start" if d.start is d.attempt else "join"
        return f"wait {how} {d.attempt.reason.value}"
    if d.action is Action.UNAVAILABLE:
        return f"unavailable {d.retry_after}"
    return "miss"


def history(*events: Event) -> JWKSPolicy[Keys]:
    p = policy()
    for event in events:
        event(p)
    return p


DECIDE = [
    # -- no usable set --------------------------------------------------------------------------
    pytest.param([], 0, "a", "wait start cold", id="cold-start-fetches"),
    pytest.param([flying(0, COLD)], 1, "a", "wait join cold", id="cold-joins-the-fetch"),
    pytest.param([flying(0, COLD)], 1, "b", "wait join cold", id="cold-any-kid-joins"),
    pytest.param([fail(0)], 0.5, "a", "unavailable 1", id="cold-in-backoff"),
    pytest.param([fail(0), fail(1), fail(3)], 4, "a", "unavailable 3", id="cold-backoff-doubles"),
    pytest.param([fail(0)], 1, "a", "wait start cold", id="cold-after-backoff-retries"),
    pytest.param([ok(1000), fail(1899.5)], 1900, "a", "unavailable 1", id="past-max-stale"),
    pytest.param([ok(1000)], 1900, "a", "wait start cold", id="past-max-stale-fetches"),
    # -- within the lifetime --------------------------------------------------------------------
    pytest.param([ok(1000)], 1100, "a", "serve", id="fresh"),
    pytest.param([ok(1000)], 1100, None, "serve", id="fresh-no-kid"),
    pytest.param([ok(1000)], 1250, "a", "serve + start refresh", id="refresh-ahead-background"),
    pytest.param(
        [ok(1000), flying(1245)], 1250, "a", "serve", id="refresh-ahead-already-in-flight"
    ),
    pytest.param([ok(1000), fail(1245)], 1245.5, "a", "serve", id="refresh-ahead-in-backoff"),
    # -- past the lifetime (item 36): wait for the refresh, stale only when it failed ----------
    pytest.param([ok(1000)], 1300, "a", "wait start refresh", id="expired-waits-for-refresh"),
    pytest.param([ok(1000)], 1300, None, "wait start refresh", id="expired-no-kid-waits"),
    pytest.param([ok(1000), flying(1299)], 1300, "a", "wait join refresh", id="expired-joins"),
    pytest.param(
        [ok(1000), fail(1300)], 1300.5, "a", "serve stale 300.5", id="expired-refresh-failed"
    ),
    pytest.param(
        [ok(1000), fail(1300)], 1301, "a", "wait start refresh", id="expired-backoff-over"
    ),
    pytest.param(
        [ok(1000), fail(1300)], 1300.5, "b", "serve stale 300.5 unknown kid", id="stale-unknown"
    ),
    # -- unknown kids (items 31, 32) ------------------------------------------------------------
    pytest.param([ok(1000)], 1001, "b", "wait start unknown_kid", id="startup-fetch-no-cooldown"),
    pytest.param(
        [ok(1000), ok(1240, why=REFRESH)],
        1241,
        "b",
        "wait start unknown_kid",
        id="routine-refresh-no-cooldown",
    ),
    pytest.param([ok(1000, why=UNKNOWN)], 1010, "b", "serve unknown kid", id="inside-the-cooldown"),
    pytest.param(
        [ok(1000, why=UNKNOWN)], 1030, "b", "wait start unknown_kid", id="after-the-cooldown"
    ),
    pytest.param(
        [ok(1000), flying(1005, UNKNOWN)],
        1006,
        "b",
        "wait join unknown_kid",
        id="joins-the-refetch-in-flight",
    ),
    pytest.param(
        [ok(1000), flying(1005, REFRESH)],
        1006,
        "b",
        "wait join refresh",
        id="joins-a-routine-refresh-in-flight",
    ),
    pytest.param(
        [ok(1000, why=UNKNOWN)],
        1250,
        "b",
        "wait start refresh",
        id="a-due-refresh-starts-inside-the-cooldown",
    ),
    pytest.param(
        [ok(1000), fail(1100, UNKNOWN)], 1100.5, "b", "serve unknown kid", id="unknown-in-backoff"
    ),
    pytest.param([ok(1000)], 1300, "b", "wait start refresh", id="unknown-past-lifetime"),
]


@pytest.mark.parametrize(("events", "now", "kid", "expected"), DECIDE)
def test_decide(events: list[Event], now: float, kid: str | None, expected: str) -> None:
    p = history(*events)
    assert describe(p.decide(now, kid, p.started)) == expected


EAGER = [
    pytest.param([], 0, "wait start cold", id="cold"),
    pytest.param([ok(1000)], 1100, "serve", id="fresh"),
    pytest.param([ok(1000)], 1250, "wait start explicit", id="refresh-ahead-waits"),
    pytest.param([ok(1000), flying(1245)], 1250, "wait join refresh", id="refresh-ahead-joins"),
    pytest.param([ok(1000), fail(1245)], 1245.5, "serve", id="refresh-ahead-backoff"),
    pytest.param([fail(0)], 0.5, "unavailable 1", id="cold-backoff"),
]


@pytest.mark.parametrize(("events", "now", "expected"), EAGER)
def test_decide_eager_for_prefetch(events: list[Event], now: float, expected: str) -> None:
    p = history(*events)
    assert describe(p.decide(now, None, p.started, eager=True)) == expected


POLL = [
    pytest.param([], 0, "miss", id="cold"),
    pytest.param([flying(0, COLD)], 1, "miss", id="cold-in-flight"),
    pytest.param([ok(1000)], 1100, "serve", id="fresh"),
    pytest.param([ok(1000)], 1250, "serve + start refresh", id="refresh-ahead"),
    pytest.param([ok(1000), flying(1245)], 1250, "serve", id="refresh-ahead-in-flight"),
    pytest.param([ok(1000)], 1300, "miss", id="expired-must-wait"),
    pytest.param([ok(1000), flying(1299)], 1300, "miss", id="expired-in-flight"),
    pytest.param([ok(1000), fail(1300)], 1300.5, "serve stale 300.5", id="expired-failed"),
    pytest.param([ok(1000), fail(1899.5)], 1900, "miss", id="past-max-stale"),
]


@pytest.mark.parametrize(("events", "now", "expected"), POLL)
def test_poll_never_waits(events: list[Event], now: float, expected: str) -> None:
    assert describe(history(*events).poll(now)) == expected


# -- a request waits for at most one fetch that started after it arrived -----------------------


def test_a_request_answers_after_the_fetch_it_waited_for() -> None:
    p = history(ok(1000, why=REFRESH))
    arrival = p.started
    d = p.decide(1001, "b", arrival)  # unknown kid: a refetch, which the request waits for
    assert describe(d) == "wait start unknown_kid"
    assert d.attempt is not None
    p.fetched(1002, d.attempt, frozenset({"a"}), 300)  # still not there
    assert describe(p.decide(1100, "b", arrival)) == "serve unknown kid"


def test_a_request_that_joined_an_older_fetch_may_still_refetch_once() -> None:
    p = history(ok(1000), flying(1001, REFRESH))  # a refresh in flight before the request
    arrival = p.started
    d = p.decide(1002, "b", arrival)
    assert describe(d) == "wait join refresh"
    assert d.attempt is not None
    p.fetched(1003, d.attempt, frozenset({"a"}), 300)  # it predates the rotation
    d = p.decide(1003, "b", arrival)
    assert describe(d) == "wait start unknown_kid"
    assert d.attempt is not None
    p.fetched(1004, d.attempt, frozenset({"a", "b"}), 300)
    assert describe(p.decide(1004, "b", arrival)) == "serve"


def test_after_a_failed_fetch_it_waited_for_a_request_is_answered_not_sent_again() -> None:
    p = policy(backoff=Backoff(0.001, 0.001))
    arrival = p.started
    d = p.decide(0, "a", arrival)
    assert d.attempt is not None
    p.failed(0, d.attempt, "down")
    assert describe(p.decide(5, "a", arrival)) == "unavailable 1"  # the back-off is over
    assert describe(p.decide(5, "a", p.started)) == "wait start cold"  # a new request retries


# -- the fetch deadline (item 35) ----------------------------------------------------------------


def test_a_fetch_past_its_deadline_counts_as_failed_for_everyone() -> None:
    p = history(flying(0, COLD))
    assert describe(p.decide(9.9, "a", p.started)) == "wait join cold"
    d = p.decide(10, "a", p.started)
    assert d.expired is not None
    assert d.expired.number == 1
    assert describe(d) == "unavailable 1"  # failed at 10: backing off until 11
    assert (p.failures, p.fetching, p.last_error) == (1, None, "fetch took longer than 10s")
    assert describe(p.decide(11, "a", p.started)) == "wait start cold"  # a new one may start


def test_late_outcomes_of_an_expired_fetch() -> None:
    p = history(flying(0, COLD))
    late = p.fetching
    assert late is not None
    p.decide(10, "a", p.started)  # expired
    assert not p.failed(12, late, "boom")  # counted once, at the deadline
    assert p.failures == 1
    assert p.fetched(12, late, frozenset({"a"}), 300)  # good keys are still good keys
    assert describe(p.decide(13, "a", p.started)) == "serve"
    assert (p.failures, p.last_error) == (0, None)


def test_a_late_success_never_replaces_newer_keys() -> None:
    p = history(flying(0, COLD))
    late = p.fetching
    assert late is not None
    p.decide(10, "a", p.started)
    d = p.decide(11, "a", p.started)
    assert d.attempt is not None
    assert p.fetched(11.5, d.attempt, frozenset({"new"}), 300)
    assert not p.fetched(12, late, frozenset({"old"}), 300)
    assert p.entry is not None
    assert p.entry.keyset == {"new"}


def test_a_timeout_reported_by_a_waiter_counts_once() -> None:
    p = history(flying(0, COLD))
    attempt = p.fetching
    assert attempt is not None
    assert p.failed(3, attempt, "fetch took longer than 10s")  # a waiter gave up
    assert not p.failed(4, attempt, "fetch took longer than 10s")  # another one too
    assert p.failures == 1


# -- explicit refresh, settle, fork -------------------------------------------------------------


def test_an_explicit_refresh_ignores_the_backoff_and_joins_a_fetch_in_flight() -> None:
    p = history(ok(1000), fail(1100))
    assert describe(p.refresh(1100.5)) == "wait start explicit"
    assert describe(p.refresh(1100.6)) == "wait join explicit"


def test_settle_answers_with_what_there_is() -> None:
    assert describe(history().settle(0)) == "unavailable 1"
    assert describe(history(ok(1000)).settle(1100)) == "serve"
    assert describe(history(ok(1000)).settle(1400)) == "serve stale 400"


def test_a_forgotten_fetch_counts_nothing() -> None:
    p = history(ok(1000), flying(1001, UNKNOWN))
    p.forget_fetch()  # after fork: the parent's fetch is not in this process
    assert (p.fetching, p.failures) == (None, 0)
    assert describe(p.decide(1002, "a", p.started)) == "serve"


# -- the numbers: back-off, Retry-After, state reports ------------------------------------------


@pytest.mark.parametrize(
    ("failures", "seconds"),
    [(1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0), (7, 60.0), (500, 60.0)],
)
def test_backoff_doubles_up_to_its_cap(failures: int, seconds: float) -> None:
    assert Backoff(1.0, 60.0)(failures) == seconds


def test_the_backoff_schedule_is_injectable() -> None:
    """Jitter comes later: it is a schedule drawing from an injected random source."""
    draws = iter([0.5, 0.25])

    @dataclass
    class Jittered:
        base: Backoff

        def __call__(self, failures: int) -> float:
            return self.base(failures) * (1 + next(draws))

    p = policy(backoff=Jittered(Backoff(2.0, 60.0)))
    fail(0)(p)
    assert p.retry_at == 3.0
    fail(3)(p)
    assert p.retry_at == 3.0 + 5.0


@pytest.mark.parametrize(
    ("events", "now", "retry_after"),
    [
        pytest.param([], 0, 1, id="never-failed"),
        pytest.param([fail(0)], 0, 1, id="first-failure"),
        pytest.param([fail(0), fail(1), fail(3), fail(7)], 7, 8, id="fourth-failure"),
        pytest.param([fail(0), fail(1), fail(3), fail(7)], 14.2, 1, id="almost-over"),
        pytest.param([fail(0), fail(1), fail(3), fail(7)], 20, 1, id="over"),
    ],
)
def test_retry_after(events: list[Event], now: float, retry_after: int) -> None:
    assert history(*events).retry_after(now) == retry_after


def test_retry_after_never_exceeds_the_backoff_in_force() -> None:
    """Even if ``now`` went backwards (a broken clock), Retry-After stays within the back-off."""
    p = history(fail(1000))
    assert p.retry_after(-3600) == 1


@pytest.mark.parametrize(
    ("now", "usable", "stale"),
    [(1000, True, False), (1299.9, True, False), (1300, True, True), (1900, False, True)],
)
def test_usable_and_stale(now: float, usable: bool, stale: bool) -> None:
    p = history(ok(1000))
    assert (p.usable(now), p.stale(now)) == (usable, stale)


def test_attempts_are_numbered_and_carry_their_deadline() -> None:
    p = policy()
    first = p.start(5, COLD)
    assert first == Attempt(1, COLD, 5, 15)
    p.failed(6, first, "x")
    assert p.start(8, EXPLICIT).number == 2
    assert math.isinf(policy().retry_at)


# -- jitter: workers started together do not fetch together -------------------------------------


def _draws(*values: float) -> Callable[[], float]:
    """A random source that returns ``values`` in turn (then repeats the last)."""
    queue = list(values)

    def rand() -> float:
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return rand


@pytest.mark.parametrize(
    ("draw", "refresh_at"),
    [
        pytest.param(0.0, 1240.0, id="top-of-the-window"),
        pytest.param(0.5, 1210.0, id="middle"),
        pytest.param(0.999999, 1180.00006, id="bottom"),
    ],
)
def test_jitter_spreads_the_refresh_over_the_last_quarter_of_the_window(
    draw: float, refresh_at: float
) -> None:
    """A set fetched at 1000 for 300 s refreshes between 1180 and 1240 (80 % x [0.75, 1])."""
    p = policy(rand=_draws(draw))
    ok(1000)(p)
    assert p.entry is not None
    assert p.entry.refresh_at == pytest.approx(refresh_at)
    assert p.entry.expires_at == 1300.0  # the lifetime itself is the provider's, never jittered
    assert describe(p.decide(refresh_at - 0.001, "a", p.started)) == "serve"
    assert describe(p.decide(refresh_at, "a", p.started)) == "serve + start refresh"


def test_without_a_random_source_the_schedule_is_exact() -> None:
    p = history(ok(1000))
    assert p.entry is not None
    assert p.entry.refresh_at == 1240.0
    assert REFRESH_SPREAD == 0.25


def test_full_jitter_draws_each_back_off_from_zero_to_the_schedule() -> None:
    schedule = FullJitter(Backoff(1.0, 60.0), _draws(0.5, 0.25, 0.999))
    assert [schedule(n) for n in (1, 2, 7)] == [0.5, 0.5, pytest.approx(59.94)]
    p = policy(backoff=FullJitter(Backoff(2.0, 60.0), _draws(0.25)))
    fail(0)(p)
    assert p.retry_at == 0.5
    assert p.retry_after(0) == 1  # whole seconds, at least 1
    assert describe(p.decide(0.4, "a", p.started)) == "unavailable 1"
    assert describe(p.decide(0.5, "a", p.started)) == "wait start cold"


def test_a_fleet_with_jitter_refreshes_spread_out_one_without_refreshes_at_once() -> None:
    """2,000 policies fetched at the same instant: how many are due in the same second."""
    rng = random.Random(7)

    def due_seconds(rand: Callable[[], float] | None) -> Counter[int]:
        seconds: Counter[int] = Counter()
        for _ in range(2000):
            p = policy(rand=rand)
            ok(1000)(p)
            assert p.entry is not None
            seconds[int(p.entry.refresh_at)] += 1
        return seconds

    assert max(due_seconds(None).values()) == 2000  # everyone at 1240
    assert max(due_seconds(rng.random).values()) <= 100  # at most 5 % in any one second


# -- sets shared by another worker ---------------------------------------------------------------


def test_a_shared_set_lives_from_when_the_provider_gave_it_out() -> None:
    p = policy()
    assert p.fetched(1000, p.start(1000, COLD), frozenset("a"), 300.0, age=100.0)
    assert p.entry is not None
    assert (p.entry.fetched, p.entry.refresh_at, p.entry.expires_at) == (900.0, 1140.0, 1200.0)
    assert describe(p.decide(1140, "a", p.started)) == "serve + start refresh"


def test_an_adopted_set_serves_like_the_workers_own_last_good_set() -> None:
    """A cold worker whose fetch failed takes the stored set, stale for its age, and backs off."""
    p = policy()
    attempt = p.start(1000, COLD)
    assert p.failed(1000, attempt, "HTTP 503")
    assert p.adopt(1000, attempt, frozenset("a"), 300.0, age=400.0)
    assert p.failures == 1
    assert p.retry_at == 1001.0
    assert describe(p.decide(1000.5, "a", p.started)) == "serve stale 400.5"
    assert p.usable(1000 + 499)
    assert not p.usable(1000 + 500)


def test_adopt_never_replaces_a_newer_set() -> None:
    p = history(ok(1000))
    attempt = p.start(1100, REFRESH)
    assert not p.adopt(1100, attempt, frozenset("b"), 300.0, age=200.0)  # fetched at 900
    assert p.entry is not None
    assert p.entry.keyset == frozenset("a")
    assert p.adopt(1100, attempt, frozenset("c"), 300.0, age=50.0)  # fetched at 1050
    assert p.entry is not None
    assert p.entry.keyset == frozenset("c")


def test_with_jitter_a_failure_while_keys_still_answer_backs_off_over_the_longest_wait() -> None:
    """Nothing waits on such a fetch: 2,000 workers retrying 1, 2, 4 ... s into an outage would
    make the provider's busiest seconds. A worker with nothing to answer with starts small."""
    serving = policy(rand=_draws(0.5), backoff=FullJitter(Backoff(1.0, 60.0), _draws(0.5)))
    ok(1000)(serving)
    fail(1245)(serving)
    assert serving.failures == 1
    assert serving.retry_at == 1245.0 + 30.0  # uniform(0, 60), not uniform(0, 1)
    cold = policy(rand=_draws(0.5), backoff=FullJitter(Backoff(1.0, 60.0), _draws(0.5)))
    fail(0)(cold)
    assert cold.retry_at == 0.5
    exact = history(ok(1000), fail(1245))  # without jitter: the schedule as it always was
    assert exact.retry_at == 1246.0
    assert PACED >= 7  # enough doublings to reach any cap from the first wait
