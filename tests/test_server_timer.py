"""The session timer (R4): with no traffic at all, a session is concluded once the server
clock reaches its last event + timeout, promptly, and not before."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from lull.model import parse_time
from serverproc import LullServer, iso, now_ms

TIMEOUT_MS = 60_000  # the smallest timeout allowed
PROMPT_MS = 5_000  # R4's "promptly"


def ms(text: str) -> int:
    return parse_time(text, "time")


def test_sessions_concluded_when_due_and_not_before(tmp_path: Path) -> None:
    with LullServer(tmp_path / "lull.duckdb") as srv:
        keys = srv.create_project("timer", sessions="on", timeout="1m")
        srv.start()
        now = now_ms()
        # Events already 50-57 s old, so the sessions fall due a few seconds from now.
        plan = {
            "early": [now - 57_000, now - 56_500],  # due at now + 3.5 s
            "later": [now - 55_000, now - 53_000, now - 51_000],  # due at now + 9 s
            "single": [now - 54_000],  # due at now + 6 s
        }
        batch: list[dict[str, Any]] = [
            {"message_id": f"{p}-{i}", "profile_id": p, "name": "Song Played", "ts": ts}
            for p, times in plan.items()
            for i, ts in enumerate(times)
        ]
        # One excluded and one API event: neither extends a session (R1).
        batch.append(
            {"message_id": "x", "profile_id": "early", "name": "UTM Visited", "ts": now - 100}
        )
        got = srv.post_events(keys.web, batch)
        assert got.status_code == 200 and got.json()["accepted"] == len(batch)
        late_api = {"message_id": "y", "profile_id": "single", "name": "Charged", "ts": now}
        assert srv.post_events(keys.server, [late_api]).status_code == 200
        due = {p: times[-1] + TIMEOUT_MS for p, times in plan.items()}

        seen: dict[str, int] = {}  # profile -> wall clock when first seen concluded
        while len(seen) < len(plan) and now_ms() < max(due.values()) + PROMPT_MS + 2_000:
            sessions = srv.sessions(keys)
            answered = now_ms()
            for s in sessions:
                if s["concluded"] and s["profile_id"] not in seen:
                    seen[s["profile_id"]] = answered
                    # concluded before this answer, so this answer came after it fell due
                    assert answered >= due[s["profile_id"]], s
            time.sleep(0.1)

        assert set(seen) == set(plan)
        concluded = {e["profile_id"]: e for e in srv.events(keys, name="Session Concluded")}
        assert set(concluded) == set(plan)
        for profile, times in plan.items():
            sc = concluded[profile]
            assert sc["ts"] == iso(times[-1])  # the time of the session's last event
            raised = ms(sc["received_at"])  # when the server raised it
            assert due[profile] <= raised <= due[profile] + PROMPT_MS, profile
            assert seen[profile] <= due[profile] + PROMPT_MS + 1_000, profile  # poll: ~0.2 s
            length = (times[-1] - times[0]) // 1000
            assert sc["properties"] == {"Session Length": length, "Session ID": sc["session_id"]}
            members = srv.events(keys, session_id=sc["session_id"], name="Song Played")
            assert sorted(ms(e["ts"]) for e in members) == times
            (session,) = srv.sessions(keys, profile_id=profile)
            assert session["session_id"] == sc["session_id"] and session["length_s"] == length

        # After its session is concluded, a new event of the profile starts a new session.
        t = now_ms()
        again = {"message_id": "early-again", "profile_id": "early", "name": "Play", "ts": t}
        assert srv.post_events(keys.web, [again]).json() == {
            "accepted": 1,
            "duplicates": 0,
            "rejected": [],
        }
        sessions = srv.sessions(keys, profile_id="early")
        assert len(sessions) == 2 and not sessions[0]["concluded"]
        latest = sessions[0]["session_id"]
        srv.profile(keys, "early", lambda p: bool(p["latest_session_id"] == latest))
        # Exactly one Session Concluded per session, even after more timer ticks.
        time.sleep(1.0)
        ids = [e["session_id"] for e in srv.events(keys, name="Session Concluded")]
        assert len(ids) == len(set(ids)) == 3
