"""Shared fixtures: temporary DuckDB stores. Running `lull` itself: see lullrun.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A path for a new DuckDB store (the file does not exist yet)."""
    return tmp_path / "lull.duckdb"


@pytest.fixture(scope="module")
def shared_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One store for a whole test module; give each test (or example) its own project."""
    return tmp_path_factory.mktemp("store") / "lull.duckdb"


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    """One local Spark (2 cores, 127.0.0.1) for the whole test run."""
    from lull.spark.session import spark_session

    session = spark_session("local[2]", app="lull-tests")
    yield session
    session.stop()
