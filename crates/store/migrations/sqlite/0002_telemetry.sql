-- Tether store, SQLite schema v2: telemetry, rollups, alerts, last seen.
-- Times are INTEGER milliseconds since the Unix epoch (UTC); percentages are 0..=100;
-- rates are bytes per second.

-- One row per accepted telemetry message, written by the AnalyticsWorker. Raw rows are
-- pruned after the retention period; the rollups below are kept.
CREATE TABLE telemetry_events (
    id               INTEGER NOT NULL PRIMARY KEY,
    device_id        TEXT    NOT NULL REFERENCES devices (id),
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

CREATE INDEX telemetry_events_device ON telemetry_events (device_id, collected_at);
CREATE INDEX telemetry_events_collected ON telemetry_events (collected_at);

-- Per-device, per-metric statistics over one UTC hour or day, recomputed (upserted) by
-- the RollupWorker while the bucket can still change.
CREATE TABLE device_metrics_hourly (
    device_id     TEXT    NOT NULL REFERENCES devices (id),
    bucket_start  INTEGER NOT NULL,
    metric        TEXT    NOT NULL,
    samples       INTEGER NOT NULL,
    min_value     REAL    NOT NULL,
    max_value     REAL    NOT NULL,
    mean_value    REAL    NOT NULL,
    p95_value     REAL    NOT NULL,
    PRIMARY KEY (device_id, bucket_start, metric)
) STRICT;

CREATE TABLE device_metrics_daily (
    device_id     TEXT    NOT NULL REFERENCES devices (id),
    bucket_start  INTEGER NOT NULL,
    metric        TEXT    NOT NULL,
    samples       INTEGER NOT NULL,
    min_value     REAL    NOT NULL,
    max_value     REAL    NOT NULL,
    mean_value    REAL    NOT NULL,
    p95_value     REAL    NOT NULL,
    PRIMARY KEY (device_id, bucket_start, metric)
) STRICT;

-- `open_kind` is the alert's kind while it is unacknowledged and NULL afterwards: the
-- unique key on (device_id, open_kind) allows at most one open alert per device and kind
-- (NULLs never clash), which makes "raise unless one is open" a single atomic INSERT.
CREATE TABLE alerts (
    id          TEXT    NOT NULL PRIMARY KEY,
    device_id   TEXT    NOT NULL REFERENCES devices (id),
    owner_id    TEXT REFERENCES users (id),
    severity    TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    open_kind   TEXT,
    message     TEXT    NOT NULL,
    risk_score  REAL,
    created_at  INTEGER NOT NULL,
    acked_at    INTEGER,
    acked_by    TEXT REFERENCES users (id),
    UNIQUE (device_id, open_kind)
) STRICT;

CREATE INDEX alerts_owner ON alerts (owner_id, created_at);
CREATE INDEX alerts_created ON alerts (created_at);
CREATE INDEX alerts_device_kind ON alerts (device_id, kind, created_at);

-- When the server last heard from the device (its newest telemetry's arrival).
ALTER TABLE devices ADD COLUMN last_seen_at INTEGER;
