"""README.md stays true: every python block runs against a local issuer, the tables match the code.

Each python block is preceded by a marker, ``<!-- test: KIND [NAME] -->``, saying how it is
exercised. The placeholder issuer ``"https://idp.example.com/"`` (audience ``"my-api"``) and the
providers' URLs in the recipes are replaced by the local issuer before the block runs.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from jwt_guard import Issuer, JWTGuard, JWTGuardError, JWTGuardWSGI, TokenVerifier, errors
from jwt_guard.core._env import ENV_VARIABLES
from jwt_guard.errors import InvalidClaim, WrongAudience
from jwt_guard.fastapi import JWTBearer
from jwt_guard.sources.jwks import JWKSClient
from jwt_guard.testing import LocalIssuer
from jwt_guard.testing.pytest_plugin import MintToken

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
PLACEHOLDER_ISSUER = '"https://idp.example.com/"'
PLACEHOLDER_AUDIENCE = "my-api"
_BLOCK = re.compile(
    r"(?:<!-- test: (?P<marker>[^>]*?) -->\n)?```(?P<lang>\w*)\n(?P<code>.*?)```", re.S
)


@dataclass(frozen=True)
class Block:
    """One fenced code block of the README."""

    lang: str
    kind: str
    name: str
    code: str
    line: int


def _blocks() -> list[Block]:
    found = []
    for match in _BLOCK.finditer(README):
        kind, _, name = (match["marker"] or "").partition(" ")
        line = README.count("\n", 0, match.start("code"))
        found.append(Block(match["lang"], kind, name, match["code"], line))
    return found


BLOCKS = _blocks()
PYTHON = [b for b in BLOCKS if b.lang == "python"]


def _section(heading: str) -> str:
    start = README.index(heading)
    end = README.find("\n## ", start + len(heading))
    return README[start : end if end != -1 else len(README)]


# -- the blocks themselves


def test_every_block_is_python_with_a_marker_or_bash() -> None:
    assert {b.lang for b in BLOCKS} == {"python", "bash", "text"}
    assert all(b.kind in KINDS for b in PYTHON), [(b.line, b.kind) for b in PYTHON]
    assert not [b.line for b in BLOCKS if b.lang == "bash" and b.kind]


def test_the_two_commands_and_ci_agree() -> None:
    commands = [b.code.strip() for b in BLOCKS if b.lang == "bash"][:2]
    assert commands == [
        "pip install -e . && jwt-guard demo",
        'pip install -e ".[test]" && python -m pytest -q -n auto --dist loadfile',
    ]
    assert _section("## Two commands").count("```bash") == 2
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.strip()]
    assert ci[-1] == "python -m pytest -q -n auto --dist loadfile"
    assert 'pip install --quiet -e ".[test]"' in ci[-2]


def _bearer(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


def _check_app(get: Callable[[str, str | None], tuple[int, Any]], mint_token: MintToken) -> None:
    """The quick-start contract: /health open, /me any valid token, /items needs read:items."""
    reader = mint_token(subject="alice", scopes=["read:items"])
    assert get("/health", None) == (200, {"status": "ok"})
    assert get("/me", reader) == (200, {"sub": "alice", "scopes": ["read:items"]})
    assert get("/items", reader) == (200, {"items": ["apple", "pear"]})
    assert get("/items", None)[0] == 401
    assert get("/items", mint_token(scopes=["profile"]))[0] == 403
    assert get("/me", mint_token(expires_in=-3600))[0] == 401
    assert get("/me", mint_token(audience="another-api"))[0] == 401


def _run(block: Block, jwt_issuer: LocalIssuer, **names: Any) -> dict[str, Any]:
    code = block.code.replace(PLACEHOLDER_ISSUER, repr(jwt_issuer.issuer))
    namespace: dict[str, Any] = {"__name__": f"readme_line_{block.line}", **names}
    exec(compile(code, f"README.md:{block.line}", "exec"), namespace)
    return namespace


@pytest.fixture
def issuer_for_readme(jwt_issuer: LocalIssuer) -> LocalIssuer:
    jwt_issuer.audience = PLACEHOLDER_AUDIENCE
    return jwt_issuer


def _run_app(block: Block, issuer: LocalIssuer, mint_token: MintToken, **_: Any) -> None:
    app = _run(block, issuer)["app"]
    if hasattr(app, "test_client"):  # Flask
        flask_client = app.test_client()

        def get(path: str, token: str | None) -> tuple[int, Any]:
            response = flask_client.get(path, headers=_bearer(token))
            return response.status_code, response.get_json()

    else:
        from starlette.testclient import TestClient

        client = TestClient(app)

        def get(path: str, token: str | None) -> tuple[int, Any]:
            response = client.get(path, headers=_bearer(token))
            return response.status_code, response.json()

    _check_app(get, mint_token)


def _ensure_django() -> None:
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            SECRET_KEY="tests-only",
            ALLOWED_HOSTS=["testserver", "localhost", "127.0.0.1"],
            INSTALLED_APPS=[],
            DATABASES={},
            MIDDLEWARE=[],
            USE_TZ=True,
            ROOT_URLCONF=None,
        )
        django.setup()


def _run_django(block: Block, issuer: LocalIssuer, mint_token: MintToken, **_: Any) -> None:
    _ensure_django()
    from django.test import Client, override_settings

    ns = _run(block, issuer)
    urls = types.ModuleType(f"readme_urls_{block.line}")
    urls.urlpatterns = ns["urlpatterns"]  # type: ignore[attr-defined]
    with override_settings(
        MIDDLEWARE=ns["MIDDLEWARE"], JWT_GUARD=ns["JWT_GUARD"], ROOT_URLCONF=urls
    ):
        client = Client()

        def get(path: str, token: str | None) -> tuple[int, Any]:
            extra = {} if token is None else {"HTTP_AUTHORIZATION": f"Bearer {token}"}
            response = client.get(path, **extra)
            return response.status_code, response.json()

        _check_app(get, mint_token)


def _run_verifier(block: Block, issuer: LocalIssuer, mint_token: MintToken, **_: Any) -> None:
    verifier = _run(block, issuer)["verifier"]
    assert verifier.verify(mint_token(subject="alice", scopes=["a"])).scopes == {"a"}
    with pytest.raises(WrongAudience):
        verifier.verify(mint_token(audience="another-api"))


def _run_health(block: Block, issuer: LocalIssuer, mint_token: MintToken, **_: Any) -> None:
    from starlette.testclient import TestClient

    app = _run(block, issuer)["app"]
    with TestClient(app) as client:  # lifespan start-up: prefetch
        report = client.get("/ready")
        assert report.status_code == 200
        assert report.json() == {"ok": True, "issuers": {issuer.issuer: {"ready": True}}}
        assert client.get("/ready", headers=_bearer("not-a-token")).status_code == 200
        assert client.get("/elsewhere").status_code == 401


def _run_errors(block: Block, issuer: LocalIssuer, mint_token: MintToken, **_: Any) -> None:
    """The error_handler of the README shapes every adapter's refusals, layer by layer."""
    from _adapter_apps import FRAMEWORKS, driver

    handler = _run(block, issuer)["problem_json"]
    verifier = TokenVerifier(issuer=issuer.issuer, audience=issuer.audience)
    for framework in FRAMEWORKS:
        app = driver(framework, verifier, error_handler=handler)
        for path, token, status, code in (
            ("/me", None, 401, "missing_token"),
            ("/me", mint_token(expires_in=-3600), 401, "expired"),
            ("/admin", mint_token(), 403, "insufficient_scope"),
            ("/open/admin", None, 401, "missing_token"),
        ):
            reply = app.get(path, None if token is None else f"Bearer {token}")
            assert reply.status == status, (framework, path)
            content_type = {k.lower(): v for k, v in reply.headers.items()}["content-type"]
            assert content_type == "application/problem+json", (framework, path)
            assert reply.json() == {
                "title": reply.json()["title"],
                "status": status,
                "code": code,
            }, (framework, path)


