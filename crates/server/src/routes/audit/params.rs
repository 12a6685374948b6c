//! The audit routes' query parameters. Every value arrives as text and is checked here,
//! so a bad one is `1005` with a message that starts with the parameter's name
//! (`since: …`), not a deserializer's message about an anonymous field. An empty value is
//! the same as leaving the parameter out.

use serde::{Deserialize, Serialize};
use tether_proto::{ErrorCode, UnixMillis};
use tether_store::{AuditFilter, MAX_AUDIT_DEVICE_ID};
use utoipa::{IntoParams, ToSchema};

use crate::audit::Outcome;
use crate::error::{ApiError, ApiResult};

/// A page holds this many events unless `limit` says otherwise.
pub(super) const DEFAULT_LIMIT: u32 = 100;
/// The most events a page may hold.
pub(super) const MAX_LIMIT: u32 = 500;

/// The longest actor and action a filter may name (the store's column widths).
const MAX_ACTOR: usize = 255;
const MAX_ACTION: usize = 128;

/// `GET /api/audit` parameters.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only events by this actor (exact): a user id, a device id, `system` or `anonymous`.
    pub actor: Option<String>,
    /// Only events concerning this device id (its own events and everything done to it).
    pub device: Option<String>,
    /// Only this action and the ones below it: `command` matches `command.queued`.
    pub action: Option<String>,
    /// Only this outcome: `success`, `failure` or `denied`.
    pub outcome: Option<String>,
    /// Only events at or after this time (UnixMillis).
    #[param(value_type = Option<u64>)]
    pub since: Option<String>,
    /// Only events before this time (UnixMillis).
    #[param(value_type = Option<u64>)]
    pub until: Option<String>,
    /// Only events with a `seq` below this one: the previous page's `next_before`.
    #[param(value_type = Option<u64>)]
    pub before: Option<String>,
    /// At most this many events, newest first (1..=500, default 100).
    #[param(value_type = Option<u32>)]
    pub limit: Option<String>,
}

/// `GET /api/audit/export` parameters: the format and the filters of `GET /api/audit`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `csv` (the default) or `json`.
    pub format: Option<String>,
    /// As for `GET /api/audit`.
    pub actor: Option<String>,
    /// As for `GET /api/audit`.
    pub device: Option<String>,
    /// As for `GET /api/audit`.
    pub action: Option<String>,
    /// As for `GET /api/audit`.
    pub outcome: Option<String>,
    /// As for `GET /api/audit`.
    #[param(value_type = Option<u64>)]
    pub since: Option<String>,
    /// As for `GET /api/audit`.
    #[param(value_type = Option<u64>)]
    pub until: Option<String>,
}

/// `GET /api/devices/{id}/audit` parameters.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeviceAuditQuery {
    /// As for `GET /api/audit`.
    #[param(value_type = Option<u64>)]
    pub before: Option<String>,
    /// As for `GET /api/audit`.
    #[param(value_type = Option<u32>)]
    pub limit: Option<String>,
}

/// The filters as checked, named like the query parameters (an export echoes them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct Filters {
    /// Actor, exact.
    pub actor: Option<String>,
    /// Device id.
    pub device: Option<String>,
    /// Action or action prefix.
    pub action: Option<String>,
    /// Outcome.
    pub outcome: Option<String>,
    /// From (UnixMillis, inclusive).
    pub since: Option<u64>,
    /// To (UnixMillis, exclusive).
    pub until: Option<u64>,
}

impl Filters {
    /// Checks the six filter parameters.
    pub fn parse(
        actor: Option<&str>,
        device: Option<&str>,
        action: Option<&str>,
        outcome: Option<&str>,
        since: Option<&str>,
        until: Option<&str>,
    ) -> ApiResult<Filters> {
        let outcome = present(outcome)
            .map(|o| {
                Outcome::parse(o)
                    .map(|o| o.as_str().to_owned())
                    .ok_or_else(|| invalid("outcome", "must be `success`, `failure` or `denied`"))
            })
            .transpose()?;
        let since = number("since", since, TIME)?;
        let until = number("until", until, TIME)?;
        if let (Some(s), Some(u)) = (since, until)
            && u < s
        {
            return Err(invalid("until", "must not be before `since`"));
        }
        Ok(Filters {
            actor: text("actor", actor, MAX_ACTOR)?,
            device: text("device", device, MAX_AUDIT_DEVICE_ID)?,
            action: text("action", action, MAX_ACTION)?,
            outcome,
            since,
            until,
        })
    }

