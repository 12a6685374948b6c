//! Who is calling: the `Authorization: Bearer <access JWT>` extractor and role checks.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use tether_proto::ErrorCode;
use tether_store::{Role, User};
use tether_trust::TokenType;

use crate::error::ApiError;
use crate::state::{API_AUDIENCE, AppState};

/// A caller authenticated by an access token, with their current user record.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The user (re-read from the store: a role change applies at once).
    pub user: User,
    /// The refresh-token family (session) the access token came from.
    pub session_id: Option<String>,
    /// Authentication methods (`pwd`, `otp`, `hwk`).
    pub amr: Vec<String>,
}

impl Caller {
    /// Refuses unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.user.role) {
            Ok(())
        } else {
            Err(ApiError::with_message(
                ErrorCode::Forbidden,
                "your role does not allow this",
            ))
        }
    }

    /// Whether the caller may see every device (admins and auditors).
    pub fn sees_all_devices(&self) -> bool {
        matches!(self.user.role, Role::Admin | Role::Auditor)
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| {
                ApiError::with_message(
                    ErrorCode::Unauthenticated,
                    "missing Authorization: Bearer token",
                )
            })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError::with_message(
                    ErrorCode::Unauthenticated,
                    "Authorization must be `Bearer <token>`",
                )
            })?;
        Ok(authenticate(state, token).await?.0)
    }
}

/// The caller an access token speaks for, and when the token expires (Unix seconds).
/// For routes that take the token from somewhere other than the `Authorization` header
/// (the live view's `?access_token=`); everything else uses the [`Caller`] extractor.
pub async fn authenticate(state: &AppState, token: &str) -> Result<(Caller, u64), ApiError> {
    let claims = state
        .validator
        .validate(token, API_AUDIENCE, TokenType::Access, state.now())
        .map_err(ApiError::from)?;
    let user = state.store.user_by_id(&claims.sub).await?.ok_or_else(|| {
        ApiError::with_message(ErrorCode::TokenInvalid, "the token's user no longer exists")
    })?;
    Ok((
        Caller {
            user,
            session_id: claims.sid,
            amr: claims.amr,
        },
        claims.exp,
    ))
}
