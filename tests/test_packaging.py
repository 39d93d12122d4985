"""The package as it would be published: ``python -m build`` makes an sdist and a wheel without a
single warning, ``twine check --strict`` passes on both, and each holds what it must.

The build runs offline (``--no-isolation``: setuptools, build and twine come from the ``test``
extra) on a copy of the project in a temporary directory, so the working tree gets no
``build/`` or ``*.egg-info``. The wheel is built from the sdist, as ``python -m build`` does by
default, which also proves the sdist is complete enough to build from.
"""

from __future__ import annotations

import email.parser
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import jwt_guard

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "jwt_guard"

# Never part of the project's files: caches, virtualenvs, build output, VCS data.
IGNORED = (
    ".git",
    ".venv",
    "venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    "*.py[cod]",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
    "PKG-INFO",
    "results*.json",
)
# Directories the sdist carries whole, so the suite can run from an unpacked sdist.
SDIST_TREES = ("tests", "examples", "benchmarks", "scripts")
SDIST_FILES = (
    "pyproject.toml",
    "MANIFEST.in",
    "README.md",
    "SECURITY.md",
    "CHANGELOG.md",
    "CONTRIBUTING.md",
    "LICENSE",
    ".ci/run",
)
LINTERS = {"mypy", "ruff", "types-requests"}


@dataclass(frozen=True)
class Built:
    output: str
    sdist: Path
    wheel: Path


