"""`lull import` of gzip, Parquet and CSV canonical files and, with --from, of the exports of
Segment, Amplitude, Mixpanel and PostHog, on real DuckDB files through the real command.

Each tool's test writes a small export in the tool's published format and, by hand, the
canonical NDJSON that docs/import.md says it maps to; both are imported into fresh stores,
which must hold the same events (ids, profiles, names, times, sources, properties), the
same sessions and session ids. The identity links and profile properties the export
makes (which no canonical record carries) are checked in the store itself.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lullrun import Result, export, lull, lull_process, write_events
from serverproc import default_project

T0 = 1_793_520_000_000  # 2026-11-01T06:40:00Z
SEC = 1_000
MIN = 60_000


def iso(ms: int, sep: str = "T", zone: str = "Z", digits: int = 3) -> str:
    """Epoch ms as ISO text: `sep` between date and time, `digits` of fraction, `zone`."""
    at = datetime.fromtimestamp(ms // 1000, UTC) + timedelta(milliseconds=ms % 1000)
    fraction = f"{at.microsecond:06d}"[:digits]
    return at.strftime(f"%Y-%m-%d{sep}%H:%M:%S") + (f".{fraction}" if digits else "") + zone


def fresh_db(tmp: Path, name: str) -> Path:
    db = tmp / f"{name}.duckdb"
    assert lull(db, "settings", "--sessions", "on").code == 0
    return db


def run(db: Path, path: Path, *args: str) -> Result:
    return lull(db, "import", str(path), *args)


def imported(tmp: Path, name: str, path: Path, *args: str) -> Path:
    db = fresh_db(tmp, name)
    result = run(db, path, *args)
    assert result.code == 0, result.err
    return db


def store(db: Path, tmp: Path) -> dict[str, Any]:
    """What `lull export` shows of a store: its events (in arrival order, Session
    Concluded included) and its sessions."""
    return {"events": export(db, "events", tmp), "sessions": export(db, "sessions", tmp)}


def links(db: Path) -> list[tuple[str, str, int | None]]:
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute(
            "SELECT anonymous_id, profile_id, since FROM aliases ORDER BY 1, 3"
        ).fetchall()
    return [(str(a), str(p), s) for a, p, s in rows]


def traits(db: Path, profile: str) -> dict[str, Any]:
    with duckdb.connect(str(db), read_only=True) as con:
        row = con.execute(
            "SELECT properties FROM profiles WHERE profile_id = ?", [profile]
        ).fetchone()
    return json.loads(row[0]) if row and row[0] else {}


def canonical(
    mid: str, profile: str, name: str, ts: int, received: int | None, props: dict[str, Any],
    source: str = "web",
) -> dict[str, Any]:  # fmt: skip
    record: dict[str, Any] = {
        "message_id": mid, "profile_id": profile, "name": name, "ts": ts, "source": source,
        "properties": props,
    }  # fmt: skip
    if received is not None:
        record["received_at"] = received
    return record


def same_store(tmp: Path, tool: str, export_file: Path, expected: list[dict[str, Any]],
               *args: str) -> Path:  # fmt: skip
    """Import the tool's export and the canonical records it maps to: the same store."""
    want = store(imported(tmp, "canonical", write_events(tmp / "want.ndjson", expected)), tmp)
    db = imported(tmp, tool, export_file, "--from", tool, *args)
    got = store(db, tmp)
    assert got["events"] == want["events"]
    assert got["sessions"] == want["sessions"]
    assert len(got["sessions"]) >= 2
    return db


# --- Segment: archived NDJSON (its S3 destination), gzip, one message a line ------------------

SKEW = 30 * SEC  # the device's clock is 30 s slow


def segment_message(kind: str, mid: str, at: int, *, anon: str | None = None,
                    user: str | None = None, **fields: Any) -> dict[str, Any]:  # fmt: skip
    """A message as Segment archives it: `at` is the true time; the device's clock is
    SKEW slow, so originalTimestamp and sentAt are SKEW early, and Segment's `timestamp`
    (originalTimestamp + receivedAt - sentAt) is the true time."""
    sent = at - SKEW + 2 * SEC
    received = at + 2 * SEC
    msg: dict[str, Any] = {
        "type": kind, "messageId": mid, "channel": "client", "version": 2,
        "originalTimestamp": iso(at - SKEW), "sentAt": iso(sent), "receivedAt": iso(received),
        "timestamp": iso(at), "context": {"library": {"name": "analytics.js", "version": "2.1"}},
        "integrations": {}, **fields,
    }  # fmt: skip
    if anon:
        msg["anonymousId"] = anon
    if user:
        msg["userId"] = user
    return msg


