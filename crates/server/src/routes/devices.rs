//! Devices: list and show (owners see their own; admins and auditors see all), admin
//! approval of newly paired devices, and admin settings.

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tether_proto::ErrorCode;
use tether_store::{Device, DeviceStatus, Role};
use utoipa::ToSchema;

use crate::audit::{self, Outcome};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::routes::pairing::{GatewayKey, REQUIRE_APPROVAL_SETTING};
use crate::state::AppState;

/// A device as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeviceView {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// `windows` or `linux`.
    pub os: String,
    /// `pending_pairing`, `awaiting_approval`, `active` or `revoked`.
    pub status: String,
    /// Owner's user id.
    pub owner_id: Option<String>,
    /// Whether an agent session is live (presence within its TTL).
    pub online: bool,
    /// Certificate serial (hex).
    pub cert_serial: Option<String>,
    /// Paired at (ms).
    pub paired_at: Option<u64>,
    /// SHA-256 of the hardware id (never the id itself).
    pub hwid_hash: String,
    /// When the server last heard from it (ms): its last telemetry, or the offline check
    /// finding its session live (so up to `alerts.offline_after_s` behind for a PC that
    /// sends only heartbeats); `null` if never.
    pub last_seen: Option<u64>,
    /// Seconds since its agent started, from its last heartbeat carried forward; only
    /// while it is online.
    pub uptime_s: Option<u64>,
}

/// The bus key holding a device's presence (its session id), with a TTL.
pub fn presence_key(device_id: &str) -> String {
    format!("presence:{device_id}")
}

/// The bus key holding a device's last heartbeat's uptime ([`Uptime`]), with the
/// presence TTL.
pub fn uptime_key(device_id: &str) -> String {
    format!("uptime:{device_id}")
}

/// What the gateway keeps of a device's last heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Uptime {
    /// The agent's uptime in that heartbeat.
    pub uptime_s: u64,
    /// When the gateway received it (ms).
    pub at: u64,
}

impl Uptime {
    /// Its bytes on the bus (JSON).
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads it back; anything unreadable counts as absent.
    pub fn decode(bytes: &[u8]) -> Option<Uptime> {
        serde_json::from_slice(bytes).ok()
    }

    /// The uptime at `now`, carried forward from the heartbeat.
    pub fn at_time(&self, now: u64) -> u64 {
        self.uptime_s
            .saturating_add(now.saturating_sub(self.at) / 1000)
    }
}

async fn view(state: &AppState, d: Device) -> ApiResult<DeviceView> {
    let online = state.bus.get(&presence_key(&d.id)).await?.is_some();
    let beat = if online {
        state
            .bus
            .get(&uptime_key(&d.id))
            .await?
            .and_then(|b| Uptime::decode(&b))
    } else {
        None
    };
    let stored = state.store.device_last_seen(&d.id).await?.map(|t| t.0);
    let last_seen = match (stored, beat) {
        (Some(s), Some(b)) => Some(s.max(b.at)),
        (s, b) => s.or(b.map(|b| b.at)),
    };
    Ok(DeviceView {
        id: d.id,
        name: d.name,
        os: d.os,
        status: d.status.as_str().to_owned(),
        owner_id: d.owner_id,
        online,
        cert_serial: d.cert_serial,
        paired_at: d.paired_at.map(|t| t.0),
        hwid_hash: d.hwid_hash,
        last_seen,
        uptime_s: beat.map(|b| b.at_time(state.now().0)),
    })
}

/// The caller's devices (admins and auditors: every device).
#[utoipa::path(get, path = "/api/devices", responses((status = 200, body = [DeviceView])), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<DeviceView>>> {
    let devices = if caller.sees_all_devices() {
        state.store.all_devices().await?
    } else {
        state.store.devices_for_owner(&caller.user.id).await?
    };
    let mut out = Vec::with_capacity(devices.len());
    for d in devices {
        out.push(view(&state, d).await?);
    }
    Ok(Json(out))
}

/// Loads a device the caller may see; anything else is 404 (no existence leak).
pub async fn visible_device(state: &AppState, caller: &Caller, id: &str) -> ApiResult<Device> {
    let d = state.store.device(id).await?;
    match d {
        Some(d)
            if caller.sees_all_devices()
                || d.owner_id.as_deref() == Some(caller.user.id.as_str()) =>
        {
            Ok(d)
        }
        _ => Err(ApiError::with_message(
            ErrorCode::NotFound,
            "no such device",
        )),
    }
}

