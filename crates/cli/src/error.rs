//! The CLI's one error type, and the exit code each kind of failure maps to.

use std::process::ExitCode;

use tether_client::ClientError;
use tether_proto::{ErrorBody, ErrorCode};

/// Exit status: the command did what was asked.
pub const EXIT_OK: u8 = 0;
/// Exit status: the server refused (an error body with a stable code).
pub const EXIT_REFUSED: u8 = 1;
/// Exit status: bad usage or a local problem (flags, files, prompts, trust decisions).
pub const EXIT_LOCAL: u8 = 2;
/// Exit status: the server could not be reached (network, TLS, not a Tether server).
pub const EXIT_UNREACHABLE: u8 = 3;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The server answered with an error body.
    #[error("error {} {}: {}", .body.code.number(), .body.code.name(), .body.message)]
    Refused {
        /// The server's error body.
        body: ErrorBody,
        /// What the user can do about it, when the CLI knows better than the message.
        hint: Option<String>,
    },
    /// The command line or the local state does not allow the command.
    #[error("{0}")]
    Usage(String),
    /// A local file could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What the CLI was doing.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// No session is stored: the user must log in first.
    #[error("not logged in")]
    NotLoggedIn,
    /// The server could not be reached, TLS failed, or the answer was not the Tether API.
    #[error("{0}")]
    Unreachable(String),
}

impl CliError {
    /// A usage error.
    pub fn usage(msg: impl Into<String>) -> Self {
        CliError::Usage(msg.into())
    }

    /// A function mapping an I/O error to [`CliError::Io`] with context.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| CliError::Io { what, source }
    }

    /// A server refusal with a hint.
    pub fn refused_with_hint(body: ErrorBody, hint: impl Into<String>) -> Self {
        CliError::Refused {
            body,
            hint: Some(hint.into()),
        }
    }

    /// The error code, when the server sent one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            CliError::Refused { body, .. } => Some(body.code),
            _ => None,
        }
    }

    /// A second line of advice, if any.
    pub fn hint(&self) -> Option<&str> {
        match self {
            CliError::Refused { hint, .. } => hint.as_deref(),
            CliError::NotLoggedIn => Some("log in first: tether login --email YOU@EXAMPLE"),
            CliError::Unreachable(m) if m.contains("certificate") => Some(
                "the server's certificate does not chain to the CA this profile trusts; if the server's CA really changed, pin the new one with --ca-file (check its fingerprint first)",
            ),
            _ => None,
        }
    }

    /// The process exit status for this error.
    pub fn exit_status(&self) -> u8 {
        match self {
            CliError::Refused { .. } => EXIT_REFUSED,
            CliError::Usage(_) | CliError::Io { .. } | CliError::NotLoggedIn => EXIT_LOCAL,
            CliError::Unreachable(_) => EXIT_UNREACHABLE,
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.exit_status())
    }
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Api { body, .. } => {
                let hint = default_hint(body.code);
                CliError::Refused {
                    body,
                    hint: hint.map(str::to_owned),
                }
            }
            ClientError::Transport(m) => {
                CliError::Unreachable(format!("cannot reach the server: {m}"))
            }
            ClientError::Decode(m) => CliError::Unreachable(format!(
                "unexpected answer from the server (is --server a Tether server?): {m}"
            )),
            ClientError::Trust(m) => CliError::Usage(format!("CA certificate: {m}")),
        }
    }
}

/// Advice for codes whose fix is on the user's side.
fn default_hint(code: ErrorCode) -> Option<&'static str> {
    match code {
        ErrorCode::Unauthenticated | ErrorCode::TokenExpired | ErrorCode::TokenInvalid => {
            Some("log in again: tether login")
        }
        ErrorCode::RefreshTokenReused => Some(
            "the session was revoked (its refresh token was used twice, or you logged out everywhere); log in again: tether login",
        ),
        ErrorCode::SecondFactorRequired => {
            Some("this account has TOTP turned on: pass --totp CODE from your authenticator app")
        }
        ErrorCode::SecondFactorInvalid => {
            Some("each code works once: wait for the next code from your authenticator app")
        }
        ErrorCode::Forbidden => Some("your account's role does not allow this"),
        _ => None,
    }
}
