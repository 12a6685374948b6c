//! The gateway role: agents' WebSocket sessions on `/agent/ws`.
//!
//! One endpoint, two modes, chosen by the TLS handshake:
//! - **no client certificate** (an unpaired agent): exactly one exchange is allowed —
//!   `discovery_hello` → `discovery_challenge` (flow 0) — then the socket closes;
//! - **a client certificate issued by our intermediate and not revoked** (checked in the
//!   handshake): the first frame must be `auth`, signed by the device key the certificate
//!   was issued for; the gateway answers `connected`, records presence with a TTL and
//!   keeps the session (heartbeats and telemetry refresh presence). Accepted telemetry
//!   goes to the bus's telemetry stream and, as a live event, to the live view; presence
//!   changes are live events too; alerts for the device come back as `alert_push`; the
//!   policy in force goes out as `policy_update` after `connected` (when the agent's
//!   bundle is older) and whenever an admin saves a new one (see `gateway/policy.rs`).
//!
//! Every frame the gateway sends is a signed envelope. A refused session gets a signed
//! `error` frame with a stable code, followed by a close; a single refused frame on an
//! authenticated session is dropped and answered with an `error` frame naming it, and the
//! session goes on (see `gateway/telemetry.rs`).

use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use serde_json::{Value, json};
use tether_proto::envelope::{Stamp, Verified};
use tether_proto::messages::discovery::{DiscoveryChallenge, DiscoveryHello};
use tether_proto::messages::notify::ErrorFrame;
use tether_proto::messages::session::{Auth, Connected};
use tether_proto::validate::b64url_decode;
use tether_proto::{
    ErrorCode, KeyId, MAX_FRAME_BYTES, Message, MessageId, MessageType, Payload, ProtoError,
    SequenceTracker, StaticKeys, TraceId, Verifier,
};
use tether_store::{Device, DeviceStatus, DiscoveryRecord, DiscoveryStatus};
use tether_trust::TokenType;

use crate::audit::{self, Outcome};
use crate::live::AgentMailbox;
use crate::live::AgentPush;
use crate::routes::devices::{presence_key, uptime_key};
use crate::routes::pairing::DISCOVERY_AUDIENCE;
use crate::serve::Peer;
use crate::state::AppState;

mod device_reads;
mod owner_keys;
mod policy;
mod signatures;
pub(crate) mod telemetry;

pub use device_reads::DeviceReads;
pub use signatures::SignatureChecker;

pub use policy::relay_policy;
pub use telemetry::{FRAME_REJECTED, TELEMETRY_REJECTED, TelemetryBatcher};

/// How long a new socket may take to send its first frame.
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(15);
/// The audit action of an `error` frame an agent sent: it refused one of the gateway's
/// frames.
pub const AGENT_REFUSED_FRAME: &str = "agent.frame_refused";
/// A session ends after this many refused frames in a row (one bad frame is dropped and
/// answered; a stream of them is a broken or hostile agent).
pub const MAX_REJECTED_IN_A_ROW: u32 = 10;
/// `GET /agent/ws`.
pub async fn upgrade(
    State(state): State<AppState>,
    Extension(peer): Extension<Peer>,
    ws: WebSocketUpgrade,
) -> Response {
    ws.max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        // Idle sessions must be cheap (docs/benchmarks.md). tungstenite's defaults, a
        // 128 KiB read buffer that it zero-fills and a 128 KiB write-coalescing buffer,
        // cost ~150 KB per session here. Agents send one small frame at a time: read in
        // 4 KiB steps (a bigger frame grows the buffer as it arrives) and write each
        // frame straight through.
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .on_upgrade(move |socket| async move {
            let mut s = Session {
                state,
                peer,
                socket,
                seq: 0,
                policy_sent: 0,
                owner_keys_sent: 0,
                claimed_at: tether_proto::UnixMillis(0),
                sweep_at: None,
                refusals: telemetry::RefusalTally::default(),
            };
            let result = if s.peer.client_cert.is_some() {
                s.authenticated().await
            } else {
                s.discovery().await
            };
            if let Err((code, message)) = result {
                s.refuse(code, &message).await;
            }
        })
}

