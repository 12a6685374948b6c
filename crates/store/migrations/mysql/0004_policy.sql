-- Tether store, MySQL/MariaDB schema v4: central policy, approvals, step-up.
-- Times are BIGINT milliseconds since the Unix epoch (UTC).

-- Every saved policy bundle; the current one is the highest version. Versions start at 1
-- (0 is the built-in policy in force before any is saved) and are never reused.
CREATE TABLE policies (
    version     BIGINT       NOT NULL PRIMARY KEY,
    bundle      MEDIUMTEXT   NOT NULL,
    hash        CHAR(64)     NOT NULL,
    author      VARCHAR(255) NOT NULL,
    created_at  BIGINT       NOT NULL,
    CONSTRAINT policies_author_fk FOREIGN KEY (author) REFERENCES users (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- One row per approval of a command awaiting approval; a user approves a command once.
CREATE TABLE command_approvals (
    command_id   VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    approver_id  VARCHAR(255) NOT NULL,
    at           BIGINT       NOT NULL,
    PRIMARY KEY (command_id, approver_id),
    CONSTRAINT command_approvals_command_fk FOREIGN KEY (command_id) REFERENCES commands (id),
    CONSTRAINT command_approvals_user_fk FOREIGN KEY (approver_id) REFERENCES users (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- When each session (refresh-token family) last proved a second factor (TOTP or passkey,
-- at login or step-up): sensitive commands need a fresh one.
CREATE TABLE session_second_factors (
    session_id  VARCHAR(255) NOT NULL PRIMARY KEY,
    user_id     VARCHAR(255) NOT NULL,
    at          BIGINT       NOT NULL,
    CONSTRAINT session_second_factors_user_fk FOREIGN KEY (user_id) REFERENCES users (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- The policy decision a command was accepted under.
ALTER TABLE commands
    ADD COLUMN policy_version BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN policy_rule VARCHAR(64) NULL,
    ADD COLUMN approvals_required INT NOT NULL DEFAULT 0,
    ADD COLUMN approvers TEXT NULL,
    ADD KEY commands_user (origin_user_id, created_at);
