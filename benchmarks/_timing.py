"""Interleaved timing: every contender runs once per round, in a rotating order."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

Batch = Callable[[], float]
"""Runs one batch and returns the seconds per operation."""


@dataclass
class Stats:
    """Per-operation seconds over the rounds of one contender."""

    samples: list[float]

    @property
    def best(self) -> float:
        return min(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    def as_json(self) -> dict[str, Any]:
        return {
            "best_us": self.best * 1e6,
            "median_us": self.median * 1e6,
            "rounds": len(self.samples),
        }


def loop(fn: Callable[[Any], Any], items: list[Any]) -> Batch:
    """A batch calling ``fn(item)`` for each of ``items``; seconds per call."""

    def batch() -> float:
        start = time.thread_time()
        for item in items:
            fn(item)
        return (time.thread_time() - start) / len(items)

    return batch


def calibrate(fn: Callable[[Any], Any], items: list[Any], target: float, cap: int) -> int:
    """How many calls of ``fn`` make a batch of about ``target`` seconds (at most ``cap``)."""
    probe = items[: max(1, min(len(items), 5))]
    for item in probe:  # warm up
        fn(item)
    start = time.thread_time()
    for item in probe:
        fn(item)
    per_call = max((time.thread_time() - start) / len(probe), 1e-7)
    return max(len(probe), min(cap, int(target / per_call)))


def cycle(items: list[Any], n: int) -> list[Any]:
    """``items`` repeated to a list of exactly ``n``."""
    return [items[i % len(items)] for i in range(n)]


def interleave(contenders: dict[str, Batch], rounds: int) -> dict[str, Stats]:
    """Run each batch once per round, rotating the order; garbage collection off while timing.

    Batches time themselves with ``time.thread_time``: CPU time of this thread, so moments
    when other work on a shared machine holds the CPU do not count against a contender.
    """
    names = list(contenders)
    samples: dict[str, list[float]] = {name: [] for name in names}
    enabled = gc.isenabled()
    # Everything alive now (the libraries, the fixtures) is set aside for the rounds, so the
    # collection before each batch walks only what the batches made: a collection of the whole
    # heap costs tens of milliseconds, more than all the batches of a quick run together.
    gc.freeze()
    try:
        for r in range(rounds):
            shift = r % len(names)
            for name in names[shift:] + names[:shift]:
                gc.collect()
                gc.disable()
                try:
                    samples[name].append(contenders[name]())
                finally:
                    if enabled:
                        gc.enable()
    finally:
        gc.unfreeze()
        if enabled:
            gc.enable()
    return {name: Stats(values) for name, values in samples.items()}


def paired_ratio(a: Stats, b: Stats) -> float:
    """Median over rounds of ``a/b`` (each pair measured side by side)."""
    return statistics.median(x / y for x, y in zip(a.samples, b.samples, strict=True))


def fmt_us(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    us = seconds * 1e6
    return f"{us:.2f} us" if us < 10 else f"{us:.1f} us"


def fmt_rps(rps: float | None) -> str:
    return "-" if rps is None else f"{rps:,.0f} rps"


def unique(values: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(values))