def _run_env(
    block: Block, issuer: LocalIssuer, mint_token: MintToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JWT_GUARD_ISSUER", issuer.issuer)
    monkeypatch.setenv("JWT_GUARD_AUDIENCE", PLACEHOLDER_AUDIENCE)
    _run_verifier(block, issuer, mint_token)


def _run_pytest(block: Block, issuer: LocalIssuer, mint_token: MintToken, **kw: Any) -> None:
    pytester: pytest.Pytester = kw["pytester"]
    pytester.makepyfile(test_from_readme=block.code)
    flags = ("-p", "no:cacheprovider", "-p", "no:asyncio", "-p", "no:hypothesispytest")
    result = pytester.runpytest(*flags)
    result.assert_outcomes(passed=block.code.count("\ndef test_"))


@dataclass(frozen=True)
class Recipe:
    """How to run a provider recipe against the local issuer with a token shaped like theirs."""

    urls: dict[str, str]  # literal in the block -> "issuer" or "jwks_url"
    audience: str | None
    claims: dict[str, Any]
    scopes: set[str]
    refused: dict[str, Any] = field(default_factory=dict)  # claims that make it fail
    also_issuer: str | None = None  # another iss the recipe trusts, keys from jwks_url


RECIPES = {
    "auth0": Recipe(
        {'"https://YOUR_TENANT.us.auth0.com/"': "issuer"},
        "https://api.example.com",
        {"scope": "openid read:items", "permissions": ["write:items"]},
        {"openid", "read:items", "write:items"},
    ),
    "entra": Recipe(
        {'f"https://login.microsoftonline.com/{TENANT_ID}/v2.0"': "issuer"},
        "11111111-1111-1111-1111-111111111111",
        {"scp": "Items.Read Items.Write", "roles": ["Items.Admin"], "ver": "2.0"},
        {"Items.Read", "Items.Write", "Items.Admin"},
    ),
    "okta": Recipe(
        {'"https://YOUR_ORG.okta.com/oauth2/default"': "issuer"},
        "api://default",
        {"scp": ["openid", "items:read"], "cid": "0oa1"},
        {"openid", "items:read"},
    ),
    "keycloak": Recipe(
        {'"https://keycloak.example.com/realms/myrealm"': "issuer"},
        "my-api",
        {
            "scope": "profile email",
            "realm_access": {"roles": ["admin"]},
            "resource_access": {"my-api": {"roles": ["items:read"]}, "account": {"roles": ["x"]}},
        },
        {"profile", "email", "admin", "items:read"},
    ),
    "cognito": Recipe(
        {'"https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_EXAMPLE"': "issuer"},
        None,
        {
            "token_use": "access",
            "client_id": "YOUR_APP_CLIENT_ID",
            "scope": "items/read",
            "cognito:groups": ["admins"],
        },
        {"items/read", "admins"},
        refused={"client_id": "someone-elses-client"},
    ),
    "google": Recipe(
        {
            '"https://accounts.google.com"': "issuer",
            '"https://www.googleapis.com/oauth2/v3/certs"': "jwks_url",
        },
        "1234567890-abc.apps.googleusercontent.com",
        {"hd": "example.com", "email": "alice@example.com", "email_verified": True},
        set(),
        refused={"hd": "elsewhere.example"},
        also_issuer="accounts.google.com",
    ),
}


def _run_recipe(block: Block, issuer: LocalIssuer, mint_token: MintToken, **_: Any) -> None:
    recipe = RECIPES[block.name]
    code = block.code
    for literal, what in recipe.urls.items():
        assert literal in code, f"the {block.name} recipe no longer holds {literal}"
        code = code.replace(literal, repr(getattr(issuer, what)))
    verifier = _run(dataclasses.replace(block, code=code), issuer)["verifier"]
    claims = verifier.verify(mint_token(recipe.claims, audience=recipe.audience))
    assert claims.scopes == recipe.scopes
    if recipe.also_issuer:
        token = mint_token(recipe.claims, audience=recipe.audience, issuer=recipe.also_issuer)
        assert verifier.verify(token).issuer == recipe.also_issuer
    if recipe.refused:
        with pytest.raises(InvalidClaim):
            verifier.verify(
                mint_token({**recipe.claims, **recipe.refused}, audience=recipe.audience)
            )
    if recipe.audience is not None:
        with pytest.raises(WrongAudience):
            verifier.verify(mint_token(recipe.claims, audience="another-api"))


def _run_metrics(block: Block, issuer: LocalIssuer, mint_token: MintToken, **_: Any) -> None:
    namespace = _run(block, issuer)
    verifier, registry = namespace["verifier"], namespace["registry"]
    token = mint_token()
    verifier.verify(token)
    verifier.verify(token)
    with pytest.raises(WrongAudience):
        verifier.verify(mint_token(audience="another-api"))
    value = registry.get_sample_value
    assert value("jwt_verified_total", {"cached": "false"}) == 1
    assert value("jwt_verified_total", {"cached": "true"}) == 1
    assert value("jwt_rejected_total", {"code": "wrong_audience"}) == 1
    assert value("jwt_jwks_fetches_total", {"outcome": "ok"}) == 1


KINDS: dict[str, Callable[..., None]] = {
    "app": _run_app,
    "django": _run_django,
    "verifier": _run_verifier,
    "env": _run_env,
    "errors": _run_errors,
    "health": _run_health,
    "metrics": _run_metrics,
    "pytest": _run_pytest,
    "recipe": _run_recipe,
}


def test_every_recipe_is_in_the_readme() -> None:
    assert {b.name for b in PYTHON if b.kind == "recipe"} == set(RECIPES)


@pytest.mark.parametrize("block", PYTHON, ids=[f"line{b.line}-{b.kind}{b.name}" for b in PYTHON])
def test_python_block_runs(
    block: Block,
    issuer_for_readme: LocalIssuer,
    mint_token: MintToken,
    monkeypatch: pytest.MonkeyPatch,
    pytester: pytest.Pytester,
) -> None:
    kwargs: dict[str, Any] = {"pytester": pytester}
    if block.kind == "env":
        kwargs = {"monkeypatch": monkeypatch}
    KINDS[block.kind](block, issuer_for_readme, mint_token, **kwargs)


# -- the reference tables match the code


def _table(anchor: str) -> dict[str, list[str]]:
    """The first Markdown table after ``anchor``: first cell (backticks stripped) -> cells."""
    start = README.index(anchor)
    rows: dict[str, list[str]] = {}
    lines = iter(README[start:].splitlines())
    for line in lines:
        if line.startswith("| ---"):
            break
    for line in lines:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split(" | ")]
        rows[cells[0].strip("`")] = cells
    return rows


