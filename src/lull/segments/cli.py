"""`lull segment ...`: segments from the command line (with the server stopped; while it
runs, use the read API or the web pages: one process holds the store)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from lull.errors import BadInput


def _definition(text: str) -> object:
    """`--definition`: JSON text, `@FILE`, or `-` for stdin."""
    if text == "-":
        text = sys.stdin.read()
    elif text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as e:
            raise BadInput(f"--definition: cannot read {text[1:]!r}: {e.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise BadInput(
            f"--definition: not JSON: {e.msg} at line {e.lineno} column {e.colno}"
        ) from None


def _project_option(f: Any) -> Any:
    f = click.option("--db", default=None, help="the store (LULL_DB)")(f)
    return click.option("--project", default=None, help="project (LULL_PROJECT)")(f)


def _print(value: object) -> None:
    click.echo(json.dumps(value, indent=2))


@click.group()
def segment() -> None:
    """Segments: profiles by what they did and who they are (docs/segments.md)."""


@segment.command("create")
@click.argument("name")
@click.option("--definition", "text", required=True, help="JSON, @FILE or - (stdin)")
@_project_option
@click.pass_context
def create_cmd(
    ctx: click.Context, name: str, text: str, db: str | None, project: str | None
) -> None:
    """Save a segment; a live one (with a "webhook") prints its signing secret."""
    from lull.cli import _open
    from lull.segments import service
    from lull.store.projects import get_settings

    raw = _definition(text)
    with _open(ctx.find_root(), db, project) as (con, pid):
        made = service.create(con, pid, get_settings(con, pid), name, raw)
    _print(made.as_json(secret=True))


@segment.command("list")
@_project_option
@click.pass_context
def list_cmd(ctx: click.Context, db: str | None, project: str | None) -> None:
    """The project's segments, as JSON."""
    from lull.cli import _open
    from lull.store import segments as store

    with _open(ctx.find_root(), db, project) as (con, pid):
        _print([s.as_json() for s in store.listed(con, pid)])


@segment.command("show")
@click.argument("name")
@_project_option
@click.pass_context
def show_cmd(ctx: click.Context, name: str, db: str | None, project: str | None) -> None:
    """A segment's definition (and a live one's secret and latest deliveries)."""
    from lull.cli import _open
    from lull.store import segments as store

    with _open(ctx.find_root(), db, project) as (con, pid):
        saved = store.get(con, pid, name)
        out = saved.as_json(secret=True)
        if saved.kind == "live":
            out["deliveries"] = store.deliveries(con, pid, name)
    _print(out)


@segment.command("count")
@click.argument("name", required=False)
@click.option("--definition", "text", default=None, help="count this definition instead")
@_project_option
@click.pass_context
def count_cmd(
    ctx: click.Context, name: str | None, text: str | None, db: str | None, project: str | None
) -> None:
    """How many profiles a saved segment (or --definition) holds now."""
    from lull.cli import _open
    from lull.segments import service
    from lull.segments.definition import parse_past
    from lull.store import segments as store
    from lull.store.projects import get_settings

    if (name is None) == (text is None):
        raise BadInput("give a segment's NAME or --definition (one of them)")
    with _open(ctx.find_root(), db, project) as (con, pid):
        settings = get_settings(con, pid)
        d = parse_past(_definition(text)) if text else service.past(store.get(con, pid, str(name)))
        _print(service.count(con, pid, settings, d))


@segment.command("profiles")
@click.argument("name")
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default="json")
@click.option("-o", "--output", default=None, help="write to this file (default: stdout)")
@_project_option
@click.pass_context
def profiles_cmd(
    ctx: click.Context, name: str, fmt: str, output: str | None, db: str | None,
    project: str | None,
) -> None:  # fmt: skip
    """A saved segment's profiles (id, first and last seen, properties), by id."""
    from lull.cli import _open
    from lull.model import format_time
    from lull.segments import service
    from lull.store import segments as store
    from lull.store.projects import get_settings

    with _open(ctx.find_root(), db, project) as (con, pid):
        d = service.past(store.get(con, pid, name))
        rows = service.profiles(con, pid, get_settings(con, pid), d)
    if fmt == "csv":
        text = service.as_csv(rows)
    else:
        for r in rows:
            r["first_seen"], r["last_seen"] = (
                format_time(r["first_seen"]),
                format_time(r["last_seen"]),
            )
        text = json.dumps(rows, indent=2) + "\n"
    if output:
        Path(output).write_text(text)
    else:
        click.echo(text, nl=False)


@segment.command("delete")
@click.argument("name")
@_project_option
@click.pass_context
def delete_cmd(ctx: click.Context, name: str, db: str | None, project: str | None) -> None:
    """Delete a segment (and a live one's delivery log)."""
    from lull.cli import _open
    from lull.segments import service

    with _open(ctx.find_root(), db, project) as (con, pid):
        service.delete(con, pid, name)
    click.echo(f"segment {name!r} deleted")
