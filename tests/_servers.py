"""Real server processes in tests: a free loopback port, starting a server, waiting until it
listens, and stopping it; :func:`run_uvicorn` does all of it for an app of this project."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

from jwt_guard.testing import LocalIssuer

STARTUP_DEADLINE = 20.0
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_listening(
    port: int, process: subprocess.Popen[bytes], log: Path, what: str = "the server"
) -> None:
    """Poll 127.0.0.1:``port`` until it accepts; fail with ``log`` if the process dies or the
    deadline passes."""
    deadline = time.monotonic() + STARTUP_DEADLINE
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{what} exited with {process.returncode}:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.01)  # readiness poll, bounded by the deadline
    pytest.fail(f"{what} did not listen within {STARTUP_DEADLINE}s:\n{log.read_text()}")


def start(
    command: list[str], log: Path, *, cwd: Path, env: Mapping[str, str]
) -> subprocess.Popen[bytes]:
    """Start a server process, its output into ``log``, in a process group of its own (so that
    :func:`stop` ends the workers it forks too)."""
    with log.open("wb") as out:
        return subprocess.Popen(
            command,
            cwd=cwd,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    """End a server :func:`start` started, and every process it forked, at once: SIGKILL to its
    process group. The tests look at what a server answers, never at its graceful shutdown,
    which waits about 0.2 s per uvicorn (a 0.1 s tick, then a 0.1 s pause) and longer for a
    server with workers."""
    if process.returncode is None:  # not reaped yet: the pid, so the group id, is still ours
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def clean_env(**variables: str) -> dict[str, str]:
    """This process's environment without any JWT_GUARD_* variable, plus ``variables``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JWT_GUARD_")}
    return {**env, **variables}


def issuer_env(issuer: LocalIssuer) -> dict[str, str]:
    """:func:`clean_env` configured for ``issuer``: its issuer, audience and JWKS URL."""
    return clean_env(
        JWT_GUARD_ISSUER=issuer.issuer,
        JWT_GUARD_AUDIENCE=issuer.audience,
        JWT_GUARD_JWKS_URL=issuer.jwks_url,
    )


@contextmanager
def run_uvicorn(
    app: str, log: Path, env: Mapping[str, str], *options: str, port: int | None = None
) -> Iterator[int]:
    """``uvicorn <app>`` run from the project root on 127.0.0.1 (``port``, or a free one),
    listening: the port. Stopped (with its workers) on leaving."""
    port = free_port() if port is None else port
    command = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
    command += ["--log-level", "warning", *options]
    process = start(command, log, cwd=ROOT, env=env)
    try:
        wait_until_listening(port, process, log, "uvicorn")
        yield port
    finally:
        stop(process)
