"""`lull spark ...`: the Spark jobs from the command line."""

from __future__ import annotations

import click


@click.group()
def spark() -> None:
    """Run lull's session rules on Apache Spark (needs the `spark` extra)."""
