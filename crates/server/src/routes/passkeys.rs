//! Passkeys (WebAuthn): a signed-in user registers a passkey; anyone logs in with one.
//!
//! Both are two-step ceremonies. The start call keeps the ceremony state (the challenge and
//! what it was issued for) in the store under a random id for 5 minutes, never on the
//! client; the finish call takes it (read and delete, atomically), so each challenge
//! answers at most once. User verification (biometric or PIN on the authenticator) is
//! required for both registration and login, and each login moves the stored signature
//! counter on.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tether_proto::validate::{Validate, b64url_encode};
use tether_proto::{ErrorCode, ProtoError, UnixMillis};
use tether_store::{Ceremony, PasskeyRecord, StoreError};
use utoipa::ToSchema;
use webauthn_rs::prelude::{
    CreationChallengeResponse, CredentialID, Passkey, PasskeyAuthentication, PasskeyRegistration,
    PublicKeyCredential, RegisterPublicKeyCredential, RequestChallengeResponse, Uuid,
};

use crate::audit::{self, Outcome};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::routes::accounts::{TokenResponse, issue_session};
use crate::serve::Peer;
use crate::state::AppState;

/// How long a started ceremony may be finished.
const CEREMONY_TTL_MS: u64 = 5 * 60 * 1000;
/// Ceremony kind of a registration in progress.
const KIND_REGISTER: &str = "passkey_register";
/// Ceremony kind of a login in progress.
const KIND_LOGIN: &str = "passkey_login";
/// Passkeys one account may hold: bounds the `allowCredentials` list sent at login.
const MAX_PASSKEYS_PER_USER: usize = 16;
/// The longest ceremony id accepted (ours are `cer_` + 32 hex digits).
const MAX_CEREMONY_ID: usize = 64;

/// A registration ceremony, started.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RegisterStartResponse {
    /// Send back with the authenticator's response to `/api/passkeys/register/finish`.
    pub ceremony_id: String,
    /// WebAuthn `CredentialCreationOptions` for `navigator.credentials.create()`
    /// (binary fields as unpadded base64url).
    #[schema(value_type = Object)]
    pub options: CreationChallengeResponse,
}

/// `POST /api/passkeys/register/finish`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterFinishRequest {
    /// From `/api/passkeys/register/start`.
    pub ceremony_id: String,
    /// The `PublicKeyCredential` from `navigator.credentials.create()` as JSON
    /// (`id`, `rawId`, `response.{clientDataJSON, attestationObject}`, `type`), binary
    /// fields as unpadded base64url.
    #[schema(value_type = Object)]
    pub credential: RegisterPublicKeyCredential,
}

impl Validate for RegisterFinishRequest {
    fn validate(&self) -> Result<(), ProtoError> {
        check_ceremony_id(&self.ceremony_id)
    }
}

/// A registered passkey.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RegisterFinishResponse {
    /// The credential id, unpadded base64url.
    pub credential_id: String,
}

/// `POST /api/passkeys/login/start`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginStartRequest {
    /// The account's email.
    pub email: String,
}

impl Validate for LoginStartRequest {
    fn validate(&self) -> Result<(), ProtoError> {
        if self.email.is_empty() || self.email.len() > 254 {
            return Err(ProtoError::InvalidField {
                field: "email",
                reason: "must be 1-254 bytes".into(),
            });
        }
        Ok(())
    }
}

/// A login ceremony, started.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LoginStartResponse {
    /// Send back with the authenticator's assertion to `/api/passkeys/login/finish`.
    pub ceremony_id: String,
    /// WebAuthn `CredentialRequestOptions` for `navigator.credentials.get()` (binary
    /// fields as unpadded base64url).
    #[schema(value_type = Object)]
    pub options: RequestChallengeResponse,
}

/// `POST /api/passkeys/login/finish`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginFinishRequest {
    /// From `/api/passkeys/login/start`.
    pub ceremony_id: String,
    /// The `PublicKeyCredential` from `navigator.credentials.get()` as JSON (`id`,
    /// `rawId`, `response.{clientDataJSON, authenticatorData, signature, userHandle}`,
    /// `type`), binary fields as unpadded base64url.
    #[schema(value_type = Object)]
    pub credential: PublicKeyCredential,
}

impl Validate for LoginFinishRequest {
    fn validate(&self) -> Result<(), ProtoError> {
        check_ceremony_id(&self.ceremony_id)
    }
}

