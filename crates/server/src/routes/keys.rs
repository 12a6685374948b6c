//! The caller's owner keys: `GET /api/me/keys` lists them and the statements that made
//! them, `POST /api/me/keys` submits a signed change (docs/protocol.md section 4.8;
//! [`crate::owner_keys`] does the work).

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use tether_proto::ProtoError;
use tether_proto::owner_sig::{OwnerKeysStatement, OwnerKeysUpdate, USER_SIG, UserSig};
use tether_proto::validate::Validate;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::ApiResult;
use crate::extract::ApiJson;
use crate::owner_keys::{self, KeysView};
use crate::state::AppState;

/// The body of `POST /api/me/keys`: an owner-keys statement and a signature over its
/// canonical form by one of the caller's registered owner keys (section 6.12).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeysRequest {
    /// `{"type":"tether.owner_keys.v1","user_id","device_id"?,"version","add","remove","not_after"}`.
    #[schema(value_type = Object)]
    pub statement: OwnerKeysStatement,
    /// The signature (`{"kind":"ed25519",…}` or `{"kind":"webauthn-es256",…}`).
    #[schema(value_type = Object)]
    pub user_sig: UserSig,
}

impl Validate for KeysRequest {
    fn validate(&self) -> Result<(), ProtoError> {
        self.statement.validate_at(false)?;
        self.user_sig.validate_at(USER_SIG)
    }
}

/// The caller's registered keys and every statement that changed them.
#[utoipa::path(get, path = "/api/me/keys", responses((status = 200, body = KeysView)), security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<KeysView>> {
    Ok(Json(owner_keys::view(&state, &caller.user).await?))
}

/// Change the caller's keys with a statement signed by one of their registered owner
/// keys; it is stored, audited (`owner_keys.update`) and sent to their PCs (now to those
/// online, at their next connect to the others). Each PC applies it only if it pins the
/// signing key. Not the caller's (`statement.user_id`) or leaving no owner key → `1005`;
/// signed by a key not registered, an approver key, or a bad signature → `2011`; a
/// version not above the last → `2006`; expired → `2004`.
#[utoipa::path(post, path = "/api/me/keys", request_body = KeysRequest, responses((status = 200, body = KeysView), (status = 403), (status = 409), (status = 410), (status = 422)), security(("bearer" = [])))]
pub async fn submit(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<KeysRequest>,
) -> ApiResult<Json<KeysView>> {
    let update = OwnerKeysUpdate {
        statement: req.statement,
        user_sig: req.user_sig,
    };
    Ok(Json(
        owner_keys::submit(&state, &caller.user, update).await?,
    ))
}
