"""``jwt-guard revoke`` and ``jwt-guard revocations list|remove`` against a real ``redis-server``.

The commands run in process (``main([...])``); a "worker" is a verifier following the same
Redis, which must refuse what the command revoked.
"""

from __future__ import annotations

import datetime
import io
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from _redis import RedisServer
from jwt_guard import TokenVerifier
from jwt_guard.cli import main
from jwt_guard.errors import RevokedToken
from jwt_guard.stores.fleet import Stores
from jwt_guard.stores.redis import RedisRevocationStore
from jwt_guard.testing import LocalIssuer

WAIT = 10.0


@pytest.fixture
def namespace() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def worker(server: RedisServer, namespace: str, jwt_issuer: LocalIssuer) -> Iterator[TokenVerifier]:
    stores = Stores.redis(server.url, namespace=namespace)
    verifier = TokenVerifier(
        issuer=jwt_issuer.issuer,
        audience=jwt_issuer.audience,
        jwks_url=jwt_issuer.jwks_url,
        store=stores,
    )
    verifier.prefetch()
    yield verifier
    stores.close()


def cli(
    capsys: pytest.CaptureFixture[str], server: RedisServer, namespace: str, *argv: str
) -> tuple[int, str, str]:
    command, *rest = argv
    store = ["--store", server.url, "--namespace", namespace]
    if command == "revocations":
        code = main([command, rest[0], *store, *rest[1:]])
    else:
        code = main([command, *store, *rest])
    out, err = capsys.readouterr()
    return code, out, err


def _refused(worker: TokenVerifier, token: str) -> bool:
    def check() -> bool:
        try:
            worker.verify(token)
        except RevokedToken:
            return True
        return False

    revocation = worker.store.revocation
    assert isinstance(revocation, RedisRevocationStore)
    return revocation.wait_for(check, WAIT)


def test_revoke_a_jti_until_its_exp_and_every_worker_refuses_it(
    capsys: pytest.CaptureFixture[str],
    server: RedisServer,
    namespace: str,
    worker: TokenVerifier,
    jwt_issuer: LocalIssuer,
) -> None:
    token = jwt_issuer.mint()
    claims = worker.verify(token)
    code, out, err = cli(
        capsys, server, namespace, "revoke", f"--jti={claims['jti']}", "--until", str(claims["exp"])
    )
    assert (code, err) == (0, "")
    until = datetime.datetime.fromtimestamp(claims["exp"], datetime.timezone.utc)
    assert out == (
        f"revoked jti '{claims['jti']}' until {until:%Y-%m-%dT%H:%M:%SZ} (store {server.url})\n"
    )
    assert _refused(worker, token)
    code, out, _ = cli(capsys, server, namespace, "revocations", "list", "--json")
    assert code == 0
    assert json.loads(out) == {
        "revocations": [
            {"kind": "jti", "value": claims["jti"], "until": claims["exp"], "issued_before": None}
        ],
        "store": server.url,
    }


def test_revoke_a_token_given_whole_reads_its_jti_and_exp(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    server: RedisServer,
    namespace: str,
    worker: TokenVerifier,
    jwt_issuer: LocalIssuer,
) -> None:
    token = jwt_issuer.mint()
    claims = worker.verify(token)
    monkeypatch.setattr("sys.stdin", io.StringIO(f"Bearer {token}\n"))
    code, out, _ = cli(capsys, server, namespace, "revoke", "--token", "-", "--json")
    assert code == 0
    assert json.loads(out)["revoked"] == {
        "kind": "jti",
        "value": claims["jti"],
        "until": claims["exp"],
        "issued_before": None,
    }
    assert _refused(worker, token)


def test_revoke_a_subject_signs_out_its_older_tokens(
    capsys: pytest.CaptureFixture[str],
    server: RedisServer,
    namespace: str,
    worker: TokenVerifier,
    jwt_issuer: LocalIssuer,
) -> None:
    now = time.time()
    old = jwt_issuer.mint(subject="alice", issued_at=now - 600, expires_in=3600)
    new = jwt_issuer.mint(subject="alice", issued_at=now + 5, expires_in=3600)  # signs in again
    worker.verify(old)
    code, out, _ = cli(
        capsys, server, namespace, "revoke", "--sub", "alice", "--before", "+0s", "--until", "+1h"
    )
    assert code == 0
    assert out.startswith("revoked sub 'alice' issued before ")
    assert _refused(worker, old)
    assert worker.verify(new).subject == "alice"  # issued after --before
    code, out, _ = cli(capsys, server, namespace, "revocations", "list")
    assert (code, out.count("\n")) == (0, 1)
    assert out.startswith("sub 'alice' issued before ")
    code, out, _ = cli(capsys, server, namespace, "revocations", "remove", "--sub", "alice")
    assert (code, out) == (0, f"removed sub 'alice' (store {server.url})\n")
    assert worker.store.revocation.wait_for(  # type: ignore[attr-defined]
        lambda: not worker.store.revocation.is_revoked(None, "alice", now - 600), WAIT
    )
    code, out, err = cli(capsys, server, namespace, "revocations", "remove", "--sub", "alice")
    assert (code, out) == (1, "")
    assert err == f"jwt-guard revocations: no entry for sub 'alice' (store {server.url})\n"
    code, out, _ = cli(capsys, server, namespace, "revocations", "list")
    assert (code, out) == (0, f"no revocations in force (store {server.url})\n")


