"""The package's own import graph: no module imports, even lazily, one that imports it back."""

from __future__ import annotations

import ast
from pathlib import Path

import jwt_guard

PACKAGE = Path(jwt_guard.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(source: str, package: str, modules: set[str]) -> set[str]:
    """The package modules ``source`` imports, at the top or inside a function."""
    targets: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                origin = ".".join(parts + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            for alias in node.names:  # `from . import x`: x itself when it is a module
                sub = f"{origin}.{alias.name}"
                targets.add(sub if sub in modules else origin)
        elif isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
    return targets & modules


def _import_graph() -> dict[str, set[str]]:
    sources = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in sources.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = _imports(path.read_text(encoding="utf-8"), package, set(sources)) - {name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = "open"
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                found.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return found


def test_the_graph_sees_every_kind_of_import() -> None:
    # The check below is only as good as the graph: a function-level import is an edge too.
    modules = {"jwt_guard", "jwt_guard.a", "jwt_guard.b", "jwt_guard.c", "jwt_guard.t.d"}
    source = (
        "from .a import x\n"
        "import jwt_guard.b\n"
        "def f():\n"
        "    from . import c\n"
        "    from .t.d import y\n"
        "    from .. import z\n"
    )
    found = _imports(source, "jwt_guard", modules)
    assert found == {"jwt_guard.a", "jwt_guard.b", "jwt_guard.c", "jwt_guard.t.d"}
    assert _imports("from .. import Claims", "jwt_guard.t", modules) == {"jwt_guard"}
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b", "a"]]


def test_no_import_cycles() -> None:
    cycles = _cycles(_import_graph())
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)