def segment_messages() -> list[dict[str, Any]]:
    """A device browses, signs in (identify), goes on; another user was aliased."""
    played = {"event": "Song Played"}
    rock = segment_message("track", "s5", T0 + 45 * MIN, user="u-1", **played,
                           properties={"genre": "rock"})  # fmt: skip
    return [
        segment_message("page", "s1", T0, anon="anon-1", name="Home", properties={"path": "/"}),
        segment_message(
            "track", "s2", T0 + 5 * MIN, anon="anon-1", **played, properties={"genre": "jazz"}
        ),
        segment_message(
            "identify", "s3", T0 + 10 * MIN, anon="anon-1", user="u-1", traits={"plan": "pro"}
        ),
        # only the anonymous id, after the identify call: the user's
        segment_message("screen", "s4", T0 + 12 * MIN, anon="anon-1", name="Player", properties={}),
        rock,
        rock,  # a repeat (R6)
        segment_message("alias", "s6", T0 + 50 * MIN, user="u-2", previousId="old-2"),
        segment_message("track", "s7", T0 + 52 * MIN, anon="old-2", event="Liked"),
    ]


def test_segment_archive_maps_like_the_live_api(tmp_path: Path) -> None:
    msgs = segment_messages()
    # received out of order in the file: the import replays them as they were received
    msgs[1], msgs[3] = msgs[3], msgs[1]
    path = tmp_path / "segment-logs" / "src1" / "1793491200000" / "part-0001.gz"
    path.parent.mkdir(parents=True)
    path.write_bytes(gzip.compress("".join(json.dumps(m) + "\n" for m in msgs).encode()))
    r = 2 * SEC
    expected = [
        canonical("s1", "anon-1", "Page Viewed", T0, T0 + r, {"name": "Home", "path": "/"}),
        canonical("s2", "anon-1", "Song Played", T0 + 5 * MIN, T0 + 5 * MIN + r, {"genre": "jazz"}),
        canonical("s3", "u-1", "Identity Set", T0 + 10 * MIN, T0 + 10 * MIN + r, {"plan": "pro"}),
        canonical("s4", "u-1", "Screen Viewed", T0 + 12 * MIN, T0 + 12 * MIN + r, {}),
        canonical("s5", "u-1", "Song Played", T0 + 45 * MIN, T0 + 45 * MIN + r, {"genre": "rock"}),
        canonical("s5", "u-1", "Song Played", T0 + 45 * MIN, T0 + 45 * MIN + r, {"genre": "rock"}),
        canonical("s6", "u-2", "Identity Set", T0 + 50 * MIN, T0 + 50 * MIN + r, {}),
        canonical("s7", "u-2", "Liked", T0 + 52 * MIN, T0 + 52 * MIN + r, {}),
    ]
    db = same_store(tmp_path, "segment", path, expected)
    # the identify call's own time on the device's clock, as the live API ties it
    assert links(db) == [("anon-1", "u-1", T0 + 10 * MIN - SKEW),
                         ("old-2", "u-2", T0 + 50 * MIN - SKEW)]  # fmt: skip
    assert traits(db, "u-1") == {"plan": "pro"}


# --- Amplitude: the Export API's zip of gzipped JSON-lines files, one or more per hour ------


def amplitude_row(n: int, event_type: str, at: int, *, user: str | None = None,
                  device: str | None = None, platform: str = "Web", insert_id: bool = True,
                  **fields: Any) -> dict[str, Any]:  # fmt: skip
    """An event as the Export API writes it (times as "YYYY-MM-DD HH:MM:SS.ffffff", UTC)."""

    def t(ms: int) -> str:
        return iso(ms, " ", "", 6)

    row: dict[str, Any] = {
        "$schema": 12, "amplitude_id": 900 + n, "app": 123456, "uuid": f"0000-uuid-{n}",
        "event_id": n, "event_type": event_type, "user_id": user, "device_id": device,
        "event_time": t(at), "client_event_time": t(at - 5 * SEC),
        "client_upload_time": t(at - 4 * SEC), "server_upload_time": t(at + 1 * SEC),
        "server_received_time": t(at + 1 * SEC), "processed_time": t(at + 3 * SEC),
        "session_id": T0, "platform": platform, "os_name": "Chrome", "event_properties": {},
        "user_properties": {"country": "NZ"}, "group_properties": {}, "groups": {},
        "data": {}, "library": "amplitude-ts/2.0.0", "data_type": "event", **fields,
    }  # fmt: skip
    if insert_id:
        row["$insert_id"] = f"ins-{n}"
    return row


