-- Tether store, MySQL/MariaDB schema v3: commands, their transitions, artifacts.
-- Times are BIGINT milliseconds since the Unix epoch (UTC).

-- One row per command a user submitted (flow 2). `id` is the user's message_id, the
-- idempotency key; `state` is the current state of the state machine, changed only by
-- conditional UPDATEs that also append a row to command_transitions.
CREATE TABLE commands (
    id               VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    device_id        VARCHAR(255) NOT NULL,
    origin_user_id   VARCHAR(255) NOT NULL,
    method           VARCHAR(64)  NOT NULL,
    params           MEDIUMTEXT   NOT NULL,
    priority         VARCHAR(16)  NOT NULL,
    sensitivity      VARCHAR(16)  NOT NULL,
    trace_id         VARCHAR(128) NOT NULL,
    user_sig         TEXT         NULL,
    request_hash     CHAR(64)     NOT NULL,
    simulate         VARCHAR(32)  NULL,
    initial_state    VARCHAR(32)  NOT NULL,
    state            VARCHAR(32)  NOT NULL,
    attempts         INT          NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT       NULL,
    created_at       BIGINT       NOT NULL,
    expires_at       BIGINT       NOT NULL,
    updated_at       BIGINT       NOT NULL,
    result           MEDIUMTEXT   NULL,
    error_code       INT          NULL,
    viewed_at        BIGINT       NULL,
    KEY commands_device (device_id, created_at),
    KEY commands_state_retry (state, next_attempt_at),
    KEY commands_state_expiry (state, expires_at),
    CONSTRAINT commands_device_fk FOREIGN KEY (device_id) REFERENCES devices (id),
    CONSTRAINT commands_user_fk FOREIGN KEY (origin_user_id) REFERENCES users (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE command_transitions (
    id          BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    command_id  VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    from_state  VARCHAR(32)  NULL,
    to_state    VARCHAR(32)  NOT NULL,
    at          BIGINT       NOT NULL,
    detail      MEDIUMTEXT   NOT NULL,
    KEY command_transitions_command (command_id, id),
    CONSTRAINT command_transitions_command_fk FOREIGN KEY (command_id) REFERENCES commands (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE artifacts (
    id            VARCHAR(128) NOT NULL PRIMARY KEY,
    device_id     VARCHAR(255) NOT NULL,
    command_id    VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    object_key    VARCHAR(512) NOT NULL,
    content_type  VARCHAR(128) NOT NULL,
    max_bytes     BIGINT       NOT NULL,
    created_at    BIGINT       NOT NULL,
    expires_at    BIGINT       NOT NULL,
    uploaded_at   BIGINT       NULL,
    size_bytes    BIGINT       NULL,
    sha256        CHAR(64)     NULL,
    UNIQUE KEY artifacts_object (object_key),
    KEY artifacts_command (command_id),
    CONSTRAINT artifacts_device_fk FOREIGN KEY (device_id) REFERENCES devices (id),
    CONSTRAINT artifacts_command_fk FOREIGN KEY (command_id) REFERENCES commands (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
