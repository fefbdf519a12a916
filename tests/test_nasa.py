"""Real data: the NASA-HTTP log of 1995-08-01 against an independent gaps-and-islands query."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from lull.board import BUCKET_EDGES
from lullrun import export, lull

TSV = Path(__file__).resolve().parents[1] / "data/nasa-http-19950801/nasa_19950801.tsv"

# Written from docs/sessions.md alone, straight over the TSV: a gap of 20 minutes or more
# between a host's consecutive requests starts a new session.
INDEPENDENT = """
WITH hits AS (
    SELECT host, "time" * 1000 AS ts
    FROM read_csv($tsv, delim = '\t', header = true, quote = '', escape = '',
                  columns = {'host': 'VARCHAR', 'logname': 'VARCHAR', 'time': 'BIGINT',
                             'method': 'VARCHAR', 'url': 'VARCHAR', 'response': 'VARCHAR',
                             'bytes': 'VARCHAR', 'referer': 'VARCHAR', 'useragent': 'VARCHAR'})
), marked AS (
    SELECT host, ts,
           CASE WHEN ts - lag(ts) OVER (PARTITION BY host ORDER BY ts) < 20 * 60 * 1000
                THEN 0 ELSE 1 END AS starts
    FROM hits
), numbered AS (
    SELECT host, ts,
           sum(starts) OVER (PARTITION BY host ORDER BY ts ROWS UNBOUNDED PRECEDING) AS k
    FROM marked
)
SELECT host, min(ts) AS first_ts, max(ts) AS last_ts, count(*) AS events
FROM numbered GROUP BY host, k
"""


def iso_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


@pytest.fixture(scope="module")
def nasa(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("nasa")
    ndjson, db = tmp / "nasa.ndjson", tmp / "nasa.duckdb"
    assert lull(db, "convert-nasa", str(TSV), "-o", str(ndjson)).code == 0
    assert lull(db, "settings", "--sessions", "on").code == 0
    result = lull(db, "import", str(ndjson))
    assert result.code == 0, result.err
    assert result.json()["imported"] == 30969
    return db, tmp


@pytest.fixture(scope="module")
def expected() -> list[tuple[str, int, int, int]]:
    rows = duckdb.execute(INDEPENDENT, {"tsv": str(TSV)}).fetchall()
    return sorted((str(h), int(f), int(la), int(n)) for h, f, la, n in rows)


def test_sessions_match_an_independent_query(
    nasa: tuple[Path, Path], expected: list[tuple[str, int, int, int]]
) -> None:
    db, tmp = nasa
    got = [
        (s["profile_id"], iso_ms(s["first_ts"]), iso_ms(s["last_ts"]), s["events"])
        for s in export(db, "sessions", tmp)
    ]
    assert sorted(got) == expected
    assert len(expected) > 3000


def test_board_totals_and_distribution_match(
    nasa: tuple[Path, Path], expected: list[tuple[str, int, int, int]]
) -> None:
    db, _ = nasa
    board = lull(db, "board", "--until", "1995-08-01", "--days", "1").json()
    lengths = [(last - first) // 1000 for _, first, last, _ in expected]
    assert board["sessions"] == len(expected)
    assert board["total_length_s"] == sum(lengths)
    assert board["per_day"] == [
        {"date": "1995-08-01", "sessions": len(expected), "total_length_s": sum(lengths)}
    ]
    uppers = [*BUCKET_EDGES[1:], None]
    want = [
        sum(1 for n in lengths if lo <= n and (hi is None or n < hi))
        for lo, hi in zip(BUCKET_EDGES, uppers, strict=True)
    ]
    assert [b["sessions"] for b in board["length_distribution"]] == want
    assert board["late_events"] == 0


def test_resessionize_gives_the_same_sessions(
    nasa: tuple[Path, Path], expected: list[tuple[str, int, int, int]]
) -> None:
    db, tmp = nasa
    before = export(db, "sessions", tmp)
    assert lull(db, "resessionize").code == 0
    assert sorted(export(db, "sessions", tmp), key=lambda s: s["session_id"]) == sorted(
        before, key=lambda s: s["session_id"]
    )