# Options whose default is None but which must be given one way or another.
REQUIRED_ANYWAY = {"issuer"}


def _documented_default(name: str, default: Any) -> str:
    if default in (inspect.Parameter.empty, dataclasses.MISSING) or (
        default is None and name in REQUIRED_ANYWAY
    ):
        return "required"
    if type(default).__name__ == "_Unset":
        return "required"
    if callable(default):
        return f"`{default.__module__}.{default.__qualname__}`"
    return "`" + repr(default).replace("'", '"') + "`"


def _parameters(func: Callable[..., Any]) -> Iterator[tuple[str, Any]]:
    for param in inspect.signature(func).parameters.values():
        if param.name != "self" and param.kind is not inspect.Parameter.VAR_KEYWORD:
            yield param.name, param.default


@pytest.mark.parametrize(
    ("anchor", "params"),
    [
        pytest.param("### `TokenVerifier(**options)`", TokenVerifier.__init__, id="TokenVerifier"),
        pytest.param("### `JWKSClient`", JWKSClient.__init__, id="JWKSClient"),
        pytest.param("### `JWTGuard(app", JWTGuard.__init__, id="JWTGuard"),
        pytest.param("### `JWTGuard(app", JWTGuardWSGI.__init__, id="JWTGuardWSGI"),
        pytest.param("FastAPI's `JWTBearer`", JWTBearer.__init__, id="JWTBearer"),
        pytest.param(
            "### `Issuer(",
            lambda: ((f.name, f.default) for f in dataclasses.fields(Issuer)),
            id="Issuer",
        ),
    ],
)
def test_option_tables_name_every_option_with_its_default(
    anchor: str, params: Callable[..., Any]
) -> None:
    found = list(params()) if params.__name__ == "<lambda>" else list(_parameters(params))
    table = _table(anchor)
    assert set(table) == {name for name, _ in found}
    for name, default in found:
        assert table[name][1].startswith(_documented_default(name, default)), (name, table[name][1])
        assert len(table[name][2]) > 10, name


