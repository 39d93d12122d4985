"""The pytest plugin: its fixtures used directly, and whole test sessions run through pytester."""

from __future__ import annotations

import httpx
import pytest
import requests
from starlette.responses import PlainTextResponse

from _common import INNER_PYTEST
from jwt_guard import ConfigurationError, JWTGuard, KeysUnavailable, TokenVerifier
from jwt_guard.errors import ExpiredToken, UnknownKey, WrongAudience
from jwt_guard.testing import JWKSFault, LocalIssuer
from jwt_guard.testing.pytest_plugin import IssuerFault, MintToken

pytest_plugins = ["pytester"]

INNER = (*INNER_PYTEST, "-W", "error")


# -- the fixtures, used the way a user's tests use them


def test_a_minted_token_verifies_with_its_claims(
    jwt_verifier: TokenVerifier, mint_token: MintToken, jwt_issuer: LocalIssuer
) -> None:
    token = mint_token({"email": "a@example.test"}, subject="alice", scopes=["read", "write"])
    claims = jwt_verifier.verify(token)
    assert (claims.subject, claims.issuer) == ("alice", jwt_issuer.issuer)
    assert claims["email"] == "a@example.test"
    assert claims.scopes == {"read", "write"}
    assert claims.audience == (jwt_issuer.audience,)


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA", "PS256", "ES384"])
def test_any_algorithm_can_be_asked_for(
    jwt_verifier: TokenVerifier, mint_token: MintToken, alg: str
) -> None:
    token = mint_token(alg=alg)
    assert jwt_verifier.verify(token).subject == "user-1"


def test_lifetime_audience_and_expiry(jwt_verifier: TokenVerifier, mint_token: MintToken) -> None:
    with pytest.raises(ExpiredToken):
        jwt_verifier.verify(mint_token(expires_in=-120))
    with pytest.raises(WrongAudience):
        jwt_verifier.verify(mint_token(audience="someone-else"))


def test_rotation_is_picked_up_within_a_test(
    jwt_issuer: LocalIssuer, jwt_verifier: TokenVerifier, mint_token: MintToken
) -> None:
    old = mint_token()
    jwt_verifier.verify(old)
    jwt_issuer.rotate()
    assert jwt_verifier.verify(mint_token()).subject == "user-1"
    jwt_verifier_fresh = TokenVerifier(
        issuer=jwt_issuer.issuer, audience=jwt_issuer.audience, token_cache_size=0
    )
    with pytest.raises(UnknownKey):  # the old kid left the JWKS
        jwt_verifier_fresh.verify(old)


def test_a_fault_as_a_context_manager_and_until_the_test_ends(
    jwt_issuer: LocalIssuer, jwt_issuer_fault: IssuerFault
) -> None:
    with jwt_issuer_fault("error_500"):
        assert requests.get(jwt_issuer.jwks_url, timeout=2).status_code == 500
    assert requests.get(jwt_issuer.jwks_url, timeout=2).status_code == 200
    jwt_issuer_fault(JWKSFault.ERROR_500, endpoint="jwks")
    assert requests.get(jwt_issuer.discovery_url, timeout=2).status_code == 200
    assert requests.get(jwt_issuer.jwks_url, timeout=2).status_code == 500
    with pytest.raises(ValueError, match="unknown fault 'nope'; choose from 'down'"):
        jwt_issuer_fault("nope")


def test_set_fault_takes_the_fixture_s_names(
    jwt_issuer: LocalIssuer, mint_token: MintToken
) -> None:
    cold = TokenVerifier(issuer=jwt_issuer.issuer, audience=jwt_issuer.audience)
    jwt_issuer.set_fault("down")  # a string: once a silent no-op, so this test tested nothing
    with pytest.raises(KeysUnavailable):
        cold.verify(mint_token())
    with pytest.raises(ConfigurationError, match="unknown fault 'offline'; choose from 'down'"):
        jwt_issuer.set_fault("offline")


def test_jwt_verifier_follows_the_issuer_s_audience(
    jwt_issuer: LocalIssuer, jwt_verifier: TokenVerifier, mint_token: MintToken
) -> None:
    before = mint_token()
    assert jwt_verifier.verify(before).audience == (jwt_issuer.audience,)
    jwt_issuer.audience = "https://other-api.example.test"
    claims = jwt_verifier.verify(mint_token())
    assert claims.audience == ("https://other-api.example.test",)
    with pytest.raises(WrongAudience):  # cached for the old audience: not any more
        jwt_verifier.verify(before)
    assert jwt_verifier.cached(before) is None


