-- Tether store, MySQL/MariaDB schema v2: telemetry, rollups, alerts, last seen.
-- Times are BIGINT milliseconds since the Unix epoch (UTC); percentages are 0..=100;
-- rates are bytes per second.

-- One row per accepted telemetry message, written by the AnalyticsWorker. Raw rows are
-- pruned after the retention period; the rollups below are kept.
CREATE TABLE telemetry_events (
    id               BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    device_id        VARCHAR(255) NOT NULL,
    message_id       VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    seq              BIGINT       NOT NULL,
    collected_at     BIGINT       NOT NULL,
    received_at      BIGINT       NOT NULL,
    cpu_pct          DOUBLE       NOT NULL,
    mem_used_bytes   BIGINT       NOT NULL,
    mem_total_bytes  BIGINT       NOT NULL,
    disk_used_pct    DOUBLE       NULL,        -- the fullest disk; NULL without disks
    rx_bps           DOUBLE       NOT NULL,
    tx_bps           DOUBLE       NOT NULL,
    risk_score       DOUBLE       NOT NULL,
    body             MEDIUMTEXT   NOT NULL,    -- the telemetry body, JSON
    UNIQUE KEY telemetry_events_message (message_id),
    KEY telemetry_events_device (device_id, collected_at),
    KEY telemetry_events_collected (collected_at),
    CONSTRAINT telemetry_events_device_fk FOREIGN KEY (device_id) REFERENCES devices (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Per-device, per-metric statistics over one UTC hour or day, recomputed (upserted) by
-- the RollupWorker while the bucket can still change.
CREATE TABLE device_metrics_hourly (
    device_id     VARCHAR(255) NOT NULL,
    bucket_start  BIGINT       NOT NULL,
    metric        VARCHAR(64)  NOT NULL,
    samples       BIGINT       NOT NULL,
    min_value     DOUBLE       NOT NULL,
    max_value     DOUBLE       NOT NULL,
    mean_value    DOUBLE       NOT NULL,
    p95_value     DOUBLE       NOT NULL,
    PRIMARY KEY (device_id, bucket_start, metric),
    CONSTRAINT device_metrics_hourly_device_fk FOREIGN KEY (device_id) REFERENCES devices (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE device_metrics_daily (
    device_id     VARCHAR(255) NOT NULL,
    bucket_start  BIGINT       NOT NULL,
    metric        VARCHAR(64)  NOT NULL,
    samples       BIGINT       NOT NULL,
    min_value     DOUBLE       NOT NULL,
    max_value     DOUBLE       NOT NULL,
    mean_value    DOUBLE       NOT NULL,
    p95_value     DOUBLE       NOT NULL,
    PRIMARY KEY (device_id, bucket_start, metric),
    CONSTRAINT device_metrics_daily_device_fk FOREIGN KEY (device_id) REFERENCES devices (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- `open_kind` is the alert's kind while it is unacknowledged and NULL afterwards: the
-- unique key on (device_id, open_kind) allows at most one open alert per device and kind
-- (NULLs never clash), which makes "raise unless one is open" a single atomic INSERT.
CREATE TABLE alerts (
    id          VARCHAR(255) NOT NULL PRIMARY KEY,
    device_id   VARCHAR(255) NOT NULL,
    owner_id    VARCHAR(255) NULL,
    severity    VARCHAR(32)  NOT NULL,
    kind        VARCHAR(64)  NOT NULL,
    open_kind   VARCHAR(64)  NULL,
    message     VARCHAR(2048) NOT NULL,
    risk_score  DOUBLE       NULL,
    created_at  BIGINT       NOT NULL,
    acked_at    BIGINT       NULL,
    acked_by    VARCHAR(255) NULL,
    UNIQUE KEY alerts_open (device_id, open_kind),
    KEY alerts_owner (owner_id, created_at),
    KEY alerts_created (created_at),
    KEY alerts_device_kind (device_id, kind, created_at),
    CONSTRAINT alerts_device_fk FOREIGN KEY (device_id) REFERENCES devices (id),
    CONSTRAINT alerts_owner_fk FOREIGN KEY (owner_id) REFERENCES users (id),
    CONSTRAINT alerts_acked_by_fk FOREIGN KEY (acked_by) REFERENCES users (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- When the server last heard from the device (its newest telemetry's arrival).
ALTER TABLE devices ADD COLUMN last_seen_at BIGINT NULL;
