"""The `lull` command: parses, calls, prints; nothing else."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click
import duckdb

from lull import config
from lull.errors import BadInput, LullError
from lull.model import Settings, check_timezone, parse_excluded, parse_origins, parse_timeout
from lull.store.db import connect
from lull.store.projects import get_settings, now_ms, project_id, save_settings

_DEFAULTS = config.read()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", default=_DEFAULTS["db"], show_default=True, help="the store (LULL_DB)")
@click.option(
    "--project", default=_DEFAULTS["project"], show_default=True, help="project (LULL_PROJECT)"
)
@click.pass_context
def cli(ctx: click.Context, db: str, project: str) -> None:
    """lull: session analytics on an embedded DuckDB store."""
    ctx.obj = {"db": db, "project": project}


def _common(f: Callable[..., Any]) -> Callable[..., Any]:
    """Let --db and --project also come after the command name."""
    f = click.option("--db", default=None, help="the store (LULL_DB)")(f)
    return click.option("--project", default=None, help="project (LULL_PROJECT)")(f)


@contextmanager
def _open(
    ctx: click.Context, db: str | None, project: str | None, read_only: bool = False
) -> Iterator[tuple[duckdb.DuckDBPyConnection, int]]:
    path = db or ctx.obj["db"]
    name = project or ctx.obj["project"]
    # Readers share the file read-only; a project seen for the first time is created.
    con = _connect(path, read_only=read_only and Path(path).exists())
    try:
        try:
            pid = project_id(con, name, create=False)
        except BadInput:
            con.close()
            con = _connect(path)
            pid = project_id(con, name)
        yield con, pid
    finally:
        con.close()


def _connect(path: str, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    return connect(
        path,
        read_only=read_only,
        threads=_DEFAULTS["threads"],
        memory_limit=_DEFAULTS["memory_limit"],
    )


def _print_json(value: object) -> None:
    click.echo(json.dumps(value, indent=2))


@cli.command()
@_common
@click.option("--sessions", type=click.Choice(["on", "off"]), help="activate sessions")
@click.option("--timeout", help="inactivity that ends a session: 90s, 20m, 1h (1m to 24h)")
@click.option("--timezone", help="IANA time zone for per-day figures")
@click.option("--excluded", help='events that never take part in sessions: "A,B"')
@click.option(
    "--allowed-origins",
    help='web pages whose browsers may send events: "https://a.example,https://b.example" '
    'or "*" (any); "" allows none',
)
@click.pass_context
def settings(
    ctx: click.Context,
    db: str | None,
    project: str | None,
    sessions: str | None,
    timeout: str | None,
    timezone: str | None,
    excluded: str | None,
    allowed_origins: str | None,
) -> None:
    """Change the project's session settings; with no change, print them as JSON."""
    changes: dict[str, Any] = {}
    if sessions is not None:
        changes["sessions_enabled"] = sessions == "on"
    if timeout is not None:
        changes["timeout_ms"] = parse_timeout(timeout)
    if timezone is not None:
        changes["timezone"] = check_timezone(timezone)
    if excluded is not None:
        changes["excluded"] = parse_excluded(excluded)
    if allowed_origins is not None:
        changes["allowed_origins"] = parse_origins(allowed_origins.split(","))
    with _open(ctx, db, project, read_only=not changes) as (con, pid):
        current = get_settings(con, pid)
        if changes:
            current = replace(current, **changes)
            save_settings(con, pid, current)
        _print_json(current.as_json())


@cli.command("import")
@_common
@click.argument("file")
@click.option(
    "--keep-open",
    is_flag=True,
    help="leave the clock at the last arrival (for importing history in parts)",
)
@click.option(
    "--from",
    "tool",
    type=click.Choice(["segment", "amplitude", "mixpanel", "posthog"]),
    help="FILE is that tool's export (docs/import.md)",
)
@click.option(
    "--source",
    type=click.Choice(["web", "ios", "android", "api"]),
    help="with --from: the write key's source the events come as (default web)",
)
@click.pass_context
def import_cmd(
    ctx: click.Context,
    db: str | None,
    project: str | None,
    file: str,
    keep_open: bool,
    tool: str | None,
    source: str | None,
) -> None:
    """Load events (FILE, or - for stdin) as if received live: canonical NDJSON (also
    gzip), Parquet or CSV, or with --from a tool's export."""
    from lull.importer import import_ndjson
    from lull.ingest.imports import prepare

    shown = "stdin" if file == "-" else file
    spool = str(Path(db or ctx.obj["db"]).parent)
    with _input_file(file) as path, _open(ctx, db, project) as (con, pid):
        with _progress(6 if tool else 5) as step, prepare(
            con, pid, path, tool=tool, source=source, shown=shown, spool=spool, now=now_ms(),
            progress=step,
        ) as ready:  # fmt: skip
            report = import_ndjson(
                con, pid, ready.path, now=now_ms(), keep_open=keep_open, progress=step
            )
            found = ready.finish(con, pid)
        _print_json({**report.as_json(), **found} if tool else report.as_json())


