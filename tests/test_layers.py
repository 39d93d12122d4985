"""The package's layers: imports point only downward, there are no cycles, and third-party
imports stay where they belong (a web framework only in its adapter, python-jose only in
``keys.algorithms``, the HTTP client only in the key sources).

The map below is the one in ``jwt_guard/__init__.py``'s docstring and in CONTRIBUTING.md; a new
module must be placed in it (``test_every_module_has_a_layer``), which is the moment to decide
where it belongs.
"""

from __future__ import annotations

import ast
import functools
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "src" / "jwt_guard"

# Bottom to top. A module may import its own layer and the layers before it, never a later one.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foundation", ("errors", "events", "_codec", "_logsafe", "_options", "_version")),
    ("keys", ("keys",)),
    ("stores", ("stores",)),
    ("sources", ("sources",)),
    ("core", ("core",)),
    ("binding", ("binding",)),
    ("guard", ("guard",)),
    ("adapters", ("asgi", "wsgi", "flask", "django", "drf", "fastapi", "litestar", "decorators")),
    ("testing", ("testing",)),
    ("cli", ("cli", "__main__")),
)
RANK = {name: rank for rank, (_, names) in enumerate(LAYERS) for name in names}
API_RANK = len(LAYERS)  # the package namespace itself: above everything, imported by nothing

FRAMEWORKS = frozenset(
    {
        "starlette",
        "anyio",
        "werkzeug",
        "flask",
        "django",
        "asgiref",
        "rest_framework",
        "drf_spectacular",
        "fastapi",
        "litestar",
        "uvicorn",
    }
)
# Third-party packages only some layers may import (the rest of the package may not).
RESTRICTED: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(FRAMEWORKS, ("adapters", "cli")),
    "jose": ("keys.algorithms",),
    "requests": ("sources", "cli"),
    "redis": ("stores.redis",),
    "pytest": ("testing.pytest_plugin",),
}


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name without the "jwt_guard." prefix ("" = the package)
    target: str  # a module of the package (same form), or a third-party top-level name
    own: bool  # target is a module of jwt_guard
    line: int
    type_checking: bool  # inside ``if TYPE_CHECKING:``


def _module_names() -> dict[str, Path]:
    modules = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE_DIR).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


MODULES = _module_names()


def _layer(module: str) -> int:
    if module == "":
        return API_RANK
    first = module.split(".")[0]
    return RANK[first]


def _layer_name(module: str) -> str:
    return "api" if module == "" else LAYERS[_layer(module)][0]


def _in(module: str, places: tuple[str, ...]) -> bool:
    """``module`` is one of ``places``: a layer name, a module or a package prefix."""
    for place in places:
        if place in dict(LAYERS) and _layer_name(module) == place:
            return True
        if module == place or module.startswith(place + "."):
            return True
    return False


