//! `POST /api/command`: who may command which device, idempotency by `message_id`,
//! backpressure, then store → sign → publish.

use serde::Deserialize;
use serde_json::{Value, json};
use tether_policy::Outcome as PolicyOutcome;
use tether_proto::envelope::Stamp;
use tether_proto::messages::command::{
    CommandDelivery, CommandState, Method, Priority, Sensitivity, Simulation,
};
use tether_proto::owner_sig::{MAX_APPROVALS, UserSig};
use tether_proto::validate::Validate;
use tether_proto::{ErrorCode, MessageId, ProtoError, TraceId, canonical};
use tether_store::{
    Command, CommandApproval, CommandPolicy, Device, DeviceStatus, NewCommand, Role,
};

use super::{CommandView, announce, device_stream, wake};
use crate::audit::{self, Outcome};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::events::STREAM_MAX_LEN;
use crate::routes::devices::presence_key;
use crate::state::AppState;

/// The body of `POST /api/command`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandRequest {
    /// The device.
    pub device_id: String,
    /// What to do.
    #[schema(value_type = String, example = "lock_screen")]
    pub method: Method,
    /// The method's parameters (its helper opcode's, docs/protocol.md section 8).
    #[serde(default = "empty_object")]
    pub params: Value,
    /// Seconds the command may wait for delivery and execution (1..=604800, default 300).
    #[serde(default = "default_ttl")]
    pub ttl_seconds: u32,
    /// The idempotency key (a UUID): the same `message_id` with the same request returns
    /// the same command.
    #[schema(value_type = String)]
    pub message_id: MessageId,
    /// A trace id to follow the command through every hop (default: the request's, from
    /// its `traceparent` header or the new one the `x-trace-id` response header shows).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub trace_id: Option<TraceId>,
    /// Delivery priority (default `normal`).
    #[serde(default = "default_priority")]
    #[schema(value_type = String, example = "normal")]
    pub priority: Priority,
    /// The owner's signature over the command statement (docs/protocol.md section
    /// 6.11): `{"kind":"ed25519",…}` or `{"kind":"webauthn-es256",…}`. The PC runs only
    /// commands a key it pinned signed; the server carries it.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub user_sig: Option<UserSig>,
    /// The deadline the owner signed (UnixMillis), with `user_sig`; the command's
    /// deadline is the earlier of this and `now + ttl_seconds`.
    #[serde(default)]
    #[schema(value_type = Option<u64>)]
    pub not_after: Option<tether_proto::UnixMillis>,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ProtoError {
    ProtoError::InvalidField {
        field,
        reason: reason.into(),
    }
}

impl Validate for CommandRequest {
    fn validate(&self) -> Result<(), ProtoError> {
        if self.device_id.is_empty() || self.device_id.len() > 64 {
            return Err(invalid("device_id", "must be 1..=64 characters"));
        }
        if !(1..=tether_proto::envelope::MAX_TTL_S).contains(&self.ttl_seconds) {
            return Err(invalid(
                "ttl_seconds",
                format!("must be 1..={}", tether_proto::envelope::MAX_TTL_S),
            ));
        }
        if !self.params.is_object() {
            return Err(invalid("params", "must be a JSON object"));
        }
        if let Some(s) = &self.user_sig {
            s.validate_at(tether_proto::owner_sig::USER_SIG)?;
        }
        if self.user_sig.is_some() != self.not_after.is_some() {
            return Err(invalid(
                "not_after",
                "required with user_sig, and only with it",
            ));
        }
        Ok(())
    }
}

fn empty_object() -> Value {
    json!({})
}

const fn default_ttl() -> u32 {
    300
}

const fn default_priority() -> Priority {
    Priority::Normal
}

/// The devices a caller may command: their own, or any as an admin. Anyone else learns
/// nothing about the device (404), except an auditor, who may see but not command (403).
pub(crate) async fn controllable_device(
    state: &AppState,
    caller: &Caller,
    device_id: &str,
) -> Result<Device, ApiError> {
    let d = state.store.device(device_id).await?;
    match d {
        Some(d)
            if caller.user.role == Role::Admin
                || d.owner_id.as_deref() == Some(caller.user.id.as_str()) =>
        {
            Ok(d)
        }
        Some(_) if caller.sees_all_devices() => Err(ApiError::with_message(
            ErrorCode::Forbidden,
            "auditors may see devices but not command them",
        )),
        _ => Err(ApiError::with_message(
            ErrorCode::NotFound,
            "no such device",
        )),
    }
}

