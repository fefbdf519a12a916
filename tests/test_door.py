"""The front door's log frames: requests that wait together for the log writer become one
frame, and reading the frame back gives each project's requests as they were sent."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from lull.ingest.columns import EventColumns
from lull.ingest.records import Event
from lull.model import Settings
from lull.server.door import Batch, Door, _combine, from_arrow
from lull.server.identity import Target
from lull.server.ingest_only import Frozen, as_engine
from lull.store.log import IngestLog

PROJECTS = {"shop": 1, "blog": 2}


def columns(tag: str, n: int, fast: bool, source: str | list[str]) -> EventColumns:
    """n events; their properties as UTF-8 bytes (the fast path) or as text (exact)."""
    props = [{"i": i, "tag": tag} for i in range(n)]
    texts = [msgspec.json.encode(p) for p in props]
    return EventColumns(
        [f"{tag}-m{i}" for i in range(n)],
        [f"{tag}-u{i % 3}" for i in range(n)],
        ["Play"] * n,
        [1_000 + i for i in range(n)],
        [None if i % 2 else 900 + i for i in range(n)],
        texts if fast else [t.decode() for t in texts],
        source,
    )


request = st.tuples(
    st.sampled_from(sorted(PROJECTS)),
    st.integers(0, 4),  # events
    st.booleans(),  # fast path (bytes) or exact (text)
    st.booleans(),  # one source, or one per event
    st.integers(0, 2),  # identity links
    st.integers(0, 2),  # profile properties set
).filter(lambda r: r[1] + r[4] + r[5] > 0)  # the door submits no empty request


@settings(max_examples=60, deadline=None)
@given(st.lists(request, min_size=1, max_size=6))
def test_a_frame_of_requests_reads_back_as_sent(
    spec: list[tuple[str, int, bool, bool, int, int]],
) -> None:
    parts = []
    for k, (project, n, fast, one_source, links, traits) in enumerate(spec):
        tag = f"r{k}"
        source: str | list[str] = "web" if one_source else [f"s{i}" for i in range(n)]
        batch = Batch(PROJECTS[project], 10_000 + k, [])
        batch.links = [(f"{tag}-anon{j}", Target(f"{tag}-u{j}", 500 + j)) for j in range(links)]
        batch.traits = [(f"{tag}-u{j}", {"plan": f"p{j}"}, 700 + j) for j in range(traits)]
        parts.append((project, batch, columns(tag, n, fast, source)))
    frame = _combine(parts)

    # each request's rows are its own events
    for project, batch, events in parts:
        assert batch.rows is not None
        assert batch.rows.column("message_id").to_pylist() == events.message_ids
        assert batch.rows.column("project").to_pylist() == [project] * len(events)
        assert set(batch.rows.column("received_at").to_pylist()) <= {batch.received_at}

    back = from_arrow(frame, PROJECTS)
    for got in back:
        name = next(n for n, pid in PROJECTS.items() if pid == got.project_id)
        mine = [(b, e) for p, b, e in parts if p == name]
        want_ids = [m for _, e in mine for m in e.message_ids]
        want_props = [
            p if isinstance(p, str) else p.decode() for _, e in mine for p in e.properties
        ]
        want_sources = [
            s
            for _, e in mine
            for s in ([e.source] * len(e) if isinstance(e.source, str) else e.source)
        ]
        assert got.rows is not None
        assert got.rows.column("message_id").to_pylist() == want_ids
        assert got.rows.column("properties").to_pylist() == want_props
        assert got.rows.column("source").to_pylist() == want_sources
        assert got.rows.column("received_at").to_pylist() == [
            b.received_at for b, e in mine for _ in range(len(e))
        ]
        assert got.links == [link for b, _ in mine for link in b.links]
        assert got.traits == [t for b, _ in mine for t in b.traits]
    assert {b.project_id for b in back} == {PROJECTS[p] for p, _, _ in parts}


def test_requests_waiting_for_the_log_share_one_frame(tmp_path: Path) -> None:
    """Requests that come while a frame is being written go into the next frame together:
    fewer frames than requests, every request's events in the log once and in order, each
    answered once its frame is durable, and the engine given each frame whole."""
    frozen = Frozen({1: Settings()}, {})
    handed: list[list[Batch]] = []
    frozen.enqueue = handed.append  # type: ignore[method-assign,assignment]  # (its inbox)
    log = IngestLog(tmp_path / "log")
    door = Door(log, as_engine(frozen), {1: "shop"}.__getitem__, window_ms=0)

    async def send_all() -> list[int]:
        first = asyncio.ensure_future(door.take(1, 1_000, columns("q0", 3, True, "web")))
        while not door._writing:  # its frame is in the log's hands, not yet durable
            await asyncio.sleep(0)
        rest = [door.take(1, 1_000 + k, columns(f"q{k}", 3, True, "web")) for k in range(1, 40)]
        outcomes = await asyncio.gather(first, *rest)
        return [o.accepted for o in outcomes]

    assert asyncio.run(send_all()) == [3] * 40
    records = list(log.read())
    log.close()
    assert 1 < len(records) < 40  # the first alone, the rest in a few frames
    assert records[0].batch.num_rows == 3
    logged = [m for r in records for m in r.batch.column("message_id").to_pylist()]
    assert logged == [f"q{k}-m{i}" for k in range(40) for i in range(3)]
    assert [sum(len(b.rows or []) for b in frame) for frame in handed] == [
        r.batch.num_rows for r in records
    ]
    assert door.acked == records[-1].position  # every request's frame handed over


def test_a_request_repeated_while_its_first_copy_is_written(tmp_path: Path) -> None:
    """R6 within the flight: the copy is acknowledged as a duplicate once the first copy
    is durable, and logged once."""
    log = IngestLog(tmp_path / "log")
    door = Door(log, as_engine(Frozen({1: Settings()}, {})), {1: "shop"}.__getitem__)

    async def twice() -> list[tuple[int, int]]:
        first = door.take(1, 1_000, columns("a", 2, True, "web"))
        again = door.take(1, 1_001, columns("a", 2, True, "web"))
        return [(o.accepted, o.duplicates) for o in await asyncio.gather(first, again)]

    assert asyncio.run(twice()) == [(2, 0), (0, 2)]
    assert sum(r.batch.num_rows for r in log.read()) == 2
    log.close()


def test_exact_path_events_keep_their_text() -> None:
    events = [Event("m1", "u1", "Play", 5, "ios", None, {"a": 1}, raw='{"a": 1}')]
    batch = Batch(1, 10, events)
    (got,) = from_arrow(_combine([("shop", batch, EventColumns.of(events))]), PROJECTS)
    assert got.rows is not None and got.rows.column("properties").to_pylist() == ['{"a": 1}']


def test_repeats_found_while_the_keeper_moves_ids(tmp_path: Path) -> None:
    """Ids move from the door's exact set to the hashed window on the keeper's thread
    while requests keep coming: a repeat sent at any moment of that is still a repeat
    (each id logged once), and once moved the exact set is empty."""
    frozen = Frozen({1: Settings()}, {})

    def applied(frame: list[Batch]) -> None:  # as the engine does once it has applied
        position = frame[-1].position
        assert position is not None
        frozen.applied = position

    frozen.enqueue = applied  # type: ignore[method-assign]
    log = IngestLog(tmp_path / "log")
    door = Door(log, as_engine(frozen), {1: "shop"}.__getitem__)
    rounds = 60

    async def run() -> tuple[int, int]:
        accepted = duplicates = 0
        for r in range(rounds):
            sends = [
                door.take(1, 10_000 + r, columns(f"r{r}-{k}", 4, True, "web")) for k in range(5)
            ]
            # and repeats of the rounds before: in flight, being moved, or in the window
            sends += [
                door.take(1, 10_000 + r, columns(f"r{q}-0", 4, True, "web")) for q in range(r)
            ]
            for outcome in await asyncio.gather(*sends):
                accepted += outcome.accepted
                duplicates += outcome.duplicates
        return accepted, duplicates

    accepted, duplicates = asyncio.run(run())
    assert accepted == rounds * 5 * 4
    assert duplicates == 4 * rounds * (rounds - 1) // 2
    logged = [m for r in log.read() for m in r.batch.column("message_id").to_pylist()]
    assert len(logged) == len(set(logged)) == rounds * 5 * 4
    log.close()
    door._expire(10_000)  # hand the last ones to the keeper
    deadline = time.monotonic() + 10
    while door.seen[1] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not door.seen[1] and len(door.windows[1]) == rounds * 5 * 4