fn check_ceremony_id(id: &str) -> Result<(), ProtoError> {
    if id.is_empty() || id.len() > MAX_CEREMONY_ID {
        return Err(ProtoError::InvalidField {
            field: "ceremony_id",
            reason: format!("must be 1-{MAX_CEREMONY_ID} bytes"),
        });
    }
    Ok(())
}

/// Start registering a passkey on the caller's account.
#[utoipa::path(post, path = "/api/passkeys/register/start",
    responses((status = 200, body = RegisterStartResponse), (status = 401, description = "3001 no Bearer token"), (status = 409, description = "9004 too many passkeys")),
    security(("bearer" = [])))]
pub async fn register_start(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<RegisterStartResponse>> {
    let user = &caller.user;
    let existing = decode_passkeys(&state.store.passkeys_for_user(&user.id).await?)?;
    if existing.len() >= MAX_PASSKEYS_PER_USER {
        return Err(ApiError::with_message(
            ErrorCode::Conflict,
            format!("an account holds at most {MAX_PASSKEYS_PER_USER} passkeys"),
        ));
    }
    // The authenticator refuses to make a second credential for an account it already
    // holds one for.
    let exclude: Vec<CredentialID> = existing.iter().map(|(_, p)| p.cred_id().clone()).collect();
    let (options, registration) = state
        .webauthn
        .start_passkey_registration(
            user_handle(&user.id),
            &user.email,
            &user.email,
            (!exclude.is_empty()).then_some(exclude),
        )
        .map_err(ApiError::internal)?;
    let ceremony_id = put_ceremony(&state, KIND_REGISTER, &user.id, &registration).await?;
    Ok(Json(RegisterStartResponse {
        ceremony_id,
        options,
    }))
}

/// Finish registering a passkey: verify the authenticator's response to the challenge and
/// store the new credential.
#[utoipa::path(post, path = "/api/passkeys/register/finish", request_body = RegisterFinishRequest,
    responses((status = 201, body = RegisterFinishResponse), (status = 401, description = "3001 no Bearer token, 3006 the response did not verify"),
        (status = 404, description = "9003 unknown, used, expired or another user's ceremony"), (status = 409, description = "9004 passkey already registered")),
    security(("bearer" = [])))]
pub async fn register_finish(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<RegisterFinishRequest>,
) -> ApiResult<(StatusCode, Json<RegisterFinishResponse>)> {
    let user = &caller.user;
    let ceremony = take_ceremony(&state, &req.ceremony_id, KIND_REGISTER).await?;
    if ceremony.user_id.as_deref() != Some(user.id.as_str()) {
        // Taken all the same: a ceremony id that leaked to another account is spent.
        return Err(no_ceremony());
    }
    let registration: PasskeyRegistration =
        serde_json::from_str(&ceremony.data).map_err(ApiError::internal)?;
    let passkey = match state
        .webauthn
        .finish_passkey_registration(&req.credential, &registration)
    {
        Ok(p) => p,
        Err(e) => {
            tracing::info!(error = %e, "passkey registration did not verify");
            audit::record(
                &state,
                &user.id,
                "user.passkey_add_failed",
                Some(&user.id),
                Outcome::Failure,
                json!({"reason": "registration response did not verify"}),
            )
            .await?;
            return Err(ApiError::with_message(
                ErrorCode::SecondFactorInvalid,
                "the passkey's registration response did not verify; start again",
            ));
        }
    };
    let credential_id = b64url_encode(passkey.cred_id());
    let record = PasskeyRecord {
        credential_id: credential_id.clone(),
        user_id: user.id.clone(),
        data: serde_json::to_string(&passkey).map_err(ApiError::internal)?,
        created_at: state.now(),
    };
    state
        .store
        .insert_passkey(&record)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => {
                ApiError::with_message(ErrorCode::Conflict, "this passkey is already registered")
            }
            other => other.into(),
        })?;
    audit::record(
        &state,
        &user.id,
        "user.passkey_added",
        Some(&user.id),
        Outcome::Success,
        json!({"credential_id": credential_id}),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(RegisterFinishResponse { credential_id }),
    ))
}

/// Start logging in with a passkey. An unknown email and an account without passkeys get
/// the same 3008.
#[utoipa::path(post, path = "/api/passkeys/login/start", request_body = LoginStartRequest,
    responses((status = 200, body = LoginStartResponse), (status = 401, description = "3008 no passkey login for this email"), (status = 429, description = "rate limited")))]
