"""A landing file decoded a file at a time (`spark.ndjson.file_batch`, and column-wise by
`file_table`, which the stream uses) gives the rows that the exact per-line parser
(`spark.landing.parse_line`) gives: good lines, bad ones (with the same reason), clock
lines, blank lines, ISO times and odd properties. (`file_table` keeps the properties'
JSON text as the line has it: compared as JSON.)"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lull.spark.landing import parse_line
from lull.spark.ndjson import file_batch, file_table

TS = 1_700_000_000_000
GOOD = {"message_id": "m", "profile_id": "u", "name": "Play", "ts": TS, "source": "web",
        "received_at": TS + 1000}  # fmt: skip

ODD = [
    GOOD | {"ts": "2026-11-01T10:00:00.000Z", "received_at": "2026-11-01T10:00:02+01:00"},
    GOOD | {"properties": {"k": "é \u00e9 \u2028", "n": [1, 2.5, None, {"a": True}]}},
    GOOD | {"properties": None, "extra": {"ignored": 1}},
    GOOD | {"sent_at": TS - 500},
    GOOD | {"sent_at": 10**13},  # the clock fix falls before 1970: refused
    GOOD | {"name": "Session Concluded"},
    GOOD | {"ts": True},
    GOOD | {"ts": 1.5},
    GOOD | {"ts": -1},
    GOOD | {"ts": "2026-13-01T10:00:00Z"},
    GOOD | {"profile_id": ""},
    GOOD | {"message_id": "x" * 257},
    GOOD | {"name": "n" * 513},
    GOOD | {"source": "tv"},
    GOOD | {"properties": [1]},
    GOOD | {"properties": {"deep": json.loads("[" * 70 + "]" * 70)}},
    GOOD | {"properties": {"big": "x" * 40_000}},
    {k: v for k, v in GOOD.items() if k != "received_at"},
    {"clock": 1_700_000_000_000},
    {"clock": "yesterday"},
    [GOOD],
]


def lines_of(records: list[object]) -> list[str]:
    return [json.dumps(r, ensure_ascii=False) for r in records]


def same(text: str) -> None:
    want = [parse_line(x, "f", n) for n, x in enumerate(text.splitlines(), start=1) if x.strip()]
    assert file_batch(text, "f").to_pylist() == want
    assert as_json(file_table(text.encode(), "f").to_pylist()) == as_json(want)


def as_json(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """The rows in line order, properties decoded."""
    out = [r | {"properties": None if r["properties"] is None else json.loads(str(r["properties"]))}
           for r in rows]  # fmt: skip
    return sorted(out, key=lambda r: int(str(r["pos"])))


@pytest.mark.parametrize("record", ODD, ids=range(len(ODD)))
def test_an_odd_line_among_good_ones(record: object) -> None:
    lines = lines_of([GOOD | {"message_id": "a"}, record, GOOD | {"message_id": "b"}])
    same("\n".join(lines) + "\n")


def test_every_odd_line_in_one_file_with_blank_and_malformed_lines() -> None:
    lines = lines_of(ODD)
    lines[3:3] = ["", "   ", "{not json", "null"]
    same("\r\n".join(lines))


def test_a_file_of_good_lines() -> None:
    same("\n".join(lines_of([GOOD | {"message_id": f"m{i}"} for i in range(100)])))


def test_an_empty_file() -> None:
    assert file_batch("", "f").num_rows == 0
    assert file_table(b"", "f").num_rows == 0
    assert file_table(b"\n\n", "f").num_rows == 0


def test_compact_lines_keep_their_properties_text() -> None:
    line = '{"message_id":"m","profile_id":"u","name":"P","ts":5,"source":"web",' \
        '"received_at":9,"properties":{"k":[1,{"a":"\u00e9"}]}}'  # fmt: skip
    assert file_table(line.encode(), "f").to_pylist() == [parse_line(line, "f", 1)]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                "message_id": st.text(max_size=3),
                "profile_id": st.sampled_from(["u", "", 7]),
                "name": st.sampled_from(["Play", "Session Concluded", "", None]),
                "source": st.sampled_from(["web", "ios", "api", "tv"]),
                "ts": st.one_of(st.integers(-5, 2**50), st.sampled_from(["2026-11-01T10:00Z"])),
                "received_at": st.integers(0, 2**48),
                "sent_at": st.one_of(st.none(), st.integers(0, 2**48)),
                "properties": st.one_of(
                    st.none(), st.dictionaries(st.text(max_size=2), st.integers())
                ),
            },
        ),
        max_size=8,
    )
)
def test_any_records(records: list[dict[str, object]]) -> None:
    same("\n".join(lines_of(list(records))))
