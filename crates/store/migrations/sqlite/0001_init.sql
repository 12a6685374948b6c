-- Tether store, SQLite schema v1.
-- Times are INTEGER milliseconds since the Unix epoch (UTC). Tables are STRICT so a value
-- of the wrong type is refused instead of silently stored.

CREATE TABLE users (
    id              TEXT    NOT NULL PRIMARY KEY,
    email           TEXT    NOT NULL UNIQUE,   -- stored lowercased by the store
    password_hash   TEXT    NOT NULL,
    role            TEXT    NOT NULL,
    mobile_pub      TEXT,
    totp_secret     BLOB,                      -- sealed by the caller
    totp_enabled    INTEGER NOT NULL DEFAULT 0,
    totp_last_step  INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL
) STRICT;

CREATE INDEX users_role ON users (role);

CREATE TABLE refresh_tokens (
    token_hash  TEXT    NOT NULL PRIMARY KEY,
    family_id   TEXT    NOT NULL,
    user_id     TEXT    NOT NULL REFERENCES users (id),
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER,
    revoked     INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);

CREATE TABLE passkeys (
    credential_id  TEXT    NOT NULL PRIMARY KEY,
    user_id        TEXT    NOT NULL REFERENCES users (id),
    data           TEXT    NOT NULL,
    created_at     INTEGER NOT NULL
) STRICT;

CREATE INDEX passkeys_user ON passkeys (user_id);

CREATE TABLE ceremonies (
    id          TEXT    NOT NULL PRIMARY KEY,
    kind        TEXT    NOT NULL,
    user_id     TEXT,
    data        TEXT    NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT;

CREATE INDEX ceremonies_expiry ON ceremonies (expires_at);

CREATE TABLE once_keys (
    scope       TEXT    NOT NULL,
    once_key    TEXT    NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (scope, once_key)
) STRICT;

CREATE INDEX once_keys_expiry ON once_keys (expires_at);

CREATE TABLE discovery_sessions (
    id                   TEXT    NOT NULL PRIMARY KEY,
    hwid_hash            TEXT    NOT NULL,
    agent_pub            TEXT    NOT NULL,
    agent_version        TEXT    NOT NULL,
    agent_manifest_hash  TEXT    NOT NULL,
    source_hash          TEXT    NOT NULL,
    status               TEXT    NOT NULL,
    created_at           INTEGER NOT NULL,
    expires_at           INTEGER NOT NULL
) STRICT;

CREATE INDEX discovery_sessions_expiry ON discovery_sessions (expires_at);

CREATE TABLE pairings (
    token_hash   TEXT    NOT NULL PRIMARY KEY,
    device_id    TEXT    NOT NULL,
    agent_pub    TEXT    NOT NULL,
    device_name  TEXT    NOT NULL,
    csr_pem      TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    used_at      INTEGER,
    used_by      TEXT REFERENCES users (id)
) STRICT;

CREATE INDEX pairings_expiry ON pairings (expires_at);

CREATE TABLE devices (
    id           TEXT    NOT NULL PRIMARY KEY,
    name         TEXT    NOT NULL,
    hwid_hash    TEXT    NOT NULL,
    agent_pub    TEXT    NOT NULL,
    os           TEXT    NOT NULL,
    owner_id     TEXT REFERENCES users (id),
    status       TEXT    NOT NULL,
    cert_serial  TEXT UNIQUE,
    cert_pem     TEXT,
    created_at   INTEGER NOT NULL,
    paired_at    INTEGER
) STRICT;

CREATE INDEX devices_owner ON devices (owner_id, created_at);
CREATE INDEX devices_created ON devices (created_at);

CREATE TABLE settings (
    name   TEXT NOT NULL PRIMARY KEY,
    value  TEXT NOT NULL
) STRICT;

-- AUTOINCREMENT (not just a rowid alias) so a sequence number is never reused, even after
-- the newest rows were deleted.
CREATE TABLE audit_events (
    seq       INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    actor     TEXT    NOT NULL,
    action    TEXT    NOT NULL,
    target    TEXT,
    outcome   TEXT    NOT NULL,
    detail    TEXT    NOT NULL,   -- JSON
    trace_id  TEXT,
    at        INTEGER NOT NULL
) STRICT;
