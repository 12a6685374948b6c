//! What every command gets: the profile, the output mode, the flags and the clock; and a
//! connection to the trusted server with authenticated calls.

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tether_client::sse::EventStream;
use tether_client::{Api, ClientError};
use tether_proto::Clock;

use crate::args::GlobalOpts;
use crate::auth::{ApiRefresher, Authed};
use crate::error::CliError;
use crate::output::Output;
use crate::profile::{Profile, Session};
use crate::trust::{self, TrustFlags, Trusted};

/// The environment of one command.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The profile directory.
    pub profile: Profile,
    /// How to print.
    pub out: Output,
    /// The global flags.
    pub global: GlobalOpts,
    /// The clock.
    pub clock: Arc<dyn Clock>,
}

/// How a command uses standard input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdin {
    /// Free for questions.
    Free,
    /// Carries the password (`--password-stdin`).
    Password,
}

impl Ctx {
    /// Whether the person at the terminal can be asked something.
    pub fn can_ask(&self, stdin: Stdin) -> bool {
        !self.global.yes && stdin == Stdin::Free && crate::prompt::stdin_is_terminal()
    }

    /// Connects to the server, establishing trust in its CA first.
    pub async fn connect(&self, stdin: Stdin) -> Result<Conn, CliError> {
        let flags = TrustFlags {
            server: self.global.server.as_deref(),
            ca_file: self.global.ca_file.as_deref(),
            ca_fingerprint: self.global.ca_fingerprint.as_deref(),
            yes: self.global.yes,
            stdin_taken: stdin == Stdin::Password,
        };
        let trusted = trust::resolve(&self.profile, &flags).await?;
        let api = Api::new(&trusted.server, &trusted.ca_pem)?;
        Ok(Conn {
            api,
            trusted,
            profile: self.profile.clone(),
            clock: Arc::clone(&self.clock),
        })
    }

    /// Connects for a command that needs a session (fails early if there is none).
    pub async fn connect_logged_in(&self) -> Result<Conn, CliError> {
        if self.profile.session()?.is_none() {
            return Err(CliError::NotLoggedIn);
        }
        self.connect(Stdin::Free).await
    }
}

/// A connection to the trusted server.
#[derive(Debug)]
pub struct Conn {
    /// The API client (no bearer token).
    pub api: Api,
    /// The server and its CA.
    pub trusted: Trusted,
    profile: Profile,
    clock: Arc<dyn Clock>,
}

impl Conn {
    /// The server's base URL.
    pub fn server(&self) -> &str {
        &self.trusted.server
    }

    /// The stored session for this server.
    pub fn session(&self) -> Result<Session, CliError> {
        let refresher = ApiRefresher(&self.api);
        self.authed(&refresher).session()
    }

    fn authed<'a>(
        &'a self,
        refresher: &'a ApiRefresher<'a>,
    ) -> Authed<'a, Profile, ApiRefresher<'a>> {
        Authed {
            store: &self.profile,
            refresher,
            clock: &*self.clock,
            server: &self.trusted.server,
        }
    }

    /// Authenticated `GET`.
    pub async fn get<R: DeserializeOwned>(&self, path: &str) -> Result<R, CliError> {
        let refresher = ApiRefresher(&self.api);
        self.authed(&refresher)
            .call(|token| {
                let api = self.api.clone().with_bearer(&token);
                async move { api.get(path).await.map(|(_, r)| r) }
            })
            .await
    }

    /// Authenticated `POST`.
    pub async fn post<B: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<R, CliError> {
        let refresher = ApiRefresher(&self.api);
        self.authed(&refresher)
            .call(|token| {
                let api = self.api.clone().with_bearer(&token);
                async move { api.post(path, body).await.map(|(_, r)| r) }
            })
            .await
    }

    /// Authenticated `PUT`.
    pub async fn put<B: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<R, CliError> {
        let refresher = ApiRefresher(&self.api);
        self.authed(&refresher)
            .call(|token| {
                let api = self.api.clone().with_bearer(&token);
                async move { api.put(path, body).await.map(|(_, r)| r) }
            })
            .await
    }

    /// Authenticated Server-Sent Events stream (`GET`), the token refreshed first when it
    /// is about to expire, or once after a refusal for an expired one.
    pub async fn stream(&self, path: &str) -> Result<EventStream, CliError> {
        let refresher = ApiRefresher(&self.api);
        self.authed(&refresher)
            .call(|token| {
                let api = self.api.clone().with_bearer(&token);
                async move { api.get_stream(path).await }
            })
            .await
    }

    /// Unauthenticated `POST`.
    pub async fn post_anonymous<B: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<R, ClientError> {
        self.api.post(path, body).await.map(|(_, r)| r)
    }
}
