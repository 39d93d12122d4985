"""A fleet and its identity provider over hours of simulated time: does it stampede?

The real cache policy (``jwt_guard.sources._policy.JWKSPolicy``, one per worker) and, with the
shared store, the real key-set sharing steps (``jwt_guard.sources._sharing.obtain``) on the real
in-process ``MemoryKeySetStore``, all driven by one simulated clock: no sockets, no threads.

The model: ``workers`` start together (a deployment), each receives requests at ``rate`` per
second (a Poisson process: a worker consults its policy on the first request after whatever it
is waiting for), the provider answers in ``latency`` seconds with ``max-age=300``, and is down
(a fast error) for ``outage`` seconds of the run, then recovers. Every request to the provider is
counted per second of simulated time.

Scenarios: *today* (no jitter, no store: every worker refreshes at exactly 80 % of the lifetime
and backs off 1, 2, 4 ... s), *jitter* (the default: refreshes spread over the last quarter of
the refresh window, full-jitter back-off) and *store* (jitter and a shared key-set store). The
start-up burst is reported on its own: without a store every cold worker must fetch before its
first answer, whatever the schedule; the targets are on everything after it.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import Counter
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

from jwt_guard.sources._policy import Action, Attempt, Backoff, FullJitter, JWKSPolicy
from jwt_guard.sources._sharing import Failed, Fetch, Fetched, Obtained, Sleep, obtain
from jwt_guard.stores.memory import MemoryKeySetStore

from ._fixtures import Bench
from ._report import Row, verdict

SECTION = "Stampede simulation (real JWKS policy, simulated clock, one provider)"
PEAK_TARGET = 0.05  # of the workers, in any one second after the start-up burst
START_UP = 10.0  # seconds counted as the start-up burst
TTL = 300.0
EPOCH = 1_700_000_000.0  # the simulated wall clock's zero
NAME = "https://idp.example.test/.well-known/jwks.json"
DOCUMENT = {"keys": [{"kty": "EC", "kid": "k1"}]}
KEYS = frozenset({"k1"})


@dataclass(frozen=True)
class Scenario:
    """One simulated run."""

    workers: int
    hours: float
    outage: tuple[float, float]  # (start, end), seconds
    rate: float = 1.0  # requests per second per worker
    latency: float = 0.05  # seconds the provider takes to answer (or to fail)
    seed: int = 2024


@dataclass
class Outcome:
    """What the provider saw, and what the workers answered."""

    requests: list[float] = field(default_factory=list)  # when each fetch reached the provider
    successes: list[float] = field(default_factory=list)
    refused: int = 0  # requests answered 503 (no usable keys)
    served_stale: int = 0

    def per_second(self, since: float = 0.0) -> Counter[int]:
        return Counter(int(t) for t in self.requests if t >= since)

    def summary(self, scenario: Scenario) -> dict[str, Any]:
        after = self.per_second(START_UP)
        every = self.per_second()
        start, end = scenario.outage
        periods = _periods(self.successes)
        return {
            "workers": scenario.workers,
            "hours": scenario.hours,
            "outage": list(scenario.outage),
            "provider_requests": len(self.requests),
            "successful_fetches": len(self.successes),
            "start_up_fetches": sum(1 for t in self.requests if t < START_UP),
            "peak_per_second": max(every.values(), default=0),
            "peak_per_second_after_start_up": max(after.values(), default=0),
            "peak_per_second_during_outage": max(
                (n for s, n in every.items() if start <= s < end), default=0
            ),
            "peak_per_second_after_recovery": max(
                (n for s, n in every.items() if end <= s < end + 120), default=0
            ),
            "refresh_periods": periods,
            "fetches_per_refresh": len(self.successes) / periods if periods else 0.0,
            "refused_requests": self.refused,
        }


def _periods(successes: list[float]) -> int:
    """Refresh periods the fleet went through: a successful fetch begins a new one unless
    another succeeded less than half a lifetime before it (that one is a duplicate)."""
    count, last = 0, -TTL
    for t in sorted(successes):
        if t - last >= TTL / 2:
            count += 1
            last = t
    return count


class _Sim:
    """The event loop: a heap of (time, seq, callback); ``now`` is the simulated clock."""

    def __init__(self, scenario: Scenario, *, jitter: bool, shared: bool) -> None:
        self.scenario = scenario
        self.horizon = scenario.hours * 3600
        self.now = 0.0
        self.rng = random.Random(scenario.seed)
        self.heap: list[tuple[float, int, Callable[[], None]]] = []
        self.seq = itertools.count()
        self.outcome = Outcome()
        self.store = (
            MemoryKeySetStore(monotonic=lambda: self.now, max_age=86400.0) if shared else None
        )
        self.workers = [_Worker(self, jitter) for _ in range(scenario.workers)]

    def at(self, when: float, callback: Callable[[], None]) -> None:
        heapq.heappush(self.heap, (when, next(self.seq), callback))

    def wall(self) -> float:
        return EPOCH + self.now

    def mono(self) -> float:
        return self.now

    def provider_up(self) -> bool:
        start, end = self.scenario.outage
        return not start <= self.now < end

    def run(self) -> Outcome:
        for worker in self.workers:  # the first request to each worker, all started together
            self.at(self.rng.expovariate(self.scenario.rate), worker.consult)
        while self.heap:
            when, _, callback = heapq.heappop(self.heap)
            if when > self.horizon:
                break
            self.now = when
            callback()
        return self.outcome


class _Worker:
    """One worker: its own policy, and (with the store) the sharing steps of its fetches."""

    def __init__(self, sim: _Sim, jitter: bool) -> None:
        self.sim = sim
        rand = sim.rng.random if jitter else None
        schedule = Backoff(1.0, 60.0)
        self.policy: JWKSPolicy[frozenset[str]] = JWKSPolicy(
            refresh_ahead=0.8,
            cooldown=30.0,
            max_stale=3600.0,
            fetch_timeout=10.0,
            backoff=schedule if rand is None else FullJitter(schedule, rand),
            rand=rand,
        )
        self.held_at: float | None = None  # wall-clock fetch time of the set held

    # -- requests ------------------------------------------------------------------------------

    def consult(self) -> None:
        policy, now = self.policy, self.sim.now
        decision = policy.decide(now, "k1", policy.started)
        if decision.action is Action.UNAVAILABLE:
            self.sim.outcome.refused += 1
        elif decision.action is Action.SERVE and decision.stale is not None:
            self.sim.outcome.served_stale += 1
        if decision.start is not None:
            self._launch(decision.start)
        elif policy.fetching is None:
            self._next_request()

    def _next_request(self) -> None:
        """The first request after whatever the policy waits for (Poisson: memoryless)."""
        policy, now = self.policy, self.sim.now
        due = policy.retry_at
        if policy.entry is not None:
            due = max(due, policy.entry.refresh_at)
        self.sim.at(max(now, due) + self.sim.rng.expovariate(self.sim.scenario.rate), self.consult)

    # -- fetches -------------------------------------------------------------------------------

    def _launch(self, attempt: Attempt) -> None:
        if self.sim.store is None:
            up = self._provider()
            self.sim.at(self.sim.now + self.sim.scenario.latency, lambda: self._direct(attempt, up))
            return
        steps = obtain(
            self.sim.store,
            NAME,
            _build,
            held_at=self.held_at,
            serving=self.policy.usable(self.sim.now),
            wall=self.sim.wall,
            mono=self.sim.mono,
            deadline=attempt.deadline,
            lock_ttl=10.0,
        )
        self._step(steps, attempt, None, None)

    def _provider(self) -> bool:
        self.sim.outcome.requests.append(self.sim.now)
        up = self.sim.provider_up()
        if up:
            self.sim.outcome.successes.append(self.sim.now)
        return up

    def _direct(self, attempt: Attempt, up: bool) -> None:
        if up:
            self.policy.fetched(self.sim.now, attempt, KEYS, TTL)
        else:
            self.policy.failed(self.sim.now, attempt, "HTTP 503")
        self._next_request()

    def _step(
        self,
        steps: Generator[Sleep | Fetch, Fetched[frozenset[str]] | None, Obtained[frozenset[str]]],
        attempt: Attempt,
        reply: Fetched[frozenset[str]] | None,
        error: Exception | None,
    ) -> None:
        sim = self.sim
        try:
            effect = steps.throw(error) if error is not None else steps.send(reply)
        except StopIteration as done:
            got: Obtained[frozenset[str]] = done.value
            if self.policy.fetched(sim.now, attempt, got.keyset, got.lifetime, age=got.age):
                self.held_at = got.fetched_at
            self._next_request()
            return
        except Failed as failed:
            self.policy.failed(sim.now, attempt, str(failed))
            fallback = failed.fallback
            if fallback is not None and self.policy.adopt(
                sim.now, attempt, fallback.keyset, fallback.lifetime, fallback.age
            ):
                self.held_at = fallback.fetched_at
            self._next_request()
            return
        if isinstance(effect, Sleep):
            sim.at(sim.now + effect.seconds, lambda: self._step(steps, attempt, None, None))
            return
        up = self._provider()
        answer = Fetched(KEYS, DOCUMENT, TTL) if up else None
        failure = None if up else ConnectionError("HTTP 503 from the provider")
        sim.at(
            sim.now + sim.scenario.latency,
            lambda: self._step(steps, attempt, answer, failure),
        )


def _build(document: Mapping[str, Any]) -> frozenset[str]:
    return frozenset(str(key["kid"]) for key in document["keys"])


def simulate(scenario: Scenario, *, jitter: bool, shared: bool) -> dict[str, Any]:
    """Run one scenario; its summary (see :meth:`Outcome.summary`)."""
    return _Sim(scenario, jitter=jitter, shared=shared).run().summary(scenario)


def _scenarios(quick: bool) -> tuple[Scenario, Scenario]:
    """(without the store, with it). Quick: the whole fleet for 18 minutes, long enough for
    the start-up burst, two refreshes, a five-minute outage and the recovery after it; the
    store's scenario on a tenth of the fleet (its target does not depend on the fleet's size;
    its workers poll the store while another fetches, many events a second)."""
    if quick:
        without = Scenario(workers=2000, hours=0.3, outage=(540.0, 840.0))
        return without, Scenario(workers=200, hours=0.3, outage=(540.0, 840.0))
    full = Scenario(workers=2000, hours=4.0, outage=(3600.0, 5400.0))
    return full, full


def _pct(count: int, workers: int) -> str:
    return f"{count} fetches/s ({100.0 * count / workers:.1f}% of {workers})"


def run_stampede(bench: Bench, results: dict[str, Any]) -> list[Row]:
    """Today's schedule, the jittered one, and the jittered one with a shared store."""
    scenario, shared = _scenarios(bench.mode.quick)
    today = simulate(scenario, jitter=False, shared=False)
    jitter = simulate(scenario, jitter=True, shared=False)
    store = simulate(shared, jitter=True, shared=True)
    results["stampede"] = {"today": today, "jitter": jitter, "store": store}
    n = scenario.workers
    hours = f"{scenario.hours:g} h"
    outage = f"{(scenario.outage[1] - scenario.outage[0]) / 60:g} min outage"
    limit = int(PEAK_TARGET * n)
    peak = jitter["peak_per_second_after_start_up"]
    per_refresh = store["fetches_per_refresh"]
    return [
        Row(
            key="stampede.today.peak",
            section=SECTION,
            label=f"{n} workers, {hours}, {outage}: no jitter (before), peak after start-up",
            value=_pct(today["peak_per_second_after_start_up"], n),
            note=f"{today['provider_requests']} provider requests in all",
            data=today,
        ),
        Row(
            key="stampede.jitter.peak",
            section=SECTION,
            label="  with jitter (the default), no store: peak fetches in one second",
            value=_pct(peak, n),
            target=f"<= {PEAK_TARGET:.0%} ({limit})",
            status=verdict(peak <= limit),
            data=jitter,
        ),
        Row(
            key="stampede.jitter.total",
            section=SECTION,
            label="  with jitter, no store: provider requests in all (failed ones included)",
            value=f"{jitter['provider_requests']} requests",
            note=f"{jitter['successful_fetches']} fetches, {jitter['refused_requests']} 503s",
        ),
        Row(
            key="stampede.jitter.start_up",
            section=SECTION,
            label="  with jitter, no store: the start-up burst (every cold worker fetches)",
            value=f"{jitter['start_up_fetches']} fetches in {START_UP:g} s",
            note=f"peak {jitter['peak_per_second']}/s",
        ),
        Row(
            key="stampede.store.per_refresh",
            section=SECTION,
            label=f"  {shared.workers} workers with a shared key-set store: fetches per refresh",
            value=f"{per_refresh:.2f} ({store['successful_fetches']} fetches, "
            f"{store['refresh_periods']} refreshes)",
            target="<= 1.0",
            status=verdict(per_refresh <= 1.0),
            data=store,
        ),
        Row(
            key="stampede.store.peak",
            section=SECTION,
            label="  with a shared store: peak provider requests in one second, start-up included",
            value=_pct(store["peak_per_second"], shared.workers),
            note=f"{store['provider_requests']} provider requests in all, "
            f"{store['start_up_fetches']} at start-up",
        ),
    ]
