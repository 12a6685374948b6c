//! Flow 5: over-the-air updates.

use serde::{Deserialize, Serialize};

use crate::error::{ErrorCode, ProtoError};
use crate::validate::{self, Validate};

/// Rollout stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutStage {
    /// A few devices first.
    Canary,
    /// A wider early group.
    Early,
    /// Everyone targeted.
    Broad,
}

/// gateway → agent: `update_available`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateAvailable {
    /// The release (`rel-2025-10-29-001`).
    pub release_id: String,
    /// The version it installs.
    pub version: String,
    /// Presigned https URL of the signed manifest.
    pub manifest_url: String,
    /// SHA-256 (lowercase hex) of the manifest.
    pub manifest_sha256: String,
    /// Presigned https URL of the package.
    pub package_url: String,
    /// SHA-256 (lowercase hex) of the package.
    pub package_sha256: String,
    /// Package size in bytes.
    pub package_size: u64,
    /// Lowest OS build the release supports, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_os_build: Option<String>,
    /// Install without asking.
    pub auto_install: bool,
    /// The install may reboot the PC.
    pub allow_reboot: bool,
    /// Rollout stage.
    pub stage: RolloutStage,
}

impl Validate for UpdateAvailable {
    fn validate(&self) -> Result<(), ProtoError> {
        validate::text("body.release_id", &self.release_id, 1, 64)?;
        validate::text("body.version", &self.version, 1, 32)?;
        validate::https_url("body.manifest_url", &self.manifest_url)?;
        validate::sha256_hex("body.manifest_sha256", &self.manifest_sha256)?;
        validate::https_url("body.package_url", &self.package_url)?;
        validate::sha256_hex("body.package_sha256", &self.package_sha256)?;
        validate::range("body.package_size", self.package_size, 1, 4 << 30)?;
        if let Some(b) = &self.min_os_build {
            validate::text("body.min_os_build", b, 1, 32)?;
        }
        Ok(())
    }
}

/// Precheck outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrecheckStatus {
    /// Ready to download.
    Ok,
    /// Not installable here (see `reasons`).
    Fail,
}

/// agent → gateway: `update_precheck`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdatePrecheck {
    /// The release.
    pub release_id: String,
    /// `ok` or `fail`.
    pub status: PrecheckStatus,
    /// Why not (disk space, power, OS build, policy), at most 16.
    pub reasons: Vec<String>,
}

impl Validate for UpdatePrecheck {
    fn validate(&self) -> Result<(), ProtoError> {
        validate::text("body.release_id", &self.release_id, 1, 64)?;
        validate::max_items("body.reasons", &self.reasons, 16)?;
        for r in &self.reasons {
            validate::text("body.reasons[]", r, 1, 256)?;
        }
        if self.status == PrecheckStatus::Fail && self.reasons.is_empty() {
            return Err(ProtoError::invalid(
                "body.reasons",
                "a failed precheck needs a reason",
            ));
        }
        Ok(())
    }
}

/// How an install ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateOutcome {
    /// Committed and healthy.
    Installed,
    /// Committed, failed health checks, rolled back.
    RolledBack,
    /// Failed before commit; nothing changed.
    Failed,
}

/// agent → gateway: `update_result`, the post-install health report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateResult {
    /// The release.
    pub release_id: String,
    /// How it ended.
    pub status: UpdateOutcome,
    /// The version now running.
    pub version: String,
    /// Boot time after the update, when it rebooted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_time_ms: Option<u64>,
    /// Time for the services to start after commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_start_ms: Option<u64>,
    /// Whether the rollback snapshot is still available.
    pub rollback_available: bool,
    /// The error, unless installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorCode>,
}

impl Validate for UpdateResult {
    fn validate(&self) -> Result<(), ProtoError> {
        validate::text("body.release_id", &self.release_id, 1, 64)?;
        validate::text("body.version", &self.version, 1, 32)?;
        match (self.status, self.error) {
            (UpdateOutcome::Installed, Some(_)) => Err(ProtoError::invalid(
                "body.error",
                "not allowed when installed",
            )),
            (UpdateOutcome::Installed, None) | (_, Some(_)) => Ok(()),
            (_, None) => Err(ProtoError::invalid(
                "body.error",
                "required unless installed",
            )),
        }
    }
}