async def test_jwt_verifier_follows_the_audience_in_async_code_and_apps(
    jwt_issuer: LocalIssuer, jwt_verifier: TokenVerifier, mint_token: MintToken
) -> None:
    app = JWTGuard(PlainTextResponse("ok"), verifier=jwt_verifier)
    jwt_issuer.audience = "my-api"
    token = mint_token()
    assert (await jwt_verifier.averify(token)).audience == ("my-api",)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        assert (await client.get("/", headers={"Authorization": f"Bearer {token}"})).text == "ok"
        jwt_issuer.audience = "another-api"
        refused = await client.get("/", headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 401


def test_a_verifier_serves_cached_keys_while_the_issuer_is_down(
    jwt_verifier: TokenVerifier,
    jwt_issuer: LocalIssuer,
    mint_token: MintToken,
    jwt_issuer_fault: IssuerFault,
) -> None:
    jwt_verifier.verify(mint_token())
    cold = TokenVerifier(issuer=jwt_issuer.issuer, audience=jwt_issuer.audience)
    with jwt_issuer_fault("down"):
        assert jwt_verifier.verify(mint_token(subject="bob")).subject == "bob"
        with pytest.raises(KeysUnavailable):
            cold.verify(mint_token())


# -- whole sessions, through pytester

ISOLATION = """
import requests
from jwt_guard.testing import JWKSFault

ORIGINAL = {}

def test_a_changes_everything(jwt_issuer, jwt_verifier, mint_token, jwt_issuer_fault):
    ORIGINAL["kids"] = [k.kid for k in jwt_issuer.keys]
    ORIGINAL["audience"] = jwt_issuer.audience
    jwt_verifier.verify(mint_token())
    jwt_issuer.rotate()
    jwt_issuer.add_key("ES384")  # (an algorithm it had no key for; not RSA: no 0.1 s to wait)
    mint_token(alg="ES512")
    jwt_issuer.audience = "changed"
    jwt_issuer.cache_max_age = 1
    jwt_issuer_fault(JWKSFault.DOWN)

def test_b_sees_the_issuer_as_it_was(jwt_issuer, jwt_verifier, mint_token):
    assert [k.kid for k in jwt_issuer.keys] == ORIGINAL["kids"]
    assert jwt_issuer.audience == ORIGINAL["audience"]
    assert jwt_issuer.cache_max_age == 300
    assert jwt_issuer.request_count() == 0
    response = requests.get(jwt_issuer.jwks_url, timeout=2)
    assert [k["kid"] for k in response.json()["keys"]] == ORIGINAL["kids"]
    assert jwt_verifier.verify(mint_token()).subject == "user-1"

def test_c_one_issuer_per_session(jwt_issuer, jwt_issuer_session):
    assert jwt_issuer is jwt_issuer_session
"""


def test_tests_do_not_leak_into_each_other(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_isolation=ISOLATION)
    pytester.runpytest(*INNER).assert_outcomes(passed=3)


def test_a_failing_test_still_resets_the_issuer(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        KIDS = []

        def test_fails(jwt_issuer, jwt_issuer_fault):
            KIDS.append(jwt_issuer.key().kid)
            jwt_issuer.rotate()
            jwt_issuer_fault("down")
            raise AssertionError("boom")

        def test_after(jwt_issuer, jwt_verifier, mint_token):
            assert jwt_issuer.key().kid == KIDS[0]
            assert jwt_verifier.verify(mint_token()).subject == "user-1"
        """
    )
    pytester.runpytest(*INNER).assert_outcomes(passed=1, failed=1)


def test_options_are_overridable_and_session_fixtures_can_share_the_issuer(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        """
        import pytest
        from jwt_guard import TokenVerifier

        @pytest.fixture(scope="session")
        def jwt_issuer_options():
            return {"algorithms": ("ES256",), "audience": "my-api", "path": "/realms/test"}

        @pytest.fixture(scope="session")
        def session_verifier(jwt_issuer_session):
            return TokenVerifier(
                issuer=jwt_issuer_session.issuer, audience=jwt_issuer_session.audience
            )
        """
    )
    pytester.makepyfile(
        """
        def test_configured(jwt_issuer, mint_token, session_verifier):
            assert jwt_issuer.issuer.endswith("/realms/test")
            assert [k.alg for k in jwt_issuer.keys] == ["ES256"]
            claims = session_verifier.verify(mint_token(scopes="a b"))
            assert claims.audience == ("my-api",) and claims.scopes == {"a", "b"}
        """
    )
    pytester.runpytest(*INNER).assert_outcomes(passed=1)


def test_the_plugin_is_registered_by_its_entry_point(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--fixtures", *INNER)
    result.stdout.fnmatch_lines(["*fixtures defined from jwt_guard.testing.pytest_plugin*"])
    for name in ("jwt_issuer", "jwt_verifier", "mint_token", "jwt_issuer_fault"):
        result.stdout.fnmatch_lines([f"{name}*"])
