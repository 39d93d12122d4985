"""A DPoP proof check (``DPoPVerifier.verify``) against the verify floor of its algorithm.

Every proof is new (its own ``jti``) and goes through every check of RFC 9449 4.3, the ``ath``
hash of an access token, the ``cnf.jkt`` comparison and an insert into the in-memory replay
store. Each batch gets a fresh verifier and store (built outside the timed part), so the proofs
of a batch are new to it. The client's key is the same for every proof of a row, as for a real
client (its header is decoded and its key checked once); the ``new key`` row makes every proof
with a key never seen, the worst case. The floor is the one of ``verify_bench``: split, decode,
JSON-decode header and payload, one ``cryptography`` signature check.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from jwt_guard.binding.dpop import DPoPVerifier
from jwt_guard.stores.memory import MemoryReplayStore
from jwt_guard.testing.dpop import DPoPKey

from ._fixtures import Bench
from ._report import Row, verdict
from ._timing import Batch, Stats, calibrate, fmt_us, interleave, paired_ratio
from .verify_bench import floor_fn, signature_check

SECTION = "DPoP proof check (fresh proof, in-memory replay store)"
TARGET = 1.3
URL = "https://api.example.com/items/42"
ROWS = (("ES256", False), ("EdDSA", False), ("RS256", False), ("ES256", True))


def _timed(call: Callable[[str], Any], proofs: list[str]) -> float:
    start = time.thread_time()
    for proof in proofs:
        call(proof)
    return (time.thread_time() - start) / len(proofs)


def _contenders(
    alg: str, keys: list[DPoPKey], proofs: list[str], token: str, now: float
) -> dict[str, Batch]:
    """The floor and the DPoP check of ``proofs`` (proof ``i`` made by ``keys[i % len(keys)]``)."""
    jkt_of = {proof: keys[i % len(keys)].jkt for i, proof in enumerate(proofs)}
    floors = {k.jkt: floor_fn(signature_check(alg, k.signing_key.private_key)) for k in keys}

    def floor(proof: str) -> Any:
        return floors[jkt_of[proof]](proof)

    def dpop() -> float:
        verifier = DPoPVerifier(clock=lambda: now, replay_store=MemoryReplayStore())

        def check(proof: str) -> Any:
            return verifier.verify(
                proof, method="GET", url=URL, access_token=token, expected_jkt=jkt_of[proof]
            )

        return _timed(check, proofs)

    return {"floor": lambda: _timed(floor, proofs), "dpop": dpop}


def run_dpop(bench: Bench, results: dict[str, Any]) -> list[Row]:
    """One row per proof algorithm; ES256 has the target (<= 1.3x its verify floor)."""
    mode = bench.mode
    token = bench.mint("ES256", 1)[0]
    now = time.time()
    rows: list[Row] = []
    raw: dict[str, Any] = {}
    for alg, new_keys in ROWS:
        key = DPoPKey.generate(alg, clock=lambda: now)
        probe = [key.proof("GET", URL, access_token=token) for _ in range(5)]
        floor = floor_fn(signature_check(alg, key.signing_key.private_key))
        n = max(calibrate(floor, probe, mode.batch_seconds, 5_000), 8 if mode.quick else 64)
        keys = (
            [key, *(DPoPKey.generate(alg, clock=lambda: now) for _ in range(n - 1))]
            if new_keys
            else [key]
        )
        proofs = [keys[i % len(keys)].proof("GET", URL, access_token=token) for i in range(n)]
        contenders = _contenders(alg, keys, proofs, token, now)
        contenders["dpop"]()  # every proof passes before anything is timed
        stats: dict[str, Stats] = interleave(contenders, mode.rounds)
        ratio = stats["dpop"].best / stats["floor"].best
        name = f"{alg}.new_key" if new_keys else alg
        targeted = alg == "ES256" and not new_keys
        raw[name] = {k: s.as_json() for k, s in stats.items()} | {
            "ratio": ratio,
            "paired_median_ratio": paired_ratio(stats["dpop"], stats["floor"]),
            "proofs_per_batch": n,
            "distinct_keys": len(keys),
            "target": TARGET if targeted else None,
        }
        label = (
            f"{alg} DPoP proof, a new client key each time, vs {alg} verify floor"
            if new_keys
            else f"{alg} DPoP proof check vs {alg} verify floor"
        )
        rows.append(
            Row(
                key=f"dpop.{name}",
                section=SECTION,
                label=label,
                value=fmt_us(stats["dpop"].best),
                baseline=fmt_us(stats["floor"].best),
                ratio=ratio,
                target=f"<= {TARGET}x" if targeted else "-",
                status=verdict(ratio <= TARGET) if targeted else "info",
                data=raw[name],
            )
        )
    results["dpop"] = raw
    return rows
