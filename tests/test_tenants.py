"""Multi-tenant issuers (``IssuerTemplate``, core/_tenants.py): Entra v1 and v2, Keycloak realms,
Auth0 organisations; the allow list, callables (sync, async, raising, slow), ``any_tenant``;
one shared key source; refusals before any key fetch; the tenant corpus of ``_hostile.py``
through the core and both middlewares; configuration, from code and from the environment.

The provider is a real ``LocalIssuer`` on loopback: one key set, and tokens minted with one
``iss`` per tenant, as Entra's are.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from _common import shared_key
from _core_helpers import settle_jwks_threads
from _hostile import (
    TENANT_A,
    TENANT_B,
    TENANT_CORPUS,
    TENANT_EVIL,
    Answer,
    AsgiDriver,
    TenantHostile,
    TenantKit,
    acore_outcome,
    asgi_app,
    assert_no_echo,
    assert_refusal,
    call_wsgi,
    core_outcome,
    make_tenant_kit,
    wsgi_app,
)
from _realms import CERTS, realms
from jwt_guard import (
    ConfigurationError,
    Issuer,
    IssuerTemplate,
    JWTGuardWSGI,
    TokenVerifier,
)
from jwt_guard.core.claims import Claims
from jwt_guard.errors import (
    BadSignature,
    ExpiredToken,
    InvalidToken,
    KeysUnavailable,
    UnknownKey,
    WrongAudience,
    WrongIssuer,
)
from jwt_guard.guard.middleware import render_error
from jwt_guard.sources.jwks import JWKSClient
from jwt_guard.testing import LocalIssuer

ENTRA = IssuerTemplate.ENTRA_TENANT_PATTERN


@pytest.fixture(scope="module")
def kit() -> Iterator[TenantKit]:
    with make_tenant_kit() as started:
        yield started
    settle_jwks_threads()


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as made:
        yield made


def entra(kit: TenantKit, session: requests.Session | None = None, **options: Any) -> TokenVerifier:
    """A fresh verifier trusting ``kit``'s provider as Entra: v1 and v2 tokens of tenants A and
    B (unless ``options`` say otherwise), GUID tenants, one JWKS URL."""
    template = {
        "template": kit.templates,
        "audience": kit.audience,
        "tenants": {TENANT_A, TENANT_B},
        "tenant_pattern": ENTRA,
        "jwks_url": kit.provider.jwks_url,
        **{k: options.pop(k) for k in list(options) if k in IssuerTemplate.__dataclass_fields__},
    }
    jwks_options = {"session": session} if session is not None else {}
    return TokenVerifier(issuers=[IssuerTemplate(**template)], jwks_options=jwks_options, **options)


# -- accepting the tenants it should ------------------------------------------------------------


def test_v1_and_v2_tokens_of_allowed_tenants_share_one_fetch(kit: TenantKit) -> None:
    verifier = entra(kit)
    before = kit.provider.jwks_requests
    v2 = verifier.verify(kit.token(TENANT_A))
    v1 = verifier.verify(kit.token(TENANT_B, iss=kit.v1(TENANT_B)))
    v2b = verifier.verify(kit.token(TENANT_B))
    assert (v2.tenant, v2.issuer) == (TENANT_A, kit.v2(TENANT_A))
    assert (v1.tenant, v1.issuer) == (TENANT_B, kit.v1(TENANT_B))
    assert v2b.tenant == TENANT_B
    assert kit.provider.jwks_requests - before == 1  # every tenant: one key set, one fetch


def test_the_audience_is_checked_per_template(kit: TenantKit) -> None:
    verifier = entra(kit)
    token = kit.provider.mint({"tid": TENANT_A}, issuer=kit.v2(TENANT_A), audience="other-api")
    with pytest.raises(WrongAudience):
        verifier.verify(token)


def test_two_templates_can_share_one_key_source(kit: TenantKit) -> None:
    source = JWKSClient(kit.provider.jwks_url)
    v2 = IssuerTemplate(kit.v2("{tid}"), kit.audience, tenants={TENANT_A}, key_source=source)
    v1 = IssuerTemplate(kit.v1("{tid}"), kit.audience, tenants={TENANT_B}, key_source=source)
    verifier = TokenVerifier(issuers=[v2, v1])
    before = kit.provider.jwks_requests
    assert verifier.verify(kit.token(TENANT_A)).tenant == TENANT_A
    assert verifier.verify(kit.token(TENANT_B, iss=kit.v1(TENANT_B))).tenant == TENANT_B
    with pytest.raises(WrongIssuer):  # each template its own tenants
        verifier.verify(kit.token(TENANT_B))
    assert kit.provider.jwks_requests - before == 1


def test_exact_issuers_come_first(kit: TenantKit) -> None:
    """An exact Issuer equal to a filled-in template wins: its own audience, no tenant."""
    exact = Issuer(kit.v2(TENANT_EVIL), "exact-api", jwks_url=kit.provider.jwks_url)
    template = IssuerTemplate(
        kit.v2("{tid}"), kit.audience, any_tenant=True, jwks_url=kit.provider.jwks_url
    )
    verifier = TokenVerifier(issuers=[template, exact])
    token = kit.provider.mint(
        {"tid": TENANT_EVIL}, issuer=kit.v2(TENANT_EVIL), audience="exact-api"
    )
    claims = verifier.verify(token)
    assert claims.tenant is None
    assert verifier.verify(kit.token(TENANT_A)).tenant == TENANT_A
    assert verifier.issuers == (kit.v2(TENANT_EVIL),)
    assert verifier.templates == (kit.v2("{tid}"),)


def test_any_tenant_accepts_every_well_formed_tenant_and_nothing_else(kit: TenantKit) -> None:
    verifier = entra(kit, tenants=None, any_tenant=True)
    assert verifier.verify(kit.token(TENANT_EVIL)).tenant == TENANT_EVIL
    for bad in ("not-a-guid", TENANT_A.upper(), "../" + TENANT_A):
        with pytest.raises(WrongIssuer):
            verifier.verify(kit.token(bad))


def test_microsoft_hosts_default_to_the_guid_pattern() -> None:
    """On Microsoft's hosts the default pattern is a lower-case GUID; elsewhere a plain name."""
    with LocalIssuer(keys=[shared_key()]) as keys:
        jwks = keys.jwks()
        on_entra = IssuerTemplate(
            "https://login.microsoftonline.com/{tid}/v2.0", "api", any_tenant=True, jwks=jwks
        )
        elsewhere = IssuerTemplate(
            "https://kc.example.com/realms/{realm}", "api", any_tenant=True, jwks=jwks, claim="iss"
        )
        verifier = TokenVerifier(issuers=[on_entra, elsewhere])

        def mint(iss: str, **claims: Any) -> str:
            return keys.mint(claims, issuer=iss, audience="api")

        entra_iss = f"https://login.microsoftonline.com/{TENANT_A}/v2.0"
        assert verifier.verify(mint(entra_iss, tid=TENANT_A)).tenant == TENANT_A
        with pytest.raises(WrongIssuer):
            verifier.verify(mint("https://login.microsoftonline.com/contoso/v2.0", tid="contoso"))
        realm = verifier.verify(mint("https://kc.example.com/realms/acme-corp"))
        assert realm.tenant == "acme-corp"
        with pytest.raises(WrongIssuer):  # starts with a dot: not a name
            verifier.verify(mint("https://kc.example.com/realms/.hidden"))
        assert on_entra.tenant_pattern is None  # the default stays the default
        assert IssuerTemplate.TENANT_PATTERN != ENTRA