/// The request's hash: what makes "the same request" under one `message_id`.
fn request_hash(req: &CommandRequest) -> Result<String, ApiError> {
    let v = json!({
        "device_id": req.device_id,
        "method": req.method,
        "params": req.params,
        "ttl_seconds": req.ttl_seconds,
        "priority": req.priority,
        "user_sig": req.user_sig,
        "not_after": req.not_after,
    });
    let c = canonical::canonicalize(&v)
        .map_err(|e| ApiError::with_message(ErrorCode::InvalidField, e.to_string()))?;
    Ok(tether_proto::ids::sha256_hex(c.as_bytes()))
}

/// Records a refused submission in the audit trail and returns the error.
async fn refuse(state: &AppState, caller: &Caller, req: &CommandRequest, e: ApiError) -> ApiError {
    let _ = audit::record(
        state,
        &caller.user.id,
        "command.refused",
        Some(&req.device_id),
        Outcome::Denied,
        json!({"command_id": req.message_id.to_string(), "method": req.method,
               "code": e.code().number()}),
    )
    .await;
    e
}

/// Accepts a command: returns it and whether it was new (`false`: the same request was
/// submitted before under this `message_id`, and this is that command).
pub async fn submit(
    state: &AppState,
    caller: &Caller,
    req: CommandRequest,
    simulate: Option<Simulation>,
) -> Result<(CommandView, bool), ApiError> {
    match accept(state, caller, &req, simulate).await {
        Ok(r) => Ok(r),
        Err(e) => Err(refuse(state, caller, &req, e).await),
    }
}

