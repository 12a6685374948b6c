//! The Tether policy engine: the versioned rule format admins edit, its validation with
//! precise field paths, and the evaluation of one command against it.
//!
//! The crate is pure logic with no I/O: the server evaluates every submitted command with
//! it (`POST /api/command`, the dry-run), and the agent will check delivered commands
//! against the same bundle. Everything that depends on the world is an input: the time
//! ([`Facts::now`]), how long ago the caller last gave a second factor, and how many
//! matching commands were accepted recently (for rate rules, [`RateCounts`]).
//!
//! The format (`docs/policy.md` is the long form):
//!
//! ```json
//! {"format": 1, "default": "allow",
//!  "rules": [
//!    {"id": "no-night-reboots", "effect": "deny",
//!     "match": {"roles": ["student"], "methods": ["reboot", "shutdown"],
//!               "outside_window": {"days": ["mon","tue","wed","thu","fri"],
//!                                  "start": "08:00", "end": "18:00", "utc_offset_minutes": 60}}},
//!    {"id": "lock-rate", "effect": "deny", "match": {"methods": ["lock_screen"]},
//!     "rate": {"max": 10, "per_s": 3600, "scope": "user"}},
//!    {"id": "dumps", "effect": "sensitive", "match": {"methods": ["memory_dump"]},
//!     "approvals": 2}
//!  ]}
//! ```
//!
//! Rules are tried in order and the **first rule whose conditions all hold decides**; when
//! none does, `default` decides. A method that is sensitive by default
//! ([`Method::sensitive_by_default`], `memory_dump`) needs a fresh second factor within
//! [`DEFAULT_FRESH_SECOND_FACTOR_S`] unless the deciding rule names it explicitly.
//!
//! ```
//! use tether_policy::{Facts, Outcome, Policy, Request, Role};
//! use tether_proto::UnixMillis;
//! use tether_proto::messages::command::Method;
//!
//! let policy = Policy::from_value(&serde_json::json!({
//!     "format": 1,
//!     "rules": [{"id": "no-reboots", "effect": "deny", "match": {"methods": ["reboot"]}}]
//! })).unwrap();
//! let request = Request { user_id: "usr_1", role: Role::Student, device_id: "dev_1", method: Method::Reboot };
//! let facts = Facts { now: UnixMillis(0), second_factor_at: None, counts: &() };
//! let decision = policy.evaluate(&request, &facts);
//! assert_eq!(decision.outcome, Outcome::Deny);
//! assert_eq!(decision.rule.as_deref(), Some("no-reboots"));
//! ```

mod eval;
mod format;
mod window;

pub use eval::{Decision, Facts, Outcome, RateCounts, RateQuery, Request};
pub use format::{
    Approvers, DefaultEffect, Effect, Match, Policy, PolicyError, RateLimit, RateScope, Role, Rule,
    Weekday,
};
pub use tether_proto::messages::command::Method;
pub use window::Window;

/// The format version this crate reads and writes (`"format": 1`).
pub const FORMAT_VERSION: u32 = 1;

/// How fresh (in seconds) a second factor must be for a method that is sensitive by
/// default when no rule says otherwise.
pub const DEFAULT_FRESH_SECOND_FACTOR_S: u32 = 300;

/// The most rules one policy may hold.
pub const MAX_RULES: usize = 256;

/// The most entries one list (`roles`, `users`, `devices`, `methods`, `days`) may hold.
pub const MAX_LIST: usize = 256;

/// The most approvals a rule may require: as many approver signatures as one
/// `command_delivery` carries (`tether_proto::owner_sig::MAX_APPROVALS`).
pub const MAX_APPROVALS: u32 = 8;

/// The longest freshness window a rule may give a second factor (one day).
pub const MAX_FRESH_SECOND_FACTOR_S: u32 = 86_400;

/// The longest rate window (30 days).
pub const MAX_RATE_PER_S: u32 = 2_592_000;

/// The built-in policy in force until an admin saves one: allow, except that methods
/// sensitive by default need a fresh second factor.
pub fn builtin() -> serde_json::Value {
    serde_json::json!({"format": FORMAT_VERSION, "default": "allow", "rules": []})
}

#[cfg(test)]
mod tests;