@contextmanager
def _input_file(file: str) -> Iterator[str]:
    if file != "-":
        if not Path(file).is_file():
            raise BadInput(f"no such file: {file}")
        yield file
        return
    with tempfile.NamedTemporaryFile(suffix=".ndjson") as tmp:
        shutil.copyfileobj(sys.stdin.buffer, tmp)
        tmp.flush()
        yield tmp.name


@contextmanager
def _progress(steps: int = 4) -> Iterator[Callable[[str], None]]:
    """A bar of the import's steps on a terminal; silent when stderr is piped."""
    from tqdm import tqdm

    bar = tqdm(total=steps, disable=not sys.stderr.isatty(), unit="step", leave=False)
    seen: list[str] = []

    def step(name: str) -> None:
        if seen:
            bar.update(1)
        seen.append(name)
        bar.set_description(name)

    try:
        yield step
        bar.update(1)
    finally:
        bar.close()


@cli.command()
@_common
@click.argument("what", type=click.Choice(["events", "sessions"]))
@click.option("-o", "--output", help="write to this file instead of stdout")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["ndjson", "csv", "parquet"]),
    default="ndjson",
    show_default=True,
)
@click.pass_context
def export(
    ctx: click.Context, db: str | None, project: str | None, what: str, output: str | None, fmt: str
) -> None:
    """Write the project's events or sessions (NDJSON on stdout by default)."""
    from lull.export import export as run_export

    if fmt == "parquet" and output is None:
        raise BadInput("--format parquet needs -o FILE")
    with _open(ctx, db, project, read_only=True) as (con, pid):
        if output is not None:
            run_export(con, pid, what, output, fmt)
            return
        # DuckDB reopens a path it writes to (truncating it), so `>> file` would lose
        # what the file held: write to a temporary file and copy that to stdout.
        with tempfile.TemporaryDirectory() as tmp:
            target = Path(tmp) / f"export.{fmt}"
            run_export(con, pid, what, str(target), fmt)
            sys.stdout.flush()
            with target.open("rb") as f:
                shutil.copyfileobj(f, sys.stdout.buffer)
            sys.stdout.flush()


@cli.command()
@_common
@click.pass_context
def resessionize(ctx: click.Context, db: str | None, project: str | None) -> None:
    """Rebuild all sessions from the stored events by R2 (e.g. after a timeout change)."""
    from lull.resessionize import resessionize as rebuild

    with _open(ctx, db, project) as (con, pid):
        _print_json(rebuild(con, pid, now=now_ms()).as_json())


def _board_range(f: Callable[..., Any]) -> Callable[..., Any]:
    """--days, --until and --source, shared by `board` and `whatif`."""
    f = click.option("--source", help="only sessions from this source: web, ios, android")(f)
    f = click.option("--until", help="last day, YYYY-MM-DD (default: today in the zone)")(f)
    return click.option("--days", type=click.IntRange(1, 3660), default=30, show_default=True)(f)


def _last_day(s: Settings, until: str | None) -> date:
    if until is None:
        return datetime.now(ZoneInfo(s.timezone)).date()
    try:
        return date.fromisoformat(until)
    except ValueError:
        raise BadInput(f"--until {until!r}: expected a date YYYY-MM-DD") from None


@cli.command()
@_common
@_board_range
@click.option(
    "--from-parquet",
    "from_parquet",
    type=click.Path(file_okay=False, path_type=Path),
    help="read the --out folder of `lull spark resessionize` instead of the store",
)
@click.pass_context
def board(
    ctx: click.Context,
    db: str | None,
    project: str | None,
    days: int,
    until: str | None,
    source: str | None,
    from_parquet: Path | None,
) -> None:
    """The session board as JSON."""
    from lull.board import board as make_board

    if from_parquet is not None:
        from lull.spark.output import PID, open_output

        con, s = open_output(from_parquet)
        with con:
            _print_json(make_board(con, PID, s, _last_day(s, until), days, source))
        return
    with _open(ctx, db, project, read_only=True) as (con, pid):
        s = get_settings(con, pid)
        _print_json(make_board(con, pid, s, _last_day(s, until), days, source))