async fn accept(
    state: &AppState,
    caller: &Caller,
    req: &CommandRequest,
    simulate: Option<Simulation>,
) -> Result<(CommandView, bool), ApiError> {
    let hash = request_hash(req)?;
    let id = req.message_id.to_string();
    // The reads this needs do not depend on each other: side by side (their errors are
    // still reported in the order below).
    let (device, existing, registered, current, second_factor, undelivered) = tokio::join!(
        controllable_device(state, caller, &req.device_id),
        state.store.command(&id),
        async {
            match &req.user_sig {
                Some(_) => {
                    crate::owner_keys::registered_on(state, &caller.user, Some(&req.device_id))
                        .await
                }
                None => Ok(Vec::new()),
            }
        },
        crate::policy::current(state),
        crate::policy::second_factor(state, &caller.user.id, caller.session_id.as_deref()),
        // Counted for `req.device_id`, which is `device.id`.
        state.store.count_undelivered(&req.device_id),
    );
    let device = device?;

    // The same message_id again: the same command if the same request by the same user
    // (whatever happened to the device since: a retry learns what became of it).
    if let Some(existing) = existing? {
        return same_request(existing, caller, &hash).map(|c| (CommandView::from(&c), false));
    }
    match device.status {
        DeviceStatus::Active => {}
        DeviceStatus::Revoked => {
            return Err(ApiError::with_message(
                ErrorCode::DeviceRevoked,
                "the device was revoked",
            ));
        }
        _ => {
            return Err(ApiError::with_message(
                ErrorCode::DeviceNotPaired,
                "the device is not active (pairing unfinished or waiting for approval)",
            ));
        }
    }
    req.method
        .opcode()
        .parse_params(&req.params)
        .map_err(|e| ApiError::with_message(ErrorCode::InvalidParams, e.to_string()))?;
    // The owner's signature is checked for shape (and, by a registered ed25519 key, for
    // validity) before central policy, so a malformed one never follows an audited
    // policy decision.
    let now = state.now();
    // Read for `req.device_id`, which is `device.id`.
    let registered = registered?;
    let expires_at = super::owner_sig::precheck(
        &registered,
        now,
        now.saturating_add(std::time::Duration::from_secs(u64::from(req.ttl_seconds))),
        &req.message_id,
        &device.id,
        req.method,
        &req.params,
        req.user_sig.as_ref(),
        req.not_after,
    )?;
    let user_sig = match (&req.user_sig, req.not_after) {
        (Some(s), Some(n)) => Some(super::owner_sig::to_stored(s, n)?),
        _ => None,
    };
    // Central policy, before anything is stored: a refusal stores nothing (the audit
    // trail has the decision), approvals store the command without publishing it.
    let current = current?;
    let decision = crate::policy::decide_with(
        state,
        &current,
        &caller.user,
        second_factor?,
        &device.id,
        req.method,
    )
    .await?;
    crate::policy::record(
        state,
        &caller.user,
        &device.id,
        &id,
        req.method,
        current.version,
        &decision,
    )
    .await?;
    if let Some(refused) = crate::policy::refusal(&decision) {
        return Err(refused);
    }
    let approvals = match &decision.outcome {
        PolicyOutcome::NeedsApproval {
            approvals,
            approvers,
        } => Some((
            *approvals,
            serde_json::to_value(approvers).map_err(ApiError::internal)?,
        )),
        _ => None,
    };
    let undelivered = undelivered?;
    if undelivered >= state.config.commands.device_queue_max {
        return Err(ApiError::with_message(
            ErrorCode::Backpressure,
            format!("the device already has {undelivered} commands waiting for delivery"),
        ));
    }

    let trace_id = req
        .trace_id
        .clone()
        .or_else(|| TraceId::parse(&crate::trace::current_trace_id()).ok())
        .unwrap_or_else(|| TraceId::from_random_bytes(crate::random::bytes::<16>()));
    let new = NewCommand {
        id: id.clone(),
        device_id: device.id.clone(),
        origin_user_id: caller.user.id.clone(),
        method: req.method,
        params: req.params.clone(),
        priority: req.priority,
        sensitivity: if decision.sensitive {
            Sensitivity::Sensitive
        } else {
            Sensitivity::Normal
        },
        trace_id: trace_id.to_string(),
        user_sig,
        request_hash: hash.clone(),
        simulate,
        state: if approvals.is_some() {
            CommandState::AwaitingApproval
        } else {
            CommandState::Queued
        },
        policy: CommandPolicy {
            version: current.version,
            rule: decision.rule.clone(),
            approvals_required: approvals.as_ref().map_or(0, |(n, _)| *n),
            approvers: approvals.map(|(_, a)| a),
        },
        created_at: now,
        expires_at,
    };
    // The first transition's detail, and its audit event's (the store writes both with
    // the command).
    let detail = json!({"by": "ingest", "policy_version": current.version,
                        "rule": decision.rule, "decision": decision.word()});
    if !state.store.insert_command(&new, &detail).await? {
        // Lost a race with the same message_id.
        let existing = state
            .store
            .command(&id)
            .await?
            .ok_or_else(|| ApiError::internal("command vanished after a duplicate insert"))?;
        return same_request(existing, caller, &hash).map(|c| (CommandView::from(&c), false));
    }
    // The command as accepted (a gateway may move it on at once: the answer and the
    // first event still say how it was accepted).
    let initial = new.state;
    let stored = Command {
        command: new,
        state: initial,
        attempts: 0,
        next_attempt_at: None,
        updated_at: now,
        result: None,
        error_code: None,
        viewed_at: None,
    };
    if let Some(owner) = &device.owner_id {
        state.live.remember_owner(&device.id, owner);
    }
    announce(state, &stored, None, &detail).await;
    if initial == CommandState::AwaitingApproval {
        // Stored, not published: approvals (`POST /api/command/{id}/approve`) queue it.
        let mut view = CommandView::from(&stored);
        view.code = Some(ErrorCode::ApprovalRequired.number());
        view.reason = Some(decision.reason.clone());
        view.approvals = Some(Vec::new());
        return Ok((view, true));
    }
    publish(state, &stored).await?;
    // Stored and published: the answer is "accepted" even if presence cannot be read
    // now (an error here would make the client retry a command that exists).
    let mut view = CommandView::from(&stored);
    view.device_online = state
        .bus
        .get(&presence_key(&device.id))
        .await
        .ok()
        .map(|p| p.is_some());
    Ok((view, true))
}

