"""Configuration: each setting has a name, a default, help, and an `LULL_` variable.

Read once, at the edge (the command line or the server's start), and passed down.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Option:
    name: str
    default: str
    help: str

    @property
    def env(self) -> str:
        return "LULL_" + self.name.upper()


OPTIONS = (
    Option("db", "./lull.duckdb", "the DuckDB file that holds the store"),
    Option("project", "default", "the project to work on (created on first use)"),
    Option("threads", "", "DuckDB worker threads (empty: one per core)"),
    Option("memory_limit", "1GB", "DuckDB's memory limit (it spills to disk beyond it)"),
)


def read(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Each option's value: its `LULL_` variable if set, else its default."""
    env = os.environ if environ is None else environ
    return {o.name: env.get(o.env, o.default) for o in OPTIONS}
