"""Module-scoped defaults for the adapter tests: one local issuer and a verifier trusting it.

A test module that needs another issuer (other algorithms, say) defines its own ``issuer``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from _common import verifier_for
from jwt_guard import TokenVerifier
from jwt_guard.testing import LocalIssuer


@pytest.fixture(scope="module")
def issuer() -> Iterator[LocalIssuer]:
    with LocalIssuer() as local:
        yield local


@pytest.fixture(scope="module")
def verifier(issuer: LocalIssuer) -> Iterator[TokenVerifier]:
    with verifier_for(issuer) as built:
        yield built
