"""Every setting is documented, and read from its LULL_ variable."""

from __future__ import annotations

from pathlib import Path

from lull import config

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_setting_is_in_the_readme() -> None:
    text = README.read_text()
    missing = [o.env for o in config.OPTIONS if f"`{o.env}`" not in text]
    assert missing == []


def test_environment_overrides_defaults() -> None:
    values = config.read({"LULL_DB": "/tmp/x.duckdb"})
    assert values["db"] == "/tmp/x.duckdb"
    assert values["project"] == "default"
