"""The store's tables. Bump VERSION and add a step to MIGRATIONS when they change."""

from __future__ import annotations

VERSION = 3

# Session Concluded events are not stored twice: they are rows of `sessions` (concluded)
# and appear as events through the `all_events` view, so a re-sessionization replaces
# them by replacing sessions.
SCHEMA = """
CREATE TABLE IF NOT EXISTS lull_meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS projects (
    id INTEGER PRIMARY KEY,
    name VARCHAR NOT NULL UNIQUE,
    sessions_enabled BOOLEAN NOT NULL,
    timeout_ms BIGINT NOT NULL,
    excluded VARCHAR[] NOT NULL,
    timezone VARCHAR NOT NULL,
    created_at BIGINT NOT NULL,
    board_created_at BIGINT,
    next_seq BIGINT NOT NULL,
    next_skey BIGINT NOT NULL,
    account_id VARCHAR,              -- the CleverTap-style account id
    allowed_origins VARCHAR[] NOT NULL DEFAULT ['*']  -- pages that may send (CORS)
);
-- Secrets are stored as SHA-256 of a random 192-bit token (kind: web, ios, android,
-- server, passcode, read, admin).
CREATE TABLE IF NOT EXISTS project_keys (
    project_id INTEGER NOT NULL,
    kind VARCHAR NOT NULL,
    key_hash VARCHAR NOT NULL,
    created_at BIGINT NOT NULL
);
-- An anonymous id (a device) that an identify call tied to a known profile, from the
-- identify call's time on (`since`; NULL: since always). The last row of an id counts.
CREATE TABLE IF NOT EXISTS aliases (
    project_id INTEGER NOT NULL,
    anonymous_id VARCHAR NOT NULL,
    profile_id VARCHAR NOT NULL,
    since BIGINT                    -- epoch ms
);
-- Message ids and session ids are random: stored uncompressed, since DuckDB's analysis of
-- them for compression costs a fifth of an import's writes and saves little (issue 10).
-- (A store made before keeps its columns as they were.)
CREATE TABLE IF NOT EXISTS events (
    project_id INTEGER NOT NULL,
    seq BIGINT NOT NULL,            -- arrival order within the project
    message_id VARCHAR NOT NULL USING COMPRESSION uncompressed,
    profile_id VARCHAR NOT NULL,
    name VARCHAR NOT NULL,
    ts BIGINT NOT NULL,             -- event time, epoch ms, after R5's clock fix
    source VARCHAR NOT NULL,
    received_at BIGINT NOT NULL,
    properties JSON
);
-- Which session each eligible event belongs to (or that it came late). Kept apart from
-- the events, which never change, so a re-sessionization rewrites two narrow tables.
CREATE TABLE IF NOT EXISTS event_sessions (
    project_id INTEGER NOT NULL,
    seq BIGINT NOT NULL,
    skey BIGINT,                    -- sessions.skey; NULL when late
    late BOOLEAN NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    project_id INTEGER NOT NULL,
    skey BIGINT NOT NULL,           -- internal key, unique within the project
    session_id VARCHAR NOT NULL USING COMPRESSION uncompressed,  -- the CT Session ID
    profile_id VARCHAR NOT NULL,
    first_ts BIGINT NOT NULL,
    last_ts BIGINT NOT NULL,
    events BIGINT NOT NULL,
    source VARCHAR NOT NULL,
    concluded BOOLEAN NOT NULL,
    concluded_at BIGINT
);
-- Each concluded session with its first and last event and the end of its profile's
-- previous session (store/ends.py), for the board's entry and exit events, interval and
-- breakdowns; the first eight columns are the session's.
CREATE TABLE IF NOT EXISTS session_ends (
    project_id INTEGER NOT NULL,
    skey BIGINT NOT NULL,
    profile_id VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    concluded BOOLEAN NOT NULL,
    first_ts BIGINT NOT NULL,
    last_ts BIGINT NOT NULL,
    events BIGINT NOT NULL,
    prev_last_ts BIGINT,            -- last_ts of the profile's previous session, if any
    first_seq BIGINT NOT NULL,      -- events.seq of the first event (R2 order)
    first_name VARCHAR NOT NULL,
    last_name VARCHAR NOT NULL,
    first_properties JSON           -- the first event's properties
);
CREATE TABLE IF NOT EXISTS profiles (
    project_id INTEGER NOT NULL,
    profile_id VARCHAR NOT NULL,
    latest_session_id VARCHAR,
    latest_first_ts BIGINT,
    horizon BIGINT,
    first_seen BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    properties JSON
);
-- Accounts of the web pages (store/users.py): a scrypt hash, never the password.
CREATE TABLE IF NOT EXISTS users (
    name VARCHAR PRIMARY KEY,
    password_hash VARCHAR NOT NULL,
    created_at BIGINT NOT NULL
);
-- When each user's sessions last ended (signing out, a new password): a session cookie
-- made before then no longer opens anything.
CREATE TABLE IF NOT EXISTS signouts (
    user_name VARCHAR PRIMARY KEY,
    ended_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS memberships (
    user_name VARCHAR NOT NULL,
    project_id INTEGER NOT NULL,
    role VARCHAR NOT NULL           -- admin | viewer
);
-- Segments (docs/segments.md): a saved definition of profiles, past-behaviour or live
-- (kind); a live one POSTs to `webhook`, signed with `secret`.
CREATE TABLE IF NOT EXISTS segments (
    project_id INTEGER NOT NULL,
    name VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,          -- past | live
    definition JSON NOT NULL,
    webhook VARCHAR,
    secret VARCHAR,
    created_at BIGINT NOT NULL
);
-- Each attempt to deliver a live segment's webhook (segments/live.py).
CREATE TABLE IF NOT EXISTS segment_deliveries (
    project_id INTEGER NOT NULL,
    segment VARCHAR NOT NULL,
    message_id VARCHAR,             -- the event's; NULL for a note of dropped deliveries
    profile_id VARCHAR,
    attempt INTEGER NOT NULL,
    attempted_at BIGINT NOT NULL,  -- epoch ms
    status INTEGER,                 -- the receiver's HTTP status, if it answered
    outcome VARCHAR NOT NULL,       -- delivered | retrying | failed | dropped
    error VARCHAR
);
-- Changes of the settings that define a session (timeout, excluded events), and
-- rebuilds, in the order made: a change with no rebuild after it leaves the days before
-- it with sessions of the old definition: the board marks it (store/projects.py).
-- A store made before it gets it when next opened for writing (CREATE ... IF NOT EXISTS).
CREATE TABLE IF NOT EXISTS settings_history (
    project_id INTEGER NOT NULL,
    changed_at BIGINT NOT NULL,     -- epoch ms
    old_timeout_ms BIGINT NOT NULL,
    timeout_ms BIGINT NOT NULL,
    excluded_changed BOOLEAN NOT NULL,
    rebuilt BOOLEAN NOT NULL        -- a rebuild under the settings then in force
);
CREATE OR REPLACE VIEW all_events AS
    SELECT e.project_id, e.seq, e.message_id, e.profile_id, e.name, e.ts, e.source,
           e.received_at, e.properties, s.session_id, coalesce(es.late, false) AS late
    FROM events e
    LEFT JOIN event_sessions es ON es.project_id = e.project_id AND es.seq = e.seq
    LEFT JOIN sessions s ON s.project_id = es.project_id AND s.skey = es.skey
    UNION ALL
    SELECT project_id, NULL AS seq, 'sc-' || session_id AS message_id, profile_id,
           'Session Concluded' AS name, last_ts AS ts, source, concluded_at AS received_at,
           json_object('Session Length', (last_ts - first_ts) // 1000,
                       'Session ID', session_id) AS properties,
           session_id, false AS late
    FROM sessions WHERE concluded;
"""

MIGRATIONS: dict[int, str] = {
    2: "ALTER TABLE projects ADD COLUMN allowed_origins VARCHAR[] NOT NULL DEFAULT ['*']",
    3: "ALTER TABLE aliases ADD COLUMN IF NOT EXISTS since BIGINT",
}