def test_environment_table_lists_every_variable() -> None:
    table = _table("### Environment variables")
    assert set(table) == {f"JWT_GUARD_{suffix}" for suffix in ENV_VARIABLES}
    for suffix, (_where, option, _parse, help_text) in ENV_VARIABLES.items():
        assert table[f"JWT_GUARD_{suffix}"][1].startswith(f"`{option}`")
        assert table[f"JWT_GUARD_{suffix}"][2] == help_text, suffix  # one text, not two


def test_the_audience_variable_documents_none() -> None:
    from jwt_guard.core._env import verifier_options_from_env

    row = _table("### Environment variables")["JWT_GUARD_AUDIENCE"]
    assert "'none'" in row[2]
    options = verifier_options_from_env(environ={"JWT_GUARD_AUDIENCE": "none"})
    assert options == {"audience": None}


def _loggers_in(path: Path) -> Iterator[str]:
    """The logger names ``path`` passes to ``logging.getLogger`` (``__name__`` resolved)."""
    module = ".".join(path.relative_to(ROOT / "src").with_suffix("").parts)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name != "getLogger" or not node.args:  # getLogger(): the root, configured by the CLI
            continue
        arg = node.args[0]
        if isinstance(arg, ast.Name) and arg.id == "__name__":
            yield module.removesuffix(".__init__")
        elif isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            yield arg.value
        else:
            yield f"<a logger name computed in {path.name}:{node.lineno}>"


