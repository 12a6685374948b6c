//! The `SELECT`s that read whole records, shared by both dialects. Column lists are macros
//! so that `concat!` can build each statement as a `&'static str`; the names match what
//! the decoders in `rows` read.

macro_rules! user_columns {
    () => {
        "id, email, password_hash, role, mobile_pub, totp_secret, totp_enabled, \
         totp_last_step, created_at"
    };
}
macro_rules! refresh_columns {
    () => {
        "token_hash, family_id, user_id, created_at, expires_at, used_at, revoked"
    };
}
macro_rules! passkey_columns {
    () => {
        "credential_id, user_id, data, created_at"
    };
}
macro_rules! ceremony_columns {
    () => {
        "id, kind, user_id, data, expires_at"
    };
}
macro_rules! discovery_columns {
    () => {
        "id, hwid_hash, agent_pub, agent_version, agent_manifest_hash, source_hash, status, \
         created_at, expires_at"
    };
}
macro_rules! pairing_columns {
    () => {
        "token_hash, device_id, agent_pub, device_name, csr_pem, created_at, expires_at, \
         used_at, used_by"
    };
}
macro_rules! device_columns {
    () => {
        "id, name, hwid_hash, agent_pub, os, owner_id, status, cert_serial, cert_pem, \
         created_at, paired_at"
    };
}
macro_rules! audit_columns {
    () => {
        "seq, actor, action, target, outcome, detail, trace_id, at, device_id"
    };
}

pub(super) const SELECT_USER_BY_ID: &str =
    concat!("SELECT ", user_columns!(), " FROM users WHERE id = ?");
pub(super) const SELECT_USER_BY_EMAIL: &str =
    concat!("SELECT ", user_columns!(), " FROM users WHERE email = ?");
pub(super) const SELECT_ALL_USERS: &str = concat!(
    "SELECT ",
    user_columns!(),
    " FROM users ORDER BY created_at, id"
);
pub(super) const SELECT_REFRESH: &str = concat!(
    "SELECT ",
    refresh_columns!(),
    " FROM refresh_tokens WHERE token_hash = ?"
);
pub(super) const SELECT_PASSKEYS: &str = concat!(
    "SELECT ",
    passkey_columns!(),
    " FROM passkeys WHERE user_id = ? ORDER BY created_at, credential_id"
);
pub(super) const SELECT_CEREMONY: &str = concat!(
    "SELECT ",
    ceremony_columns!(),
    " FROM ceremonies WHERE id = ?"
);
pub(super) const SELECT_DISCOVERY: &str = concat!(
    "SELECT ",
    discovery_columns!(),
    " FROM discovery_sessions WHERE id = ?"
);
pub(super) const SELECT_PAIRING: &str = concat!(
    "SELECT ",
    pairing_columns!(),
    " FROM pairings WHERE token_hash = ?"
);
pub(super) const SELECT_DEVICE: &str =
    concat!("SELECT ", device_columns!(), " FROM devices WHERE id = ?");
/// Followed by `(?, ?, …)`: one placeholder an id, at most [`IDS_PER_STATEMENT`].
pub(super) const SELECT_DEVICES_IN: &str =
    concat!("SELECT ", device_columns!(), " FROM devices WHERE id IN");
/// The ids one `IN (…)` list binds: far below either dialect's limit on placeholders
/// (SQLite's 32,766, MySQL's 65,535), and enough that a fleet's status checks asked
/// together are a few statements.
pub(super) const IDS_PER_STATEMENT: usize = 256;
pub(super) const SELECT_DEVICES_BY_OWNER: &str = concat!(
    "SELECT ",
    device_columns!(),
    " FROM devices WHERE owner_id = ? ORDER BY created_at, id"
);
pub(super) const SELECT_ALL_DEVICES: &str = concat!(
    "SELECT ",
    device_columns!(),
    " FROM devices ORDER BY created_at, id"
);
pub(super) const SELECT_DEVICE_BY_SERIAL: &str = concat!(
    "SELECT ",
    device_columns!(),
    " FROM devices WHERE cert_serial = ?"
);
pub(super) const SELECT_AUDIT_AFTER: &str = concat!(
    "SELECT ",
    audit_columns!(),
    " FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?"
);
/// The start of a filtered audit read; `sql::audit` appends the conditions and order.
pub(super) const SELECT_AUDIT: &str = concat!("SELECT ", audit_columns!(), " FROM audit_events");