@cli.command()
@_common
@click.argument("figure", metavar="FIGURE")
@_board_range
@click.option("--property", "prop", help="breakdown: the first event's property to group by")
@click.pass_context
def figures(
    ctx: click.Context,
    db: str | None,
    project: str | None,
    figure: str,
    days: int,
    until: str | None,
    source: str | None,
    prop: str | None,
) -> None:
    """More of the board as JSON, with the period before: FIGURE is bounce,
    events_per_session, sessions_per_user, interval, entry_exit, breakdown (with
    --property) or properties (docs/figures.md)."""
    from lull.figures import figure as make_figure

    with _open(ctx, db, project, read_only=True) as (con, pid):
        s = get_settings(con, pid)
        _print_json(make_figure(con, figure, pid, s, _last_day(s, until), days, source, prop))


@cli.command()
@_common
@click.option("--timeout", required=True, help="the proposed timeout: 90s, 20m, 1h")
@_board_range
@click.pass_context
def whatif(
    ctx: click.Context,
    db: str | None,
    project: str | None,
    timeout: str,
    days: int,
    until: str | None,
    source: str | None,
) -> None:
    """Sessions per day and median length under the current and a proposed timeout."""
    from lull.whatif import preview

    proposed = parse_timeout(timeout)
    with _open(ctx, db, project, read_only=True) as (con, pid):
        s = get_settings(con, pid)
        _print_json(preview(con, pid, s, proposed, _last_day(s, until), days, source))


@cli.command()
@_common
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option(
    "--ssl-certfile",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="serve HTTPS with this certificate (PEM; CleverTap's web SDK needs https)",
)
@click.option(
    "--ssl-keyfile",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="the certificate's private key (PEM)",
)
@click.option(
    "--log-dir",
    default=None,
    help="the ingest log: acknowledged events are durable here before they reach the "
    "store  [default: <db>.log]",
)
@click.option(
    "--ingest-only",
    is_flag=True,
    help="validate, append to the ingest log, acknowledge; nothing else (no sessions, "
    "no reads, the store only read at start): for lull spark stream --log",
)
@click.option(
    "--writer",
    default=None,
    help="this process's writer id in the ingest log (with --ingest-only; letters, digits "
    "and _)  [default: <hostname>_<port>]",
)
@click.option(
    "--duplicate-window",
    default="7d",
    show_default=True,
    help="a message id repeated within this much received_at of its first copy is dropped "
    "as a duplicate (R6; at least this much: whole days are kept); later, it is stored again",
)
@click.option(
    "--forwarded-allow-ips",
    default=None,
    help="proxies whose X-Forwarded-For / X-Forwarded-Proto are believed: "
    '"127.0.0.1,10.0.0.5" (behind a load balancer); by default none are',
)
@click.option(
    "--lake",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="serve the web pages and the read API of --project from this --out folder of lull "
    "spark resessionize or stream (read-only; accounts and keys from the store, read at start)",
)
@click.pass_context
def serve(
    ctx: click.Context,
    db: str | None,
    project: str | None,
    host: str,
    port: int,
    ssl_certfile: str | None,
    ssl_keyfile: str | None,
    log_dir: str | None,
    ingest_only: bool,
    writer: str | None,
    duplicate_window: str,
    forwarded_allow_ips: str | None,
    lake: str | None,
) -> None:
    """The server: ingestion API, session timer, read API."""
    from lull.model import parse_duration
    from lull.server.run import serve as run_server

    window_ms = parse_duration(duplicate_window)

    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise click.UsageError("--ssl-certfile and --ssl-keyfile go together")
    if writer is not None and not ingest_only:
        raise click.UsageError("--writer goes with --ingest-only")
    if lake is not None:
        if ingest_only or log_dir is not None:
            raise click.UsageError("--lake reads Spark's output: no --ingest-only or --log-dir")
        from lull.server.lake import serve_lake

        serve_lake(lake, db or ctx.obj["db"], project or ctx.obj["project"], host, port,
                   ssl_certfile, ssl_keyfile, forwarded_allow_ips)  # fmt: skip
        return
    if ingest_only:
        from lull.server import ingest_only as only

        only.serve(db or ctx.obj["db"], host, port, log_dir, writer, ssl_certfile, ssl_keyfile,
                   forwarded_allow_ips)  # fmt: skip
        return
    run_server(
        db or ctx.obj["db"],
        host,
        port,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        log_dir=log_dir,
        duplicate_window_ms=window_ms,
        forwarded_allow_ips=forwarded_allow_ips,
    )


