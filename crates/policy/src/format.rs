//! The rule format (version 1): its types, parsing with field paths, and the checks
//! serde cannot express (shapes, ranges, unique ids, which fields go with which effect).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tether_proto::messages::command::Method;

use crate::window::Window;
use crate::{
    FORMAT_VERSION, MAX_APPROVALS, MAX_FRESH_SECOND_FACTOR_S, MAX_LIST, MAX_RATE_PER_S, MAX_RULES,
};

/// A policy bundle that is not valid: where (`rules[2].match.methods[0]`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct PolicyError {
    /// The field path, as `rules[2].match.window.start` (`.` for the bundle itself).
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl PolicyError {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// A policy: what happens to a command no rule decides, and the rules in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The format version: always 1 for now.
    pub format: u32,
    /// What happens when no rule matches (default `allow`).
    #[serde(default)]
    pub default: DefaultEffect,
    /// The rules, tried in order; the first that matches decides.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// What happens to a command no rule decides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DefaultEffect {
    /// Allowed (methods sensitive by default still need a fresh second factor).
    #[default]
    Allow,
    /// Denied.
    Deny,
}

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// The command is allowed.
    Allow,
    /// The command is refused (`4001 POLICY_DENIED`).
    Deny,
    /// The command needs a fresh second factor (`fresh_second_factor_s`), approvals by
    /// other users (`approvals`), or both.
    Sensitive,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// 1..=64 of `[a-z0-9_.-]`, unique within the policy; named in every decision.
    pub id: String,
    /// Why the rule exists, for humans (at most 512 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// What it does when it matches.
    pub effect: Effect,
    /// When it matches: every condition given must hold (an empty `match` always does).
    #[serde(rename = "match", default)]
    pub conditions: Match,
    /// Matches only once `max` matching commands were accepted within `per_s` seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<RateLimit>,
    /// `sensitive` only: the caller's last second factor must be at most this many
    /// seconds old (1..=86400).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fresh_second_factor_s: Option<u32>,
    /// `sensitive` only: this many distinct other authorised users must approve
    /// (1..=8: a delivery carries at most 8 approver signatures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals: Option<u32>,
    /// `sensitive` with `approvals` only: who may approve (default: admins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvers: Option<Approvers>,
}

/// A rule's conditions. Each given condition must hold; within a list any entry matches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// The caller's role is one of these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<Role>>,
    /// The caller is one of these users (ids).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<String>>,
    /// The command is for one of these devices (ids).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<String>>,
    /// The command's method is one of these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<Method>>,
    /// Now is inside this weekly window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
    /// Now is outside this weekly window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outside_window: Option<Window>,
}

/// A user's role, as the server knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Manages the lab.
    Admin,
    /// Reads everything, changes nothing.
    Auditor,
    /// Owns and controls their own PCs.
    Student,
}

impl Role {
    /// The spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Auditor => "auditor",
            Role::Student => "student",
        }
    }

    /// Parses the spelling.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "auditor" => Some(Role::Auditor),
            "student" => Some(Role::Student),
            _ => None,
        }
    }
}

/// A day of the week, in the window's own time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Weekday {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

impl Weekday {
    /// Monday first.
    pub const ALL: [Weekday; 7] = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ];

    /// The spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Weekday::Mon => "mon",
            Weekday::Tue => "tue",
            Weekday::Wed => "wed",
            Weekday::Thu => "thu",
            Weekday::Fri => "fri",
            Weekday::Sat => "sat",
            Weekday::Sun => "sun",
        }
    }
}

/// A rate condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// How many matching commands may be accepted within the window (1..=1000000); the
    /// rule matches the next one.
    pub max: u32,
    /// The window in seconds (1..=2592000).
    pub per_s: u32,
    /// Whose commands are counted (default `user`).
    #[serde(default)]
    pub scope: RateScope,
}