/// Hands a `queued` command to its device: straight to the device's session when that
/// is connected to this process ([`crate::live::LiveHub::hand_over`]: no bus round trip
/// on the command's way), otherwise signed (attempt 1) and appended to the device's
/// stream, and the device's session woken wherever it runs. A failure to publish leaves
/// the command queued in the store, where the gateway finds it when the device
/// (re)connects or the CommandWorker wakes it (so does a session that ends before it
/// handles what it was handed); only a failure to sign is an error.
pub async fn publish(state: &AppState, stored: &Command) -> Result<(), ApiError> {
    if state.live.hand_over(stored) {
        return Ok(());
    }
    let device_id = &stored.command.device_id;
    let approvals = approvals_of(state, stored).await;
    let envelope = seal(state, stored, 1, None, &approvals)?;
    if let Err(e) = state
        .bus
        .append(&device_stream(device_id), &envelope, STREAM_MAX_LEN)
        .await
    {
        tracing::warn!(trace_id = %stored.command.trace_id, error = %e, "command not published; it waits in the store");
    } else {
        wake(state, device_id, None).await;
    }
    Ok(())
}

fn same_request(existing: Command, caller: &Caller, hash: &str) -> Result<Command, ApiError> {
    if existing.command.origin_user_id == caller.user.id && existing.command.request_hash == hash {
        Ok(existing)
    } else {
        Err(ApiError::with_message(
            ErrorCode::DuplicateMessage,
            "this message_id was already used for a different command",
        ))
    }
}

/// The approvals a command's delivery carries: none unless it needed approvals (a store
/// failure is logged and sends none: the agent then refuses the command, `2011`).
pub async fn approvals_of(state: &AppState, c: &Command) -> Vec<CommandApproval> {
    if c.command.policy.approvals_required == 0 {
        return Vec::new();
    }
    match state.store.command_approvals(&c.command.id).await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(trace_id = %c.command.trace_id, error = %e, "a command's approvals not read");
            Vec::new()
        }
    }
}

/// The `command_delivery` body of a command at `attempt`, with the approvers'
/// signatures when it needed approvals: `approvals_required` = how many, `approvals` =
/// the signed ones (docs/protocol.md, `command_delivery`).
pub fn delivery(c: &Command, attempt: u32, approvals: &[CommandApproval]) -> CommandDelivery {
    let cmd = &c.command;
    let (not_after, user_sig) = super::owner_sig::from_stored(cmd.user_sig.as_deref());
    let required = cmd.policy.approvals_required;
    let approvals: Vec<UserSig> = approvals
        .iter()
        .filter_map(|a| serde_json::from_str(a.user_sig.as_deref()?).ok())
        .take(MAX_APPROVALS)
        .collect();
    CommandDelivery {
        command_id: MessageId::parse(&cmd.id)
            .unwrap_or_else(|_| MessageId::from_random_bytes([0; 16])),
        device_id: cmd.device_id.clone(),
        method: cmd.method,
        params: cmd.params.clone(),
        priority: cmd.priority,
        sensitivity: cmd.sensitivity,
        origin_user_id: cmd.origin_user_id.clone(),
        policy_version: cmd.policy.version,
        expires_at: cmd.expires_at,
        attempt: attempt.clamp(1, 16),
        simulate: cmd.simulate,
        not_after,
        user_sig,
        approvals_required: (required > 0)
            .then(|| required.min(u32::try_from(MAX_APPROVALS).unwrap_or(u32::MAX))),
        approvals,
    }
}

/// A command's `command_delivery`, signed by the server key, valid until the command
/// expires, under the command's trace id. `seq` defaults to the signing time (a stream
/// entry's sequence only has to order entries of one command).
pub fn seal(
    state: &AppState,
    c: &Command,
    attempt: u32,
    seq: Option<u64>,
    approvals: &[CommandApproval],
) -> Result<Vec<u8>, ApiError> {
    let now = state.now();
    let left_ms = c.command.expires_at.0.saturating_sub(now.0);
    let ttl = u32::try_from(left_ms.div_ceil(1000))
        .unwrap_or(u32::MAX)
        .clamp(1, tether_proto::envelope::MAX_TTL_S);
    let stamp = Stamp {
        iat: now,
        ttl,
        seq: seq.unwrap_or(now.0),
        message_id: MessageId::from_random_bytes(crate::random::bytes::<16>()),
        trace_id: TraceId::parse(&c.command.trace_id)
            .unwrap_or_else(|_| TraceId::from_random_bytes(crate::random::bytes::<16>())),
    };
    state
        .gateway_signer
        .seal(stamp, &delivery(c, attempt, approvals))
        .map_err(ApiError::internal)
}
