//! Flow 3: the authenticated session, heartbeat and telemetry.

use serde::{Deserialize, Serialize};

use crate::clock::UnixMillis;
use crate::error::ProtoError;
use crate::validate::{self, Validate};

/// agent → gateway, first frame on an mTLS connection after pairing. Signed by the
/// device key; the TLS client certificate must be the device's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// The device id from pairing.
    pub device_id: String,
    /// 32 random bytes, unpadded base64url (binds this session's first frame).
    pub nonce: String,
    /// The agent's version.
    pub agent_version: String,
    /// The highest command sequence the agent has accepted, so the gateway resumes after it.
    pub last_seq_received: u64,
    /// The version of the policy bundle the agent holds (0: the built-in policy), so the
    /// gateway sends `policy_update` only to an agent whose bundle is older. Absent (an
    /// older agent): the gateway sends the policy in force whenever it is not the
    /// built-in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<u64>,
    /// The `version` of the last owner-keys statement the agent applied (0: none since
    /// pairing), so the gateway sends only newer `owner_keys_update`s. Absent (an older
    /// agent): taken as 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_keys_version: Option<u64>,
}

impl Validate for Auth {
    fn validate(&self) -> Result<(), ProtoError> {
        validate::text("body.device_id", &self.device_id, 1, 64)?;
        validate::b64_len("body.nonce", &self.nonce, 32)?;
        validate::text("body.agent_version", &self.agent_version, 1, 32)
    }
}

/// gateway → agent, the answer to [`Auth`] (`status=connected` in the seed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connected {
    /// This session's id.
    pub session_id: String,
    /// Seconds between heartbeats (5..=3600).
    pub heartbeat_interval_s: u32,
    /// Seconds between telemetry samples (1..=3600).
    pub telemetry_interval_s: u32,
    /// The server's clock, so the agent can warn about skew.
    pub server_time: UnixMillis,
    /// The policy version in force; the agent asks for the bundle if it has an older one.
    pub policy_version: u64,
}

impl Validate for Connected {
    fn validate(&self) -> Result<(), ProtoError> {
        validate::text("body.session_id", &self.session_id, 1, 64)?;
        validate::range(
            "body.heartbeat_interval_s",
            self.heartbeat_interval_s,
            5,
            3600,
        )?;
        validate::range(
            "body.telemetry_interval_s",
            self.telemetry_interval_s,
            1,
            3600,
        )
    }
}

/// How the agent feels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeartbeatStatus {
    /// All well.
    Alive,
    /// Running, but the helper is unreachable or the local queue is near its limit.
    Degraded,
}

/// agent → gateway, every `heartbeat_interval_s`; refreshes presence (TTL 60 s).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// `alive` or `degraded`.
    pub status: HeartbeatStatus,
    /// Seconds since the agent started.
    pub uptime_s: u64,
    /// Messages waiting in the agent's local queue.
    pub queue_depth: u32,
}

impl Validate for Heartbeat {}

/// One disk's usage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskUsage {
    /// Mount point or drive letter (`C:\`, `/`).
    pub mount: String,
    /// Bytes used.
    pub used_bytes: u64,
    /// Bytes in total.
    pub total_bytes: u64,
}

/// Network counters summed over interfaces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetUsage {
    /// Bytes received per second since the previous sample.
    pub rx_bps: f64,
    /// Bytes sent per second since the previous sample.
    pub tx_bps: f64,
    /// Total bytes received since boot.
    pub rx_total_bytes: u64,
    /// Total bytes sent since boot.
    pub tx_total_bytes: u64,
}

/// How long an agent sends no telemetry after the gateway refused one of its messages
/// with `9002 UNAVAILABLE` (docs/protocol.md 4.3, "Back-off"): between 3 and 5 of its
/// telemetry intervals, placed by `spread` (a random byte), so that a fleet refused at
/// the same moment does not come back at the same moment. An overloaded server thereby
/// sheds samples at their source instead of receiving, refusing and answering each.
pub fn telemetry_backoff(interval: std::time::Duration, spread: u8) -> std::time::Duration {
    let factor = 3.0 + 2.0 * f64::from(spread) / 255.0;
    std::time::Duration::try_from_secs_f64(interval.as_secs_f64() * factor)
        .unwrap_or(std::time::Duration::MAX)
}

/// agent → gateway, every `telemetry_interval_s`. Signed by the device key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Telemetry {
    /// When the sample was taken.
    pub collected_at: UnixMillis,
    /// CPU use over all cores, percent (0..=100).
    pub cpu_pct: f64,
    /// Memory in use, bytes.
    pub mem_used_bytes: u64,
    /// Memory in total, bytes.
    pub mem_total_bytes: u64,
    /// Per-disk usage (at most 64).
    pub disks: Vec<DiskUsage>,
    /// Network counters.
    pub net: NetUsage,
}

impl Validate for Telemetry {
    fn validate(&self) -> Result<(), ProtoError> {
        validate::range("body.cpu_pct", self.cpu_pct, 0.0, 100.0)?;
        if self.mem_used_bytes > self.mem_total_bytes {
            return Err(ProtoError::invalid(
                "body.mem_used_bytes",
                "exceeds mem_total_bytes",
            ));
        }
        validate::max_items("body.disks", &self.disks, 64)?;
        for d in &self.disks {
            validate::text("body.disks[].mount", &d.mount, 1, 256)?;
            if d.used_bytes > d.total_bytes {
                return Err(ProtoError::invalid(
                    "body.disks[].used_bytes",
                    "exceeds total_bytes",
                ));
            }
        }
        validate::range("body.net.rx_bps", self.net.rx_bps, 0.0, 1e12)?;
        validate::range("body.net.tx_bps", self.net.tx_bps, 0.0, 1e12)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::telemetry_backoff;

    #[test]
    fn the_telemetry_backoff_is_three_to_five_intervals() {
        let ten = Duration::from_secs(10);
        assert_eq!(telemetry_backoff(ten, 0), Duration::from_secs(30));
        assert_eq!(telemetry_backoff(ten, 255), Duration::from_secs(50));
        let mid = telemetry_backoff(ten, 128);
        assert!(
            mid > Duration::from_secs(39) && mid < Duration::from_secs(41),
            "{mid:?}"
        );
        // The longest interval a server can name does not overflow.
        let longest = Duration::from_secs(u64::from(u32::MAX));
        assert!(telemetry_backoff(longest, 255) >= longest);
    }
}
