"""Bad input of any kind: one clear line naming what and where, a non-zero exit, no change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lullrun import export, lull, lull_process, write_events

GOOD = {"message_id": "g", "profile_id": "u", "name": "Song Played", "ts": 1, "source": "web"}


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "lull.duckdb"
    assert lull(path, "settings", "--sessions", "on").code == 0
    assert lull(path, "import", str(write_events(tmp_path / "good.ndjson", [GOOD]))).code == 0
    return path


def bad_line(**changes: object) -> str:
    record = {**GOOD, "message_id": "b", **changes}
    return json.dumps({k: v for k, v in record.items() if v is not None})


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"message_id": "b", "ts": 1,,}', "line 2: malformed JSON"),
        ("[1, 2]", "line 2: an event must be a JSON object, got an array"),
        (bad_line(profile_id=None), "line 2: field 'profile_id' is missing"),
        (bad_line(profile_id=42), "line 2: field 'profile_id' must be a string, got a number"),
        (bad_line(name=""), "line 2: field 'name' must be 1 to 512 characters"),
        (bad_line(ts="yesterday"), "line 2: field 'ts': 'yesterday' is not an ISO-8601 time"),
        (bad_line(ts="2026-11-01T10:00:00"), "line 2: field 'ts': '2026-11-01T10:00:00' is not"),
        (
            bad_line(ts="2026-13-01T00:00:00Z"),
            "line 2: field 'ts': '2026-13-01T00:00:00Z' is not a",
        ),
        (bad_line(ts=1.5), "line 2: field 'ts': expected an ISO-8601 time or epoch milliseconds"),
        (bad_line(received_at=True), "line 2: field 'received_at': expected an ISO-8601"),
        (bad_line(sent_at=-5), "line 2: field 'sent_at': epoch milliseconds -5 out of range"),
        (bad_line(source="tv"), "line 2: field 'source': 'tv' is not one of web, ios"),
        (
            bad_line(ts=1000, sent_at=10**12, received_at=2000),
            "line 2: field 'sent_at': it is so far ahead of 'ts' that the clock fix",
        ),
        (bad_line(properties=[1]), "line 2: field 'properties' must be an object, got an array"),
        (bad_line(name="Session Concluded"), "line 2: field 'name': 'Session Concluded' is a"),
    ],
)
def test_bad_line_is_named_and_changes_nothing(
    db: Path, tmp_path: Path, line: str, message: str
) -> None:
    before = export(db, "events", tmp_path)
    path = tmp_path / "bad.ndjson"
    path.write_text(json.dumps({**GOOD, "message_id": "ok"}) + "\n" + line + "\n")
    result = lull(db, "import", str(path))
    assert result.code == 1
    assert result.err.startswith(f"lull: error: {path}: {message}"), result.err
    assert len(result.err.strip().splitlines()) == 1
    assert export(db, "events", tmp_path) == before


def test_blank_lines_count_in_line_numbers(db: Path, tmp_path: Path) -> None:
    path = tmp_path / "blank.ndjson"
    path.write_text(json.dumps({**GOOD, "message_id": "x"}) + "\n\n\n" + bad_line(ts="no") + "\n")
    assert "line 4: field 'ts'" in lull(db, "import", str(path)).err


def test_missing_file_is_refused(db: Path) -> None:
    result = lull(db, "import", "/nonexistent.ndjson")
    assert (result.code, result.err.strip()) == (
        1,
        "lull: error: no such file: /nonexistent.ndjson",
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["settings", "--timeout", "5x"], "bad duration '5x'"),
        (["settings", "--timeout", "30s"], "session timeout '30s' is out of range"),
        (["settings", "--timeout", "25h"], "session timeout '25h' is out of range"),
        (["settings", "--timezone", "Mars/Base"], "unknown time zone 'Mars/Base'"),
        (["settings", "--sessions", "maybe"], "Invalid value for '--sessions'"),
        (["settings", "--allowed-origins", "https://a.example/app"], "bad origin"),
        (["settings", "--allowed-origins", "a.example"], "bad origin 'a.example'"),
        (["--project", "a/b", "settings", "--sessions", "on"], "bad project name 'a/b': use 1"),
        (["--project", "-x", "settings", "--sessions", "on"], "starting with a letter"),
        (["board", "--bogus"], "No such option '--bogus'"),
        (["board", "--until", "2026-02-30"], "--until '2026-02-30': expected a date"),
        (["board", "--days", "0"], "Invalid value for '--days'"),
        (["board", "--until", "0001-01-01", "--days", "2"], "reach outside the calendar"),
        (["board", "--until", "9999-12-31"], "reach outside the calendar"),
        (["export", "tables"], "Invalid value for '{events|sessions}'"),
        (["export", "events", "--format", "parquet"], "--format parquet needs -o FILE"),
    ],
)
def test_bad_option_gets_one_line_and_changes_nothing(
    db: Path, args: list[str], message: str
) -> None:
    before = lull(db, "settings").out
    result = lull(db, *args)
    assert result.code != 0
    assert result.err.startswith("lull: error: ") and message in result.err, result.err
    assert len(result.err.strip().splitlines()) == 1
    assert lull(db, "settings").out == before


def test_settings_round_trip(db: Path) -> None:
    changed = lull(
        db,
        "settings",
        "--timeout",
        "90s",
        "--timeout",
        "1h",
        "--timezone",
        "Europe/Paris",
        "--excluded",
        "A, B,,A",
        "--allowed-origins",
        "https://Music.example/, http://127.0.0.1:8080,https://music.example",
    ).json()
    assert changed == {
        "sessions": "on",
        "timeout": "1h",
        "timeout_ms": 3_600_000,
        "timezone": "Europe/Paris",
        "excluded": ["A", "B"],
        "allowed_origins": ["https://music.example", "http://127.0.0.1:8080"],
    }
    assert lull(db, "settings").json() == changed
    assert lull(db, "settings", "--allowed-origins", "").json()["allowed_origins"] == []


def test_default_settings_follow_the_contract(tmp_path: Path) -> None:
    shown = lull(tmp_path / "new.duckdb", "settings").json()
    assert (shown["sessions"], shown["timeout"], shown["timezone"]) == ("off", "20m", "UTC")
    assert "Identity Set" in shown["excluded"] and len(shown["excluded"]) == 8


def test_projects_are_kept_apart(db: Path, tmp_path: Path) -> None:
    other = lull(db, "--project", "other", "settings").json()
    assert other["sessions"] == "off"
    assert export(db, "events", tmp_path) != []
    out = tmp_path / "other.ndjson"
    assert lull(db, "--project", "other", "export", "events", "-o", str(out)).code == 0
    assert out.read_text() == ""


def test_import_from_stdin_in_a_real_process(tmp_path: Path) -> None:
    path = tmp_path / "stdin.duckdb"
    lines = "".join(json.dumps({**GOOD, "message_id": f"m{i}", "ts": i}) + "\n" for i in range(3))
    result = lull_process(path, "import", "-", stdin=lines)
    assert result.code == 0, result.err
    assert result.json()["imported"] == 3
    assert result.err == ""  # no progress bar when not on a terminal


def test_export_formats(db: Path, tmp_path: Path) -> None:
    import duckdb

    for fmt in ("csv", "parquet"):
        out = tmp_path / f"events.{fmt}"
        assert lull(db, "export", "events", "--format", fmt, "-o", str(out)).code == 0
        reader = "read_csv" if fmt == "csv" else "read_parquet"
        rows = duckdb.execute(f"SELECT message_id FROM {reader}('{out}')").fetchall()
        assert ("g",) in rows


def test_export_to_stdout_appends_to_a_redirected_file(db: Path, tmp_path: Path) -> None:
    import subprocess

    from lullrun import LULL

    out = tmp_path / "out.ndjson"
    out.write_text("kept\n")
    with out.open("a") as f:
        done = subprocess.run([LULL, "--db", str(db), "export", "events"], stdout=f, check=False)
    assert done.returncode == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "kept" and json.loads(lines[1])["message_id"] == "g"


def test_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import termios

    from lullrun import LULL

    path = write_events(tmp_path / "tty.ndjson", [GOOD])
    main_fd, child_fd = pty.openpty()
    # a terminal of 24 x 100 (a new pseudo-terminal has no size, and no room for a bar)
    fcntl.ioctl(child_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    done = subprocess.run(
        [LULL, "--db", str(tmp_path / "tty.duckdb"), "import", str(path)],
        stdout=subprocess.PIPE,
        stderr=child_fd,
        check=False,
        timeout=120,
    )
    os.close(child_fd)
    shown = b""
    while True:
        try:
            chunk = os.read(main_fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(main_fd)
    assert done.returncode == 0
    assert b"parse, check and store" in shown or b"write sessions" in shown
    assert json.loads(done.stdout)["imported"] == 1