pub async fn login_start(
    State(state): State<AppState>,
    Extension(peer): Extension<Peer>,
    ApiJson(req): ApiJson<LoginStartRequest>,
) -> ApiResult<Json<LoginStartResponse>> {
    crate::ratelimit::check(
        &state,
        "passkey_login",
        peer.addr.ip(),
        state.config.auth.login_per_minute,
    )
    .await?;
    let email = req.email.trim().to_lowercase();
    let Some(user) = state.store.user_by_email(&email).await? else {
        login_failed(&state, None, &peer, "unknown account").await?;
        return Err(no_passkey_login());
    };
    let passkeys: Vec<Passkey> = decode_passkeys(&state.store.passkeys_for_user(&user.id).await?)?
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    if passkeys.is_empty() {
        login_failed(&state, Some(&user.id), &peer, "no passkeys").await?;
        return Err(no_passkey_login());
    }
    let (options, authentication) = state
        .webauthn
        .start_passkey_authentication(&passkeys)
        .map_err(ApiError::internal)?;
    let ceremony_id = put_ceremony(&state, KIND_LOGIN, &user.id, &authentication).await?;
    Ok(Json(LoginStartResponse {
        ceremony_id,
        options,
    }))
}

/// Finish logging in with a passkey: verify the assertion and open a session (`amr`
/// `["hwk"]`), with the same tokens as `/api/login`.
#[utoipa::path(post, path = "/api/passkeys/login/finish", request_body = LoginFinishRequest,
    responses((status = 200, body = TokenResponse), (status = 401, description = "3006 the assertion did not verify"),
        (status = 404, description = "9003 unknown, used or expired ceremony")))]
pub async fn login_finish(
    State(state): State<AppState>,
    Extension(peer): Extension<Peer>,
    ApiJson(req): ApiJson<LoginFinishRequest>,
) -> ApiResult<Json<TokenResponse>> {
    let ceremony = take_ceremony(&state, &req.ceremony_id, KIND_LOGIN).await?;
    let user_id = ceremony
        .user_id
        .ok_or_else(|| ApiError::internal("passkey login ceremony without a user"))?;
    let authentication: PasskeyAuthentication =
        serde_json::from_str(&ceremony.data).map_err(ApiError::internal)?;
    let result = match state
        .webauthn
        .finish_passkey_authentication(&req.credential, &authentication)
    {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(error = %e, "passkey assertion did not verify");
            login_failed(&state, Some(&user_id), &peer, "assertion did not verify").await?;
            return Err(assertion_refused());
        }
    };
    let Some(user) = state.store.user_by_id(&user_id).await? else {
        return Err(no_passkey_login());
    };
    let credential_id = b64url_encode(result.cred_id());
    let stored = decode_passkeys(&state.store.passkeys_for_user(&user.id).await?)?
        .into_iter()
        .find(|(r, _)| r.credential_id == credential_id);
    let Some((_, mut passkey)) = stored else {
        login_failed(
            &state,
            Some(&user.id),
            &peer,
            "passkey no longer registered",
        )
        .await?;
        return Err(assertion_refused());
    };
    // webauthn-rs checked the counter against the copy in the ceremony state, taken at
    // login/start; check it against the stored one too, which another login may have
    // moved on since. A counter that does not advance points to a cloned authenticator.
    // (Authenticators without a counter send 0 every time.)
    let last = stored_counter(&passkey);
    let now_counter = u64::from(result.counter());
    if (now_counter > 0 || last > 0) && now_counter <= last {
        login_failed(
            &state,
            Some(&user.id),
            &peer,
            "signature counter did not advance",
        )
        .await?;
        return Err(assertion_refused());
    }
    if passkey.update_credential(&result) == Some(true) {
        let data = serde_json::to_string(&passkey).map_err(ApiError::internal)?;
        state.store.update_passkey(&credential_id, &data).await?;
    }
    let resp = issue_session(&state, &user, None, vec!["hwk".to_owned()]).await?;
    // A passkey (with user verification) is a fresh second factor for sensitive commands.
    state
        .store
        .record_second_factor(&resp.session_id, &user.id, state.now())
        .await?;
    audit::record(
        &state,
        &user.id,
        "user.login",
        Some(&user.id),
        Outcome::Success,
        json!({
            "method": "passkey",
            "credential_id": credential_id,
            "session_id": resp.session_id,
            "source": crate::ratelimit::source_hash(peer.addr.ip()),
        }),
    )
    .await?;
    Ok(Json(resp))
}

