//! Accounts: register, log in (password + TOTP), refresh with rotation, log out, revoke
//! sessions, TOTP enrolment.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tether_proto::validate::{Validate, b64url_decode};
use tether_proto::{ErrorCode, ProtoError, UnixMillis};
use tether_store::{NewUser, RefreshRecord, Role, Rotation, TotpRecord, User};
use tether_trust::TokenType;
use utoipa::ToSchema;

use crate::accounts::{password, totp};
use crate::audit::{self, Outcome};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::serve::Peer;
use crate::state::{API_AUDIENCE, AppState};

/// `POST /api/register`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// Email address (the login name).
    pub email: String,
    /// Password, at least the configured minimum length (default 10).
    pub password: String,
    /// The user's Ed25519 public key (the seed's MobilePub), unpadded base64url of 32 bytes.
    /// The CLI generates one; the owner's devices pin it at pairing.
    #[serde(default)]
    pub mobile_pub: Option<String>,
}

impl Validate for RegisterRequest {
    fn validate(&self) -> Result<(), ProtoError> {
        check_email(&self.email)?;
        if self.password.chars().count() > 1024 {
            return Err(ProtoError::InvalidField {
                field: "password",
                reason: "longer than 1024 characters".into(),
            });
        }
        if let Some(k) = &self.mobile_pub
            && b64url_decode(k).is_none_or(|b| b.len() != 32)
        {
            return Err(ProtoError::InvalidField {
                field: "mobile_pub",
                reason: "must be unpadded base64url of a 32-byte Ed25519 public key".into(),
            });
        }
        Ok(())
    }
}

fn check_email(email: &str) -> Result<(), ProtoError> {
    let ok = (3..=254).contains(&email.len())
        && email
            .split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.starts_with('.'))
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(ProtoError::InvalidField {
            field: "email",
            reason: "not an email address".into(),
        })
    }
}

/// A user as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserView {
    /// Id.
    pub id: String,
    /// Email.
    pub email: String,
    /// `admin`, `auditor` or `student`.
    pub role: String,
    /// Whether login asks for a TOTP code.
    pub totp_enabled: bool,
    /// MobilePub, if registered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mobile_pub: Option<String>,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        Self {
            id: u.id.clone(),
            email: u.email.clone(),
            role: u.role.as_str().to_owned(),
            totp_enabled: u.totp.as_ref().is_some_and(|t| t.enabled),
            mobile_pub: u.mobile_pub.clone(),
        }
    }
}

/// Creates a user with the given role (the `create-admin` command uses this too).
pub async fn create_user(state: &AppState, req: RegisterRequest, role: Role) -> ApiResult<User> {
    if req.password.chars().count() < state.config.auth.min_password_len {
        return Err(ApiError::with_message(
            ErrorCode::InvalidField,
            format!(
                "password must be at least {} characters",
                state.config.auth.min_password_len
            ),
        ));
    }
    let hash = password::hash(req.password).await?;
    let new = NewUser {
        id: crate::random::id("usr"),
        email: req.email.trim().to_lowercase(),
        password_hash: hash,
        role,
        mobile_pub: req.mobile_pub,
        created_at: state.now(),
    };
    let user = state.store.create_user(&new).await.map_err(|e| match e {
        tether_store::StoreError::Conflict(_) => ApiError::with_message(
            ErrorCode::Conflict,
            "an account with this email already exists",
        ),
        other => other.into(),
    })?;
    audit::record(
        state,
        &user.id,
        "user.register",
        Some(&user.id),
        Outcome::Success,
        json!({"role": role.as_str()}),
    )
    .await?;
    Ok(user)
}

/// Register a new account (role `student`).
#[utoipa::path(post, path = "/api/register", request_body = RegisterRequest,
    responses((status = 201, body = UserView), (status = 409, description = "email taken"), (status = 422, description = "invalid field")))]
pub async fn register(
    State(state): State<AppState>,
    Extension(peer): Extension<Peer>,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> ApiResult<(StatusCode, Json<UserView>)> {
    crate::ratelimit::check(
        &state,
        "register",
        peer.addr.ip(),
        state.config.auth.login_per_minute,
    )
    .await?;
    let user = create_user(&state, req, Role::Student).await?;
    Ok((StatusCode::CREATED, Json(UserView::from(&user))))
}

/// `POST /api/login`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Email.
    pub email: String,
    /// Password.
    pub password: String,
    /// The current TOTP code, when TOTP is enabled.
    #[serde(default)]
    pub totp_code: Option<String>,
}

