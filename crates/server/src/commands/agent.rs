//! The gateway's side of a command: what a device's session delivers, and what the
//! agent's `command_ack`, `command_status` and `command_result` do to the state.

use std::time::Duration;

use serde_json::json;
use tether_proto::envelope::{StaticKeys, Verifier};
use tether_proto::messages::command::{
    AckStatus, CommandAck, CommandDelivery, CommandResult, CommandState, CommandStatus, Priority,
    ResultStatus,
};
use tether_proto::{ErrorCode, MessageType, Payload, TraceId};
use tether_store::{Command, CommandUpdate, is_terminal};

use super::ingest::{approvals_of, delivery};
use super::{CLAIM_IDLE, GATEWAY_GROUP, device_stream, transition};
use crate::state::AppState;

/// How many stream entries one read takes.
const READ_BATCH: usize = 32;

/// A refusal of an agent's frame: its code and message.
pub type Refusal = (ErrorCode, String);

/// A delivery for the session to sign and send: the body, the command's trace id and how
/// long the frame is valid.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The `command_delivery` body.
    pub body: CommandDelivery,
    /// The command's trace id (the frame's header carries it).
    pub trace_id: TraceId,
    /// The frame's TTL, seconds: until the command expires.
    pub ttl: u32,
}

async fn outgoing(state: &AppState, c: &Command, attempt: u32) -> Outgoing {
    let approvals = approvals_of(state, c).await;
    let left_ms = c.command.expires_at.0.saturating_sub(state.now().0);
    Outgoing {
        body: delivery(c, attempt, &approvals),
        trace_id: TraceId::parse(&c.command.trace_id)
            .unwrap_or_else(|_| TraceId::from_random_bytes(crate::random::bytes::<16>())),
        ttl: u32::try_from(left_ms.div_ceil(1000))
            .unwrap_or(u32::MAX)
            .clamp(1, 60),
    }
}

/// The ack deadline after delivery attempt `attempt` (1-based).
pub fn ack_deadline(state: &AppState, attempt: u32) -> Duration {
    let backoff = &state.config.commands.retry_backoff_s;
    let i = usize::try_from(attempt.saturating_sub(1)).unwrap_or(usize::MAX);
    let secs = backoff
        .get(i)
        .or_else(|| backoff.last())
        .copied()
        .unwrap_or(30);
    Duration::from_secs(secs)
}

/// Moves a `queued` command to `sent` (attempt 1) and returns its delivery; `None` if it
/// is not queued any more (another gateway took it, or it ended) or it has expired (then
/// it is moved to `expired`).
async fn dispatch(state: &AppState, c: &Command, how: &str) -> Option<Outgoing> {
    if c.command.expires_at <= state.now() {
        expire(state, c).await;
        return None;
    }
    deliver_attempt(state, c, CommandState::Queued, how).await
}

/// The delivery of a `queued` command ingest handed to this process's session of its
/// device ([`crate::live::LiveHub::hand_over`]): moved to `sent` like one read from the
/// stream.
pub async fn handed_over(state: &AppState, c: &Command) -> Option<Outgoing> {
    dispatch(state, c, "ingest").await
}

/// Moves a command from `from` to `sent` as a new delivery attempt with a new ack
/// deadline, and returns the delivery; `None` if it is no longer in `from` (another
/// gateway or worker moved it) or the store failed (logged; the command stays where it
/// was and is found again).
async fn deliver_attempt(
    state: &AppState,
    c: &Command,
    from: CommandState,
    via: &str,
) -> Option<Outgoing> {
    let attempt = c.attempts.saturating_add(1).min(16);
    let update = CommandUpdate {
        attempts: Some(attempt),
        next_attempt_at: Some(Some(
            state.now().saturating_add(ack_deadline(state, attempt)),
        )),
        detail: json!({"attempt": attempt, "via": via, "node": state.node_id}),
        ..CommandUpdate::default()
    };
    match transition(state, &c.command.id, &[from], CommandState::Sent, update).await {
        Ok(Some(sent)) => Some(outgoing(state, &sent, attempt).await),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(trace_id = %c.command.trace_id, command = %c.command.id, via, error = %e.code(), "delivery failed");
            None
        }
    }
}