    /// The store's filter.
    pub fn to_store(&self) -> AuditFilter {
        AuditFilter {
            actor: self.actor.clone(),
            device_id: self.device.clone(),
            action: self.action.clone(),
            outcome: self.outcome.clone(),
            since: self.since.map(UnixMillis),
            until: self.until.map(UnixMillis),
            before_seq: None,
            after_seq: None,
        }
    }
}

impl AuditQuery {
    /// The checked filters.
    pub fn filters(&self) -> ApiResult<Filters> {
        Filters::parse(
            self.actor.as_deref(),
            self.device.as_deref(),
            self.action.as_deref(),
            self.outcome.as_deref(),
            self.since.as_deref(),
            self.until.as_deref(),
        )
    }
}

impl ExportQuery {
    /// The checked filters.
    pub fn filters(&self) -> ApiResult<Filters> {
        Filters::parse(
            self.actor.as_deref(),
            self.device.as_deref(),
            self.action.as_deref(),
            self.outcome.as_deref(),
            self.since.as_deref(),
            self.until.as_deref(),
        )
    }
}

/// Where a page starts and how long it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Page {
    /// Only events with a `seq` below this.
    pub(super) before: Option<u64>,
    /// At most this many (1..=[`MAX_LIMIT`]).
    pub(super) limit: u32,
}

impl Page {
    /// Checks `before` and `limit`.
    pub(super) fn parse(before: Option<&str>, limit: Option<&str>) -> ApiResult<Page> {
        let limit = match present(limit) {
            None => DEFAULT_LIMIT,
            Some(l) => l
                .parse::<u32>()
                .ok()
                .filter(|l| (1..=MAX_LIMIT).contains(l))
                .ok_or_else(|| {
                    invalid(
                        "limit",
                        &format!("must be an integer from 1 to {MAX_LIMIT}"),
                    )
                })?,
        };
        Ok(Page {
            before: number("before", before, SEQ)?,
            limit,
        })
    }
}

/// The export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    /// RFC 4180 CSV.
    Csv,
    /// One JSON document.
    Json,
}

impl Format {
    /// Checks `format` (default CSV).
    pub(super) fn parse(format: Option<&str>) -> ApiResult<Format> {
        match present(format) {
            None | Some("csv") => Ok(Format::Csv),
            Some("json") => Ok(Format::Json),
            Some(_) => Err(invalid("format", "must be `csv` or `json`")),
        }
    }

    /// The file name extension and the answer's spelling.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Json => "json",
        }
    }
}

/// A refusal naming the parameter.
fn invalid(name: &str, why: &str) -> ApiError {
    ApiError::with_message(ErrorCode::InvalidField, format!("{name}: {why}"))
}

/// The value, unless it is missing or empty.
fn present(v: Option<&str>) -> Option<&str> {
    v.filter(|v| !v.is_empty())
}

fn text(name: &str, v: Option<&str>, max: usize) -> ApiResult<Option<String>> {
    match present(v) {
        None => Ok(None),
        Some(v) if v.chars().count() > max => {
            Err(invalid(name, &format!("must be at most {max} characters")))
        }
        Some(v) => Ok(Some(v.to_owned())),
    }
}

const TIME: &str = "must be a time in milliseconds since 1970 (UnixMillis), digits only";
const SEQ: &str = "must be a sequence number (`next_before` of the previous page), digits only";

/// A non-negative integer (a time in ms, a sequence number): digits only.
fn number(name: &str, v: Option<&str>, why: &str) -> ApiResult<Option<u64>> {
    present(v)
        .map(|v| {
            v.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| v.parse::<u64>().ok())
                .flatten()
                .ok_or_else(|| invalid(name, why))
        })
        .transpose()
}