# -- Keycloak realms and Auth0 organisations ----------------------------------------------------


def test_keycloak_realms_from_iss_itself() -> None:
    """Keycloak tokens carry the realm only in ``iss``: ``claim="iss"`` cuts it out exactly."""
    with LocalIssuer(keys=[shared_key()]) as kc:
        template = IssuerTemplate(
            kc.url + "/realms/{realm}",
            "my-api",
            tenants={"acme", "globex"},
            claim="iss",
            jwks=kc.jwks(),
        )
        verifier = TokenVerifier(issuers=[template])

        def realm_token(realm: str) -> str:
            return kc.mint(issuer=f"{kc.url}/realms/{realm}", audience="my-api")

        assert verifier.verify(realm_token("acme")).tenant == "acme"
        assert verifier.verify(realm_token("globex")).issuer == f"{kc.url}/realms/globex"
        for bad in ("initech", "acme/extra", "acme/../globex", "..", "acme%2F", "ACME"):
            with pytest.raises(WrongIssuer):
                verifier.verify(realm_token(bad))
        with pytest.raises(WrongIssuer):  # the realm prefix of another host
            verifier.verify(kc.mint(issuer="http://evil.example/realms/acme", audience="my-api"))


@pytest.mark.parametrize("where", ["discovery", "jwks_url"])
def test_keycloak_realms_each_with_its_own_keys(where: str) -> None:
    """Keycloak realms do not share keys: the placeholder in the key URL gives each allowed
    realm its own key source; a realm's token signed with another realm's key is refused, and
    a realm that is not allowed causes no fetch at all."""
    with realms("acme", "globex", "initech") as kc:
        url = kc.base + "/realms/{realm}" + ("" if where == "discovery" else CERTS)
        template = IssuerTemplate(
            kc.base + "/realms/{realm}",
            "my-api",
            tenants={"acme", "globex"},
            claim="iss",
            **{where: url},
        )
        verifier = TokenVerifier(issuers=[template])
        assert set(verifier.key_sources()) == {kc.issuer("acme"), kc.issuer("globex")}
        assert verifier.verify(kc.mint("acme")).tenant == "acme"
        assert verifier.verify(kc.mint("globex")).tenant == "globex"
        with pytest.raises(UnknownKey):  # acme's issuer, globex's key: not in acme's key set
            verifier.verify(kc.mint("acme", key="globex"))
        with pytest.raises(WrongIssuer):
            verifier.verify(kc.mint("initech"))
        assert not [path for path in kc.requests if "initech" in path]
        fetched = {path.split("/")[2] for path in kc.requests}
        assert fetched == {"acme", "globex"}


