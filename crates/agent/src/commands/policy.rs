//! Local enforcement: every command is checked against the policy bundle in force on
//! this PC just before the helper is called — with the server reachable or not, so a
//! command delivered before an outage, or by a server that skipped its own check, is
//! still held to the last bundle the server signed.
//!
//! The agent decides with what it knows for itself: the method, its own device id, the
//! delivery's `origin_user_id`, its own clock, and rate counts from its own command
//! ledger (the commands it handed to the helper). What it cannot know it does not guess
//! against the user:
//!
//! - **the originator's role**: the delivery does not carry it, so the bundle is
//!   evaluated for every role that may send commands (admin and student); the command is
//!   denied only when every one of them is denied (a rule limited to some roles is left
//!   to the server);
//! - **a second factor**: the agent cannot see one, so it is taken as given (step-up is
//!   the server's check); a rule that asks for approvals is checked against the
//!   delivery's `approvals_required`, whose approvers' signatures the owner-signature
//!   check verified with pinned keys — fewer than the bundle asks for is refused
//!   (`4002`);
//! - **rates**: counted from this PC's ledger, so a `user` scope sees only this PC's
//!   commands, and a command the ledger has forgotten (24 h after its deadline) no
//!   longer counts.
//!
//! A denial ends the command `denied` with `4001 POLICY_DENIED` (or `4002`), the rule
//! named in the result; the helper is never called.

use std::collections::HashMap;

use serde_json::{Value, json};
use tether_policy::{Facts, Outcome, Request, Role};
use tether_proto::messages::command::{CommandDelivery, Method};
use tether_proto::{ErrorCode, UnixMillis};

use crate::policy::Bundle;

/// The roles that may send commands (auditors may not), for which a command is decided
/// when its originator's role is unknown.
const COMMANDING_ROLES: [Role; 2] = [Role::Admin, Role::Student];

/// A command the local policy refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Denial {
    /// `4001` (denied) or `4002` (fewer approvals than the bundle asks for).
    pub(crate) code: ErrorCode,
    /// The deciding rule, when a rule decided.
    pub(crate) rule: Option<String>,
    /// Why, for people: the engine's reason.
    pub(crate) reason: String,
}

impl Denial {
    /// The `result` of the `command_result` that reports it.
    pub(crate) fn result(&self, bundle: &Bundle) -> Value {
        json!({"rule": self.rule, "reason": self.reason, "policy_version": bundle.version,
               "policy_hash": bundle.hash, "local": true})
    }
}

/// A command the agent handed to the helper before: what rate rules count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ran {
    /// When it was checked and handed on.
    pub(crate) at: UnixMillis,
    /// Its method.
    pub(crate) method: Method,
    /// Who sent it.
    pub(crate) user_id: String,
}

/// The longest rate window of a bundle's rules, seconds (0: no rate rules).
pub(crate) fn longest_rate_window_s(bundle: &Bundle) -> u32 {
    bundle
        .policy
        .rules
        .iter()
        .filter_map(|r| r.rate.map(|rate| rate.per_s))
        .max()
        .unwrap_or(0)
}

/// Decides `d` for this device at `now` against `bundle`, with `ran` the commands handed
/// to the helper within the longest rate window. `None`: go ahead.
pub(crate) fn check(
    bundle: &Bundle,
    d: &CommandDelivery,
    device_id: &str,
    now: UnixMillis,
    ran: &[Ran],
) -> Option<Denial> {
    let mut decisions = Vec::with_capacity(COMMANDING_ROLES.len());
    for role in COMMANDING_ROLES {
        let request = Request {
            user_id: &d.origin_user_id,
            role,
            device_id,
            method: d.method,
        };
        let counts: HashMap<String, u64> = bundle
            .policy
            .rate_queries(&request, now)
            .into_iter()
            .map(|q| {
                let n = ran
                    .iter()
                    .filter(|r| r.at > q.since)
                    .filter(|r| q.user_id.as_ref().is_none_or(|u| *u == r.user_id))
                    // Every command in the ledger is for this device.
                    .filter(|_| q.device_id.as_ref().is_none_or(|dev| dev == device_id))
                    .filter(|r| q.methods.is_empty() || q.methods.contains(&r.method))
                    .count();
                (q.rule_id, u64::try_from(n).unwrap_or(u64::MAX))
            })
            .collect();
        let facts = Facts {
            now,
            // Not something the agent can see: the server checked it.
            second_factor_at: Some(now),
            counts: &counts,
        };
        decisions.push(bundle.policy.evaluate(&request, &facts));
    }
    if decisions.iter().all(|d| d.outcome == Outcome::Deny) {
        let first = decisions.into_iter().next()?;
        return Some(Denial {
            code: ErrorCode::PolicyDenied,
            rule: first.rule,
            reason: first.reason,
        });
    }
    // Approvals: when no role lets the command through without them, the delivery must
    // carry at least as many as the least demanding role needs.
    let mut needed: Option<(u32, &tether_policy::Decision)> = None;
    for dec in &decisions {
        match &dec.outcome {
            Outcome::Allow | Outcome::NeedsStepUp { .. } => return None,
            Outcome::Deny => {}
            Outcome::NeedsApproval { approvals, .. } => {
                if needed.is_none_or(|(n, _)| *approvals < n) {
                    needed = Some((*approvals, dec));
                }
            }
        }
    }
    let (n, dec) = needed?;
    let carried = d.approvals_required.unwrap_or(0);
    (carried < n).then(|| Denial {
        code: ErrorCode::ApprovalRequired,
        rule: dec.rule.clone(),
        reason: format!(
            "{} (the command carries {carried} approval{})",
            dec.reason,
            if carried == 1 { "" } else { "s" }
        ),
    })
}

#[cfg(test)]
mod tests;
