-- Tether store, SQLite schema v3: commands, their transitions, artifacts.
-- Times are INTEGER milliseconds since the Unix epoch (UTC).

-- One row per command a user submitted (flow 2). `id` is the user's message_id, the
-- idempotency key; `state` is the current state of the state machine, changed only by
-- conditional UPDATEs that also append a row to command_transitions.
CREATE TABLE commands (
    id               TEXT    NOT NULL PRIMARY KEY,
    device_id        TEXT    NOT NULL REFERENCES devices (id),
    origin_user_id   TEXT    NOT NULL REFERENCES users (id),
    method           TEXT    NOT NULL,
    params           TEXT    NOT NULL,            -- JSON object
    priority         TEXT    NOT NULL,
    sensitivity      TEXT    NOT NULL,
    trace_id         TEXT    NOT NULL,
    user_sig         TEXT,
    request_hash     TEXT    NOT NULL,
    simulate         TEXT,
    initial_state    TEXT    NOT NULL,
    state            TEXT    NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER,
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    result           TEXT,                        -- the command_result body, JSON
    error_code       INTEGER,
    viewed_at        INTEGER
) STRICT;

CREATE INDEX commands_device ON commands (device_id, created_at);
CREATE INDEX commands_state_retry ON commands (state, next_attempt_at);
CREATE INDEX commands_state_expiry ON commands (state, expires_at);

CREATE TABLE command_transitions (
    id          INTEGER NOT NULL PRIMARY KEY,
    command_id  TEXT    NOT NULL REFERENCES commands (id),
    from_state  TEXT,
    to_state    TEXT    NOT NULL,
    at          INTEGER NOT NULL,
    detail      TEXT    NOT NULL                  -- JSON object
) STRICT;

CREATE INDEX command_transitions_command ON command_transitions (command_id, id);

-- Uploads a device asked for (POST /api/artifact/request) and what arrived.
CREATE TABLE artifacts (
    id            TEXT    NOT NULL PRIMARY KEY,
    device_id     TEXT    NOT NULL REFERENCES devices (id),
    command_id    TEXT    NOT NULL REFERENCES commands (id),
    object_key    TEXT    NOT NULL UNIQUE,
    content_type  TEXT    NOT NULL,
    max_bytes     INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    uploaded_at   INTEGER,
    size_bytes    INTEGER,
    sha256        TEXT
) STRICT;

CREATE INDEX artifacts_command ON artifacts (command_id);
