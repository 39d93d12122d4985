"""Every test SECURITY.md, README.md and CONTRIBUTING.md name exists, so they cannot go stale.

SECURITY.md maps each defence to the test that shows it. What counts as a reference:

* a node id in backticks, ``tests/test_jws.py::test_alg_none_is_never_accepted``; a trailing
  parameter id (``[...]``) is not checked, the file and the test are;
* ``::name`` alone: a test of the last file named before it in the same table row or paragraph,
  else of the first test file named in the opening text of its section;
* ``[case]`` alone: a parameter id of the test the section's opening text names with ``[...]`` or
  ``[id]`` (the attack corpus, the hostile DPoP proofs), ``*`` and ``…`` standing for any rest;
* a path, ``tests/_hostile.py``: the file exists.
"""

from __future__ import annotations

import ast
import fnmatch
import functools
import importlib
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = ["SECURITY.md", "README.md", "CONTRIBUTING.md"]

_CODE = re.compile(r"`([^`\n]+)`")
_PATH = re.compile(r"tests/[\w/]+\.py")
_NODE = re.compile(r"(?P<path>tests/[\w/]+\.py)?(?P<names>(?:::\w+)+)(?P<param>\[[^\]]*\])?")
_CASE = re.compile(r"^\[(?P<case>[A-Za-z0-9*…][\w.*…-]*)\]$")


@dataclass(frozen=True)
class Reference:
    document: str
    kind: str  # "file", "node" or "case"
    target: str  # a path; "path::name"; or the case id
    of: str = ""  # for a case: the node id whose parameter ids it names

    def __str__(self) -> str:
        return f"{self.document}: {self.kind} {self.target}" + (f" of {self.of}" if self.of else "")


def _sections(text: str) -> list[list[str]]:
    sections: list[list[str]] = [[]]
    for line in text.splitlines():
        if line.startswith("#"):
            sections.append([])
        sections[-1].append(line)
    return sections


def _blocks(lines: list[str]) -> list[tuple[bool, str]]:
    """``(is a table row, text)``: table rows one by one, other text by paragraph."""
    blocks: list[tuple[bool, str]] = []
    paragraph: list[str] = []
    for line in [*lines, ""]:
        row = line.lstrip().startswith("|")
        if (row or not line.strip()) and paragraph:
            blocks.append((False, "\n".join(paragraph)))
            paragraph = []
        if row:
            blocks.append((True, line))
        elif line.strip():
            paragraph.append(line)
    return blocks


def references(document: str) -> list[Reference]:
    found: list[Reference] = []
    cases_of = ""  # the parametrized test whose ids a bare [case] names; kept across sections
    for section in _sections((ROOT / document).read_text(encoding="utf-8")):
        default: str | None = None  # the first test file of the section's opening text
        named_cases = False  # the section's opening text named the test of its [case]s
        for is_row, block in _blocks(section):
            current = default
            for code in _CODE.findall(block):
                for path in _PATH.findall(code):
                    current = path
                    found.append(Reference(document, "file", path))
                    if not is_row and default is None and path.startswith("tests/test_"):
                        default = path
                for node in _NODE.finditer(code):
                    target = f"{node['path'] or current}{node['names']}"
                    found.append(Reference(document, "node", target))
                    if not is_row and not named_cases and node["param"] in ("[...]", "[id]"):
                        cases_of, named_cases = target, True
                case = _CASE.match(code)
                if case and case["case"] != "id" and not _NODE.search(code):
                    found.append(Reference(document, "case", case["case"], cases_of))
    return found


@functools.cache
def _tests_in(path: str) -> frozenset[str]:
    """``name`` and ``Class::name`` of every test function defined in ``path``."""
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names.update(
                f"{node.name}::{item.name}"
                for item in node.body
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
            )
    return frozenset(n for n in names if n.rsplit("::", 1)[-1].startswith("test"))


@functools.cache
def _parameter_ids(node: str) -> frozenset[str]:
    """The ids of every ``parametrize`` mark of the test ``path::name``."""
    path, _, name = node.partition("::")
    test = getattr(importlib.import_module(Path(path).stem), name)
    ids: set[str] = set()
    for mark in getattr(test, "pytestmark", []):
        if mark.name == "parametrize":
            ids.update(str(p.id) for p in mark.args[1] if getattr(p, "id", None) is not None)
    return frozenset(ids)


REFERENCES = sorted({ref for doc in DOCUMENTS for ref in references(doc)}, key=str)


def test_security_md_names_tests_files_and_cases() -> None:
    """Not vacuous: the parser finds each kind of reference SECURITY.md holds."""
    found = [ref for ref in REFERENCES if ref.document == "SECURITY.md"]
    assert {ref.kind for ref in found} == {"file", "node", "case"}
    assert {ref.of for ref in found if ref.kind == "case"} == {
        "tests/test_attacks.py::test_core",
        "tests/test_dpop.py::test_hostile_proofs_are_refused",
        "tests/test_tenants.py::test_core",
    }
    assert len([ref for ref in found if ref.kind == "node"]) >= 80


def _missing(ref: Reference) -> str | None:
    """Why ``ref`` names nothing, or ``None``."""
    if ref.kind == "file":
        return None if (ROOT / ref.target).is_file() else "no such file"
    if ref.kind == "node":
        path, _, name = ref.target.partition("::")
        if not path.startswith("tests/"):
            return "::name follows no test file"
        if not (ROOT / path).is_file():
            return "no such file"
        return None if name in _tests_in(path) else "no such test"
    if not ref.of:
        return "no [id] test named before it"
    pattern = ref.target.replace("…", "*")
    return None if fnmatch.filter(_parameter_ids(ref.of), pattern) else "no such parameter id"


@pytest.mark.parametrize("kind", ["file", "node", "case"])
def test_every_reference_exists(kind: str) -> None:
    missing = [f"{ref}: {why}" for ref in REFERENCES if ref.kind == kind if (why := _missing(ref))]
    assert missing == []
