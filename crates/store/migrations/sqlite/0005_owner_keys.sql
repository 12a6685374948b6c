-- Tether store, SQLite schema v5: owner-keys statements, signed approvals.
-- Times are INTEGER milliseconds since the Unix epoch (UTC).

-- Every owner-keys statement a user submitted (POST /api/me/keys), as signed: the
-- statement and its signature (an `owner_keys_update` body, JSON). The gateway relays
-- them to the user's PCs; the user's key set as the server sees it is the pairing key
-- with every statement applied in version order.
CREATE TABLE owner_key_statements (
    user_id     TEXT    NOT NULL REFERENCES users (id),
    version     INTEGER NOT NULL,
    body        TEXT    NOT NULL,                 -- JSON {"statement", "user_sig"}
    signer_kid  TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, version)
) STRICT;

-- An approval's signature over the command statement (a UserSig, JSON); NULL for an
-- approval recorded before approvals were signed.
ALTER TABLE command_approvals ADD COLUMN user_sig TEXT;
