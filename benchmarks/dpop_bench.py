"""A DPoP proof check (``DPoPVerifier.verify``) against the verify floor of its algorithm, and
a whole DPoP request's token work against that floor plus the cached-token cost.

Every proof is new (its own ``jti``) and goes through every check of RFC 9449 4.3, the ``ath``
hash of an access token, the ``cnf.jkt`` comparison and an insert into the in-memory replay
store. Each batch gets a fresh verifier and store (built outside the timed part), so the proofs
of a batch are new to it. The client's key is the same for every proof of a row, as for a real
client (its header is decoded and its key checked once); the ``new key`` row makes every proof
with a key never seen, the worst case. The floor is the one of ``verify_bench``: split, decode,
JSON-decode header and payload, one ``cryptography`` signature check.

The ``request`` rows time what the ASGI guard does for one request carrying a DPoP-bound token
it has verified before: the token-cache lookup (``TokenVerifier.cached``) and the sender check
(``SenderConstraints.check``: the binding, the public URL from ``public_url`` and the raw path
of an ASGI scope, the proof). Their baseline is the verify floor of one proof plus the same
cache lookup alone, so the ratio is what DPoP costs beyond the one signature it cannot avoid
(issue 12: at most 1.3x for ES256).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from jwt_guard.asgi import _ScopeFacts
from jwt_guard.binding.dpop import DPoPVerifier
from jwt_guard.binding.policy import DPOP, SenderConstraints
from jwt_guard.stores.memory import MemoryReplayStore
from jwt_guard.testing import SigningKey
from jwt_guard.testing.dpop import DPoPKey

from ._fixtures import Bench
from ._report import Row, verdict
from ._timing import Batch, Stats, calibrate, fmt_us, interleave, paired_ratio
from .verify_bench import floor_fn, signature_check, verifier_for

SECTION = "DPoP proof check (fresh proof, in-memory replay store)"
REQUEST_SECTION = "DPoP request (cached access token + fresh proof)"
TARGET = 1.3
URL = "https://api.example.com/items/42"
ROWS = (("ES256", False), ("EdDSA", False), ("RS256", False), ("ES256", True))
REQUEST_ROWS = ("ES256", "EdDSA", "RS256")


def _client_key(bench: Bench, alg: str, now: float) -> DPoPKey:
    """A client's DPoP key for ``alg``; an RSA one has the bench's RSA key material (a check
    costs the same with any 2048-bit key, and generating one costs more than its row)."""
    if alg.startswith(("RS", "PS")):
        return DPoPKey(SigningKey(None, alg, bench.keys[alg].private_key), clock=lambda: now)
    return DPoPKey.generate(alg, clock=lambda: now)


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
        key = _client_key(bench, alg, now)
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


def _scope(proof: str, token: str) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "path": "/items/42",
        "raw_path": b"/items/42",
        "client": ("198.51.100.7", 50123),
        "headers": [(b"authorization", f"DPoP {token}".encode()), (b"dpop", proof.encode())],
    }


def _request_contenders(
    bench: Bench, alg: str, key: DPoPKey, n: int, now: float
) -> dict[str, Batch]:
    """The guard's work for a cached DPoP-bound token and ``n`` fresh proofs, and its baseline."""
    token = bench.issuer.mint(key=bench.keys["ES256"], dpop_key=key, expires_in=3600)
    proofs = [key.proof("GET", URL, access_token=token) for _ in range(n)]
    scopes = {proof: _scope(proof, token) for proof in proofs}
    verifier = verifier_for(bench, ("ES256",), cache=1024, clock=lambda: now)
    verifier.verify(token)  # the token is in the cache before anything is timed
    cached = verifier.cached
    floor = floor_fn(signature_check(alg, key.signing_key.private_key))

    def baseline(proof: str) -> Any:
        cached(token)
        return floor(proof)

    def request() -> float:
        sender = SenderConstraints(
            dpop="required",
            public_url="https://api.example.com",
            dpop_options={"replay_store": MemoryReplayStore(), "clock": lambda: now},
        )
        check = sender.check

        def one(proof: str) -> Any:
            claims = cached(token)
            if claims is None:
                raise AssertionError("the token left the cache")
            return check(claims, DPOP, token, _ScopeFacts(scopes[proof]))

        return _timed(one, proofs)

    return {"baseline": lambda: _timed(baseline, proofs), "request": request}


def run_dpop_requests(bench: Bench, results: dict[str, Any]) -> list[Row]:
    """One row per proof algorithm; ES256 has the target (<= 1.3x floor + cached token)."""
    mode = bench.mode
    now = time.time()
    rows: list[Row] = []
    raw: dict[str, Any] = {}
    for alg in REQUEST_ROWS:
        key = _client_key(bench, alg, now)
        probe = [key.proof("GET", URL) for _ in range(5)]
        floor = floor_fn(signature_check(alg, key.signing_key.private_key))
        n = max(calibrate(floor, probe, mode.batch_seconds, 5_000), 8 if mode.quick else 64)
        contenders = _request_contenders(bench, alg, key, n, now)
        contenders["request"]()  # every request passes before anything is timed
        stats: dict[str, Stats] = interleave(contenders, mode.rounds)
        ratio = stats["request"].best / stats["baseline"].best
        targeted = alg == "ES256"
        raw[alg] = {k: v.as_json() for k, v in stats.items()} | {
            "ratio": ratio,
            "paired_median_ratio": paired_ratio(stats["request"], stats["baseline"]),
            "proofs_per_batch": n,
            "target": TARGET if targeted else None,
        }
        rows.append(
            Row(
                key=f"dpop.request.{alg}",
                section=REQUEST_SECTION,
                label=f"{alg} proof + cached token vs {alg} verify floor + cached token",
                value=fmt_us(stats["request"].best),
                baseline=fmt_us(stats["baseline"].best),
                ratio=ratio,
                target=f"<= {TARGET}x" if targeted else "-",
                status=verdict(ratio <= TARGET) if targeted else "info",
                data=raw[alg],
            )
        )
    results["dpop_request"] = raw
    return rows
