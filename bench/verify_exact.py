"""Check, at scale, that `lull import` (the vector engine's replay) gives exactly
what a plain replay with the exact engine gives, event by event (session id or late).

    .venv/bin/python bench/verify_exact.py EVENTS.ndjson

It imports the file into a fresh store, then replays every profile's eligible events
with `engine.exact.replay` in arrival order and compares each event's session id.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from lull.engine import exact  # type: ignore[import-untyped, unused-ignore]
from lull.engine.state import Arrival, ProfileState  # type: ignore[import-untyped, unused-ignore]
from lull.importer import import_ndjson  # type: ignore[import-untyped, unused-ignore]
from lull.model import Settings  # type: ignore[import-untyped, unused-ignore]
from lull.store.db import connect  # type: ignore[import-untyped, unused-ignore]
from lull.store.projects import now_ms, project_id, save_settings  # type: ignore[import-untyped, unused-ignore]


def main(path: str) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        con = connect(Path(tmp) / "verify.duckdb")
        pid = project_id(con, "default")
        settings = Settings(sessions_enabled=True)
        save_settings(con, pid, settings)
        now = now_ms()
        started = time.perf_counter()
        report = import_ndjson(con, pid, path, now=now)
        print(f"import: {report.as_json()} in {time.perf_counter() - started:.1f} s")
        rows = con.execute(
            """SELECT e.seq, e.profile_id, e.ts, e.received_at, e.message_id, e.source,
                      s.session_id
               FROM events e JOIN event_sessions es USING (project_id, seq)
               LEFT JOIN sessions s ON s.project_id = es.project_id AND s.skey = es.skey
               ORDER BY e.seq"""
        ).fetchall()
    by_profile: dict[str, list[tuple[int, Arrival, str | None]]] = defaultdict(list)
    clock = 0
    for seq, profile, ts, received, message_id, source, session_id in rows:
        clock = max(clock, received)
        by_profile[profile].append((clock, Arrival(ts, seq, message_id, source), session_id))
    mismatches = late = 0
    for profile, items in by_profile.items():
        items.sort(key=lambda x: (x[0], x[1].ts, x[1].seq))
        out = exact.replay(
            ProfileState(profile, history=[]),
            [c for c, _, _ in items],
            [a for _, a, _ in items],
            settings.timeout_ms,
            now,
        )
        for (_, _, got), want in zip(items, out.session_ids, strict=True):
            mismatches += got != want
            late += want is None
    print(f"exact replay: {len(rows)} eligible events, {late} late, {mismatches} differ")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