def test_the_logger_table_names_every_logger_in_the_code() -> None:
    in_code = {
        name
        for path in (ROOT / "src" / "jwt_guard").rglob("*.py")
        for name in _loggers_in(path)
        if name != "jwt_guard"  # the parent, which the CLI configures
    }
    assert {"jwt_guard.keys", "jwt_guard.http", "jwt_guard.health"} <= in_code
    table = _table("Standard `logging`, under `jwt_guard`")
    assert set(table) == in_code
    assert all(len(cells[1]) > 10 for cells in table.values())


def test_the_error_prose_says_what_the_table_and_the_classes_say() -> None:
    """The sentence on subclasses names the table's rows and errors.py's values, not its own."""
    table = _table("## Errors")
    rows = list(table)
    match = re.search(
        r"Every subclass of `(\w+)` \(`(\w+)` to `(\w+)` in the table\) answers with\s+its "
        r"parent's status and challenge \((\d+), `error=\"(\w+)\"`\), and with the `code` and"
        r"\s+`error_description` of its own row; `except \1` catches them all \(`except (\w+)`"
        r"\s+the claim checks, `(\w+)` to `(\w+)`\)",
        _section("## Errors"),
    )
    assert match is not None, "the Errors prose no longer says how subclasses answer"
    parent, first, last, status, error, claims, claims_first, claims_last = match.groups()

    def span(start: str, stop: str) -> list[str]:
        return rows[rows.index(start) : rows.index(stop) + 1]

    def subclasses(name: str) -> list[str]:
        base = getattr(errors, name)
        return [n for n in rows if n != name and issubclass(getattr(errors, n), base)]

    base = getattr(errors, parent)
    assert span(first, last) == subclasses(parent)
    assert span(claims_first, claims_last) == subclasses(claims)
    assert (int(status), error) == (base.status, base.error)
    for name in subclasses(parent):
        cls = getattr(errors, name)
        assert (cls.status, cls.error) == (base.status, base.error), name


def test_error_table_matches_the_error_classes() -> None:
    table = _table("## Errors")
    classes = {
        name: getattr(errors, name)
        for name in errors.__all__
        if name not in ("JWTGuardError", "ConfigurationError")
    }
    assert set(table) == set(classes)
    for name, cls in classes.items():
        assert issubclass(cls, JWTGuardError)
        _, code, status, challenge, description = table[name]
        assert (code, status, description) == (f"`{cls.code}`", str(cls.status), cls.description)
        if cls.error is not None and cls.status != 503:
            assert f'`error="{cls.error}"`' in challenge
