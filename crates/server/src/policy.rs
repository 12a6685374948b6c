//! Central policy (flow 2's "central policy decides"): the policy in force, deciding one
//! command with the facts the pure engine ([`tether_policy`]) needs, and telling everyone
//! about a decision.
//!
//! - The policy in force is the store's highest saved version; before an admin saves one
//!   it is the built-in policy (version 0: allow, with methods that are sensitive by
//!   default needing a fresh second factor).
//! - A decision reads the counts rate rules need (commands accepted recently, from the
//!   store) and when the caller's session last proved a second factor, then evaluates.
//!   Counts are read, not reserved: submissions racing each other may pass a rate rule
//!   together.
//! - Every decision is an audit event (`policy.decision`: the outcome, rule, reason and
//!   version); a denial also raises a `policy_violation` alert for the device (admins and
//!   the owner see it live; the webhook gets it).
//! - Saving a policy ([`save`]) validates it, claims the next version, audits
//!   `policy.updated` and publishes a [`LiveKind::PolicyChanged`] event, from which
//!   gateways will relay `policy_update` to agents.

use std::collections::HashMap;

use serde_json::{Value, json};
use tether_policy::{Decision, Facts, Outcome, Policy, Request};
use tether_proto::messages::command::Method;
use tether_proto::messages::notify::{PolicyUpdate, Severity};
use tether_proto::{ErrorCode, UnixMillis, canonical};
use tether_store::{CommandCount, PolicyRecord, Role, User};

use crate::audit::{self, Outcome as AuditOutcome};
use crate::error::ApiError;
use crate::events::{LiveEvent, LiveKind, publish_live};
use crate::state::AppState;

/// The alert kind raised when policy denies a command.
pub const KIND_POLICY_VIOLATION: &str = "policy_violation";

/// The largest policy bundle, in bytes of its canonical form: it must fit, signed, in a
/// `policy_update` frame (262144 bytes).
pub const MAX_BUNDLE_BYTES: usize = 192 * 1024;

/// The policy in force.
#[derive(Debug, Clone)]
pub struct Current {
    /// Its version (0: the built-in policy).
    pub version: u64,
    /// `policy_hash`: SHA-256 of the bundle's canonical form.
    pub hash: String,
    /// The bundle as saved.
    pub bundle: Value,
    /// The parsed rules.
    pub policy: Policy,
    /// Who saved it (none for the built-in policy).
    pub author: Option<String>,
    /// When it was saved (none for the built-in policy).
    pub created_at: Option<UnixMillis>,
}

/// The policy engine's name for a role.
pub fn role(r: Role) -> tether_policy::Role {
    match r {
        Role::Admin => tether_policy::Role::Admin,
        Role::Auditor => tether_policy::Role::Auditor,
        Role::Student => tether_policy::Role::Student,
    }
}

fn hash(bundle: &Value) -> Result<String, ApiError> {
    PolicyUpdate::hash_bundle(bundle).map_err(ApiError::internal)
}

/// The policy in force: the highest saved version, else the built-in policy.
pub async fn current(state: &AppState) -> Result<Current, ApiError> {
    match state.store.current_policy().await? {
        Some(rec) => {
            let policy = Policy::from_value(&rec.bundle).map_err(|e| {
                ApiError::internal(format!("stored policy {} does not parse: {e}", rec.version))
            })?;
            Ok(Current {
                version: rec.version,
                hash: rec.hash,
                bundle: rec.bundle,
                policy,
                author: Some(rec.author),
                created_at: Some(rec.created_at),
            })
        }
        None => {
            let bundle = tether_policy::builtin();
            let policy = Policy::from_value(&bundle).map_err(ApiError::internal)?;
            Ok(Current {
                version: 0,
                hash: hash(&bundle)?,
                bundle,
                policy,
                author: None,
                created_at: None,
            })
        }
    }
}

/// Decides a command of `user` (in session `session_id`, whose second factor counts)
/// for `device_id` under `current`.
pub async fn decide(
    state: &AppState,
    current: &Current,
    user: &User,
    session_id: Option<&str>,
    device_id: &str,
    method: Method,
) -> Result<Decision, ApiError> {
    let second_factor_at = second_factor(state, &user.id, session_id).await?;
    decide_with(state, current, user, second_factor_at, device_id, method).await
}

/// When the session `session_id` of `user_id` last passed a second factor (none without
/// a session): what [`decide_with`] needs, read beside ingest's other reads.
pub async fn second_factor(
    state: &AppState,
    user_id: &str,
    session_id: Option<&str>,
) -> Result<Option<UnixMillis>, ApiError> {
    Ok(match session_id {
        Some(s) => state.store.last_second_factor(s, user_id).await?,
        None => None,
    })
}