impl Validate for LoginRequest {
    fn validate(&self) -> Result<(), ProtoError> {
        if self.email.len() > 254 || self.password.chars().count() > 1024 {
            return Err(ProtoError::InvalidField {
                field: "email",
                reason: "too long".into(),
            });
        }
        Ok(())
    }
}

/// Tokens for a session.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenResponse {
    /// A 900-second EdDSA JWT for `Authorization: Bearer`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// An opaque single-use refresh token; each refresh returns a new one.
    pub refresh_token: String,
    /// The session (refresh family) id.
    pub session_id: String,
    /// The user.
    pub user: UserView,
}

pub(crate) async fn issue_session(
    state: &AppState,
    user: &User,
    family: Option<String>,
    amr: Vec<String>,
) -> ApiResult<TokenResponse> {
    let now = state.now();
    let family = family.unwrap_or_else(|| crate::random::id("sess"));
    let refresh = crate::random::token();
    state
        .store
        .insert_refresh(&RefreshRecord {
            token_hash: tether_proto::ids::sha256_hex(refresh.as_bytes()),
            family_id: family.clone(),
            user_id: user.id.clone(),
            created_at: now,
            expires_at: UnixMillis(
                now.0
                    .saturating_add(state.config.auth.refresh_ttl_s.saturating_mul(1000)),
            ),
        })
        .await?;
    let access = access_token(state, user, &family, amr, now)?;
    Ok(TokenResponse {
        access_token: access,
        token_type: "Bearer",
        expires_in: state.config.auth.access_ttl_s,
        refresh_token: refresh,
        session_id: family,
        user: UserView::from(user),
    })
}

fn access_token(
    state: &AppState,
    user: &User,
    family: &str,
    amr: Vec<String>,
    now: UnixMillis,
) -> ApiResult<String> {
    let mut claims = state
        .issuer
        .claims(TokenType::Access, &user.id, API_AUDIENCE, now)?;
    claims.sid = Some(family.to_owned());
    claims.amr = amr;
    claims.scope = Some(user.role.as_str().to_owned());
    Ok(state.issuer.issue(&claims)?)
}

fn open_totp_secret(state: &AppState, rec: &TotpRecord) -> ApiResult<Vec<u8>> {
    Ok(state
        .keystore
        .open(totp::SEAL_LABEL, &rec.sealed_secret)?
        .to_vec())
}

/// Log in with email and password (and a TOTP code when enrolled).
#[utoipa::path(post, path = "/api/login", request_body = LoginRequest,
    responses((status = 200, body = TokenResponse), (status = 401, description = "3008 bad credentials, 3005 TOTP needed, 3006 bad TOTP"), (status = 429, description = "rate limited")))]
pub async fn login(
    State(state): State<AppState>,
    Extension(peer): Extension<Peer>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Json<TokenResponse>> {
    crate::ratelimit::check(
        &state,
        "login",
        peer.addr.ip(),
        state.config.auth.login_per_minute,
    )
    .await?;
    let email = req.email.trim().to_lowercase();
    let user = state.store.user_by_email(&email).await?;
    let Some(user) = user else {
        // Same work as for a real account, so timing does not reveal which emails exist.
        let _ = password::verify(req.password, password::dummy_hash().await?).await;
        login_failed(&state, None, &peer, "unknown account").await?;
        return Err(ApiError::new(ErrorCode::InvalidCredentials));
    };
    if !password::verify(req.password, user.password_hash.clone()).await? {
        login_failed(&state, Some(&user.id), &peer, "wrong password").await?;
        return Err(ApiError::new(ErrorCode::InvalidCredentials));
    }
    let mut amr = vec!["pwd".to_owned()];
    if let Some(t) = user.totp.as_ref().filter(|t| t.enabled) {
        let Some(code) = req.totp_code.as_deref() else {
            return Err(ApiError::with_message(
                ErrorCode::SecondFactorRequired,
                "this account needs a TOTP code: send totp_code",
            ));
        };
        check_totp_once(&state, &user, t, code).await?;
        amr.push("otp".into());
    }
    let second_factor = amr.iter().any(|m| m == "otp");
    let resp = issue_session(&state, &user, None, amr).await?;
    if second_factor {
        // A TOTP login is a fresh second factor for sensitive commands (policy step-up).
        state
            .store
            .record_second_factor(&resp.session_id, &user.id, state.now())
            .await?;
    }
    audit::record(&state, &user.id, "user.login", Some(&user.id), Outcome::Success,
        json!({"session_id": resp.session_id, "source": crate::ratelimit::source_hash(peer.addr.ip())})).await?;
    Ok(Json(resp))
}

pub(crate) async fn check_totp_once(
    state: &AppState,
    user: &User,
    t: &TotpRecord,
    code: &str,
) -> ApiResult<u64> {
    let secret = open_totp_secret(state, t)?;
    let step = totp::matching_step(&secret, &user.email, code.trim(), state.now())?;
    let Some(step) = step else {
        audit::record(
            state,
            &user.id,
            "user.totp_failed",
            Some(&user.id),
            Outcome::Failure,
            json!({"reason": "wrong code"}),
        )
        .await?;
        return Err(ApiError::with_message(
            ErrorCode::SecondFactorInvalid,
            "the TOTP code is wrong or out of date",
        ));
    };
    if !state.store.use_totp_step(&user.id, step).await? {
        audit::record(
            state,
            &user.id,
            "user.totp_failed",
            Some(&user.id),
            Outcome::Failure,
            json!({"reason": "code reused"}),
        )
        .await?;
        return Err(ApiError::with_message(
            ErrorCode::SecondFactorInvalid,
            "this TOTP code was already used; wait for the next one",
        ));
    }
    Ok(step)
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
        json!({"reason": reason, "source": crate::ratelimit::source_hash(peer.addr.ip())}),
    )
    .await?;
    Ok(())
}

