"""The ``jwt-guard`` command: inspect, verify, mint, issuer, demo; against real loopback servers."""

from __future__ import annotations

import argparse
import base64
import functools
import io
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from _servers import free_port
from jwt_guard import JWTGuardError, TokenVerifier
from jwt_guard.cli import _demo, _local, build_parser, main
from jwt_guard.cli._commands import _report_refusal
from jwt_guard.cli._keyfile import KeyFile, private_jwk, signing_key
from jwt_guard.core.jws import verify_jws
from jwt_guard.errors import WrongIssuer
from jwt_guard.keys.algorithms import ALGORITHMS
from jwt_guard.keys.jwk import thumbprint
from jwt_guard.testing import LocalIssuer, SigningKey, generate_key
from jwt_guard.testing._keys import compact_jws
from jwt_guard.testing.pytest_plugin import IssuerFault, MintToken


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def b64(data: dict[str, Any] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unsigned(header: dict[str, Any], claims: dict[str, Any], sig: str = "c2ln") -> str:
    return f"{b64(header)}.{b64(claims)}.{sig}"


# -- inspect


def test_inspect_shows_header_claims_and_relative_times(
    capsys: pytest.CaptureFixture[str], mint_token: MintToken, jwt_issuer: LocalIssuer
) -> None:
    now = int(time.time())
    token = mint_token({"role": "admin"}, issued_at=now - 4 * 3600, expires_in=3600)
    code, out, err = run(capsys, "inspect", token)
    assert (code, err) == (0, "")
    assert f'"kid": "{jwt_issuer.key().kid}"' in out
    assert '"role": "admin"' in out
    assert "(expired 3 h ago)" in out
    assert "(issued 4 h ago)" in out
    assert " UTC " in out
    assert "! the token expired 3 h ago" in out
    assert "signature: not checked" in out


@pytest.mark.parametrize(
    ("header", "claims", "warning"),
    [
        pytest.param({"alg": "none"}, {"exp": 1}, "alg 'none'", id="alg-none"),
        pytest.param({"alg": "RS256", "kid": "k"}, {"iss": "x", "aud": "y"}, "no 'exp'", id="exp"),
        pytest.param({"alg": "RS256", "jku": "https://evil"}, {}, "header has 'jku'", id="jku"),
        pytest.param({"alg": "RS256", "x5c": ["MII"]}, {}, "header has 'x5c'", id="x5c"),
        pytest.param({"alg": "RS256", "crit": ["exp"]}, {}, "header has 'crit'", id="crit"),
        pytest.param({"alg": "RS256", "b64": False}, {}, "b64: false", id="b64"),
        pytest.param({"alg": "HS256", "kid": "k"}, {}, "symmetric", id="hs"),
        pytest.param({"alg": "XX1"}, {}, "not a supported algorithm", id="unknown-alg"),
        pytest.param({"alg": "RS256"}, {"exp": "1700000000"}, "not a finite JSON", id="exp-str"),
        pytest.param({"alg": "RS256"}, {"sub": 5}, "'sub' is not a string", id="sub-int"),
        pytest.param({"alg": "RS256"}, {"aud": [1]}, "neither a string", id="aud-type"),
        pytest.param({"alg": "RS256"}, {"nbf": 4e9}, "not valid for another", id="nbf"),
        pytest.param({"alg": "RS256"}, {}, "no 'kid'", id="no-kid"),
    ],
)
def test_inspect_warns_about_what_a_verifier_refuses(
    capsys: pytest.CaptureFixture[str], header: dict[str, Any], claims: dict[str, Any], warning: str
) -> None:
    code, out, _ = run(capsys, "inspect", "--json", unsigned(header, claims))
    document = json.loads(out)
    assert code == 0
    assert document["verified"] is False
    assert any(warning in w for w in document["warnings"]), document["warnings"]


def test_inspect_does_not_warn_about_crit_b64_true(capsys: pytest.CaptureFixture[str]) -> None:
    # RFC 7797's no-op, which a verifier accepts.
    header = {"alg": "RS256", "kid": "k", "crit": ["b64"], "b64": True}
    code, out, _ = run(capsys, "inspect", "--json", unsigned(header, {"exp": 4e9}))
    assert code == 0
    assert not any("crit" in w for w in json.loads(out)["warnings"])


@pytest.mark.parametrize(
    ("claims", "header", "argv", "warning"),
    [
        pytest.param(
            {"iss": "https://idp.example.com"},
            {},
            ["--issuer", "https://idp.example.com/"],
            "'iss' is 'https://idp.example.com', not the expected 'https://idp.example.com/' "
            "(they differ only in a trailing '/': the match is exact): a verifier refuses it",
            id="iss-slash",
        ),
        pytest.param(
            {"iss": "https://other.test/"},
            {},
            ["--issuer", "https://idp.example.com/"],
            "'iss' is 'https://other.test/', not the expected 'https://idp.example.com/': "
            "a verifier refuses it",
            id="iss",
        ),
        pytest.param(
            {"aud": ["api://a", "API://B"]},
            {},
            ["--audience", "api://b", "--audience", "api://c"],
            "'aud' is ['api://a', 'API://B'], none of the expected 'api://b', 'api://c' "
            "(they differ only in case: the match is exact): a verifier refuses it",
            id="aud-case",
        ),
        pytest.param(
            {},
            {"typ": "JWT"},
            ["--typ", "at+jwt"],
            "header 'typ' is 'JWT', not the expected 'at+jwt': a verifier refuses it",
            id="typ",
        ),
        pytest.param(
            {},
            {},
            ["--typ", "at+jwt"],
            "header 'typ' is None, not the expected 'at+jwt'",
            id="no-typ",
        ),
    ],
)
def test_inspect_shows_the_token_s_values_next_to_the_expected_ones(
    capsys: pytest.CaptureFixture[str],
    claims: dict[str, Any],
    header: dict[str, Any],
    argv: list[str],
    warning: str,
) -> None:
    token = unsigned({"alg": "RS256", "kid": "k", **header}, {"exp": 4e9, **claims})
    code, out, _ = run(capsys, "inspect", token, *argv, "--json")
    assert code == 0
    assert any(w.startswith(warning) for w in json.loads(out)["warnings"]), out


def test_inspect_says_nothing_when_the_values_match(capsys: pytest.CaptureFixture[str]) -> None:
    claims = {"iss": "https://i/", "aud": ["x", "y"], "exp": 4e9}
    token = unsigned({"alg": "RS256", "kid": "k", "typ": "application/at+jwt"}, claims)
    argv = ["--issuer", "https://i/", "--audience", "y", "--typ", "at+JWT", "--json"]
    code, out, _ = run(capsys, "inspect", token, *argv)
    assert (code, json.loads(out)["warnings"]) == (0, [])


def test_inspect_oddities_jwe_oversize_stdin_and_garbage(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    jwe = f"{b64({'alg': 'RSA-OAEP', 'enc': 'A256GCM'})}.a.b.c.d"
    assert "encrypted token (JWE)" in run(capsys, "inspect", jwe)[1]
    big = unsigned({"alg": "RS256", "kid": "k"}, {"pad": "x" * 9000})
    assert "over the default max_token_size" in run(capsys, "inspect", big)[1]
    duplicate = b'{"alg":"RS256","alg":"none"}'
    dup = f"{b64(duplicate)}.{b64({})}.c2ln"
    assert "duplicate member name" in run(capsys, "inspect", dup)[1]
    padded = unsigned({"alg": "RS256"}, {}) + "=="
    assert "not canonical base64url" in run(capsys, "inspect", padded)[1]
    monkeypatch.setattr(sys, "stdin", io.StringIO("Bearer " + unsigned({"alg": "ES256"}, {})))
    assert '"alg": "ES256"' in run(capsys, "inspect", "-")[1]
    code, out, err = run(capsys, "inspect", "not-a-token")
    assert (code, out) == (1, "")
    assert err == "jwt-guard inspect: error: not a JWT: 1 segment(s), expected 3 separated by '.'\n"


# -- verify


def test_verify_a_valid_token_through_discovery(
    capsys: pytest.CaptureFixture[str], jwt_issuer: LocalIssuer, mint_token: MintToken
) -> None:
    token = mint_token(subject="alice", scopes=["read:items"])
    code, out, err = run(
        capsys, "verify", token, "--issuer", jwt_issuer.issuer, "--audience", jwt_issuer.audience
    )
    assert (code, err) == (0, "")
    assert out.startswith("valid\n")
    assert "subject   alice" in out
    assert "scopes    read:items" in out
    argv = ["verify", token, "--issuer", jwt_issuer.issuer, "--any-audience", "--json"]
    code, out, _ = run(capsys, *argv)
    document = json.loads(out)
    assert code == 0
    assert document["claims"]["sub"] == "alice"
    assert document["audience_checked"] is False


@pytest.mark.parametrize(
    ("mint", "extra", "code_name"),
    [
        pytest.param({"expires_in": -3600}, [], "expired", id="expired"),
        pytest.param({"audience": "other"}, [], "wrong_audience", id="audience"),
        pytest.param({"issuer": "https://evil.test"}, [], "wrong_issuer", id="issuer"),
        pytest.param({"alg": "ES256"}, ["--algorithms", "RS256"], "alg_not_allowed", id="alg"),
        pytest.param({"scopes": ["x"]}, ["--typ", "at+jwt"], "bad_header", id="typ"),
        pytest.param({}, ["--require-claim", "email"], "missing_claim", id="required"),
    ],
)
def test_verify_names_the_check_that_failed(
    capsys: pytest.CaptureFixture[str],
    jwt_issuer: LocalIssuer,
    mint_token: MintToken,
    mint: dict[str, Any],
    extra: list[str],
    code_name: str,
) -> None:
    token = mint_token(**mint)
    argv = ["verify", token, "--issuer", jwt_issuer.issuer, "--audience", jwt_issuer.audience]
    code, out, err = run(capsys, *argv, *extra)
    assert code == 1
    assert out == ""
    assert err.startswith(f"invalid: {code_name} (")
    assert "an API would answer 401 with WWW-Authenticate: Bearer realm=" in err
    code, out, _ = run(capsys, *argv, *extra, "--json")
    document = json.loads(out)
    assert (code, document["valid"], document["error"]) == (1, False, code_name)
    assert document["status"] == 401
    assert 'error="invalid_token"' in document["www_authenticate"]


def test_verify_with_a_jwks_url_a_jwks_file_and_scope_claims(
    capsys: pytest.CaptureFixture[str],
    jwt_issuer: LocalIssuer,
    mint_token: MintToken,
    tmp_path: Path,
) -> None:
    token = mint_token({"permissions": ["read:a", "write:a"]})
    common = ["--issuer", jwt_issuer.issuer, "--audience", jwt_issuer.audience, "--json"]
    code, out, _ = run(
        capsys, "verify", token, *common, "--jwks-url", jwt_issuer.jwks_url,
        "--scope-claim", "permissions",
    )  # fmt: skip
    assert code == 0
    assert json.loads(out)["scopes"] == ["read:a", "write:a"]
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwt_issuer.jwks()))
    assert run(capsys, "verify", token, *common, "--jwks-file", str(path))[0] == 0
    jwt_issuer.rotate()
    path.write_text(json.dumps(jwt_issuer.jwks()))
    code, out, _ = run(capsys, "verify", token, *common, "--jwks-file", str(path))
    assert (code, json.loads(out)["error"]) == (1, "unknown_key")


