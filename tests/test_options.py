"""``jwt_guard._options``: one check per option kind; only ConfigurationError escapes."""

from __future__ import annotations

import datetime

import pytest

from jwt_guard import ConfigurationError
from jwt_guard._options import duration, positive_int


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        pytest.param(5, 5.0, id="int"),
        pytest.param(2.5, 2.5, id="float"),
        pytest.param(datetime.timedelta(minutes=2), 120.0, id="timedelta"),
        pytest.param(0, 0.0, id="zero"),
    ],
)
def test_duration_accepts_numbers_and_timedeltas(value: object, seconds: float) -> None:
    assert duration("TokenVerifier", "leeway", value) == seconds


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("60", id="string"),
        pytest.param(None, id="none"),
        pytest.param(True, id="bool"),
        pytest.param(float("nan"), id="nan"),
        pytest.param(float("inf"), id="inf"),
        pytest.param(-1, id="negative"),
        pytest.param(datetime.timedelta(seconds=-1), id="negative-timedelta"),
    ],
)
def test_duration_refuses_anything_else_naming_owner_and_option(value: object) -> None:
    with pytest.raises(ConfigurationError, match=r"TokenVerifier\(leeway=\.\.\.\)"):
        duration("TokenVerifier", "leeway", value)


def test_duration_can_refuse_zero() -> None:
    with pytest.raises(ConfigurationError, match="> 0"):
        duration("JWKSClient", "timeout", 0, allow_zero=False)


@pytest.mark.parametrize("value", [1.5, "3", True, -1])
def test_positive_int_refuses_non_integers_and_small_values(value: object) -> None:
    with pytest.raises(ConfigurationError, match=r"TokenVerifier\(token_cache_size=\.\.\.\)"):
        positive_int("TokenVerifier", "token_cache_size", value)