/// Moves a command whose TTL passed to `expired`.
pub async fn expire(state: &AppState, c: &Command) {
    let update = CommandUpdate {
        next_attempt_at: Some(None),
        error_code: Some(ErrorCode::TtlExpired.number()),
        detail: json!({"reason": "ttl"}),
        ..CommandUpdate::default()
    };
    if let Err(e) = transition(
        state,
        &c.command.id,
        &[
            CommandState::AwaitingApproval,
            CommandState::Queued,
            CommandState::Sent,
            CommandState::AckReceived,
        ],
        CommandState::Expired,
        update,
    )
    .await
    {
        tracing::warn!(trace_id = %c.command.trace_id, command = %c.command.id, error = %e.code(), "expiry failed");
    }
}

/// Where a priority goes in a device's queue: `high` first, `low` last.
const fn rank(p: Priority) -> u8 {
    match p {
        Priority::High => 0,
        Priority::Normal => 1,
        Priority::Low => 2,
    }
}

/// Orders deliveries by priority, keeping the order they came in (oldest first) within
/// one priority.
fn by_priority(out: &mut [Outgoing]) {
    out.sort_by_key(|o| rank(o.body.priority));
}

/// What a newly connected session must send: every command of the device still in
/// flight, from the store, `high` priority first. `queued` ones are dispatched; `sent`,
/// `ack_received` and `executing` ones are sent again as they are (the agent dedupes by
/// command id, acks again and resends a result it already has); a `result_posted` one
/// (the server stopped between recording a result and finishing the command) is
/// finished from the stored result.
pub async fn on_connect(state: &AppState, device_id: &str) -> Vec<Outgoing> {
    let in_flight = match state.store.commands_in_flight(device_id, 256).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(device = %device_id, error = %e, "in-flight commands not loaded");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for c in in_flight {
        match c.state {
            CommandState::Queued => out.extend(dispatch(state, &c, "connect").await),
            CommandState::ResultPosted => {
                if let Err(e) = finish(state, &c).await {
                    tracing::warn!(trace_id = %c.command.trace_id, command = %c.command.id, error = %e.0.number(), "finishing a posted result failed");
                }
            }
            _ if c.command.expires_at <= state.now() => expire(state, &c).await,
            CommandState::Sent => out.extend(resend(state, &c).await),
            _ => out.push(outgoing(state, &c, c.attempts.max(1)).await),
        }
    }
    by_priority(&mut out);
    out.extend(read_stream(state, device_id, Claim::Stale).await);
    out
}

/// A `sent` command sent again at reconnect: a new attempt with a new ack deadline.
async fn resend(state: &AppState, c: &Command) -> Option<Outgoing> {
    deliver_attempt(state, c, CommandState::Sent, "reconnect").await
}

/// What a woken session sends first: the new entries of the device's stream, after the
/// entries another gateway left pending too long when `claim_stale` (the session asks
/// for that at most once per `CLAIM_IDLE`: each claim is a few more bus calls on the
/// command's way; those commands are found in the store meanwhile, see
/// [`pending_in_store`]).
pub async fn pending(state: &AppState, device_id: &str, claim_stale: bool) -> Vec<Outgoing> {
    let claim = if claim_stale { Claim::Stale } else { Claim::No };
    read_stream(state, device_id, claim).await
}

/// What a woken session sends next, once [`pending`]'s deliveries are out: any command
/// of the device still `queued` in the store (one whose stream entry was never written:
/// the CommandWorker's wake for it).
pub async fn pending_in_store(state: &AppState, device_id: &str) -> Vec<Outgoing> {
    let mut out = Vec::new();
    match state.store.commands_in_flight(device_id, 256).await {
        Ok(in_flight) => {
            for c in in_flight.iter().filter(|c| c.state == CommandState::Queued) {
                out.extend(dispatch(state, c, "store").await);
            }
        }
        Err(e) => tracing::warn!(device = %device_id, error = %e, "queued commands not loaded"),
    }
    by_priority(&mut out);
    out
}

/// Whether a stream read first takes over entries left pending too long by another
/// gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    /// At connect: make sure the group exists and claim stale entries.
    Stale,
    /// On a wake: only new entries, with as few bus calls as possible (a command's round
    /// trip waits on them).
    No,
}