def amplitude_hours() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Two hours' files: a device, then its user after sign-in; an iOS device."""
    hour1 = [
        amplitude_row(
            1, "[Amplitude] Page Viewed", T0, device="dev-1", event_properties={"page": "/"}
        ),
        amplitude_row(2, "Song Played", T0 + 4 * MIN, device="dev-1"),
        # the device signs in: the event names both, which ties dev-1 to u-1 from here on
        amplitude_row(3, "Signed In", T0 + 8 * MIN, device="dev-1", user="u-1"),
        amplitude_row(
            4,
            "$identify",
            T0 + 8 * MIN + 1,
            device="dev-1",
            user="u-1",
            user_properties={"$set": {"plan": "pro"}},
        ),
    ]
    hour2 = [
        amplitude_row(5, "Song Played", T0 + 70 * MIN, device="dev-1", insert_id=False),
        amplitude_row(
            6, "Song Played", T0 + 71 * MIN, device="ios-9", platform="iOS", session_id=-1
        ),
    ]
    return hour1, hour2


def test_amplitude_export_zip_maps_like_the_live_api(tmp_path: Path) -> None:
    hour1, hour2 = amplitude_hours()
    path = tmp_path / "export.zip"
    with zipfile.ZipFile(path, "w") as z:
        for name, rows in (("123456_2026-11-01_6#0.json.gz", hour1),
                           ("123456_2026-11-01_7#0.json.gz", hour2)):  # fmt: skip
            text = "".join(json.dumps(r) + "\n" for r in rows)
            z.writestr(f"123456/{name}", gzip.compress(text.encode()))
    s = {"Amplitude Session ID": T0}
    expected = [
        canonical("ins-1", "dev-1", "Page Viewed", T0, T0 + SEC, {"page": "/", **s}),
        canonical("ins-2", "dev-1", "Song Played", T0 + 4 * MIN, T0 + 4 * MIN + SEC, s),
        canonical("ins-3", "u-1", "Signed In", T0 + 8 * MIN, T0 + 8 * MIN + SEC, s),
        canonical("ins-4", "u-1", "Identity Set", T0 + 8 * MIN + 1, T0 + 8 * MIN + 1 + SEC, s),
        canonical("amp-0000-uuid-5", "u-1", "Song Played", T0 + 70 * MIN, T0 + 70 * MIN + SEC, s),
        canonical(
            "ins-6", "ios-9", "Song Played", T0 + 71 * MIN, T0 + 71 * MIN + SEC, {}, source="ios"
        ),
    ]
    db = same_store(tmp_path, "amplitude", path, expected)
    assert links(db) == [("dev-1", "u-1", T0 + 8 * MIN)]
    assert traits(db, "u-1") == {"plan": "pro"}


def test_a_device_shared_by_two_users_is_tied_as_the_live_server_ties_it(
    tmp_path: Path,
) -> None:
    """Links applied in the order of their times, whatever the file's order: a device
    signed in as u-a, then u-b, then u-a again is tied three times (the last counts);
    the repeats within a run change nothing."""
    rows = [
        amplitude_row(4, "E", T0 + 30 * MIN, device="dev-9", user="u-a"),
        amplitude_row(1, "E", T0, device="dev-9", user="u-a"),
        amplitude_row(2, "E", T0 + MIN, device="dev-9", user="u-a"),
        amplitude_row(3, "E", T0 + 20 * MIN, device="dev-9", user="u-b"),
        amplitude_row(5, "E", T0 + 31 * MIN, device="dev-9", user="u-a"),
        amplitude_row(6, "E", T0 + 40 * MIN, device="dev-9"),
    ]
    path = tmp_path / "amplitude.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    db = imported(tmp_path, "shared", path, "--from", "amplitude")
    assert links(db) == [("dev-9", "u-a", T0), ("dev-9", "u-b", T0 + 20 * MIN),
                         ("dev-9", "u-a", T0 + 30 * MIN)]  # fmt: skip
    last = {e["message_id"]: e["profile_id"] for e in export(db, "events", tmp_path)}["ins-6"]
    assert last == "u-a"


