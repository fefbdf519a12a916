"""Shared fixtures: temporary DuckDB stores. Running `lull` itself: see lullrun.py."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A path for a new DuckDB store (the file does not exist yet)."""
    return tmp_path / "lull.duckdb"


@pytest.fixture(scope="module")
def shared_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One store for a whole test module; give each test (or example) its own project."""
    return tmp_path_factory.mktemp("store") / "lull.duckdb"
