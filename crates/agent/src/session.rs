//! Flow 3: the mutual-TLS session to the gateway, kept up for as long as the agent runs.
//!
//! One attempt: connect with the device certificate, send a signed `auth`, require a
//! `connected` signed by a pinned gateway key, flush the offline queue, then send
//! heartbeats and telemetry at the intervals `connected` named until the connection
//! ends. Between attempts the agent waits with [`Backoff`] while telemetry keeps going
//! into the queue ([`Uplink`]); a revoked device keeps retrying at the slowest pace, so
//! an owner who re-enables it does not need to visit the PC.

use std::time::Duration;

use rustls_pki_types::CertificateDer;
use tether_client::{ClientIdentity, WsStream};
use tether_proto::messages::command::CommandDelivery;
use tether_proto::messages::notify::ErrorFrame;
use tether_proto::messages::session::{Auth, Connected, Heartbeat, HeartbeatStatus};
use tether_proto::owner_sig::OwnerKeysUpdate;
use tether_proto::validate::b64url_encode;
use tether_proto::{
    ErrorCode, MessageId, MessageType, SequenceTracker, StaticKeys, Verified, Verifier,
};
use tokio::time::{Instant, MissedTickBehavior};

use crate::backoff::Backoff;
use crate::commands::{Commands, Outgoing, Reply};
use crate::error::AgentError;
use crate::socket::Incoming;
use crate::state::{PairedDevice, SessionRecord};
use crate::uplink::Uplink;
use crate::wire::{UnverifiedFrame, gateway_key_set};
use crate::{Context, random, socket};

/// How long the gateway may take to answer `auth`.
const AUTH_TIMEOUT: Duration = Duration::from_secs(15);
/// How long opening the connection (TCP, TLS, WebSocket) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// The session ends after this many refused gateway frames in a row.
const MAX_REFUSED_IN_A_ROW: u32 = 10;
/// Clock difference to the server above which the agent warns (envelopes allow 60 s).
const SKEW_WARNING_MS: u64 = 30_000;

/// How one session attempt ended.
#[derive(Debug)]
enum End {
    /// The agent is stopping.
    Stopped,
    /// The connection failed or dropped; `connected` tells whether it got as far as
    /// `connected` (then the backoff starts over).
    Lost { connected: bool, reason: String },
    /// The server refused us with an error code.
    Refused { code: ErrorCode, message: String },
}

/// Keeps the device connected until the agent is asked to stop.
pub async fn run(
    ctx: &mut Context,
    device: &PairedDevice,
    uplink: &mut Uplink,
    commands: &mut Commands,
) -> Result<(), AgentError> {
    let keys = gateway_key_set(&device.record.gateway_keys)?;
    let chain = certificate_chain(device)?;
    let mut backoff = Backoff::default();
    loop {
        let end = attempt(ctx, device, &keys, &chain, uplink, commands).await;
        uplink.go_offline();
        match end {
            End::Stopped => return Ok(()),
            End::Lost { connected, reason } => {
                say!("disconnected: {reason}");
                if connected {
                    backoff.reset();
                }
            }
            End::Refused { code, message } => {
                say!("server error: {} {}: {message}", code.number(), code.name());
                if is_revocation(code) {
                    say!(
                        "This PC's pairing has been revoked. To pair it again, stop the agent, \
                         delete {} and run it again.",
                        ctx.state.root().display()
                    );
                    backoff.saturate();
                }
            }
        }
        let delay = backoff.next_delay(random::u32());
        say!("reconnecting in {:.1}s", delay.as_secs_f64());
        let shutdown = ctx.shutdown.clone();
        let stopped = uplink
            .while_offline(&mut ctx.outbox, async {
                tokio::select! {
                    () = tokio::time::sleep(delay) => false,
                    () = shutdown.cancelled() => true,
                }
            })
            .await;
        if stopped {
            return Ok(());
        }
    }
}

fn is_revocation(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::DeviceRevoked | ErrorCode::CertificateRevoked
    )
}

/// The TLS client chain: the device certificate, then the intermediate that issued it.
pub(crate) fn certificate_chain(
    device: &PairedDevice,
) -> Result<Vec<CertificateDer<'static>>, AgentError> {
    let mut chain = vec![CertificateDer::from(tether_client::first_cert_der(
        &device.cert_pem,
    )?)];
    if let Some(intermediate) = device.ca_chain_pem.first() {
        chain.push(CertificateDer::from(tether_client::first_cert_der(
            intermediate,
        )?));
    }
    Ok(chain)
}

