//! The records the store keeps.

mod audit;
mod command;
mod policy;
mod telemetry;

pub use audit::*;
pub use command::*;
pub use policy::*;
pub use telemetry::*;

use serde::{Deserialize, Serialize};
use tether_proto::UnixMillis;

/// A user's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Manages the lab: all devices, settings, approvals.
    Admin,
    /// Reads devices and the audit trail; changes nothing.
    Auditor,
    /// Owns and controls their own PCs.
    Student,
}

impl Role {
    /// The stored spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Auditor => "auditor",
            Role::Student => "student",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "auditor" => Some(Role::Auditor),
            "student" => Some(Role::Student),
            _ => None,
        }
    }
}

/// What [`change_user_role`](crate::Store::change_user_role) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleChange {
    /// The user has the new role now; this is the role they had before (the same one if
    /// nothing changed).
    Changed {
        /// The role before.
        previous: Role,
    },
    /// Refused: the user is the only admin and the new role is not admin.
    LastAdmin,
    /// No such user.
    NotFound,
}

/// A user to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    /// Server-chosen id (`usr_…`).
    pub id: String,
    /// Email, stored lowercased.
    pub email: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// The role.
    pub role: Role,
    /// The user's Ed25519 public key (the seed's MobilePub), unpadded base64url.
    pub mobile_pub: Option<String>,
    /// Creation time.
    pub created_at: UnixMillis,
}

/// A user's TOTP state. The secret is sealed by the caller before it gets here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpRecord {
    /// The sealed secret.
    pub sealed_secret: Vec<u8>,
    /// Whether login requires it (false while enrolment is unconfirmed).
    pub enabled: bool,
}

/// A stored user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Id.
    pub id: String,
    /// Lowercased email.
    pub email: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// Role.
    pub role: Role,
    /// MobilePub, unpadded base64url.
    pub mobile_pub: Option<String>,
    /// TOTP, if set.
    pub totp: Option<TotpRecord>,
    /// The last TOTP step accepted (0 if none).
    pub totp_last_step: u64,
    /// Creation time.
    pub created_at: UnixMillis,
}

/// A refresh token (stored by SHA-256 hash, never in clear).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRecord {
    /// Lowercase hex SHA-256 of the token.
    pub token_hash: String,
    /// The family (one login) it belongs to.
    pub family_id: String,
    /// Its user.
    pub user_id: String,
    /// Issue time.
    pub created_at: UnixMillis,
    /// Expiry.
    pub expires_at: UnixMillis,
}

/// The outcome of rotating a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// Rotated; here is the (now used) old record.
    Rotated(RefreshRecord),
    /// The token had been used or revoked already: the family is now revoked.
    Reused {
        /// The revoked family.
        family_id: String,
        /// Its user.
        user_id: String,
    },
    /// The token expired.
    Expired,
    /// No such token.
    NotFound,
}

/// A WebAuthn credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyRecord {
    /// Credential id, unpadded base64url.
    pub credential_id: String,
    /// Owner.
    pub user_id: String,
    /// The serialized passkey (webauthn-rs `Passkey` as JSON).
    pub data: String,
    /// Creation time.
    pub created_at: UnixMillis,
}

/// A short-lived ceremony state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ceremony {
    /// Id handed to the client.
    pub id: String,
    /// What it is (`passkey_register`, `passkey_login`, `totp_enroll`, …).
    pub kind: String,
    /// The user, when known.
    pub user_id: Option<String>,
    /// Serialized state.
    pub data: String,
    /// Expiry.
    pub expires_at: UnixMillis,
}

/// Discovery session state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscoveryStatus {
    /// Hello received, challenge sent.
    Pending,
    /// The nonce proof was checked.
    Confirmed,
}

