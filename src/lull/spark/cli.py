"""`lull spark ...`: the Spark jobs from the command line."""

from __future__ import annotations

import click


def excluded_names(text: str | None) -> tuple[str, ...]:
    """`--excluded "A,B"` as names (the default list when not given)."""
    from lull.model import DEFAULT_EXCLUDED, parse_excluded

    return DEFAULT_EXCLUDED if text is None else parse_excluded(text)


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

    from lull.model import Settings, check_timezone, parse_timeout
    from lull.spark.batch import resessionize
    from lull.spark.session import spark_session

    names = excluded_names(excluded)
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


@spark.command("stream")
@click.option("--log", "log", default=None, help="an ingest log directory (lull serve's segments)")
@click.option("--project", default=None, help="the project taken from --log (LULL_PROJECT)")
@click.option("--landing", default=None, help="a directory of canonical NDJSON files to read")
@click.option("--out", "out", required=True, help="where the Parquet outputs go")
@click.option("--checkpoint", required=True, help="Spark's checkpoint (offsets and state)")
@click.option("--timeout", default="20m", show_default=True, help="90s, 20m, 1h (1m to 24h)")
@click.option("--excluded", default=None, help='events that never take part: "A,B"')
@click.option("--timezone", default="UTC", show_default=True, help="for the board's days")
@click.option("--kafka-bootstrap", default=None, help="HOST:PORT: read Kafka, not a directory")
@click.option("--kafka-topic", default=None, help="the Kafka topic (with --kafka-bootstrap)")
@click.option("--trigger", default="5s", show_default=True, help="how often a micro-batch runs")
@click.option("--until-idle", is_flag=True, help="process what is there, then stop")
@click.option(
    "--partitions", type=click.IntRange(min=1), default=None, help="state partitions (first run)"
)
@click.option(
    "--buckets", type=click.IntRange(min=1), default=None, help="profile buckets (first run)"
)
@click.option(
    "--max-files", type=click.IntRange(min=1), default=None, help="files per micro-batch at most"
)
@click.option(
    "--duplicates-window", default="7d", show_default=True, help="R6: message ids kept this long"
)
@click.option(
    "--late-horizon", default="7d", show_default=True, help="concluded sessions kept this long"
)
@click.option("--master", default=None, help="Spark master (default $LULL_SPARK_MASTER, local[*])")
@click.pass_context
def stream_cmd(
    ctx: click.Context,
    log: str | None,
    project: str | None,
    landing: str | None,
    out: str,
    checkpoint: str,
    timeout: str,
    excluded: str | None,
    timezone: str,
    kafka_bootstrap: str | None,
    kafka_topic: str | None,
    trigger: str,
    until_idle: bool,
    partitions: int | None,
    buckets: int | None,
    max_files: int | None,
    duplicates_window: str,
    late_horizon: str,
    master: str | None,
) -> None:
    """Sessionize a stream of events on Spark (Structured Streaming), as the server would."""
    from lull.errors import BadInput
    from lull.model import check_timezone, parse_duration, parse_timeout
    from lull.spark.stream import DEFAULT_BUCKETS, DEFAULT_WINDOW_MS, StreamConfig, run

    if sum(x is not None for x in (log, landing, kafka_bootstrap)) != 1:
        raise BadInput("give one of --log DIR, --landing DIR or --kafka-bootstrap HOST:PORT")
    if kafka_bootstrap is not None and not kafka_topic:
        raise BadInput("--kafka-bootstrap needs --kafka-topic")
    names = excluded_names(excluded)
    config = StreamConfig(
        out=out,
        checkpoint=checkpoint,
        landing=landing,
        log=log,
        project=project or (ctx.find_root().obj or {}).get("project") or "default",
        kafka_bootstrap=kafka_bootstrap,
        kafka_topic=kafka_topic,
        timeout_ms=parse_timeout(timeout),
        excluded=names,
        timezone=check_timezone(timezone),
        trigger_ms=parse_duration(trigger),
        until_idle=until_idle,
        partitions=partitions,
        buckets=buckets or DEFAULT_BUCKETS,
        max_files=max_files,
        window_ms=_window(duplicates_window, DEFAULT_WINDOW_MS),
        late_ms=_late_horizon(late_horizon, parse_timeout(timeout)),
    )
    run(config, master)


def _window(text: str, least: int) -> int:
    from lull.errors import BadInput
    from lull.model import parse_duration

    ms = parse_duration(text)
    if ms < least:
        raise BadInput(f"--duplicates-window {text!r}: R6 asks for 7 days at least")
    return ms


def _late_horizon(text: str, timeout: int) -> int:
    from lull.errors import BadInput
    from lull.model import parse_duration

    ms = parse_duration(text)
    if ms < timeout:
        raise BadInput(f"--late-horizon {text!r}: give at least the session timeout")
    return ms
