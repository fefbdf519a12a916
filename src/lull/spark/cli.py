"""`lull spark ...`: the Spark jobs from the command line."""

from __future__ import annotations

import click


@click.group()
def spark() -> None:
    """Run lull's session rules on Apache Spark (needs the `spark` extra)."""


@spark.command("resessionize")
@click.option("--events", "events", required=True, help="Parquet events (lull export events)")
@click.option("--out", "out", required=True, help="a new directory for the results")
@click.option("--timeout", default="20m", show_default=True, help="90s, 20m, 1h (1m to 24h)")
@click.option("--excluded", default=None, help='events that never take part: "A,B"')
@click.option("--timezone", default="UTC", show_default=True, help="for the board's days")
@click.option("--master", default=None, help="Spark master (default $LULL_SPARK_MASTER, local[*])")
def resessionize_cmd(
    events: str, out: str, timeout: str, excluded: str | None, timezone: str, master: str | None
) -> None:
    """Rebuild every session of a Parquet event history by R2, on Spark."""
    import json
    import time

    from lull.model import DEFAULT_EXCLUDED, Settings, check_timezone, parse_timeout
    from lull.spark.batch import resessionize
    from lull.spark.session import spark_session

    names: tuple[str, ...] = DEFAULT_EXCLUDED
    if excluded is not None:
        names = tuple(dict.fromkeys(x.strip() for x in excluded.split(",") if x.strip()))
    settings = Settings(True, parse_timeout(timeout), names, check_timezone(timezone))
    started = time.perf_counter()

    def step(what: str) -> None:
        click.echo(f"[{time.perf_counter() - started:7.1f} s] {what}", err=True)

    step(f"starting Spark ({master or 'default master'})")
    session = spark_session(master, app="lull-resessionize")
    done = resessionize(
        session, events, out, settings, now=time.time_ns() // 1_000_000, progress=step
    )
    click.echo(json.dumps(done.as_json(), indent=2))