/// Whose commands a rate condition counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateScope {
    /// The caller's, on any device.
    #[default]
    User,
    /// Anyone's, on the command's device.
    Device,
    /// The caller's, on the command's device.
    UserDevice,
}

impl RateScope {
    /// The spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            RateScope::User => "user",
            RateScope::Device => "device",
            RateScope::UserDevice => "user_device",
        }
    }
}

/// Who may approve a command a rule sends for approval. Either list admits; when
/// neither is given, admins may.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approvers {
    /// Users with one of these roles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<Role>>,
    /// These users (ids).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<String>>,
}

impl Approvers {
    /// Whether a user with this id and role may approve (the originator never may; the
    /// caller checks that).
    pub fn admits(&self, user_id: &str, role: Role) -> bool {
        if self.roles.is_none() && self.users.is_none() {
            return role == Role::Admin;
        }
        self.roles.as_ref().is_some_and(|r| r.contains(&role))
            || self
                .users
                .as_ref()
                .is_some_and(|u| u.iter().any(|x| x == user_id))
    }
}

impl Policy {
    /// Parses and validates a bundle. The error names the first offending field.
    pub fn from_value(bundle: &Value) -> Result<Policy, PolicyError> {
        if !bundle.is_object() {
            return Err(PolicyError::new(".", "a policy is a JSON object"));
        }
        let policy: Policy = serde_path_to_error::deserialize(bundle).map_err(|e| {
            let path = e.path().to_string();
            PolicyError::new(path, e.into_inner().to_string())
        })?;
        policy.validate()?;
        Ok(policy)
    }

    /// The checks serde cannot express.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.format != FORMAT_VERSION {
            return Err(PolicyError::new(
                "format",
                format!(
                    "unsupported format {}; this server reads format {FORMAT_VERSION}",
                    self.format
                ),
            ));
        }
        if self.rules.len() > MAX_RULES {
            return Err(PolicyError::new(
                "rules",
                format!("at most {MAX_RULES} rules"),
            ));
        }
        for (i, rule) in self.rules.iter().enumerate() {
            let at = format!("rules[{i}]");
            rule.validate(&at)?;
            if let Some(first) = self.rules.iter().position(|r| r.id == rule.id)
                && first < i
            {
                return Err(PolicyError::new(
                    format!("{at}.id"),
                    format!("duplicate rule id {:?} (also rules[{first}])", rule.id),
                ));
            }
        }
        Ok(())
    }
}

/// A rule id, kind or other name: 1..=64 of `[a-z0-9_.-]`.
fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b))
}

