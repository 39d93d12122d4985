"""End to end, a fleet: uvicorn with two worker processes behind one ``redis-server``.

A revocation made with ``jwt-guard revoke`` (its ``main()``, run here: the workers are the other
processes) is refused by every worker, and each worker's replica says how long the change took
to reach it; a worker started while the provider is down serves from the key set the others
stored. The workers are found by asking: every answer carries ``x-worker`` (the pid), and each
request is a new connection, so the kernel hands them to either worker.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from _redis import RedisServer
from _servers import free_port, start, stop, wait_until_listening
from jwt_guard.cli import main
from jwt_guard.testing import JWKSFault, LocalIssuer

ROOT = Path(__file__).resolve().parent.parent
SECRET = "e2e-fleet-secret-" + "s" * 32
# Deadlines for things that take milliseconds once the workers run: generous for a loaded
# 2-core machine starting interpreters; a test that reaches one fails.
DEADLINE = 60.0
PROPAGATION = 1.0  # the bound on a revocation reaching every worker


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    running = RedisServer(tmp_path_factory.mktemp("redis"))
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def provider() -> Iterator[LocalIssuer]:
    with LocalIssuer(algorithms=("ES256",)) as running:
        yield running


class Server:
    """A uvicorn process serving tests/_fleet_app.py with ``workers`` worker processes."""

    def __init__(self, env: dict[str, str], workers: int, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "uvicorn", "_fleet_app:app", "--app-dir", "tests"]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"]
        command += ["--workers", str(workers)]
        self.process = start(command, log, cwd=ROOT, env=env)
        try:
            wait_until_listening(self.port, self.process, log, "uvicorn")
        except BaseException:
            stop(self.process)
            raise
        # No connection is kept alive: each request opens its own, so either worker may take it.
        no_reuse = httpx.Limits(max_keepalive_connections=0)
        self.http = httpx.Client(base_url=self.url, timeout=DEADLINE, limits=no_reuse)

    def get(
        self, path: str, token: str | None = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        """One request on a connection of its own (so either worker may take it)."""
        if headers is None:
            headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        return self.http.get(path, headers=headers)

    def stop(self) -> None:
        self.http.close()
        stop(self.process)  # the supervisor and its workers


def poll(until: Callable[[], bool], what: str) -> None:
    """Ask again until ``until()`` holds; fail at the deadline. A short pause between asks: the
    answer comes from other processes, with no event of ours to wait on."""
    deadline = time.monotonic() + DEADLINE
    pause = threading.Event()
    while not until():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {DEADLINE}s: {what}")
        pause.wait(0.01)


@pytest.fixture(scope="module")
def fleet_env(redis_server: RedisServer, provider: LocalIssuer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JWT_GUARD_")}
    env.update(
        {
            "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]),
            "JWT_GUARD_ISSUER": provider.issuer,
            "JWT_GUARD_AUDIENCE": provider.audience,
            "JWT_GUARD_JWKS_URL": provider.jwks_url,
            "JWT_GUARD_STORE_URL": redis_server.url,
            "JWT_GUARD_STORE_NAMESPACE": f"e2e{uuid.uuid4().hex[:10]}",
            "JWT_GUARD_FLEET_SECRET": SECRET,
        }
    )
    return env


@pytest.fixture(scope="module")
def two_workers(
    fleet_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    server = Server(fleet_env, 2, tmp_path_factory.mktemp("uvicorn") / "uvicorn.log")
    try:
        seen: set[str] = set()

        def both_answer() -> bool:
            reply = server.get("/fleet")
            assert reply.status_code == 200
            seen.add(reply.headers["x-worker"])
            return len(seen) == 2

        poll(both_answer, "both workers answering")
        yield server
    finally:
        server.stop()


def test_a_revocation_from_the_cli_is_refused_by_every_worker_within_a_second(
    two_workers: Server,
    provider: LocalIssuer,
    fleet_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    token = provider.mint(expires_in=3600)
    accepted: set[str] = set()

    def cached_by_both() -> bool:
        reply = two_workers.get("/me", token)
        assert reply.status_code == 200
        accepted.add(reply.headers["x-worker"])
        return len(accepted) == 2

    poll(cached_by_both, "the token verified (and cached) by both workers")
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    # The command as an operator runs it, configured like the workers (the JWT_GUARD_*
    # variables); in process: `python -m jwt_guard` as a process is tests/test_cli.py's.
    for name in [k for k in os.environ if k.startswith("JWT_GUARD_")]:
        monkeypatch.delenv(name)
    for name, value in fleet_env.items():
        if name.startswith("JWT_GUARD_"):
            monkeypatch.setenv(name, value)
    command = ["revoke", f"--jti={claims['jti']}", "--until", str(claims["exp"]), "--json"]
    code = main(command)
    revoked_at = time.monotonic()
    assert code == 0, capsys.readouterr().err
    refused: dict[str, float] = {}

    def refused_by_both() -> bool:
        reply = two_workers.get("/me", token)
        worker = reply.headers["x-worker"]
        if reply.status_code == 200:
            assert worker not in refused, "a worker accepted the token again after refusing it"
            return False
        assert reply.status_code == 401
        assert (
            'error_description="The access token has been revoked"'
            in (reply.headers["www-authenticate"])
        )
        refused.setdefault(worker, time.monotonic() - revoked_at)
        return len(refused) == 2

    poll(refused_by_both, "the revoked token refused by both workers")
    lags: dict[str, float] = {}

    def lags_reported() -> bool:
        reply = two_workers.get("/fleet")
        store = reply.json()["store"]
        assert store["ok"] is True
        lags[reply.headers["x-worker"]] = store["revocation"]["lag"]
        return len(lags) == 2

    poll(lags_reported, "both workers reporting their replica's lag")
    print(f"\npropagation: replica lag per worker {lags}; first refusal seen after {refused}")
    # The lag is measured inside each worker, from the change's publication to its replica
    # (milliseconds); the refusals seen from here add HTTP round trips on a loaded machine.
    assert all(lag < PROPAGATION for lag in lags.values()), lags
    assert set(lags) == set(refused)


def test_a_worker_started_while_the_provider_is_down_serves_from_the_stored_key_set(
    two_workers: Server,
    provider: LocalIssuer,
    fleet_env: dict[str, str],
    tmp_path: Path,
) -> None:
    assert two_workers.get("/me", provider.mint()).status_code == 200  # the set is stored
    provider.set_fault(JWKSFault.DOWN)
    try:
        cold = Server(fleet_env, 1, tmp_path / "cold.log")  # prefetch: from the store
        try:
            reply = cold.get("/me", provider.mint(subject="alice"))
            assert reply.status_code == 200
            assert reply.json() == {"sub": "alice"}
        finally:
            cold.stop()
    finally:
        provider.set_fault(None)


def test_a_dpop_proof_one_worker_accepted_is_a_replay_to_the_other(
    two_workers: Server, provider: LocalIssuer
) -> None:
    """The workers remember proofs in the fleet's store (the guard takes the configured store's
    replay store by itself): a proof accepted by one worker is refused by the other."""
    from jwt_guard.testing.dpop import DPoPKey

    key = DPoPKey.generate("ES256")
    token = provider.mint(dpop_key=key)
    public_url = "https://fleet.test"  # the app's PUBLIC_URL (importing it would build the app)
    headers = {
        "Authorization": f"DPoP {token}",
        "DPoP": key.proof("GET", f"{public_url}/me", access_token=token),
    }
    first = two_workers.get("/me", headers=headers)
    assert first.status_code == 200, first.text
    accepted_by = first.headers["x-worker"]
    replays: dict[str, int] = {}

    def other_worker_refused() -> bool:
        reply = two_workers.get("/me", headers=headers)
        replays[reply.headers["x-worker"]] = reply.status_code
        assert reply.status_code == 401, reply.text  # a replay, whichever worker takes it
        assert 'error="invalid_dpop_proof"' in reply.headers["www-authenticate"]
        return any(worker != accepted_by for worker in replays)

    poll(other_worker_refused, "the replay reaching the other worker")
    fresh = {**headers, "DPoP": key.proof("GET", f"{public_url}/me", access_token=token)}
    assert two_workers.get("/me", headers=fresh).status_code == 200
