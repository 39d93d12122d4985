"""The benchmark suite runs end to end in its quick mode (so it cannot rot); no time is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("jwt", reason="the benchmark's reference middleware needs PyJWT")
pytest.importorskip("flask", reason="the WSGI benchmark needs Flask")

ROOT = Path(__file__).resolve().parent.parent

ROW_KEYS = [
    *(
        f"verify.{alg}"
        for alg in (
            "RS256",
            "PS256",
            "ES256",
            "ES384",
            "EdDSA",
            "HS256",
            "RS384",
            "RS512",
            "PS384",
            "PS512",
            "ES512",
            "ES256K",
            "EdDSA-Ed448",
            "HS384",
            "HS512",
        )
    ),
    *(f"verify.{alg}.pyjwt" for alg in ("RS256", "PS256", "ES256", "ES384", "EdDSA", "HS256")),
    *(f"verify.{alg}.python-jose" for alg in ("RS256", "ES256", "ES384", "HS256")),
    "default.RS256",
    "default.HS256",
    "cache.repeat",
    "keys.100_vs_1",
    "tenants.exact_beside_templates",
    "tenants.template_vs_exact",
    "tenants.cached",
    "asgi.repeat_vs_bare",
    "asgi.minimal_vs_bare",
    "asgi.new_vs_reference",
    "asgi.reference_new_vs_bare",
    "wsgi.repeat_vs_bare",
    "wsgi.minimal_vs_bare",
    "wsgi.new_vs_reference",
    "wsgi.reference_new_vs_bare",
    "jwks.cold_start",
    "jwks.unknown_kids",
    "jwks.slow_loop_lag",
    "jwks.slow_cached_requests",
    "jwks.refresh_ahead",
    "dpop.ES256",
    "dpop.EdDSA",
    "dpop.RS256",
    "dpop.ES256.new_key",
    "dpop.request.ES256",
    "dpop.request.EdDSA",
    "dpop.request.RS256",
    "fleet.revocation_check",
    "fleet.replay_redis",
    "fleet.asgi_redis_vs_default",
    "stampede.today.peak",
    "stampede.jitter.peak",
    "stampede.jitter.total",
    "stampede.jitter.start_up",
    "stampede.store.per_refresh",
    "stampede.store.peak",
]
TARGETED = [
    *(f"verify.{alg}" for alg in ("RS256", "PS256", "ES256", "ES384", "EdDSA", "HS256")),
    "default.RS256",
    "default.HS256",
    "cache.repeat",
    "keys.100_vs_1",
    "tenants.exact_beside_templates",
    "tenants.template_vs_exact",
    "asgi.repeat_vs_bare",
    "asgi.new_vs_reference",
    "wsgi.repeat_vs_bare",
    "wsgi.new_vs_reference",
    "jwks.cold_start",
    "jwks.unknown_kids",
    "jwks.slow_loop_lag",
    "jwks.slow_cached_requests",
    "jwks.refresh_ahead",
    "dpop.ES256",
    "dpop.request.ES256",
    "fleet.revocation_check",
    "fleet.asgi_redis_vs_default",
    "stampede.jitter.peak",
    "stampede.store.per_refresh",
]
SECTION_KEYS = [
    "algorithms",
    "default_configuration",
    "token_cache",
    "key_set_size",
    "tenants",
    "asgi",
    "wsgi",
    "jwks",
    "dpop",
    "dpop_request",
    "fleet",
    "stampede",
]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, object]]:
    out = tmp_path_factory.mktemp("bench") / "results.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout, json.loads(out.read_text())


def test_every_row_and_key_is_produced(quick_run: tuple[str, dict[str, object]]) -> None:
    _, document = quick_run
    assert set(document) == {"meta", "rows", "sections", "summary"}
    rows = document["rows"]
    assert isinstance(rows, dict)
    assert [k for k in ROW_KEYS if k not in rows] == []
    for key in ROW_KEYS:
        row = rows[key]
        assert set(row) >= {"label", "value", "baseline", "ratio", "target", "status"}, key
        assert row["status"] in {"PASS", "FAIL", "info"}, (key, row["status"], row["note"])
    for key in TARGETED:  # a verdict, whatever it is: the quick mode is too short to judge
        assert rows[key]["status"] in {"PASS", "FAIL"}, key
    sections = document["sections"]
    assert isinstance(sections, dict)
    assert [k for k in SECTION_KEYS if k not in sections] == []
    assert set(document["summary"]) == {"PASS", "FAIL", "SKIP", "info"}
    assert document["meta"]["mode"] == "quick"


def test_the_table_is_printed(quick_run: tuple[str, dict[str, object]]) -> None:
    stdout, document = quick_run
    rows = document["rows"]
    assert isinstance(rows, dict)
    for row in rows.values():
        assert row["label"] in stdout
    assert "PASS" in stdout or "FAIL" in stdout
