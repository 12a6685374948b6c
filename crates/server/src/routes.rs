//! The HTTP routes. `/api/...` for clients, `/agent/ws` for agents, a few well-known
//! documents. Every route answers bad input with our error shape.

pub mod accounts;
pub mod alerts;
pub mod artifacts;
pub mod audit;
pub mod commands;
pub mod devices;
pub mod keys;
pub mod live;
pub mod metrics;
pub mod pairing;
pub mod passkeys;
pub mod policy;
pub mod test_hooks;
pub mod users;
pub mod web;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Serialize;
use tether_proto::ErrorCode;
use utoipa::OpenApi;

use crate::config::Role;
use crate::error::ApiError;
use crate::extract::MAX_JSON_BODY;
use crate::state::AppState;

/// The OpenAPI document.
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "Tether API", description = "Accounts, discovery, pairing, devices, commands, policy and approvals, the live view (Server-Sent Events), alerts and metrics. Errors are `{code, error, message, trace_id}` with the stable codes of docs/protocol.md."),
    paths(
        health, jwks, ca_pem,
        accounts::register, accounts::login, accounts::refresh, accounts::logout,
        accounts::revoke_sessions, accounts::me, accounts::totp_enroll, accounts::totp_confirm,
        pairing::discovery_confirm, pairing::pair_request, pairing::pair_confirm, pairing::pair_activate,
        devices::list, devices::get_one, devices::approve, devices::revoke, devices::get_settings, devices::put_settings,
        devices::gateway_keys,
        passkeys::register_start, passkeys::register_finish, passkeys::login_start, passkeys::login_finish,
        live::stream, alerts::list, alerts::ack, metrics::metrics, metrics::telemetry,
        commands::submit, commands::simulate, test_hooks::agent_frame, commands::list, commands::get_one, commands::ack_viewed,
        artifacts::request, artifacts::get_artifact, crate::prom::scrape,
        policy::get_policy, policy::put_policy, policy::dry_run, policy::step_up,
        policy::approvals, policy::approve, keys::list, keys::submit,
        audit::list, audit::export, audit::device, users::list, users::set_role,
    ),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

#[derive(Debug)]
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Builds the router for the roles this process runs (see [`crate::config::Role`]).
pub fn router(state: AppState) -> Router {
    let mut app = common_routes().merge(agent_http_routes());
    if state.config.has_role(Role::Api) {
        app = app.merge(api_routes(&state));
    }
    if state.config.has_role(Role::Gateway) {
        app = app.route("/agent/ws", get(crate::gateway::upgrade));
    }
    app.fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY))
        .layer(axum::middleware::from_fn(crate::trace::layer))
        .with_state(state)
}

/// What every process serves: health, metrics, the CA and the API description.
fn common_routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(health))
        .route("/metrics", get(crate::prom::scrape))
        .route("/ca.pem", get(ca_pem))
        .route("/api/openapi.json", get(openapi))
}

/// The HTTP routes agents call (discovery, pairing, artifact uploads), served by every
/// process so an agent pointed at a gateway can pair and upload through it.
fn agent_http_routes() -> Router<AppState> {
    Router::new()
        .route("/api/discovery/confirm", post(pairing::discovery_confirm))
        .route("/api/pair/request", post(pairing::pair_request))
        .route("/api/pair/activate", post(pairing::pair_activate))
        .route("/api/artifact/request", post(artifacts::request))
        .route(
            "/api/objects/{*key}",
            get(artifacts::get_object)
                .put(artifacts::put_object)
                .layer(DefaultBodyLimit::max(
                    usize::try_from(artifacts::MAX_ARTIFACT_BYTES).unwrap_or(usize::MAX),
                )),
        )
}

