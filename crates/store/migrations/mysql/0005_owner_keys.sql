-- Tether store, MySQL/MariaDB schema v5: owner-keys statements, signed approvals.
-- Times are BIGINT milliseconds since the Unix epoch (UTC).

-- Every owner-keys statement a user submitted (POST /api/me/keys), as signed: the
-- statement and its signature (an `owner_keys_update` body, JSON). The gateway relays
-- them to the user's PCs; the user's key set as the server sees it is the pairing key
-- with every statement applied in version order.
CREATE TABLE owner_key_statements (
    user_id     VARCHAR(255) NOT NULL,
    version     BIGINT       NOT NULL,
    body        MEDIUMTEXT   NOT NULL,
    signer_kid  VARCHAR(64)  NOT NULL,
    created_at  BIGINT       NOT NULL,
    PRIMARY KEY (user_id, version),
    CONSTRAINT owner_key_statements_user_fk FOREIGN KEY (user_id) REFERENCES users (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- An approval's signature over the command statement (a UserSig, JSON); NULL for an
-- approval recorded before approvals were signed.
ALTER TABLE command_approvals ADD COLUMN user_sig TEXT NULL;
