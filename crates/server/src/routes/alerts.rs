//! Alerts: list the ones the caller may see, acknowledge one. Raising them is the
//! pipeline's business ([`crate::alerts`]); new and acknowledged alerts also reach live
//! clients on `GET /api/live`.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;

use crate::alerts::{self, AlertView, MAX_LIST};
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::extract::ApiQuery;
use crate::state::AppState;

/// How many alerts a listing returns unless asked otherwise.
const DEFAULT_LIMIT: u32 = 100;

/// `GET /api/alerts` parameters.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Acknowledged alerts too (default: open ones only).
    #[serde(default)]
    pub all: bool,
    /// At most this many, newest first (1..=500, default 100).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// The alerts of the caller's devices (admins and auditors: every device's), newest
/// first; open ones only unless `all=true`.
#[utoipa::path(get, path = "/api/alerts", params(ListQuery), responses((status = 200, body = [AlertView]), (status = 401)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Vec<AlertView>>> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIST);
    Ok(Json(alerts::list(&state, &caller, q.all, limit).await?))
}

/// Acknowledge an alert (its device's owner or an admin; auditors may look, not touch).
/// Acknowledging it again changes nothing. Another user's alert is 404, as is an unknown
/// id.
#[utoipa::path(post, path = "/api/alerts/{id}/ack", params(("id" = String, Path)), responses((status = 200, body = AlertView), (status = 403), (status = 404)), security(("bearer" = [])))]
pub async fn ack(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<AlertView>> {
    Ok(Json(alerts::ack(&state, &id, &caller).await?))
}
