//! What an authenticated session does with each frame's outcome: accepted telemetry is
//! appended to the bus's telemetry stream (the AnalyticsWorker scores and stores it and
//! publishes the live telemetry event, with its risk score); a refused frame
//! is dropped — logged with its code, answered with a signed `error` frame that names it,
//! and recorded as a security event — and the session goes on. Presence changes are
//! published as live events here too.
//!
//! Admission: while the analytics workers are `telemetry.backlog_limit` samples or more
//! behind (read once a second by [`watch_backlog`]: the entries they have not read, times
//! the samples an entry held on average since the read before, plus the samples this
//! process appended since the read; or [`TELEMETRY_ENTRY_LIMIT`] entries, whatever they
//! hold), a sample is refused with `UNAVAILABLE` instead of accepted: the telemetry
//! stream is capped, and a sample accepted into a backlog past the cap could be trimmed
//! before it is stored. The agent
//! is told the sample was not kept, instead of it being lost after it was accepted.
//! From a session that had a heartbeat or sample verified within a heartbeat interval,
//! such a sample is refused before its signature is checked (`refused_while_behind`).

use serde_json::{Value, json};
use tether_proto::envelope::Header;
use tether_proto::messages::notify::ErrorFrame;
use tether_proto::messages::session::Telemetry;
use tether_proto::{ErrorCode, MessageId, MessageType, ProtoError};
use tether_store::Device;

use super::Session;
use crate::audit::{self, Outcome};
use crate::events::{
    ANALYTICS_GROUP, LiveEvent, LiveKind, TELEMETRY_ENTRY_LIMIT, TELEMETRY_STREAM, TelemetryRecord,
    publish_live,
};
use crate::routes::devices::presence_key;
use crate::state::AppState;

mod batcher;
#[cfg(test)]
mod tests;

pub use batcher::TelemetryBatcher;

/// The audit action of a refused telemetry frame.
pub const TELEMETRY_REJECTED: &str = "telemetry.rejected";
/// The audit action of any other refused frame on an authenticated session.
pub const FRAME_REJECTED: &str = "agent.frame_rejected";

/// How many of a session's samples may be on their way to the telemetry stream at once.
pub(super) const MAX_APPENDING: usize = 8;

/// A sample's message id and whether its append kept it.
pub(super) type Appended = (MessageId, Result<(), String>);

/// A session's samples on their way to the telemetry stream (see
/// [`Session::accept_telemetry`]). Nothing while none is in flight: an idle session
/// holds nothing here.
#[derive(Default)]
pub(super) struct Appending(
    Option<
        futures_util::stream::FuturesUnordered<futures_util::future::BoxFuture<'static, Appended>>,
    >,
);

impl Appending {
    /// How many are in flight.
    pub(super) fn len(&self) -> usize {
        self.0
            .as_ref()
            .map_or(0, futures_util::stream::FuturesUnordered::len)
    }

    fn push(&mut self, append: futures_util::future::BoxFuture<'static, Appended>) {
        self.0.get_or_insert_with(Default::default).push(append);
    }

    /// The next append to finish; `None` at once when none is in flight. The set goes
    /// when it empties, so a session between samples holds nothing here.
    pub(super) async fn next(&mut self) -> Option<Appended> {
        use futures_util::StreamExt as _;
        let set = self.0.as_mut()?;
        let done = set.next().await;
        if set.is_empty() {
            self.0 = None;
        }
        done
    }
}

/// The longest error text kept in an error frame or an audit event.
const MAX_REASON_CHARS: usize = 200;
/// How often the telemetry stream's backlog is read.
const BACKLOG_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Whether a sample is admitted with `backlog` samples waiting and the given limit.
pub(crate) fn admits(backlog: u64, limit: u64) -> bool {
    backlog < limit
}

/// The analytics' backlog in samples as admission counts it, from the entries they have
/// not read and the samples those stand for: at [`TELEMETRY_ENTRY_LIMIT`] entries or
/// more, at least `limit` (full).
pub(crate) fn backlog_samples(entries: u64, samples: u64, limit: u64) -> u64 {
    if entries >= TELEMETRY_ENTRY_LIMIT {
        samples.max(limit)
    } else {
        samples
    }
}