@pytest.mark.parametrize(
    "write",
    [
        pytest.param(lambda t: f"{t:%Y-%m-%dT%H:%M:%SZ}", id="iso-utc"),
        pytest.param(
            lambda t: (t + datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S+01:00"),
            id="iso-offset",
        ),
        pytest.param(lambda t: str(int(t.timestamp())), id="epoch"),
    ],
)
def test_until_takes_epoch_seconds_and_iso_times(
    capsys: pytest.CaptureFixture[str],
    server: RedisServer,
    namespace: str,
    write: Callable[[datetime.datetime], str],
) -> None:
    tomorrow = datetime.datetime.fromtimestamp(int(time.time()) + 86400, datetime.timezone.utc)
    code, out, _ = cli(
        capsys, server, namespace, "revoke", "--jti", "j1", "--until", write(tomorrow)
    )
    assert code == 0, out
    code, out, _ = cli(capsys, server, namespace, "revocations", "list", "--json")
    assert json.loads(out)["revocations"][0]["until"] == tomorrow.timestamp()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(
            ["--jti", "j1", "--until", "tomorrow"], "--until 'tomorrow': write", id="when"
        ),
        pytest.param(["--jti", "j1", "--until", "1000"], "--until is in the past", id="past"),
        pytest.param(["--jti", "j1", "--before", "+0s"], "--before goes with --sub", id="before"),
        pytest.param(["--jti", "j1", "--until", "+400d"], "more than max_ttl", id="too-far"),
        pytest.param(["--jti", "x" * 2000], "1 to 1024 bytes", id="long-jti"),
        pytest.param(["--token", "not-a-jwt"], "--token is not a JWT", id="not-a-jwt"),
        pytest.param([], "one of the arguments --jti --sub --token is required", id="none"),
        pytest.param(["--jti", "a", "--sub", "b"], "not allowed with argument", id="both"),
    ],
)
def test_bad_arguments_are_one_line_with_exit_2(
    capsys: pytest.CaptureFixture[str],
    server: RedisServer,
    namespace: str,
    argv: list[str],
    message: str,
) -> None:
    code, out, err = cli(capsys, server, namespace, "revoke", *argv)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1
    assert message in err


def test_a_token_without_jti_says_to_revoke_the_subject(
    capsys: pytest.CaptureFixture[str], server: RedisServer, namespace: str, jwt_issuer: LocalIssuer
) -> None:
    token = jwt_issuer.mint({"jti": None})
    code, _, err = cli(capsys, server, namespace, "revoke", "--token", token)
    assert code == 2
    assert "the token has no 'jti' to revoke: revoke its subject instead (--sub)" in err


def test_without_a_store_it_says_where_to_give_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JWT_GUARD_STORE_URL", raising=False)
    assert main(["revoke", "--jti", "j1"]) == 2
    assert "give --store redis://host:6379/0 (or set JWT_GUARD_STORE_URL)" in (
        capsys.readouterr().err
    )
    assert main(["revocations", "list", "--store", "memory://"]) == 2
    assert "a memory store lives inside one process" in capsys.readouterr().err


def test_the_store_url_comes_from_the_environment(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    server: RedisServer,
    namespace: str,
) -> None:
    monkeypatch.setenv("JWT_GUARD_STORE_URL", server.url)
    monkeypatch.setenv("JWT_GUARD_STORE_NAMESPACE", namespace)
    assert main(["revoke", "--jti", "from-env", "--until", "+1h"]) == 0
    assert capsys.readouterr().out.startswith("revoked jti 'from-env' until ")
    assert main(["revocations", "list", "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)["revocations"]
    assert entry["value"] == "from-env"


def test_a_store_that_does_not_answer_is_exit_3_quickly_without_the_password(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    dead = RedisServer(tmp_path)  # never started: connection refused
    url = dead.url.replace("redis://", "redis://admin:hunter2@")
    started = time.monotonic()
    code = main(["revoke", "--store", url, "--timeout", "0.2", "--jti", "j1", "--json"])
    assert time.monotonic() - started < 5.0  # two 0.2 s timeouts at most; headroom for load
    out, err = capsys.readouterr()
    assert (code, err) == (3, "")
    answer = json.loads(out)
    assert (answer["error"], answer["exit_code"]) == ("store_unavailable", 3)
    assert "hunter2" not in out
    assert "admin:***@" in answer["message"]
    code = main(["revocations", "list", "--store", url, "--timeout", "0.2"])
    out, err = capsys.readouterr()
    assert (code, out) == (3, "")
    assert err.startswith("jwt-guard revocations: error: the store did not answer: ")
    assert "hunter2" not in err
