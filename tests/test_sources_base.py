"""The key-source interface: a source of one's own plugs in through ``Issuer(key_source=...)``
and ``TokenVerifier(key_source=...)``, is held to the ``KeySource`` contract at run time (never
a 500), and can only hand over keys that passed the key gate (``KeySet.from_jwks``)."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from _core_helpers import AUDIENCE, ISSUER, Clock, Key, claims_at, make_key, token
from jwt_guard import (
    ConfigurationError,
    Issuer,
    JWTGuard,
    KeySource,
    KeysUnavailable,
    TokenVerifier,
)
from jwt_guard.errors import AlgorithmNotAllowed, UnknownKey
from jwt_guard.keys.jwk import KeySet
from jwt_guard.sources import JWKSClient, JWKSFile, StaticKeys
from jwt_guard.sources.base import CheckedSource, check_key_source


@pytest.fixture(scope="module")
def key() -> Key:
    return make_key("ES256", "custom-1")


@pytest.fixture
def clock() -> Clock:
    return Clock()


class DictKeys:
    """A key source of one's own: a JWK Set held in memory, counting what the verifier asks."""

    name = "dict:test"

    def __init__(self, jwks: dict[str, Any]) -> None:
        self.keyset = KeySet.from_jwks(jwks)
        self.calls: dict[str, int] = {}
        self.answer: Any = None  # when set, returned instead of the key set
        self.error: BaseException | None = None  # when set, raised by every method

    def _count(self, method: str) -> None:
        self.calls[method] = self.calls.get(method, 0) + 1
        if self.error is not None:
            raise self.error

    def _result(self) -> Any:
        return self.keyset if self.answer is None else self.answer

    def keys_for(self, kid: str | None) -> KeySet:
        self._count("keys_for")
        return self._result()  # type: ignore[no-any-return]

    async def akeys_for(self, kid: str | None) -> KeySet:
        self._count("akeys_for")
        return self._result()  # type: ignore[no-any-return]

    def current(self, now: float | None = None) -> KeySet | None:
        self._count("current")
        return self._result()  # type: ignore[no-any-return]

    def prefetch(self) -> None:
        self._count("prefetch")

    async def aprefetch(self) -> None:
        self._count("aprefetch")

    def status(self) -> dict[str, Any]:
        self._count("status")
        return {"source": self.name, "keys": len(self.keyset), "usable": True}


def _verifier(source: Any, clock: Clock, **options: Any) -> TokenVerifier:
    return TokenVerifier(
        issuers=[Issuer(ISSUER, AUDIENCE, key_source=source, algorithms=options.pop("algs", None))],
        clock=clock,
        monotonic=clock.monotonic,
        **options,
    )


def _token(key: Key, clock: Clock, **claims: Any) -> str:
    return token(key, claims_at(clock(), **claims))


# -- the protocol -----------------------------------------------------------------------------


def test_the_package_sources_and_a_plain_class_are_key_sources(key: Key, tmp_path: Path) -> None:
    """Structural: no base class. The three shipped sources and a plain class all conform, to
    mypy (the assignments below are type-checked) and to the construction-time check."""
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(key.jwks()))
    sources: list[KeySource] = [
        StaticKeys(KeySet.from_jwks(key.jwks())),
        JWKSClient("https://idp.example.test/jwks"),
        JWKSFile(path),
        DictKeys(key.jwks()),
    ]
    for source in sources:
        check_key_source("Issuer", source)


class _Missing:
    name = "missing"

    def keys_for(self, kid: str | None) -> KeySet: ...

    def akeys_for(self, kid: str | None) -> KeySet: ...  # not async

    def current(self, now: float | None = None) -> KeySet | None: ...


class _NoName(DictKeys):
    name = ""


@pytest.mark.parametrize(
    ("value", "named"),
    [
        pytest.param(5, "keys_for(), akeys_for(), current(), prefetch()", id="int"),
        pytest.param("/etc/jwks.json", "name (a non-empty string), keys_for()", id="path"),
        pytest.param({"keys": []}, "name (a non-empty string), keys_for()", id="jwks-dict"),
        pytest.param(
            _Missing(),
            "akeys_for() as an async def, prefetch(), aprefetch(), status()",
            id="partial",
        ),
        pytest.param(_NoName({"keys": []}), "name (a non-empty string)", id="empty-name"),
    ],
)
def test_an_object_that_is_not_a_key_source_is_refused_naming_what_it_lacks(
    value: Any, named: str
) -> None:
    with pytest.raises(ConfigurationError, match=r"^Issuer\(key_source=\.\.\.\): ") as excinfo:
        Issuer(ISSUER, AUDIENCE, key_source=value)
    assert named in str(excinfo.value)
    assert "see jwt_guard.KeySource" in str(excinfo.value)


