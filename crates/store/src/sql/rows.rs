//! Rows to records, by hand (no sqlx macros). Everything read back is checked: an unknown
//! role or status, a negative time or invalid JSON is [`StoreError::Corrupt`], never a
//! panic.

use sqlx::{ColumnIndex, Decode, Row, Type};

use super::{db_err, from_db_time, from_db_u64};
use crate::{
    AuditEvent, Ceremony, Device, DeviceStatus, DiscoveryRecord, DiscoveryStatus, NewAuditEvent,
    PairingRecord, PasskeyRecord, RefreshRecord, Role, StoreError, StoreResult, TotpRecord, User,
};

/// Typed column access for the few column types the schema uses, so the decoders below
/// need no sqlx trait bounds of their own.
pub(crate) trait RowExt {
    /// A non-null text column.
    fn text(&self, col: &'static str) -> StoreResult<String>;
    /// A nullable text column.
    fn opt_text(&self, col: &'static str) -> StoreResult<Option<String>>;
    /// A non-null integer column.
    fn int(&self, col: &'static str) -> StoreResult<i64>;
    /// A nullable integer column.
    fn opt_int(&self, col: &'static str) -> StoreResult<Option<i64>>;
    /// A boolean column.
    fn flag(&self, col: &'static str) -> StoreResult<bool>;
    /// A nullable binary column.
    fn opt_bytes(&self, col: &'static str) -> StoreResult<Option<Vec<u8>>>;
    /// A non-null floating-point column.
    fn real(&self, col: &'static str) -> StoreResult<f64>;
    /// A nullable floating-point column.
    fn opt_real(&self, col: &'static str) -> StoreResult<Option<f64>>;
}

impl<R> RowExt for R
where
    R: Row,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> f64: Decode<'r, R::Database> + Type<R::Database>,
    for<'a> &'a str: ColumnIndex<R>,
{
    fn text(&self, col: &'static str) -> StoreResult<String> {
        self.try_get(col).map_err(db_err(col))
    }

    fn opt_text(&self, col: &'static str) -> StoreResult<Option<String>> {
        self.try_get(col).map_err(db_err(col))
    }

    fn int(&self, col: &'static str) -> StoreResult<i64> {
        self.try_get(col).map_err(db_err(col))
    }

    fn opt_int(&self, col: &'static str) -> StoreResult<Option<i64>> {
        self.try_get(col).map_err(db_err(col))
    }

    fn flag(&self, col: &'static str) -> StoreResult<bool> {
        self.try_get(col).map_err(db_err(col))
    }

    fn opt_bytes(&self, col: &'static str) -> StoreResult<Option<Vec<u8>>> {
        self.try_get(col).map_err(db_err(col))
    }

    fn real(&self, col: &'static str) -> StoreResult<f64> {
        self.try_get(col).map_err(db_err(col))
    }

    fn opt_real(&self, col: &'static str) -> StoreResult<Option<f64>> {
        self.try_get(col).map_err(db_err(col))
    }
}

pub(crate) fn time(row: &impl RowExt, col: &'static str) -> StoreResult<tether_proto::UnixMillis> {
    from_db_time(row.int(col)?, col)
}

pub(crate) fn opt_time(
    row: &impl RowExt,
    col: &'static str,
) -> StoreResult<Option<tether_proto::UnixMillis>> {
    row.opt_int(col)?.map(|v| from_db_time(v, col)).transpose()
}

pub(crate) fn user(row: &impl RowExt) -> StoreResult<User> {
    let role = row.text("role")?;
    let role =
        Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("unknown role {role:?}")))?;
    let totp = row
        .opt_bytes("totp_secret")?
        .map(|sealed_secret| -> StoreResult<TotpRecord> {
            Ok(TotpRecord {
                sealed_secret,
                enabled: row.flag("totp_enabled")?,
            })
        })
        .transpose()?;
    Ok(User {
        id: row.text("id")?,
        email: row.text("email")?,
        password_hash: row.text("password_hash")?,
        role,
        mobile_pub: row.opt_text("mobile_pub")?,
        totp,
        totp_last_step: from_db_u64(row.int("totp_last_step")?, "totp_last_step")?,
        created_at: time(row, "created_at")?,
    })
}

pub(crate) fn refresh(row: &impl RowExt) -> StoreResult<RefreshRecord> {
    Ok(RefreshRecord {
        token_hash: row.text("token_hash")?,
        family_id: row.text("family_id")?,
        user_id: row.text("user_id")?,
        created_at: time(row, "created_at")?,
        expires_at: time(row, "expires_at")?,
    })
}

/// A refresh token's state beside its record: whether it was used or revoked.
pub(crate) fn refresh_spent(row: &impl RowExt) -> StoreResult<bool> {
    Ok(row.opt_int("used_at")?.is_some() || row.flag("revoked")?)
}

pub(crate) fn passkey(row: &impl RowExt) -> StoreResult<PasskeyRecord> {
    Ok(PasskeyRecord {
        credential_id: row.text("credential_id")?,
        user_id: row.text("user_id")?,
        data: row.text("data")?,
        created_at: time(row, "created_at")?,
    })
}

pub(crate) fn ceremony(row: &impl RowExt) -> StoreResult<Ceremony> {
    Ok(Ceremony {
        id: row.text("id")?,
        kind: row.text("kind")?,
        user_id: row.opt_text("user_id")?,
        data: row.text("data")?,
        expires_at: time(row, "expires_at")?,
    })
}

pub(crate) const fn discovery_status_str(s: DiscoveryStatus) -> &'static str {
    match s {
        DiscoveryStatus::Pending => "pending",
        DiscoveryStatus::Confirmed => "confirmed",
    }
}

pub(crate) fn discovery(row: &impl RowExt) -> StoreResult<DiscoveryRecord> {
    let status = match row.text("status")?.as_str() {
        "pending" => DiscoveryStatus::Pending,
        "confirmed" => DiscoveryStatus::Confirmed,
        other => {
            return Err(StoreError::Corrupt(format!(
                "unknown discovery status {other:?}"
            )));
        }
    };
    Ok(DiscoveryRecord {
        id: row.text("id")?,
        hwid_hash: row.text("hwid_hash")?,
        agent_pub: row.text("agent_pub")?,
        agent_version: row.text("agent_version")?,
        agent_manifest_hash: row.text("agent_manifest_hash")?,
        source_hash: row.text("source_hash")?,
        status,
        created_at: time(row, "created_at")?,
        expires_at: time(row, "expires_at")?,
    })
}

pub(crate) fn pairing(row: &impl RowExt) -> StoreResult<PairingRecord> {
    Ok(PairingRecord {
        token_hash: row.text("token_hash")?,
        device_id: row.text("device_id")?,
        agent_pub: row.text("agent_pub")?,
        device_name: row.text("device_name")?,
        csr_pem: row.text("csr_pem")?,
        created_at: time(row, "created_at")?,
        expires_at: time(row, "expires_at")?,
        used_at: opt_time(row, "used_at")?,
        used_by: row.opt_text("used_by")?,
    })
}

pub(crate) fn device(row: &impl RowExt) -> StoreResult<Device> {
    let status = row.text("status")?;
    let status = DeviceStatus::parse(&status)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown device status {status:?}")))?;
    Ok(Device {
        id: row.text("id")?,
        name: row.text("name")?,
        hwid_hash: row.text("hwid_hash")?,
        agent_pub: row.text("agent_pub")?,
        os: row.text("os")?,
        owner_id: row.opt_text("owner_id")?,
        status,
        cert_serial: row.opt_text("cert_serial")?,
        cert_pem: row.opt_text("cert_pem")?,
        created_at: time(row, "created_at")?,
        paired_at: opt_time(row, "paired_at")?,
    })
}

pub(crate) fn audit(row: &impl RowExt) -> StoreResult<AuditEvent> {
    let detail = row.text("detail")?;
    let detail = serde_json::from_str(&detail)
        .map_err(|e| StoreError::Corrupt(format!("audit detail is not JSON: {e}")))?;
    Ok(AuditEvent {
        seq: from_db_u64(row.int("seq")?, "seq")?,
        event: NewAuditEvent {
            actor: row.text("actor")?,
            action: row.text("action")?,
            target: row.opt_text("target")?,
            outcome: row.text("outcome")?,
            detail,
            trace_id: row.opt_text("trace_id")?,
            at: time(row, "at")?,
            device_id: row.opt_text("device_id")?,
        },
    })
}