def test_per_realm_keys_with_a_callable_are_made_for_admitted_realms_only() -> None:
    with realms("acme", "globex") as kc:
        template = IssuerTemplate(
            kc.base + "/realms/{realm}",
            "my-api",
            tenants=lambda realm: realm == "globex",
            claim="iss",
            discovery=kc.base + "/realms/{realm}",
        )
        verifier = TokenVerifier(issuers=[template])
        assert verifier.key_sources() == {}
        with pytest.raises(WrongIssuer):
            verifier.verify(kc.mint("acme"))
        assert verifier.verify(kc.mint("globex")).tenant == "globex"
        assert set(verifier.key_sources()) == {kc.issuer("globex")}
        assert {path.split("/")[2] for path in kc.requests} == {"globex"}


def test_auth0_organisations_on_custom_domains() -> None:
    """One custom domain per organisation, the organisation's name in ``org_name``."""
    with LocalIssuer(keys=[shared_key()]) as auth0:
        template = IssuerTemplate(
            "https://{org_name}.auth.example.com/",
            "https://api.example.com",
            tenants={"acme", "globex"},
            jwks=auth0.jwks(),
        )
        verifier = TokenVerifier(issuers=[template])

        def org_token(org: str, iss_org: str | None = None) -> str:
            iss = f"https://{iss_org or org}.auth.example.com/"
            return auth0.mint({"org_name": org}, issuer=iss, audience="https://api.example.com")

        assert verifier.verify(org_token("acme")).tenant == "acme"
        for bad, iss_org in (
            ("initech", None),
            ("acme", "globex"),  # the claim and iss disagree
            ("evil.example/x", None),  # another host
            ("acme.auth.example.com.evil", None),
            ("acme@evil", None),
        ):
            with pytest.raises(WrongIssuer):
                verifier.verify(org_token(bad, iss_org))


# -- the allow list -----------------------------------------------------------------------------


def test_the_tenant_set_is_copied_at_construction(kit: TenantKit) -> None:
    allowed = {TENANT_A}
    template = IssuerTemplate(
        kit.v2("{tid}"), kit.audience, tenants=allowed, jwks_url=kit.provider.jwks_url
    )
    verifier = TokenVerifier(issuers=[template])
    allowed.add(TENANT_EVIL)
    allowed.discard(TENANT_A)
    assert verifier.verify(kit.token(TENANT_A)).tenant == TENANT_A
    with pytest.raises(WrongIssuer):
        verifier.verify(kit.token(TENANT_EVIL))
    assert template.tenants == frozenset({TENANT_A})


def test_an_unknown_tenant_is_refused_before_any_key_fetch(
    kit: TenantKit, session: requests.Session
) -> None:
    verifier = entra(kit, session)
    before = kit.provider.jwks_requests
    with pytest.raises(WrongIssuer):
        verifier.verify(kit.token(TENANT_EVIL))
    with pytest.raises(WrongIssuer):
        asyncio.run(verifier.averify(kit.token(TENANT_EVIL)))
    assert kit.provider.jwks_requests == before


