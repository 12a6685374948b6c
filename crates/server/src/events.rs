//! What flows between the server's roles over the bus. Every name and payload shape here is
//! shared by the gateway (which publishes), the workers (which consume) and the live view.
//!
//! - [`TELEMETRY_STREAM`]: accepted telemetry messages, up to
//!   [`RECORDS_PER_ENTRY`] an entry, as a JSON array of [`TelemetryRecord`]s (the
//!   samples a process's sessions accepted while its previous entry was being appended;
//!   an entry of an earlier build is one record, a JSON object: [`records_of`] reads
//!   both). Consumer group [`ANALYTICS_GROUP`] (the AnalyticsWorker) reads it; any number
//!   of server processes share the group. Capped at [`TELEMETRY_MAX_LEN`] entries.
//! - [`LIVE_STREAM`]: events a user's live clients or an agent session may need right
//!   now, as a [`LiveEvent`] (JSON) an entry, or a batch of them
//!   (`{"origin": node, "events": [...]}`: what one process published within a few
//!   milliseconds). Every server process reads it with a fan-out read from its own
//!   position (no consumer group), so each process sees every event and fans it out to
//!   its own connections. Capped at [`LIVE_MAX_LEN`] entries.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tether_proto::UnixMillis;
use tether_proto::messages::session::Telemetry;

use crate::error::ApiError;
use crate::state::AppState;

/// The bus stream of accepted telemetry.
pub const TELEMETRY_STREAM: &str = "telemetry";
/// The consumer group of the AnalyticsWorker on [`TELEMETRY_STREAM`].
pub const ANALYTICS_GROUP: &str = "analytics";
/// The bus stream of live events.
pub const LIVE_STREAM: &str = "live";
/// Approximate bound on each stream's length (oldest acknowledged entries are trimmed),
/// for streams of one item an entry (commands, dead letters).
pub const STREAM_MAX_LEN: u64 = 100_000;
/// The most telemetry records one entry of [`TELEMETRY_STREAM`] holds.
pub const RECORDS_PER_ENTRY: usize = 64;
/// Approximate bound on [`TELEMETRY_STREAM`]'s length in entries (up to
/// [`RECORDS_PER_ENTRY`] records each, about 35 KiB): at most about 150 MiB of the bus.
/// At 10,000 samples a second in full entries that is about 26 s of history; in entries
/// of a few samples (a lighter load), a few seconds to minutes.
pub const TELEMETRY_MAX_LEN: u64 = 4096;
/// The analytics' backlog in entries at which the gateway refuses samples whatever their
/// estimated count: half of [`TELEMETRY_MAX_LEN`], so that entries appended between two
/// reads of the backlog (by other processes too) do not reach the cap, where the ones
/// the group has not read would be trimmed (see `gateway::telemetry`'s admission).
pub const TELEMETRY_ENTRY_LIMIT: u64 = TELEMETRY_MAX_LEN / 2;
/// Approximate bound on [`LIVE_STREAM`]'s length in entries. Live events matter only
/// while someone listens, and every reader keeps up within milliseconds.
pub const LIVE_MAX_LEN: u64 = 4096;

/// A telemetry message the gateway verified and accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TelemetryRecord {
    /// The device.
    pub device_id: String,
    /// Its owner, if paired.
    pub owner_id: Option<String>,
    /// The envelope's message id (idempotency key: stored once).
    pub message_id: String,
    /// The envelope's sequence number.
    pub seq: u64,
    /// When the gateway accepted it.
    pub received_at: UnixMillis,
    /// The body.
    pub body: Telemetry,
}

/// What a live event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LiveKind {
    /// A device came online or went offline: `data` = `{"online": bool, "session_id"?}`.
    Presence,
    /// A telemetry sample: `data` = the telemetry body plus `"risk_score"` when known.
    Telemetry,
    /// An alert was raised or acknowledged: `data` = the alert as the API shows it.
    Alert,
    /// A command changed state: `data` = `{"command_id","method","state","from",
    /// "attempts","trace_id","origin_user_id","error"?,"result"?,"detail"?}`.
    CommandStatus,
    /// Internal, never shown to users: the device's gateway session should read its
    /// command stream (`data.redeliver` null), or send an in-flight command again
    /// (`data.redeliver` = its id).
    CommandWake,
    /// Internal, never shown to users, test mode only (`POST /api/test/agent_frame`): the
    /// device's gateway session writes `data.frame` (a string) to its agent verbatim.
    AgentFrame,
    /// An admin saved a new policy: `data` = `{"policy_version", "policy_hash"}`;
    /// `device_id` is empty (it concerns every device). Admins and auditors see it live;
    /// gateways will relay the new bundle to agents as `policy_update`.
    PolicyChanged,
    /// Internal, never shown to users: an owner-keys statement the device's owner
    /// submitted (`POST /api/me/keys`), `data.update` = the `owner_keys_update` body; the
    /// device's gateway session sends it to its agent.
    OwnerKeys,
}

/// One live event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveEvent {
    /// What it is.
    pub kind: LiveKind,
    /// The device it concerns.
    pub device_id: String,
    /// The device's owner (used for access checks when fanning out).
    pub owner_id: Option<String>,
    /// When it happened.
    pub at: UnixMillis,
    /// Kind-specific content.
    pub data: Value,
}

/// `open`, then `items` (each already JSON) separated by commas, then `close`: a JSON
/// array or object built from serialized parts without parsing them again.
pub(crate) fn join_json(open: &[u8], items: &[Vec<u8>], close: &[u8]) -> Vec<u8> {
    let len = items
        .iter()
        .map(|i| i.len().saturating_add(1))
        .sum::<usize>();
    let mut out = Vec::with_capacity(len.saturating_add(open.len()).saturating_add(close.len()));
    out.extend_from_slice(open);
    for (n, item) in items.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        out.extend_from_slice(item);
    }
    out.extend_from_slice(close);
    out
}

/// The records of one [`TELEMETRY_STREAM`] entry: a JSON array of them, or one record
/// (an entry of an earlier build).
pub fn records_of(payload: &[u8]) -> Result<Vec<TelemetryRecord>, serde_json::Error> {
    let array = payload
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'[');
    if array {
        serde_json::from_slice(payload)
    } else {
        serde_json::from_slice(payload).map(|r| vec![r])
    }
}

/// The live events of one [`LIVE_STREAM`] entry, in order: a batch
/// (`{"origin", "events": [...]}`) or one event. The publisher's `origin` (beside the
/// event's fields in each) is not a field of an event, and is ignored.
pub fn live_events_of(payload: &[u8]) -> Result<Vec<LiveEvent>, serde_json::Error> {
    #[derive(Deserialize)]
    struct Shape {
        #[serde(default)]
        events: Option<serde::de::IgnoredAny>,
    }
    #[derive(Deserialize)]
    struct Batch {
        events: Vec<LiveEvent>,
    }
    if serde_json::from_slice::<Shape>(payload)?.events.is_some() {
        serde_json::from_slice::<Batch>(payload).map(|b| b.events)
    } else {
        serde_json::from_slice::<LiveEvent>(payload).map(|e| vec![e])
    }
}

/// Publishes a live event for every server process to fan out (this one at once; the
/// others through the bus: [`crate::live::LiveHub::publish`]).
pub async fn publish_live(state: &AppState, event: &LiveEvent) -> Result<(), ApiError> {
    crate::live::LiveHub::publish(state, event.clone()).await
}
