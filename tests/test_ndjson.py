"""The import's typed fast path (`ingest.ndjson`) against the exact per-line validator.

- A bad record at the first, a middle or the last line of a large file: the import exits
  non-zero, names the line and the field (the exact validator's words), and stores
  nothing, not even next to what an earlier import stored.
- Property: on any record (fields of every JSON type, edge values), the set-wise check
  accepts exactly what `records.to_record` accepts, and stores the same values.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lull.errors import BadInput
from lull.ingest import ndjson
from lull.ingest.records import corrected_time, to_record
from lull.model import MAX_EPOCH_MS
from lullrun import export, lull, write_events

LINES = 60_000  # more than DuckDB reads in one block, so the parse runs on both cores
NOW = 1_790_000_000_000
LINE = (
    '{{"message_id":"m{i}","profile_id":"u{p}","name":"Song Played","ts":{t},'
    '"source":"ios","received_at":{t},"properties":{{"n":{i}}}}}\n'
)


def big_file(path: Path, bad_line: int | None, bad: str) -> Path:
    with path.open("w") as f:
        for i in range(1, LINES + 1):
            f.write(bad + "\n" if i == bad_line else LINE.format(i=i, p=i % 997, t=NOW + i))
    return path


BAD = {
    "a number as message_id": (
        '{"message_id":7,"profile_id":"u","name":"A","ts":1,"source":"ios"}',
        "field 'message_id' must be a string, got a number",
    ),
    "digits in a string as ts": (
        '{"message_id":"x","profile_id":"u","name":"A","ts":"1790000000000","source":"ios"}',
        "field 'ts': '1790000000000' is not an ISO-8601 time",
    ),
    "an array as properties": (
        '{"message_id":"x","profile_id":"u","name":"A","ts":1,"source":"ios","properties":[]}',
        "field 'properties' must be an object, got an array",
    ),
    "a fraction as received_at": (
        '{"message_id":"x","profile_id":"u","name":"A","ts":1,"source":"ios","received_at":2.5}',
        "field 'received_at'",
    ),
    "malformed JSON": ('{"message_id":"x",', "malformed JSON"),
}


@pytest.mark.parametrize("where", ["first", "middle", "last"])
@pytest.mark.parametrize("fault", sorted(BAD))
def test_a_bad_record_is_named_and_nothing_is_stored(
    db_path: Path, tmp_path: Path, where: str, fault: str
) -> None:
    db = db_path
    earlier = write_events(tmp_path / "earlier.ndjson", [_record("earlier", NOW)])
    assert lull(db, "import", str(earlier)).code == 0
    stored = export(db, "events", tmp_path), export(db, "sessions", tmp_path)
    line = {"first": 1, "middle": LINES // 2 + 1, "last": LINES}[where]
    text, words = BAD[fault]
    done = lull(db, "import", str(big_file(tmp_path / "big.ndjson", line, text)))
    assert done.code != 0
    assert f"line {line}: " in done.err and words in done.err, done.err
    assert len(done.err.strip().splitlines()) == 1
    assert (export(db, "events", tmp_path), export(db, "sessions", tmp_path)) == stored
    assert [e["message_id"] for e in stored[0]][:1] == ["earlier"]


def test_the_same_large_file_without_the_fault_is_stored_whole(
    db_path: Path, tmp_path: Path
) -> None:
    db = db_path
    done = lull(db, "import", str(big_file(tmp_path / "big.ndjson", None, "")))
    assert done.code == 0, done.err
    assert done.json()["imported"] == LINES
    events = export(db, "events", tmp_path)
    assert [e["message_id"] for e in events if e["name"] != "Session Concluded"] == [
        f"m{i}" for i in range(1, LINES + 1)
    ]  # stored in file order: the arrival order


def test_ids_that_look_like_numbers_are_taken_when_they_are_strings(
    db_path: Path, tmp_path: Path
) -> None:
    """Strings such as "42" or "1e5" are read like any other (the fast reading marks them
    suspect and the exact one finds them strings); the same record with the number 42 is
    refused at its line."""
    lines = [
        {"message_id": str(i), "profile_id": "1e5" if i % 2 else "-7", "name": "true",
         "ts": NOW + i, "source": "ios"}
        for i in range(1, 2001)
    ]  # fmt: skip
    good = write_events(tmp_path / "numeric.ndjson", lines)
    done = lull(db_path, "import", str(good))
    assert done.code == 0, done.err
    events = export(db_path, "events", tmp_path)
    assert sorted(e["message_id"] for e in events if e["name"] == "true") == sorted(
        str(i) for i in range(1, 2001)
    )
    assert {e["profile_id"] for e in events} == {"1e5", "-7"}
    lines[1500]["profile_id"] = 42
    bad = write_events(tmp_path / "number.ndjson", lines)
    done = lull(db_path, "import", "--project", "other", str(bad))
    assert done.code != 0
    assert "line 1501: " in done.err and "'profile_id' must be a string" in done.err, done.err


def _record(mid: str, ts: int) -> dict[str, Any]:
    return {"message_id": mid, "profile_id": "u", "name": "A", "ts": ts, "source": "ios"}


# Values of every JSON type, and the edges of what a field accepts.
TEXTS = st.one_of(
    st.text(min_size=0, max_size=4),
    st.sampled_from(["x", "a\\b", 'q"q', "é€😀", "x" * 256, "x" * 257, "é" * 256]),
    # strings a typed read cannot tell from another JSON value (the fast reading's
    # suspects), and those values themselves
    st.sampled_from(["5", "-1.5e3", "1E+5", "true", "false", "null", "{a", "[1]", "-", "7e"]),
    st.integers(-3, 3),
    st.sampled_from([10**30, -0.0, 1e5, 2.5]),
    st.booleans(),
    st.none(),
    st.just([1]),
    st.just({"a": 1}),
)
TIMES = st.one_of(
    st.integers(-2, 2),
    st.sampled_from([NOW, MAX_EPOCH_MS, MAX_EPOCH_MS + 1, 2**63, 10**20]),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from(
        [
            "2026-11-01T10:00:00.000Z",
            "2026-11-01T10:00:00+02:00",
            "2026-11-01T10:00Z",
            "2026-11-01 10:00:00Z",
            "2026-02-30T10:00:00Z",
            "1790000000000",
            "0001-01-01T00:00:00Z",
            "",
        ]
    ),
    st.booleans(),
    st.none(),
    st.just([NOW]),
)
FIELDS = {
    "message_id": TEXTS,
    "profile_id": TEXTS,
    "name": st.one_of(TEXTS, st.sampled_from(["Song Played", "Session Concluded"])),
    "ts": TIMES,
    "source": st.one_of(st.sampled_from(["web", "ios", "android", "api", "IOS"]), TEXTS),
    "received_at": TIMES,
    "sent_at": TIMES,
    "properties": st.one_of(st.just({"k": "v"}), st.just({}), TEXTS),
}


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    good = {"message_id": "m", "profile_id": "u", "name": "A", "ts": NOW, "source": "web"}
    record: dict[str, Any] = dict(good)
    for name in draw(st.lists(st.sampled_from(sorted(FIELDS)), max_size=3, unique=True)):
        if draw(st.booleans()) and name in record:
            del record[name]
        else:
            record[name] = draw(FIELDS[name])
    return record


@settings(max_examples=400, deadline=None)
@given(records(), st.booleans())
def test_the_fast_check_accepts_what_the_exact_validator_accepts(
    tmp_path_factory: pytest.TempPathFactory, record: dict[str, Any], ascii_only: bool
) -> None:
    path = tmp_path_factory.mktemp("one") / "one.ndjson"
    path.write_text(json.dumps(record, ensure_ascii=ascii_only) + "\n", encoding="utf-8")
    try:
        exact = to_record(record, now=NOW)
    except BadInput:
        exact = None

    def read(reading: str, suspect: str) -> tuple[Any, ...] | None:
        values = "message_id, profile_id, name, source, ts_eff, r"
        sql = f"SELECT ok, {suspect}, {values} FROM ({reading})"
        try:
            return (
                duckdb.connect()
                .execute(sql.replace("{now}", str(NOW)).replace("{path}", str(path)))
                .fetchone()
            )
        except duckdb.Error:
            return None  # DuckDB refuses the line outright: a bad record too

    fast, exact_reading = read(ndjson._FAST, "suspect"), read(ndjson._PARSED, "false")
    # the import: the fast reading, and the exact one when the fast one finds a suspect
    exact_ok = exact_reading is not None and bool(exact_reading[0])
    taken = fast is not None and bool(fast[0]) and (not fast[1] or exact_ok)
    assert taken == (exact is not None), (record, fast, exact_reading)
    # the exact reading alone (which finds the first bad record) agrees with the validator
    assert exact_ok == (exact is not None)
    if exact is not None:
        arrived = exact.received_at if exact.received_at is not None else NOW
        assert fast is not None and exact_reading is not None
        expected = (
            exact.message_id,
            exact.profile_id,
            exact.name,
            exact.source,
            corrected_time(exact.ts, exact.sent_at, arrived),
            arrived,
        )
        assert fast[2:] == expected
        assert exact_reading[2:] == expected


def test_properties_over_the_limits_are_refused_as_the_server_refuses_them(
    tmp_path: Path,
) -> None:
    """The one definition of an event (records.check_properties): over 32 KB as lull
    encodes them, or nested more than 62 levels, a line is refused and named; just under
    either limit it is taken."""

    def record(i: int, properties: object) -> dict[str, Any]:
        return {"message_id": f"m{i}", "profile_id": "u", "name": "A", "ts": NOW - 1000 + i,
                "source": "web", "received_at": NOW, "properties": properties}  # fmt: skip

    def nested(levels: int) -> object:
        value: object = 1
        for _ in range(levels - 1):
            value = {"a": value}
        return value

    near = {"text": "x" * (32 * 1024 - 100)}  # encoded just under 32 KB
    # 1e5 is 3 bytes as written, 100000.0 as lull encodes it: over 32 KB only then
    numbers = "[" + ",".join(["1e5"] * 4000) + "]"
    cases: list[tuple[object, bool]] = [
        (near, True),
        (nested(63), True),
        ({"text": "x" * (32 * 1024)}, False),
        (nested(64), False),
    ]
    for i, (properties, taken) in enumerate(cases):
        db = tmp_path / f"s{i}.duckdb"
        lines = [record(0, {"ok": 1}), record(1, properties), record(2, {"ok": 2})]
        done = lull(db, "import", str(write_events(tmp_path / f"in{i}.ndjson", lines)))
        if taken:
            assert done.code == 0, done.err
        else:
            assert done.code != 0 and "line 2" in done.err, done.err
    path = tmp_path / "numbers.ndjson"
    head = json.dumps(record(0, {"ok": 1}))
    path.write_text(
        head
        + "\n"
        + head.replace('"m0"', '"m1"').replace('{"ok": 1}', '{"n": ' + numbers + "}")
        + "\n"
    )
    done = lull(tmp_path / "numbers.duckdb", "import", str(path))
    assert done.code != 0 and "line 2" in done.err, done.err