/// [`decide`] with the session's second factor already read ([`second_factor`]).
pub async fn decide_with(
    state: &AppState,
    current: &Current,
    user: &User,
    second_factor_at: Option<UnixMillis>,
    device_id: &str,
    method: Method,
) -> Result<Decision, ApiError> {
    let request = Request {
        user_id: &user.id,
        role: role(user.role),
        device_id,
        method,
    };
    let now = state.now();
    let mut counts = HashMap::new();
    for q in current.policy.rate_queries(&request, now) {
        let n = state
            .store
            .count_commands(&CommandCount {
                user_id: q.user_id,
                device_id: q.device_id,
                methods: q.methods,
                since: q.since,
            })
            .await?;
        counts.insert(q.rule_id, n);
    }
    Ok(current.policy.evaluate(
        &request,
        &Facts {
            now,
            second_factor_at,
            counts: &counts,
        },
    ))
}

/// The API error of a decision that refuses the command now (`deny` → 4001, step-up →
/// 4003), naming the rule; `None` for `allow` and `needs_approval`.
pub fn refusal(d: &Decision) -> Option<ApiError> {
    let code = match d.outcome {
        Outcome::Deny => ErrorCode::PolicyDenied,
        Outcome::NeedsStepUp { .. } => ErrorCode::StepUpRequired,
        Outcome::Allow | Outcome::NeedsApproval { .. } => return None,
    };
    let hint = if code == ErrorCode::StepUpRequired {
        " (prove a second factor with POST /api/step-up, `tether step-up`, then send it again)"
    } else {
        ""
    };
    Some(ApiError::with_message(code, format!("{}{hint}", d.reason)).with_rule(d.rule.clone()))
}

/// Records a decision in the audit trail (`policy.decision`) and, for a denial, raises a
/// `policy_violation` alert. An audit write that fails fails the caller.
pub async fn record(
    state: &AppState,
    user: &User,
    device_id: &str,
    command_id: &str,
    method: Method,
    version: u64,
    d: &Decision,
) -> Result<(), ApiError> {
    let outcome = match d.outcome {
        Outcome::Allow | Outcome::NeedsApproval { .. } => AuditOutcome::Success,
        Outcome::Deny | Outcome::NeedsStepUp { .. } => AuditOutcome::Denied,
    };
    audit::record(
        state,
        &user.id,
        "policy.decision",
        Some(device_id),
        outcome,
        json!({"decision": d.word(), "rule": d.rule, "reason": d.reason, "method": method,
               "command_id": command_id, "policy_version": version, "sensitive": d.sensitive}),
    )
    .await?;
    tracing::info!(user = %user.id, device = %device_id, command = %command_id, decision = d.word(),
        rule = d.rule.as_deref().unwrap_or("-"), policy_version = version, "policy decision");
    if d.outcome == Outcome::Deny {
        let message = format!("policy denied a command from {}: {}", user.email, d.reason);
        if let Err(e) = crate::alerts::raise(
            state,
            device_id,
            KIND_POLICY_VIOLATION,
            Severity::Warning,
            &message,
            None,
        )
        .await
        {
            tracing::warn!(device = %device_id, error = %e, "policy violation alert not raised");
        }
    }
    Ok(())
}

/// Saves a bundle as the next version: validated (`1005` naming the field path),
/// audited (`policy.updated`) and announced ([`LiveKind::PolicyChanged`]). Two admins
/// saving at once: one wins, the other gets `9004`.
pub async fn save(state: &AppState, author: &User, bundle: Value) -> Result<Current, ApiError> {
    let policy = Policy::from_value(&bundle)
        .map_err(|e| ApiError::with_message(ErrorCode::InvalidField, format!("policy {}", e)))?;
    let canonical = canonical::canonicalize(&bundle)
        .map_err(|e| ApiError::with_message(ErrorCode::InvalidField, format!("policy: {e}")))?;
    if canonical.len() > MAX_BUNDLE_BYTES {
        return Err(ApiError::with_message(
            ErrorCode::FrameTooLarge,
            format!("a policy bundle may be at most {MAX_BUNDLE_BYTES} bytes in canonical form"),
        ));
    }
    let before = current(state).await?;
    let rec = PolicyRecord {
        version: before.version.saturating_add(1),
        hash: hash(&bundle)?,
        bundle,
        author: author.id.clone(),
        created_at: state.now(),
    };
    if !state.store.insert_policy(&rec).await? {
        return Err(ApiError::with_message(
            ErrorCode::Conflict,
            "another admin saved a policy at the same moment; read it and try again",
        ));
    }
    audit::record(
        state,
        &author.id,
        "policy.updated",
        None,
        AuditOutcome::Success,
        json!({"policy_version": rec.version, "policy_hash": rec.hash,
               "previous_version": before.version, "rules": policy.rules.len()}),
    )
    .await?;
    let event = LiveEvent {
        kind: LiveKind::PolicyChanged,
        device_id: String::new(),
        owner_id: None,
        at: rec.created_at,
        data: json!({"policy_version": rec.version, "policy_hash": rec.hash}),
    };
    if let Err(e) = publish_live(state, &event).await {
        tracing::warn!(error = %e, "policy_changed not published");
    }
    tracing::info!(version = rec.version, hash = %rec.hash, author = %author.id, "policy updated");
    Ok(Current {
        version: rec.version,
        hash: rec.hash,
        bundle: rec.bundle,
        policy,
        author: Some(rec.author),
        created_at: Some(rec.created_at),
    })
}