/// Reads the analytics group's backlog on the telemetry stream into
/// [`AppState::telemetry_backlog`] (in samples, [`backlog_samples`]) once a second, until
/// `shutdown`. A failed read keeps the last value (a missing group, before the analytics
/// worker made it, reads as 0).
pub(crate) async fn watch_backlog(state: AppState, shutdown: tokio_util::sync::CancellationToken) {
    let mut was_full = false;
    loop {
        match state.bus.backlog(TELEMETRY_STREAM, ANALYTICS_GROUP).await {
            Ok(entries) => {
                state.telemetry_out.note_backlog(entries);
                let n = backlog_samples(
                    entries,
                    state.telemetry_out.samples_in(entries),
                    state.config.telemetry.backlog_limit,
                );
                state
                    .telemetry_backlog
                    .store(n, std::sync::atomic::Ordering::Relaxed);
                tracing::debug!(entries, backlog = n, "telemetry backlog read");
                let full = !admits(n, state.config.telemetry.backlog_limit);
                if full != was_full {
                    if full {
                        tracing::warn!(
                            backlog = n,
                            entries,
                            limit = state.config.telemetry.backlog_limit,
                            "telemetry backlog at its limit: refusing samples until the analytics catch up"
                        );
                    } else {
                        tracing::info!(
                            backlog = n,
                            "telemetry backlog under its limit again: accepting samples"
                        );
                    }
                    was_full = full;
                }
            }
            Err(tether_bus::BusError::Invalid(_)) => state
                .telemetry_backlog
                .store(0, std::sync::atomic::Ordering::Relaxed),
            Err(e) => tracing::debug!(error = %e, "reading the telemetry backlog failed"),
        }
        if !crate::workers::pause(&shutdown, BACKLOG_EVERY).await {
            return;
        }
    }
}