/// A discovery session (flow 0). Identifiers are stored hashed only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryRecord {
    /// Session id (also the challenge token's `sub`).
    pub id: String,
    /// SHA-256 of the hardware id, as the agent sent it.
    pub hwid_hash: String,
    /// The agent's Ed25519 public key, unpadded base64url.
    pub agent_pub: String,
    /// Agent version.
    pub agent_version: String,
    /// Hash of the agent's manifest.
    pub agent_manifest_hash: String,
    /// SHA-256 of the source address (rate limiting and audit without storing the IP).
    pub source_hash: String,
    /// State.
    pub status: DiscoveryStatus,
    /// Created.
    pub created_at: UnixMillis,
    /// Expiry (10 minutes after creation).
    pub expires_at: UnixMillis,
}

/// A pairing request (flow 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairingRecord {
    /// SHA-256 of the pair token.
    pub token_hash: String,
    /// The device id assigned at request time.
    pub device_id: String,
    /// The agent's Ed25519 public key (the token is bound to it).
    pub agent_pub: String,
    /// The device's display name.
    pub device_name: String,
    /// The CSR for the device certificate (PEM).
    pub csr_pem: String,
    /// Requested.
    pub created_at: UnixMillis,
    /// Expiry (5 minutes after the request).
    pub expires_at: UnixMillis,
    /// When it was consumed.
    pub used_at: Option<UnixMillis>,
    /// Who consumed it.
    pub used_by: Option<String>,
}

/// Why a pairing could not be consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairingRefusal {
    /// No such token.
    NotFound,
    /// Past its TTL.
    Expired,
    /// Already consumed.
    Used,
}

/// A device's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    /// Discovered or pair-requested, no owner yet.
    PendingPairing,
    /// Paired, waiting for an admin to approve.
    AwaitingApproval,
    /// Paired and trusted.
    Active,
    /// Revoked: its certificate is on the CRL.
    Revoked,
}

impl DeviceStatus {
    /// The stored spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::PendingPairing => "pending_pairing",
            DeviceStatus::AwaitingApproval => "awaiting_approval",
            DeviceStatus::Active => "active",
            DeviceStatus::Revoked => "revoked",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<DeviceStatus> {
        match s {
            "pending_pairing" => Some(DeviceStatus::PendingPairing),
            "awaiting_approval" => Some(DeviceStatus::AwaitingApproval),
            "active" => Some(DeviceStatus::Active),
            "revoked" => Some(DeviceStatus::Revoked),
            _ => None,
        }
    }
}

/// A PC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Id (`dev_…`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// SHA-256 of the hardware id.
    pub hwid_hash: String,
    /// The agent's Ed25519 public key, unpadded base64url.
    pub agent_pub: String,
    /// `windows` or `linux`.
    pub os: String,
    /// Owner, once paired.
    pub owner_id: Option<String>,
    /// State.
    pub status: DeviceStatus,
    /// Device certificate serial (lowercase hex), once issued.
    pub cert_serial: Option<String>,
    /// Device certificate (PEM), once issued.
    pub cert_pem: Option<String>,
    /// Created.
    pub created_at: UnixMillis,
    /// Paired.
    pub paired_at: Option<UnixMillis>,
}

/// An audit event to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditEvent {
    /// Who (`usr_…`, `dev_…`, `system`, or `anonymous`).
    pub actor: String,
    /// What (`user.register`, `user.login`, `user.login_failed`, `pair.confirm`, …).
    pub action: String,
    /// On what (a user, device or token id), if anything.
    pub target: Option<String>,
    /// `success`, `failure` or `denied`.
    pub outcome: String,
    /// Extra facts as JSON (never secrets).
    pub detail: serde_json::Value,
    /// The trace id of the request, if any.
    pub trace_id: Option<String>,
    /// When.
    pub at: UnixMillis,
    /// The device the event concerns, if any (what [`AuditFilter::device_id`] matches).
    /// The writer decides; the server uses [`concerned_device`].
    pub device_id: Option<String>,
}

/// A stored audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// Sequence number.
    pub seq: u64,
    /// The event.
    pub event: NewAuditEvent,
}