def test_verify_keys_unavailable_exits_3(
    capsys: pytest.CaptureFixture[str],
    jwt_issuer: LocalIssuer,
    mint_token: MintToken,
    jwt_issuer_fault: IssuerFault,
) -> None:
    token = mint_token()
    with jwt_issuer_fault("down"):
        code, out, err = run(
            capsys, "verify", token, "--issuer", jwt_issuer.issuer, "--any-audience"
        )
    assert (code, out) == (3, "")
    assert err.splitlines()[0].startswith("invalid: keys_unavailable (KeysUnavailable): no usable")
    assert "an API would answer 503" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["verify", "a.b.c"], "--issuer is required", id="no-issuer"),
        pytest.param(
            ["verify", "a.b.c", "--issuer", "https://i.test"], "--audience is required", id="no-aud"
        ),
        pytest.param(
            [
                "verify",
                "a.b.c",
                "--issuer",
                "https://i.test",
                "--any-audience",
                "--algorithms",
                "none",
            ],
            "unsupported algorithms ['none']",
            id="alg-none",
        ),
        pytest.param(
            ["verify", "a.b.c", "--issuer", "http://idp.example.com", "--audience", "a"],
            "must be an https:// URL",
            id="http",
        ),
        pytest.param(
            [
                "verify",
                "a.b.c",
                "--issuer",
                "i",
                "--audience",
                "a",
                "--jwks-file",
                "/nonexistent/x",
            ],
            "--jwks-file '/nonexistent/x'",
            id="jwks-file",
        ),
        pytest.param(["mint", "--expires-in", "soon"], "'soon' is not a duration", id="duration"),
        pytest.param(["mint", "--claim", "novalue"], "write NAME=VALUE", id="claim"),
        pytest.param(["mint", "--alg", "XX512"], "unknown algorithm 'XX512'", id="alg"),
        pytest.param(["verify", "--leeway", "soon"], "invalid float value: 'soon'", id="float"),
        pytest.param(["demo", "--port", "70000"], "not a port number (0-65535)", id="port"),
        pytest.param(["mint", "--port", "0"], "not a port number (1-65535)", id="port-0"),
        pytest.param(["mint", "--algorithms", ","], "--algorithms names no algorithm", id="algs"),
        pytest.param(["nope"], "invalid choice: 'nope'", id="command"),
        pytest.param([], "required: COMMAND (see jwt-guard --help)", id="no-command"),
    ],
)
def test_errors_are_one_line_with_exit_code_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert (code, out) == (2, "")
    assert err.startswith(f"jwt-guard {argv[0]}: error: " if argv[1:] else "jwt-guard: error: ")
    assert message in err
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert "usage:" not in err
    code, out, err = run(capsys, *argv, "--json")
    document = json.loads(out)
    assert (code, err, document["exit_code"]) == (2, "", 2)
    assert message in document["message"]
    assert document["error"] in ("usage", "configuration")


