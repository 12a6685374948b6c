//! Central policy over HTTP: read and replace the policy (`GET`/`PUT /api/policy`), ask
//! what it would decide (`POST /api/policy/dry-run`), prove a fresh second factor for
//! sensitive commands (`POST /api/step-up`), and approve commands that wait for approvals
//! (`GET /api/approvals`, `POST /api/command/{id}/approve`). docs/policy.md is the long
//! form.

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tether_policy::{Approvers, Decision};
use tether_proto::messages::command::{CommandState, Method};
use tether_proto::owner_sig::{self, UserSig};
use tether_proto::validate::Validate;
use tether_proto::{ErrorCode, ProtoError, UnixMillis};
use tether_store::{Command, CommandApproval, CommandUpdate, Role};
use utoipa::ToSchema;

use crate::audit::{self, Outcome};
use crate::auth::Caller;
use crate::commands::owner_sig as ingest_owner_sig;
use crate::commands::view::ApprovalView;
use crate::commands::{CommandView, ingest, transition};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::policy::{self, Current};
use crate::state::AppState;

/// The most commands `GET /api/approvals` looks at.
const MAX_AWAITING: u32 = 500;

/// The policy in force.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PolicyView {
    /// Its version (0: the built-in policy, before any was saved).
    pub policy_version: u64,
    /// SHA-256 of the bundle's RFC 8785 form (`policy_update.policy_hash`).
    pub policy_hash: String,
    /// The bundle (docs/policy.md).
    #[schema(value_type = Object)]
    pub bundle: Value,
    /// Whether this is the built-in policy.
    pub builtin: bool,
    /// The admin who saved it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// When it was saved (Unix ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<u64>)]
    pub created_at: Option<UnixMillis>,
}

impl From<Current> for PolicyView {
    fn from(c: Current) -> Self {
        Self {
            policy_version: c.version,
            policy_hash: c.hash,
            bundle: c.bundle,
            builtin: c.version == 0,
            author: c.author,
            created_at: c.created_at,
        }
    }
}

/// The policy in force (every signed-in user may read the rules that govern them).
#[utoipa::path(get, path = "/api/policy", responses((status = 200, body = PolicyView)), security(("bearer" = [])))]
pub async fn get_policy(
    State(state): State<AppState>,
    _caller: Caller,
) -> ApiResult<Json<PolicyView>> {
    Ok(Json(policy::current(&state).await?.into()))
}

/// A policy bundle (`PUT /api/policy`): the JSON object of docs/policy.md.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = Object)]
pub struct PolicyBundle(pub Value);

impl Validate for PolicyBundle {
    fn validate(&self) -> Result<(), ProtoError> {
        if self.0.is_object() {
            Ok(())
        } else {
            Err(ProtoError::InvalidField {
                field: "policy",
                reason: "a policy bundle is a JSON object".into(),
            })
        }
    }
}

/// Replace the policy (admins). The bundle is validated first (`1005` naming the field
/// path, e.g. `policy rules[2].match.methods[0]: unknown variant …`); the new version
/// is the current one plus one.
#[utoipa::path(put, path = "/api/policy", request_body = PolicyBundle, responses((status = 200, body = PolicyView), (status = 403), (status = 409), (status = 422)), security(("bearer" = [])))]
pub async fn put_policy(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(PolicyBundle(bundle)): ApiJson<PolicyBundle>,
) -> ApiResult<Json<PolicyView>> {
    if let Err(e) = caller.require(&[Role::Admin]) {
        audit::record(
            &state,
            &caller.user.id,
            "policy.update_refused",
            None,
            Outcome::Denied,
            json!({"reason": "not an admin"}),
        )
        .await?;
        return Err(e);
    }
    Ok(Json(
        policy::save(&state, &caller.user, bundle).await?.into(),
    ))
}

/// `POST /api/policy/dry-run`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DryRunRequest {
    /// The device (one the caller may command; any for an admin).
    pub device_id: String,
    /// The method.
    #[schema(value_type = String, example = "reboot")]
    pub method: Method,
    /// The method's parameters (checked as `POST /api/command` checks them).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub params: Option<Value>,
    /// Admins only: decide as this user (without their session's second factor).
    #[serde(default)]
    pub user_id: Option<String>,
}

impl Validate for DryRunRequest {
    fn validate(&self) -> Result<(), ProtoError> {
        if self.device_id.is_empty() || self.device_id.len() > 64 {
            return Err(ProtoError::InvalidField {
                field: "device_id",
                reason: "must be 1..=64 characters".into(),
            });
        }
        if self
            .user_id
            .as_ref()
            .is_some_and(|u| u.is_empty() || u.len() > 64)
        {
            return Err(ProtoError::InvalidField {
                field: "user_id",
                reason: "must be 1..=64 characters".into(),
            });
        }
        Ok(())
    }
}

