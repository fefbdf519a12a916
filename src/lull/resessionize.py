"""`lull resessionize`: rebuild every session by R2 over the stored events, set-wise in SQL."""

from __future__ import annotations

import time
from dataclasses import dataclass

import duckdb

from lull.store.db import literal, transaction
from lull.store.projects import get_settings

# R2 over every event R1 admits with sessions on (late ones included): order each
# profile's events by (time, arrival); a gap of at least the timeout starts a session.
_REBUILD = """
CREATE OR REPLACE TEMP TABLE rs_events AS
WITH eligible AS (
    SELECT seq, profile_id, ts, message_id, source,
           coalesce(ts - lag(ts) OVER w >= $timeout, true) AS new
    FROM events
    WHERE project_id = $pid AND source <> 'api' AND NOT list_contains($excluded, name)
    WINDOW w AS (PARTITION BY profile_id ORDER BY ts, seq)
)
SELECT seq, profile_id, ts, message_id, source, new,
       sum(new::INTEGER) OVER (PARTITION BY profile_id ORDER BY ts, seq
                               ROWS UNBOUNDED PRECEDING) AS k
FROM eligible;

CREATE OR REPLACE TEMP TABLE rs_sessions AS
SELECT profile_id, k,
       md5(profile_id || chr(31) || max(message_id) FILTER (WHERE new)) AS session_id,
       min(ts) AS first_ts, max(ts) AS last_ts, count(*) AS events,
       max(source) FILTER (WHERE new) AS source
FROM rs_events GROUP BY profile_id, k;
"""

_WRITE = """
DELETE FROM sessions WHERE project_id = $pid;
INSERT INTO sessions
SELECT $pid, session_id, profile_id, first_ts, last_ts, events, source,
       concluded, CASE WHEN concluded THEN last_ts + $timeout END
FROM (SELECT *, k < max(k) OVER (PARTITION BY profile_id)
                OR last_ts + $timeout <= $now AS concluded FROM rs_sessions);

UPDATE events SET session_id = NULL, late = false
WHERE project_id = $pid AND (session_id IS NOT NULL OR late);
UPDATE events SET session_id = x.session_id
FROM (SELECT e.seq, s.session_id FROM rs_events e JOIN rs_sessions s USING (profile_id, k)) x
WHERE events.project_id = $pid AND events.seq = x.seq;

DELETE FROM profiles WHERE project_id = $pid;
INSERT INTO profiles
SELECT $pid, e.profile_id, s.latest_session_id, s.latest_first_ts, s.horizon, e.lo, e.hi
FROM (SELECT profile_id, min(ts) AS lo, max(ts) AS hi FROM events
      WHERE project_id = $pid GROUP BY 1) e
LEFT JOIN (SELECT profile_id, arg_max(session_id, first_ts) AS latest_session_id,
                  max(first_ts) AS latest_first_ts,
                  max(last_ts) FILTER (WHERE concluded) + $timeout AS horizon
           FROM sessions WHERE project_id = $pid GROUP BY 1) s USING (profile_id);
DROP TABLE rs_events;
DROP TABLE rs_sessions;
"""


@dataclass(slots=True)
class Rebuilt:
    events: int
    sessions: int
    seconds: float

    def as_json(self) -> dict[str, object]:
        return {"events": self.events, "sessions": self.sessions, "seconds": round(self.seconds, 3)}


def resessionize(con: duckdb.DuckDBPyConnection, pid: int, *, now: int) -> Rebuilt:
    """Rebuild all of project `pid`'s sessions (and its Session Concluded events)."""
    started = time.perf_counter()
    settings = get_settings(con, pid)
    params = {"pid": pid, "timeout": settings.timeout_ms, "excluded": list(settings.excluded)}
    with transaction(con):
        for statement in _statements(_REBUILD):
            for k, v in params.items():
                statement = statement.replace(f"${k}", literal(v))  # type: ignore[arg-type]
            con.execute(statement)
        counts = con.execute(
            "SELECT (SELECT count(*) FROM rs_events), (SELECT count(*) FROM rs_sessions)"
        ).fetchone()
        assert counts is not None
        params["now"] = now
        for statement in _statements(_WRITE):
            con.execute(statement, {k: v for k, v in params.items() if f"${k}" in statement})
    return Rebuilt(int(counts[0]), int(counts[1]), time.perf_counter() - started)


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";\n") if s.strip()]