/// A user or device id: 1..=64 printable ASCII characters without spaces.
fn valid_ref(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

fn check_list<T>(path: &str, list: Option<&Vec<T>>) -> Result<(), PolicyError> {
    match list {
        Some(l) if l.is_empty() => Err(PolicyError::new(
            path,
            "an empty list matches nothing; leave the condition out instead",
        )),
        Some(l) if l.len() > MAX_LIST => Err(PolicyError::new(
            path,
            format!("at most {MAX_LIST} entries"),
        )),
        _ => Ok(()),
    }
}

fn check_refs(path: &str, list: Option<&Vec<String>>) -> Result<(), PolicyError> {
    check_list(path, list)?;
    for (i, id) in list.into_iter().flatten().enumerate() {
        if !valid_ref(id) {
            return Err(PolicyError::new(
                format!("{path}[{i}]"),
                "an id is 1..=64 printable ASCII characters without spaces",
            ));
        }
    }
    Ok(())
}

impl Rule {
    fn validate(&self, at: &str) -> Result<(), PolicyError> {
        if !valid_id(&self.id) {
            return Err(PolicyError::new(
                format!("{at}.id"),
                "a rule id is 1..=64 of [a-z0-9_.-]",
            ));
        }
        if let Some(d) = &self.description
            && (d.chars().count() > 512 || d.chars().any(char::is_control))
        {
            return Err(PolicyError::new(
                format!("{at}.description"),
                "at most 512 characters, no control characters",
            ));
        }
        self.conditions.validate(&format!("{at}.match"))?;
        if let Some(r) = &self.rate {
            if !(1..=1_000_000).contains(&r.max) {
                return Err(PolicyError::new(
                    format!("{at}.rate.max"),
                    "must be 1..=1000000",
                ));
            }
            if !(1..=MAX_RATE_PER_S).contains(&r.per_s) {
                return Err(PolicyError::new(
                    format!("{at}.rate.per_s"),
                    format!("must be 1..={MAX_RATE_PER_S}"),
                ));
            }
        }
        match self.effect {
            Effect::Sensitive => {
                if self.fresh_second_factor_s.is_none() && self.approvals.is_none() {
                    return Err(PolicyError::new(
                        at,
                        "a sensitive rule needs fresh_second_factor_s, approvals, or both",
                    ));
                }
                if let Some(s) = self.fresh_second_factor_s
                    && !(1..=MAX_FRESH_SECOND_FACTOR_S).contains(&s)
                {
                    return Err(PolicyError::new(
                        format!("{at}.fresh_second_factor_s"),
                        format!("must be 1..={MAX_FRESH_SECOND_FACTOR_S}"),
                    ));
                }
                if let Some(n) = self.approvals
                    && !(1..=MAX_APPROVALS).contains(&n)
                {
                    return Err(PolicyError::new(
                        format!("{at}.approvals"),
                        format!("must be 1..={MAX_APPROVALS}"),
                    ));
                }
                if let Some(a) = &self.approvers {
                    if self.approvals.is_none() {
                        return Err(PolicyError::new(
                            format!("{at}.approvers"),
                            "approvers go with approvals",
                        ));
                    }
                    check_list(&format!("{at}.approvers.roles"), a.roles.as_ref())?;
                    check_refs(&format!("{at}.approvers.users"), a.users.as_ref())?;
                }
            }
            Effect::Allow | Effect::Deny => {
                let effect = if self.effect == Effect::Allow {
                    "an allow"
                } else {
                    "a deny"
                };
                for (field, given) in [
                    (
                        "fresh_second_factor_s",
                        self.fresh_second_factor_s.is_some(),
                    ),
                    ("approvals", self.approvals.is_some()),
                    ("approvers", self.approvers.is_some()),
                ] {
                    if given {
                        return Err(PolicyError::new(
                            format!("{at}.{field}"),
                            format!("only a sensitive rule takes {field}, not {effect} rule"),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

impl Match {
    fn validate(&self, at: &str) -> Result<(), PolicyError> {
        check_list(&format!("{at}.roles"), self.roles.as_ref())?;
        check_refs(&format!("{at}.users"), self.users.as_ref())?;
        check_refs(&format!("{at}.devices"), self.devices.as_ref())?;
        check_list(&format!("{at}.methods"), self.methods.as_ref())?;
        if let Some(w) = &self.window {
            w.validate(&format!("{at}.window"))?;
        }
        if let Some(w) = &self.outside_window {
            w.validate(&format!("{at}.outside_window"))?;
        }
        Ok(())
    }

    /// Whether the request's identity, device and method conditions hold (not the time
    /// or rate ones).
    pub(crate) fn matches_request(&self, r: &crate::Request<'_>) -> bool {
        self.roles.as_ref().is_none_or(|l| l.contains(&r.role))
            && self
                .users
                .as_ref()
                .is_none_or(|l| l.iter().any(|u| u == r.user_id))
            && self
                .devices
                .as_ref()
                .is_none_or(|l| l.iter().any(|d| d == r.device_id))
            && self.methods.as_ref().is_none_or(|l| l.contains(&r.method))
    }
}

impl PolicyError {
    /// A window error (the window module builds its own paths).
    pub(crate) fn at(path: String, message: impl Into<String>) -> Self {
        Self::new(path, message)
    }
}