/// What policy would decide, and why.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DryRunView {
    /// The decision: `decision` (`allow`, `deny`, `needs_step_up`, `needs_approval`),
    /// `rule`, `reason`, `sensitive`, and `fresh_second_factor_s` or `approvals` and
    /// `approvers`.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub decision: Decision,
    /// The policy version it was decided under.
    pub policy_version: u64,
    /// Its hash.
    pub policy_hash: String,
    /// Who it was decided for.
    pub user_id: String,
    /// The device.
    pub device_id: String,
    /// The method.
    #[schema(value_type = String)]
    pub method: Method,
}

/// Would this command be allowed, and by which rule? Nothing is stored or audited; rate
/// rules count the commands accepted so far, and the caller's session's second factor
/// counts (not when an admin asks about another user).
#[utoipa::path(post, path = "/api/policy/dry-run", request_body = DryRunRequest, responses((status = 200, body = DryRunView), (status = 403), (status = 404), (status = 422)), security(("bearer" = [])))]
pub async fn dry_run(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<DryRunRequest>,
) -> ApiResult<Json<DryRunView>> {
    let (user, session) = match &req.user_id {
        Some(other) if *other != caller.user.id => {
            caller.require(&[Role::Admin])?;
            let user = state
                .store
                .user_by_id(other)
                .await?
                .ok_or_else(|| ApiError::with_message(ErrorCode::NotFound, "no such user"))?;
            (user, None)
        }
        _ => (caller.user.clone(), caller.session_id.clone()),
    };
    let device = ingest::controllable_device(&state, &caller, &req.device_id).await?;
    if let Some(p) = &req.params {
        req.method
            .opcode()
            .parse_params(p)
            .map_err(|e| ApiError::with_message(ErrorCode::InvalidParams, e.to_string()))?;
    }
    let current = policy::current(&state).await?;
    let decision = policy::decide(
        &state,
        &current,
        &user,
        session.as_deref(),
        &device.id,
        req.method,
    )
    .await?;
    Ok(Json(DryRunView {
        decision,
        policy_version: current.version,
        policy_hash: current.hash,
        user_id: user.id,
        device_id: device.id,
        method: req.method,
    }))
}

/// `POST /api/step-up`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepUpRequest {
    /// A current TOTP code.
    pub totp_code: String,
}

impl Validate for StepUpRequest {
    fn validate(&self) -> Result<(), ProtoError> {
        if self.totp_code.is_empty() || self.totp_code.len() > 16 {
            return Err(ProtoError::InvalidField {
                field: "totp_code",
                reason: "must be 1..=16 characters".into(),
            });
        }
        Ok(())
    }
}

/// A second factor recorded for the caller's session.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StepUpView {
    /// The session (refresh-token family) it counts for.
    pub session_id: String,
    /// When it was proved (Unix ms): sensitive commands need it within their rule's
    /// `fresh_second_factor_s` (300 s for methods sensitive by default).
    #[schema(value_type = u64)]
    pub second_factor_at: UnixMillis,
    /// `totp`.
    pub method: &'static str,
}

/// Prove a fresh second factor (a TOTP code, once) for the caller's session: sensitive
/// commands need one. Logging in with TOTP or a passkey counts too.
#[utoipa::path(post, path = "/api/step-up", request_body = StepUpRequest, responses((status = 200, body = StepUpView), (status = 401, description = "3005 no TOTP enrolled, 3006 wrong or reused code")), security(("bearer" = [])))]
pub async fn step_up(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<StepUpRequest>,
) -> ApiResult<Json<StepUpView>> {
    let Some(session_id) = caller.session_id.clone() else {
        return Err(ApiError::with_message(
            ErrorCode::TokenInvalid,
            "this access token belongs to no session; log in again",
        ));
    };
    let Some(totp) = caller.user.totp.as_ref().filter(|t| t.enabled) else {
        return Err(ApiError::with_message(
            ErrorCode::SecondFactorRequired,
            "this account has no TOTP enrolled (tether totp enroll); log in with a passkey instead",
        ));
    };
    crate::routes::accounts::check_totp_once(&state, &caller.user, totp, &req.totp_code).await?;
    let now = state.now();
    state
        .store
        .record_second_factor(&session_id, &caller.user.id, now)
        .await?;
    audit::record(
        &state,
        &caller.user.id,
        "user.step_up",
        Some(&caller.user.id),
        Outcome::Success,
        json!({"method": "totp", "session_id": session_id}),
    )
    .await?;
    Ok(Json(StepUpView {
        session_id,
        second_factor_at: now,
        method: "totp",
    }))
}

