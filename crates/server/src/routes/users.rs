//! Users for staff: every account with its role, second factor and number of PCs (admins
//! and auditors), and changing a role (admins; never the last admin away from admin).

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tether_proto::ErrorCode;
use tether_store::{DeviceStatus, Role, RoleChange, User};
use utoipa::ToSchema;

use crate::audit::{self, Outcome};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::state::AppState;

/// A role, as the API spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RoleName {
    /// Manages the lab: every PC, roles, policy, approvals.
    Admin,
    /// Reads every PC and the audit trail; changes nothing.
    Auditor,
    /// Owns and controls their own PCs.
    Student,
}

impl From<RoleName> for Role {
    fn from(r: RoleName) -> Role {
        match r {
            RoleName::Admin => Role::Admin,
            RoleName::Auditor => Role::Auditor,
            RoleName::Student => Role::Student,
        }
    }
}

impl From<Role> for RoleName {
    fn from(r: Role) -> RoleName {
        match r {
            Role::Admin => RoleName::Admin,
            Role::Auditor => RoleName::Auditor,
            Role::Student => RoleName::Student,
        }
    }
}

/// A user as staff see them (never a password hash or a TOTP secret).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserView {
    /// Id (`usr_…`).
    pub id: String,
    /// Email (lowercase).
    pub email: String,
    /// Role.
    pub role: RoleName,
    /// Whether login asks for a TOTP code.
    pub totp_enabled: bool,
    /// Registered at (UnixMillis).
    pub created_at: u64,
    /// How many PCs they own that are not revoked.
    pub devices: u64,
}

impl UserView {
    fn new(u: User, devices: u64) -> Self {
        UserView {
            totp_enabled: u.totp.as_ref().is_some_and(|t| t.enabled),
            id: u.id,
            email: u.email,
            role: u.role.into(),
            created_at: u.created_at.0,
            devices,
        }
    }
}

/// What `GET /api/users` answers.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserList {
    /// Every user, oldest first.
    pub users: Vec<UserView>,
}

/// `PUT /api/users/{id}/role` body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleRequest {
    /// The new role.
    pub role: RoleName,
}

impl tether_proto::validate::Validate for RoleRequest {}

/// Every user, oldest first (admins and auditors).
#[utoipa::path(get, path = "/api/users", responses((status = 200, body = UserList), (status = 403, description = "3004: not an admin or auditor")), security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<UserList>> {
    caller.require(&[Role::Admin, Role::Auditor])?;
    let counts: HashMap<String, u64> = state
        .store
        .device_counts_by_owner()
        .await?
        .into_iter()
        .collect();
    let users = state.store.list_users().await?;
    Ok(Json(UserList {
        users: users
            .into_iter()
            .map(|u| {
                let n = counts.get(&u.id).copied().unwrap_or(0);
                UserView::new(u, n)
            })
            .collect(),
    }))
}

/// Change a user's role (admins). It applies at the user's next request. The last admin
/// cannot be made anything else (`409 9004`). Audited as `user.role_changed` (with the
/// old and new role; refusals with outcome `denied`).
#[utoipa::path(put, path = "/api/users/{id}/role", params(("id" = String, Path)), request_body = RoleRequest,
    responses((status = 200, body = UserView), (status = 403, description = "3004: not an admin"), (status = 404),
        (status = 409, description = "9004: the user is the last admin"), (status = 422, description = "1005: not a role")),
    security(("bearer" = [])))]
pub async fn set_role(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<ApiJson<RoleRequest>, ApiError>,
) -> ApiResult<Json<UserView>> {
    if let Err(e) = caller.require(&[Role::Admin]) {
        // The id is whatever the caller put in the path: recorded only if it could be one.
        let target = (id.len() <= MAX_USER_ID).then_some(id.as_str());
        audit::record(
            &state,
            &caller.user.id,
            ROLE_CHANGED,
            target,
            Outcome::Denied,
            json!({"reason": "not an admin"}),
        )
        .await?;
        return Err(e);
    }
    let ApiJson(req) = body?;
    let role = Role::from(req.role);
    match state.store.change_user_role(&id, role).await? {
        RoleChange::NotFound => Err(ApiError::with_message(ErrorCode::NotFound, "no such user")),
        RoleChange::LastAdmin => {
            audit::record(
                &state,
                &caller.user.id,
                ROLE_CHANGED,
                Some(&id),
                Outcome::Denied,
                json!({"old_role": Role::Admin.as_str(), "new_role": role.as_str(),
                       "reason": "last admin"}),
            )
            .await?;
            Err(ApiError::with_message(
                ErrorCode::Conflict,
                "this user is the last admin: make another user an admin first",
            ))
        }
        RoleChange::Changed { previous } => {
            if previous != role {
                audit::record(
                    &state,
                    &caller.user.id,
                    ROLE_CHANGED,
                    Some(&id),
                    Outcome::Success,
                    json!({"old_role": previous.as_str(), "new_role": role.as_str()}),
                )
                .await?;
            }
            let user = state
                .store
                .user_by_id(&id)
                .await?
                .ok_or_else(|| ApiError::with_message(ErrorCode::NotFound, "no such user"))?;
            let devices = state
                .store
                .devices_for_owner(&id)
                .await?
                .iter()
                .filter(|d| d.status != DeviceStatus::Revoked)
                .count();
            Ok(Json(UserView::new(
                user,
                u64::try_from(devices).unwrap_or(u64::MAX),
            )))
        }
    }
}

/// The audit action of a role change and of its refusals.
const ROLE_CHANGED: &str = "user.role_changed";

/// The longest user id the store holds.
const MAX_USER_ID: usize = 255;
