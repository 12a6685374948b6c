-- Version 1 of the embedded bus schema. Names are stored with the bus namespace prefix
-- ("{namespace}:{name}"), as in Redis, so several namespaces can share one file.
-- Times and ids are integers: milliseconds since the epoch from the bus's clock.

-- One row per stream: the last id handed out (so ids keep increasing after trimming and
-- across restarts) and the number of entries (so append need not count them).
CREATE TABLE bus_streams (
    stream   TEXT    NOT NULL PRIMARY KEY,
    last_ms  INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    len      INTEGER NOT NULL
) WITHOUT ROWID;

-- Entries; payloads may be kilobytes, so this is a rowid table with a unique key.
CREATE TABLE bus_entries (
    stream  TEXT    NOT NULL,
    ms      INTEGER NOT NULL,
    seq     INTEGER NOT NULL,
    payload BLOB    NOT NULL,
    UNIQUE (stream, ms, seq)
);

-- Consumer groups and the last entry id delivered to each.
CREATE TABLE bus_groups (
    stream   TEXT    NOT NULL,
    grp      TEXT    NOT NULL,
    last_ms  INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    PRIMARY KEY (stream, grp)
) WITHOUT ROWID;

-- Delivered, unacknowledged entries per group (the Redis PEL).
CREATE TABLE bus_pending (
    stream       TEXT    NOT NULL,
    grp          TEXT    NOT NULL,
    ms           INTEGER NOT NULL,
    seq          INTEGER NOT NULL,
    consumer     TEXT    NOT NULL,
    delivered_at INTEGER NOT NULL,
    deliveries   INTEGER NOT NULL,
    PRIMARY KEY (stream, grp, ms, seq)
) WITHOUT ROWID;
-- Trimming asks "is this entry pending in any group?".
CREATE INDEX bus_pending_entry ON bus_pending (stream, ms, seq);

-- Keys with a TTL (presence).
CREATE TABLE bus_kv (
    key        TEXT    NOT NULL PRIMARY KEY,
    value      BLOB    NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX bus_kv_expiry ON bus_kv (expires_at);

-- Fixed-window counters (rate limits): the window starts at the first increment.
CREATE TABLE bus_counters (
    key          TEXT    NOT NULL PRIMARY KEY,
    window_start INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    count        INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX bus_counters_expiry ON bus_counters (expires_at);
