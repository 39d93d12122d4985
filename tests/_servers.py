"""Real server processes in tests: a free loopback port, and waiting until it listens."""

from __future__ import annotations

import socket
import subprocess
import time
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
            time.sleep(0.05)  # readiness poll, bounded by the deadline
    pytest.fail(f"{what} did not listen within {STARTUP_DEADLINE}s:\n{log.read_text()}")