# --- Mixpanel: the raw export API's JSON lines ---------------------------------------------


def mixpanel_row(name: str, at_s: int, distinct: str, insert_id: str,
                 **props: Any) -> dict[str, Any]:  # fmt: skip
    return {
        "event": name,
        "properties": {
            "time": at_s, "distinct_id": distinct, "$insert_id": insert_id,
            "mp_processing_time_ms": at_s * 1000 + 1500, "mp_lib": "web", "$os": "Mac OS X",
            **props,
        },
    }  # fmt: skip


def test_mixpanel_raw_export_maps_by_analogy(tmp_path: Path) -> None:
    t = T0 // 1000
    rows = [
        mixpanel_row("$mp_web_page_view", t, "$device:d1", "i1", current_url_path="/"),
        mixpanel_row("Song Played", t + 300, "$device:d1", "i2", genre="jazz"),
        # Original ID Merge: $identify ties the anonymous distinct_id to the user
        mixpanel_row("$identify", t + 600, "u-1", "i3", **{"$anon_distinct_id": "$device:d1"}),
        mixpanel_row("Song Played", t + 660, "$device:d1", "i4"),
        # Simplified ID Merge: an event with $device_id and $user_id ties $device:<id>
        mixpanel_row(
            "Song Played", t + 4000, "u-2", "i5", **{"$device_id": "d2", "$user_id": "u-2"}
        ),
        mixpanel_row("Song Played", t + 4100, "$device:d2", "i6", **{"$device_id": "d2"}),
        mixpanel_row("App Open", t + 4200, "u-3", "i7", **{"$os": "Android"}),
    ]
    path = tmp_path / "export.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def props(row: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in row["properties"].items() if k not in ("time", "distinct_id")}

    def want(i: int, profile: str, name: str, source: str = "web") -> dict[str, Any]:
        at = rows[i]["properties"]["time"] * 1000
        return canonical(f"i{i + 1}", profile, name, at, at + 1500, props(rows[i]), source)

    expected = [
        want(0, "$device:d1", "Page Viewed"),
        want(1, "$device:d1", "Song Played"),
        want(2, "u-1", "Identity Set"),
        want(3, "u-1", "Song Played"),
        want(4, "u-2", "Song Played"),
        want(5, "u-2", "Song Played"),
        want(6, "u-3", "App Open", "android"),
    ]
    db = same_store(tmp_path, "mixpanel", path, expected)
    assert links(db) == [("$device:d1", "u-1", (t + 600) * 1000),
                         ("$device:d2", "u-2", (t + 4000) * 1000)]  # fmt: skip


# --- PostHog: the events export, as JSON lines and as CSV ---------------------------------


def posthog_rows() -> list[dict[str, Any]]:
    def row(n: int, event: str, at: int, distinct: str, **props: Any) -> dict[str, Any]:
        return {
            "uuid": f"0192-uuid-{n}", "event": event, "distinct_id": distinct,
            "person_id": f"person-{distinct}", "properties": {"$lib": "web", **props},
            "person_properties": {}, "elements_chain": "",
            "timestamp": iso(at, zone="+00:00", digits=6),
            "created_at": iso(at + 900, zone="+00:00", digits=6),
            "_inserted_at": iso(at + 5000, zone="+00:00", digits=6),
        }  # fmt: skip

    return [
        row(1, "$pageview", T0, "anon-7", **{"$current_url": "https://a.example/"}),
        row(2, "Song Played", T0 + 3 * MIN, "anon-7", genre="jazz"),
        row(
            3,
            "$identify",
            T0 + 6 * MIN,
            "u-7",
            **{"$anon_distinct_id": "anon-7", "$set": {"email": "a@b.c"}},
        ),
        row(4, "Song Played", T0 + 7 * MIN, "anon-7"),
        row(5, "$screen", T0 + 60 * MIN, "u-8", **{"$lib": "posthog-ios", "$screen_name": "P"}),
        row(6, "Song Played", T0 + 61 * MIN, "u-8", **{"$lib": "posthog-ios"}),
    ]