def test_key_source_excludes_the_other_ways_to_give_keys(key: Key) -> None:
    source = DictKeys(key.jwks())
    with pytest.raises(ConfigurationError, match="not both jwks= and key_source="):
        Issuer(ISSUER, AUDIENCE, jwks=key.jwks(), key_source=source)
    with pytest.raises(ConfigurationError, match="not both jwks_url= and key_source="):
        TokenVerifier(
            issuer=ISSUER, audience=AUDIENCE, jwks_url="https://idp.test/jwks", key_source=source
        )
    with pytest.raises(ConfigurationError, match="issuers="):
        TokenVerifier(issuers=[Issuer(ISSUER, AUDIENCE, jwks=key.jwks())], key_source=source)


# -- only gated keys --------------------------------------------------------------------------


def test_a_key_set_is_built_only_through_the_key_gate(key: Key) -> None:
    """The protocol returns KeySet objects, and only KeySet.from_jwks makes one: a custom source
    cannot hand over a key that skipped the checks."""
    keyset = KeySet.from_jwks(key.jwks())
    with pytest.raises(ConfigurationError, match=r"KeySet\.from_jwks"):
        KeySet(keyset.keys)
    with pytest.raises(ConfigurationError, match=r"KeySet\.from_jwks"):
        KeySet()
    with pytest.raises(TypeError, match="cannot be subclassed"):

        class Lenient(KeySet):  # pragma: no cover - the class statement itself raises
            pass


def test_a_weak_key_from_a_custom_source_never_verifies(clock: Clock) -> None:
    """The gate holds for a custom source too: a 1024-bit RSA key is skipped when the source
    builds its set, so a token signed with it finds no key."""
    weak = make_key("RS256", "weak", name="weak-1024", bits=1024)
    good = make_key("RS256", "good")
    source = DictKeys({"keys": [weak.public_jwk(), good.public_jwk()]})
    assert source.keyset.kids == {"good"}
    verifier = _verifier(source, clock)
    assert verifier.verify(_token(good, clock)).subject == "user-1"
    with pytest.raises(UnknownKey):
        verifier.verify(_token(weak, clock))


def test_the_issuer_allowlist_applies_to_a_custom_source(key: Key, clock: Clock) -> None:
    """An HS256 secret in a custom source's set cannot verify when the issuer allows ES256
    only: the allowlist is checked before any key is looked up."""
    secret = make_key("HS256", "hs")
    source = DictKeys({"keys": [key.public_jwk(), secret.public_jwk()]})
    verifier = _verifier(source, clock, algs=["ES256"])
    assert verifier.verify(_token(key, clock)).subject == "user-1"
    with pytest.raises(AlgorithmNotAllowed):
        verifier.verify(_token(secret, clock))


# -- a custom source through TokenVerifier ----------------------------------------------------


def test_a_custom_source_verifies_sync_and_async_and_answers_the_cache(
    key: Key, clock: Clock
) -> None:
    source = DictKeys(key.jwks())
    verifier = TokenVerifier(
        issuer=ISSUER, audience=AUDIENCE, key_source=source, clock=clock, monotonic=clock.monotonic
    )
    tok = _token(key, clock)
    assert verifier.verify(tok).subject == "user-1"
    assert source.calls == {"keys_for": 1}
    assert verifier.verify(tok).subject == "user-1"  # from the token cache: current() decides
    assert source.calls == {"keys_for": 1, "current": 1}
    other = _token(key, clock, sub="user-2")
    assert asyncio.run(verifier.averify(other)).subject == "user-2"
    assert source.calls["akeys_for"] == 1
    assert verifier.key_sources() == {ISSUER: source}  # the object given, not a wrapper


def test_a_key_that_leaves_a_custom_source_stops_verifying_cached_tokens(
    key: Key, clock: Clock
) -> None:
    source = DictKeys(key.jwks())
    verifier = _verifier(source, clock)
    tok = _token(key, clock)
    verifier.verify(tok)
    source.keyset = KeySet.from_jwks(make_key("ES256", "other", name="b").jwks())
    with pytest.raises(UnknownKey):
        verifier.verify(tok)


def test_prefetch_and_health_reach_every_source_without_type_tests(key: Key, clock: Clock) -> None:
    """No isinstance(source, JWKSClient) any more: every source is asked, a static one does
    nothing, a custom one is called, and a custom one that fails makes prefetch fail."""
    custom = DictKeys(key.jwks())
    verifier = TokenVerifier(
        issuers=[
            Issuer(ISSUER, AUDIENCE, key_source=custom),
            Issuer("https://static.example.test/", AUDIENCE, jwks=key.jwks()),
        ],
        clock=clock,
        monotonic=clock.monotonic,
    )
    verifier.prefetch()
    asyncio.run(verifier.aprefetch())
    assert (custom.calls["prefetch"], custom.calls["aprefetch"]) == (1, 1)
    health = verifier.health()
    assert health["ok"] is True
    assert health["issuers"][ISSUER] == {"source": "dict:test", "keys": 1, "usable": True}
    assert health["issuers"]["https://static.example.test/"]["source"] == "static"
    custom.error = KeysUnavailable("the secret store is sealed")
    with pytest.raises(KeysUnavailable, match="sealed"):
        verifier.prefetch()