struct Session {
    state: AppState,
    peer: Peer,
    socket: WebSocket,
    seq: u64,
    /// The policy version the agent holds, as far as this session knows (what its `auth`
    /// said, then what we sent).
    policy_sent: u64,
    /// The last owner-keys statement version the agent applied, as far as this session
    /// knows (what its `auth` said, then what we sent).
    owner_keys_sent: u64,
    /// When this session last took over command stream entries another gateway left
    /// pending (at connect, then on a wake at most once per `CLAIM_IDLE`).
    claimed_at: tether_proto::UnixMillis,
    /// When to look for other waiting commands after a hand-over (see
    /// [`AgentPush::Queued`]): later, not at once, so the handed command's ack, status and
    /// result are not held up behind those reads.
    sweep_at: Option<tokio::time::Instant>,
    /// The refused frames answered but not yet audited on their own (see
    /// [`telemetry::RefusalTally`]).
    refusals: telemetry::RefusalTally,
}

/// How long a session that ended waits for its samples still on their way to the
/// telemetry stream (longer than the bus's own time limit on a write).
const APPENDS_DRAIN: Duration = Duration::from_secs(10);

/// How long after a hand-over a session looks for other waiting commands (several
/// hand-overs in this time share one look).
const SWEEP_AFTER: Duration = Duration::from_millis(50);

type Refusal = (ErrorCode, String);

/// The refusal when a session's store read could not run (its thread stopped).
fn store_unavailable() -> Refusal {
    (ErrorCode::Internal, "store unavailable".to_owned())
}

fn refusal(e: &ProtoError) -> Refusal {
    (e.code(), e.to_string())
}

impl Session {
    fn stamp(&mut self, ttl: u32) -> Stamp {
        self.seq = self.seq.saturating_add(1);
        let iat = self.state.now();
        Stamp {
            iat,
            ttl,
            seq: self.seq,
            message_id: MessageId::time_ordered(iat, crate::random::bytes::<16>()),
            trace_id: TraceId::from_random_bytes(crate::random::bytes::<16>()),
        }
    }

    async fn send<T: Message>(&mut self, body: &T) -> Result<(), Refusal> {
        let stamp = self.stamp(60);
        self.send_stamped(stamp, body).await
    }

    /// Sends a command delivery under its command's trace id.
    async fn deliver(&mut self, out: &crate::commands::agent::Outgoing) -> Result<(), Refusal> {
        let mut stamp = self.stamp(out.ttl);
        stamp.trace_id = out.trace_id.clone();
        tracing::info!(
            trace_id = %out.trace_id,
            command = %out.body.command_id,
            device = %out.body.device_id,
            attempt = out.body.attempt,
            "command delivered to the agent"
        );
        self.send_stamped(stamp, &out.body).await
    }

    async fn send_stamped<T: Message>(&mut self, stamp: Stamp, body: &T) -> Result<(), Refusal> {
        let frame = self
            .state
            .gateway_signer
            .seal(stamp, body)
            .map_err(|e| refusal(&e))?;
        let text = String::from_utf8(frame)
            .map_err(|_| (ErrorCode::Internal, "frame is not UTF-8".to_owned()))?;
        self.socket
            .send(WsMessage::Text(text.into()))
            .await
            .map_err(|e| (ErrorCode::DeliveryFailed, e.to_string()))
    }

    async fn refuse(&mut self, code: ErrorCode, message: &str) {
        tracing::debug!(addr = %self.peer.addr, code = code.number(), message, "refusing agent session");
        let msg: String = message.chars().take(500).collect();
        let msg = if msg.is_empty() {
            code.message().to_owned()
        } else {
            msg
        };
        let _ = self
            .send(&ErrorFrame {
                code,
                message: msg,
                ref_message_id: None,
            })
            .await;
        let _ = self
            .socket
            .send(WsMessage::Close(Some(CloseFrame {
                code: 1008,
                reason: code.name().into(),
            })))
            .await;
    }

