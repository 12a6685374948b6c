//! Commands: submit one, list a device's, follow one (with every transition), acknowledge
//! viewing its result; and, in test mode only, the fault hooks.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use tether_proto::ErrorCode;
use tether_proto::messages::command::Simulation;

use crate::auth::Caller;
use crate::commands::CommandView;
use crate::commands::ingest::{self, CommandRequest};
use crate::commands::view::TransitionView;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiQuery};
use crate::routes::devices::visible_device;
use crate::state::AppState;

/// How many commands a listing returns unless asked otherwise.
const DEFAULT_LIMIT: u32 = 50;
/// The most a listing returns.
const MAX_LIMIT: u32 = 500;

/// Submit a command. `202` with the new command (`state: queued`), or `200` with the
/// existing one when the same request comes again under the same `message_id`.
#[utoipa::path(post, path = "/api/command", request_body = CommandRequest, responses((status = 202, body = CommandView), (status = 200, body = CommandView), (status = 404), (status = 409), (status = 422), (status = 503)), security(("bearer" = [])))]
pub async fn submit(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CommandRequest>,
) -> ApiResult<(StatusCode, Json<CommandView>)> {
    accept(&state, &caller, req, None).await
}

async fn accept(
    state: &AppState,
    caller: &Caller,
    req: CommandRequest,
    simulate: Option<Simulation>,
) -> ApiResult<(StatusCode, Json<CommandView>)> {
    let (mut view, new) = ingest::submit(state, caller, req, simulate).await?;
    view.status = Some("accepted");
    let status = if new {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)))
}

/// `POST /api/test/command` parameters.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SimulateQuery {
    /// `kernel_failure`, `slow` or `success`.
    #[param(value_type = String)]
    pub simulate: Simulation,
}

/// Test mode only (`test_mode = true`; otherwise 404): submit a command whose execution
/// the helper's recording executor simulates — `kernel_failure` (one retry, then
/// `failed`), `slow` (observable `executing`), `success`.
#[utoipa::path(post, path = "/api/test/command", params(SimulateQuery), request_body = CommandRequest, responses((status = 202, body = CommandView), (status = 404)), security(("bearer" = [])))]
pub async fn simulate(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<SimulateQuery>,
    ApiJson(req): ApiJson<CommandRequest>,
) -> ApiResult<(StatusCode, Json<CommandView>)> {
    if !state.config.test_mode {
        return Err(ApiError::with_message(ErrorCode::NotFound, "no such route"));
    }
    accept(&state, &caller, req, Some(q.simulate)).await
}

/// `GET /api/commands` parameters.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// The device.
    pub device: String,
    /// At most this many, newest first (1..=500, default 50).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// A device's commands, newest first (whoever may see the device).
#[utoipa::path(get, path = "/api/commands", params(ListQuery), responses((status = 200, body = [CommandView]), (status = 404)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Vec<CommandView>>> {
    let device = visible_device(&state, &caller, &q.device).await?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let commands = state.store.device_commands(&device.id, limit).await?;
    Ok(Json(commands.iter().map(CommandView::from).collect()))
}

/// A command the caller may see (its device's visibility), or 404.
async fn visible_command(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> ApiResult<tether_store::Command> {
    let c = state
        .store
        .command(id)
        .await?
        .ok_or_else(|| ApiError::with_message(ErrorCode::NotFound, "no such command"))?;
    visible_device(state, caller, &c.command.device_id)
        .await
        .map_err(|_| ApiError::with_message(ErrorCode::NotFound, "no such command"))?;
    Ok(c)
}

/// One command with every transition, oldest first.
#[utoipa::path(get, path = "/api/command/{id}", params(("id" = String, Path)), responses((status = 200, body = CommandView), (status = 404)), security(("bearer" = [])))]
pub async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<CommandView>> {
    let c = visible_command(&state, &caller, &id).await?;
    let transitions = state.store.command_transitions(&id).await?;
    let mut view = CommandView::from(&c);
    view.transitions = Some(transitions.iter().map(TransitionView::from).collect());
    Ok(Json(view))
}

/// The originator acknowledges having seen a finished command's result (`ack_viewed`).
/// Idempotent; `409` while the command is not finished.
#[utoipa::path(post, path = "/api/command/{id}/ack_viewed", params(("id" = String, Path)), responses((status = 200, body = CommandView), (status = 403), (status = 404), (status = 409)), security(("bearer" = [])))]
pub async fn ack_viewed(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<CommandView>> {
    let c = visible_command(&state, &caller, &id).await?;
    if c.command.origin_user_id != caller.user.id {
        return Err(ApiError::with_message(
            ErrorCode::Forbidden,
            "only the user who sent the command acknowledges viewing it",
        ));
    }
    if !tether_store::is_terminal(c.state) {
        return Err(ApiError::with_message(
            ErrorCode::UnexpectedMessage,
            "the command is not finished",
        ));
    }
    state.store.mark_command_viewed(&id, state.now()).await?;
    let c = visible_command(&state, &caller, &id).await?;
    Ok(Json(CommandView::from(&c)))
}