def _imports(module: str, path: Path) -> Iterator[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            guarded.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield _classify(module, alias.name, node, guarded)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ["jwt_guard", *filter(None, package.split("."))]
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            for alias in node.names:
                # ``from pkg import submodule`` depends on the submodule, not on pkg's namespace.
                candidate = f"{target}.{alias.name}"
                own = (
                    candidate.removeprefix("jwt_guard.")
                    if candidate.startswith("jwt_guard.")
                    else ""
                )
                yield _classify(module, candidate if own in MODULES else target, node, guarded)


def _classify(module: str, dotted: str, node: ast.stmt, guarded: set[int]) -> Import:
    checking = id(node) in guarded
    if dotted == "jwt_guard" or dotted.startswith("jwt_guard."):
        target = dotted.removeprefix("jwt_guard").removeprefix(".")
        while target and target not in MODULES:  # a name inside a module: the module
            target = target.rpartition(".")[0]
        return Import(module, target, True, node.lineno, checking)
    return Import(module, dotted.split(".")[0], False, node.lineno, checking)


@functools.cache
def all_imports() -> list[Import]:
    """Every import statement of the package (parsed on first use, not while collecting: each
    xdist worker collects this module, one of them runs it)."""
    return [imp for module, path in MODULES.items() for imp in _imports(module, path)]


def test_every_module_has_a_layer() -> None:
    unplaced = [m for m in MODULES if m and m.split(".")[0] not in RANK]
    assert not unplaced, f"place these modules in LAYERS (and in the package docstring): {unplaced}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m), ids=str)
def test_imports_point_only_downward(module: str) -> None:
    upward = [
        f"line {imp.line}: {imp.target or 'jwt_guard'} ({_layer_name(imp.target)})"
        for imp in all_imports()
        if imp.importer == module and imp.own and _layer(imp.target) > _layer(module)
    ]
    assert not upward, f"{module} ({_layer_name(module)}) imports upward: {upward}"


def test_no_import_cycles() -> None:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for imp in all_imports():
        if imp.own and imp.target != imp.importer:
            graph[imp.importer].add(imp.target)
    # A package's __init__ importing its own submodules is how a namespace is built: not a cycle
    # as long as the submodules do not import the package namespace back (checked by the edges).
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, [" -> ".join(c or "jwt_guard" for c in cycle) for cycle in cycles]


def test_third_party_imports_stay_in_their_layer() -> None:
    misplaced = [
        f"{imp.importer}:{imp.line} imports {imp.target}"
        for imp in all_imports()
        if not imp.own
        and imp.target in RESTRICTED
        and not imp.type_checking
        and not _in(imp.importer, RESTRICTED[imp.target])
    ]
    assert not misplaced, misplaced


def test_the_package_namespace_imports_no_adapter_at_import_time() -> None:
    eager = sorted(
        {
            f"line {imp.line}: {imp.target}"
            for imp in all_imports()
            if imp.importer == ""
            and imp.own
            and not imp.type_checking
            and _layer(imp.target) > RANK["guard"]
        }
    )
    assert not eager, f"jwt_guard/__init__.py must load these lazily (PEP 562): {eager}"


@pytest.fixture(scope="module")
def fresh_import() -> dict[str, Any]:
    """One fresh interpreter: ``import jwt_guard`` and its core names, then ``jwt_guard.wsgi``,
    then the adapter names from the package (``jwt_guard.asgi`` loads on that first use); which
    web frameworks are loaded after each step, and what the names turned out to be."""
    code = (
        "import json, sys, jwt_guard\n"
        f"frameworks = set({sorted(FRAMEWORKS)!r})\n"
        "def loaded(): return sorted(frameworks & {m.split('.')[0] for m in sys.modules})\n"
        "report = {'asgi_at_import': 'jwt_guard.asgi' in sys.modules}\n"
        "jwt_guard.TokenVerifier, jwt_guard.Claims, jwt_guard.ErrorResponse\n"
        "report['core'] = loaded()\n"
        "import jwt_guard.wsgi\n"
        "report['wsgi'] = loaded()\n"
        "from jwt_guard import JWTGuard, JWTGuardWSGI, require_scopes\n"
        "report['asgi'] = loaded()\n"
        "report['JWTGuard'] = JWTGuard.__module__\n"
        "names = {'JWTGuard', 'JWTGuardWSGI', 'require_scopes'}\n"
        "report['dir'] = sorted(names & set(dir(jwt_guard)))\n"
        "print(json.dumps(report))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def test_import_jwt_guard_loads_no_web_framework(fresh_import: dict[str, Any]) -> None:
    """``import jwt_guard`` (and its core names) loads no web framework; then each adapter loads
    no other framework: the WSGI one neither Flask, Django nor FastAPI, the ASGI (Starlette) one
    not FastAPI."""
    core, wsgi, asgi = fresh_import["core"], fresh_import["wsgi"], fresh_import["asgi"]
    assert core == [], core
    assert not {"flask", "django", "fastapi"} & set(wsgi), wsgi
    assert not {"flask", "django", "fastapi"} & set(asgi), asgi


def test_adapter_names_load_on_first_use(fresh_import: dict[str, Any]) -> None:
    assert fresh_import["asgi_at_import"] is False
    assert fresh_import["JWTGuard"] == "jwt_guard.asgi"
    assert fresh_import["dir"] == ["JWTGuard", "JWTGuardWSGI", "require_scopes"]