/// The delivery of one in-flight command, sent again (the CommandWorker already counted
/// the attempt); `None` unless it is `sent`.
pub async fn redeliver(state: &AppState, command_id: &str) -> Option<Outgoing> {
    match state.store.command(command_id).await {
        Ok(Some(c)) if c.state == CommandState::Sent => Some(outgoing(state, &c, c.attempts).await),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(command = %command_id, error = %e, "redelivery: command not loaded");
            None
        }
    }
}

/// Reads the device's stream as this gateway: with [`Claim::Stale`], entries another
/// gateway left pending too long first; then new ones. Each entry is verified (the server's signature, its TTL,
/// that it is for this device); a good one for a `queued` command is dispatched; every
/// entry read is acknowledged once handled (a bad one is logged and dropped).
async fn read_stream(state: &AppState, device_id: &str, claim: Claim) -> Vec<Outgoing> {
    let stream = device_stream(device_id);
    let consumer = format!("{}:{device_id}", state.node_id);
    let ensure = || async {
        match state.bus.ensure_group(&stream, GATEWAY_GROUP).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(device = %device_id, error = %e, "command stream group not created");
                false
            }
        }
    };
    let mut entries = Vec::new();
    if claim == Claim::Stale {
        // A stream nothing was ever appended to has nothing to claim or read (ingest
        // hands a command to a session in its own process without one, so most devices'
        // streams stay empty): a connect then costs the bus one read instead of three
        // writes. A later wake creates the group if an entry comes (it reads from the
        // stream's start, so nothing appended meanwhile is missed).
        match state.bus.stream_len(&stream).await {
            Ok(0) => return Vec::new(),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(device = %device_id, error = %e, "command stream length not read");
            }
        }
        if !ensure().await {
            return Vec::new();
        }
        match state
            .bus
            .claim_stale(&stream, GATEWAY_GROUP, &consumer, CLAIM_IDLE, READ_BATCH)
            .await
        {
            Ok(e) => entries = e,
            Err(e) => {
                tracing::warn!(device = %device_id, error = %e, "claiming stale command entries failed");
            }
        }
    }
    let read = || {
        state.bus.read_group(
            &stream,
            GATEWAY_GROUP,
            &consumer,
            READ_BATCH,
            Duration::ZERO,
        )
    };
    let mut got = read().await;
    // On a wake the group is assumed to exist (made at connect); a stream whose group is
    // missing (the bus was reset) gets it now.
    if claim == Claim::No && matches!(got, Err(tether_bus::BusError::Invalid(_))) && ensure().await
    {
        got = read().await;
    }
    match got {
        Ok(e) => entries.extend(e),
        Err(e) => {
            tracing::warn!(device = %device_id, error = %e, "reading the command stream failed")
        }
    }
    let mut keys = StaticKeys::new();
    keys.insert(
        state.gateway_signer.kid().clone(),
        state.gateway_signer.verifying_key(),
    );
    let mut out = Vec::new();
    let mut done = Vec::with_capacity(entries.len());
    for entry in entries {
        match Verifier::new(&keys, &*state.clock).verify(&entry.payload) {
            Ok(v) => match v.payload {
                Payload::CommandDelivery(d) if d.device_id == device_id => {
                    match state.store.command(&d.command_id.to_string()).await {
                        Ok(Some(c)) if c.state == CommandState::Queued => {
                            out.extend(dispatch(state, &c, "stream").await);
                        }
                        Ok(Some(_)) => {} // already on its way or finished
                        Ok(None) => {
                            tracing::warn!(trace_id = %v.header.trace_id, command = %d.command_id, "stream entry for an unknown command dropped")
                        }
                        Err(e) => {
                            // Leave it pending: it is claimed again later.
                            tracing::warn!(trace_id = %v.header.trace_id, command = %d.command_id, error = %e, "command stream entry not handled");
                            continue;
                        }
                    }
                }
                other => tracing::warn!(
                    device = %device_id,
                    kind = other.message_type().name(),
                    "a stream entry for another device or of another kind dropped"
                ),
            },
            Err(e) if e.code() == ErrorCode::TtlExpired => {
                // The command's TTL passed while it waited; the store says what it was.
                if let Ok(Some(c)) = state
                    .store
                    .command(&command_id_of(&entry.payload).unwrap_or_default())
                    .await
                {
                    expire(state, &c).await;
                }
            }
            Err(e) => tracing::warn!(
                device = %device_id,
                code = e.code().number(),
                error = %e,
                "a command stream entry failed verification and was dropped"
            ),
        }
        done.push(entry.id);
    }
    // Acknowledged beside the delivery, not before it: the store already says what
    // became of each command, so an entry whose acknowledgement is lost is only claimed
    // again after CLAIM_IDLE and skipped (its command is no longer queued).
    if !done.is_empty() {
        let state = state.clone();
        let device_id = device_id.to_owned();
        tokio::spawn(async move {
            if let Err(e) = state.bus.ack(&stream, GATEWAY_GROUP, &done).await {
                tracing::warn!(device = %device_id, error = %e, "acknowledging command entries failed");
            }
        });
    }
    by_priority(&mut out);
    out
}