async fn attempt(
    ctx: &mut Context,
    device: &PairedDevice,
    keys: &StaticKeys,
    chain: &[CertificateDer<'static>],
    uplink: &mut Uplink,
    commands: &mut Commands,
) -> End {
    let mut gateway_seq = SequenceTracker::<()>::new();
    let policy_version = commands.policy().current().version;
    let (mut ws, connected, auth_seq) = match connect_and_auth(
        ctx,
        device,
        keys,
        chain,
        &mut gateway_seq,
        uplink,
        policy_version,
    )
    .await
    {
        Ok(Some(ok)) => ok,
        Ok(None) => return End::Stopped,
        Err(e) => return failed(e, false),
    };
    say!("connected: session {}", connected.session_id);
    commands.drop_stale_replies();
    uplink.go_online(connected.telemetry_interval_s);
    let now = ctx.clock.now();
    if let Err(e) = ctx.state.save_session(&SessionRecord {
        session_id: connected.session_id.clone(),
        connected_at: now.0,
        heartbeat_interval_s: Some(connected.heartbeat_interval_s),
        telemetry_interval_s: Some(connected.telemetry_interval_s),
    }) {
        tracing::warn!(error = %e, "could not record the session");
    }
    if now.0.abs_diff(connected.server_time.0) > SKEW_WARNING_MS {
        say!(
            "warning: this PC's clock differs from the server's by {}s; fix the clock or \
             messages will be refused",
            now.0.abs_diff(connected.server_time.0) / 1000
        );
    }

    // What was collected offline goes first, in order, before anything new.
    match uplink
        .flush(&mut ctx.outbox, &mut ws, auth_seq, &ctx.shutdown)
        .await
    {
        Ok(r) => {
            if r.sent > 0 || r.expired > 0 {
                say!("flushed {} queued messages", r.sent);
            }
            if r.expired > 0 {
                say!("dropped {} queued messages that had expired", r.expired);
            }
            if r.resealed > 0 {
                tracing::info!(resealed = r.resealed, "queued messages signed again");
            }
        }
        Err(e) => {
            socket::close(&mut ws).await;
            return failed(e, true);
        }
    }

    let period = Duration::from_secs(u64::from(connected.heartbeat_interval_s.max(5)));
    let mut ticker = tokio::time::interval_at(
        Instant::now()
            .checked_add(period)
            .unwrap_or_else(Instant::now),
        period,
    );
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut refusal: Option<End> = None;
    let mut refused_in_a_row: u32 = 0;
    loop {
        let sent = tokio::select! {
            () = ctx.shutdown.cancelled() => {
                socket::close(&mut ws).await;
                return End::Stopped;
            }
            _ = ticker.tick() => {
                let stats = uplink.stats().await;
                let hb = Heartbeat {
                    status: if uplink.near_limit(&stats) {
                        HeartbeatStatus::Degraded
                    } else {
                        HeartbeatStatus::Alive
                    },
                    uptime_s: ctx.started.elapsed().as_secs(),
                    queue_depth: u32::try_from(stats.entries).unwrap_or(u32::MAX),
                };
                match ctx.outbox.seal(&hb) {
                    Ok(frame) => socket::send(&mut ws, frame).await,
                    Err(e) => Err(e),
                }
            }
            sample = uplink.next_sample() => {
                uplink.send_live(&mut ctx.outbox, &mut ws, &sample).await
            }
            Some(out) = commands.next_reply() => {
                send_command_reply(ctx, &mut ws, &out).await
            }
            incoming = socket::next(&mut ws) => match incoming {
                Err(e) => return refusal.unwrap_or_else(|| failed(e, true)),
                Ok(Incoming::Closed(reason)) => {
                    return refusal.unwrap_or_else(|| End::Lost {
                        connected: true,
                        reason: format!(
                            "the server closed the session ({})",
                            reason.filter(|r| !r.is_empty()).unwrap_or_else(|| "no reason given".into())
                        ),
                    });
                }
                Ok(Incoming::Frame(frame)) => {
                    match read_gateway_frame(ctx, keys, &mut gateway_seq, &frame) {
                        Ok(v) if v.header.msg_type == MessageType::CommandDelivery => {
                            let trace_id = v.header.trace_id.clone();
                            let message_id = v.header.message_id.clone();
                            match v.into_body::<CommandDelivery>() {
                                Ok(d) if d.device_id != device.record.device_id => {
                                    // Another PC's command (replayed here, or misrouted):
                                    // not a command of this device, so there is nothing
                                    // to acknowledge; the frame is refused and reported
                                    // (the server audits it), and nothing is stored.
                                    report_refusal(
                                        ctx,
                                        &mut ws,
                                        ErrorCode::Forbidden,
                                        &format!(
                                            "command {} is for another device",
                                            d.command_id
                                        ),
                                        Some(message_id),
                                    )
                                    .await
                                }
                                Ok(d) => {
                                    let mut sent = Ok(());
                                    for out in commands.on_delivery(&d, &trace_id).await {
                                        sent = send_command_reply(ctx, &mut ws, &out).await;
                                        if sent.is_err() {
                                            break;
                                        }
                                    }
                                    sent
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "unreadable command delivery");
                                    Ok(())
                                }
                            }
                        }
                        Ok(v) if v.header.msg_type == MessageType::PolicyUpdate => {
                            refused_in_a_row = 0;
                            on_policy_update(ctx, &mut ws, commands, &frame, v).await
                        }
                        Ok(v) if v.header.msg_type == MessageType::OwnerKeysUpdate => {
                            refused_in_a_row = 0;
                            on_owner_keys_update(ctx, &mut ws, commands, v).await
                        }
                        Ok(v) => {
                            refused_in_a_row = 0;
                            if let Some(end) = handle(v, uplink) {
                                refusal = Some(end);
                            }
                            Ok(())
                        }
                        Err(e) => {
                            // A frame that fails its checks (a forged signature, a
                            // rewound or replayed sequence, an expired TTL), whatever
                            // type it claims, is dropped, never acted on, and reported
                            // to the server, which audits it; a stream of them ends the
                            // session.
                            refused_in_a_row = refused_in_a_row.saturating_add(1);
                            if refused_in_a_row >= MAX_REFUSED_IN_A_ROW {
                                Err(AgentError::Proto(e))
                            } else {
                                report_refused_frame(ctx, &mut ws, &frame, &e).await
                            }
                        }
                    }
                }
            }
        };
        if let Err(e) = sent {
            socket::close(&mut ws).await;
            return failed(e, true);
        }
    }
}