/// One device.
#[utoipa::path(get, path = "/api/devices/{id}", params(("id" = String, Path)), responses((status = 200, body = DeviceView), (status = 404)), security(("bearer" = [])))]
pub async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<DeviceView>> {
    let d = visible_device(&state, &caller, &id).await?;
    Ok(Json(view(&state, d).await?))
}

/// Approve a device that waits for approval (admins).
#[utoipa::path(post, path = "/api/devices/{id}/approve", params(("id" = String, Path)), responses((status = 200, body = DeviceView), (status = 403), (status = 409)), security(("bearer" = [])))]
pub async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<DeviceView>> {
    caller.require(&[Role::Admin])?;
    let mut d = state
        .store
        .device(&id)
        .await?
        .ok_or_else(|| ApiError::with_message(ErrorCode::NotFound, "no such device"))?;
    if d.status != DeviceStatus::AwaitingApproval {
        return Err(ApiError::with_message(
            ErrorCode::Conflict,
            format!("the device is {}, not awaiting approval", d.status.as_str()),
        ));
    }
    d.status = DeviceStatus::Active;
    state.store.update_device(&d).await?;
    audit::record(
        &state,
        &caller.user.id,
        "device.approve",
        Some(&d.id),
        Outcome::Success,
        json!({}),
    )
    .await?;
    Ok(Json(view(&state, d).await?))
}

/// Admin settings.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Whether a newly paired device waits for an admin's approval.
    pub require_device_approval: bool,
}

impl tether_proto::validate::Validate for Settings {}

/// Read admin settings (admins).
#[utoipa::path(get, path = "/api/admin/settings", responses((status = 200, body = Settings)), security(("bearer" = [])))]
pub async fn get_settings(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Settings>> {
    caller.require(&[Role::Admin])?;
    let v = state.store.setting(REQUIRE_APPROVAL_SETTING).await?;
    Ok(Json(Settings {
        require_device_approval: v.map_or(state.config.pairing.require_approval, |v| v == "true"),
    }))
}

/// Change admin settings (admins).
#[utoipa::path(put, path = "/api/admin/settings", request_body = Settings, responses((status = 200, body = Settings)), security(("bearer" = [])))]
pub async fn put_settings(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(s): ApiJson<Settings>,
) -> ApiResult<Json<Settings>> {
    caller.require(&[Role::Admin])?;
    let v = if s.require_device_approval {
        "true"
    } else {
        "false"
    };
    state.store.set_setting(REQUIRE_APPROVAL_SETTING, v).await?;
    audit::record(
        &state,
        &caller.user.id,
        "settings.update",
        Some(REQUIRE_APPROVAL_SETTING),
        Outcome::Success,
        json!({"value": v}),
    )
    .await?;
    Ok(Json(s))
}

/// The gateway's envelope verification keys.
#[utoipa::path(get, path = "/api/gateway/keys", responses((status = 200, body = [GatewayKey])))]
pub async fn gateway_keys(State(state): State<AppState>) -> Json<Vec<GatewayKey>> {
    Json(crate::routes::pairing::gateway_keys(&state))
}

/// Revoke a device (its owner, e.g. for a lost laptop, or an admin): its certificate goes
/// on the CRL, which the TLS verifier reloads at once, so its next handshake fails.
#[utoipa::path(post, path = "/api/devices/{id}/revoke", params(("id" = String, Path)), responses((status = 200, body = DeviceView), (status = 404)), security(("bearer" = [])))]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<DeviceView>> {
    let mut d = if caller.user.role == Role::Admin {
        state
            .store
            .device(&id)
            .await?
            .ok_or_else(|| ApiError::with_message(ErrorCode::NotFound, "no such device"))?
    } else {
        let d = visible_device(&state, &caller, &id).await?;
        if d.owner_id.as_deref() != Some(caller.user.id.as_str()) {
            return Err(ApiError::with_message(
                ErrorCode::Forbidden,
                "only the owner or an admin may revoke a device",
            ));
        }
        d
    };
    if let Some(serial) = &d.cert_serial {
        let serial: tether_trust::CertSerial = serial.parse().map_err(ApiError::internal)?;
        state.ca.revoke(
            &serial,
            tether_trust::RevocationReason::CessationOfOperation,
        )?;
        crate::app::reload_crl(&state).map_err(ApiError::internal)?;
    }
    d.status = DeviceStatus::Revoked;
    state.store.update_device(&d).await?;
    audit::record(
        &state,
        &caller.user.id,
        "device.revoke",
        Some(&d.id),
        Outcome::Success,
        json!({"serial": d.cert_serial}),
    )
    .await?;
    Ok(Json(view(&state, d).await?))
}