def _project_files(tree: str) -> set[str]:
    """Files under ``tree`` (relative to the project root), without caches and build output."""
    spec = shutil.ignore_patterns(*IGNORED)
    found: set[str] = set()
    for directory, subdirs, files in os.walk(ROOT / tree):
        ignored = spec(directory, [*subdirs, *files])
        subdirs[:] = [d for d in subdirs if d not in ignored]
        found.update(
            (Path(directory) / f).relative_to(ROOT).as_posix() for f in files if f not in ignored
        )
    return found


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    # With byte-compiling off, setuptools warns "byte-compiling is disabled" on every build.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,  # a hang must fail the test, not the whole run; a build takes seconds
        check=False,
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    work = tmp_path_factory.mktemp("packaging")
    source = work / "project"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*IGNORED))
    out = work / "dist"
    # What `python -m build --no-isolation` checks first, checked here: pyproject's
    # build-system.requires are installed. Its own check (--skip-dependency-check skips it) also
    # asks the backend, in two more processes that run egg_info again, for more requirements,
    # which setuptools answers with none; the artifacts and every warning come from the hooks
    # that build them.
    from build import ProjectBuilder, check_dependency

    requires = ProjectBuilder(source).build_system_requires
    assert requires
    assert {r: list(check_dependency(r)) for r in requires} == {r: [] for r in requires}
    result = _run(
        "-m", "build", "--no-isolation", "--skip-dependency-check", "--outdir", str(out),
        str(source), cwd=work,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return Built(result.stdout, sdist, wheel)


def _wheel_names(built: Built) -> set[str]:
    with zipfile.ZipFile(built.wheel) as wheel:
        return set(wheel.namelist())


def _sdist_names(built: Built) -> set[str]:
    with tarfile.open(built.sdist) as sdist:
        names = [m.name for m in sdist.getmembers() if m.isfile()]
    prefix = f"jwt_guard-{jwt_guard.__version__}/"
    assert all(name.startswith(prefix) for name in names)
    return {name[len(prefix) :] for name in names}


def _wheel_metadata(built: Built) -> Message:
    with zipfile.ZipFile(built.wheel) as wheel:
        text = wheel.read(f"jwt_guard-{jwt_guard.__version__}.dist-info/METADATA").decode()
    return email.parser.Parser().parsestr(text)


def test_build_makes_both_artifacts_without_a_warning(built: Built) -> None:
    assert "Successfully built" in built.output
    assert built.sdist.name == f"jwt_guard-{jwt_guard.__version__}.tar.gz"
    assert built.wheel.name == f"jwt_guard-{jwt_guard.__version__}-py3-none-any.whl"
    warnings = [line for line in built.output.splitlines() if "warn" in line.lower()]
    assert not warnings, "\n".join(warnings)


def test_twine_check_strict_passes_on_both(built: Built) -> None:
    result = _run("-m", "twine", "check", "--strict", str(built.sdist), str(built.wheel), cwd=ROOT)
    assert result.returncode == 0, result.stdout
    assert result.stdout.count("PASSED") == 2, result.stdout
    assert "warn" not in result.stdout.lower(), result.stdout


def test_wheel_holds_the_package_license_and_marker_and_nothing_else(built: Built) -> None:
    names = _wheel_names(built)
    modules = {
        path.relative_to(PACKAGE.parent).as_posix()
        for path in PACKAGE.rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert modules <= names, sorted(modules - names)
    assert "jwt_guard/py.typed" in names
    dist_info = f"jwt_guard-{jwt_guard.__version__}.dist-info"
    assert f"{dist_info}/licenses/LICENSE" in names
    top_level = {name.split("/")[0] for name in names}
    assert top_level == {"jwt_guard", dist_info}  # no tests, benchmarks or examples
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]


def test_wheel_metadata_license_version_and_entry_points(built: Built) -> None:
    meta = _wheel_metadata(built)
    assert meta["Name"] == "jwt_guard"
    assert meta["Version"] == jwt_guard.__version__
    assert tuple(int(part) for part in meta["Metadata-Version"].split(".")) >= (2, 4)
    assert meta["License-Expression"] == "MIT"
    assert meta.get_all("License-File") == ["LICENSE"]
    assert meta["License"] is None  # the deprecated free-text field is not written
    classifiers = meta.get_all("Classifier") or []
    assert "Typing :: Typed" in classifiers
    # An SPDX expression and a license classifier together are refused by current setuptools.
    assert not [c for c in classifiers if c.startswith("License ::")]
    assert meta["Requires-Python"] == ">=3.10"
    assert meta["Description-Content-Type"] == "text/markdown"
    with zipfile.ZipFile(built.wheel) as wheel:
        entry_points = wheel.read(
            f"jwt_guard-{jwt_guard.__version__}.dist-info/entry_points.txt"
        ).decode()
    assert "jwt-guard = jwt_guard.cli:main" in entry_points
    assert "jwt_guard = jwt_guard.testing.pytest_plugin" in entry_points


def test_linters_are_in_the_dev_extra_not_in_test(built: Built) -> None:
    by_extra: dict[str, set[str]] = {}
    for line in _wheel_metadata(built).get_all("Requires-Dist") or []:
        requirement = Requirement(line)
        marker = requirement.marker
        extras = (
            [""]
            if marker is None
            else [
                extra
                for extra in ("test", "dev", "bench", "metrics")
                if marker.evaluate({"extra": extra})
            ]
        )
        for extra in extras:
            by_extra.setdefault(extra, set()).add(requirement.name)
    assert not LINTERS & by_extra["test"]
    assert not LINTERS & by_extra[""]
    assert by_extra["dev"] >= LINTERS | {"jwt_guard"}  # dev = test + bench + the linters
    assert by_extra["test"] >= {"pytest", "build", "twine", "setuptools"}


def test_sdist_holds_the_tests_their_data_and_the_docs(built: Built) -> None:
    names = _sdist_names(built)
    expected = set(SDIST_FILES).union(*(_project_files(tree) for tree in SDIST_TREES))
    expected |= {
        path.relative_to(ROOT).as_posix()
        for path in PACKAGE.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }
    assert expected <= names, sorted(expected - names)
    assert "tests/data/rfc_vectors.json" in names
    assert "tests/conftest.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert not [n for n in names if n.startswith((".git", ".venv", "build/", "dist/"))]


def test_changelog_has_unreleased_and_the_current_version() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## \[([^\]]+)\]", changelog, flags=re.MULTILINE)
    assert headings[0] == "Unreleased"
    assert headings[1] == jwt_guard.__version__