/// Answers a gateway frame that failed its checks with an `error` frame naming it (the
/// server records it in the audit trail). Nothing in the frame is acted on.
async fn report_refused_frame(
    ctx: &mut Context,
    ws: &mut WsStream,
    frame: &[u8],
    e: &tether_proto::ProtoError,
) -> Result<(), AgentError> {
    let claimed = serde_json::from_slice::<serde_json::Value>(frame)
        .ok()
        .and_then(|v| {
            v.pointer("/header/message_id")
                .and_then(|m| m.as_str())
                .and_then(|m| MessageId::parse(m).ok())
        });
    // Say what an unverifiable refusal claimed (a genuine one can fail its checks when
    // this PC's clock is off), for the person reading the log; it is not acted on.
    let message = match UnverifiedFrame::parse(frame).ok().and_then(|f| f.refusal()) {
        Some(claimed) => format!("{e} (the frame claims: {claimed})"),
        None => e.to_string(),
    };
    report_refusal(ctx, ws, e.code(), &message, claimed).await
}

/// A verified `policy_update`: put in force (and stored), or refused with an `error`
/// frame naming it (`4005` invalid bundle, `4006` not above the version in force), which
/// the server audits; a refused one changes nothing.
async fn on_policy_update(
    ctx: &mut Context,
    ws: &mut WsStream,
    commands: &Commands,
    frame: &[u8],
    v: Verified,
) -> Result<(), AgentError> {
    let message_id = v.header.message_id.clone();
    match commands.policy().accept(frame, v) {
        Ok(b) => {
            tracing::info!(policy_version = b.version, policy_hash = %b.hash, "policy in force");
            say!("policy: version {} in force (hash {})", b.version, b.hash);
            Ok(())
        }
        Err(refusal) => {
            let in_force = commands.policy().current();
            report_refusal(
                ctx,
                ws,
                refusal.code(),
                &format!(
                    "policy_update refused: {refusal}; version {} stays in force",
                    in_force.version
                ),
                Some(message_id),
            )
            .await
        }
    }
}