@pytest.mark.parametrize(
    ("answer", "accepted"),
    [
        pytest.param(True, True, id="True"),
        pytest.param(False, False, id="False"),
        pytest.param(None, False, id="None"),
        pytest.param(1, False, id="one"),
        pytest.param("yes", False, id="a-string"),
        pytest.param([TENANT_A], False, id="a-list"),
    ],
)
def test_a_callable_allows_only_with_true(kit: TenantKit, answer: object, accepted: bool) -> None:
    seen: list[str] = []

    def directory(tenant: str) -> Any:
        seen.append(tenant)
        return answer

    verifier = entra(kit, tenants=directory)
    token = kit.token(TENANT_EVIL)
    if accepted:
        assert verifier.verify(token).tenant == TENANT_EVIL
    else:
        with pytest.raises(WrongIssuer):
            verifier.verify(token)
    assert seen == [TENANT_EVIL]


def test_the_callable_sees_only_values_that_passed_the_pattern(kit: TenantKit) -> None:
    seen: list[str] = []
    verifier = entra(kit, tenants=lambda t: seen.append(t) or True)
    for bad in ("'; DROP TABLE tenants; --", "../etc", TENANT_A.upper(), "x" * 300):
        with pytest.raises(WrongIssuer):
            verifier.verify(kit.token(bad))
    assert seen == []


def test_a_tenant_seen_before_is_still_checked_against_its_claim(kit: TenantKit) -> None:
    """Its later tokens are admitted at once, but only with the same iss and tid."""
    verifier = entra(kit)
    for _ in range(2):
        assert verifier.verify(kit.token(TENANT_A)).tenant == TENANT_A
    for bad in (
        kit.token(TENANT_B, iss=kit.v2(TENANT_A)),
        kit.token(None, iss=kit.v2(TENANT_A)),
        kit.token([TENANT_A], iss=kit.v2(TENANT_A)),
    ):
        with pytest.raises(WrongIssuer):
            verifier.verify(bad)


def test_the_rejection_log_names_an_admitted_tenants_issuer_only(
    kit: TenantKit, caplog: pytest.LogCaptureFixture
) -> None:
    verifier = entra(kit)
    caplog.set_level(logging.INFO, logger="jwt_guard.verifier")
    expired = kit.provider.mint(
        {"tid": TENANT_A}, issuer=kit.v2(TENANT_A), audience=kit.audience, expires_in=-3600
    )
    with pytest.raises(ExpiredToken):
        verifier.verify(expired)
    with pytest.raises(WrongIssuer):
        verifier.verify(kit.token(TENANT_EVIL))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("rejected")]
    assert f"iss={kit.v2(TENANT_A)} " in lines[0]
    assert "iss=None " in lines[1]  # a tenant that was not admitted: its iss is not repeated


