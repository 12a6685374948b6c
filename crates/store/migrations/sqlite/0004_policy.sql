-- Tether store, SQLite schema v4: central policy, approvals, step-up.
-- Times are INTEGER milliseconds since the Unix epoch (UTC).

-- Every saved policy bundle; the current one is the highest version. Versions start at 1
-- (0 is the built-in policy in force before any is saved) and are never reused.
CREATE TABLE policies (
    version     INTEGER NOT NULL PRIMARY KEY,
    bundle      TEXT    NOT NULL,                 -- JSON object, as the admin saved it
    hash        TEXT    NOT NULL,                 -- SHA-256 of its RFC 8785 form
    author      TEXT    NOT NULL REFERENCES users (id),
    created_at  INTEGER NOT NULL
) STRICT;

-- One row per approval of a command awaiting approval; a user approves a command once.
CREATE TABLE command_approvals (
    command_id   TEXT    NOT NULL REFERENCES commands (id),
    approver_id  TEXT    NOT NULL REFERENCES users (id),
    at           INTEGER NOT NULL,
    PRIMARY KEY (command_id, approver_id)
) STRICT;

-- When each session (refresh-token family) last proved a second factor (TOTP or passkey,
-- at login or step-up): sensitive commands need a fresh one.
CREATE TABLE session_second_factors (
    session_id  TEXT    NOT NULL PRIMARY KEY,
    user_id     TEXT    NOT NULL REFERENCES users (id),
    at          INTEGER NOT NULL
) STRICT;

-- The policy decision a command was accepted under.
ALTER TABLE commands ADD COLUMN policy_version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE commands ADD COLUMN policy_rule TEXT;
ALTER TABLE commands ADD COLUMN approvals_required INTEGER NOT NULL DEFAULT 0;
ALTER TABLE commands ADD COLUMN approvers TEXT;                       -- JSON object

-- Rate rules count a user's recent commands (a device's use commands_device).
CREATE INDEX commands_user ON commands (origin_user_id, created_at);