# -- mint, key files, issuer


@functools.cache
def _rsa_private_key() -> Any:
    return generate_key("RS256").private_key


@pytest.mark.parametrize(
    ("alg", "curve"), [(alg, None) for alg in sorted(ALGORITHMS)] + [("EdDSA", "Ed448")]
)
def test_private_jwks_round_trip_for_every_algorithm(alg: str, curve: str | None) -> None:
    if alg[:2] in ("RS", "PS"):
        key = SigningKey("k1", alg, _rsa_private_key())
    else:
        key = generate_key(alg, "k1", curve=curve)
    again = signing_key(json.loads(json.dumps(private_jwk(key))))
    assert (again.kid, again.alg, again.public_jwk()) == (key.kid, key.alg, key.public_jwk())
    token = compact_jws({"alg": alg, "kid": "k1"}, b"{}", again)
    assert verify_jws(token, {"keys": [key.public_jwk()]}) == ({"alg": alg, "kid": "k1"}, b"{}")


@pytest.mark.parametrize("member", ["n", "d", "p", "q", "dp", "dq", "qi"])
def test_an_rsa_key_whose_members_do_not_fit_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, member: str
) -> None:
    jwk = private_jwk(SigningKey("k1", "RS256", _rsa_private_key()))
    value = int.from_bytes(base64.urlsafe_b64decode(jwk[member] + "=="), "big")
    jwk[member] = base64.urlsafe_b64encode((value + 2).to_bytes(257, "big")).decode().rstrip("=")
    with pytest.raises(ValueError, match="'k1': its RSA members do not fit together"):
        signing_key(jwk)
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"issuer": "http://127.0.0.1:1", "audience": "a", "keys": [jwk]}))
    code, out, err = run(capsys, "mint", "--key-file", str(path))
    assert (code, out) == (2, "")
    assert err.count("\n") == 1
    assert "its RSA members do not fit together" in err