def test_made_up_tenants_cannot_grow_memory(
    kit: TenantKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With any_tenant, tenants are admitted before the signature is checked: what is kept for
    them is bounded, whatever arrives."""
    import jwt_guard.core._tenants as tenants_module

    monkeypatch.setattr(tenants_module, "_MAX_STATES", 8)
    verifier = entra(kit, tenants=None, any_tenant=True)
    forged = kit.attacker.key("RS256")
    for n in range(40):
        tid = f"{n:08x}-0000-4000-8000-000000000000"
        with pytest.raises(BadSignature):
            verifier.verify(kit.token(tid, key=forged))
    tenancy = verifier._tenancy
    assert tenancy is not None
    assert len(tenancy._admitted) <= 8
    assert len(tenancy.issuers[0]._states) <= 8
    assert verifier.verify(kit.token(TENANT_EVIL)).tenant == TENANT_EVIL


def test_a_callable_is_not_asked_again_for_a_cached_token(kit: TenantKit) -> None:
    """Documented: the token cache answers for a token the check admitted, for at most
    ``token_cache_ttl``; a fresh token asks again."""
    seen: list[str] = []
    verifier = entra(kit, tenants=lambda t: seen.append(t) or True)
    token = kit.token(TENANT_A)
    first, again = verifier.verify(token), verifier.verify(token)
    assert again is first
    assert again.tenant == TENANT_A
    verifier.verify(kit.token(TENANT_A))
    assert seen == [TENANT_A, TENANT_A]


def test_a_raising_callable_refuses_and_logs_once_per_episode(
    kit: TenantKit, caplog: pytest.LogCaptureFixture
) -> None:
    down = True

    def directory(tenant: str) -> bool:
        if down:
            raise ConnectionError("tenant directory unreachable CANARY-7f3a\r\nforged")
        return tenant == TENANT_A

    verifier = entra(kit, tenants=directory)
    caplog.set_level(logging.INFO, logger="jwt_guard.tenants")
    for _ in range(3):
        with pytest.raises(WrongIssuer) as refused:
            verifier.verify(kit.token(TENANT_A))
        answer = render_error(refused.value)
        assert b"CANARY" not in answer.body
        assert "CANARY" not in str(answer.headers)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1  # once per episode, whatever the traffic
    assert errors[0].exc_info is not None  # with the traceback, once
    assert "\r" not in errors[0].getMessage()
    assert "\n" not in errors[0].getMessage()
    down = False
    assert verifier.verify(kit.token(TENANT_A)).tenant == TENANT_A
    assert any(r.levelno == logging.INFO and "again" in r.getMessage() for r in caplog.records)
    down = True
    with pytest.raises(WrongIssuer):
        verifier.verify(kit.token(TENANT_A))
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 2  # a new episode


# -- async callables ----------------------------------------------------------------------------


def test_an_async_callable_under_averify(kit: TenantKit) -> None:
    async def directory(tenant: str) -> bool:
        await asyncio.sleep(0)
        return tenant == TENANT_B

    verifier = entra(kit, tenants=directory)

    async def run() -> None:
        assert (await verifier.averify(kit.token(TENANT_B))).tenant == TENANT_B
        with pytest.raises(WrongIssuer):
            await verifier.averify(kit.token(TENANT_A))

    asyncio.run(run())


def test_a_slow_async_callable_is_bounded_by_tenant_timeout(
    kit: TenantKit, session: requests.Session, caplog: pytest.LogCaptureFixture
) -> None:
    """A directory that never answers refuses the token after ``tenant_timeout``, before any key
    fetch; the refusal is logged once."""
    never = asyncio.Event()

    async def directory(tenant: str) -> bool:
        await never.wait()
        return True

    verifier = entra(kit, session, tenants=directory, tenant_timeout=0.05)
    before = kit.provider.jwks_requests
    caplog.set_level(logging.ERROR, logger="jwt_guard.tenants")

    async def run() -> None:
        for _ in range(2):
            with pytest.raises(WrongIssuer, match="no answer"):
                await verifier.averify(kit.token(TENANT_A))

    asyncio.run(run())
    assert kit.provider.jwks_requests == before
    assert len(caplog.records) == 1


def test_an_async_callable_cannot_run_under_verify(kit: TenantKit) -> None:
    async def directory(tenant: str) -> bool:
        return True

    verifier = entra(kit, tenants=directory)
    assert verifier.async_hooks
    with pytest.raises(ConfigurationError, match="averify"):
        verifier.verify(kit.token(TENANT_A))
    with pytest.raises(ConfigurationError, match="ASGI"):
        JWTGuardWSGI(lambda environ, start: [], verifier=verifier)


def test_a_callable_returning_an_awaitable_under_verify_refuses(
    kit: TenantKit, caplog: pytest.LogCaptureFixture
) -> None:
    """A sync callable handing back a coroutine cannot be recognised at construction: under
    ``verify`` it refuses every token (fail closed), closes the coroutine, says so once."""

    async def lookup(tenant: str) -> bool:
        return True

    verifier = entra(kit, tenants=lambda tenant: lookup(tenant))
    caplog.set_level(logging.ERROR, logger="jwt_guard.tenants")
    for _ in range(2):
        with pytest.raises(InvalidToken, match="awaitable"):
            verifier.verify(kit.token(TENANT_A))
    assert len(caplog.records) == 1
    # ... and averify awaits it.
    assert asyncio.run(verifier.averify(kit.token(TENANT_A))).tenant == TENANT_A


# -- keys: one shared source ----------------------------------------------------------------------


def test_discovery_of_a_common_metadata_document() -> None:
    """Entra's ``common`` document names ``.../{tenantid}/v2.0`` as its issuer: accepted for
    the template ``.../{tid}/v2.0``, and nothing else is."""

    class CommonMetadata(LocalIssuer):
        named = "{tenantid}/v2.0"

        def discovery(self) -> dict[str, Any]:
            return {**super().discovery(), "issuer": f"{self.url}/{self.named}"}

    with CommonMetadata(keys=[shared_key()], path="/common/v2.0") as provider:
        template = IssuerTemplate(
            provider.url + "/{tid}/v2.0",
            "api",
            tenants={TENANT_A},
            discovery=provider.issuer,
        )
        verifier = TokenVerifier(issuers=[template])
        token = provider.mint(
            {"tid": TENANT_A}, issuer=f"{provider.url}/{TENANT_A}/v2.0", audience="api"
        )
        assert verifier.verify(token).tenant == TENANT_A
        assert provider.discovery_requests == 1

        provider.named = "{tenantid}/v1.0"  # a document for other issuers: not ours
        other = TokenVerifier(issuers=[template])
        with pytest.raises(KeysUnavailable):
            other.verify(token)


def test_health_and_prefetch_cover_the_template_source(kit: TenantKit) -> None:
    verifier = entra(kit)
    name = " | ".join(kit.templates)
    assert set(verifier.key_sources()) == {name}
    before = kit.provider.jwks_requests
    verifier.prefetch()
    assert kit.provider.jwks_requests == before + 1
    health = verifier.health()
    assert health["ok"] is True
    assert set(health["issuers"]) == {name}
    assert health["issuers"][name]["usable"] is True


def test_repr_shows_the_shape_not_the_tenants(kit: TenantKit) -> None:
    secret_tenant = "5ec12e7a-0000-4000-8000-00000000beef"
    template = IssuerTemplate(
        kit.v2("{tid}"), kit.audience, tenants={secret_tenant}, jwks_url=kit.provider.jwks_url
    )
    for text in (repr(template), repr(TokenVerifier(issuers=[template]))):
        assert kit.v2("{tid}") in text
        assert secret_tenant not in text
        assert "tenants=1" in text or "<1 tenants>" in text


def test_claims_keep_the_tenant_through_pickle(kit: TenantKit) -> None:
    claims = entra(kit).verify(kit.token(TENANT_A))
    copy = pickle.loads(pickle.dumps(claims))
    assert copy == claims
    assert copy.tenant == TENANT_A
    assert Claims({"sub": "x"}).tenant is None
    assert Claims({"sub": "x"}, tenant="t").tenant == "t"


# -- the hostile corpus -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared(kit: TenantKit) -> Iterator[TokenVerifier]:
    with requests.Session() as session:
        yield entra(kit, session)


@pytest.fixture(scope="module")
def tenant_asgi(shared: TokenVerifier) -> Iterator[AsgiDriver]:
    driver = AsgiDriver(asgi_app(shared))
    yield driver
    driver.close()


def _log_is_clean(caplog: pytest.LogCaptureFixture) -> None:
    for record in caplog.records:
        message = record.getMessage()
        assert not any(ch in message for ch in "\r\n\x00\x0b\x1b\x7f"), message


@pytest.mark.parametrize("hostile", TENANT_CORPUS)
def test_core(
    hostile: TenantHostile,
    kit: TenantKit,
    session: requests.Session,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``verify`` and ``averify`` of a fresh verifier refuse with the exact error; a tenant
    refusal comes before any key fetch; nothing is echoed, the log stays one line per field."""
    caplog.set_level(logging.DEBUG, logger="jwt_guard")
    verifier = entra(kit, session)
    lines = hostile.lines(kit)
    before = kit.provider.jwks_requests
    sync = core_outcome(verifier, lines)
    async_ = asyncio.run(acore_outcome(verifier, lines))
    for outcome in (sync, async_):
        assert type(outcome) is hostile.refusal, getattr(outcome, "detail", outcome)
        rendered = render_error(outcome)
        assert_no_echo(Answer(rendered.status, rendered.headers, rendered.body, False), lines)
    if not hostile.fetches:
        assert kit.provider.jwks_requests == before
    _log_is_clean(caplog)


@pytest.mark.parametrize("hostile", TENANT_CORPUS)
def test_asgi(
    hostile: TenantHostile,
    kit: TenantKit,
    tenant_asgi: AsgiDriver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="jwt_guard")
    lines = hostile.lines(kit)
    assert_refusal(tenant_asgi(lines), hostile.refusal, lines)
    _log_is_clean(caplog)


@pytest.mark.parametrize("hostile", TENANT_CORPUS)
def test_wsgi(hostile: TenantHostile, kit: TenantKit, shared: TokenVerifier) -> None:
    lines = hostile.lines(kit)
    assert_refusal(call_wsgi(wsgi_app(shared), lines), hostile.refusal, lines)


def test_the_corpus_is_refused_only_for_the_reason_it_names(
    kit: TenantKit, shared: TokenVerifier
) -> None:
    """The same tokens, well formed, pass: each case fails on its one defect."""
    assert shared.verify(kit.token(TENANT_A)).tenant == TENANT_A
    assert shared.verify(kit.token(TENANT_B, iss=kit.v1(TENANT_B))).tenant == TENANT_B
    with pytest.raises(UnknownKey):
        shared.verify(kit.token(TENANT_A, key=kit.attacker.add_key("RS256")))


# -- configuration ------------------------------------------------------------------------------

_JWKS = {"keys": []}


def _template(**changes: Any) -> IssuerTemplate:
    options: dict[str, Any] = {
        "template": "https://login.example.com/{tid}/v2.0",
        "audience": "api",
        "tenants": {"acme"},
        "jwks_url": "https://login.example.com/keys",
    }
    options.update(changes)
    return IssuerTemplate(**{k: v for k, v in options.items() if v is not _DROP})


_DROP = object()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        pytest.param(
            {"template": "https://login.example.com/v2.0"}, "exactly one placeholder", id="none"
        ),
        pytest.param(
            {"template": "https://{a}.example.com/{b}"}, "exactly one placeholder", id="two"
        ),
        pytest.param(
            {"template": ["https://a.example/{tid}", "https://b.example/{org}"]},
            "same placeholder",
            id="names-differ",
        ),
        pytest.param({"template": "{tid}.example.com"}, "cannot start", id="at-start"),
        pytest.param({"template": "{tid}://example.com/"}, "scheme", id="in-scheme"),
        pytest.param({"template": "ht{tid}tps://example.com/"}, "scheme", id="inside-scheme"),
        pytest.param({"template": "https://example.com/{tid}/{"}, "brace", id="stray-brace"),
        pytest.param({"template": "https://example.com/ {tid}"}, "without spaces", id="space"),
        pytest.param({"template": "https://exämple.com/{tid}"}, "ASCII", id="non-ascii"),
        pytest.param({"template": ["https://a.example/{tid}"] * 2}, "twice", id="duplicate"),
        pytest.param({"template": []}, "non-empty list", id="empty-list"),
        pytest.param({"template": 42}, "non-empty list", id="not-text"),
        pytest.param({"tenants": _DROP}, "say which tenants", id="no-tenants"),
        pytest.param({"any_tenant": True}, "not both", id="tenants-and-any"),
        pytest.param({"any_tenant": "yes"}, "True or False", id="any-not-bool"),
        pytest.param({"tenants": set()}, "is empty", id="empty-set"),
        pytest.param({"tenants": "acme"}, "a set of tenant values", id="a-string"),
        pytest.param({"tenants": {"acme", 7}}, "must be a string", id="not-a-string"),
        pytest.param({"tenants": {"a/b"}}, "host or path", id="tenant-with-slash"),
        pytest.param({"tenants": {"ACME!"}}, "tenant pattern", id="tenant-off-pattern"),
        pytest.param(
            {
                "template": "https://login.microsoftonline.com/{tid}/v2.0",
                "tenants": {TENANT_A.upper()},
            },
            "tenant pattern",
            id="entra-upper-case-guid",
        ),
        pytest.param({"tenant_pattern": "("}, "regular expression", id="bad-regex"),
        pytest.param({"tenant_pattern": ""}, "must not be empty", id="empty-regex"),
        pytest.param({"claim": ""}, "must not be empty", id="empty-claim"),
        pytest.param({"jwks_url": _DROP}, "exactly one key source", id="no-key-source"),
        pytest.param({"jwks": _JWKS}, "exactly one key source", id="two-key-sources"),
        pytest.param(
            {"jwks_url": _DROP, "key_source": object()}, "not a KeySource", id="bad-source"
        ),
        pytest.param({"jwks_url": _DROP, "jwks": [1]}, "JWK Set dict", id="jwks-not-a-dict"),
        pytest.param({"audience": 7}, "audience", id="audience-type"),
        pytest.param({"audience": []}, "at least one", id="audience-empty"),
        pytest.param(
            {"jwks_url": "https://login.example.com/{org}/keys"},
            "placeholder",
            id="key-url-other-placeholder",
        ),
        pytest.param(
            {"jwks_url": "https://login.example.com/{tid}/{tid}"}, "once", id="key-url-twice"
        ),
        pytest.param(
            {
                "jwks_url": "https://login.example.com/{tid}/keys",
                "tenants": _DROP,
                "any_tenant": True,
            },
            "needs tenants=",
            id="key-url-per-tenant-any",
        ),
        pytest.param({"tenant_timeout": 0}, "tenant_timeout", id="timeout-zero"),
        pytest.param({"tenant_timeout": "5"}, "tenant_timeout", id="timeout-text"),
        pytest.param({"algorithms": ["none"]}, "algorithms", id="alg-none"),
    ],
)
def test_bad_templates_are_configuration_errors(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        _template(**changes)


def test_a_template_twice_in_one_verifier_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="twice"):
        TokenVerifier(issuers=[_template(), _template(tenants={"other"})])
    with pytest.raises(ConfigurationError, match="IssuerTemplate"):
        TokenVerifier(issuers=[_template(), "https://login.example.com/x"])  # type: ignore[list-item]