@cli.group()
def project() -> None:
    """Projects and their keys."""


@project.command("create")
@click.argument("name")
@click.option("--db", default=None, help="the store (LULL_DB)")
@click.option("--json", "as_json", is_flag=True, help="print the keys as JSON")
@click.pass_context
def project_create(ctx: click.Context, name: str, db: str | None, as_json: bool) -> None:
    """Make a project with a write key per source, an account id, a passcode, a read token."""
    from lull.store.db import transaction
    from lull.store.keys import create_project

    con = _connect(db or ctx.find_root().obj["db"])
    try:
        with transaction(con):
            made = create_project(con, name)
    finally:
        con.close()
    if as_json:
        click.echo(json.dumps(made))
        return
    click.echo(f"project {name!r} made; keys are shown only now:")
    click.echo(json.dumps(made, indent=2))


@project.command("list")
@click.option("--db", default=None, help="the store (LULL_DB)")
@click.pass_context
def project_list(ctx: click.Context, db: str | None) -> None:
    """The projects, as JSON."""
    from lull.store.keys import list_projects

    con = _connect(db or ctx.find_root().obj["db"])
    try:
        _print_json(list_projects(con))
    finally:
        con.close()


@cli.group()
def user() -> None:
    """Accounts of the web pages (signing in at `lull serve`'s /)."""


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(click.prompt("password", hide_input=True, confirmation_prompt=True))


def _users_write(ctx: click.Context, db: str | None, change: Callable[[Any], None]) -> None:
    from lull.store.db import transaction

    con = _connect(db or ctx.find_root().obj["db"])
    try:
        with transaction(con):
            change(con)
    finally:
        con.close()


@user.command("create")
@click.argument("name")
@click.option("--project", "project_name", required=True, help="the project it may see")
@click.option("--role", type=click.Choice(["admin", "viewer"]), default="viewer", show_default=True)
@click.option("--password-stdin", is_flag=True, help="read the password from stdin")
@click.option("--db", default=None, help="the store (LULL_DB)")
@click.pass_context
def user_create(
    ctx: click.Context,
    name: str,
    project_name: str,
    role: str,
    password_stdin: bool,
    db: str | None,
) -> None:
    """Make a user (password from a prompt) with a role in a project."""
    from lull.store.users import check_name, check_password, create_user

    check_name(name)
    password = check_password(_password(password_stdin))
    _users_write(ctx, db, lambda con: create_user(con, name, password, project_name, role))
    click.echo(f"user {name!r} made: {role} of project {project_name!r}")


@user.command("grant")
@click.argument("name")
@click.option("--project", "project_name", required=True, help="the project")
@click.option("--role", type=click.Choice(["admin", "viewer"]), required=True)
@click.option("--db", default=None, help="the store (LULL_DB)")
@click.pass_context
def user_grant(ctx: click.Context, name: str, project_name: str, role: str, db: str | None) -> None:
    """Give a user a role in another project (or change its role in one)."""
    from lull.store.users import grant

    _users_write(ctx, db, lambda con: grant(con, name, project_name, role))
    click.echo(f"user {name!r} is now {role} of project {project_name!r}")


@user.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="read the password from stdin")
@click.option("--db", default=None, help="the store (LULL_DB)")
@click.pass_context
def user_passwd(ctx: click.Context, name: str, password_stdin: bool, db: str | None) -> None:
    """Give a user a new password (from a prompt); its sessions end."""
    from lull.store.users import check_password, set_password

    password = check_password(_password(password_stdin))
    _users_write(ctx, db, lambda con: set_password(con, name, password))
    click.echo(f"user {name!r} has a new password; its sessions have ended")


