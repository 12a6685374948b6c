//! Rendering an export: RFC 4180 CSV with spreadsheet formulas defused, or one JSON
//! document; and the download's file name.

use serde::Serialize;
use tether_proto::UnixMillis;
use tether_store::AuditEvent;
use time::OffsetDateTime;

use super::AuditEventView;
use super::params::Filters;

/// The CSV header (the columns' order).
pub const CSV_HEADER: &str = "seq,at,actor,action,target,outcome,trace_id,detail";

/// The events as CSV: the header, then one record per event, lines ending in CRLF. `at` is
/// RFC 3339 UTC with milliseconds; `detail` is compact JSON; a missing target or trace id
/// is an empty cell.
pub(super) fn csv(events: &[AuditEvent]) -> String {
    let mut out = String::with_capacity(events.len().saturating_add(1).saturating_mul(160));
    out.push_str(CSV_HEADER);
    out.push_str("\r\n");
    for e in events {
        let detail = e.event.detail.to_string();
        let cells = [
            e.seq.to_string(),
            rfc3339_ms(e.event.at),
            e.event.actor.clone(),
            e.event.action.clone(),
            e.event.target.clone().unwrap_or_default(),
            e.event.outcome.clone(),
            e.event.trace_id.clone().unwrap_or_default(),
            detail,
        ];
        for (i, c) in cells.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_cell(&mut out, c);
        }
        out.push_str("\r\n");
    }
    out
}

/// Appends one CSV cell. A value a spreadsheet would read as a formula (it begins with
/// `=`, `+`, `-`, `@`, a tab or a carriage return) gets a leading `'`, which spreadsheets
/// show as text; then a value with a comma, quote or line break is quoted, its quotes
/// doubled (RFC 4180).
pub(super) fn push_cell(out: &mut String, value: &str) {
    let formula = matches!(
        value.chars().next(),
        Some('=' | '+' | '-' | '@' | '\t' | '\r')
    );
    let quoted = value.contains([',', '"', '\r', '\n']);
    if quoted {
        out.push('"');
    }
    if formula {
        out.push('\'');
    }
    if quoted {
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

/// The JSON export.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JsonExport {
    /// When the export was made (UnixMillis).
    pub exported_at: u64,
    /// The filters, as checked (absent ones `null`).
    pub filters: Filters,
    /// The events, oldest first.
    pub events: Vec<AuditEventView>,
}

/// A time as RFC 3339 UTC with milliseconds (`2025-11-26T00:00:00.000Z`); a time past
/// the year 9999 as its number of milliseconds.
pub(super) fn rfc3339_ms(t: UnixMillis) -> String {
    match utc(t) {
        Some((d, ms)) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{ms:03}Z",
            d.year(),
            u8::from(d.month()),
            d.day(),
            d.hour(),
            d.minute(),
            d.second()
        ),
        None => t.0.to_string(),
    }
}

/// The download's name: `tether-audit-<UTC time, compact ISO 8601>.<csv|json>`.
pub(super) fn file_name(t: UnixMillis, extension: &str) -> String {
    let stamp = match utc(t) {
        Some((d, _)) => format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            d.year(),
            u8::from(d.month()),
            d.day(),
            d.hour(),
            d.minute(),
            d.second()
        ),
        None => t.0.to_string(),
    };
    format!("tether-audit-{stamp}.{extension}")
}

/// The UTC date and time of a whole second, and the milliseconds past it.
fn utc(t: UnixMillis) -> Option<(OffsetDateTime, u64)> {
    let secs = i64::try_from(t.0.checked_div(1000)?).ok()?;
    let ms = t.0.checked_rem(1000)?;
    let d = OffsetDateTime::from_unix_timestamp(secs).ok()?;
    (d.year() <= 9999).then_some((d, ms))
}
