"""``jwt_guard.guard.middleware``: the header-to-token step every adapter shares."""

from __future__ import annotations

import pytest

from jwt_guard.errors import (
    InvalidRequest,
    JWTGuardError,
    KeysUnavailable,
    MissingToken,
    StoreFull,
    StoreUnavailable,
)
from jwt_guard.guard.middleware import bearer_token, render_error

TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"


@pytest.mark.parametrize(
    ("values", "outcome"),
    [
        pytest.param([f"Bearer {TOKEN}"], TOKEN, id="bearer"),
        pytest.param([f"bEaReR {TOKEN}"], TOKEN, id="scheme-case"),
        pytest.param([], MissingToken, id="no-header"),
        pytest.param(["Basic dXNlcjpwYXNz"], MissingToken, id="other-scheme"),
        pytest.param(['Digest username="u", realm="r"'], MissingToken, id="auth-params"),
        pytest.param(["Bearer"], InvalidRequest, id="no-credential"),
        pytest.param(["Bearer a b"], InvalidRequest, id="two-credentials"),
        pytest.param([f"Basic x, Bearer {TOKEN}"], InvalidRequest, id="bearer-after-other"),
        pytest.param(["Bearer ey\u00e9"], InvalidRequest, id="not-ascii"),
    ],
)
def test_bearer_token(values: list[str], outcome: str | type[JWTGuardError]) -> None:
    if isinstance(outcome, str):
        assert bearer_token(values) == outcome
    else:
        with pytest.raises(outcome):
            bearer_token(values)


@pytest.mark.parametrize(
    "lines",
    [
        pytest.param([f"Bearer {TOKEN}", f"Bearer {TOKEN}"], id="same-token-twice"),
        pytest.param([f"Bearer {TOKEN}", "Bearer other"], id="two-tokens"),
        pytest.param(["Basic x", f"Bearer {TOKEN}"], id="basic-then-bearer"),
        pytest.param([f"Bearer {TOKEN}", "Basic x"], id="bearer-then-basic"),
        pytest.param(["! ", ""], id="junk-then-empty"),
        pytest.param(["Basic x", "Basic y"], id="two-basic"),
        pytest.param(["", ""], id="two-empty"),
    ],
)
def test_several_lines_get_the_answer_of_the_line_a_wsgi_server_joins(lines: list[str]) -> None:
    """ASGI servers pass repeated headers one by one, WSGI servers join them with ","; the
    answer must not depend on which (found by the fuzz suite: 400 on ASGI, 401 on WSGI)."""

    def outcome(values: list[str]) -> object:
        try:
            return bearer_token(values)
        except JWTGuardError as exc:
            return type(exc)

    assert outcome(lines) == outcome([",".join(lines)])
    assert outcome(lines) != TOKEN  # two lines never make one credential


@pytest.mark.parametrize(
    "exc",
    [
        pytest.param(KeysUnavailable("jwks down", retry_after=7), id="keys"),
        pytest.param(StoreUnavailable("redis timed out", retry_after=7), id="store"),
        pytest.param(StoreFull("replay store full", retry_after=7), id="store-full"),
    ],
)
def test_every_503_carries_retry_after_and_no_challenge(exc: JWTGuardError) -> None:
    """A store that cannot answer (a DPoP replay check, a stale revocation replica) is answered
    like unavailable keys: a client told ``invalid_token`` would throw a good token away."""
    answer = render_error(exc)
    headers = dict(answer.headers)
    assert answer.status == 503
    assert headers["retry-after"] == "7"
    assert "www-authenticate" not in headers
    assert b"redis" not in answer.body
    assert b"jwks" not in answer.body
