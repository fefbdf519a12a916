"""`lull export events` of a store an older lull filled: what lies outside what an event
may hold is written as it is, and a warning says what `lull import` will refuse."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

from lullrun import lull, read_exact, write_events

T = 1_790_000_000_000


def test_events_an_older_lull_stored_outside_the_limits_are_exported_with_a_warning(
    tmp_path: Path,
) -> None:
    db = tmp_path / "lull.duckdb"
    good = {"message_id": "ok", "profile_id": "u", "name": "Played", "ts": T, "source": "web"}
    assert lull(db, "import", str(write_events(tmp_path / "in.ndjson", [good]))).code == 0
    with duckdb.connect(str(db)) as con:  # as an older lull let them in
        con.execute(
            """INSERT INTO events SELECT project_id, seq + 1, 'old-' || x, profile_id, name,
                   ts, source, received_at, properties
               FROM events, (VALUES ('year0'), ('longname')) v(x)"""
        )
        con.execute("UPDATE events SET ts = -62135596800000 WHERE message_id = 'old-year0'")
        con.execute("UPDATE events SET name = repeat('n', 513) WHERE message_id = 'old-longname'")
    target = tmp_path / "out.ndjson"
    done = lull(db, "export", "events", "-o", str(target))
    assert done.code == 0
    assert {e["message_id"] for e in read_exact(target)} == {"ok", "old-year0", "old-longname"}
    assert "lull: warning: 1 event(s) with a ts outside" in done.err
    assert "'old-year0'" in done.err
    assert "1 event(s) with a name outside" in done.err and "'old-longname'" in done.err


def test_an_export_of_what_lull_stores_now_warns_of_nothing(tmp_path: Path) -> None:
    db = tmp_path / "lull.duckdb"
    edge = {"message_id": "é" * 256, "profile_id": "\x00" * 256, "name": "n" * 512,
            "ts": 0, "source": "web", "received_at": 253_402_300_799_999}  # fmt: skip
    assert lull(db, "import", str(write_events(tmp_path / "in.ndjson", [edge]))).code == 0
    done = lull(db, "export", "events", "-o", str(tmp_path / "out.ndjson"))
    assert done.code == 0 and done.err == ""


def test_an_export_of_a_project_with_sessions_is_imported_again(tmp_path: Path) -> None:
    db = tmp_path / "lull.duckdb"
    assert lull(db, "settings", "--sessions", "on", "--timeout", "1m").code == 0
    played = {"message_id": "a", "profile_id": "u", "name": "Played", "ts": T, "source": "web",
              "received_at": T}  # fmt: skip
    assert lull(db, "import", str(write_events(tmp_path / "in.ndjson", [played]))).code == 0
    target = tmp_path / "out.ndjson"
    assert lull(db, "export", "events", "-o", str(target)).code == 0
    assert "Session Concluded" in target.read_text()
    copy = tmp_path / "again.duckdb"
    assert lull(copy, "settings", "--sessions", "on", "--timeout", "1m").code == 0
    again = lull(copy, "import", str(target))
    assert again.code == 0, again.err
    back = tmp_path / "back.ndjson"
    assert lull(copy, "export", "events", "-o", str(back)).code == 0

    def seen(path: Path) -> list[tuple[object, ...]]:
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        return sorted((r["name"], r["ts"], r["session_id"], r["profile_id"]) for r in rows)

    # the export's Session Concluded was left out and raised again, with the same session
    assert seen(back) == seen(target)
    assert [r[0] for r in seen(back)].count("Session Concluded") == 1
    written_by_hand = tmp_path / "hand.ndjson"
    concluded = {**played, "message_id": "c", "name": "Session Concluded"}
    refused = lull(
        tmp_path / "third.duckdb", "import", str(write_events(written_by_hand, [concluded]))
    )
    assert refused.code != 0 and "Session Concluded" in refused.err