/// `POST /api/token/refresh` and `POST /api/logout`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The refresh token from the last login or refresh.
    pub refresh_token: String,
}

impl Validate for RefreshRequest {
    fn validate(&self) -> Result<(), ProtoError> {
        if self.refresh_token.is_empty() || self.refresh_token.len() > 256 {
            return Err(ProtoError::InvalidField {
                field: "refresh_token",
                reason: "must be 1-256 characters".into(),
            });
        }
        Ok(())
    }
}

/// Exchange a refresh token for new tokens. Each refresh token works once; presenting a
/// used one revokes its whole session (3007).
#[utoipa::path(post, path = "/api/token/refresh", request_body = RefreshRequest,
    responses((status = 200, body = TokenResponse), (status = 401, description = "3007 reused (session revoked), 3002 expired, 3003 unknown")))]
pub async fn refresh(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> ApiResult<Json<TokenResponse>> {
    let now = state.now();
    let new_token = crate::random::token();
    let new = RefreshRecord {
        token_hash: tether_proto::ids::sha256_hex(new_token.as_bytes()),
        family_id: String::new(),
        user_id: String::new(),
        created_at: now,
        expires_at: UnixMillis(
            now.0
                .saturating_add(state.config.auth.refresh_ttl_s.saturating_mul(1000)),
        ),
    };
    let old_hash = tether_proto::ids::sha256_hex(req.refresh_token.as_bytes());
    match state.store.rotate_refresh(&old_hash, &new, now).await? {
        Rotation::Rotated(old) => {
            let user = state
                .store
                .user_by_id(&old.user_id)
                .await?
                .ok_or_else(|| ApiError::new(ErrorCode::TokenInvalid))?;
            let access = access_token(&state, &user, &old.family_id, vec!["pwd".into()], now)?;
            Ok(Json(TokenResponse {
                access_token: access,
                token_type: "Bearer",
                expires_in: state.config.auth.access_ttl_s,
                refresh_token: new_token,
                session_id: old.family_id,
                user: UserView::from(&user),
            }))
        }
        Rotation::Reused { family_id, user_id } => {
            audit::record(
                &state,
                &user_id,
                "session.refresh_reuse",
                Some(&family_id),
                Outcome::Denied,
                json!({"action": "family revoked"}),
            )
            .await?;
            Err(ApiError::new(ErrorCode::RefreshTokenReused))
        }
        Rotation::Expired => Err(ApiError::with_message(
            ErrorCode::TokenExpired,
            "the refresh token has expired; log in again",
        )),
        Rotation::NotFound => Err(ApiError::with_message(
            ErrorCode::TokenInvalid,
            "unknown refresh token",
        )),
    }
}

/// Log out: revoke the session the refresh token belongs to.
#[utoipa::path(post, path = "/api/logout", request_body = RefreshRequest, responses((status = 204)))]
pub async fn logout(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> ApiResult<StatusCode> {
    let hash = tether_proto::ids::sha256_hex(req.refresh_token.as_bytes());
    if let Some(rec) = state.store.refresh_by_hash(&hash).await? {
        state.store.revoke_refresh_family(&rec.family_id).await?;
        audit::record(
            &state,
            &rec.user_id,
            "session.logout",
            Some(&rec.family_id),
            Outcome::Success,
            json!({}),
        )
        .await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// How many sessions were revoked.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RevokedView {
    /// Refresh tokens revoked.
    pub revoked: u64,
}

/// Revoke every session of the caller (access tokens already issued expire on their own
/// within 15 minutes).
#[utoipa::path(post, path = "/api/sessions/revoke", responses((status = 200, body = RevokedView)), security(("bearer" = [])))]
pub async fn revoke_sessions(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<RevokedView>> {
    let n = state.store.revoke_user_refresh(&caller.user.id).await?;
    audit::record(
        &state,
        &caller.user.id,
        "session.revoke_all",
        Some(&caller.user.id),
        Outcome::Success,
        json!({"revoked": n}),
    )
    .await?;
    Ok(Json(RevokedView { revoked: n }))
}

/// The caller's account.
#[utoipa::path(get, path = "/api/me", responses((status = 200, body = UserView)), security(("bearer" = [])))]
pub async fn me(caller: Caller) -> Json<UserView> {
    Json(UserView::from(&caller.user))
}

/// A TOTP enrolment in progress.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TotpEnrollResponse {
    /// The secret in base32, for typing into an authenticator app.
    pub secret_base32: String,
    /// The `otpauth://` URL (render it as a QR code).
    pub otpauth_url: String,
}

/// Start TOTP enrolment: a new secret, not yet required at login.
#[utoipa::path(post, path = "/api/totp/enroll", responses((status = 200, body = TotpEnrollResponse), (status = 409, description = "already enabled")), security(("bearer" = [])))]
pub async fn totp_enroll(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<TotpEnrollResponse>> {
    if caller.user.totp.as_ref().is_some_and(|t| t.enabled) {
        return Err(ApiError::with_message(
            ErrorCode::Conflict,
            "TOTP is already enabled for this account",
        ));
    }
    let secret = totp::new_secret();
    let sealed = state.keystore.seal(totp::SEAL_LABEL, &secret)?;
    state
        .store
        .set_totp(
            &caller.user.id,
            Some(&TotpRecord {
                sealed_secret: sealed,
                enabled: false,
            }),
        )
        .await?;
    audit::record(
        &state,
        &caller.user.id,
        "user.totp_enroll_start",
        Some(&caller.user.id),
        Outcome::Success,
        json!({}),
    )
    .await?;
    Ok(Json(TotpEnrollResponse {
        secret_base32: totp::base32(&secret),
        otpauth_url: totp::otpauth_url(&secret, &caller.user.email)?,
    }))
}

/// `POST /api/totp/confirm`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpConfirmRequest {
    /// A current 6-digit code from the authenticator app.
    pub code: String,
}

impl Validate for TotpConfirmRequest {
    fn validate(&self) -> Result<(), ProtoError> {
        if self.code.len() > 16 {
            return Err(ProtoError::InvalidField {
                field: "code",
                reason: "too long".into(),
            });
        }
        Ok(())
    }
}

/// Confirm TOTP enrolment with a first code; from now on login needs a code.
#[utoipa::path(post, path = "/api/totp/confirm", request_body = TotpConfirmRequest, responses((status = 204), (status = 401, description = "3006 wrong code"), (status = 409, description = "no enrolment in progress")), security(("bearer" = [])))]
pub async fn totp_confirm(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<TotpConfirmRequest>,
) -> ApiResult<StatusCode> {
    let Some(t) = caller.user.totp.clone() else {
        return Err(ApiError::with_message(
            ErrorCode::Conflict,
            "start with POST /api/totp/enroll",
        ));
    };
    if t.enabled {
        return Err(ApiError::with_message(
            ErrorCode::Conflict,
            "TOTP is already enabled",
        ));
    }
    let step = check_totp_once(&state, &caller.user, &t, &req.code).await?;
    state
        .store
        .set_totp(
            &caller.user.id,
            Some(&TotpRecord {
                sealed_secret: t.sealed_secret,
                enabled: true,
            }),
        )
        .await?;
    // The store keeps the last step when only `enabled` changes; record it again anyway so
    // the confirming code can never be replayed at login.
    let _ = state.store.use_totp_step(&caller.user.id, step).await?;
    audit::record(
        &state,
        &caller.user.id,
        "user.totp_enabled",
        Some(&caller.user.id),
        Outcome::Success,
        json!({}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
