"""JWKSFile: a JWK Set in a local file, read at construction and again when the file changes
(checked at most once per ``reload`` seconds on the injected monotonic clock); a broken version
keeps the last good set serving and is logged once."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import threading
import warnings
from pathlib import Path
from typing import Any

import pytest

from _core_helpers import AUDIENCE, ISSUER, Clock, Key, claims_at, make_key, token
from jwt_guard import ConfigurationError, GuardObserver, Issuer, TokenVerifier
from jwt_guard.errors import UnknownKey
from jwt_guard.sources import JWKSFile

RELOAD = 10.0


@pytest.fixture(scope="module")
def k1() -> Key:
    return make_key("ES256", "k1", name="file-1")


@pytest.fixture(scope="module")
def k2() -> Key:
    return make_key("ES256", "k2", name="file-2")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def path(tmp_path: Path, k1: Key) -> Path:
    target = tmp_path / "jwks.json"
    put(target, k1.jwks())
    return target


def put(path: Path, document: Any) -> None:
    """Replace the file as rotation tools do: write a new file, rename it over the old one."""
    new = path.with_name(path.name + ".new")
    new.write_text(document if isinstance(document, str) else json.dumps(document), "utf-8")
    os.replace(new, path)


def _source(path: Path, clock: Clock, **options: Any) -> JWKSFile:
    options.setdefault("reload", RELOAD)
    return JWKSFile(path, monotonic=clock.monotonic, **options)


def _verifier(source: JWKSFile, clock: Clock) -> TokenVerifier:
    return TokenVerifier(
        issuers=[Issuer(ISSUER, AUDIENCE, key_source=source)],
        clock=clock,
        monotonic=clock.monotonic,
    )


def _token(key: Key, clock: Clock, **claims: Any) -> str:
    return token(key, claims_at(clock(), **claims))


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "jwt_guard.sources" and r.levelno == logging.WARNING
    ]


# -- construction -----------------------------------------------------------------------------


def test_the_file_is_read_at_construction_and_verifies(path: Path, k1: Key, clock: Clock) -> None:
    source = _source(path, clock)
    assert (source.keyset.kids, source.reads, source.name) == ({"k1"}, 1, f"file:{path}")
    verifier = _verifier(source, clock)
    assert verifier.key_sources()[ISSUER] is source  # the package's own: called directly
    assert verifier.verify(_token(k1, clock)).subject == "user-1"
    assert asyncio.run(verifier.averify(_token(k1, clock, sub="a"))).subject == "a"
    assert verifier.health()["issuers"][ISSUER] == {
        "source": f"file:{path}",
        "keys": 1,
        "kids": ["k1"],
        "age": 0.0,
        "reads": 1,
        "stale": False,
        "usable": True,
        "last_error": None,
    }


def test_a_relative_path_is_made_absolute(
    tmp_path: Path, k1: Key, monkeypatch: pytest.MonkeyPatch
) -> None:
    put(tmp_path / "jwks.json", k1.jwks())
    monkeypatch.chdir(tmp_path)
    source = JWKSFile("jwks.json")
    monkeypatch.chdir("/")
    assert source.path == str(tmp_path / "jwks.json")
    source.prefetch()
    assert source.last_error is None


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        pytest.param(None, "cannot read the file: No such file or directory", id="missing"),
        pytest.param("{not json", "", id="not-json"),
        pytest.param("[]", "not an object", id="json-array"),
        pytest.param({"keys": "k1"}, "'keys' array", id="keys-not-a-list"),
        pytest.param({"keys": []}, "holds no key", id="no-key"),
        pytest.param({"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}, "", id="bad"),
        pytest.param("x" * 600_000, "larger than max_bytes", id="too-large"),
    ],
)
def test_a_file_that_cannot_serve_fails_at_construction(
    tmp_path: Path, content: Any, reason: str
) -> None:
    target = tmp_path / "jwks.json"
    if content is not None:
        put(target, content)
    with pytest.raises(ConfigurationError, match=r"^JWKSFile\('") as excinfo:
        JWKSFile(target)
    assert reason in str(excinfo.value)


def test_a_weak_key_in_the_file_fails_like_a_static_one(tmp_path: Path) -> None:
    target = tmp_path / "jwks.json"
    put(target, make_key("RS256", "weak", name="weak-1024", bits=1024).jwks())
    with pytest.raises(ConfigurationError, match="under 2048"):
        JWKSFile(target)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("path", 5),
        ("path", ""),
        ("reload", -1),
        ("reload", "10"),
        ("reload", float("nan")),
        ("algorithms", "ES256"),
        ("algorithms", [5]),
        ("allow_oct", "yes"),
        ("max_bytes", 0),
        ("max_bytes", 1.5),
        ("monotonic", 5),
    ],
)
def test_bad_options_are_configuration_errors(path: Path, option: str, value: Any) -> None:
    options: dict[str, Any] = {"path": path, option: value}
    with pytest.raises(ConfigurationError, match=rf"^JWKSFile\({option}=\.\.\.\)"):
        JWKSFile(**options)


def test_symmetric_keys_are_accepted_unless_allow_oct_is_off(tmp_path: Path) -> None:
    secret = make_key("HS256", "hs-1")
    target = tmp_path / "jwks.json"
    put(target, secret.jwks())
    clock = Clock()
    verifier = _verifier(_source(target, clock), clock)
    assert verifier.verify(_token(secret, clock)).subject == "user-1"
    with pytest.raises(ConfigurationError, match="holds no key"):
        JWKSFile(target, allow_oct=False)


# -- change detection -------------------------------------------------------------------------


def test_a_rotation_is_picked_up_at_the_next_check_and_not_before(
    path: Path, k1: Key, k2: Key, clock: Clock
) -> None:
    source = _source(path, clock)
    verifier = _verifier(source, clock)
    old = _token(k1, clock)
    assert verifier.verify(old).subject == "user-1"
    put(path, k2.jwks())
    clock.advance(RELOAD - 1)
    with pytest.raises(UnknownKey):  # not checked yet
        verifier.verify(_token(k2, clock))
    assert verifier.verify(old).subject == "user-1"
    assert source.reads == 1
    clock.advance(1)
    assert verifier.verify(_token(k2, clock, sub="new")).subject == "new"
    assert source.reads == 2
    with pytest.raises(UnknownKey):  # the cached token too: its key left the file
        verifier.verify(old)


def test_an_unchanged_file_is_only_stat_ed(path: Path, clock: Clock) -> None:
    source = _source(path, clock)
    keyset = source.keyset
    for _ in range(5):
        clock.advance(RELOAD)
        assert source.current() is keyset
    assert source.reads == 1


def test_an_edit_in_place_that_changes_the_size_is_seen(
    path: Path, k1: Key, k2: Key, clock: Clock
) -> None:
    source = _source(path, clock)
    path.write_text(json.dumps({"keys": [k1.public_jwk(), k2.public_jwk()]}), "utf-8")
    clock.advance(RELOAD)
    assert source.keys_for("k2").kids == {"k1", "k2"}


def test_reload_none_reads_once_and_zero_checks_every_time(
    path: Path, k2: Key, clock: Clock
) -> None:
    once = _source(path, clock, reload=None)
    always = _source(path, clock, reload=0)
    put(path, k2.jwks())
    clock.advance(10**6)
    once.prefetch()
    assert once.current().kids == {"k1"}
    assert always.current().kids == {"k2"}  # no time passed for it: checked on the call


def test_prefetch_checks_at_once_whatever_the_interval(path: Path, k2: Key, clock: Clock) -> None:
    source = _source(path, clock)
    put(path, k2.jwks())
    source.prefetch()
    assert source.current().kids == {"k2"}
    put(path, {"keys": []})
    asyncio.run(source.aprefetch())
    assert source.status()["stale"] is True


def test_threads_after_a_change_read_the_file_once(path: Path, k2: Key, clock: Clock) -> None:
    source = _source(path, clock)
    put(path, k2.jwks())
    clock.advance(RELOAD)
    start = threading.Barrier(16)
    seen: list[frozenset[str]] = []

    def ask() -> None:
        start.wait()
        seen.append(source.current().kids)

    threads = [threading.Thread(target=ask) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert source.reads == 2
    assert set(seen) <= {frozenset({"k1"}), frozenset({"k2"})}  # the old set, or the new one
    assert source.current().kids == {"k2"}


# -- a broken file ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param("{half a json", id="truncated"),
        pytest.param({"keys": []}, id="no-key"),
        pytest.param(make_key("RS256", "weak", name="weak-1024", bits=1024).jwks(), id="weak"),
        pytest.param(None, id="deleted"),
    ],
)
def test_a_broken_file_keeps_the_last_good_set_and_is_logged_once(
    path: Path,
    k1: Key,
    k2: Key,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
    broken: Any,
) -> None:
    source = _source(path, clock)
    verifier = _verifier(source, clock)
    caplog.set_level(logging.INFO, logger="jwt_guard")
    if broken is None:
        path.unlink()
    else:
        put(path, broken)
    for i in range(4):
        clock.advance(RELOAD)
        assert verifier.verify(_token(k1, clock, sub=f"u{i}")).subject == f"u{i}"
    assert len(_warnings(caplog)) == 1
    assert "serving=last good set (keys=1)" in _warnings(caplog)[0]
    status = source.status()
    assert (status["stale"], status["usable"], status["reads"]) == (True, True, 1)
    assert status["last_error"]
    assert verifier.health()["ok"] is True
    put(path, k2.jwks())  # fixed: back in step at the next check
    clock.advance(RELOAD)
    assert verifier.verify(_token(k2, clock)).subject == "user-1"
    assert (source.status()["stale"], source.last_error, source.reads) == (False, None, 2)
    assert len(_warnings(caplog)) == 1


def test_each_new_broken_version_is_logged_and_observed_once(
    path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[tuple[str, ...]] = []

    class Observer(GuardObserver):
        def keys_fetched(self, source: str, keys: int, seconds: float) -> None:
            events.append(("fetched", source, str(keys)))

        def keys_failed(self, source: str, error: str) -> None:
            events.append(("failed", source, error[:20]))

    source = _source(path, clock, observer=Observer())
    caplog.set_level(logging.INFO, logger="jwt_guard")
    for text in ("{broken one", "{broken two, longer"):
        put(path, text)
        for _ in range(3):
            clock.advance(RELOAD)
            source.current()
    name = f"file:{path}"
    assert [e[:2] for e in events] == [("fetched", name), ("failed", name), ("failed", name)]
    assert len(_warnings(caplog)) == 2


def test_a_file_grown_past_max_bytes_is_a_broken_version(path: Path, k1: Key, clock: Clock) -> None:
    source = _source(path, clock, max_bytes=4096)
    put(path, {"keys": [k1.public_jwk()], "padding": "x" * 5000})
    clock.advance(RELOAD)
    assert source.current().kids == {"k1"}
    assert "larger than max_bytes (4096)" in str(source.last_error)


def test_log_lines_escape_the_path(tmp_path: Path, k1: Key, clock: Clock, caplog: Any) -> None:
    target = tmp_path / "jwks\x1b[2J.json"
    put(target, k1.jwks())
    caplog.set_level(logging.INFO, logger="jwt_guard")
    source = _source(target, clock)
    put(target, "{broken")
    clock.advance(RELOAD)
    source.current()
    lines = [r.getMessage() for r in caplog.records if r.name == "jwt_guard.sources"]
    assert len(lines) == 2  # the first read, the broken version
    assert not any("\x1b" in line for line in lines)


# -- fork -------------------------------------------------------------------------------------


def test_a_check_in_progress_at_fork_time_does_not_hold_the_child(
    tmp_path: Path, k1: Key, k2: Key
) -> None:
    """A real fork of this process (no interpreter to start) while a thread of it is in the
    middle of a check (the source's lock held): the child checks for itself."""
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(k1.jwks()))
    source = JWKSFile(str(path), reload=3600)
    source._lock.acquire()  # a thread of the parent in the middle of a check at the fork
    changed = tmp_path / "jwks.json.new"
    changed.write_text(json.dumps(k2.jwks()))
    os.replace(changed, path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads: the point
        pid = os.fork()
    if pid == 0:  # the child: it answers by its exit status and never returns into pytest
        status = 1
        try:
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.alarm(60)  # a hang (the lock the fork kept held) kills it: a failure
            source.prefetch()  # a fresh lock in the child, so the check runs
            status = 0 if source.reads == 2 else 1
        finally:
            os._exit(status)
    source._lock.release()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
