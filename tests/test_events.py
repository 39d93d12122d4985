"""The observer interface (``jwt_guard.events``): ``GuardObserver`` receives one event per
verification, refusal and key-set change, through ``emit``, which a raising observer cannot
turn into a refused (or accepted) request."""

from __future__ import annotations

from collections import Counter

import pytest
from starlette.testclient import TestClient

from _observe import Recorder, bearer, make_app
from jwt_guard import GuardObserver, TokenVerifier
from jwt_guard.events import emit
from jwt_guard.testing import LocalIssuer


def test_observer_counts_match_a_scripted_sequence(jwt_issuer: LocalIssuer) -> None:
    recorder = Recorder()
    verifier = TokenVerifier(
        issuer=jwt_issuer.issuer, audience=jwt_issuer.audience, observer=recorder
    )
    client = TestClient(make_app(verifier))
    good = jwt_issuer.mint(scopes=["read"])
    script = [
        (good, "/me", 200),  # fresh: fetch + verify
        (good, "/me", 200),  # cached
        (good, "/admin", 403),  # verified (cached), then the route refuses
        (jwt_issuer.mint(expires_in=-600), "/me", 401),
        (None, "/me", 401),
        ("not a token!", "/me", 400),
        (jwt_issuer.mint(kid="nobody"), "/me", 401),  # unknown kid: one refetch, in vain
        (jwt_issuer.mint(kid="nobody-2"), "/me", 401),  # inside the cool-down: no refetch
    ]
    for token, path, status in script:
        headers = bearer(token) if token else {}
        assert client.get(path, headers=headers).status_code == status
    assert recorder.events == Counter(
        {
            ("verified", False): 1,
            ("verified", True): 2,
            ("rejected", "insufficient_scope"): 1,
            ("rejected", "expired"): 1,
            ("rejected", "missing_token"): 1,
            ("rejected", "invalid_request"): 1,
            ("rejected", "unknown_key"): 2,
            ("keys_fetched",): 2,
            ("unknown_kid",): 2,
        }
    )


def test_a_raising_observer_never_decides_a_request(
    jwt_issuer: LocalIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(GuardObserver):
        def verified(self, issuer: str, cached: bool) -> None:
            raise RuntimeError("metrics backend down")

    verifier = TokenVerifier(
        issuer=jwt_issuer.issuer, audience=jwt_issuer.audience, observer=Broken()
    )
    assert verifier.verify(jwt_issuer.mint()).subject == "user-1"
    assert "observer Broken.verified raised" in caplog.text


def test_emit_calls_the_bound_method_and_refuses_the_old_string_form() -> None:
    """``emit(observer, "verified", ...)`` dispatched on a method-name string mypy could not
    check (a misspelt event was a silent no-op, logged as a broken observer). It now takes the
    bound method; the old form fails loudly instead of losing every event."""
    recorder = Recorder()
    emit(recorder.rejected, "expired", None)
    emit(recorder.verified, "https://idp.example.com/", cached=True)
    assert recorder.events == Counter({("rejected", "expired"): 1, ("verified", True): 1})
    with pytest.raises(TypeError, match="bound observer method"):
        emit(recorder, "rejected", "expired", None)  # type: ignore[arg-type]
