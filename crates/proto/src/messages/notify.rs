//! Server-initiated notices: alerts, policy, revocation, and the error frame.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::canonical;
use crate::clock::UnixMillis;
use crate::error::{ErrorCode, ProtoError};
use crate::ids::{MessageId, sha256_hex};
use crate::validate::{self, Validate};

/// Alert severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// For the record.
    Info,
    /// Look at it soon.
    Warning,
    /// Look at it now.
    Critical,
}

/// gateway → agent (and to the owner's live clients): `alert_push`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertPush {
    /// The alert's id.
    pub alert_id: String,
    /// The device it concerns.
    pub device_id: String,
    /// How bad.
    pub severity: Severity,
    /// The rule that fired (`risk_score`, `cpu_high`, `disk_full`, `offline`, …).
    pub kind: String,
    /// What happened, for a human.
    pub message: String,
    /// The risk score that fired it (0..=1), when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk_score: Option<f64>,
    /// When the alert was raised.
    pub created_at: UnixMillis,
}

impl Validate for AlertPush {
    fn validate(&self) -> Result<(), ProtoError> {
        validate::text("body.alert_id", &self.alert_id, 1, 64)?;
        validate::text("body.device_id", &self.device_id, 1, 64)?;
        validate::text("body.kind", &self.kind, 1, 64)?;
        validate::text("body.message", &self.message, 1, 512)?;
        if let Some(r) = self.risk_score {
            validate::range("body.risk_score", r, 0.0, 1.0)?;
        }
        Ok(())
    }
}

/// gateway → agent: `POLICY_UPDATE`, the signed policy bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyUpdate {
    /// Strictly increasing version; an agent refuses an older one.
    pub policy_version: u64,
    /// SHA-256 (lowercase hex) of the RFC 8785 form of `bundle`.
    pub policy_hash: String,
    /// The rules (a JSON object; its format is documented with the policy engine).
    pub bundle: Value,
}

impl PolicyUpdate {
    /// The policy hash of a bundle: SHA-256 of its canonical form.
    pub fn hash_bundle(bundle: &Value) -> Result<String, ProtoError> {
        Ok(sha256_hex(canonical::canonicalize(bundle)?.as_bytes()))
    }
}

impl Validate for PolicyUpdate {
    fn validate(&self) -> Result<(), ProtoError> {
        if self.policy_version == 0 {
            return Err(ProtoError::invalid(
                "body.policy_version",
                "must be at least 1",
            ));
        }
        if !self.bundle.is_object() {
            return Err(ProtoError::invalid("body.bundle", "must be a JSON object"));
        }
        validate::sha256_hex("body.policy_hash", &self.policy_hash)?;
        if PolicyUpdate::hash_bundle(&self.bundle)? != self.policy_hash {
            return Err(ProtoError::invalid(
                "body.policy_hash",
                "does not match the bundle",
            ));
        }
        Ok(())
    }
}

/// What a revoked agent must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationAction {
    /// Wipe keys and show "re-pair needed".
    RePairNeeded,
    /// Emergency: also refuse every command until re-paired.
    Quarantine,
}

/// gateway → agent: the device's certificate is revoked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    /// The device.
    pub device_id: String,
    /// Revoked certificate serials (lowercase hex).
    pub serials: Vec<String>,
    /// Why, for a human.
    pub reason: String,
    /// What the agent must do.
    pub action: RevocationAction,
    /// When.
    pub revoked_at: UnixMillis,
}

impl Validate for Revocation {
    fn validate(&self) -> Result<(), ProtoError> {
        validate::text("body.device_id", &self.device_id, 1, 64)?;
        validate::max_items("body.serials", &self.serials, 16)?;
        for s in &self.serials {
            if s.is_empty()
                || s.len() > 40
                || !s
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return Err(ProtoError::invalid(
                    "body.serials[]",
                    "not a hex serial of at most 20 bytes",
                ));
            }
        }
        validate::text("body.reason", &self.reason, 1, 256)
    }
}

/// Either direction: a frame was refused. Sent instead of silently dropping, except where
/// the sender cannot be authenticated enough to deserve an answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorFrame {
    /// The stable code.
    pub code: ErrorCode,
    /// A human message.
    pub message: String,
    /// The refused frame's `message_id`, when it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ref_message_id: Option<MessageId>,
}

impl Validate for ErrorFrame {
    fn validate(&self) -> Result<(), ProtoError> {
        validate::text("body.message", &self.message, 1, 512)
    }
}
