//! Evaluating one command against a policy: the first rule whose conditions all hold
//! decides; the policy's `default` decides when none does.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;
use tether_proto::UnixMillis;
use tether_proto::messages::command::Method;

use crate::DEFAULT_FRESH_SECOND_FACTOR_S;
use crate::format::{Approvers, DefaultEffect, Effect, Policy, RateScope, Role, Rule};

/// The command being decided and who asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// The caller's user id.
    pub user_id: &'a str,
    /// The caller's role.
    pub role: Role,
    /// The device the command is for.
    pub device_id: &'a str,
    /// What it asks the device to do.
    pub method: Method,
}

/// What the engine needs to know about the world.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// Now (from the caller's injected clock).
    pub now: UnixMillis,
    /// When the caller last gave a second factor (TOTP or passkey) in this session.
    pub second_factor_at: Option<UnixMillis>,
    /// How many matching commands rate rules count (see [`Policy::rate_queries`]).
    pub counts: &'a dyn RateCounts,
}

/// A count a rate rule needs: the commands accepted after `since` (exclusive) in the
/// rule's scope, of the rule's methods (every method when `methods` is empty).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RateQuery {
    /// The rule that needs it.
    pub rule_id: String,
    /// Whose commands.
    pub scope: RateScope,
    /// The caller, when the scope counts by user.
    pub user_id: Option<String>,
    /// The device, when the scope counts by device.
    pub device_id: Option<String>,
    /// Which methods count (empty: all).
    pub methods: Vec<Method>,
    /// Commands accepted after this instant count.
    pub since: UnixMillis,
}

/// The counts for rate rules, by rule id. A count that is not provided counts as over
/// every limit: a rate rule fails closed.
pub trait RateCounts: std::fmt::Debug {
    /// The count for the rule, if known.
    fn count(&self, rule_id: &str) -> Option<u64>;
}

/// No counts (a policy without rate rules, or tests).
impl RateCounts for () {
    fn count(&self, _: &str) -> Option<u64> {
        None
    }
}

impl RateCounts for HashMap<String, u64> {
    fn count(&self, rule_id: &str) -> Option<u64> {
        self.get(rule_id).copied()
    }
}

/// What policy says about a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Outcome {
    /// Go ahead.
    Allow,
    /// Refused (`4001 POLICY_DENIED`).
    Deny,
    /// The caller must give a second factor first (`4003 STEP_UP_REQUIRED`), then submit
    /// again.
    NeedsStepUp {
        /// How fresh the second factor must be, in seconds.
        fresh_second_factor_s: u32,
    },
    /// Accepted, but it waits for approvals (`4002 APPROVAL_REQUIRED`).
    NeedsApproval {
        /// Distinct approvals needed (never the originator's).
        approvals: u32,
        /// Who may approve.
        approvers: Approvers,
    },
}

/// A decision: the outcome, the rule that decided (none: the default or a built-in), and
/// a reason for humans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The outcome.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// The deciding rule's id; absent when the policy's default or the built-in
    /// sensitivity of a method decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Why, for humans: `rule no-night-reboots: reboot is not allowed outside mon-fri
    /// 08:00-18:00 (UTC+01:00)`.
    pub reason: String,
    /// Whether the command counts as sensitive (it needed, or would need, a step-up or
    /// approvals).
    pub sensitive: bool,
}

impl Decision {
    /// The short word for audit events and metrics: `allow`, `deny`, `step_up`,
    /// `needs_approval`.
    pub fn word(&self) -> &'static str {
        match self.outcome {
            Outcome::Allow => "allow",
            Outcome::Deny => "deny",
            Outcome::NeedsStepUp { .. } => "step_up",
            Outcome::NeedsApproval { .. } => "needs_approval",
        }
    }
}

