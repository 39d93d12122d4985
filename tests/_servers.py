"""Real server processes in tests: a free loopback port, starting a server, waiting until it
listens, and stopping it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

STARTUP_DEADLINE = 20.0


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