def test_mint_creates_a_private_key_file_and_reuses_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "keys.json"
    code, token, err = run(capsys, "mint", "--key-file", str(path), "--port", "18999")
    assert code == 0
    assert err == f"created {path} for issuer http://127.0.0.1:18999\n"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    keyfile = KeyFile.load(path)
    assert [k.alg for k in keyfile.keys] == ["RS256", "ES256", "EdDSA"]
    assert all(k.kid == thumbprint(k.public_jwk()) for k in keyfile.keys)
    code, token2, err = run(
        capsys, "mint", "--key-file", str(path), "--alg", "EdDSA", "--sub", "bob",
        "--aud", "a1", "--aud", "a2", "--scope", "read", "--scope", "write",
        "--claim", 'roles=["admin"]', "--claim", "team=blue", "--expires-in", "2h",
    )  # fmt: skip
    assert (code, err) == (0, "")
    code, out, _ = run(capsys, "inspect", "--json", token2.strip())
    document = json.loads(out)
    assert document["header"]["kid"] == keyfile.keys[2].kid
    claims = document["claims"]
    assert (claims["sub"], claims["aud"], claims["scope"]) == ("bob", ["a1", "a2"], "read write")
    assert (claims["roles"], claims["team"], claims["exp"] - claims["iat"]) == (
        ["admin"],
        "blue",
        7200,
    )
    code, out, _ = run(capsys, "verify", token.strip(), "--key-file", str(path), "--json")
    assert code == 0
    assert json.loads(out)["claims"]["iss"] == "http://127.0.0.1:18999"
    code, expired, _ = run(capsys, "mint", "--key-file", str(path), "--expires-in=-1h")
    code, _, err = run(capsys, "verify", expired.strip(), "--key-file", str(path))
    assert code == 1
    assert err.startswith("invalid: expired (ExpiredToken)")
    code, _, err = run(capsys, "mint", "--key-file", str(path), "--alg", "PS512")
    assert code == 2
    assert "has no PS512 key (it has RS256, ES256, EdDSA)" in err
    assert "jwt-guard mint --key-file ps512-keys.json --alg PS512" in err
    code, _, err = run(capsys, "mint", "--key-file", str(path), "--port", "1")
    assert code == 2
    assert "belongs to http://127.0.0.1:18999" in err
    path.write_text('{"keys": "nope"}')
    code, _, err = run(capsys, "mint", "--key-file", str(path))
    assert code == 2
    assert "not a jwt-guard key file" in err


def test_verify_with_a_key_file_and_a_narrower_allowlist(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # The default key file holds RS256, ES256 and EdDSA keys; an allowlist of one skips the
    # others instead of failing to build the key set.
    path = tmp_path / "keys.json"
    code, token, _ = run(capsys, "mint", "--key-file", str(path), "--port", "18998")
    assert code == 0
    code, out, err = run(
        capsys, "verify", token.strip(), "--key-file", str(path), "--algorithms", "RS256"
    )
    assert (code, err) == (0, "")
    assert out.startswith("valid")
    code, es256, _ = run(capsys, "mint", "--key-file", str(path), "--alg", "ES256")
    code, _, err = run(
        capsys, "verify", es256.strip(), "--key-file", str(path), "--algorithms", "RS256"
    )
    assert code == 1
    assert err.startswith("invalid: alg_not_allowed (AlgorithmNotAllowed)")


def test_mint_without_a_key_file_says_the_keys_are_throwaway(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, "mint", "--json", "--algorithms", "ES256")
    document = json.loads(out)
    assert code == 0
    assert "throwaway keys" in err
    (jwk,) = document["jwks"]["keys"]
    assert jwk["kid"] == thumbprint(jwk)
    assert "d" not in jwk


@pytest.fixture
def spawn() -> Iterator[Any]:
    """Start ``python -m jwt_guard ...``; read its stdout up to a line; stop it with SIGINT.

    A process started in the background by a shell without job control (``pytest &``) has
    SIGINT ignored, and its children inherit that: Ctrl-C could not stop them. For as long as
    the fixture lives, this process catches SIGINT as Python does by default, so the children
    start with the default disposition."""
    started: list[subprocess.Popen[str]] = []
    ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def start(*argv: str, until: str) -> tuple[subprocess.Popen[str], list[str]]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jwt_guard", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        started.append(proc)
        lines: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if until in line:
                return proc, lines
        raise AssertionError(f"no {until!r} in output: {lines}; stderr: {proc.stderr}")

    yield start
    if ignored:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def _stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=10)
    return proc.returncode, out