impl Session {
    /// Whether the analytics are keeping up (see the module's "Admission").
    /// The backlog as last read (once a second) and grown by the entries this process
    /// appended since.
    fn admits_telemetry(&self) -> bool {
        let limit = self.state.config.telemetry.backlog_limit;
        let out = &self.state.telemetry_out;
        let backlog = backlog_samples(out.backlog_entries(), out.backlog_samples(), limit).max(
            self.state
                .telemetry_backlog
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        admits(backlog, limit)
    }

    /// While the analytics are behind, refuses a frame that claims to be telemetry with
    /// `UNAVAILABLE` *before* its signature is checked, and returns whether it did. At the
    /// moment the server is short of CPU, a sample it will refuse anyway must not cost
    /// it a signature check (the largest part of a sample's cost). Nothing of the frame
    /// is believed: the session is already authenticated by its mTLS certificate, the
    /// frame is not stored, does not move the sequence high-water mark, is not audited
    /// (it is counted in `/metrics` as refused with 9002) and does not count as a refused
    /// frame in a row; the reply only tells the agent that the message it names was not
    /// kept. A frame without a readable message id goes on to the checks. The caller
    /// takes this path only while the session has had a heartbeat or sample verified
    /// within a heartbeat interval.
    pub(super) async fn refused_while_behind(&mut self, frame: &[u8]) -> bool {
        if self.admits_telemetry() {
            return false;
        }
        let claimed = Claimed::peek(frame);
        let (Some(MessageType::Telemetry), Some(message_id)) =
            (claimed.msg_type, claimed.message_id)
        else {
            return false;
        };
        self.refuse_while_behind(message_id).await;
        true
    }

    /// Tells the agent that the sample `message_id` was not kept because the analytics
    /// are behind, so it sends it again later.
    async fn refuse_while_behind(&mut self, message_id: MessageId) {
        let out = &self.state.telemetry_out;
        tracing::debug!(
            read = self
                .state
                .telemetry_backlog
                .load(std::sync::atomic::Ordering::Relaxed),
            entries = out.backlog_entries(),
            samples = out.backlog_samples(),
            "a sample refused while the analytics are behind"
        );
        self.unkept(
            message_id,
            "the server is behind on storing telemetry; send it again later",
        )
        .await;
    }

    /// Counts a sample that was not kept and answers it with `UNAVAILABLE` naming it,
    /// saying why.
    async fn unkept(&mut self, message_id: MessageId, why: &str) {
        crate::prom::telemetry_rejected(ErrorCode::Unavailable);
        let _ = self
            .send(&ErrorFrame {
                code: ErrorCode::Unavailable,
                message: why.into(),
                ref_message_id: Some(message_id),
            })
            .await;
    }

    /// Hands a verified telemetry message to the pipeline (the telemetry stream, in an
    /// entry with the other samples accepted meanwhile: [`TelemetryBatcher`]) without
    /// waiting for it: the append goes into `appending`, and the session goes on with
    /// its next frame or push (a command's ack or delivery is not held up behind a bus
    /// commit). Its outcome comes back through [`Self::appended`]. At most
    /// [`MAX_APPENDING`] samples of a session are in flight; beyond that the session waits
    /// for the next outcome first.
    pub(super) async fn accept_telemetry(
        &mut self,
        device: &Device,
        header: &Header,
        body: Telemetry,
        appending: &mut Appending,
    ) {
        let state = self.state.clone();
        if !self.admits_telemetry() {
            self.refuse_while_behind(header.message_id.clone()).await;
            return;
        }
        let record = TelemetryRecord {
            device_id: device.id.clone(),
            owner_id: device.owner_id.clone(),
            message_id: header.message_id.to_string(),
            seq: header.seq,
            received_at: state.now(),
            body,
        };
        let bytes = match serde_json::to_vec(&record) {
            Ok(bytes) => bytes,
            Err(e) => {
                self.appended(&device.id, (header.message_id.clone(), Err(e.to_string())))
                    .await;
                return;
            }
        };
        while appending.len() >= MAX_APPENDING {
            match appending.next().await {
                Some(done) => self.appended(&device.id, done).await,
                None => break,
            }
        }
        // Queued here, so that a session's samples reach the stream in the order they
        // came; waited for in a task of its own: an append that has the batcher's turn
        // appends for every session waiting on it, so it must go on while this session
        // is busy with another frame (a future polled only by this session's loop
        // would not).
        let outcome = state.telemetry_out.enqueue(bytes);
        let append = tokio::spawn(async move {
            state
                .telemetry_out
                .appended(state.bus.as_ref(), outcome)
                .await
        });
        let message_id = header.message_id.clone();
        appending.push(Box::pin(async move {
            let kept = append
                .await
                .unwrap_or_else(|e| Err(format!("the sample's append failed: {e}")));
            (message_id, kept)
        }));
    }

    /// A sample's append is over: counted when it was kept; when it was not (the bus
    /// failed), answered with `UNAVAILABLE` naming it, so the agent knows it was not kept.
    pub(super) async fn appended(&mut self, device_id: &str, done: Appended) {
        match done {
            (_, Ok(())) => crate::prom::telemetry_accepted(),
            (message_id, Err(e)) => {
                tracing::warn!(device = %device_id, error = %e, "telemetry not stored");
                self.unkept(
                    message_id,
                    "the telemetry could not be stored; send it again later",
                )
                .await;
            }
        }
    }

    /// Drops a frame that failed its checks: answers it with a signed `error` frame that
    /// names it, counts it, and logs and audits it — each refusal of a kind (action and
    /// code) on its own at most once per [`REFUSAL_AUDIT_EVERY`], the others folded into
    /// the next event of that kind ([`RefusalTally`]). Nothing of the frame is believed;
    /// its claimed type and message id are read only to name it.
    pub(super) async fn reject_frame(
        &mut self,
        device_id: &str,
        session_id: &str,
        frame: &[u8],
        e: &ProtoError,
    ) {
        let code = e.code();
        let claimed = Claimed::peek(frame);
        let reason: String = e.to_string().chars().take(MAX_REASON_CHARS).collect();
        let claimed_type = claimed.msg_type.map(MessageType::name);
        if claimed.msg_type == Some(MessageType::Telemetry) {
            crate::prom::telemetry_rejected(code);
        }
        let _ = self
            .send(&ErrorFrame {
                code,
                message: if reason.is_empty() {
                    code.message().to_owned()
                } else {
                    reason.clone()
                },
                ref_message_id: claimed.message_id.clone(),
            })
            .await;
        let action = if claimed.msg_type == Some(MessageType::Telemetry) {
            TELEMETRY_REJECTED
        } else {
            FRAME_REJECTED
        };
        let detail = json!({
            "code": code.number(),
            "error": code.name(),
            "reason": reason,
            "session_id": session_id,
            "claimed_type": claimed_type,
            "message_id": claimed.message_id.as_ref().map(MessageId::as_str),
        });
        let Some(folded) =
            self.refusals
                .refused(action, code, &detail, tokio::time::Instant::now())
        else {
            tracing::debug!(device = %device_id, session = %session_id, code = code.number(), %reason, "dropped a refused frame from an agent (audited with the next of its kind)");
            return;
        };
        tracing::warn!(
            device = %device_id,
            session = %session_id,
            code = code.number(),
            claimed_type,
            %reason,
            folded,
            "dropped a refused frame from an agent"
        );
        record_refusal(&self.state, device_id, action, detail, folded).await;
    }

    /// At the session's end: audits, for each kind of refusal with some not yet audited,
    /// the last of them, with the others folded into it.
    pub(super) async fn record_folded_refusals(&mut self, device_id: &str) {
        for (action, detail, folded) in self.refusals.take_unrecorded() {
            record_refusal(&self.state, device_id, action, detail, folded).await;
        }
    }
}

/// Audits a refused frame; `folded` is how many earlier refusals of its kind on its
/// session this event stands for as well.
async fn record_refusal(
    state: &AppState,
    device_id: &str,
    action: &'static str,
    mut detail: Value,
    folded: u64,
) {
    if let Value::Object(map) = &mut detail {
        map.insert("folded".into(), Value::from(folded));
    }
    let recorded = audit::record(
        state,
        device_id,
        action,
        Some(device_id),
        Outcome::Denied,
        detail,
    )
    .await;
    if let Err(e) = recorded {
        tracing::error!(device = %device_id, error = %e, "recording a refused frame failed");
    }
}

/// How often one session audits a refusal of one kind on its own.
pub(crate) const REFUSAL_AUDIT_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// A session's refused frames by kind (audit action and error code): when one was last
/// audited, and how many since were not.
///
/// A refusal must cost less than an acceptance. An overloaded server answers frames late,
/// and late frames are refused as expired (`2004`); if each refusal were an audit write
/// (the store's one writer, in turn) and a warning line, every refusal would make the
/// next frames later still, until a whole fleet's telemetry was refused. So the first
/// refusal of a kind is audited at once, those within [`REFUSAL_AUDIT_EVERY`] after it
/// are only counted, and the next audited one of that kind — or the session's end —
/// records them as `folded`. Every refusal is still answered with its own `error` frame
/// and counted in `tether_telemetry_rejected_total`.
#[derive(Debug, Default)]
pub(crate) struct RefusalTally {
    kinds: std::collections::HashMap<(&'static str, ErrorCode), Unrecorded>,
}

#[derive(Debug)]
struct Unrecorded {
    recorded_at: tokio::time::Instant,
    count: u64,
    last: Value,
}

impl RefusalTally {
    /// Notes a refusal: `Some(folded)` when it is to be audited now, standing for
    /// `folded` earlier ones as well; `None` when it is only counted.
    fn refused(
        &mut self,
        action: &'static str,
        code: ErrorCode,
        detail: &Value,
        now: tokio::time::Instant,
    ) -> Option<u64> {
        match self.kinds.get_mut(&(action, code)) {
            Some(u) if now.duration_since(u.recorded_at) < REFUSAL_AUDIT_EVERY => {
                u.count = u.count.saturating_add(1);
                u.last = detail.clone();
                None
            }
            Some(u) => {
                let folded = u.count;
                u.recorded_at = now;
                u.count = 0;
                Some(folded)
            }
            None => {
                self.kinds.insert(
                    (action, code),
                    Unrecorded {
                        recorded_at: now,
                        count: 0,
                        last: Value::Null,
                    },
                );
                Some(0)
            }
        }
    }

