//! The audit trail for staff: browse it with filters, page by page (admins and
//! auditors); export a filtered set as a CSV or JSON download (admins and auditors,
//! audited as `audit.exported`); and one device's events (its owner, admins and
//! auditors).

mod export;
mod params;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use tether_proto::ErrorCode;
use tether_store::{AuditEvent, AuditFilter, AuditOrder, Role};
use utoipa::ToSchema;

pub use export::{CSV_HEADER, JsonExport};
pub use params::{AuditQuery, DeviceAuditQuery, ExportQuery, Filters};

use self::params::{Format, Page};
use crate::audit::{self, Outcome};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiQuery;
use crate::routes::devices::visible_device;
use crate::state::AppState;

/// The most events one export holds; a larger set is refused (`413 1002`).
pub const MAX_EXPORT: u64 = 100_000;

/// How many events an export reads from the store at a time.
const EXPORT_PAGE: u32 = 1_000;

/// Who may read the whole trail.
const STAFF: &[Role] = &[Role::Admin, Role::Auditor];

/// An audit event as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditEventView {
    /// Sequence number: increasing, never reused.
    pub seq: u64,
    /// When (UnixMillis).
    pub at: u64,
    /// Who: a user id, a device id, `system` or `anonymous`.
    pub actor: String,
    /// What, e.g. `user.login`, `pair.confirm`, `command.queued`.
    pub action: String,
    /// On what (a user, device, command, alert or session id), if anything.
    pub target: Option<String>,
    /// `success`, `failure` or `denied`.
    pub outcome: String,
    /// Further facts (never secrets).
    #[schema(value_type = Object)]
    pub detail: Value,
    /// The trace id of the request that caused it, if any.
    pub trace_id: Option<String>,
}

impl From<AuditEvent> for AuditEventView {
    fn from(e: AuditEvent) -> Self {
        AuditEventView {
            seq: e.seq,
            at: e.event.at.0,
            actor: e.event.actor,
            action: e.event.action,
            target: e.event.target,
            outcome: e.event.outcome,
            detail: e.event.detail,
            trace_id: e.event.trace_id,
        }
    }
}

/// One page of events, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditPage {
    /// The events, newest first.
    pub events: Vec<AuditEventView>,
    /// `before` for the next (older) page; `null` when this is the last one.
    pub next_before: Option<u64>,
}

/// Reads one page: one event more than asked for says whether there is a next page.
async fn page(state: &AppState, mut filter: AuditFilter, p: Page) -> ApiResult<AuditPage> {
    filter.before_seq = p.before;
    let mut found = state
        .store
        .audit_query(&filter, AuditOrder::NewestFirst, p.limit.saturating_add(1))
        .await?;
    let limit = usize::try_from(p.limit).unwrap_or(usize::MAX);
    let more = found.len() > limit;
    found.truncate(limit);
    let next_before = if more {
        found.last().map(|e| e.seq)
    } else {
        None
    };
    Ok(AuditPage {
        events: found.into_iter().map(AuditEventView::from).collect(),
        next_before,
    })
}

/// The audit trail, newest first, filtered (admins and auditors).
#[utoipa::path(get, path = "/api/audit", params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 403, description = "3004: not an admin or auditor"), (status = 422, description = "1005: a bad parameter, named in the message")),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<ApiQuery<AuditQuery>, ApiError>,
) -> ApiResult<Json<AuditPage>> {
    caller.require(STAFF)?;
    let ApiQuery(q) = query?;
    let filters = q.filters()?;
    let p = Page::parse(q.before.as_deref(), q.limit.as_deref())?;
    Ok(Json(page(&state, filters.to_store(), p).await?))
}

/// One device's events, newest first: everything it did and everything done to it (its
/// owner, admins and auditors; anyone else gets 404, as for the device itself).
#[utoipa::path(get, path = "/api/devices/{id}/audit", params(("id" = String, Path), DeviceAuditQuery),
    responses((status = 200, body = AuditPage), (status = 404), (status = 422, description = "1005: a bad parameter, named in the message")),
    security(("bearer" = [])))]
