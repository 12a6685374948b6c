//! The server's answers, as the CLI reads them. Unknown fields are ignored, so a newer
//! server keeps working with this client; `--json` prints these shapes.

mod command;

use serde::{Deserialize, Serialize};

pub use command::{
    ApprovalView, ArtifactRefView, ArtifactView, CommandEventView, CommandView, Ending, ResultView,
    TERMINAL_STATES, TransitionView,
};

/// A user (`GET /api/me`, `POST /api/register`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserView {
    /// Id.
    pub id: String,
    /// Email.
    pub email: String,
    /// `admin`, `auditor` or `student`.
    pub role: String,
    /// Whether login asks for a TOTP code.
    pub totp_enabled: bool,
    /// The owner key registered for the account, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobile_pub: Option<String>,
}

/// Tokens for a session (`POST /api/login`, `POST /api/token/refresh`).
#[derive(Clone, Deserialize)]
pub struct TokenResponse {
    /// The access JWT.
    pub access_token: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// The single-use refresh token.
    pub refresh_token: String,
    /// The session (refresh family) id.
    pub session_id: String,
    /// The user.
    pub user: UserView,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("expires_in", &self.expires_in)
            .field("session_id", &self.session_id)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// A device (`GET /api/devices`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceView {
    /// Id.
    pub id: String,
    /// Name (chosen on the PC).
    pub name: String,
    /// `windows` or `linux`.
    pub os: String,
    /// `pending_pairing`, `awaiting_approval`, `active` or `revoked`.
    pub status: String,
    /// Owner's user id.
    #[serde(default)]
    pub owner_id: Option<String>,
    /// Whether the agent is connected now.
    pub online: bool,
    /// Certificate serial (hex).
    #[serde(default)]
    pub cert_serial: Option<String>,
    /// Paired at (ms since the epoch).
    #[serde(default)]
    pub paired_at: Option<u64>,
    /// SHA-256 of the hardware id.
    #[serde(default)]
    pub hwid_hash: String,
}

/// The outcome of `POST /api/pair/confirm`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairedView {
    /// The device.
    pub device_id: String,
    /// Its name.
    pub device_name: String,
    /// `active`, or `awaiting_approval`.
    pub status: String,
    /// The number the PC shows too.
    pub pairing_code: String,
}

/// A TOTP enrolment (`POST /api/totp/enroll`).
#[derive(Clone, Deserialize)]
pub struct TotpEnrollment {
    /// The secret, base32.
    pub secret_base32: String,
    /// The `otpauth://` URL for authenticator apps.
    pub otpauth_url: String,
}

impl std::fmt::Debug for TotpEnrollment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotpEnrollment").finish_non_exhaustive()
    }
}

/// Admin settings (`GET`/`PUT /api/admin/settings`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Whether newly paired devices wait for an admin's approval.
    pub require_device_approval: bool,
}

/// `POST /api/sessions/revoke`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedView {
    /// Refresh tokens revoked.
    pub revoked: u64,
}

/// An alert (`GET /api/alerts`, `POST /api/alerts/{id}/ack`, live `alert` events).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertView {
    /// Id (`alr_…`).
    pub id: String,
    /// The device.
    pub device_id: String,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// The rule that fired (`anomaly`, `cpu_high`, `disk_full`, `offline`, …).
    pub kind: String,
    /// What happened.
    pub message: String,
    /// The risk score that fired it, when one did.
    #[serde(default)]
    pub risk_score: Option<f64>,
    /// When it was raised (ms since the epoch).
    pub created_at: u64,
    /// When it was acknowledged, or null while open.
    #[serde(default)]
    pub acked_at: Option<u64>,
    /// Who acknowledged it.
    #[serde(default)]
    pub acked_by: Option<String>,
}

/// One metric over one bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricStats {
    /// Samples.
    pub count: u64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
    /// 95th percentile.
    pub p95: f64,
}

/// One rollup bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    /// The bucket's first millisecond.
    pub bucket_start: u64,
    /// Statistics by metric (`cpu_pct`, `mem_used_pct`, `disk_used_pct`, `rx_bps`,
    /// `tx_bps`, `risk_score`).
    pub metrics: std::collections::BTreeMap<String, MetricStats>,
}

/// A device's rollups (`GET /api/devices/{id}/metrics`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsView {
    /// The device.
    pub device_id: String,
    /// `hourly` or `daily`.
    pub period: String,
    /// Oldest first.
    pub buckets: Vec<Bucket>,
}

/// One event of the live view (`GET /api/live`), as its SSE data carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveEventView {
    /// `presence`, `telemetry`, `alert` or `command_status`.
    pub kind: String,
    /// The device.
    pub device_id: String,
    /// Its owner.
    #[serde(default)]
    pub owner_id: Option<String>,
    /// When it happened (ms since the epoch).
    pub at: u64,
    /// Kind-specific content.
    #[serde(default)]
    pub data: serde_json::Value,
}