def test_repr_names_a_custom_source_by_its_name(key: Key, clock: Clock) -> None:
    verifier = _verifier(DictKeys(key.jwks()), clock)
    assert "keys='dict:test'" in repr(verifier)
    assert "key_source='dict:test'" in repr(
        Issuer(ISSUER, AUDIENCE, key_source=DictKeys({"keys": []}))
    )


# -- held to the contract ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        pytest.param({"keys": []}, None, id="returns-a-dict"),
        pytest.param("not keys", None, id="returns-a-string"),
        pytest.param(None, RuntimeError("vault sealed \x1b[31m"), id="raises"),
    ],
)
@pytest.mark.parametrize("how", ["verify", "averify"])
def test_a_source_that_breaks_the_contract_is_503_logged_once(
    key: Key,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
    answer: Any,
    error: Exception | None,
    how: str,
) -> None:
    source = DictKeys(key.jwks())
    source.answer, source.error = answer, error
    verifier = _verifier(source, clock)
    caplog.set_level(logging.INFO, logger="jwt_guard")

    def check(tok: str) -> Any:
        return verifier.verify(tok) if how == "verify" else asyncio.run(verifier.averify(tok))

    for i in range(3):
        with pytest.raises(KeysUnavailable, match="dict:test"):
            check(_token(key, clock, sub=f"user-{i}"))
    told = [r for r in caplog.records if r.name == "jwt_guard.sources"]
    assert len(told) == 1
    assert told[0].levelno == logging.ERROR
    assert "\x1b" not in told[0].getMessage()
    assert verifier.health()["ok"] is (error is None)  # status() itself raises with `error`


def test_a_source_whose_status_is_not_a_dict_is_not_ready(key: Key) -> None:
    source = DictKeys(key.jwks())
    source.status = lambda: ["usable"]  # type: ignore[method-assign]
    status = CheckedSource(source).status()
    assert (status["usable"], status["source"]) == (False, "dict:test")
    source.status = lambda: {"keys": 1}  # type: ignore[method-assign]
    assert CheckedSource(source).status() == {"keys": 1, "source": "dict:test", "usable": False}


def test_a_refusal_the_source_raises_on_purpose_passes_through(key: Key, clock: Clock) -> None:
    source = DictKeys(key.jwks())
    source.error = UnknownKey("the store has no such key")
    with pytest.raises(UnknownKey, match="no such key"):
        _verifier(source, clock).verify(_token(key, clock))


# -- through the ASGI middleware --------------------------------------------------------------


def _app(source: Any, clock: Clock) -> TestClient:
    async def me(request: Request) -> JSONResponse:
        return JSONResponse({"sub": request.scope["jwt_guard.claims"]["sub"]})

    app = Starlette(routes=[Route("/me", me)])
    guarded = JWTGuard(
        app,
        issuer=ISSUER,
        audience=AUDIENCE,
        key_source=source,
        clock=clock,
        monotonic=clock.monotonic,
        prefetch=True,
    )
    return TestClient(guarded)


def test_a_custom_source_through_the_asgi_middleware(key: Key, clock: Clock) -> None:
    source = DictKeys(key.jwks())
    with _app(source, clock) as client:  # lifespan start-up: prefetch reaches the source
        assert source.calls.get("aprefetch") == 1
        tok = _token(key, clock)
        for _ in range(2):
            reply = client.get("/me", headers={"Authorization": f"Bearer {tok}"})
            assert (reply.status_code, reply.json()) == (200, {"sub": "user-1"})
        assert (source.calls["akeys_for"], source.calls["current"]) == (1, 1)
        stranger = _token(make_key("ES256", "custom-1", name="stranger"), clock)
        reply = client.get("/me", headers={"Authorization": f"Bearer {stranger}"})
        assert reply.status_code == 401


def test_a_source_failing_on_the_cached_path_is_503_not_500(key: Key, clock: Clock) -> None:
    """current() raising (the verified-token cache's question) is never a 500: the cached token
    is verified again, and the source's failure there is a 503 with Retry-After."""
    source = DictKeys(key.jwks())
    with _app(source, clock) as client:
        tok = _token(key, clock)
        headers = {"Authorization": f"Bearer {tok}"}
        assert client.get("/me", headers=headers).status_code == 200
        source.error = OSError("connection reset")
        reply = client.get("/me", headers=headers)
        assert reply.status_code == 503
        assert reply.json()["error"] == "temporarily_unavailable"
        assert "retry-after" in reply.headers
        source.error = None
        assert client.get("/me", headers=headers).status_code == 200