/// The command id inside an (unverified) stream entry, to look its command up.
fn command_id_of(payload: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    v.pointer("/body/command_id")?.as_str().map(str::to_owned)
}

/// Loads the command an agent frame names, refusing another device's or an unknown one.
async fn own_command(
    state: &AppState,
    device_id: &str,
    command_id: &str,
) -> Result<Command, Refusal> {
    match state.store.command(command_id).await {
        Ok(Some(c)) if c.command.device_id == device_id => Ok(c),
        Ok(_) => Err((
            ErrorCode::NotFound,
            format!("no command {command_id} for this device"),
        )),
        Err(e) => Err((ErrorCode::Unavailable, e.to_string())),
    }
}

/// `command_ack`: `received` moves `sent → ack_received`; `rejected` ends the command
/// (`denied` for policy and owner-signature codes, `expired` for 2004, else `failed`).
/// An ack for a command that moved on already is a duplicate and changes nothing.
pub async fn on_ack(state: &AppState, device_id: &str, ack: &CommandAck) -> Result<(), Refusal> {
    let id = ack.command_id.to_string();
    if ack.error == Some(ErrorCode::OwnerSignatureInvalid) {
        let found = own_command(state, device_id, &id).await;
        super::owner_sig::on_refused(state, device_id, ack, found.is_ok()).await;
        found?;
    }
    let (to, code) = match (ack.status, ack.error) {
        (AckStatus::Received, _) => (CommandState::AckReceived, None),
        (AckStatus::Rejected, Some(ErrorCode::PolicyDenied | ErrorCode::OwnerSignatureInvalid)) => {
            (CommandState::Denied, ack.error)
        }
        (AckStatus::Rejected, Some(ErrorCode::TtlExpired)) => (CommandState::Expired, ack.error),
        (AckStatus::Rejected, e) => (CommandState::Failed, e.or(Some(ErrorCode::Internal))),
    };
    let update = CommandUpdate {
        next_attempt_at: Some(None),
        error_code: code.map(ErrorCode::number),
        detail: json!({"by": "agent", "ack": ack.status, "error": code.map(ErrorCode::number)}),
        device_id: Some(device_id.to_owned()),
        ..CommandUpdate::default()
    };
    let moved = transition(state, &id, &[CommandState::Sent], to, update)
        .await
        .map_err(|e| (e.code(), "the command could not be updated".to_owned()))?;
    if moved.is_none() {
        // Not `sent` any more (a duplicate ack), or not this device's command: the
        // store says which.
        let c = own_command(state, device_id, &id).await?;
        tracing::debug!(trace_id = %c.command.trace_id, command = %id, state = tether_store::state_str(c.state), "duplicate ack ignored");
    }
    Ok(())
}