    /// For each kind with refusals not audited: its action, the last one's detail, and
    /// how many others it stands for. Empties the tally.
    fn take_unrecorded(&mut self) -> Vec<(&'static str, Value, u64)> {
        self.kinds
            .drain()
            .filter(|(_, u)| u.count > 0)
            .map(|((action, _), u)| (action, u.last, u.count.saturating_sub(1)))
            .collect()
    }
}

/// What an unverified frame says about itself, kept only when well-formed.
#[derive(Debug, Default)]
struct Claimed {
    msg_type: Option<MessageType>,
    message_id: Option<MessageId>,
}

impl Claimed {
    fn peek(frame: &[u8]) -> Self {
        let Ok(v) = serde_json::from_slice::<Value>(frame) else {
            return Self::default();
        };
        let field = |k: &str| v.pointer(&format!("/header/{k}")).and_then(Value::as_str);
        Self {
            msg_type: field("type").and_then(MessageType::from_name),
            message_id: field("message_id").and_then(|m| MessageId::parse(m).ok()),
        }
    }
}

/// Publishes a presence change of `device` (best effort: a live view may miss it, the
/// presence key on the bus stays the truth).
pub(super) async fn publish_presence(
    state: &AppState,
    device: &Device,
    session_id: &str,
    online: bool,
) {
    let event = LiveEvent {
        kind: LiveKind::Presence,
        device_id: device.id.clone(),
        owner_id: device.owner_id.clone(),
        at: state.now(),
        data: json!({"online": online, "session_id": session_id}),
    };
    if let Err(e) = publish_live(state, &event).await {
        tracing::warn!(device = %device.id, error = %e, "presence live event not published");
    }
}

/// Ends a session's presence. The device goes offline (and an offline event is
/// published) unless a newer session of the same device already holds its presence.
pub(super) async fn end_presence(state: &AppState, device: &Device, session_id: &str) {
    let key = presence_key(&device.id);
    let deleted = state
        .bus
        .delete_if(&key, session_id.as_bytes())
        .await
        .unwrap_or(false);
    let replaced = !deleted && matches!(state.bus.get(&key).await, Ok(Some(_)));
    if !replaced {
        publish_presence(state, device, session_id, false).await;
    }
}
