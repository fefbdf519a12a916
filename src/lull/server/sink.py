"""`lull serve --events-sink DIR`: what the server stores, also as a landing directory.

After each group commit the writer thread hands the stored events here; they are
appended as canonical NDJSON (the corrected `ts`, and `received_at`) to the current file
of their project, `DIR/<project>/.<name>.tmp`, and flushed before the clients get their
answers. About every second the file is closed and renamed to `DIR/<project>/<name>.ndjson`
(one rename: a reader such as Spark's file source sees a whole file or none). Names sort
in arrival order: the time the file was opened, then a counter.

While a project gets no events, a `<name>.clock` file holding `{"clock": TIME}` (the
server's clock) is published every few seconds, so that `lull spark stream`, whose clock
is the received_at it reads, concludes sessions when they fall due (R4) in quiet times too.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import duckdb
import msgspec

from lull.model import format_time

ProjectName = Callable[[int], str]


_FOLDER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def project_names(con: duckdb.DuckDBPyConnection) -> ProjectName:
    """A project's folder name by id, from the store (called on the writer thread): its
    name, or `project-<id>` when the name is not a plain file name (`/`, spaces...)."""

    def name(pid: int) -> str:
        row = con.execute("SELECT name FROM projects WHERE id = ?", [pid]).fetchone()
        if row and _FOLDER.match(str(row[0])):
            return str(row[0])
        return f"project-{pid}"

    return name


class _Line(msgspec.Struct):
    message_id: str
    profile_id: str
    name: str
    ts: str
    source: str
    received_at: str
    properties: msgspec.Raw  # stored JSON text, written as it is


_encode = msgspec.json.Encoder().encode


@dataclass(slots=True)
class _Open:
    file: IO[bytes]
    temp: Path
    final: Path
    opened: float


class EventsSink:
    """Rotating NDJSON files of accepted events, one folder per project (writer thread)."""

    def __init__(
        self, root: Path, project_name: ProjectName, every: float = 1.0, beat: float = 5.0
    ) -> None:
        self.root = root
        self.project_name = project_name
        self.every = every
        self.beat = beat
        self.active: dict[int, float] = {}  # project -> when it last published something
        self.files: dict[int, _Open] = {}
        self.folders: dict[int, Path] = {}
        self.counter = 0
        root.mkdir(parents=True, exist_ok=True)
        self._finish_leftovers()

    def write(self, events: dict[str, list[Any]]) -> None:
        """Append stored events (the writer's columns: project_id, message_id, ...)."""
        lines: dict[int, list[bytes]] = {}
        for pid, mid, profile, name, ts, source, r, props in zip(
            events["project_id"], events["message_id"], events["profile_id"], events["name"],
            events["ts"], events["source"], events["received_at"], events["properties"],
            strict=True,
        ):  # fmt: skip
            line = _Line(mid, profile, name, format_time(ts), source, format_time(r),
                         msgspec.Raw(props.encode()))  # fmt: skip
            lines.setdefault(pid, []).append(_encode(line) + b"\n")
        try:
            for pid, chunk in lines.items():
                current = self._file(pid)
                current.file.write(b"".join(chunk))
                current.file.flush()  # in the OS before the answer: survives a killed server
            self.tick(max(events["received_at"]))
        except OSError as e:  # the events are stored; the server goes on without the sink
            print(f"lull: events sink: {e}", file=sys.stderr, flush=True)

    def tick(self, clock: int | None = None) -> None:
        """Publish every file that has been open for a second or more; with the server's
        `clock`, also a clock file for each project quiet for `beat` seconds."""
        now = time.monotonic()
        for pid in [p for p, f in self.files.items() if now - f.opened >= self.every]:
            self._publish(self.files.pop(pid))
            self.active[pid] = now
        if clock is None:
            return
        try:
            for pid, folder in self.folders.items():
                if pid not in self.files and now - self.active.get(pid, now) >= self.beat:
                    name = self._name()
                    temp = folder / f".{name}.tmp"
                    temp.write_bytes(_encode({"clock": format_time(clock)}) + b"\n")
                    os.replace(temp, folder / f"{name}.clock")
                    self.active[pid] = now
        except OSError as e:
            print(f"lull: events sink: {e}", file=sys.stderr, flush=True)

    def close(self) -> None:
        for current in self.files.values():
            self._publish(current)
        self.files.clear()

    def _file(self, pid: int) -> _Open:
        current = self.files.get(pid)
        if current is None:
            folder = self.folders.get(pid)
            if folder is None:
                folder = self.folders[pid] = self.root / self.project_name(pid)
                folder.mkdir(parents=True, exist_ok=True)
            name = self._name()
            temp = folder / f".{name}.tmp"
            current = _Open(temp.open("ab"), temp, folder / f"{name}.ndjson", time.monotonic())
            self.files[pid] = current
        return current

    def _name(self) -> str:
        self.counter += 1
        return f"{time.time_ns() // 1_000_000:013d}-{os.getpid()}-{self.counter:06d}"

    def _publish(self, current: _Open) -> None:
        current.file.close()
        os.replace(current.temp, current.final)

    def _finish_leftovers(self) -> None:
        """Files a stopped server left open: publish their whole lines."""
        for temp in sorted(self.root.glob("*/.*.tmp")):
            data = temp.read_bytes()
            whole = data[: data.rfind(b"\n") + 1]
            if len(whole) < len(data):
                print(f"lull: sink: dropped a half-written line in {temp}", file=sys.stderr)
                temp.write_bytes(whole)
            if whole:
                os.replace(temp, temp.with_name(temp.name[1:].removesuffix(".tmp") + ".ndjson"))
            else:
                temp.unlink()