/// `command_status` `executing`: `ack_received → executing` (or from `sent`, when the
/// ack was lost).
pub async fn on_status(
    state: &AppState,
    device_id: &str,
    status: &CommandStatus,
) -> Result<(), Refusal> {
    let id = status.command_id.to_string();
    let update = CommandUpdate {
        next_attempt_at: Some(None),
        detail: json!({"by": "agent", "kernel_exec_id": status.kernel_exec_id}),
        device_id: Some(device_id.to_owned()),
        ..CommandUpdate::default()
    };
    let moved = transition(
        state,
        &id,
        &[CommandState::Sent, CommandState::AckReceived],
        CommandState::Executing,
        update,
    )
    .await
    .map_err(|e| (e.code(), "the command could not be updated".to_owned()))?;
    if moved.is_none() {
        // Executing already, or further on, or not this device's: the store says which.
        let c = own_command(state, device_id, &id).await?;
        if is_terminal(c.state) {
            return Err((
                ErrorCode::UnexpectedMessage,
                format!("command {id} is finished"),
            ));
        }
    }
    Ok(())
}

/// `command_result`: `→ result_posted`, then `completed` (ok) or `failed` / `denied` /
/// `expired` as the result says. A result for a finished command is a duplicate (the
/// agent resends results it holds when a command is redelivered) and changes nothing.
pub async fn on_result(
    state: &AppState,
    device_id: &str,
    result: &CommandResult,
) -> Result<(), Refusal> {
    let id = result.command_id.to_string();
    // Without an artifact to check first, the result is posted at once (the store checks
    // the state and the device in the same statement).
    if result.artifact.is_none()
        && let Some(posted) = post(state, device_id, &id, result).await?
    {
        return posted_result(state, device_id, &posted, result).await;
    }
    let c = own_command(state, device_id, &id).await?;
    if is_terminal(c.state) {
        tracing::debug!(trace_id = %c.command.trace_id, command = %id, "duplicate result ignored");
        return Ok(());
    }
    if c.state == CommandState::ResultPosted {
        // Recorded before, not finished (the server stopped in between): the stored
        // result stands, the command ends as it says.
        return finish(state, &c).await;
    }
    let Some(a) = &result.artifact else {
        // Neither posted above nor finished: not delivered yet (`queued`), nothing to do.
        return Ok(());
    };
    if let Err((code, message)) = check_artifact(state, device_id, &id, a).await {
        // A result whose artifact is not what it claims cannot complete the command:
        // it fails with the check's code (a passing outage of the object store only
        // refuses the frame, and the result comes again with the next redelivery).
        if matches!(code, ErrorCode::ChecksumMismatch | ErrorCode::NotFound) {
            transition(
                state,
                &id,
                &[
                    CommandState::Sent,
                    CommandState::AckReceived,
                    CommandState::Executing,
                ],
                CommandState::Failed,
                CommandUpdate {
                    next_attempt_at: Some(None),
                    error_code: Some(code.number()),
                    detail: json!({"by": "server", "reason": message}),
                    ..CommandUpdate::default()
                },
            )
            .await
            .map_err(|e| (e.code(), "the command could not be updated".to_owned()))?;
        }
        return Err((code, message));
    }
    match post(state, device_id, &id, result).await? {
        Some(posted) => posted_result(state, device_id, &posted, result).await,
        None => Ok(()),
    }
}

/// `sent`, `ack_received` or `executing` → `result_posted` with the result, if the
/// command is this device's and in one of those states.
async fn post(
    state: &AppState,
    device_id: &str,
    id: &str,
    result: &CommandResult,
) -> Result<Option<Command>, Refusal> {
    let body = serde_json::to_value(result).map_err(|e| (ErrorCode::Internal, e.to_string()))?;
    transition(
        state,
        id,
        &[
            CommandState::Sent,
            CommandState::AckReceived,
            CommandState::Executing,
        ],
        CommandState::ResultPosted,
        CommandUpdate {
            next_attempt_at: Some(None),
            result: Some(body),
            error_code: result.error.map(ErrorCode::number),
            detail: json!({"by": "agent", "status": result.status,
                           "duration_ms": result.duration_ms}),
            device_id: Some(device_id.to_owned()),
            ..CommandUpdate::default()
        },
    )
    .await
    .map_err(|e| (e.code(), "the command could not be updated".to_owned()))
}

