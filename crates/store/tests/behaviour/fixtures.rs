//! Records for the scenarios.

use serde_json::json;
use tether_store::{
    Alert, Device, DeviceStatus, DiscoveryRecord, DiscoveryStatus, NewAuditEvent,
    NewTelemetryEvent, NewUser, PairingRecord, RefreshRecord, Role, Severity, Store, UnixMillis,
    User,
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
        device_id: n.is_multiple_of(2).then(|| format!("dev_{n}")),
    }
}

/// An active device paired to `owner` at `paired_at` (the owner must exist).
pub(crate) async fn active_device(s: &dyn Store, id: &str, owner: &str, paired_at: UnixMillis) {
    let mut d = device(id, Some(owner), NOW);
    d.status = DeviceStatus::Active;
    d.paired_at = Some(paired_at);
    s.insert_device(&d).await.unwrap();
}

/// A telemetry event of `device` collected at `collected_at`, its numbers derived from `n`
/// (fractional, so float round trips are checked exactly).
pub(crate) fn telemetry(
    device: &str,
    message_id: &str,
    n: u32,
    collected_at: UnixMillis,
) -> NewTelemetryEvent {
    let x = f64::from(n);
    NewTelemetryEvent {
        device_id: device.to_owned(),
        message_id: message_id.to_owned(),
        seq: u64::from(n),
        collected_at,
        received_at: UnixMillis(collected_at.0 + 250),
        cpu_pct: 1.25 + x,
        mem_used_bytes: 1_000_000 + u64::from(n),
        mem_total_bytes: 16_000_000_000,
        disk_used_pct: n.is_multiple_of(2).then_some(40.5 + x / 10.0),
        rx_bps: 1234.5 * x,
        tx_bps: 0.1 + x,
        risk_score: x / 100.0,
        body: json!({ "cpu_pct": 1.25 + x, "disks": [], "n": n }),
    }
}

pub(crate) fn alert(
    id: &str,
    device: &str,
    owner: &str,
    kind: &str,
    created_at: UnixMillis,
) -> Alert {
    Alert {
        id: id.to_owned(),
        device_id: device.to_owned(),
        owner_id: Some(owner.to_owned()),
        severity: Severity::Warning,
        kind: kind.to_owned(),
        message: format!("{kind} on {device} — ünïcode ✓"),
        risk_score: None,
        created_at,
        acked_at: None,
        acked_by: None,
    }
}