def posthog_expected(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    names = {"$pageview": "Page Viewed", "$screen": "Screen Viewed", "$identify": "Identity Set"}
    profiles = {"anon-7": ["anon-7", "anon-7", "u-7", "u-7"]}
    out = []
    for i, r in enumerate(rows):
        profile = profiles["anon-7"][i] if i < 4 else r["distinct_id"]
        at = T0 + [0, 3, 6, 7, 60, 61][i] * MIN
        props = {k: v for k, v in r["properties"].items() if k not in ("$set",)}
        source = "ios" if props["$lib"] == "posthog-ios" else "web"
        out.append(canonical(r["uuid"], profile, names.get(r["event"], r["event"]), at, at + 900,
                             props, source))  # fmt: skip
    return out


def test_posthog_jsonl_export_maps_like_the_live_api(tmp_path: Path) -> None:
    rows = posthog_rows()
    path = tmp_path / "posthog-events.jsonl.gz"
    path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    db = same_store(tmp_path, "posthog", path, posthog_expected(rows))
    assert links(db) == [("anon-7", "u-7", T0 + 6 * MIN)]
    assert traits(db, "u-7") == {"email": "a@b.c"}


def test_posthog_csv_export_maps_like_its_jsonl(tmp_path: Path) -> None:
    """PostHog's CSV: properties as JSON text, times without a zone (UTC); a column of
    one property (`properties.genre`) adds it."""
    rows = posthog_rows()
    text = io.StringIO()
    fields = ["uuid", "event", "distinct_id", "properties", "timestamp", "created_at",
              "properties.genre"]  # fmt: skip
    out = csv.DictWriter(text, fields, extrasaction="ignore")
    out.writeheader()
    for r in rows:
        genre = r["properties"].pop("genre", None)
        cells = {**r, "properties": json.dumps(r["properties"]), "properties.genre": genre or ""}
        for key in ("timestamp", "created_at"):
            cells[key] = cells[key].replace("T", " ").removesuffix("+00:00")
        out.writerow(cells)
        if genre:
            r["properties"]["genre"] = genre
    path = tmp_path / "posthog-events.csv"
    path.write_text(text.getvalue())
    db = same_store(tmp_path, "posthog", path, posthog_expected(rows))
    assert links(db) == [("anon-7", "u-7", T0 + 6 * MIN)]


def test_posthog_parquet_export_maps_like_its_jsonl(tmp_path: Path) -> None:
    """PostHog's batch export in Parquet (its default): properties as JSON text, times as
    TIMESTAMP (microseconds, UTC)."""
    rows = posthog_rows()

    def stamp(text: str) -> datetime:
        return datetime.fromisoformat(text)

    table = pa.table({
        "uuid": [r["uuid"] for r in rows],
        "event": [r["event"] for r in rows],
        "distinct_id": [r["distinct_id"] for r in rows],
        "person_id": [r["person_id"] for r in rows],
        "properties": [json.dumps(r["properties"]) for r in rows],
        "person_properties": [json.dumps(r["person_properties"]) for r in rows],
        "elements_chain": [r["elements_chain"] for r in rows],
        "timestamp": pa.array([stamp(r["timestamp"]) for r in rows], pa.timestamp("us", "UTC")),
        "created_at": pa.array([stamp(r["created_at"]) for r in rows], pa.timestamp("us", "UTC")),
        "_inserted_at": pa.array([stamp(r["_inserted_at"]) for r in rows], pa.timestamp("us")),
    })  # fmt: skip
    path = tmp_path / "export-0.parquet"
    pq.write_table(table, path)
    db = same_store(tmp_path, "posthog", path, posthog_expected(rows))
    assert links(db) == [("anon-7", "u-7", T0 + 6 * MIN)]


def test_properties_set_by_an_anonymous_id_go_to_its_profile(tmp_path: Path) -> None:
    """A `$set` sent with the anonymous id after the `$identify` that ties it (though
    earlier in the file) sets the user's properties, after the identify call's."""
    rows = [
        {"uuid": "x2", "event": "$set", "distinct_id": "anon-5", "timestamp": iso(T0 + MIN),
         "created_at": iso(T0 + MIN + SEC), "properties": {"$set": {"plan": "max"}}},
        {"uuid": "x1", "event": "$identify", "distinct_id": "u-5", "timestamp": iso(T0),
         "created_at": iso(T0 + SEC),
         "properties": {"$anon_distinct_id": "anon-5", "$set": {"plan": "pro"}}},
    ]  # fmt: skip
    path = tmp_path / "posthog.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    db = imported(tmp_path, "set", path, "--from", "posthog")
    profiles = {e["message_id"]: e["profile_id"] for e in export(db, "events", tmp_path)}
    assert (profiles["x1"], profiles["x2"]) == ("u-5", "u-5")
    assert traits(db, "u-5") == {"plan": "max"}


# --- canonical records as gzip, Parquet and CSV --------------------------------------------


def canonical_events() -> list[dict[str, Any]]:
    out = []
    for i in range(12):
        profile = f"u{i % 3}"
        at = T0 + i * 7 * MIN + (i % 3) * SEC
        out.append(canonical(f"m{i}", profile, "Song Played", at, at + 2 * SEC,
                             {"n": i, "tags": ["a", "b"], "nested": {"x": 1.5}},
                             source=["web", "ios", "android"][i % 3]))  # fmt: skip
    out[4]["sent_at"] = out[4]["ts"] + 5 * SEC  # a clock fix (R5)
    out[5]["ts"] = iso(out[5]["ts"])  # ISO text and epoch ms, mixed
    out[6]["properties"] = {}
    del out[7]["received_at"]  # arrives at the import's time
    out.append(dict(out[2]))  # a repeat (R6)
    return out


def test_gzip_parquet_and_csv_give_the_canonical_store(tmp_path: Path) -> None:
    events = canonical_events()
    plain = write_events(tmp_path / "canon.ndjson", events)
    want = store(imported(tmp_path, "plain", plain), tmp_path)

    gz = tmp_path / "canon.ndjson.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))

    columns = ["message_id", "profile_id", "name", "ts", "source", "received_at", "sent_at",
               "properties"]  # fmt: skip

    def cell(e: dict[str, Any], c: str) -> Any:
        v = e.get(c)
        return json.dumps(v) if c == "properties" else v if v is None else str(v)

    table = pa.table({c: pa.array([cell(e, c) for e in events], pa.string()) for c in columns})
    parquet = tmp_path / "canon.parquet"
    pq.write_table(table, parquet)
    # Parquet with typed columns: times as TIMESTAMP and epoch ms, properties as a struct
    typed = pa.table({
        "message_id": [e["message_id"] for e in events],
        "profile_id": [e["profile_id"] for e in events],
        "name": [e["name"] for e in events],
        "ts": pa.array([_ms(e["ts"]) for e in events], pa.timestamp("ms", tz="UTC")),
        "source": [e["source"] for e in events],
        "received_at": pa.array([e.get("received_at") for e in events], pa.int64()),
        "sent_at": pa.array([e.get("sent_at") for e in events], pa.int64()),
        "properties": [json.dumps(e["properties"]) for e in events],
    })  # fmt: skip
    typed_parquet = tmp_path / "typed.parquet"
    pq.write_table(typed, typed_parquet)

    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(columns)
    for e in events:
        writer.writerow(["" if cell(e, c) is None else cell(e, c) for c in columns])
    csv_path = tmp_path / "canon.csv"
    csv_path.write_text(text.getvalue())
    csv_gz = tmp_path / "canon.csv.gz"
    csv_gz.write_bytes(gzip.compress(text.getvalue().encode()))

    for name, path in (("gz", gz), ("parquet", parquet), ("typed", typed_parquet),
                       ("csv", csv_path), ("csvgz", csv_gz)):  # fmt: skip
        got = store(imported(tmp_path, name, path), tmp_path)
        assert arrived_now(got) == arrived_now(want), name
    assert len(want["sessions"]) >= 3
    assert not list(tmp_path.glob(".lull-import-*")), "the converted files are deleted"


def arrived_now(found: dict[str, Any]) -> dict[str, Any]:
    """A store's export without the arrival time of m7, which came at the import's time."""
    for e in found["events"]:
        if e["message_id"] == "m7":
            e["received_at"] = "the import's time"
    return found


def _ms(value: int | str) -> int:
    return (
        value
        if isinstance(value, int)
        else int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
    )


def test_stdin_takes_exports_and_tables(tmp_path: Path) -> None:
    """`-` (stdin) takes a tool's export and a canonical CSV too (told by its content), and
    names itself `stdin` in errors."""
    row = mixpanel_row("Song Played", T0 // 1000, "u-1", "i1")
    db = fresh_db(tmp_path, "stdin")
    ok = lull_process(db, "import", "-", "--from", "mixpanel", stdin=json.dumps(row) + "\n")
    assert ok.code == 0, ok.err
    assert ok.json()["imported"] == 1
    bad = lull_process(db, "import", "-", "--from", "mixpanel", stdin='{"event": "x"}\n')
    assert bad.code != 0
    assert "stdin: line 1: field 'properties' must be a JSON object" in bad.err
    table = "message_id,profile_id,name,ts,source\nc1,u-1,E,1793520000000,web\nc2,u-1,E,x,web\n"
    bad = lull_process(db, "import", "-", stdin=table)
    assert bad.code != 0
    assert "stdin: row 2: field 'ts': 'x' is not an ISO-8601 time" in bad.err
    ok = lull_process(db, "import", "-", stdin=table.replace(",x,", ",1793520060000,"))
    assert ok.code == 0, ok.err
    assert ok.json()["imported"] == 2


# --- bad input: named by file, line or row, and field; nothing stored ----------------------


@pytest.mark.parametrize(
    ("tool", "name", "content", "message"),
    [
        ("segment", "s.json", '{"type": "track", "userId": "u", "event": "E", '
         '"receivedAt": "2026-11-01T10:00:00Z"}\n',
         "s.json: line 1: field 'messageId' is missing"),
        ("amplitude", "a.json", '\n{"event_type": "E", "user_id": "u"}\n',
         "a.json: line 2: field 'event_time' is missing"),
        ("mixpanel", "m.json", '{"event": "E", "properties": {"time": "soon"}}\n',
         "m.json: line 1: field 'properties.time' must be epoch seconds or milliseconds"),
        ("posthog", "p.csv", "uuid,event,distinct_id,timestamp\n1,E,u,2026-11-01 10:00\n"
         "2,,u,2026-11-01 10:01\n", "p.csv: row 2 (line 3): field 'event' must be a non-empty"),
        ("posthog", "p.jsonl", '{"uuid": "1", "event": "E", "distinct_id": "u", '
         '"timestamp": "yesterday"}\n', "p.jsonl: line 1: field 'timestamp': 'yesterday'"),
        (None, "c.csv", "message_id,profile_id,name,ts,source\nm1,u,E,1793520000000,web\n"
         "m2,u,E,1793520000000,tv\n", "c.csv: row 2: field 'source': 'tv' is not one of"),
        (None, "c2.csv", "message_id,name,ts,source\nm1,E,1,web\n",
         "c2.csv: no column 'profile_id'"),
    ],
)  # fmt: skip
def test_bad_input_is_named_and_stores_nothing(
    tmp_path: Path, tool: str | None, name: str, content: str, message: str
) -> None:
    db = fresh_db(tmp_path, "bad")
    good = canonical("g1", "u", "E", T0, None, {})
    assert run(db, write_events(tmp_path / "good.ndjson", [good])).code == 0
    before = store(db, tmp_path)
    path = tmp_path / name
    path.write_text(content)
    result = run(db, path, *(["--from", tool] if tool else []))
    assert result.code != 0
    assert message in result.err, result.err
    assert store(db, tmp_path) == before
    assert not list(tmp_path.glob(".lull-import-*"))


def test_a_bad_member_of_an_amplitude_zip_is_named(tmp_path: Path) -> None:
    path = tmp_path / "export.zip"
    good = json.dumps(amplitude_row(1, "E", T0, user="u")) + "\n"
    bad = json.dumps(amplitude_row(2, "E", T0, user="u", event_time="then")) + "\n"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("1/1_2026-11-01_6#0.json.gz", gzip.compress(good.encode()))
        z.writestr("1/1_2026-11-01_7#0.json.gz", gzip.compress((good + bad).encode()))
    result = run(fresh_db(tmp_path, "zip"), path, "--from", "amplitude")
    assert result.code != 0
    assert "export.zip: 1/1_2026-11-01_7#0.json.gz: line 2: field 'event_time'" in result.err


def test_a_bad_row_of_a_posthog_parquet_is_named(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"uuid": ["1", "2"], "event": ["E", None],
                             "distinct_id": ["u", "u"], "timestamp": [T0, T0]}), path)  # fmt: skip
    result = run(fresh_db(tmp_path, "pq"), path, "--from", "posthog")
    assert result.code != 0
    assert "p.parquet: row 2: field 'event' must be a non-empty string" in result.err