pub async fn device(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    query: Result<ApiQuery<DeviceAuditQuery>, ApiError>,
) -> ApiResult<Json<AuditPage>> {
    let d = visible_device(&state, &caller, &id).await?;
    let ApiQuery(q) = query?;
    let p = Page::parse(q.before.as_deref(), q.limit.as_deref())?;
    let filter = AuditFilter {
        device_id: Some(d.id),
        ..AuditFilter::default()
    };
    Ok(Json(page(&state, filter, p).await?))
}

/// Every event that matches, oldest first, as a download (admins and auditors). At most
/// 100,000 events: a larger set is refused with 413 (narrow the filters). The export is
/// audited (`audit.exported`, with the filters and the number of events).
#[utoipa::path(get, path = "/api/audit/export", params(ExportQuery),
    responses((status = 200, description = "text/csv (columns seq,at,actor,action,target,outcome,trace_id,detail) or application/json (JsonExport), as an attachment"),
        (status = 403, description = "3004: not an admin or auditor"), (status = 413, description = "1002: more than 100,000 events match"),
        (status = 422, description = "1005: a bad parameter, named in the message")),
    security(("bearer" = [])))]
pub async fn export(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<ApiQuery<ExportQuery>, ApiError>,
) -> ApiResult<Response> {
    caller.require(STAFF)?;
    let ApiQuery(q) = query?;
    let format = Format::parse(q.format.as_deref())?;
    let filters = q.filters()?;
    let events = read_all(&state, filters.to_store()).await?;
    let rows = events.len();
    let now = state.now();
    let (content_type, body) = match format {
        Format::Csv => ("text/csv; charset=utf-8", export::csv(&events).into_bytes()),
        Format::Json => {
            let doc = JsonExport {
                exported_at: now.0,
                filters: filters.clone(),
                events: events.into_iter().map(AuditEventView::from).collect(),
            };
            let body = serde_json::to_vec(&doc).map_err(ApiError::internal)?;
            ("application/json", body)
        }
    };
    audit::record(
        &state,
        &caller.user.id,
        "audit.exported",
        None,
        Outcome::Success,
        json!({"format": format.as_str(), "filters": filters, "rows": rows}),
    )
    .await?;
    let disposition = format!(
        "attachment; filename=\"{}\"",
        export::file_name(now, format.as_str())
    );
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        body,
    )
        .into_response())
}

/// Every event matching `filter`, oldest first, or 413 if there are more than
/// [`MAX_EXPORT`]. Events appended while it reads are left out: it reads up to the newest
/// match it saw first.
async fn read_all(state: &AppState, mut filter: AuditFilter) -> ApiResult<Vec<AuditEvent>> {
    let total = state.store.audit_count(&filter).await?;
    let too_many = |n: u64| {
        ApiError::with_message(
            ErrorCode::FrameTooLarge,
            format!(
                "{n} events match, more than the {MAX_EXPORT} an export may hold; narrow the filters (e.g. since and until)"
            ),
        )
    };
    if total > MAX_EXPORT {
        return Err(too_many(total));
    }
    let Some(newest) = state
        .store
        .audit_query(&filter, AuditOrder::NewestFirst, 1)
        .await?
        .first()
        .map(|e| e.seq)
    else {
        return Ok(Vec::new());
    };
    filter.before_seq = Some(newest.saturating_add(1));
    let mut out: Vec<AuditEvent> = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    loop {
        let page = state
            .store
            .audit_query(&filter, AuditOrder::OldestFirst, EXPORT_PAGE)
            .await?;
        let full = page.len() == usize::try_from(EXPORT_PAGE).unwrap_or(usize::MAX);
        filter.after_seq = page.last().map(|e| e.seq).or(filter.after_seq);
        out.extend(page);
        let n = u64::try_from(out.len()).unwrap_or(u64::MAX);
        if n > MAX_EXPORT {
            return Err(too_many(n));
        }
        if !full {
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests;
