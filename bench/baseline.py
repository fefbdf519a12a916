"""The baseline: plain DuckDB SQL gaps-and-islands over a canonical NDJSON file.

    python bench/baseline.py FILE [--timeout-ms 1200000] [--sessions-out FILE.parquet]

No store, no validation, no live replay: read the file into an in-memory table, apply R1
(sessions on, source is not `api`, name not in the default excluded list) and R5's clock
fix (`ts + (received_at - sent_at)`, capped at `received_at`), then R2 by window functions:
`lag(ts)` over each profile ordered by (time, file order) marks gaps of at least the
timeout, a running `sum` numbers the sessions. Prints one JSON object with the phase
times and counts. With --sessions-out, also writes the sessions (after the timing) so
that another engine's sessions can be compared with them one by one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import duckdb

DEFAULT_EXCLUDED = (
    "App Installed",
    "App Uninstalled",
    "Notification Sent",
    "Notification Clicked",
    "UTM Visited",
    "Identity Set",
    "Identity Reset",
    "Identity Error",
)

LOAD = """
CREATE TABLE ev AS
SELECT ordinality AS rec, message_id, profile_id, name, source,
       least(ts + coalesce(received_at - sent_at, 0), received_at) AS ts
FROM read_json({path}, format = 'newline_delimited', columns = {{
    message_id: 'VARCHAR', profile_id: 'VARCHAR', name: 'VARCHAR', ts: 'BIGINT',
    source: 'VARCHAR', received_at: 'BIGINT', sent_at: 'BIGINT', properties: 'JSON'}})
    WITH ORDINALITY
"""

ISLANDS = """
CREATE TABLE ev_sessions AS
WITH eligible AS (
    SELECT rec, profile_id, message_id, source, ts,
           coalesce(ts - lag(ts) OVER w >= {timeout}, true) AS new
    FROM ev
    WHERE source <> 'api' AND name NOT IN ({excluded}) AND name <> 'Session Concluded'
    WINDOW w AS (PARTITION BY profile_id ORDER BY ts, rec)
)
SELECT rec, profile_id, message_id, source, ts, new,
       sum(new::INTEGER) OVER (PARTITION BY profile_id ORDER BY ts, rec
                               ROWS UNBOUNDED PRECEDING) AS k
FROM eligible
"""

SESSIONS = """
CREATE TABLE sessions AS
SELECT md5(profile_id || chr(31) || max(message_id) FILTER (WHERE new)) AS session_id,
       profile_id, min(ts) AS first_ts, max(ts) AS last_ts, count(*) AS events
FROM ev_sessions GROUP BY profile_id, k
"""


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def run(path: str, timeout_ms: int, sessions_out: str | None = None) -> dict[str, object]:
    """Load, sessionize, count; returns the phase times (s) and the counts."""
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    con.execute("SET TimeZone = 'UTC'")
    t0 = time.perf_counter()
    con.execute(LOAD.format(path=_sql_text(path)))
    t1 = time.perf_counter()
    excluded = ", ".join(_sql_text(n) for n in DEFAULT_EXCLUDED)
    con.execute(ISLANDS.format(timeout=int(timeout_ms), excluded=excluded))
    t_islands = time.perf_counter()
    con.execute(SESSIONS)
    t2 = time.perf_counter()
    row = con.execute(
        "SELECT (SELECT count(*) FROM ev), (SELECT count(*) FROM ev_sessions), "
        "(SELECT count(*) FROM sessions)"
    ).fetchone()
    assert row is not None
    if sessions_out:
        con.execute(f"COPY sessions TO {_sql_text(sessions_out)} (FORMAT parquet)")
    con.close()
    return {
        "records": int(row[0]),
        "eligible": int(row[1]),
        "sessions": int(row[2]),
        "load_s": round(t1 - t0, 3),
        "sessionize_s": round(t2 - t1, 3),
        "islands_s": round(t_islands - t1, 3),
        "sessions_s": round(t2 - t_islands, 3),
        "total_s": round(t2 - t0, 3),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="plain DuckDB gaps-and-islands over NDJSON")
    p.add_argument("file", type=Path)
    p.add_argument("--timeout-ms", type=int, default=20 * 60 * 1000)
    p.add_argument("--sessions-out", help="write the sessions here (Parquet), untimed")
    a = p.parse_args(argv)
    print(json.dumps(run(str(a.file), a.timeout_ms, a.sessions_out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