/// Sends the `error` frame that reports a refused gateway frame (`ref_message_id`: the
/// frame's claimed message id, when it has one).
async fn report_refusal(
    ctx: &mut Context,
    ws: &mut WsStream,
    code: ErrorCode,
    message: &str,
    ref_message_id: Option<MessageId>,
) -> Result<(), AgentError> {
    tracing::warn!(code = code.number(), error = %message, "refused a frame from the gateway");
    say!(
        "refused a frame from the gateway: {} {}: {message}",
        code.number(),
        code.name()
    );
    let body = ErrorFrame {
        code,
        message: message.chars().take(500).collect(),
        ref_message_id,
    };
    let sealed = ctx.outbox.seal(&body)?;
    socket::send(ws, sealed).await
}

/// An `owner_keys_update` (a change of the pinned owner keys, relayed by the server):
/// applied only if a key pinned now signed it ([`Commands::on_owner_keys_update`]);
/// otherwise refused with an `error` frame naming it (`2011` for a statement no pinned
/// key signed), which the server audits. The server's own signature on the envelope
/// counts for nothing here.
async fn on_owner_keys_update(
    ctx: &mut Context,
    ws: &mut WsStream,
    commands: &Commands,
    v: Verified,
) -> Result<(), AgentError> {
    let message_id = v.header.message_id.clone();
    let update = match v.into_body::<OwnerKeysUpdate>() {
        Ok(u) => u,
        Err(e) => return report_refusal(ctx, ws, e.code(), &e.to_string(), Some(message_id)).await,
    };
    match commands.on_owner_keys_update(&update) {
        Ok(keys) => {
            let kids: Vec<&str> = keys.iter().map(|k| k.kid.as_str()).collect();
            say!(
                "owner keys changed (version {}, signed by {}): pinned now {}",
                update.statement.version,
                update.user_sig.kid(),
                kids.join(", ")
            );
            Ok(())
        }
        Err(e) => {
            report_refusal(
                ctx,
                ws,
                e.code(),
                &format!("owner keys not changed: {e}"),
                Some(message_id),
            )
            .await
        }
    }
}

/// Signs and sends a command frame under its command's trace id.
async fn send_command_reply(
    ctx: &mut Context,
    ws: &mut WsStream,
    out: &Outgoing,
) -> Result<(), AgentError> {
    let frame = match &out.reply {
        Reply::Ack(b) => ctx.outbox.seal_traced(b, &out.trace_id)?,
        Reply::Status(b) => ctx.outbox.seal_traced(b, &out.trace_id)?,
        Reply::Result(b) => ctx.outbox.seal_traced(&**b, &out.trace_id)?,
    };
    socket::send(ws, frame).await
}

/// A frame the gateway sent during the session. Returns the refusal when it is an
/// `error` for the session as a whole (the gateway closes the socket right after); an
/// `error` naming one of our messages (`ref_message_id`) refuses only that message and
/// the session goes on (after a `9002`, without live telemetry for a while:
/// [`Uplink::back_off`]).
fn handle(v: Verified, uplink: &mut Uplink) -> Option<End> {
    match v.header.msg_type {
        MessageType::Error => match v.into_body::<ErrorFrame>() {
            Ok(ErrorFrame {
                code,
                message,
                ref_message_id: Some(id),
            }) => {
                say!(
                    "the server refused message {id}: {} {}: {message}",
                    code.number(),
                    code.name()
                );
                if code == ErrorCode::Unavailable {
                    uplink.back_off();
                }
                None
            }
            Ok(e) => Some(End::Refused {
                code: e.code,
                message: e.message,
            }),
            Err(e) => {
                tracing::warn!(error = %e, "unreadable error frame");
                None
            }
        },
        other => {
            tracing::info!(
                r#type = other.name(),
                "ignoring a message this agent version does not handle yet"
            );
            None
        }
    }
}

