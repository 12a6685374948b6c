-- Tether store, SQLite telemetry file (`<store>-telemetry.db`) v1: the telemetry events,
-- moved here from the main file (schema v2) so that storing a fleet's telemetry takes
-- this file's write lock only. Columns as in the main file's schema v2; `device_id`
-- names a row of the main file's `devices`, which a foreign key cannot reach across
-- files: the store checks it before it writes.

CREATE TABLE IF NOT EXISTS telemetry_events (
    id               INTEGER NOT NULL PRIMARY KEY,
    device_id        TEXT    NOT NULL,
    message_id       TEXT    NOT NULL UNIQUE,   -- the envelope's id: stored once
    seq              INTEGER NOT NULL,
    collected_at     INTEGER NOT NULL,
    received_at      INTEGER NOT NULL,
    cpu_pct          REAL    NOT NULL,
    mem_used_bytes   INTEGER NOT NULL,
    mem_total_bytes  INTEGER NOT NULL,
    disk_used_pct    REAL,                      -- the fullest disk; NULL without disks
    rx_bps           REAL    NOT NULL,
    tx_bps           REAL    NOT NULL,
    risk_score       REAL    NOT NULL,
    body             TEXT    NOT NULL           -- the telemetry body, JSON
) STRICT;

CREATE INDEX IF NOT EXISTS telemetry_events_device ON telemetry_events (device_id, collected_at);
CREATE INDEX IF NOT EXISTS telemetry_events_collected ON telemetry_events (collected_at);