@user.command("remove")
@click.argument("name")
@click.option("--db", default=None, help="the store (LULL_DB)")
@click.pass_context
def user_remove(ctx: click.Context, name: str, db: str | None) -> None:
    """Remove a user and its roles; its sessions end."""
    from lull.store.users import remove_user

    _users_write(ctx, db, lambda con: remove_user(con, name))
    click.echo(f"user {name!r} removed")


@user.command("list")
@click.option("--db", default=None, help="the store (LULL_DB)")
@click.pass_context
def user_list(ctx: click.Context, db: str | None) -> None:
    """The users and their projects, as JSON."""
    from lull.store.users import list_users

    path = db or ctx.find_root().obj["db"]
    con = _connect(path, read_only=Path(path).exists())
    try:
        _print_json(list_users(con))
    finally:
        con.close()


@cli.command()
@_common
@click.option("--days", type=click.IntRange(1, 366), default=30, show_default=True)
@click.option(
    "--users",
    type=click.IntRange(1, 10_000),
    default=2000,
    show_default=True,
    help="~150 events each a month (bigger sets: bench/generate.py)",
)
@click.option("--seed", type=int, default=1, show_default=True, help="same seed, same events")
@click.option("--until", help="end: YYYY-MM-DD (that day's end, UTC) or an ISO time; default now")
@click.option("-o", "--output", help="only write the events to this NDJSON file")
@click.pass_context
def demo(
    ctx: click.Context,
    db: str | None,
    project: str | None,
    days: int,
    users: int,
    seed: int,
    until: str | None,
    output: str | None,
) -> None:
    """Make up a music-streaming app's events (seeded) and import them into a new project
    (default `demo`, sessions on), or write them to a file with -o."""
    from lull import demo as made_up
    from lull.demo_project import fill, prepare

    now = now_ms()
    end = now if until is None else made_up.end_of(until)
    if end > now:
        raise BadInput(f"--until {until!r} is in the future")
    if output is not None:
        made_up.write_ndjson(made_up.generate(users=users, days=days, seed=seed, until=end), output)
        return
    # its own project unless one is named: never the one a user works in by default
    named = ctx.parent is not None and (
        ctx.parent.get_parameter_source("project") == click.core.ParameterSource.COMMANDLINE
    )
    name = project or (ctx.obj["project"] if named else "demo")
    con = _connect(db or ctx.obj["db"])
    try:
        pid, keys = prepare(con, name)
        with _progress(6) as step:
            step("generate events")
            events = made_up.generate(users=users, days=days, seed=seed, until=end)
            filled = fill(con, pid, events, now=now, progress=step)
    finally:
        con.close()
    click.echo(filled.line(name))
    if keys is not None:
        click.echo(f"lull: made project {name!r}; its keys (shown once): {json.dumps(keys)}")


@cli.command("convert-nasa")
@click.argument("tsv", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
def convert_nasa(tsv: Path, output: Path) -> None:
    """Turn the NASA-HTTP TSV log into canonical NDJSON `Page Viewed` events."""
    from lull.samples import write_nasa_ndjson

    click.echo(f"{write_nasa_ndjson(tsv, output)} events written to {output}", err=True)


from lull.spark.cli import spark as _spark  # noqa: E402 (the group is defined there)

cli.add_command(_spark)

from lull.segments.cli import segment as _segment  # noqa: E402 (the group is defined there)

cli.add_command(_segment)


def main(argv: list[str] | None = None) -> int:
    """Entry point: one clear line and a non-zero exit for any bad input."""
    # What lull writes (the store, its log, the live state, the secret) is its owner's
    # alone: events and accounts are not for every user of the machine.
    os.umask(0o077)
    try:
        cli.main(args=argv, prog_name="lull", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as e:
        click.echo(e.format_message() if hasattr(e, "format_message") else str(e), err=True)
        return 2
    except click.UsageError as e:
        click.echo(f"lull: error: {e.format_message()}", err=True)
        return 2
    except click.ClickException as e:
        click.echo(f"lull: error: {e.format_message()}", err=True)
        return 1
    except click.exceptions.Abort:
        click.echo("lull: interrupted", err=True)
        return 130
    except LullError as e:
        click.echo(f"lull: error: {e.message}", err=True)
        return 1
    except duckdb.Error as e:
        if "Broken pipe" in str(e):
            return 0  # the reader (e.g. `head`) stopped reading: not an error
        click.echo(f"lull: error: the store said: {str(e).splitlines()[0]}", err=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())


def run() -> None:
    sys.exit(main())