/// What follows a posted result: a local policy denial is reported, and the command
/// ends as the result says.
async fn posted_result(
    state: &AppState,
    device_id: &str,
    posted: &Command,
    result: &CommandResult,
) -> Result<(), Refusal> {
    if result.status == ResultStatus::Denied
        && let Some(
            code @ (ErrorCode::PolicyDenied
            | ErrorCode::ApprovalRequired
            | ErrorCode::PolicyHashMismatch),
        ) = result.error
    {
        on_local_policy_denial(state, device_id, posted, code, result).await;
    }
    finish(state, posted).await
}

/// The PC's own policy check (its cached bundle, or the helper's policy hash) refused a
/// command the server had allowed: a security event (audited, and a `policy_violation`
/// alert for admins on the live view and the webhook). The server and the PC disagreeing
/// means an outdated bundle on one side, or a server that skipped its own check.
async fn on_local_policy_denial(
    state: &AppState,
    device_id: &str,
    c: &Command,
    code: ErrorCode,
    result: &CommandResult,
) {
    let id = &c.command.id;
    tracing::warn!(trace_id = %c.command.trace_id, device = %device_id, command = %id,
        code = code.number(), "the PC's local policy refused a command the server allowed");
    let notes = &result.notes;
    let _ = crate::audit::record(
        state,
        device_id,
        "agent.policy_denied",
        Some(device_id),
        crate::audit::Outcome::Denied,
        json!({"command_id": id, "code": code.number(), "notes": notes,
               "method": c.command.method, "policy_version": c.command.policy.version}),
    )
    .await;
    let method = json!(c.command.method);
    let message = format!(
        "the PC refused command {id} ({}) by its own policy ({}): {notes}",
        method.as_str().unwrap_or("?"),
        code.number()
    );
    if let Err(e) = crate::alerts::raise(
        state,
        device_id,
        crate::policy::KIND_POLICY_VIOLATION,
        tether_proto::messages::notify::Severity::Warning,
        &message,
        None,
    )
    .await
    {
        tracing::warn!(device = %device_id, error = %e, "policy violation alert not raised");
    }
}

/// `result_posted → completed` (result `ok`) or `failed` / `denied` / `expired` as the
/// stored result's status says.
async fn finish(state: &AppState, c: &Command) -> Result<(), Refusal> {
    let status = c
        .result
        .as_ref()
        .and_then(|r| r.get("status"))
        .and_then(|s| serde_json::from_value::<ResultStatus>(s.clone()).ok());
    let end = match status {
        Some(ResultStatus::Ok) => CommandState::Completed,
        Some(ResultStatus::Denied) => CommandState::Denied,
        Some(ResultStatus::Expired) => CommandState::Expired,
        Some(ResultStatus::Failed) | None => CommandState::Failed,
    };
    let update = CommandUpdate {
        // A result without its code (only a corrupt one) still ends with one.
        error_code: (end != CommandState::Completed && c.error_code.is_none())
            .then(|| ErrorCode::Internal.number()),
        detail: json!({"by": "server"}),
        ..CommandUpdate::default()
    };
    transition(
        state,
        &c.command.id,
        &[CommandState::ResultPosted],
        end,
        update,
    )
    .await
    .map_err(|e| (e.code(), "the command could not be updated".to_owned()))?;
    Ok(())
}

/// A result's artifact must be one this device was granted for this command and has
/// uploaded, with the size and hash the result states.
async fn check_artifact(
    state: &AppState,
    device_id: &str,
    command_id: &str,
    a: &tether_proto::messages::command::ArtifactRef,
) -> Result<(), Refusal> {
    let stored = state
        .store
        .artifact(&a.artifact_id)
        .await
        .map_err(|e| (ErrorCode::Unavailable, e.to_string()))?;
    match stored {
        Some(s) if s.device_id == device_id && s.command_id == command_id => {
            crate::routes::artifacts::verify_upload(state, &s, &a.sha256, a.size_bytes)
                .await
                .map_err(|e| (e.code(), e.to_string()))
        }
        _ => Err((
            ErrorCode::NotFound,
            format!("no artifact {} for this command", a.artifact_id),
        )),
    }
}

/// Whether a message type is one of the command frames an agent sends.
pub const fn is_command_frame(t: MessageType) -> bool {
    matches!(
        t,
        MessageType::CommandAck | MessageType::CommandStatus | MessageType::CommandResult
    )
}