/// The WebAuthn user handle for a user: the 128 random bits of its `usr_` id, so the
/// handle carries nothing personal. Ids of another shape get a hash-derived handle.
fn user_handle(user_id: &str) -> Uuid {
    let from_id = user_id
        .strip_prefix("usr_")
        .and_then(|h| hex::decode(h).ok())
        .and_then(|b| <[u8; 16]>::try_from(b).ok());
    let bytes = from_id.unwrap_or_else(|| {
        let digest =
            tether_proto::ids::sha256_hex(format!("tether-user-handle-v1:{user_id}").as_bytes());
        hex::decode(digest.get(..32).unwrap_or_default())
            .ok()
            .and_then(|b| <[u8; 16]>::try_from(b).ok())
            .unwrap_or_default()
    });
    Uuid::from_bytes(bytes)
}

/// The signature counter stored with a passkey (0 when it has none).
fn stored_counter(passkey: &Passkey) -> u64 {
    serde_json::to_value(passkey)
        .ok()
        .and_then(|v| {
            v.pointer("/cred/counter")
                .and_then(serde_json::Value::as_u64)
        })
        .unwrap_or(0)
}

/// Parses stored passkeys; one that does not parse is a corrupt store.
fn decode_passkeys(records: &[PasskeyRecord]) -> ApiResult<Vec<(PasskeyRecord, Passkey)>> {
    records
        .iter()
        .map(|r| {
            serde_json::from_str::<Passkey>(&r.data)
                .map(|p| (r.clone(), p))
                .map_err(|e| ApiError::internal(format!("passkey {}: {e}", r.credential_id)))
        })
        .collect()
}

async fn put_ceremony(
    state: &AppState,
    kind: &str,
    user_id: &str,
    data: &impl Serialize,
) -> ApiResult<String> {
    let id = crate::random::id("cer");
    state
        .store
        .put_ceremony(&Ceremony {
            id: id.clone(),
            kind: kind.to_owned(),
            user_id: Some(user_id.to_owned()),
            data: serde_json::to_string(data).map_err(ApiError::internal)?,
            expires_at: UnixMillis(state.now().0.saturating_add(CEREMONY_TTL_MS)),
        })
        .await?;
    Ok(id)
}

/// Takes a ceremony of `kind`: unknown, used, expired and other-kind ids all answer 9003.
async fn take_ceremony(state: &AppState, id: &str, kind: &str) -> ApiResult<Ceremony> {
    match state.store.take_ceremony(id, state.now()).await? {
        Some(c) if c.kind == kind => Ok(c),
        _ => Err(no_ceremony()),
    }
}

fn no_ceremony() -> ApiError {
    ApiError::with_message(
        ErrorCode::NotFound,
        "unknown, used or expired ceremony; start again",
    )
}

fn no_passkey_login() -> ApiError {
    ApiError::with_message(
        ErrorCode::InvalidCredentials,
        "no passkey login is possible for this email",
    )
}

fn assertion_refused() -> ApiError {
    ApiError::with_message(
        ErrorCode::SecondFactorInvalid,
        "the passkey assertion did not verify; start again",
    )
}

async fn login_failed(
    state: &AppState,
    user_id: Option<&str>,
    peer: &Peer,
    reason: &str,
) -> ApiResult<()> {
    audit::record(
        state,
        user_id.unwrap_or("anonymous"),
        "user.login_failed",
        user_id,
        Outcome::Failure,
        json!({
            "method": "passkey",
            "reason": reason,
            "source": crate::ratelimit::source_hash(peer.addr.ip()),
        }),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_handle_is_the_id_s_random_bits() {
        let h = user_handle("usr_00112233445566778899aabbccddeeff");
        assert_eq!(h.simple().to_string(), "00112233445566778899aabbccddeeff");
    }

    #[test]
    fn user_handle_of_another_shape_is_stable_and_not_nil() {
        assert_eq!(user_handle("admin"), user_handle("admin"));
        assert_ne!(user_handle("admin"), Uuid::nil());
        assert_ne!(user_handle("admin"), user_handle("usr_zz"));
    }
}