def test_overlapping_templates_refuse_the_tokens_both_fit() -> None:
    with LocalIssuer(keys=[shared_key()]) as keys:
        narrow = IssuerTemplate(
            "https://{org}.eu.example.com/", "api", any_tenant=True, jwks=keys.jwks()
        )
        broad = IssuerTemplate(
            "https://{org}.example.com/", "api", any_tenant=True, jwks=keys.jwks()
        )
        verifier = TokenVerifier(issuers=[narrow, broad])
        token = keys.mint({"org": "acme"}, issuer="https://acme.eu.example.com/", audience="api")
        with pytest.raises(WrongIssuer, match="several templates"):
            verifier.verify(token)
        plain = keys.mint({"org": "acme"}, issuer="https://acme.example.com/", audience="api")
        assert verifier.verify(plain).tenant == "acme"


# -- from the environment -----------------------------------------------------------------------


def _env(kit: TenantKit, **variables: str) -> dict[str, str]:
    base = {
        "JWT_GUARD_ISSUER_TEMPLATE": ",".join(kit.templates),
        "JWT_GUARD_AUDIENCE": kit.audience,
        "JWT_GUARD_JWKS_URL": kit.provider.jwks_url,
        "JWT_GUARD_TENANTS": f"{TENANT_A}, {TENANT_B}",
    }
    base.update(variables)
    return {k: v for k, v in base.items() if v != "-"}


