//! Records for the scenarios.

use serde_json::json;
use tether_store::{
    Device, DeviceStatus, DiscoveryRecord, DiscoveryStatus, NewAuditEvent, NewUser, PairingRecord,
    RefreshRecord, Role, Store, UnixMillis, User,
};

/// A fixed "now" for the scenarios; times are inputs, nothing sleeps.
pub(crate) const NOW: UnixMillis = UnixMillis(1_800_000_000_000);

pub(crate) fn at(offset_ms: i64) -> UnixMillis {
    UnixMillis(NOW.0.checked_add_signed(offset_ms).unwrap())
}

pub(crate) fn new_user(id: &str, email: &str, role: Role) -> NewUser {
    NewUser {
        id: id.to_owned(),
        email: email.to_owned(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
        role,
        mobile_pub: Some("bW9iaWxlLXB1Yg".to_owned()),
        created_at: NOW,
    }
}

/// Creates a student with a derived email and returns it.
pub(crate) async fn user(s: &dyn Store, id: &str) -> User {
    s.create_user(&new_user(id, &format!("{id}@lab.example"), Role::Student))
        .await
        .unwrap()
}

pub(crate) fn refresh(
    hash: &str,
    family: &str,
    user_id: &str,
    expires_at: UnixMillis,
) -> RefreshRecord {
    RefreshRecord {
        token_hash: hash.to_owned(),
        family_id: family.to_owned(),
        user_id: user_id.to_owned(),
        created_at: NOW,
        expires_at,
    }
}

pub(crate) fn discovery(id: &str, expires_at: UnixMillis) -> DiscoveryRecord {
    DiscoveryRecord {
        id: id.to_owned(),
        hwid_hash: "ab".repeat(32),
        agent_pub: "YWdlbnQtcHVi".to_owned(),
        agent_version: "0.1.0".to_owned(),
        agent_manifest_hash: "cd".repeat(32),
        source_hash: "ef".repeat(32),
        status: DiscoveryStatus::Pending,
        created_at: NOW,
        expires_at,
    }
}

pub(crate) fn pairing(hash: &str, expires_at: UnixMillis) -> PairingRecord {
    PairingRecord {
        token_hash: hash.to_owned(),
        device_id: format!("dev_{hash}"),
        agent_pub: "YWdlbnQtcHVi".to_owned(),
        device_name: "Lab PC 7".to_owned(),
        csr_pem: "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"
            .to_owned(),
        created_at: NOW,
        expires_at,
        used_at: None,
        used_by: None,
    }
}

pub(crate) fn device(id: &str, owner: Option<&str>, created_at: UnixMillis) -> Device {
    Device {
        id: id.to_owned(),
        name: format!("PC {id}"),
        hwid_hash: "12".repeat(32),
        agent_pub: "YWdlbnQtcHVi".to_owned(),
        os: "linux".to_owned(),
        owner_id: owner.map(str::to_owned),
        status: DeviceStatus::PendingPairing,
        cert_serial: None,
        cert_pem: None,
        created_at,
        paired_at: None,
    }
}

pub(crate) fn audit_event(n: u64) -> NewAuditEvent {
    NewAuditEvent {
        actor: format!("usr_{n}"),
        action: "user.login".to_owned(),
        target: n.is_multiple_of(2).then(|| format!("dev_{n}")),
        outcome: "success".to_owned(),
        detail: json!({ "n": n, "nested": { "ok": true, "list": [1, "two"] } }),
        trace_id: n.is_multiple_of(3).then(|| format!("trace-{n}")),
        at: at(i64::try_from(n).unwrap()),
    }
}