/// The users' side: the web app, accounts, devices, commands, the live view, alerts.
fn api_routes(state: &AppState) -> Router<AppState> {
    let mut api = Router::new();
    // The fault hooks exist only in test mode: otherwise the path is unknown (404) to
    // everyone, before any authentication or parsing.
    if state.config.test_mode {
        api = api.route("/api/test/command", post(commands::simulate));
        api = api.route("/api/test/agent_frame", post(test_hooks::agent_frame));
    }
    api.route("/", get(web::index))
        .route("/index.html", get(web::index))
        .route("/assets/{*path}", get(web::asset))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/pair", get(web::index))
        .route("/{file}", get(web::root_file))
        .route("/api/register", post(accounts::register))
        .route("/api/login", post(accounts::login))
        .route("/api/token/refresh", post(accounts::refresh))
        .route("/api/logout", post(accounts::logout))
        .route("/api/sessions/revoke", post(accounts::revoke_sessions))
        .route("/api/me", get(accounts::me))
        .route("/api/me/keys", get(keys::list).post(keys::submit))
        .route("/api/totp/enroll", post(accounts::totp_enroll))
        .route("/api/totp/confirm", post(accounts::totp_confirm))
        .route(
            "/api/passkeys/register/start",
            post(passkeys::register_start),
        )
        .route(
            "/api/passkeys/register/finish",
            post(passkeys::register_finish),
        )
        .route("/api/passkeys/login/start", post(passkeys::login_start))
        .route("/api/passkeys/login/finish", post(passkeys::login_finish))
        .route("/api/pair/confirm", post(pairing::pair_confirm))
        .route("/api/devices", get(devices::list))
        .route("/api/devices/{id}", get(devices::get_one))
        .route("/api/devices/{id}/approve", post(devices::approve))
        .route("/api/devices/{id}/revoke", post(devices::revoke))
        .route(
            "/api/admin/settings",
            get(devices::get_settings).put(devices::put_settings),
        )
        .route("/api/gateway/keys", get(devices::gateway_keys))
        .route("/api/live", get(live::stream))
        .route("/api/alerts", get(alerts::list))
        .route("/api/alerts/{id}/ack", post(alerts::ack))
        .route("/api/devices/{id}/metrics", get(metrics::metrics))
        .route("/api/devices/{id}/telemetry", get(metrics::telemetry))
        .route("/api/command", post(commands::submit))
        .route("/api/commands", get(commands::list))
        .route("/api/command/{id}", get(commands::get_one))
        .route("/api/command/{id}/ack_viewed", post(commands::ack_viewed))
        .route("/api/artifacts/{id}", get(artifacts::get_artifact))
        .route(
            "/api/policy",
            get(policy::get_policy)
                .put(policy::put_policy)
                .layer(DefaultBodyLimit::max(
                    crate::policy::MAX_BUNDLE_BYTES.saturating_mul(2),
                )),
        )
        .route("/api/policy/dry-run", post(policy::dry_run))
        .route("/api/step-up", post(policy::step_up))
        .route("/api/approvals", get(policy::approvals))
        .route("/api/command/{id}/approve", post(policy::approve))
        .route("/api/audit", get(audit::list))
        .route("/api/audit/export", get(audit::export))
        .route("/api/devices/{id}/audit", get(audit::device))
        .route("/api/users", get(users::list))
        .route("/api/users/{id}/role", put(users::set_role))
}

async fn not_found() -> ApiError {
    ApiError::with_message(ErrorCode::NotFound, "no such route")
}

async fn method_not_allowed() -> impl IntoResponse {
    let mut r = ApiError::with_message(
        ErrorCode::NotFound,
        "this route does not accept that method",
    )
    .into_response();
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    r
}

/// Health of this process and its backends.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok` or `degraded`.
    pub status: &'static str,
    /// Store backend and whether it answers.
    pub store: String,
    /// Bus backend and whether it answers.
    pub bus: String,
    /// What this process serves (`api+gateway`, `api` or `gateway`).
    pub roles: String,
    /// Server version.
    pub version: &'static str,
}

/// Liveness and backend health.
#[utoipa::path(get, path = "/healthz", responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let store_ok = state.store.ping().await.is_ok();
    let bus_ok = state.bus.ping().await.is_ok();
    let word = |ok: bool| if ok { "ok" } else { "down" };
    let h = Health {
        status: if store_ok && bus_ok { "ok" } else { "degraded" },
        store: format!("{} {}", state.store.backend(), word(store_ok)),
        bus: format!("{} {}", state.bus.backend(), word(bus_ok)),
        roles: state.config.roles_label(),
        version: env!("CARGO_PKG_VERSION"),
    };
    let code = if store_ok && bus_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(h))
}

/// The public keys that verify access tokens (JWKS, RFC 7517; OKP/Ed25519).
#[utoipa::path(get, path = "/.well-known/jwks.json", responses((status = 200, description = "JWKS document")))]
pub async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/jwk-set+json")],
        state.ring.jwks(state.now()).to_json(),
    )
}

/// The Tether root CA certificate (PEM). Clients pin its SHA-256 fingerprint on first use.
#[utoipa::path(get, path = "/ca.pem", responses((status = 200, description = "PEM certificate")))]
pub async fn ca_pem(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        state.ca.certificates().root_pem(),
    )
}

async fn openapi() -> impl IntoResponse {
    match ApiDoc::openapi().to_json() {
        Ok(s) => ([(header::CONTENT_TYPE, "application/json")], s).into_response(),
        Err(e) => ApiError::internal(e).into_response(),
    }
}
