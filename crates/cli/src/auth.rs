//! Authenticated calls with transparent token refresh.
//!
//! Access tokens live 900 s. Before a call, a token that is (nearly) expired by the local
//! clock is refreshed; after a call that the server refused with `TOKEN_EXPIRED`, or 401
//! with `TOKEN_INVALID`, the session is refreshed once and the call retried. Refresh
//! tokens are single-use and rotate: the new one is stored at once. A refused refresh
//! (3007 reused, i.e. the session was revoked; 3002/3003) ends the local session.
//!
//! Two `tether` processes refreshing with the same token would make the server see a
//! reuse and revoke the session, so refreshing happens under the profile's session lock,
//! and a process that waited for the lock first re-reads the session: if another one
//! already rotated it, it uses that result instead of refreshing again.

use std::future::Future;
use std::time::Duration;

use tether_client::{Api, ClientError};
use tether_proto::{Clock, ErrorCode, UnixMillis};

use crate::error::CliError;
use crate::profile::{Profile, Session, SessionLock};
use crate::views::TokenResponse;

/// Refresh this long before the access token's expiry, so it does not expire in flight.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(30);

/// Where the session lives.
pub trait SessionStore {
    /// Held while refreshing.
    type Lock;
    /// The stored session.
    fn load(&self) -> Result<Option<Session>, CliError>;
    /// Replaces the stored session.
    fn save(&self, s: &Session) -> Result<(), CliError>;
    /// Forgets the session.
    fn clear(&self) -> Result<(), CliError>;
    /// Waits for exclusive use of the refresh token.
    fn lock(&self) -> impl Future<Output = Result<Self::Lock, CliError>>;
}

/// Exchanges a refresh token for new tokens.
pub trait Refresher {
    /// `POST /api/token/refresh`.
    fn refresh(
        &self,
        refresh_token: &str,
    ) -> impl Future<Output = Result<TokenResponse, ClientError>>;
}

impl SessionStore for Profile {
    type Lock = SessionLock;

    fn load(&self) -> Result<Option<Session>, CliError> {
        self.session()
    }

    fn save(&self, s: &Session) -> Result<(), CliError> {
        self.save_session(s)
    }

    fn clear(&self) -> Result<(), CliError> {
        self.clear_session()
    }

    async fn lock(&self) -> Result<SessionLock, CliError> {
        // Waiting for a file lock blocks the thread: do it on the blocking pool.
        let profile = self.clone();
        tokio::task::spawn_blocking(move || profile.lock_session())
            .await
            .map_err(|e| CliError::usage(format!("waiting for the session lock: {e}")))?
    }
}

/// The real refresher: the server's refresh endpoint.
#[derive(Debug)]
pub struct ApiRefresher<'a>(pub &'a Api);

impl Refresher for ApiRefresher<'_> {
    async fn refresh(&self, refresh_token: &str) -> Result<TokenResponse, ClientError> {
        let body = serde_json::json!({ "refresh_token": refresh_token });
        let (_, t) = self.0.post("/api/token/refresh", &body).await?;
        Ok(t)
    }
}

/// A session from freshly issued tokens, with the expiry by the local clock.
pub fn session_from_tokens(server: &str, t: &TokenResponse, now: UnixMillis) -> Session {
    Session {
        server: server.to_owned(),
        email: t.user.email.clone(),
        user_id: t.user.id.clone(),
        session_id: t.session_id.clone(),
        access_token: t.access_token.clone(),
        access_expires_at: now.saturating_add(Duration::from_secs(t.expires_in)),
        refresh_token: t.refresh_token.clone(),
    }
}

/// Whether to refresh before calling: the access token expires within [`REFRESH_MARGIN`].
pub fn should_refresh_before(session: &Session, now: UnixMillis) -> bool {
    now.saturating_add(REFRESH_MARGIN) >= session.access_expires_at
}

/// Whether a failed authenticated call is worth one refresh and retry: the server said
/// the access token expired (3002), or answered 401 with 3003 (e.g. the signing key
/// rotated away), and this invocation has not refreshed yet.
pub fn should_refresh_after(err: &ClientError, already_refreshed: bool) -> bool {
    if already_refreshed {
        return false;
    }
    match err {
        ClientError::Api { status, body } => {
            body.code == ErrorCode::TokenExpired
                || (*status == 401 && body.code == ErrorCode::TokenInvalid)
        }
        _ => false,
    }
}

/// Runs authenticated calls for one server, refreshing the session when needed.
#[derive(Debug)]
pub struct Authed<'a, S, R> {
    /// Where the session is stored.
    pub store: &'a S,
    /// How to refresh.
    pub refresher: &'a R,
    /// The clock.
    pub clock: &'a dyn Clock,
    /// The server the session must belong to.
    pub server: &'a str,
}

impl<S: SessionStore, R: Refresher> Authed<'_, S, R> {
    /// The stored session for this server.
    pub fn session(&self) -> Result<Session, CliError> {
        let s = self.store.load()?.ok_or(CliError::NotLoggedIn)?;
        if s.server != self.server {
            return Err(CliError::usage(format!(
                "the saved session is for {}, not {}; log in again",
                s.server, self.server
            )));
        }
        Ok(s)
    }

    /// Calls `f` with a valid access token, refreshing before or once after as needed.
    pub async fn call<T, F, Fut>(&self, mut f: F) -> Result<T, CliError>
    where
        F: FnMut(String) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let mut session = self.session()?;
        let mut refreshed = false;
        if should_refresh_before(&session, self.clock.now()) {
            session = self.refresh(&session).await?;
            refreshed = true;
        }
        match f(session.access_token.clone()).await {
            Ok(v) => Ok(v),
            Err(e) if should_refresh_after(&e, refreshed) => {
                session = self.refresh(&session).await?;
                Ok(f(session.access_token).await?)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Rotates the session's tokens (or adopts a rotation another process made).
    async fn refresh(&self, stale: &Session) -> Result<Session, CliError> {
        // The lock is held across the request on purpose: it is what keeps another
        // process from spending the same refresh token.
        let _lock = self.store.lock().await?;
        let current = self.session()?;
        if current.refresh_token != stale.refresh_token {
            return Ok(current);
        }
        match self.refresher.refresh(&current.refresh_token).await {
            Ok(t) => {
                let next = session_from_tokens(self.server, &t, self.clock.now());
                self.store.save(&next)?;
                Ok(next)
            }
            Err(ClientError::Api { body, .. })
                if matches!(
                    body.code,
                    ErrorCode::RefreshTokenReused
                        | ErrorCode::TokenExpired
                        | ErrorCode::TokenInvalid
                ) =>
            {
                self.store.clear()?;
                let hint = if body.code == ErrorCode::RefreshTokenReused {
                    "the session was revoked on the server (its refresh token was used twice, or all sessions were revoked); log in again: tether login"
                } else {
                    "the session has ended; log in again: tether login"
                };
                Err(CliError::refused_with_hint(body, hint))
            }
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests;
