"""Stop and resume: a new process per part, or a killed import, gives what one import gives."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from lullrun import LULL, export, lull, lull_process, write_events

T0 = 1_790_000_000_000
MIN = 60_000


def history(seed: int, profiles: int = 40, per_profile: int = 30) -> list[dict[str, Any]]:
    """Events as a server would receive them: mostly prompt, some delayed past their due."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    for p in range(profiles):
        t = T0 + rng.randrange(0, 60 * MIN)
        for i in range(per_profile):
            t += rng.choice([rng.randrange(1_000, 5 * MIN), rng.randrange(15 * MIN, 45 * MIN)])
            delay = rng.choice([200, 1_500, 3_000, 40 * MIN]) if rng.random() < 0.1 else 300
            events.append(
                {
                    "message_id": f"p{p}-{i}",
                    "profile_id": f"p{p}",
                    "name": rng.choice(["Song Played", "Screen Viewed", "Notification Sent"]),
                    "ts": t,
                    "received_at": t + delay,
                    "source": rng.choice(["ios", "android", "web", "api"]),
                }
            )
    events.sort(key=lambda e: e["received_at"])
    return events


def snapshot(db: Path, tmp: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return export(db, "events", tmp), export(db, "sessions", tmp)


def test_two_halves_in_two_processes_equal_one_import(tmp_path: Path) -> None:
    events = history(seed=7)
    cut = len(events) // 2
    while events[cut]["received_at"] == events[cut - 1]["received_at"]:
        cut += 1  # events of one instant arrive together
    whole, first, second = (
        write_events(tmp_path / f"{n}.ndjson", part)
        for n, part in (("whole", events), ("first", events[:cut]), ("second", events[cut:]))
    )
    one, two = tmp_path / "one.duckdb", tmp_path / "two.duckdb"
    for db in (one, two):
        assert lull_process(db, "settings", "--sessions", "on").code == 0
    assert lull_process(one, "import", str(whole)).code == 0
    assert lull_process(two, "import", str(first), "--keep-open").code == 0
    halfway = export(two, "sessions", tmp_path)
    assert any(not s["concluded"] for s in halfway)  # some sessions span the cut
    assert lull_process(two, "import", str(second)).code == 0
    assert snapshot(two, tmp_path) == snapshot(one, tmp_path)
    assert any(e["late"] for e in export(one, "events", tmp_path))


def test_a_killed_import_stores_nothing_and_can_be_rerun(tmp_path: Path) -> None:
    events = history(seed=3, profiles=400, per_profile=250)
    path = write_events(tmp_path / "big.ndjson", events)
    db = tmp_path / "killed.duckdb"
    assert lull(db, "settings", "--sessions", "on").code == 0
    proc = subprocess.Popen([LULL, "--db", str(db), "import", str(path)])
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stored = export(db, "events", tmp_path)
    assert len(stored) in (0, len(events) + sum(1 for _ in export(db, "sessions", tmp_path)))
    rerun = lull(db, "import", str(path))
    assert rerun.code == 0, rerun.err
    reference = tmp_path / "reference.duckdb"
    assert lull(reference, "settings", "--sessions", "on").code == 0
    assert lull(reference, "import", str(path)).code == 0
    assert snapshot(db, tmp_path) == snapshot(reference, tmp_path)