def test_from_env_builds_the_template(kit: TenantKit) -> None:
    verifier = TokenVerifier.from_env(environ=_env(kit, JWT_GUARD_TENANT_PATTERN=ENTRA))
    assert verifier.templates == tuple(kit.templates)
    assert verifier.verify(kit.token(TENANT_B, iss=kit.v1(TENANT_B))).tenant == TENANT_B
    with pytest.raises(WrongIssuer):
        verifier.verify(kit.token(TENANT_EVIL))
    anyone = TokenVerifier.from_env(
        environ=_env(kit, JWT_GUARD_TENANTS="-", JWT_GUARD_ANY_TENANT="true")
    )
    assert anyone.verify(kit.token(TENANT_EVIL)).tenant == TENANT_EVIL


def test_from_env_tenant_from_iss(kit: TenantKit) -> None:
    verifier = TokenVerifier.from_env(
        environ=_env(
            kit,
            JWT_GUARD_ISSUER_TEMPLATE=kit.provider.url + "/realms/{realm}",
            JWT_GUARD_TENANTS="acme",
            JWT_GUARD_TENANT_CLAIM="iss",
        )
    )
    token = kit.provider.mint(issuer=kit.provider.url + "/realms/acme", audience=kit.audience)
    assert verifier.verify(token).tenant == "acme"


