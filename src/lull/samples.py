"""Real sample data as canonical events: the NASA-HTTP log of 1995-08-01."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import msgspec


def nasa_events(tsv: Path) -> Iterator[dict[str, object]]:
    """host -> profile_id, time -> ts, url -> a `Page Viewed` event from the web."""
    with tsv.open(newline="", encoding="utf-8", errors="replace") as f:
        rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(rows)
        col = {name: i for i, name in enumerate(header)}
        for number, row in enumerate(rows, start=2):
            yield {
                "message_id": f"nasa-{number}",
                "profile_id": row[col["host"]],
                "name": "Page Viewed",
                "ts": int(row[col["time"]]) * 1000,
                "source": "web",
                "properties": {
                    "url": row[col["url"]],
                    "method": row[col["method"]],
                    "response": row[col["response"]],
                },
            }


def write_nasa_ndjson(tsv: Path, out: Path) -> int:
    encoder = msgspec.json.Encoder()
    count = 0
    with out.open("wb") as f:
        for event in nasa_events(tsv):
            f.write(encoder.encode(event) + b"\n")
            count += 1
    return count