def test_issuer_serves_a_key_file_that_mint_signs_with(
    capsys: pytest.CaptureFixture[str], spawn: Any, tmp_path: Path
) -> None:
    path, port = tmp_path / "keys.json", free_port()
    # EC keys only: an RSA key would cost the process 0.1 s, and new key files with the default
    # algorithms (RSA too) are made in this process by the mint tests and serve_in_thread.
    argv = ["--key-file", str(path), "--port", str(port), "--algorithms", "ES256,EdDSA"]
    proc, lines = spawn("issuer", *argv, until="Ctrl-C")
    issuer = f"http://127.0.0.1:{port}"
    assert lines[0] == f"issuer     {issuer}   (created {path})"
    discovery = requests.get(issuer + "/.well-known/openid-configuration", timeout=5).json()
    assert discovery["issuer"] == issuer
    code, token, _ = run(capsys, "mint", "--key-file", str(path), "--alg", "ES256")
    argv = ["verify", token.strip(), "--issuer", issuer, "--audience", "https://api.example.test"]
    assert run(capsys, *argv)[0] == 0
    sample = lines[lines.index("a token valid for 1 h:") + 1]
    assert run(capsys, "verify", sample, "--issuer", issuer, "--audience", "x")[0] == 1
    assert _stop(proc) == (0, "stopped\n")
    code, _, err = run(capsys, "verify", token.strip(), "--issuer", issuer, "--any-audience")
    assert code == 3
    assert "keys_unavailable" in err


def test_demo_walks_through_the_five_cases(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "demo")
    assert (code, err) == (0, "")
    statuses = [
        line.split()[1]
        for line in out.splitlines()
        if line.startswith("   < ") and line[5:8].isdigit()
    ]
    assert statuses == ["200", "401", "403", "401", "401"]
    assert 'WWW-Authenticate: Bearer realm="demo", error="insufficient_scope"' in out
    assert "The access token expired" in out
    assert "untrusted issuer" in out
    assert "All 5 answers as expected." in out
    code, out, _ = run(capsys, "demo", "--json")
    document = json.loads(out)
    assert code == 0
    assert document["ok"] is True
    assert [step["status"] for step in document["steps"]] == [200, 401, 403, 401, 401]


def test_demo_serve_prints_curl_commands_that_work(serve_in_thread: Any) -> None:
    # On a thread of this process: what Ctrl-C does to a serving command (it stops, exit 0) is
    # test_issuer_serves_a_key_file_that_mint_signs_with's, on a real process.
    stop, printed = serve_in_thread("demo", "--serve", "--lifetime", "10m")
    lines = printed.splitlines()
    assert lines[-1] == "Press Ctrl-C to stop."
    assert "Try it (the tokens are valid for 10 min):" in lines
    commands = [line for line in lines if line.startswith("curl -i http://127.0.0.1:")]
    assert len(commands) == 5
    seen = []
    for line, title in zip(commands, [x for x in lines if x.startswith("# ")], strict=True):
        parts = line.split(" ", 3)
        headers = {}
        if len(parts) == 4:
            headers["Authorization"] = parts[3].removeprefix("-H 'Authorization: ").rstrip("'")
        status = requests.get(parts[2], headers=headers, timeout=5).status_code
        assert title.endswith(f"expect {status}")
        seen.append(status)
    assert seen == [200, 401, 403, 401, 401]
    assert stop() == 0


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    # `python -m jwt_guard` itself: every real process below runs the command that way.
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("jwt-guard 0.")


# -- the process: one-line errors, --json everywhere, pipes, ports, exit codes


