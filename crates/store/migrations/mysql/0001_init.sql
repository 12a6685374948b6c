-- Tether store, MySQL/MariaDB schema v1.
-- InnoDB, utf8mb4 with a binary collation (exact comparisons like SQLite's; the store
-- lowercases emails itself). Times are BIGINT milliseconds since the Unix epoch (UTC).
-- Base64url and hex values that are keys use ascii so long ones still fit an index.

CREATE TABLE users (
    id              VARCHAR(255) NOT NULL PRIMARY KEY,
    email           VARCHAR(320) NOT NULL,
    password_hash   VARCHAR(512) NOT NULL,
    role            VARCHAR(32)  NOT NULL,
    mobile_pub      VARCHAR(255) NULL,
    totp_secret     BLOB         NULL,
    totp_enabled    BOOLEAN      NOT NULL DEFAULT FALSE,
    totp_last_step  BIGINT       NOT NULL DEFAULT 0,
    created_at      BIGINT       NOT NULL,
    UNIQUE KEY users_email (email),
    KEY users_role (role)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE refresh_tokens (
    token_hash  VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    family_id   VARCHAR(255) NOT NULL,
    user_id     VARCHAR(255) NOT NULL,
    created_at  BIGINT       NOT NULL,
    expires_at  BIGINT       NOT NULL,
    used_at     BIGINT       NULL,
    revoked     BOOLEAN      NOT NULL DEFAULT FALSE,
    KEY refresh_tokens_family (family_id),
    KEY refresh_tokens_user (user_id),
    CONSTRAINT refresh_tokens_user_fk FOREIGN KEY (user_id) REFERENCES users (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- A WebAuthn credential id is at most 1023 bytes: 1364 base64url characters.
CREATE TABLE passkeys (
    credential_id  VARCHAR(1400) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    user_id        VARCHAR(255) NOT NULL,
    data           MEDIUMTEXT   NOT NULL,
    created_at     BIGINT       NOT NULL,
    KEY passkeys_user (user_id),
    CONSTRAINT passkeys_user_fk FOREIGN KEY (user_id) REFERENCES users (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE ceremonies (
    id          VARCHAR(255) NOT NULL PRIMARY KEY,
    kind        VARCHAR(64)  NOT NULL,
    user_id     VARCHAR(255) NULL,
    data        MEDIUMTEXT   NOT NULL,
    expires_at  BIGINT       NOT NULL,
    KEY ceremonies_expiry (expires_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE once_keys (
    scope       VARCHAR(64)  NOT NULL,
    once_key    VARCHAR(255) NOT NULL,
    expires_at  BIGINT       NOT NULL,
    PRIMARY KEY (scope, once_key),
    KEY once_keys_expiry (expires_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE discovery_sessions (
    id                   VARCHAR(255) NOT NULL PRIMARY KEY,
    hwid_hash            VARCHAR(128) NOT NULL,
    agent_pub            VARCHAR(255) NOT NULL,
    agent_version        VARCHAR(64)  NOT NULL,
    agent_manifest_hash  VARCHAR(128) NOT NULL,
    source_hash          VARCHAR(128) NOT NULL,
    status               VARCHAR(32)  NOT NULL,
    created_at           BIGINT       NOT NULL,
    expires_at           BIGINT       NOT NULL,
    KEY discovery_sessions_expiry (expires_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE pairings (
    token_hash   VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    device_id    VARCHAR(255) NOT NULL,
    agent_pub    VARCHAR(255) NOT NULL,
    device_name  VARCHAR(255) NOT NULL,
    csr_pem      TEXT         NOT NULL,
    created_at   BIGINT       NOT NULL,
    expires_at   BIGINT       NOT NULL,
    used_at      BIGINT       NULL,
    used_by      VARCHAR(255) NULL,
    KEY pairings_expiry (expires_at),
    CONSTRAINT pairings_used_by_fk FOREIGN KEY (used_by) REFERENCES users (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE devices (
    id           VARCHAR(255) NOT NULL PRIMARY KEY,
    name         VARCHAR(255) NOT NULL,
    hwid_hash    VARCHAR(128) NOT NULL,
    agent_pub    VARCHAR(255) NOT NULL,
    os           VARCHAR(32)  NOT NULL,
    owner_id     VARCHAR(255) NULL,
    status       VARCHAR(32)  NOT NULL,
    cert_serial  VARCHAR(128) NULL,
    cert_pem     TEXT         NULL,
    created_at   BIGINT       NOT NULL,
    paired_at    BIGINT       NULL,
    UNIQUE KEY devices_cert_serial (cert_serial),
    KEY devices_owner (owner_id, created_at),
    KEY devices_created (created_at),
    CONSTRAINT devices_owner_fk FOREIGN KEY (owner_id) REFERENCES users (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE settings (
    name   VARCHAR(255) NOT NULL PRIMARY KEY,
    value  MEDIUMTEXT   NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE audit_events (
    seq       BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    actor     VARCHAR(255) NOT NULL,
    action    VARCHAR(128) NOT NULL,
    target    VARCHAR(1400) NULL,
    outcome   VARCHAR(32)  NOT NULL,
    detail    MEDIUMTEXT   NOT NULL,   -- JSON
    trace_id  VARCHAR(128) NULL,
    at        BIGINT       NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
