"""Local days in SQL without a time-zone lookup per row equal DuckDB's `AT TIME ZONE`."""

from __future__ import annotations

from datetime import date, timedelta

import duckdb
from hypothesis import given, settings
from hypothesis import strategies as st

from lull.days import DAY_MS, Days, number, of_number, offsets

# Zones with DST both ways, half-hour and 45-minute offsets, a 30-minute DST shift, and
# Samoa, which skipped 2011-12-30 when it crossed the date line.
ZONES = [
    "UTC",
    "Europe/Paris",
    "America/New_York",
    "America/Sao_Paulo",
    "Asia/Kathmandu",
    "Australia/Lord_Howe",
    "Pacific/Apia",
    "America/Santiago",
]

CON = duckdb.connect()
CON.execute("SET TimeZone = 'UTC'")


def duckdb_days(tz: str, stamps: list[int]) -> list[date]:
    rows = CON.execute(
        """SELECT (epoch_ms(t)::TIMESTAMPTZ AT TIME ZONE $tz)::DATE
           FROM unnest($ts) WITH ORDINALITY AS u(t, i) ORDER BY i""",
        {"tz": tz, "ts": stamps},
    ).fetchall()
    return [d for (d,) in rows]


def lull_days(days: Days, stamps: list[int]) -> list[date | None]:
    rows = CON.execute(
        f"""SELECT CASE WHEN {days.where("t")} THEN {days.day_sql("t")} END
            FROM unnest($ts) WITH ORDINALITY AS u(t, i) ORDER BY i""",
        {"ts": stamps},
    ).fetchall()
    return [None if n is None else of_number(int(n)) for (n,) in rows]


@settings(max_examples=60, deadline=None)
@given(
    tz=st.sampled_from(ZONES),
    first=st.dates(min_value=date(2000, 1, 2), max_value=date(2035, 12, 1)),
    span=st.integers(0, 400),
    picks=st.lists(st.floats(-0.1, 1.1), min_size=1, max_size=40),
)
def test_local_day_of_every_instant_matches_duckdb(
    tz: str, first: date, span: int, picks: list[float]
) -> None:
    days = Days(tz, first, first + timedelta(days=span))
    stamps = [int(days.lo + p * (days.hi - days.lo)) for p in picks]
    # and the instants around each change of offset, where an off-by-one would show
    stamps += [at + d for at, _ in days.pieces[1:] for d in (-1, 0, 1)]
    want = [
        d if first <= d <= days.last and days.lo <= t <= days.hi else None
        for d, t in zip(duckdb_days(tz, stamps), stamps, strict=True)
    ]
    assert lull_days(days, stamps) == want


def test_offsets_find_each_dst_change_to_the_millisecond() -> None:
    lo = number(date(2026, 1, 1)) * DAY_MS
    hi = number(date(2027, 1, 1)) * DAY_MS
    # Paris: +1 h, +2 h from 2026-03-29T01:00Z, +1 h again from 2026-10-25T01:00Z
    assert offsets("Europe/Paris", lo, hi) == [
        (lo, 3_600_000),
        (1_774_746_000_000, 7_200_000),
        (1_792_890_000_000, 3_600_000),
    ]
    assert offsets("UTC", lo, hi) == [(lo, 0)]


def test_a_skipped_day_has_no_instant() -> None:
    days = Days("Pacific/Apia", date(2011, 12, 29), date(2011, 12, 31))
    stamps = list(range(days.lo, days.hi, 3_600_000))
    found = {d for d in lull_days(days, stamps) if d is not None}
    assert found == {date(2011, 12, 29), date(2011, 12, 31)}