def cli(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -m jwt_guard ARGV`` as a real process (warnings are errors there too)."""
    return subprocess.run(
        [sys.executable, "-W", "error", "-m", "jwt_guard", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={k: v for k, v in os.environ.items() if not k.startswith("JWT_GUARD_")},
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def dead_issuer() -> str:
    """An issuer URL on loopback where nothing listens."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def never_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    """For commands run in-process that must fail before serving: if one served instead, it
    fails the test rather than blocking it until Ctrl-C."""

    def fail() -> None:
        raise AssertionError("the command started serving")

    monkeypatch.setattr(_local, "wait_forever", fail)
    monkeypatch.setattr(_demo, "wait_forever", fail)


def test_exit_codes_and_stderr(
    capsys: pytest.CaptureFixture[str], jwt_issuer: LocalIssuer, mint_token: MintToken
) -> None:
    token = mint_token()
    trusted = ["--issuer", jwt_issuer.issuer, "--audience", jwt_issuer.audience]
    code, _, err = run(capsys, "verify", token, *trusted)
    assert (code, err) == (0, "")
    code, out, err = run(capsys, "verify", mint_token(expires_in=-3600), *trusted)
    assert (code, out) == (1, "")
    assert err.startswith("invalid: expired (ExpiredToken): token expired at ")
    code, out, err = run(capsys, "verify", token, "--issuer", jwt_issuer.issuer)
    assert (code, out) == (2, "")
    assert err == (
        "jwt-guard verify: error: --audience is required: the 'aud' your API expects "
        "(or --any-audience)\n"
    )


def test_exit_codes_and_stderr_of_a_real_process(
    capsys: pytest.CaptureFixture[str], mint_token: MintToken, dead_issuer: str
) -> None:
    """What only a process shows: the exit code reaches the shell, and the library's WARNING
    lines (the failed fetch, the 503), which Python would print on stderr by itself, do not
    appear: without -v the command's own line is all there is. The same command with -v (which
    shows them) and with --json (one document on stdout, nothing on stderr, the same quiet
    logging) runs in this process."""
    orphan = mint_token(issuer=dead_issuer)
    argv = ["verify", orphan, "--issuer", dead_issuer, "--any-audience"]
    down = cli(*argv)
    assert (down.returncode, down.stdout) == (3, "")
    assert down.stderr.count("\n") == 1
    assert down.stderr.startswith("invalid: keys_unavailable (KeysUnavailable): ")
    assert down.stderr.rstrip().endswith("an API would answer 503")
    code, _, verbose = run(capsys, *argv, "-v")
    assert code == 3
    assert "WARNING jwt_guard.jwks: jwks fetch failed" in verbose
    assert verbose.splitlines()[-1] == down.stderr.rstrip()
    code, out, err = run(capsys, *argv, "--json")
    assert (code, err) == (3, "")
    assert json.loads(out)["error"] == "keys_unavailable"


@pytest.mark.parametrize(
    ("argv", "code", "kind", "text"),
    [
        pytest.param(["verify", "a.b.c", "--leeway", "x"], 2, "usage", "--leeway", id="usage"),
        pytest.param(["mint", "--key-file", "."], 2, "configuration", "key file", id="config"),
        pytest.param(["inspect", "not-a-token"], 1, "not_a_jwt", "not a JWT", id="not-a-jwt"),
    ],
)
def test_json_covers_errors(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    argv: list[str],
    code: int,
    kind: str,
    text: str,
) -> None:
    monkeypatch.chdir(tmp_path)  # "." is a directory, not a key file
    result, out, err = run(capsys, *argv, "--json")
    document = json.loads(out)
    assert (result, err) == (code, ""), argv
    assert (document["error"], document["exit_code"]) == (kind, code)
    assert text in document["message"]


def test_a_closed_stdout_ends_the_command_quietly() -> None:
    """``jwt-guard inspect - | head -0``: the reader is gone before the first write. A real
    process shows what reaches the shell; the other commands are checked in this process below
    (main() handles the closed pipe alike for all), and the demo as a real process in
    test_head_dash_1_reads_one_line_and_nothing_complains."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    stdin = io.BytesIO(unsigned({"alg": "ES256", "kid": "k"}, {"sub": "x"}).encode())
    try:
        proc = subprocess.run(
            [sys.executable, "-W", "error", "-m", "jwt_guard", "inspect", "-"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            input=stdin.getvalue(),
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert proc.stderr == b""  # no traceback, no "Exception ignored ... BrokenPipeError"
    assert proc.returncode == 141  # 128 + SIGPIPE, what a shell shows for `yes | head -1`


@pytest.mark.parametrize(
    ("argv", "stderr"),
    [
        pytest.param(["demo"], "", id="demo"),
        pytest.param(["demo", "--json"], "", id="demo-json"),
        pytest.param(
            ["mint", "--algorithms", "ES256"],
            "note: throwaway keys, so nothing can verify this; use --key-file\n",
            id="mint",
        ),
    ],
)
def test_a_closed_stdout_ends_each_command_quietly_and_stops_its_servers(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    stderr: str,
) -> None:
    """The commands on a closed stdout, in this process: main() answers 141 with nothing more
    on stderr, as for `inspect` above, and the demo's issuer and app are stopped."""
    running = set(threading.enumerate())
    read_end, write_end = os.pipe()
    os.close(read_end)
    with open(write_end, "w", encoding="utf-8") as closed:
        monkeypatch.setattr(sys, "stdout", closed)
        code = main(argv)
        monkeypatch.undo()
    assert code == 141
    assert capsys.readouterr().err == stderr
    servers = ("jwt_guard-demo", "jwt_guard-local-issuer")  # ServingThread names
    left = [t.name for t in set(threading.enumerate()) - running if t.name.startswith(servers)]
    assert left == []


def test_head_dash_1_reads_one_line_and_nothing_complains() -> None:
    shell = f"{shlex.quote(sys.executable)} -m jwt_guard demo | head -1"
    result = subprocess.run(
        ["sh", "-c", shell], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout == "jwt_guard demo: everything runs on 127.0.0.1\n"
    assert result.stderr == ""


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        pytest.param(["demo", "--port"], "--port", id="demo-app"),
        pytest.param(["demo", "--issuer-port"], "--issuer-port", id="demo-issuer"),
        pytest.param(["issuer", "--port"], "--port", id="issuer"),
    ],
)
def test_a_busy_port_is_named_in_one_format(
    capsys: pytest.CaptureFixture[str], never_serve: None, argv: list[str], option: str
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, out, err = run(capsys, *argv, str(port))
        as_json = run(capsys, *argv, str(port), "--json")
    assert (code, out) == (2, "")
    assert err.startswith(
        f"jwt-guard {argv[0]}: error: cannot listen on 127.0.0.1:{port} ({option}): "
    )
    assert err.count("\n") == 1
    document = json.loads(as_json[1])
    assert (as_json[0], as_json[2], document["error"]) == (2, "", "listen")
    assert f"127.0.0.1:{port} ({option})" in document["message"]


def test_an_issuer_whose_port_is_busy_leaves_no_key_file(
    capsys: pytest.CaptureFixture[str], never_serve: None, tmp_path: Path
) -> None:
    path = tmp_path / "keys.json"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, _, _ = run(capsys, "issuer", "--key-file", str(path), "--port", str(port))
    assert code == 2
    assert not path.exists()  # a file naming a port it never served would trap the next run


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_mint_hs_generates_a_secret_that_verify_uses(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, alg: str
) -> None:
    path = tmp_path / "keys.json"
    code, token, err = run(capsys, "mint", "--key-file", str(path), "--alg", alg)
    assert (code, err) == (0, f"created {path} for issuer http://127.0.0.1:8765\n")
    (secret,) = [jwk for jwk in json.loads(path.read_text())["keys"] if jwk["alg"] == alg]
    assert secret["kty"] == "oct"
    assert len(base64.urlsafe_b64decode(secret["k"] + "==")) == int(alg[2:]) // 8
    code, out, _ = run(capsys, "verify", token.strip(), "--key-file", str(path), "--json")
    assert (code, json.loads(out)["valid"]) == (0, True)
    code, token, err = run(capsys, "mint", "--alg", alg, "--algorithms", "ES256")  # throwaway
    assert code == 0
    assert json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["alg"] == alg


def test_help_shows_every_default() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    flags = (argparse._StoreTrueAction, argparse._CountAction, argparse._HelpAction)
    checked = 0
    for name, sub in commands.choices.items():
        for action in sub._actions:
            if not action.option_strings or isinstance(action, flags):
                continue
            if action.default is None or action.default == []:
                continue
            assert action.help is not None
            assert "default" in action.help, (name, action.option_strings)
            checked += 1
    assert checked >= 8
    assert "(default 5m)" in " ".join(commands.choices["mint"].format_help().split())


def test_a_refusal_is_one_line_whatever_its_detail_holds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The detail names what the token said; outside bytes cannot break or colour the line."""
    exc = WrongIssuer("claim 'iss' is 'https://evil.test/\n\x1b[31mok' (expected 'https://a/')")
    assert _report_refusal(exc, as_json=False) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert "\x1b" not in err
    assert "'https://evil.test/\\x0a\\x1b[31mok' (expected 'https://a/')" in err
    assert _report_refusal(exc, as_json=True) == 1
    assert json.loads(capsys.readouterr().out)["detail"] == str(exc)


@pytest.mark.parametrize(
    ("mint", "extra"),
    [
        pytest.param({"issuer": "https://evil.test/"}, [], id="iss"),
        pytest.param({"audience": "https://api.example.test/"}, [], id="aud"),
        pytest.param({}, ["--typ", "at+jwt"], id="typ"),
    ],
)
def test_verify_prints_the_exception_detail(
    capsys: pytest.CaptureFixture[str],
    jwt_issuer: LocalIssuer,
    mint_token: MintToken,
    mint: dict[str, Any],
    extra: list[str],
) -> None:
    """What the core says about a mismatch (the token's value next to the expected one) is
    what the command prints, in text and in JSON."""
    token = mint_token(**mint)
    verifier = TokenVerifier(
        issuer=jwt_issuer.issuer,
        audience=jwt_issuer.audience,
        typ=extra[1] if extra else None,
        token_cache_size=0,
    )
    with pytest.raises(JWTGuardError) as raised:
        verifier.verify(token)
    argv = ["verify", token, "--issuer", jwt_issuer.issuer, "--audience", jwt_issuer.audience]
    code, _, err = run(capsys, *argv, *extra)
    assert code == 1
    assert f"({type(raised.value).__name__}): {raised.value}; an API would answer 401" in err
    code, out, _ = run(capsys, *argv, *extra, "--json")
    assert json.loads(out)["detail"] == str(raised.value)


@pytest.fixture
def serve_in_thread(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Callable[..., tuple[Callable[[], int], str]]]:
    """``start(COMMAND, *argv)`` runs ``jwt-guard COMMAND ARGV`` (``issuer``, ``demo --serve``)
    on a thread of this process until it serves, and returns ``(stop, printed)``: ``stop()``
    ends it where Ctrl-C would and returns its exit code; ``printed`` is its stdout so far.
    (``spawn`` runs the real process; this is for tests about what is served, not the process.)
    """
    serving, stopping = threading.Event(), threading.Event()

    def wait_forever() -> None:
        serving.set()
        stopping.wait(60)

    monkeypatch.setattr(_local, "wait_forever", wait_forever)
    monkeypatch.setattr(_demo, "wait_forever", wait_forever)
    threads: list[threading.Thread] = []

    def start(*argv: str) -> tuple[Callable[[], int], str]:
        serving.clear()
        stopping.clear()
        codes: list[int] = []

        def target() -> None:
            try:
                codes.append(main(list(argv)))
            finally:
                serving.set()  # an early failure must not leave start() waiting

        thread = threading.Thread(target=target)
        threads.append(thread)
        thread.start()
        assert serving.wait(30)
        assert thread.is_alive(), codes
        printed = capsys.readouterr().out  # out of the way of the test's own commands

        def stop() -> int:
            stopping.set()
            thread.join(30)
            capsys.readouterr()
            return codes[0]

        return stop, printed

    yield start
    stopping.set()
    for thread in threads:
        thread.join(30)


def test_regenerated_keys_get_new_kids_and_a_running_verifier_follows(
    capsys: pytest.CaptureFixture[str], serve_in_thread: Any, tmp_path: Path
) -> None:
    """Once every key file named its RSA key ``rs256-1``: after regenerating the keys, an app
    kept the old key under that kid, never refetched, and refused every new token."""
    path, port = tmp_path / "keys.json", free_port()
    issuer_url = f"http://127.0.0.1:{port}"
    verifier = TokenVerifier(
        issuer=issuer_url,
        audience="https://api.example.test",
        token_cache_size=0,
        jwks_options={"cooldown": 0.0},
    )
    stop, _ = serve_in_thread("issuer", "--key-file", str(path), "--port", str(port))
    first = run(capsys, "mint", "--key-file", str(path))[1].strip()
    assert verifier.verify(first).subject == "user-1"
    old_kids = {key.kid for key in KeyFile.load(path).keys}
    assert stop() == 0
    path.unlink()  # regenerate
    stop, _ = serve_in_thread("issuer", "--key-file", str(path), "--port", str(port))
    assert not old_kids & {key.kid for key in KeyFile.load(path).keys}
    second = run(capsys, "mint", "--key-file", str(path))[1].strip()
    assert verifier.verify(second).subject == "user-1"
    assert stop() == 0


def test_a_kid_written_into_the_key_file_is_kept(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "keys.json"
    assert run(capsys, "mint", "--key-file", str(path), "--algorithms", "ES256")[0] == 0
    document = json.loads(path.read_text())
    document["keys"][0]["kid"] = "my-signing-key"
    path.write_text(json.dumps(document))
    token = run(capsys, "mint", "--key-file", str(path))[1].strip()
    assert json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["kid"] == (
        "my-signing-key"
    )
    del document["keys"][0]["kid"]  # no kid at all: its thumbprint
    path.write_text(json.dumps(document))
    (key,) = KeyFile.load(path).keys
    assert key.kid == thumbprint(key.public_jwk())


# -- DPoP and certificate-bound tokens: mint --dpop-key / --cert, dpop-proof


def _claims(token: str) -> dict[str, Any]:
    segment = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))))


def test_mint_binds_to_a_dpop_key_and_dpop_proof_signs_for_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import jwt as pyjwt

    from jwt_guard.binding.dpop import DPoPVerifier

    keys, client = tmp_path / "keys.json", tmp_path / "client.jwk"
    code, token, err = run(
        capsys, "mint", "--key-file", str(keys), "--port", "18997", "--dpop-key", str(client)
    )
    assert code == 0
    token = token.strip()
    assert f"created DPoP key {client} (ES256, jkt " in err
    assert client.stat().st_mode & 0o777 == 0o600
    jkt = _claims(token)["cnf"]["jkt"]
    # the same key file again: the same key
    code, again, _ = run(capsys, "mint", "--key-file", str(keys), "--dpop-key", str(client))
    assert _claims(again.strip())["cnf"]["jkt"] == jkt
    url = "https://api.example.com/items"
    code, proof, err = run(
        capsys,
        "dpop-proof",
        "--dpop-key",
        str(client),
        "--url",
        url,
        "--method",
        "POST",
        "--token",
        token,
        "--nonce",
        "n-1",
    )
    assert (code, err) == (0, "")
    proof = proof.strip()
    checked = DPoPVerifier().verify(
        proof, method="POST", url=url, access_token=token, expected_jkt=jkt
    )
    assert checked.nonce == "n-1"
    # an independent reading (PyJWT) of the proof agrees
    header = pyjwt.get_unverified_header(proof)
    payload = pyjwt.decode(proof, pyjwt.PyJWK(header["jwk"]).key, algorithms=["ES256"])
    assert (payload["htm"], payload["htu"]) == ("POST", url)
    # the token verifies as a token of the key file's issuer
    verifier = TokenVerifier(
        issuer="http://127.0.0.1:18997",
        audience="https://api.example.test",
        jwks=KeyFile.load(keys).jwks(),
    )
    assert verifier.verify(token).confirmation == {"jkt": jkt}
    code, document, _ = run(
        capsys,
        "dpop-proof",
        "--json",
        "--dpop-key",
        str(client),
        "--url",
        url,
        "--token",
        f"DPoP {token}",
    )
    reply = json.loads(document)
    assert reply["jkt"] == jkt
    assert reply["headers"]["Authorization"] == f"DPoP {token}"
    assert reply["headers"]["DPoP"] == reply["proof"]


def test_mint_binds_to_a_certificate(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    from _certs import client_certificate, pem
    from jwt_guard.binding.mtls import certificate_thumbprint

    cert = client_certificate("cli")
    for name, data in (("c.pem", pem(cert).encode()), ("c.der", cert.public_bytes(Encoding.DER))):
        (tmp_path / name).write_bytes(data)
        code, token, _ = run(
            capsys, "mint", "--cert", str(tmp_path / name), "--algorithms", "ES256"
        )
        assert code == 0
        thumb = certificate_thumbprint(cert.public_bytes(Encoding.DER))
        assert _claims(token.strip())["cnf"] == {"x5t#S256": thumb}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["dpop-proof", "--dpop-key", "k.jwk"], "--url", id="no-url"),
        pytest.param(["mint", "--dpop-alg", "ES256"], "--dpop-alg needs --dpop-key", id="alg"),
        pytest.param(
            ["mint", "--dpop-key", "new.jwk", "--dpop-alg", "HS256"], "asymmetric", id="hmac"
        ),
        pytest.param(["mint", "--dpop-key", "bad.jwk"], "not one private JWK", id="bad-file"),
        pytest.param(
            ["mint", "--dpop-key", "es.jwk", "--dpop-alg", "EdDSA"], "holds an ES256 key", id="mix"
        ),
        pytest.param(["mint", "--cert", "missing.pem"], "--cert 'missing.pem'", id="no-cert"),
        pytest.param(["mint", "--cert", "bad.jwk"], "--cert 'bad.jwk'", id="junk-cert"),
    ],
)
def test_dpop_and_certificate_options_fail_in_one_line(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.jwk").write_text('{"kty": "EC"}')
    from jwt_guard.cli._dpop import dpop_key

    dpop_key("es.jwk", "ES256")
    capsys.readouterr()
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert message in err
    assert err.count("\n") == 1
