"""The public surface: ``jwt_guard.__all__`` is sorted and complete, and importing the package
pulls in no web framework. (Modelled on httpx's tests/test_exported_members.py.)"""

from __future__ import annotations

import importlib
import pkgutil
import types
from typing import Any

import pytest

import jwt_guard
from _wsgi_helpers import ensure_django

# Walking the package imports every module, jwt_guard.drf too: Django REST framework reads
# Django's settings when imported, so they are configured first (as in any DRF project).
ensure_django()

# Public modules whose API is reached as ``jwt_guard.<module>.<name>``, never re-exported at the
# top level: framework adapters (importing them imports their framework), the command line and
# the test tooling.
OWN_NAMESPACE = {
    "binding",
    "cli",
    "django",
    "drf",
    "fastapi",
    "flask",
    "litestar",
    "stores",
    "testing",
}

# Names defined in the framework-free modules that are deliberately not re-exported: building
# blocks of the verification core, reachable through their module for advanced use and tests.
NOT_REEXPORTED: dict[str, set[str]] = {
    "asgi": {"JWTUser"},
    "core.claims": {"ClaimRules", "FrozenDict", "FrozenList", "extract_scopes", "validate_claims"},
    "core.jws": {
        "ParsedJWS",
        "allowed_algorithms",
        "check_header",
        "check_signature",
        "normalize_typ",
        "parse",
        "verify_jws",
    },
    "core.verifier": {"fingerprint"},
    "errors": {
        "AlgorithmNotAllowed",
        "BadSignature",
        "CertificateBindingMismatch",
        "DPoPBindingMismatch",
        "DPoPProofExpired",
        "DPoPProofMismatch",
        "DPoPProofReplayed",
        "EncryptedToken",
        "ExpiredToken",
        "InvalidClaim",
        "InvalidDPoPProof",
        "InvalidRequest",
        "IssuedInFuture",
        "MalformedToken",
        "MissingClaim",
        "MissingToken",
        "NotYetValid",
        "RevokedToken",
        "StoreFull",
        "StoreUnavailable",
        "TokenTooLarge",
        "TokenTooOld",
        "UnknownKey",
        "UnsupportedHeader",
        "UseDPoPNonce",
        "WrongAudience",
        "WrongIssuer",
    },
    "events": {"emit"},
    "guard.middleware": {
        "Guard",
        "RouteAdapter",
        "RouteRefusal",
        "RouteRequest",
        "authorization_credentials",
        "bearer_token",
        "challenge",
        "check_option_names",
        "check_scopes",
        "check_route",
        "flag_option",
        "options_from_env",
        "refuse",
        "render_error",
        "scope_names",
    },
    "guard.websocket": {
        "Handshake",
        "WebSocketClosedByGuard",
        "WebSocketSession",
        "read_handshake",
        "websocket_options",
    },
    "keys.algorithms": {
        "AlgorithmSpec",
        "ECCurve",
        "EdDSAKey",
        "PSSKey",
        "SECP256K1Key",
        "make_key",
    },
    "keys.jwk": {
        "KeyNotUsed",
        "KeyRejected",
        "KeySet",
        "VerificationKey",
        "build_key",
        "thumbprint",
    },
    "sources.base": {"CheckedSource", "check_key_source"},
    "sources.file": {"JWKSFile"},
    "sources.jwks": {"JWKSClient"},
    "sources.static": {"StaticKeys"},
    "wsgi": {"guard_environ", "status_line"},
}

PUBLIC_MODULES = sorted(
    name.removeprefix("jwt_guard.")
    for _, name, _ in pkgutil.walk_packages(jwt_guard.__path__, "jwt_guard.")
    if not any(part.startswith("_") for part in name.split("."))
)


def _is_class_or_function(obj: Any) -> bool:
    # type(obj), not isinstance: lazy objects (django.conf.settings) must not be touched.
    return issubclass(type(obj), type) or type(obj) is types.FunctionType


def _defined_public_names(module: types.ModuleType) -> set[str]:
    """Public classes and functions defined in ``module`` itself (not imported into it)."""
    return {
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and _is_class_or_function(obj)
        and getattr(obj, "__module__", None) == module.__name__
    }


def test_all_is_sorted_and_unique() -> None:
    assert jwt_guard.__all__ == sorted(set(jwt_guard.__all__))


def test_every_exported_name_exists_and_is_jwt_guards_own() -> None:
    for name in jwt_guard.__all__:
        obj = getattr(jwt_guard, name)
        if _is_class_or_function(obj):
            assert obj.__module__.startswith("jwt_guard."), name


def test_every_public_top_level_attribute_is_exported() -> None:
    # Like httpx: whatever the package namespace offers without an underscore is in __all__
    # (submodules, attached by import, excepted).
    public = {
        name
        for name, obj in vars(jwt_guard).items()
        if not name.startswith("_") and not isinstance(obj, types.ModuleType)
    }
    # The adapters' names are loaded on first use (PEP 562) and appear once used.
    lazy = set(jwt_guard._LAZY)
    assert set(jwt_guard.__all__) - lazy <= public - {"annotations"}
    assert public - {"annotations"} <= set(jwt_guard.__all__)


def test_the_core_exports_the_classes_users_need() -> None:
    for name in (
        "TokenVerifier",
        "Issuer",
        "Claims",
        "ErrorResponse",
        "GuardObserver",
        "JWKSOptions",
        "JWTGuardError",
        "KeySource",
        "KeysUnavailable",
        "ConfigurationError",
    ):
        assert name in jwt_guard.__all__


@pytest.mark.parametrize(
    "module_name", [m for m in PUBLIC_MODULES if m.split(".")[0] not in OWN_NAMESPACE]
)
def test_public_names_of_core_modules_are_exported_or_deliberately_not(module_name: str) -> None:
    module = importlib.import_module(f"jwt_guard.{module_name}")
    missing = _defined_public_names(module) - set(jwt_guard.__all__)
    missing -= NOT_REEXPORTED.get(module_name, set())
    assert not missing, (
        f"jwt_guard.{module_name} defines public {sorted(missing)}: export them from "
        "jwt_guard/__init__.py (keeping __all__ sorted), rename them with a leading underscore, "
        "or list them in NOT_REEXPORTED in tests/test_exports.py"
    )


@pytest.mark.parametrize(
    "module_name", [m for m in PUBLIC_MODULES if m.split(".")[0] in OWN_NAMESPACE]
)
def test_namespaced_modules_declare_their_public_names(module_name: str) -> None:
    module = importlib.import_module(f"jwt_guard.{module_name}")
    declared = set(getattr(module, "__all__", ()))
    layer_package = hasattr(module, "__path__") and not _defined_public_names(module)
    assert declared or layer_package, f"jwt_guard.{module_name} needs an __all__"
    for name in declared:
        assert hasattr(module, name), f"jwt_guard.{module_name}.__all__ names missing {name!r}"
    undeclared = _defined_public_names(module) - declared
    assert not undeclared, f"jwt_guard.{module_name}: public {sorted(undeclared)} not in __all__"


def test_the_testing_namespace_is_sorted() -> None:
    import jwt_guard.testing

    assert jwt_guard.testing.__all__ == sorted(jwt_guard.testing.__all__)


@pytest.mark.parametrize("module_name", sorted(NOT_REEXPORTED))
def test_the_deliberately_not_reexported_names_exist(module_name: str) -> None:
    """The list above cannot go stale: every name in it is still defined where it says."""
    module = importlib.import_module(f"jwt_guard.{module_name}")
    assert NOT_REEXPORTED[module_name] <= _defined_public_names(module)