def test_from_env_issuers_json_holds_templates(kit: TenantKit) -> None:
    import json

    issuers = json.dumps(
        [
            {"issuer": kit.provider.issuer, "audience": "exact", "jwks_url": kit.provider.jwks_url},
            {
                "template": kit.templates,
                "audience": kit.audience,
                "tenants": [TENANT_A],
                "jwks_url": kit.provider.jwks_url,
            },
        ]
    )
    verifier = TokenVerifier.from_env(environ={"JWT_GUARD_ISSUERS": issuers})
    assert verifier.issuers == (kit.provider.issuer,)
    assert verifier.verify(kit.token(TENANT_A)).tenant == TENANT_A


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        pytest.param(
            {"JWT_GUARD_ISSUER_TEMPLATE": "-"},
            "JWT_GUARD_TENANTS need JWT_GUARD_ISSUER_TEMPLATE",
            id="tenants-alone",
        ),
        pytest.param(
            {"JWT_GUARD_ISSUER": "https://idp.example.com/"},
            "JWT_GUARD_ISSUERS instead",
            id="with-issuer",
        ),
        pytest.param({"JWT_GUARD_AUDIENCE": "-"}, "JWT_GUARD_AUDIENCE", id="no-audience"),
        pytest.param({"JWT_GUARD_JWKS_URL": "-"}, "JWT_GUARD_JWKS_URL", id="no-jwks-url"),
        pytest.param({"JWT_GUARD_TENANTS": "-"}, "say which tenants", id="no-tenants"),
        pytest.param({"JWT_GUARD_ANY_TENANT": "maybe"}, "JWT_GUARD_ANY_TENANT", id="any-not-bool"),
        pytest.param({"JWT_GUARD_TENANT": "x"}, "did you mean JWT_GUARD_TENANTS", id="typo"),
    ],
)
def test_from_env_mistakes_say_what_to_set(
    kit: TenantKit, variables: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        TokenVerifier.from_env(environ=_env(kit, **variables))
