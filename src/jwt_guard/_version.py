"""The version of jwt_guard, in one place: pyproject.toml reads it (statically, without importing
the package) and ``jwt_guard.__version__`` re-exports it."""

from __future__ import annotations

__version__ = "0.1.0"