/// Who may approve a command, as its policy decision recorded.
fn approvers(c: &Command) -> ApiResult<Approvers> {
    match &c.command.policy.approvers {
        None => Ok(Approvers::default()),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| ApiError::internal(format!("command approvers: {e}"))),
    }
}

/// Whether `caller` may approve `c` (never their own command).
fn may_approve(caller: &Caller, c: &Command) -> ApiResult<bool> {
    Ok(c.command.origin_user_id != caller.user.id
        && approvers(c)?.admits(&caller.user.id, policy::role(caller.user.role)))
}

async fn with_approvals(state: &AppState, c: &Command) -> ApiResult<CommandView> {
    let approvals = state.store.command_approvals(&c.command.id).await?;
    let mut view = CommandView::from(c);
    view.approvals = Some(approvals.iter().map(ApprovalView::from).collect());
    Ok(view)
}

/// The commands waiting for the caller's approval (oldest first): those awaiting
/// approval that the caller may approve and has not approved yet.
#[utoipa::path(get, path = "/api/approvals", responses((status = 200, body = [CommandView])), security(("bearer" = [])))]
pub async fn approvals(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<CommandView>>> {
    let mut out = Vec::new();
    for c in state.store.commands_awaiting_approval(MAX_AWAITING).await? {
        if !may_approve(&caller, &c)? {
            continue;
        }
        let view = with_approvals(&state, &c).await?;
        if view
            .approvals
            .as_ref()
            .is_some_and(|a| a.iter().any(|a| a.approver_id == caller.user.id))
        {
            continue;
        }
        out.push(view);
    }
    Ok(Json(out))
}

/// `POST /api/command/{id}/approve`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveRequest {
    /// The approver's signature over the command's statement (`tether.command.v1`, the
    /// same bytes its owner signed: docs/protocol.md section 6.11). Required when the
    /// command is signed by its owner; the PC counts only approvals whose signature
    /// verifies with a key it pins, other than the one that signed the command.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub user_sig: Option<UserSig>,
}

impl Validate for ApproveRequest {
    fn validate(&self) -> Result<(), ProtoError> {
        match &self.user_sig {
            Some(s) => s.validate_at(owner_sig::USER_SIG),
            None => Ok(()),
        }
    }
}

/// Checks an approver's signature: required for a command its owner signed, over that
/// command's statement; an Ed25519 signature by one of the approver's registered keys
/// must verify, and the key that signed the command does not approve it. Returns the
/// signature to store (JSON) and whether the command's owner registered the key (so
/// their PCs can pin it).
async fn check_approval_sig(
    state: &AppState,
    caller: &Caller,
    c: &Command,
    sig: Option<&UserSig>,
) -> ApiResult<(Option<String>, bool)> {
    let (not_after, owner_signed) = ingest_owner_sig::from_stored(c.command.user_sig.as_deref());
    let (Some(not_after), Some(owner_signed)) = (not_after, owner_signed) else {
        // An unsigned command: every PC refuses it whatever its approvals carry.
        return Ok((None, false));
    };
    let Some(sig) = sig else {
        return Err(ApiError::with_message(
            ErrorCode::InvalidField,
            "user_sig is required: sign the command's statement (tether approve does), the \
             PC runs the command only with enough signed approvals",
        ));
    };
    let command_id = tether_proto::MessageId::parse(&c.command.id)
        .map_err(|e| ApiError::internal(format!("stored command id: {e}")))?;
    let statement = owner_sig::command_statement(
        &command_id,
        &c.command.device_id,
        c.command.method,
        &c.command.params,
        not_after,
    )
    .map_err(|e| ApiError::with_message(ErrorCode::InvalidField, e.to_string()))?;
    if sig.kid() == owner_signed.kid() {
        return Err(ApiError::with_message(
            ErrorCode::OwnerSignatureInvalid,
            "user_sig is by the key that signed the command: an approval needs another key",
        ));
    }
    let mine = crate::owner_keys::registered(state, &caller.user).await?;
    if crate::owner_keys::check_registered(&mine, &statement, sig) == Some(false) {
        return Err(ApiError::with_message(
            ErrorCode::OwnerSignatureInvalid,
            "user_sig does not verify over this command's statement (docs/protocol.md section 6.11)",
        ));
    }
    // Whether the owner registered the key for this PC (so it may count there).
    let owner = state.store.user_by_id(&c.command.origin_user_id).await?;
    let device = Some(c.command.device_id.as_str());
    let pinned = match owner {
        Some(o) => crate::owner_keys::registered_on(state, &o, device)
            .await?
            .iter()
            .any(|k| k.kid == sig.kid() && k.kind == sig.kind()),
        None => false,
    };
    let text = serde_json::to_string(sig).map_err(ApiError::internal)?;
    Ok((Some(text), pinned))
}

