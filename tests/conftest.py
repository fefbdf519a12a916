"""Shared fixtures: temporary DuckDB stores. Running `lull` itself: see lullrun.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser
    from pyspark.sql import SparkSession

    from browser import Watched


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


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for a test module (tests/browser.py); a module may define its
    own."""
    from browser import chromium

    with chromium() as b:
        yield b


@pytest.fixture
def tab(browser: Browser) -> Iterator[Watched]:
    """A fresh browser context (no cookies) at 1280x900; fails the test on any JavaScript
    error."""
    from browser import watched

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    w = watched(context.new_page())
    yield w
    context.close()
    assert w.errors == []
