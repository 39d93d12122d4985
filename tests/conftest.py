"""Module-scoped defaults for the adapter tests: one local issuer and a verifier trusting it.

A test module that needs another issuer (other algorithms, say) defines its own ``issuer``.

Property tests (hypothesis) are deterministic: the ``jwt_guard`` profile derives examples from
each test alone (``derandomize``) and keeps no example database, so CI and a fresh clone run the
same examples. ``scripts/fuzz_long.py`` asks ``test_fuzz`` for random ones.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import pytest
from hypothesis import settings

from _common import verifier_for
from _redis import own_server, server  # noqa: F401 (a real redis-server: the Redis tests' fixtures)
from jwt_guard import TokenVerifier
from jwt_guard.testing import LocalIssuer, SigningKey, generate_key

settings.register_profile("jwt_guard", derandomize=True, database=None, deadline=None)
settings.load_profile("jwt_guard")


# The modules that take longest run first. Under xdist (--dist loadfile) each worker takes the
# next whole module when it is free: a long one dealt last keeps one worker busy while the other
# waits. This changes the order of modules only, never the order of tests inside one.
_LONGEST_FIRST = (
    "test_fetch.py",
    "test_key_source_faults.py",
    "test_cli.py",
    "test_attacks.py",
    "test_dpop.py",
    "test_load.py",
    "test_dpop_adapters.py",
    "test_fuzz.py",
    "test_benchmarks.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: place for place, name in enumerate(_LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest as found


@functools.cache
def _module_issuer_key() -> SigningKey:
    """The default issuer's RS256 key, generated once per process (it was most of what each
    module's issuer cost). Not ``shared_key()``: a test may start a second issuer with that one,
    whose kid must differ."""
    return generate_key("RS256")


@pytest.fixture(scope="module")
def issuer() -> Iterator[LocalIssuer]:
    with LocalIssuer(keys=[_module_issuer_key()]) as local:
        yield local


@pytest.fixture(scope="module")
def verifier(issuer: LocalIssuer) -> Iterator[TokenVerifier]:
    with verifier_for(issuer) as built:
        yield built
