"""The published JWS examples (RFC 7515, 8037, 7520) through ``verify_jws``.

The vectors are public RFC data kept in the repository (``tests/data/rfc_vectors.json``; see its
``_source_note``): a clone of the repository alone runs them.
A missing file is a failure, not a skip.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from _core_helpers import b64d
from jwt_guard import JWTGuardError
from jwt_guard.core.jws import verify_jws
from jwt_guard.keys.algorithms import ALGORITHMS

VECTORS_PATH = Path(__file__).resolve().parent / "data" / "rfc_vectors.json"


def _load() -> list[dict[str, Any]]:
    if not VECTORS_PATH.is_file():
        raise FileNotFoundError(
            f"RFC conformance vectors not found at {VECTORS_PATH}: they belong to the repository"
        )
    vectors: list[dict[str, Any]] = json.loads(VECTORS_PATH.read_text("utf-8"))["vectors"]
    return vectors


VECTORS = _load()


def test_the_vector_file_covers_valid_and_invalid_cases() -> None:
    assert len(VECTORS) >= 10
    assert {v["expect"] for v in VECTORS} == {"valid", "invalid"}
    assert len({v["name"] for v in VECTORS}) == len(VECTORS)


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_rfc_vector(vector: dict[str, Any]) -> None:
    alg = vector["alg"]
    algorithms = [alg] if alg in ALGORITHMS else None
    jwks = {"keys": [vector["jwk"]]}
    if vector["expect"] == "valid":
        header, payload = verify_jws(vector["jws"], jwks, algorithms=algorithms)
        assert header["alg"] == alg
        assert payload == b64d(vector["jws"].split(".")[1])
    else:
        assert vector["expect"] == "invalid"
        with pytest.raises(JWTGuardError):
            verify_jws(vector["jws"], jwks, algorithms=algorithms)


@pytest.mark.parametrize(
    "vector",
    [v for v in VECTORS if v["expect"] == "valid"],
    ids=[v["name"] for v in VECTORS if v["expect"] == "valid"],
)
def test_valid_vectors_refused_under_another_algorithm(vector: dict[str, Any]) -> None:
    # The key fits its algorithm; an allowlist without it refuses the same JWS.
    others = [a for a in ALGORITHMS if a != vector["alg"]]
    with pytest.raises(JWTGuardError):
        verify_jws(vector["jws"], {"keys": [vector["jwk"]]}, algorithms=others)