/// Approve a command that waits for approvals (an authorised user other than its
/// originator, once), with a signature over the command's statement (required for a
/// signed command). When the last approval it needs comes in it is queued, signed and
/// published like any accepted command, its delivery carrying the approvers'
/// signatures. Own command → `3004`; approved already by the caller → `9004`; not
/// awaiting approval → `1006`; no signature `1005`, a bad one `2011`.
#[utoipa::path(post, path = "/api/command/{id}/approve", params(("id" = String, Path)), request_body = ApproveRequest, responses((status = 200, body = CommandView), (status = 403), (status = 404), (status = 409), (status = 422)), security(("bearer" = [])))]
pub async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ApproveRequest>,
) -> ApiResult<Json<CommandView>> {
    let not_found = || ApiError::with_message(ErrorCode::NotFound, "no such command");
    let c = state.store.command(&id).await?.ok_or_else(not_found)?;
    let sees_device = caller.sees_all_devices()
        || state
            .store
            .device(&c.command.device_id)
            .await?
            .and_then(|d| d.owner_id)
            .as_deref()
            == Some(caller.user.id.as_str());
    let refuse = async |e: ApiError, why: &str| -> ApiError {
        let _ = audit::record(
            &state,
            &caller.user.id,
            "command.approve_refused",
            Some(&id),
            Outcome::Denied,
            json!({"reason": why, "code": e.code().number()}),
        )
        .await;
        e
    };
    if c.command.origin_user_id == caller.user.id {
        return Err(refuse(
            ApiError::with_message(
                ErrorCode::Forbidden,
                "you sent this command: its approvals must come from other users",
            ),
            "own command",
        )
        .await);
    }
    if !may_approve(&caller, &c)? {
        let e = if sees_device {
            ApiError::with_message(
                ErrorCode::Forbidden,
                "the policy rule does not allow you to approve this command",
            )
        } else {
            not_found()
        };
        return Err(refuse(e, "not an authorised approver").await);
    }
    if c.state != CommandState::AwaitingApproval {
        return Err(ApiError::with_message(
            ErrorCode::UnexpectedMessage,
            format!(
                "the command is not awaiting approval (it is {})",
                tether_store::state_str(c.state)
            ),
        ));
    }
    let (user_sig, pinned_by_owner) =
        match check_approval_sig(&state, &caller, &c, req.user_sig.as_ref()).await {
            Ok(v) => v,
            Err(e) => return Err(refuse(e, "approval signature").await),
        };
    let signed_by = req.user_sig.as_ref().map(|s| s.kid().to_owned());
    let now = state.now();
    let added = state
        .store
        .add_command_approval(&CommandApproval {
            command_id: id.clone(),
            approver_id: caller.user.id.clone(),
            at: now,
            user_sig,
        })
        .await?;
    if !added {
        return Err(refuse(
            ApiError::with_message(
                ErrorCode::Conflict,
                "you approved this command already; it needs approvals by other users",
            ),
            "approved already",
        )
        .await);
    }
    let approvals = state.store.command_approvals(&id).await?;
    audit::record(
        &state,
        &caller.user.id,
        "command.approved",
        Some(&c.command.device_id),
        Outcome::Success,
        json!({"command_id": id, "method": c.command.method, "approvals": approvals.len(),
               "required": c.command.policy.approvals_required, "signed_by": signed_by,
               "key_registered_by_owner": pinned_by_owner}),
    )
    .await?;
    let have = u32::try_from(approvals.len()).unwrap_or(u32::MAX);
    if have >= c.command.policy.approvals_required {
        let approvers: Vec<&str> = approvals.iter().map(|a| a.approver_id.as_str()).collect();
        let moved = transition(
            &state,
            &id,
            &[CommandState::AwaitingApproval],
            CommandState::Queued,
            CommandUpdate {
                detail: json!({"by": caller.user.id, "approvers": approvers}),
                ..CommandUpdate::default()
            },
        )
        .await?;
        // Only the approval that moved it publishes it (a concurrent last approval
        // finds it queued already).
        if let Some(queued) = moved {
            ingest::publish(&state, &queued).await?;
            return Ok(Json(with_approvals(&state, &queued).await?));
        }
    }
    let now_c = state.store.command(&id).await?.ok_or_else(not_found)?;
    Ok(Json(with_approvals(&state, &now_c).await?))
}