def test_an_export_of_known_users_only(tmp_path: Path) -> None:
    """No anonymous id, no link: every event on its user, in the order received."""
    msgs = [
        segment_message("track", "k2", T0 + MIN, user="u-1", event="E"),
        segment_message("track", "k1", T0, user="u-1", event="E"),
    ]
    path = tmp_path / "users.json"
    path.write_text("".join(json.dumps(m) + "\n" for m in msgs))
    db = imported(tmp_path, "users", path, "--from", "segment")
    got = [(e["message_id"], e["profile_id"]) for e in export(db, "events", tmp_path)]
    assert got[:2] == [("k1", "u-1"), ("k2", "u-1")]
    assert links(db) == []


def test_source_goes_with_from(tmp_path: Path) -> None:
    events = write_events(tmp_path / "e.ndjson", [canonical("m", "u", "E", T0, None, {})])
    result = run(fresh_db(tmp_path, "src"), events, "--source", "api")
    assert result.code != 0
    assert "--source goes with --from" in result.err


def test_source_names_the_key_the_export_comes_as(tmp_path: Path) -> None:
    """--source api: a server's events (R1 gives them no session), as with an api key."""
    row = mixpanel_row("Invoice Sent", T0 // 1000, "u-1", "i1")
    path = tmp_path / "m.json"
    path.write_text(json.dumps(row) + "\n")
    db = imported(tmp_path, "api", path, "--from", "mixpanel", "--source", "api")
    (event,) = export(db, "events", tmp_path)
    assert (event["source"], event["session_id"]) == ("api", None)


# --- the same events sent live: the same ids, profiles, names, sources, properties, links --


def test_the_live_endpoints_store_what_the_import_stores(tmp_path: Path) -> None:
    """The Segment, Amplitude and PostHog messages behind the exports above, sent to a live
    server as their SDKs send them (in the order received), store the same events (but
    for their times, which the live server takes from its own clock), the same identity
    links and the same profile properties as the import of the exports."""
    segment_msgs = sorted(segment_messages(), key=lambda m: str(m["receivedAt"]))
    hour1, hour2 = amplitude_hours()
    amplitude_rows = [r for r in hour1 + hour2 if "$insert_id" in r]  # live: a content hash
    posthog_events = posthog_rows()

    def utc(text: str) -> int:
        return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)

    def pick(row: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
        return {k: row[k] for k in fields}

    (tmp_path / "live").mkdir()
    with default_project(tmp_path / "live") as (server, keys):
        batch = [
            {**{k: v for k, v in m.items() if k not in ("receivedAt", "timestamp")},
             "timestamp": m["originalTimestamp"]}
            for m in segment_msgs
        ]  # fmt: skip
        got = server.http.post("/v1/batch", json={"writeKey": keys.web, "batch": batch})
        assert got.status_code == 200, got.text
        amplitude_fields = ("event_type", "user_id", "device_id", "event_properties",
                            "user_properties", "session_id", "platform", "os_name")  # fmt: skip
        events = [
            {
                **pick(r, amplitude_fields),
                "time": utc(r["event_time"]),
                "insert_id": r["$insert_id"],
            }
            for r in amplitude_rows
        ]
        got = server.http.post("/2/httpapi", json={"api_key": keys.web, "events": events})
        assert got.status_code == 200, got.text
        posthog_fields = ("event", "distinct_id", "uuid", "properties", "timestamp")
        capture = [pick(r, posthog_fields) for r in posthog_events]
        got = server.http.post("/batch/", json={"api_key": keys.web, "batch": capture})
        assert got.status_code == 200, got.text
        assert server.stop() == 0  # as a service manager stops it: all of it written
    live_db = tmp_path / "live" / "lull.duckdb"

    db = fresh_db(tmp_path, "imports")
    files = {
        "segment": tmp_path / "segment.json",
        "amplitude": tmp_path / "amplitude.json",
        "posthog": tmp_path / "posthog.jsonl",
    }
    files["segment"].write_text("".join(json.dumps(m) + "\n" for m in segment_msgs))
    files["amplitude"].write_text("".join(json.dumps(r) + "\n" for r in amplitude_rows))
    files["posthog"].write_text("".join(json.dumps(r) + "\n" for r in posthog_events))
    for tool, path in files.items():
        result = run(db, path, "--from", tool)
        assert result.code == 0, result.err

    def what(found: Path) -> dict[str, tuple[Any, ...]]:
        return {
            e["message_id"]: (e["profile_id"], e["name"], e["source"], e["properties"])
            for e in export(found, "events", tmp_path)
            if e["name"] != "Session Concluded"
        }

    assert what(db) == what(live_db)
    assert len(what(db)) == 7 + 5 + 6
    assert links(db) == links(live_db)
    assert [a for a, _p, _s in links(db)] == ["anon-1", "anon-7", "dev-1", "old-2"]
    for user in ("u-1", "u-7"):
        assert traits(db, user) == traits(live_db, user), user