fn method_name(m: Method) -> String {
    serde_json::to_value(m)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl Rule {
    /// The conditions that held, for reasons: ` for role student outside mon-fri …`.
    fn conditions_text(&self, r: &Request<'_>) -> String {
        let mut s = String::new();
        let c = &self.conditions;
        if c.roles.is_some() {
            s.push_str(&format!(" for role {}", r.role.as_str()));
        }
        if c.users.is_some() {
            s.push_str(&format!(" for user {}", r.user_id));
        }
        if c.devices.is_some() {
            s.push_str(&format!(" on device {}", r.device_id));
        }
        if let Some(w) = &c.window {
            s.push_str(&format!(" inside {}", w.describe()));
        }
        if let Some(w) = &c.outside_window {
            s.push_str(&format!(" outside {}", w.describe()));
        }
        if let Some(rate) = &self.rate {
            s.push_str(&format!(
                " more than {} times per {} s (per {})",
                rate.max,
                rate.per_s,
                rate.scope.as_str().replace('_', "+")
            ));
        }
        s
    }

    fn rate_query(&self, r: &Request<'_>, now: UnixMillis) -> Option<RateQuery> {
        let rate = self.rate.as_ref()?;
        let by_user = matches!(rate.scope, RateScope::User | RateScope::UserDevice);
        let by_device = matches!(rate.scope, RateScope::Device | RateScope::UserDevice);
        Some(RateQuery {
            rule_id: self.id.clone(),
            scope: rate.scope,
            user_id: by_user.then(|| r.user_id.to_owned()),
            device_id: by_device.then(|| r.device_id.to_owned()),
            methods: self.conditions.methods.clone().unwrap_or_default(),
            since: now.saturating_sub(Duration::from_secs(u64::from(rate.per_s))),
        })
    }

    /// Whether every condition holds.
    fn applies(&self, r: &Request<'_>, f: &Facts<'_>) -> bool {
        let c = &self.conditions;
        if !c.matches_request(r) {
            return false;
        }
        if c.window.as_ref().is_some_and(|w| !w.contains(f.now)) {
            return false;
        }
        if c.outside_window.as_ref().is_some_and(|w| w.contains(f.now)) {
            return false;
        }
        match &self.rate {
            None => true,
            Some(rate) => f
                .counts
                .count(&self.id)
                .is_none_or(|n| n >= u64::from(rate.max)),
        }
    }
}

impl Policy {
    /// The counts the rate rules that could decide this request need, for the caller to
    /// look up (commands accepted after `since`) before calling [`evaluate`](Self::evaluate).
    pub fn rate_queries(&self, r: &Request<'_>, now: UnixMillis) -> Vec<RateQuery> {
        self.rules
            .iter()
            .filter(|rule| rule.conditions.matches_request(r))
            .filter_map(|rule| rule.rate_query(r, now))
            .collect()
    }

    /// Decides a command.
    pub fn evaluate(&self, r: &Request<'_>, f: &Facts<'_>) -> Decision {
        let method = method_name(r.method);
        let Some(rule) = self.rules.iter().find(|rule| rule.applies(r, f)) else {
            return match self.default {
                DefaultEffect::Deny => Decision {
                    outcome: Outcome::Deny,
                    rule: None,
                    reason: format!("no rule allows {method}, and the policy's default is deny"),
                    sensitive: r.method.sensitive_by_default(),
                },
                DefaultEffect::Allow if r.method.sensitive_by_default() => {
                    builtin_sensitive(r, f, format!("{method} is sensitive by default"))
                }
                DefaultEffect::Allow => Decision {
                    outcome: Outcome::Allow,
                    rule: None,
                    reason: format!("no rule matched {method}; the policy's default is allow"),
                    sensitive: false,
                },
            };
        };
        let conditions = rule.conditions_text(r);
        let description = rule
            .description
            .as_deref()
            .map(|d| format!(" ({d})"))
            .unwrap_or_default();
        let id = &rule.id;
        match rule.effect {
            Effect::Deny => Decision {
                outcome: Outcome::Deny,
                rule: Some(id.clone()),
                reason: format!("rule {id}: {method} is not allowed{conditions}{description}"),
                sensitive: r.method.sensitive_by_default(),
            },
            Effect::Allow => {
                let named = rule
                    .conditions
                    .methods
                    .as_ref()
                    .is_some_and(|m| m.contains(&r.method));
                if r.method.sensitive_by_default() && !named {
                    // A broad allow does not lift a method's built-in sensitivity: only a
                    // rule that names the method does.
                    let mut d = builtin_sensitive(
                        r,
                        f,
                        format!(
                            "rule {id} allows it, but {method} is sensitive by default and the rule does not name it"
                        ),
                    );
                    d.rule = Some(id.clone());
                    return d;
                }
                Decision {
                    outcome: Outcome::Allow,
                    rule: Some(id.clone()),
                    reason: format!("rule {id}: {method} is allowed{conditions}{description}"),
                    sensitive: false,
                }
            }
            Effect::Sensitive => {
                let why = format!("rule {id}: {method} is sensitive{conditions}{description}");
                let mut d = sensitive(
                    f,
                    rule.fresh_second_factor_s,
                    rule.approvals,
                    rule.approvers.clone().unwrap_or_default(),
                    why,
                );
                d.rule = Some(id.clone());
                d
            }
        }
    }
}

/// A method sensitive by default with no rule saying otherwise: a fresh second factor.
fn builtin_sensitive(_r: &Request<'_>, f: &Facts<'_>, why: String) -> Decision {
    sensitive(
        f,
        Some(DEFAULT_FRESH_SECOND_FACTOR_S),
        None,
        Approvers::default(),
        why,
    )
}

/// A sensitive command: the step-up first (when asked for), then the approvals (when
/// asked for). Both given means both are required.
fn sensitive(
    f: &Facts<'_>,
    fresh_s: Option<u32>,
    approvals: Option<u32>,
    approvers: Approvers,
    why: String,
) -> Decision {
    if let Some(s) = fresh_s {
        let fresh = f.second_factor_at.is_some_and(|at| {
            at <= f.now && f.now.0.saturating_sub(at.0) <= u64::from(s).saturating_mul(1000)
        });
        if !fresh {
            return Decision {
                outcome: Outcome::NeedsStepUp {
                    fresh_second_factor_s: s,
                },
                rule: None,
                reason: format!(
                    "{why}: it needs a second factor (TOTP or passkey) within the last {s} s"
                ),
                sensitive: true,
            };
        }
    }
    if let Some(n) = approvals {
        let plural = if n == 1 { "" } else { "s" };
        return Decision {
            outcome: Outcome::NeedsApproval {
                approvals: n,
                approvers,
            },
            rule: None,
            reason: format!("{why}: it needs {n} approval{plural} by other authorised users"),
            sensitive: true,
        };
    }
    Decision {
        outcome: Outcome::Allow,
        rule: None,
        reason: format!("{why}: allowed with a fresh second factor"),
        sensitive: true,
    }
}