    /// The next data frame, or None when the peer closed.
    async fn next_frame(&mut self, timeout: Duration) -> Result<Option<Vec<u8>>, Refusal> {
        loop {
            let msg = match tokio::time::timeout(timeout, self.socket.recv()).await {
                Err(_) => {
                    return Err((
                        ErrorCode::UnexpectedMessage,
                        "no frame within the time allowed".into(),
                    ));
                }
                Ok(None) => return Ok(None),
                Ok(Some(Err(e))) => return Err((ErrorCode::MalformedFrame, e.to_string())),
                Ok(Some(Ok(m))) => m,
            };
            match msg {
                WsMessage::Text(t) => return Ok(Some(t.as_bytes().to_vec())),
                WsMessage::Binary(b) => return Ok(Some(b.to_vec())),
                WsMessage::Close(_) => return Ok(None),
                WsMessage::Ping(_) | WsMessage::Pong(_) => {}
            }
        }
    }

    /// Flow 0: one signed hello, one signed challenge.
    async fn discovery(&mut self) -> Result<(), Refusal> {
        let Some(frame) = self.next_frame(FIRST_FRAME_TIMEOUT).await? else {
            return Ok(());
        };
        let state = self.state.clone();
        crate::ratelimit::check(
            &state,
            "discovery",
            self.peer.addr.ip(),
            state.config.pairing.discovery_per_minute,
        )
        .await
        .map_err(|e| (e.code(), e.to_string()))?;
        // The hello is self-signed: it proves possession of the key it carries.
        let agent_pub = serde_json::from_slice::<Value>(&frame)
            .ok()
            .and_then(|v| {
                v.pointer("/body/agent_pub")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .ok_or_else(|| {
                (
                    ErrorCode::MalformedFrame,
                    "expected a discovery_hello envelope".to_owned(),
                )
            })?;
        let keys = agent_keys(&agent_pub)
            .map_err(|why| (ErrorCode::InvalidField, format!("body.agent_pub {why}")))?;
        let verified = Verifier::new(&keys, &*state.clock)
            .verify(&frame)
            .map_err(|e| refusal(&e))?;
        let agent_kid = verified.header.kid.to_string();
        let hello: DiscoveryHello = expect(verified, MessageType::DiscoveryHello)?;

        let now = state.now();
        let expires_at = tether_proto::UnixMillis(
            now.0
                .saturating_add(state.config.pairing.discovery_ttl_s.saturating_mul(1000)),
        );
        let fresh = state
            .store
            .claim_once("discovery-nonce", &hello.nonce, expires_at, now)
            .await
            .map_err(|e| (e.code(), "store unavailable".to_owned()))?;
        if !fresh {
            audit::record(
                &state,
                "anonymous",
                "discovery.hello",
                None,
                Outcome::Denied,
                json!({"reason": "nonce replayed"}),
            )
            .await
            .map_err(|e| (e.code(), e.to_string()))?;
            return Err((
                ErrorCode::SequenceReplay,
                "this discovery nonce was already used".into(),
            ));
        }
        let rec = DiscoveryRecord {
            id: crate::random::id("disc"),
            hwid_hash: hello.hwid_hash.clone(),
            agent_pub: hello.agent_pub.clone(),
            agent_version: hello.agent_version.clone(),
            agent_manifest_hash: hello.agent_manifest_hash.clone(),
            source_hash: crate::ratelimit::source_hash(self.peer.addr.ip()),
            status: DiscoveryStatus::Pending,
            created_at: now,
            expires_at,
        };
        state
            .store
            .insert_discovery(&rec)
            .await
            .map_err(|e| (e.code(), "store unavailable".to_owned()))?;
        let mut claims = state
            .issuer
            .claims(TokenType::Pair, &rec.id, DISCOVERY_AUDIENCE, now)
            .map_err(|e| (e.code(), e.to_string()))?;
        claims
            .ext
            .insert("agent_kid".into(), Value::String(agent_kid));
        let token = state
            .issuer
            .issue(&claims)
            .map_err(|e| (e.code(), e.to_string()))?;
        audit::record(
            &state,
            "anonymous",
            "discovery.hello",
            Some(&rec.id),
            Outcome::Success,
            json!({"hwid_hash": rec.hwid_hash, "agent_version": rec.agent_version}),
        )
        .await
        .map_err(|e| (e.code(), e.to_string()))?;
        let challenge = DiscoveryChallenge {
            challenge_token: token,
            pair_init_url: format!("{}/api/discovery/confirm", state.public_url),
            expires_at,
        };
        self.send(&challenge).await?;
        let _ = self.socket.send(WsMessage::Close(None)).await;
        Ok(())
    }

    /// Flow 3: an mTLS-authenticated agent session.
    async fn authenticated(&mut self) -> Result<(), Refusal> {
        let state = self.state.clone();
        let serial = self
            .peer
            .client_cert
            .as_ref()
            .and_then(|c| cert_serial_hex(c.as_ref()))
            .ok_or_else(|| {
                (
                    ErrorCode::CertificateInvalid,
                    "unreadable client certificate".to_owned(),
                )
            })?;
        let store = Arc::clone(&state.session_store);
        let device = state
            .session_reads
            .run(async move { store.device_by_cert_serial(&serial).await })
            .await
            .ok_or_else(store_unavailable)?
            .map_err(|e| (e.code(), "store unavailable".to_owned()))?
            .ok_or_else(|| {
                (
                    ErrorCode::DeviceNotPaired,
                    "no device holds this certificate".to_owned(),
                )
            })?;
        match device.status {
            DeviceStatus::Active => {}
            DeviceStatus::Revoked => {
                return Err((
                    ErrorCode::DeviceRevoked,
                    "this device has been revoked".into(),
                ));
            }
            DeviceStatus::AwaitingApproval => {
                return Err((
                    ErrorCode::DeviceNotPaired,
                    "this device is waiting for an admin's approval".into(),
                ));
            }
            DeviceStatus::PendingPairing => {
                return Err((
                    ErrorCode::DeviceNotPaired,
                    "this device is not paired".into(),
                ));
            }
        }
        let keys = agent_keys(&device.agent_pub)
            .map_err(|why| (ErrorCode::Internal, format!("stored agent key {why}")))?;

        let Some(frame) = self.next_frame(FIRST_FRAME_TIMEOUT).await? else {
            return Ok(());
        };
        let verified = Verifier::new(&keys, &*state.clock)
            .verify(&frame)
            .map_err(|e| refusal(&e))?;
        let mut seqs = SequenceTracker::new();
        seqs.accept(&(), verified.header.seq)
            .map_err(|e| refusal(&e))?;
        let auth: Auth = expect(verified, MessageType::Auth)?;
        if auth.device_id != device.id {
            return Err((
                ErrorCode::Forbidden,
                "auth.device_id is not the device of this certificate".into(),
            ));
        }
        let session_id = crate::random::id("sess");
        state
            .bus
            .put_ttl(
                &presence_key(&device.id),
                session_id.as_bytes(),
                Duration::from_secs(state.config.gateway.presence_ttl_s),
            )
            .await
            .map_err(|e| (e.code(), "bus unavailable".to_owned()))?;
        audit::record(
            &state,
            &device.id,
            "device.connect",
            Some(&device.id),
            Outcome::Success,
            json!({"session_id": session_id, "agent_version": auth.agent_version}),
        )
        .await
        .map_err(|e| (e.code(), e.to_string()))?;
        let mut mailbox = state.live.register_agent(&device.id, &session_id);
        let _counted = crate::prom::AgentSession::open();
        // Read after registering: a policy saved from now on reaches the mailbox, one
        // saved before is what the store says.
        let reads = state.clone();
        let (policy_version, policy_update) = state
            .session_reads
            .run(async move { policy::in_force(&reads).await })
            .await
            .ok_or_else(store_unavailable)?
            .map_err(|e| (e.code(), "store unavailable".to_owned()))?;
        self.policy_sent = auth.policy_version.unwrap_or(0);
        // The commands waiting for this device are taken (moved to `sent`) before the
        // agent hears `connected`, and sent right after it: a command submitted once the
        // session is registered reaches it through its mailbox (handed over, or woken to
        // read the stream) as well, and only one of the two moves it to `sent`.
        self.claimed_at = state.now();
        let (reads, id) = (state.clone(), device.id.clone());
        let waiting = state
            .session_reads
            .run(async move { crate::commands::agent::on_connect(&reads, &id).await })
            .await
            .unwrap_or_default();
        self.send(&Connected {
            session_id: session_id.clone(),
            heartbeat_interval_s: state.config.gateway.heartbeat_interval_s,
            telemetry_interval_s: state.config.gateway.telemetry_interval_s,
            server_time: state.now(),
            policy_version,
        })
        .await?;
        tracing::info!(device = %device.id, session = %session_id, "agent connected");
        telemetry::publish_presence(&state, &device, &session_id, true).await;
        if let Some(update) = policy_update {
            self.send_policy(&device.id, &update).await?;
        }
        // The owner's key changes the agent missed, before any command they may sign.
        self.owner_keys_sent = auth.owner_keys_version.unwrap_or(0);
        let (reads, of, applied) = (state.clone(), device.clone(), self.owner_keys_sent);
        let pending = state
            .session_reads
            .run(async move { owner_keys::pending(&reads, &of, applied).await })
            .await
            .unwrap_or_default();
        for update in pending {
            self.send_owner_keys(&device.id, &update).await?;
        }

        let mut device = device;
        for out in &waiting {
            self.deliver(out).await?;
        }
        let mut appending = telemetry::Appending::default();
        let result = self
            .session_loop(
                &keys,
                &mut seqs,
                &mut device,
                &session_id,
                &mut mailbox,
                &mut appending,
            )
            .await;
        // Pushes for this device go to a newer session, or nowhere, from here on.
        drop(mailbox);
        // The samples still on their way: each is kept or the agent is told (while its
        // socket is still open), within the bus's own time limits.
        let drain = async {
            while let Some(done) = appending.next().await {
                self.appended(&device.id, done).await;
            }
        };
        if tokio::time::timeout(APPENDS_DRAIN, drain).await.is_err() {
            tracing::warn!(device = %device.id, "telemetry appends still unfinished at the session's end");
        }
        self.record_folded_refusals(&device.id).await;
        telemetry::end_presence(&state, &device, &session_id).await;
        let _ = audit::record(
            &state,
            &device.id,
            "device.disconnect",
            Some(&device.id),
            Outcome::Success,
            json!({"session_id": session_id}),
        )
        .await;
        tracing::info!(device = %device.id, session = %session_id, "agent disconnected");
        result
    }

    /// The frames of an authenticated session until it ends. A frame that fails its
    /// checks is dropped and answered with an `error` frame (see [`telemetry`]); the
    /// session ends after [`MAX_REJECTED_IN_A_ROW`] such frames in a row, at a
    /// revocation, or at a verified frame of a type agents may not send.
    async fn session_loop(
        &mut self,
        keys: &StaticKeys,
        seqs: &mut SequenceTracker<()>,
        device: &mut Device,
        session_id: &str,
        mailbox: &mut AgentMailbox,
        appending: &mut telemetry::Appending,
    ) -> Result<(), Refusal> {
        let state = self.state.clone();
        let gw = &state.config.gateway;
        let idle = Duration::from_secs(u64::from(gw.heartbeat_interval_s).saturating_mul(3));
        let presence_ttl = Duration::from_secs(gw.presence_ttl_s);
        // A telemetry sample re-reads the device's status and refreshes its presence only
        // when the last such check (by a heartbeat or a sample) is a heartbeat interval
        // old, that is when the agent has skipped a heartbeat; a heartbeat always does.
        // A fleet sending thousands of samples a second must not cost a store read and a
        // bus write each. Below the presence TTL (at least two heartbeat intervals).
        let telemetry_recheck = Duration::from_secs(u64::from(gw.heartbeat_interval_s));
        let mut rejected_in_a_row: u32 = 0;
        // When the device's status was last read and its presence refreshed.
        let mut checked_at: Option<tokio::time::Instant> = None;
        loop {
            let sweep = self.sweep_at;
            let frame = tokio::select! {
                f = self.next_frame(idle) => f,
                Some(push) = mailbox.recv() => {
                    self.on_push(&device.id, push).await?;
                    continue;
                }
                Some(done) = appending.next(), if appending.len() > 0 => {
                    self.appended(&device.id, done).await;
                    continue;
                }
                () = tokio::time::sleep_until(sweep.unwrap_or_else(tokio::time::Instant::now)),
                    if sweep.is_some() =>
                {
                    self.sweep_at = None;
                    self.deliver_waiting(&device.id).await?;
                    continue;
                }
            };
            let Some(frame) = frame? else {
                return Ok(());
            };
            // While the analytics are behind, a sample is refused before its signature
            // is checked, but only while this session has had a heartbeat or sample
            // verified within a heartbeat interval: the revocation check and presence
            // refresh that ride on those keep their pace, and a session that sends
            // nothing verifiable soon meets the full checks (and their count).
            if checked_at.is_some_and(|t| t.elapsed() < telemetry_recheck)
                && self.refused_while_behind(&frame).await
            {
                continue;
            }
            // The sequence high-water mark lives only as long as this session: it is not
            // persisted or resumed across sessions yet, so a frame replayed into a *new*
            // session passes here and is caught downstream by its message_id (telemetry
            // is stored once per message_id).
            // A sample's or a heartbeat's signature is checked in a batch with other
            // sessions' frames (`signatures`); any other frame's here.
            let checked = match Verifier::new(keys, &*state.clock).prepare(&frame) {
                Ok(p)
                    if matches!(
                        p.claimed_type(),
                        Some(MessageType::Telemetry | MessageType::Heartbeat)
                    ) =>
                {
                    state.signatures.check(p).await.ok_or_else(|| {
                        (
                            ErrorCode::Internal,
                            "the signature checker stopped".to_owned(),
                        )
                    })?
                }
                Ok(p) => p.check_signature(),
                Err(e) => Err(e),
            };
            let checked = checked
                .and_then(|c| c.finish(&*state.clock))
                .and_then(|v| seqs.accept(&(), v.header.seq).map(|()| v));
            let v = match checked {
                Ok(v) => {
                    rejected_in_a_row = 0;
                    v
                }
                Err(e) => {
                    rejected_in_a_row = rejected_in_a_row.saturating_add(1);
                    self.reject_frame(&device.id, session_id, &frame, &e).await;
                    if rejected_in_a_row >= MAX_REJECTED_IN_A_ROW {
                        return Err((
                            e.code(),
                            format!("{MAX_REJECTED_IN_A_ROW} frames in a row were refused"),
                        ));
                    }
                    continue;
                }
            };
            match v.header.msg_type {
                MessageType::Telemetry
                    if checked_at.is_some_and(|t| t.elapsed() < telemetry_recheck) =>
                {
                    if let Payload::Telemetry(body) = v.payload {
                        self.accept_telemetry(device, &v.header, body, appending)
                            .await;
                    }
                }
                MessageType::Heartbeat | MessageType::Telemetry => {
                    checked_at = Some(tokio::time::Instant::now());
                    // A revocation ends the session at the next heartbeat at the latest
                    // (new handshakes already fail on the CRL).
                    match state.device_reads.device(&device.id).await {
                        Ok(Some(d)) if d.status == DeviceStatus::Revoked => {
                            return Err((
                                ErrorCode::DeviceRevoked,
                                "this device has been revoked".into(),
                            ));
                        }
                        Ok(Some(d)) => *device = d,
                        Ok(None) => {}
                        Err(e) => tracing::warn!(error = %e, "device status check failed"),
                    }
                    if let Err(e) = state
                        .bus
                        .put_ttl(
                            &presence_key(&device.id),
                            session_id.as_bytes(),
                            presence_ttl,
                        )
                        .await
                    {
                        tracing::warn!(error = %e, "presence refresh failed");
                    }
                    match v.payload {
                        Payload::Telemetry(body) => {
                            self.accept_telemetry(device, &v.header, body, appending)
                                .await;
                        }
                        Payload::Heartbeat(hb) => {
                            // Fleet health shows uptime and an exact last-seen while the
                            // session lives; a bus key with the presence TTL, no store write.
                            let seen = crate::routes::devices::Uptime {
                                uptime_s: hb.uptime_s,
                                at: state.now().0,
                            };
                            if let Err(e) = state
                                .bus
                                .put_ttl(&uptime_key(&device.id), &seen.encode(), presence_ttl)
                                .await
                            {
                                tracing::warn!(error = %e, "uptime refresh failed");
                            }
                        }
                        _ => {}
                    }
                }
                MessageType::Error => {
                    // The agent refused one of our frames (a signature or sequence that
                    // failed its checks: a forged or replayed frame on the way). Audited.
                    if let Payload::Error(e) = &v.payload {
                        tracing::warn!(
                            device = %device.id,
                            code = e.code.number(),
                            message = %e.message,
                            "the agent refused a frame"
                        );
                        let _ = audit::record(
                            &state,
                            &device.id,
                            AGENT_REFUSED_FRAME,
                            Some(&device.id),
                            Outcome::Denied,
                            json!({"code": e.code.number(), "message": e.message,
                                   "ref_message_id": e.ref_message_id.as_ref().map(ToString::to_string),
                                   "session_id": session_id}),
                        )
                        .await;
                    }
                }
                t if crate::commands::agent::is_command_frame(t) => {
                    let trace_id = v.header.trace_id.clone();
                    let message_id = v.header.message_id.clone();
                    let handled = match &v.payload {
                        Payload::CommandAck(b) => {
                            crate::commands::agent::on_ack(&state, &device.id, b).await
                        }
                        Payload::CommandStatus(b) => {
                            crate::commands::agent::on_status(&state, &device.id, b).await
                        }
                        Payload::CommandResult(b) => {
                            crate::commands::agent::on_result(&state, &device.id, b).await
                        }
                        _ => Ok(()),
                    };
                    if let Err((code, message)) = handled {
                        tracing::warn!(%trace_id, device = %device.id, code = code.number(), %message, "command frame refused");
                        self.refuse_command_frame(&device.id, code, &message, message_id)
                            .await;
                    }
                }
                other => {
                    return Err((
                        ErrorCode::UnexpectedMessage,
                        format!("{} is not accepted on an agent session", other.name()),
                    ));
                }
            }
        }
    }

    /// A push from the live hub: an alert for the agent, commands to deliver, or (test
    /// mode) a raw frame to write.
    async fn on_push(&mut self, device_id: &str, push: AgentPush) -> Result<(), Refusal> {
        match push {
            AgentPush::Alert(alert) => self.send(&*alert).await,
            AgentPush::Commands => self.deliver_waiting(device_id).await,
            AgentPush::Queued(c) => {
                // Ingest's command now; whatever else waits, a moment later.
                if c.command.device_id == device_id
                    && let Some(out) = crate::commands::agent::handed_over(&self.state, &c).await
                {
                    self.deliver(&out).await?;
                }
                self.sweep_at.get_or_insert_with(|| {
                    let now = tokio::time::Instant::now();
                    now.checked_add(SWEEP_AFTER).unwrap_or(now)
                });
                Ok(())
            }
            AgentPush::Redeliver(id) => {
                if let Some(out) = crate::commands::agent::redeliver(&self.state, &id).await
                    && out.body.device_id == device_id
                {
                    self.deliver(&out).await?;
                }
                Ok(())
            }
            AgentPush::Raw(frame) => self.send_raw(device_id, frame).await,
            AgentPush::Policy(update) => self.send_policy(device_id, &update).await,
            AgentPush::OwnerKeys(update) => self.send_owner_keys(device_id, &update).await,
        }
    }

    /// A wake: the device's stream's deliveries, then any command still `queued` in
    /// the store.
    async fn deliver_waiting(&mut self, device_id: &str) -> Result<(), Refusal> {
        let now = self.state.now();
        let claim = now.0.saturating_sub(self.claimed_at.0)
            >= u64::try_from(crate::commands::CLAIM_IDLE.as_millis()).unwrap_or(u64::MAX);
        if claim {
            self.claimed_at = now;
        }
        for out in crate::commands::agent::pending(&self.state, device_id, claim).await {
            self.deliver(&out).await?;
        }
        for out in crate::commands::agent::pending_in_store(&self.state, device_id).await {
            self.deliver(&out).await?;
        }
        Ok(())
    }

    /// Sends the agent a `policy_update` unless it holds that version (or a newer one)
    /// already.
    async fn send_policy(
        &mut self,
        device_id: &str,
        update: &tether_proto::messages::notify::PolicyUpdate,
    ) -> Result<(), Refusal> {
        if update.policy_version <= self.policy_sent {
            return Ok(());
        }
        tracing::info!(device = %device_id, policy_version = update.policy_version,
            policy_hash = %update.policy_hash, "policy sent to the agent");
        self.send(update).await?;
        self.policy_sent = update.policy_version;
        Ok(())
    }

    /// Test mode only (`POST /api/test/agent_frame`, which plays a compromised or buggy
    /// server): writes `frame` to the agent exactly as given, unsigned by us and
    /// unchecked. The session's own counter then moves up to the frame's `header.seq`
    /// (when it has a usable one), so the gateway's next genuine frames stay above it
    /// for the agent. A process not in test mode drops the frame.
    async fn send_raw(&mut self, device_id: &str, frame: String) -> Result<(), Refusal> {
        if !self.state.config.test_mode {
            tracing::warn!(device = %device_id, "a raw agent frame outside test mode dropped");
            return Ok(());
        }
        if let Some(seq) = serde_json::from_str::<Value>(&frame)
            .ok()
            .and_then(|v| v.pointer("/header/seq").and_then(Value::as_u64))
            .filter(|s| *s <= tether_proto::canonical::MAX_SAFE_INTEGER)
        {
            self.seq = self.seq.max(seq);
        }
        tracing::warn!(device = %device_id, bytes = frame.len(), "test mode: writing a raw frame to the agent");
        self.socket
            .send(WsMessage::Text(frame.into()))
            .await
            .map_err(|e| (ErrorCode::DeliveryFailed, e.to_string()))
    }

    /// Answers a verified command frame the server cannot accept (another device's
    /// command, a finished one) with an `error` frame naming it, and records it.
    async fn refuse_command_frame(
        &mut self,
        device_id: &str,
        code: ErrorCode,
        message: &str,
        message_id: MessageId,
    ) {
        let _ = self
            .send(&ErrorFrame {
                code,
                message: message.chars().take(500).collect(),
                ref_message_id: Some(message_id),
            })
            .await;
        let _ = audit::record(
            &self.state,
            device_id,
            FRAME_REJECTED,
            Some(device_id),
            Outcome::Denied,
            json!({"code": code.number(), "reason": message}),
        )
        .await;
    }
}

/// The one key an agent's envelopes are verified with, under its derived kid.
fn agent_keys(agent_pub_b64: &str) -> Result<StaticKeys, &'static str> {
    let key: [u8; 32] = b64url_decode(agent_pub_b64)
        .and_then(|b| b.try_into().ok())
        .ok_or("is not 32 bytes of base64url")?;
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&key).map_err(|_| "is not an Ed25519 key")?;
    let mut keys = StaticKeys::new();
    keys.insert(KeyId::for_ed25519(&key), vk);
    Ok(keys)
}

fn expect<T: Message>(v: Verified, t: MessageType) -> Result<T, Refusal> {
    if v.header.msg_type != t {
        return Err((
            ErrorCode::UnexpectedMessage,
            format!("expected {}, got {}", t.name(), v.header.msg_type.name()),
        ));
    }
    v.into_body::<T>().map_err(|e| refusal(&e))
}

/// The lowercase hex serial of a DER certificate.
pub fn cert_serial_hex(der: &[u8]) -> Option<String> {
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).ok()?;
    let raw = cert.tbs_certificate.raw_serial();
    let start = raw.iter().position(|b| *b != 0).unwrap_or(raw.len());
    Some(hex::encode(raw.get(start..)?))
}