/// Connects and authenticates; telemetry collected meanwhile goes into the queue.
/// `None` when the agent is asked to stop. Returns the socket, `connected` and the
/// `seq` the auth carried.
async fn connect_and_auth(
    ctx: &mut Context,
    device: &PairedDevice,
    keys: &StaticKeys,
    chain: &[CertificateDer<'static>],
    gateway_seq: &mut SequenceTracker<()>,
    uplink: &mut Uplink,
    policy_version: u64,
) -> Result<Option<(WsStream, Connected, u64)>, AgentError> {
    let identity = ClientIdentity {
        chain: chain.to_vec(),
        key: ctx.identity.tls_key(),
    };
    let (server, ca_pem) = (ctx.server.as_str().to_owned(), ctx.ca.pem.clone());
    let shutdown = ctx.shutdown.clone();
    let opened = uplink
        .while_offline(&mut ctx.outbox, async {
            tokio::select! {
                r = tokio::time::timeout(
                    CONNECT_TIMEOUT,
                    tether_client::connect_agent_ws(&server, &ca_pem, Some(identity)),
                ) => Some(r),
                () = shutdown.cancelled() => None,
            }
        })
        .await;
    let mut ws = match opened {
        None => return Ok(None),
        Some(Err(_)) => {
            return Err(AgentError::Connection(format!(
                "no connection within {}s",
                CONNECT_TIMEOUT.as_secs()
            )));
        }
        Some(Ok(r)) => r?,
    };
    let auth = Auth {
        device_id: device.record.device_id.clone(),
        nonce: b64url_encode(&random::bytes::<32>()),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        // The gateway numbers its frames per session for now, so there is nothing to
        // resume from yet.
        last_seq_received: 0,
        policy_version: Some(policy_version),
        // What `device.json` says (the pinned keys are saved there before they are used).
        owner_keys_version: ctx
            .state
            .device()
            .ok()
            .flatten()
            .map(|d| d.record.owner_keys_version),
    };
    // With a queue to deliver, the auth takes a number reserved below the queue's head,
    // so every queued frame follows it in order.
    let (auth_frame, auth_seq) = match uplink.auth_seq().await {
        Some(seq) => (ctx.outbox.seal_reserved(&auth, seq)?, seq),
        None => {
            let sealed = ctx.outbox.seal_live(&auth)?;
            (sealed.frame, sealed.seq)
        }
    };
    socket::send(&mut ws, auth_frame).await?;
    let answer = uplink
        .while_offline(&mut ctx.outbox, async {
            tokio::select! {
                r = socket::next_within(&mut ws, AUTH_TIMEOUT) => Some(r),
                () = shutdown.cancelled() => None,
            }
        })
        .await;
    let frame = match answer {
        None => {
            socket::close(&mut ws).await;
            return Ok(None);
        }
        Some(r) => match r? {
            Incoming::Frame(f) => f,
            Incoming::Closed(reason) => {
                return Err(AgentError::Protocol(format!(
                    "the gateway closed the connection before `connected` ({})",
                    reason.unwrap_or_else(|| "no reason given".into())
                )));
            }
        },
    };
    let v = read_gateway_frame(ctx, keys, gateway_seq, &frame).map_err(|e| {
        // Say what an unverifiable refusal claimed, for the person reading the log; it
        // is not acted on.
        match UnverifiedFrame::parse(&frame)
            .ok()
            .and_then(|f| f.refusal())
        {
            Some(claimed) => AgentError::Protocol(format!("{e} (the frame claims: {claimed})")),
            None => AgentError::Proto(e),
        }
    })?;
    match v.header.msg_type {
        MessageType::Connected => Ok(Some((ws, v.into_body::<Connected>()?, auth_seq))),
        MessageType::Error => {
            let e = v.into_body::<ErrorFrame>()?;
            socket::close(&mut ws).await;
            Err(AgentError::Refused {
                code: e.code,
                message: e.message,
            })
        }
        other => Err(AgentError::Protocol(format!(
            "expected `connected`, got `{}`",
            other.name()
        ))),
    }
}

/// Verifies a gateway frame against the pinned keys and the per-connection sequence.
fn read_gateway_frame(
    ctx: &Context,
    keys: &StaticKeys,
    seq: &mut SequenceTracker<()>,
    frame: &[u8],
) -> Result<Verified, tether_proto::ProtoError> {
    let v = Verifier::new(keys, &*ctx.clock).verify(frame)?;
    seq.accept(&(), v.header.seq)?;
    Ok(v)
}

/// Maps an error to how the attempt ended. A TLS alert saying the certificate is
/// revoked counts as a revocation.
fn failed(e: AgentError, connected: bool) -> End {
    match e {
        AgentError::Refused { code, message } => End::Refused { code, message },
        other => {
            let reason = other.to_string();
            if reason.contains("CertificateRevoked") {
                End::Refused {
                    code: ErrorCode::CertificateRevoked,
                    message: "the server refused this device's certificate as revoked".into(),
                }
            } else {
                End::Lost { connected, reason }
            }
        }
    }
}
